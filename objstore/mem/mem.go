// Package mem is an in-process objstore.Bucket backed by a map, for tests
// and the mem:// URL. It keeps the objstore.Bucket contract (atomic Put,
// ErrNotExist, ordered List, concurrent use) but nothing survives the
// process.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/floebroker/floe/objstore"
)

// Bucket is an in-memory bucket. The zero value is not usable; call New.
type Bucket struct {
	now func() time.Time
	mu  struct {
		sync.RWMutex
		objects map[string]object
	}
}

type object struct {
	data    []byte
	modTime time.Time
}

var _ objstore.Bucket = (*Bucket)(nil)

// New returns an empty bucket. now stamps objects' LastModified; nil uses
// time.Now.
func New(now func() time.Time) *Bucket {
	if now == nil {
		now = time.Now
	}
	b := &Bucket{now: now}
	b.mu.objects = map[string]object{}
	return b
}

func (b *Bucket) lookup(ctx context.Context, op, key string) (object, error) {
	if err := ctx.Err(); err != nil {
		return object{}, fmt.Errorf("mem: %s %q: %w", op, key, err)
	}
	b.mu.RLock()
	o, ok := b.mu.objects[key]
	b.mu.RUnlock()
	if !ok {
		return object{}, fmt.Errorf("mem: %s %q: %w", op, key, objstore.ErrNotExist)
	}
	return o, nil
}

// Get returns the whole object. Stored bytes are never modified, so the
// reader needs no lock.
func (b *Bucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	o, err := b.lookup(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(o.data)), nil
}

// GetRange returns length bytes at off, per objstore.BucketReader.
func (b *Bucket) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	o, err := b.lookup(ctx, "get range", key)
	if err != nil {
		return nil, err
	}
	n, err := objstore.ClampRange(int64(len(o.data)), off, length)
	if err != nil {
		return nil, fmt.Errorf("mem: get range %q: %w", key, err)
	}
	return io.NopCloser(bytes.NewReader(o.data[off : off+n])), nil
}

// Stat returns the object's size and modification time.
func (b *Bucket) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	o, err := b.lookup(ctx, "stat", key)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	return objstore.ObjectInfo{Key: key, Size: int64(len(o.data)), LastModified: o.modTime}, nil
}

// List yields the objects under prefix as they were when List started.
func (b *Bucket) List(ctx context.Context, prefix string) iter.Seq2[objstore.ObjectInfo, error] {
	return func(yield func(objstore.ObjectInfo, error) bool) {
		b.mu.RLock()
		infos := make([]objstore.ObjectInfo, 0)
		for k, o := range b.mu.objects {
			if strings.HasPrefix(k, prefix) {
				infos = append(infos, objstore.ObjectInfo{Key: k, Size: int64(len(o.data)), LastModified: o.modTime})
			}
		}
		b.mu.RUnlock()
		slices.SortFunc(infos, func(a, b objstore.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
		for _, info := range infos {
			if err := ctx.Err(); err != nil {
				yield(objstore.ObjectInfo{}, fmt.Errorf("mem: list %q: %w", prefix, err))
				return
			}
			if !yield(info, nil) {
				return
			}
		}
	}
}

// Put reads size bytes from r and stores them under key, replacing any
// object there. Nothing is stored unless all size bytes arrive.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: put %q: %w", key, err)
	}
	if size < 0 {
		return fmt.Errorf("mem: put %q: negative size %d", key, size)
	}
	data, err := objstore.ReadFull(r, size)
	if err != nil {
		return fmt.Errorf("mem: put %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: put %q: %w", key, err)
	}
	b.mu.Lock()
	b.mu.objects[key] = object{data: data, modTime: b.now()}
	b.mu.Unlock()
	return nil
}

// Delete removes key; a missing key is not an error.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: delete %q: %w", key, err)
	}
	b.mu.Lock()
	delete(b.mu.objects, key)
	b.mu.Unlock()
	return nil
}

// Close does nothing; the objects stay readable.
func (b *Bucket) Close() error { return nil }
