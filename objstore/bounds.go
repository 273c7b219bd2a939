package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"
	"time"
)

// Bounds says how long a call on a bucket from WithBounds may take. A
// transfer whose connection stops moving mid-body is otherwise given up
// only when TCP gives up, many minutes later (an HTTP client's deadline
// covers the headers, not the body), and a background worker blocked on
// it does nothing else meanwhile.
type Bounds struct {
	// Call bounds Stat and Delete, the wait for a reader's next bytes (a
	// reader from Get or GetRange fails once Call passes with no byte
	// arriving, however long the whole read takes) and a listing's wait
	// for its next key (a List fails once Call passes with no key
	// arriving, which covers each page's fetch).
	Call time.Duration
	// Put bounds a Put: Call plus PutPerMiB for each MiB of it.
	PutPerMiB time.Duration
}

// DefaultBounds are the bounds of background work on a bucket: a minute
// without progress, as the WAL bounds its uploads (flush.Config's
// PutTimeout).
var DefaultBounds = Bounds{Call: time.Minute, PutPerMiB: time.Second}

// Put is how long a Put of size bytes may take.
func (bd Bounds) Put(size int64) time.Duration {
	return bd.Call + time.Duration(size>>20)*bd.PutPerMiB
}

// ErrStalled reports a call that WithBounds gave up on.
var ErrStalled = errors.New("objstore: call stalled")

// WithBounds returns a Bucket whose calls fail with an error wrapping
// ErrStalled instead of hanging, as Bounds says. A List is bounded only
// while it waits for the store: the caller's time with each key (a sweep
// looks each one up) counts against no bound. Closing the returned bucket
// closes b.
func WithBounds(b Bucket, bd Bounds) Bucket {
	return &boundedBucket{b: b, bd: bd}
}

type boundedBucket struct {
	b  Bucket
	bd Bounds
}

var _ Bucket = (*boundedBucket)(nil)

func (s *boundedBucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.open(ctx, func(ctx context.Context) (io.ReadCloser, error) { return s.b.Get(ctx, key) })
}

func (s *boundedBucket) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	return s.open(ctx, func(ctx context.Context) (io.ReadCloser, error) { return s.b.GetRange(ctx, key, off, length) })
}

// open runs get under a stall watchdog that the returned reader keeps
// alive while bytes arrive.
func (s *boundedBucket) open(ctx context.Context, get func(context.Context) (io.ReadCloser, error)) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	r := &stallReader{cancel: cancel, d: s.bd.Call}
	r.timer = time.AfterFunc(s.bd.Call, r.stall)
	rc, err := get(ctx)
	if err != nil {
		r.timer.Stop()
		cancel(nil)
		return nil, stalledErr(ctx, err)
	}
	r.rc, r.ctx = rc, ctx
	return r, nil
}

// stallReader cancels its read once no byte has arrived for d.
type stallReader struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	d      time.Duration
	timer  *time.Timer
	once   sync.Once
}

func (r *stallReader) stall() {
	r.cancel(fmt.Errorf("%w: no bytes for %v", ErrStalled, r.d))
}

func (r *stallReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if n > 0 {
		r.timer.Reset(r.d)
	}
	if err != nil && err != io.EOF {
		err = stalledErr(r.ctx, err)
	}
	return n, err
}

func (r *stallReader) Close() error {
	r.once.Do(func() {
		r.timer.Stop()
		r.cancel(nil)
	})
	return r.rc.Close()
}

// stalledErr says so when err came of a stall.
func stalledErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrStalled) && !errors.Is(err, ErrStalled) {
		return fmt.Errorf("%w: %w", cause, err)
	}
	return err
}

func (s *boundedBucket) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	ctx, cancel := deadline(ctx, s.bd.Call)
	defer cancel()
	info, err := s.b.Stat(ctx, key)
	return info, stalledErr(ctx, err)
}

// List runs the listing under a stall watchdog that is stopped while the
// caller holds a key: an HTTP client's header timeout does not cover a
// page whose body stops moving, so without it a stalled page held the
// listing, and the pass that ran it, until TCP gave up.
func (s *boundedBucket) List(ctx context.Context, prefix string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		timer := time.AfterFunc(s.bd.Call, func() {
			cancel(fmt.Errorf("%w: no key for %v", ErrStalled, s.bd.Call))
		})
		defer timer.Stop()
		for info, err := range s.b.List(ctx, prefix) {
			timer.Stop()
			if err != nil {
				yield(ObjectInfo{}, stalledErr(ctx, err))
				return
			}
			if !yield(info, nil) {
				return
			}
			timer.Reset(s.bd.Call)
		}
		if cause := context.Cause(ctx); errors.Is(cause, ErrStalled) {
			// The backend ended quietly when cancelled: the listing is
			// cut, not whole.
			yield(ObjectInfo{}, cause)
		}
	}
}

func (s *boundedBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	ctx, cancel := deadline(ctx, s.bd.Put(size))
	defer cancel()
	return stalledErr(ctx, s.b.Put(ctx, key, r, size))
}

func (s *boundedBucket) Delete(ctx context.Context, key string) error {
	ctx, cancel := deadline(ctx, s.bd.Call)
	defer cancel()
	return stalledErr(ctx, s.b.Delete(ctx, key))
}

func (s *boundedBucket) Close() error { return s.b.Close() }

// deadline is a context that ends with an ErrStalled cause after d.
func deadline(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, d, fmt.Errorf("%w: %v passed", ErrStalled, d))
}

// Unwrap returns the bucket this one wraps (see CheckBucket).
func (s *boundedBucket) Unwrap() Bucket { return s.b }
