package objstoretest

import (
	"context"
	"io"
	"iter"
	"strings"

	"github.com/floebroker/floe/objstore"
)

// Stalling wraps a bucket to stall as a connection that stops moving
// does, on every key starting with Prefix ("" for all): Put, Stat and
// Delete block until their context ends, a reader from Get or GetRange
// gives its first byte and then blocks until the context of the call that
// opened it ends (as an HTTP body does), and a List yields the keys
// before the first such key and then blocks until its context ends (as a
// page whose body stops does).
type Stalling struct {
	objstore.Bucket
	Prefix string
}

func (s Stalling) stalls(key string) bool { return strings.HasPrefix(key, s.Prefix) }

func (s Stalling) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := s.Bucket.Get(ctx, key)
	return s.body(ctx, key, rc, err)
}

func (s Stalling) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := s.Bucket.GetRange(ctx, key, off, length)
	return s.body(ctx, key, rc, err)
}

func (s Stalling) body(ctx context.Context, key string, rc io.ReadCloser, err error) (io.ReadCloser, error) {
	if err != nil || !s.stalls(key) {
		return rc, err
	}
	return &stallingBody{ctx: ctx, ReadCloser: rc}, nil
}

func (s Stalling) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if s.stalls(key) {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Bucket.Put(ctx, key, r, size)
}

func (s Stalling) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	if s.stalls(key) {
		<-ctx.Done()
		return objstore.ObjectInfo{}, ctx.Err()
	}
	return s.Bucket.Stat(ctx, key)
}

func (s Stalling) Delete(ctx context.Context, key string) error {
	if s.stalls(key) {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Bucket.Delete(ctx, key)
}

func (s Stalling) List(ctx context.Context, prefix string) iter.Seq2[objstore.ObjectInfo, error] {
	return func(yield func(objstore.ObjectInfo, error) bool) {
		for info, err := range s.Bucket.List(ctx, prefix) {
			if err == nil && s.stalls(info.Key) {
				<-ctx.Done()
				yield(objstore.ObjectInfo{}, ctx.Err())
				return
			}
			if !yield(info, err) || err != nil {
				return
			}
		}
	}
}

type stallingBody struct {
	ctx context.Context
	io.ReadCloser
	sent bool
}

func (s *stallingBody) Read(p []byte) (int, error) {
	if !s.sent && len(p) > 0 {
		s.sent = true
		return s.ReadCloser.Read(p[:1])
	}
	<-s.ctx.Done()
	return 0, s.ctx.Err()
}
