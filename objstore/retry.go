package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math/rand/v2"
	"time"
)

// RetryConfig bounds how WithRetry retries. The zero value is usable:
// every zero field takes its default.
type RetryConfig struct {
	// MaxAttempts is the most calls made for one operation, the first
	// included. 1 disables retries. Default 5.
	MaxAttempts int
	// InitialBackoff is the wait before the first retry; each later wait
	// doubles, up to MaxBackoff. Waits are jittered to between half and all
	// of the nominal value so agents that failed together do not retry in
	// lockstep. Default 100ms.
	InitialBackoff time.Duration
	// MaxBackoff caps one wait. Default 2s.
	MaxBackoff time.Duration
	// MaxElapsed caps the time from the first call to the start of the
	// last retry, so an unreachable service fails in bounded time whatever
	// MaxAttempts says. Default 15s.
	MaxElapsed time.Duration
	// MaxBufferedPut is the largest Put body WithRetry copies into memory
	// so it can be re-sent when the caller's reader is not an io.Seeker.
	// Larger non-seekable bodies are tried once. Default 16 MiB.
	MaxBufferedPut int64
	// Logger receives one debug line per retry. Nil discards.
	Logger *slog.Logger

	// Test hooks: a sleep honouring ctx and a jitter source in [0, 1).
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func() float64
}

// DefaultRetryConfig returns the defaults a zero RetryConfig stands for.
func DefaultRetryConfig() RetryConfig {
	return RetryConfig{}.withDefaults()
}

func (c RetryConfig) withDefaults() RetryConfig {
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.InitialBackoff == 0 {
		c.InitialBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 2 * time.Second
	}
	if c.MaxElapsed == 0 {
		c.MaxElapsed = 15 * time.Second
	}
	if c.MaxBufferedPut == 0 {
		c.MaxBufferedPut = 16 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.sleep == nil {
		c.sleep = sleepCtx
	}
	if c.jitter == nil {
		c.jitter = rand.Float64
	}
	return c
}

// Validate reports a setting that cannot work.
func (c RetryConfig) Validate() error {
	switch {
	case c.MaxAttempts < 0:
		return fmt.Errorf("objstore: retry: max attempts %d < 0", c.MaxAttempts)
	case c.InitialBackoff < 0, c.MaxBackoff < 0, c.MaxElapsed < 0:
		return errors.New("objstore: retry: negative duration")
	case c.MaxBackoff != 0 && c.InitialBackoff > c.MaxBackoff:
		return fmt.Errorf("objstore: retry: initial backoff %s > max backoff %s", c.InitialBackoff, c.MaxBackoff)
	case c.MaxBufferedPut < 0:
		return fmt.Errorf("objstore: retry: max buffered put %d < 0", c.MaxBufferedPut)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// WithRetry returns a Bucket that retries b's transient failures (see
// IsTransient) with jittered exponential backoff, within cfg's bounds on
// attempts and elapsed time. Missing objects, bad ranges, short bodies,
// 4xx answers and the caller's cancellation are returned at once.
//
// What is retried:
//   - Get, GetRange, Stat, Delete: the whole call. A Get whose body fails
//     mid-read is not resumed; the reader returns the error.
//   - Put: only when the body can be sent again: r is an io.Seeker (it is
//     rewound to where Put found it) or size <= cfg.MaxBufferedPut (the body
//     is read into memory first). Otherwise Put is tried once.
//   - List: a failed page restarts the listing and skips the keys already
//     yielded, so the caller still sees each key once, in order.
//
// A backend must configure its SDK not to retry on its own, or the two
// layers multiply into a retry storm. cfg must pass Validate.
func WithRetry(b Bucket, cfg RetryConfig) Bucket {
	return &retryBucket{b: b, cfg: cfg.withDefaults()}
}

type retryBucket struct {
	b   Bucket
	cfg RetryConfig
}

var _ Bucket = (*retryBucket)(nil)

// do calls f until it succeeds, fails for good or the budget runs out.
func (r *retryBucket) do(ctx context.Context, op, key string, f func() error) error {
	start := time.Now()
	backoff := r.cfg.InitialBackoff
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || !IsTransient(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (after attempt %d: %w)", ctx.Err(), attempt, err)
		}
		wait := backoff/2 + time.Duration(r.cfg.jitter()*float64(backoff/2))
		elapsed := time.Since(start)
		if attempt >= r.cfg.MaxAttempts || elapsed+wait > r.cfg.MaxElapsed {
			return fmt.Errorf("objstore: %s %q: giving up after %d attempts in %s: %w",
				op, key, attempt, elapsed.Round(time.Millisecond), err)
		}
		r.cfg.Logger.Debug("objstore: retrying", "op", op, "key", key, "attempt", attempt, "wait", wait, "err", err)
		if serr := r.cfg.sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%w (after attempt %d: %w)", serr, attempt, err)
		}
		backoff = min(backoff*2, r.cfg.MaxBackoff)
	}
}

func (r *retryBucket) Get(ctx context.Context, key string) (rc io.ReadCloser, err error) {
	err = r.do(ctx, "get", key, func() error {
		rc, err = r.b.Get(ctx, key)
		return err
	})
	return rc, err
}

func (r *retryBucket) GetRange(ctx context.Context, key string, off, length int64) (rc io.ReadCloser, err error) {
	err = r.do(ctx, "get range", key, func() error {
		rc, err = r.b.GetRange(ctx, key, off, length)
		return err
	})
	return rc, err
}

func (r *retryBucket) Stat(ctx context.Context, key string) (info ObjectInfo, err error) {
	err = r.do(ctx, "stat", key, func() error {
		info, err = r.b.Stat(ctx, key)
		return err
	})
	return info, err
}

func (r *retryBucket) Delete(ctx context.Context, key string) error {
	return r.do(ctx, "delete", key, func() error {
		return r.b.Delete(ctx, key)
	})
}

func (r *retryBucket) Put(ctx context.Context, key string, body io.Reader, size int64) error {
	seeker, ok := body.(io.Seeker)
	var start int64
	if ok {
		var err error
		if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			ok = false // a pipe or socket posing as a Seeker
		}
	}
	if !ok {
		if size > r.cfg.MaxBufferedPut {
			return r.b.Put(ctx, key, body, size)
		}
		buf, err := ReadFull(body, size)
		if err != nil {
			return fmt.Errorf("objstore: put %q: read body: %w", key, err)
		}
		br := bytes.NewReader(buf)
		body, seeker, start = br, br, 0
	}
	first := true
	return r.do(ctx, "put", key, func() error {
		if !first {
			if _, err := seeker.Seek(start, io.SeekStart); err != nil {
				return fmt.Errorf("objstore: put %q: rewind body: %w", key, err)
			}
		}
		first = false
		return r.b.Put(ctx, key, body, size)
	})
}

func (r *retryBucket) List(ctx context.Context, prefix string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		var last string
		seen := false
		for {
			err := r.do(ctx, "list", prefix, func() error {
				progressed := false
				for info, err := range r.b.List(ctx, prefix) {
					if err != nil {
						if progressed && IsTransient(err) {
							return listProgress{err}
						}
						return err
					}
					if seen && info.Key <= last {
						continue // yielded before a restart
					}
					if !yield(info, nil) {
						return errStopped
					}
					last, seen, progressed = info.Key, true, true
				}
				return nil
			})
			var p listProgress
			if errors.As(err, &p) {
				// The listing got further since its last failure: a fresh
				// budget, which so counts the store's failures, not the
				// time the caller spends on each key (the orphan sweep
				// looks every key up), against MaxElapsed.
				r.cfg.Logger.Debug("objstore: retrying list after progress", "prefix", prefix, "err", p.err)
				if serr := r.cfg.sleep(ctx, r.cfg.InitialBackoff); serr != nil {
					yield(ObjectInfo{}, fmt.Errorf("%w (listing %q: %w)", serr, prefix, p.err))
					return
				}
				continue
			}
			if err != nil && err != errStopped {
				yield(ObjectInfo{}, err)
			}
			return
		}
	}
}

// listProgress is a transient List error after the listing yielded keys
// in the same attempt: List starts a fresh retry budget for it. It is not
// transient itself, so do hands it back at once.
type listProgress struct{ err error }

func (p listProgress) Error() string { return p.err.Error() }

// errStopped ends a List whose caller stopped iterating; it is not transient
// so do returns it at once.
var errStopped = errors.New("objstore: list stopped by caller")

func (r *retryBucket) Close() error { return r.b.Close() }

// Unwrap returns the bucket this one wraps (see CheckBucket).
func (r *retryBucket) Unwrap() Bucket { return r.b }
