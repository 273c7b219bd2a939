package objstore_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/file"
	"github.com/floebroker/floe/objstore/mem"
	"github.com/floebroker/floe/objstore/objstoretest"
)

// slowBucket's readers of a "slow" key give a byte every 10 ms.
type slowBucket struct{ objstore.Bucket }

func (b slowBucket) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := b.Bucket.GetRange(ctx, key, off, length)
	if err != nil || !strings.HasPrefix(key, "slow") {
		return rc, err
	}
	return slowBody{ReadCloser: rc}, nil
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
	b := objstore.WithBounds(objstoretest.Stalling{Bucket: slowBucket{inner}, Prefix: "stall"}, objstore.Bounds{Call: 50 * time.Millisecond, PutPerMiB: time.Millisecond})

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

// TestBoundsListStall: a listing whose store stops answering midway fails
// after the bound (it hung until TCP gave up, and the orphan sweep and
// everything after it in the compaction pass with it), while the caller's
// time with each key counts against no bound.
func TestBoundsListStall(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	inner := mem.New(nil)
	for _, k := range []string{"a/1", "a/2", "stall/1"} {
		if err := inner.Put(ctx, k, strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	const call = 50 * time.Millisecond
	b := objstore.WithBounds(objstore.WithRetry(objstoretest.Stalling{Bucket: inner, Prefix: "stall"}, objstore.RetryConfig{}), objstore.Bounds{Call: call})
	start := time.Now()
	var keys []string
	var lerr error
	for o, err := range b.List(ctx, "") {
		if err != nil {
			lerr = err
			break
		}
		keys = append(keys, o.Key)
		time.Sleep(2 * call) // the caller's time: not the store's
	}
	if !errors.Is(lerr, objstore.ErrStalled) {
		t.Errorf("stalled listing: err = %v after %v, want ErrStalled", lerr, time.Since(start))
	}
	if strings.Join(keys, ",") != "a/1,a/2" {
		t.Errorf("listed %v before the stall, want a/1 and a/2", keys)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stalled listing took %v", d)
	}
}

// TestBoundsListSlowCaller: a listing of a store that answers is whole
// however long the caller takes over each key, on the file and mem
// backends too (which fetch no pages).
func TestBoundsListSlowCaller(t *testing.T) {
	ctx := t.Context()
	for name, inner := range map[string]objstore.Bucket{"mem": mem.New(nil), "file": mustFile(t)} {
		t.Run(name, func(t *testing.T) {
			want := []string{"a/1", "a/2", "b/1"}
			for _, k := range want {
				if err := inner.Put(ctx, k, strings.NewReader("x"), 1); err != nil {
					t.Fatal(err)
				}
			}
			const call = 30 * time.Millisecond
			b := objstore.WithBounds(inner, objstore.Bounds{Call: call})
			var keys []string
			for o, err := range b.List(ctx, "") {
				if err != nil {
					t.Fatalf("after %v: %v", keys, err)
				}
				keys = append(keys, o.Key)
				time.Sleep(2 * call)
			}
			if strings.Join(keys, ",") != strings.Join(want, ",") {
				t.Errorf("listed %v, want %v", keys, want)
			}
			// A caller that stops early ends the listing quietly.
			for range b.List(ctx, "") {
				break
			}
		})
	}
}

func mustFile(t *testing.T) objstore.Bucket {
	b, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b
}
