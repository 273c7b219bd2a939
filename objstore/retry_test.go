package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/mem"
)

// flaky wraps a bucket and fails calls from a script: fail[op] holds the
// errors the next calls of op return, in order.
type flaky struct {
	objstore.Bucket
	mu    sync.Mutex
	fail  map[string][]error
	calls map[string]int
	// listFailAfter makes List fail (with listErr) after yielding this
	// many objects, once.
	listFailAfter int
	listErr       error
	// putBodies records what each Put read.
	putBodies [][]byte
}

func newFlaky() *flaky {
	return &flaky{Bucket: mem.New(nil), fail: map[string][]error{}, calls: map[string]int{}, listFailAfter: -1}
}

func (f *flaky) next(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if errs := f.fail[op]; len(errs) > 0 {
		f.fail[op] = errs[1:]
		return errs[0]
	}
	return nil
}

func (f *flaky) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := f.next("get"); err != nil {
		return nil, err
	}
	return f.Bucket.Get(ctx, key)
}

func (f *flaky) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	if err := f.next("stat"); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return f.Bucket.Stat(ctx, key)
}

func (f *flaky) Delete(ctx context.Context, key string) error {
	if err := f.next("delete"); err != nil {
		return err
	}
	return f.Bucket.Delete(ctx, key)
}

func (f *flaky) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	// Read the body first, as a backend would send it, then fail.
	data, rerr := io.ReadAll(io.LimitReader(r, size))
	f.mu.Lock()
	f.putBodies = append(f.putBodies, data)
	f.mu.Unlock()
	if err := f.next("put"); err != nil {
		return err
	}
	if rerr != nil {
		return rerr
	}
	return f.Bucket.Put(ctx, key, bytes.NewReader(data), size)
}

func (f *flaky) List(ctx context.Context, prefix string) iter.Seq2[objstore.ObjectInfo, error] {
	return func(yield func(objstore.ObjectInfo, error) bool) {
		f.next("list")
		n := 0
		for info, err := range f.Bucket.List(ctx, prefix) {
			f.mu.Lock()
			fail := f.listFailAfter >= 0 && n == f.listFailAfter
			if fail {
				f.listFailAfter = -1
			}
			f.mu.Unlock()
			if fail {
				yield(objstore.ObjectInfo{}, f.listErr)
				return
			}
			if !yield(info, err) {
				return
			}
			n++
		}
	}
}

var (
	errSlowDown = &objstore.StatusError{Status: 503, Code: "SlowDown", Err: errors.New("please reduce your request rate")}
	errDenied   = &objstore.StatusError{Status: 403, Code: "AccessDenied", Err: errors.New("access denied")}
)

// retryCfg returns a config whose sleeps are recorded, not slept.
func retryCfg(sleeps *[]time.Duration) objstore.RetryConfig {
	c := objstore.RetryConfig{MaxAttempts: 4, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, MaxElapsed: time.Minute}
	objstore.SetRetryHooks(&c, func(ctx context.Context, d time.Duration) error {
		*sleeps = append(*sleeps, d)
		return ctx.Err()
	}, func() float64 { return 1 })
	return c
}

func TestRetryClassification(t *testing.T) {
	tests := []struct {
		name      string
		errs      []error
		wantCalls int
		wantErr   error // nil: success
	}{
		{"success", nil, 1, nil},
		{"slowdown twice", []error{errSlowDown, errSlowDown}, 3, nil},
		{"conn refused", []error{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}, 2, nil},
		{"reset", []error{fmt.Errorf("read: %w", syscall.ECONNRESET)}, 2, nil},
		{"not found", []error{objstore.ErrNotExist}, 1, objstore.ErrNotExist},
		{"denied", []error{errDenied}, 1, errDenied},
		{"canceled", []error{context.Canceled}, 1, context.Canceled},
		{"exhausted", []error{errSlowDown, errSlowDown, errSlowDown, errSlowDown, errSlowDown}, 4, errSlowDown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFlaky()
			ctx := t.Context()
			if err := f.Bucket.Put(ctx, "k", strings.NewReader("v"), 1); err != nil {
				t.Fatal(err)
			}
			f.fail["stat"] = tt.errs
			var sleeps []time.Duration
			b := objstore.WithRetry(f, retryCfg(&sleeps))
			_, err := b.Stat(ctx, "k")
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Stat = %v, want %v", err, tt.wantErr)
			}
			if f.calls["stat"] != tt.wantCalls {
				t.Errorf("calls = %d, want %d", f.calls["stat"], tt.wantCalls)
			}
			if len(sleeps) != tt.wantCalls-1 {
				t.Errorf("sleeps = %v, want %d", sleeps, tt.wantCalls-1)
			}
		})
	}
}

func TestRetryBackoffGrowsAndCaps(t *testing.T) {
	f := newFlaky()
	f.fail["delete"] = slices.Repeat([]error{errSlowDown}, 10)
	var sleeps []time.Duration
	cfg := retryCfg(&sleeps)
	cfg.MaxAttempts = 5
	err := objstore.WithRetry(f, cfg).Delete(t.Context(), "k")
	if err == nil || !strings.Contains(err.Error(), "giving up after 5 attempts") {
		t.Fatalf("Delete = %v", err)
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}
	if !slices.Equal(sleeps, want) {
		t.Errorf("sleeps = %v, want %v", sleeps, want)
	}
}

func TestRetryJitterIsBetweenHalfAndFull(t *testing.T) {
	f := newFlaky()
	f.fail["delete"] = []error{errSlowDown}
	var sleeps []time.Duration
	cfg := retryCfg(&sleeps)
	objstore.SetRetryHooks(&cfg, func(ctx context.Context, d time.Duration) error {
		sleeps = append(sleeps, d)
		return nil
	}, func() float64 { return 0 })
	if err := objstore.WithRetry(f, cfg).Delete(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sleeps, []time.Duration{50 * time.Millisecond}) {
		t.Errorf("sleeps = %v", sleeps)
	}
}

func TestRetryMaxElapsed(t *testing.T) {
	f := newFlaky()
	f.fail["delete"] = slices.Repeat([]error{errSlowDown}, 100)
	cfg := objstore.RetryConfig{MaxAttempts: 100, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxElapsed: 100 * time.Millisecond}
	start := time.Now()
	err := objstore.WithRetry(f, cfg).Delete(t.Context(), "k")
	if !errors.Is(err, errSlowDown) || !strings.Contains(err.Error(), "giving up") {
		t.Fatalf("Delete = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s, want about 100ms", d)
	}
	if f.calls["delete"] > 8 {
		t.Errorf("%d calls within 100ms of 20ms waits", f.calls["delete"])
	}
}

func TestRetryCancelDuringBackoff(t *testing.T) {
	f := newFlaky()
	f.fail["delete"] = slices.Repeat([]error{errSlowDown}, 10)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	cfg := objstore.RetryConfig{InitialBackoff: 10 * time.Second, MaxBackoff: 10 * time.Second, MaxElapsed: time.Minute}
	start := time.Now()
	err := objstore.WithRetry(f, cfg).Delete(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errSlowDown) {
		t.Fatalf("Delete = %v, want deadline exceeded wrapping the last error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s", d)
	}
}

type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestRetryPutBodies(t *testing.T) {
	data := []byte("0123456789")
	tests := []struct {
		name      string
		body      func() io.Reader
		maxBuf    int64
		wantCalls int
	}{
		{"seeker rewound", func() io.Reader {
			r := bytes.NewReader(append([]byte("xx"), data...))
			r.Seek(2, io.SeekStart)
			return r
		}, 0, 3},
		{"stream buffered", func() io.Reader { return onlyReader{bytes.NewReader(data)} }, 0, 3},
		{"stream too large to buffer", func() io.Reader { return onlyReader{bytes.NewReader(data)} }, 5, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFlaky()
			f.fail["put"] = []error{errSlowDown, errSlowDown}
			var sleeps []time.Duration
			cfg := retryCfg(&sleeps)
			cfg.MaxBufferedPut = tt.maxBuf
			err := objstore.WithRetry(f, cfg).Put(t.Context(), "k", tt.body(), int64(len(data)))
			if f.calls["put"] != tt.wantCalls {
				t.Fatalf("calls = %d, want %d (err %v)", f.calls["put"], tt.wantCalls, err)
			}
			if tt.wantCalls == 1 {
				if !errors.Is(err, errSlowDown) {
					t.Fatalf("Put = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, body := range f.putBodies {
				if !bytes.Equal(body, data) {
					t.Errorf("attempt %d sent %q", i+1, body)
				}
			}
		})
	}
}

func TestRetryPutShortStreamNotRetried(t *testing.T) {
	f := newFlaky()
	var sleeps []time.Duration
	err := objstore.WithRetry(f, retryCfg(&sleeps)).Put(t.Context(), "k", onlyReader{strings.NewReader("abc")}, 10)
	if !errors.Is(err, objstore.ErrSizeMismatch) {
		t.Fatalf("Put = %v", err)
	}
	if f.calls["put"] != 0 || len(sleeps) != 0 {
		t.Errorf("calls %d, sleeps %v", f.calls["put"], sleeps)
	}
}

func TestRetryListRestartsWithoutDuplicates(t *testing.T) {
	f := newFlaky()
	ctx := t.Context()
	var want []string
	for i := range 10 {
		k := fmt.Sprintf("k%02d", i)
		want = append(want, k)
		if err := f.Bucket.Put(ctx, k, strings.NewReader("v"), 1); err != nil {
			t.Fatal(err)
		}
	}
	f.listFailAfter, f.listErr = 4, errSlowDown
	var sleeps []time.Duration
	var got []string
	for info, err := range objstore.WithRetry(f, retryCfg(&sleeps)).List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, info.Key)
	}
	if !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	if f.calls["list"] != 2 {
		t.Errorf("list calls = %d, want 2", f.calls["list"])
	}
}

func TestRetryListPermanentErrorAndEarlyStop(t *testing.T) {
	f := newFlaky()
	ctx := t.Context()
	for i := range 5 {
		if err := f.Bucket.Put(ctx, fmt.Sprint(i), strings.NewReader("v"), 1); err != nil {
			t.Fatal(err)
		}
	}
	var sleeps []time.Duration
	b := objstore.WithRetry(f, retryCfg(&sleeps))
	n := 0
	for _, err := range b.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 2 {
			break
		}
	}
	f.listFailAfter, f.listErr = 1, errDenied
	var lastErr error
	for _, err := range b.List(ctx, "") {
		lastErr = err
	}
	if !errors.Is(lastErr, errDenied) {
		t.Errorf("List error = %v, want AccessDenied", lastErr)
	}
	if f.calls["list"] != 2 {
		t.Errorf("list calls = %d, want 2 (no retry of a 403)", f.calls["list"])
	}
}

func TestRetryConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		cfg objstore.RetryConfig
		ok  bool
	}{
		{objstore.RetryConfig{}, true},
		{objstore.DefaultRetryConfig(), true},
		{objstore.RetryConfig{MaxAttempts: -1}, false},
		{objstore.RetryConfig{InitialBackoff: -time.Second}, false},
		{objstore.RetryConfig{InitialBackoff: 2 * time.Second, MaxBackoff: time.Second}, false},
		{objstore.RetryConfig{MaxBufferedPut: -1}, false},
	} {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("Validate(%+v) = %v", tt.cfg, err)
		}
	}
}

// TestListBudgetCountsStoreFailuresOnly: the caller's time per key (the
// orphan sweep looks each one up) does not count against MaxElapsed: a
// transient failure after the listing got further gets a fresh budget,
// where it used to end a long listing for good.
func TestListBudgetCountsStoreFailuresOnly(t *testing.T) {
	f := newFlaky()
	for i := range 5 {
		if err := f.Bucket.Put(context.Background(), fmt.Sprintf("k%d", i), bytes.NewReader(nil), 0); err != nil {
			t.Fatal(err)
		}
	}
	f.listFailAfter, f.listErr = 3, errSlowDown
	r := objstore.WithRetry(f, objstore.RetryConfig{MaxElapsed: 100 * time.Millisecond, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	var keys []string
	for info, err := range r.List(context.Background(), "") {
		if err != nil {
			t.Fatalf("list ended after %v: %v", keys, err)
		}
		keys = append(keys, info.Key)
		time.Sleep(50 * time.Millisecond) // the caller's work per key
	}
	if len(keys) != 5 {
		t.Fatalf("listed %v, want 5 keys once each", keys)
	}
}
