package objstore

import (
	"context"
	"io"
	"iter"
	"strings"
)

// WithPrefix returns a Bucket that stores every key under prefix in b, so
// several clusters or environments can share one bucket. Leading and
// trailing slashes of prefix are dropped and one "/" separates it from the
// key; an empty prefix returns b unchanged. List yields keys without the
// prefix. Closing the returned bucket closes b.
func WithPrefix(b Bucket, prefix string) Bucket {
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		return b
	}
	return &prefixBucket{b: b, prefix: prefix + "/"}
}

type prefixBucket struct {
	b      Bucket
	prefix string
}

var _ Bucket = (*prefixBucket)(nil)

func (p *prefixBucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return p.b.Get(ctx, p.prefix+key)
}

func (p *prefixBucket) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	return p.b.GetRange(ctx, p.prefix+key, off, length)
}

func (p *prefixBucket) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	info, err := p.b.Stat(ctx, p.prefix+key)
	if err != nil {
		return ObjectInfo{}, err
	}
	info.Key = strings.TrimPrefix(info.Key, p.prefix)
	return info, nil
}

func (p *prefixBucket) List(ctx context.Context, prefix string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		for info, err := range p.b.List(ctx, p.prefix+prefix) {
			if err == nil {
				info.Key = strings.TrimPrefix(info.Key, p.prefix)
			}
			if !yield(info, err) {
				return
			}
		}
	}
}

func (p *prefixBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return p.b.Put(ctx, p.prefix+key, r, size)
}

func (p *prefixBucket) Delete(ctx context.Context, key string) error {
	return p.b.Delete(ctx, p.prefix+key)
}

func (p *prefixBucket) Close() error { return p.b.Close() }

// Unwrap returns the bucket this one wraps (see CheckBucket).
func (p *prefixBucket) Unwrap() Bucket { return p.b }
