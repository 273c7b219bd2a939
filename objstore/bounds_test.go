package objstore_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/mem"
)

// stallingBucket stalls as a connection that stops moving does: every call
// on a key starting with "stall" blocks until its context ends, and a
// reader of one gives its first byte and then blocks. A "slow" key's
// reader gives a byte every 10 ms.
type stallingBucket struct{ objstore.Bucket }

func (b stallingBucket) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := b.Bucket.GetRange(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasPrefix(key, "stall"):
		return &stallBody{ctx: ctx, ReadCloser: rc}, nil
	case strings.HasPrefix(key, "slow"):
		return slowBody{ReadCloser: rc}, nil
	}
	return rc, nil
}

func (b stallingBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if strings.HasPrefix(key, "stall") {
		<-ctx.Done()
		return ctx.Err()
	}
	return b.Bucket.Put(ctx, key, r, size)
}

func (b stallingBucket) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	if strings.HasPrefix(key, "stall") {
		<-ctx.Done()
		return objstore.ObjectInfo{}, ctx.Err()
	}
	return b.Bucket.Stat(ctx, key)
}

func (b stallingBucket) Delete(ctx context.Context, key string) error {
	if strings.HasPrefix(key, "stall") {
		<-ctx.Done()
		return ctx.Err()
	}
	return b.Bucket.Delete(ctx, key)
}

type stallBody struct {
	ctx context.Context
	io.ReadCloser
	sent bool
}

func (s *stallBody) Read(p []byte) (int, error) {
	if !s.sent && len(p) > 0 {
		// The first byte comes at once; then nothing.
		s.sent = true
		return s.ReadCloser.Read(p[:1])
	}
	<-s.ctx.Done()
	return 0, s.ctx.Err()
}

type slowBody struct{ io.ReadCloser }

func (s slowBody) Read(p []byte) (int, error) {
	time.Sleep(10 * time.Millisecond)
	if len(p) > 1 {
		p = p[:1]
	}
	return s.ReadCloser.Read(p)
}

func TestBoundsStall(t *testing.T) {
	ctx := t.Context()
	inner := mem.New(nil)
	for _, k := range []string{"stall/1", "slow/1"} {
		if err := inner.Put(ctx, k, strings.NewReader("0123456789"), 10); err != nil {
			t.Fatal(err)
		}
	}
	b := objstore.WithBounds(stallingBucket{inner}, objstore.Bounds{Call: 50 * time.Millisecond, PutPerMiB: time.Millisecond})

	stalled := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, objstore.ErrStalled) {
			t.Errorf("%s: err = %v, want ErrStalled", what, err)
		}
	}
	start := time.Now()
	rc, err := b.GetRange(ctx, "stall/1", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	stalled("read of a stalled body", err)
	if string(got) != "0" {
		t.Errorf("stalled read got %q before stalling, want the first byte", got)
	}
	stalled("put", b.Put(ctx, "stall/2", strings.NewReader("x"), 1))
	_, err = b.Stat(ctx, "stall/1")
	stalled("stat", err)
	stalled("delete", b.Delete(ctx, "stall/1"))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("four stalled calls took %v", d)
	}

	// A body that keeps moving is read whole however long it takes: the
	// bound is on the wait for the next bytes.
	rc, err = b.GetRange(ctx, "slow/1", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	start = time.Now()
	got, err = io.ReadAll(rc)
	if err != nil || string(got) != "0123456789" {
		t.Errorf("slow read = %q, %v", got, err)
	}
	if time.Since(start) < 60*time.Millisecond {
		t.Errorf("slow read took %v: the test needs it to outlast the bound", time.Since(start))
	}

	// The caller's own cancellation is not a stall.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Put(cctx, "stall/3", strings.NewReader("x"), 1); errors.Is(err, objstore.ErrStalled) || err == nil {
		t.Errorf("cancelled put: err = %v, want the caller's cancellation", err)
	}
}
