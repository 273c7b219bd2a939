// Package objstoretest is the acceptance suite every objstore.Bucket
// backend runs: the same named subtests against mem, file, MinIO, S3 (on
// MinIO) and GCS (on fake-gcs-server), so the backends cannot drift apart
// on the contract in objstore.Bucket's documentation.
//
// It is imported by tests only.
package objstoretest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/floebroker/floe/objstore"
)

// LargeSize is the size of the suite's large objects. Backends that split
// uploads into parts must lower their multipart threshold and part size
// below it in the buckets they give Run (5 MiB is S3's smallest part), so
// the multipart path is exercised.
const LargeSize = 20<<20 + 12345

// ListSize is how many objects the pagination test lists. Backends with a
// list page size must set it well below this.
const ListSize = 25

// Run runs the suite. newBucket is called once per subtest and must return
// an empty bucket that it cleans up itself (t.Cleanup); Run closes it.
func Run(t *testing.T, newBucket func(t *testing.T) objstore.Bucket) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b objstore.Bucket)
	}{
		{"RoundTrip", testRoundTrip},
		{"EmptyObject", testEmptyObject},
		{"Ranges", testRanges},
		{"LargeObject", testLargeObject},
		{"ListOrderAndPrefixes", testList},
		{"ListEarlyStop", testListEarlyStop},
		{"DeleteIdempotent", testDelete},
		{"NotFound", testNotFound},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ContextCanceled", testContextCanceled},
		{"PutCanceledMidway", testPutCanceledMidway},
		{"ShortReader", testShortReader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBucket(t)
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, b)
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// onlyReader hides every method but Read, so backends take their
// streaming path.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func mustPut(t *testing.T, ctx context.Context, b objstore.Bucket, key string, data []byte) {
	t.Helper()
	if err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

func readAll(t *testing.T, rc io.ReadCloser, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return data
}

func mustGet(t *testing.T, ctx context.Context, b objstore.Bucket, key string) []byte {
	t.Helper()
	rc, err := b.Get(ctx, key)
	return readAll(t, rc, err)
}

func wantNotExist(t *testing.T, ctx context.Context, b objstore.Bucket, key string) {
	t.Helper()
	if _, err := b.Stat(ctx, key); !errors.Is(err, objstore.ErrNotExist) {
		t.Fatalf("Stat(%q) = %v, want ErrNotExist", key, err)
	}
}

func testRoundTrip(t *testing.T, b objstore.Bucket) {
	ctx := ctxFor(t)
	before := time.Now().Add(-time.Minute)
	objects := map[string][]byte{
		"one":                            []byte("hello, floe"),
		"v1/3f/cluster-a/01J0000000.seg": randBytes(64<<10, 1),
		"a/b/c/d/e":                      randBytes(1, 2),
		"odd chars_-.=+@":                randBytes(100, 3),
	}
	for k, v := range objects {
		mustPut(t, ctx, b, k, v)
	}
	for k, v := range objects {
		if got := mustGet(t, ctx, b, k); !bytes.Equal(got, v) {
			t.Errorf("Get(%q): got %d bytes, want %d (content differs: %v)", k, len(got), len(v), len(got) == len(v))
		}
		info, err := b.Stat(ctx, k)
		if err != nil {
			t.Fatalf("Stat(%q): %v", k, err)
		}
		if info.Size != int64(len(v)) || info.Key != k {
			t.Errorf("Stat(%q) = %+v, want key %q size %d", k, info, k, len(v))
		}
		if info.LastModified.Before(before) || info.LastModified.After(time.Now().Add(time.Minute)) {
			t.Errorf("Stat(%q).LastModified = %v, not around now", k, info.LastModified)
		}
	}
	// Immutable objects may still be re-put with the same bytes (a retry
	// after an ambiguous failure).
	mustPut(t, ctx, b, "one", objects["one"])
	if got := mustGet(t, ctx, b, "one"); !bytes.Equal(got, objects["one"]) {
		t.Errorf("Get after re-put = %q", got)
	}
}

func testEmptyObject(t *testing.T, b objstore.Bucket) {
	ctx := ctxFor(t)
	if err := b.Put(ctx, "empty", bytes.NewReader(nil), 0); err != nil {
		t.Fatalf("Put empty: %v", err)
	}
	if got := mustGet(t, ctx, b, "empty"); len(got) != 0 {
		t.Errorf("Get empty = %d bytes", len(got))
	}
	info, err := b.Stat(ctx, "empty")
	if err != nil || info.Size != 0 {
		t.Errorf("Stat empty = %+v, %v", info, err)
	}
	for _, length := range []int64{-1, 0, 10} {
		rc, err := b.GetRange(ctx, "empty", 0, length)
		if got := readAll(t, rc, err); len(got) != 0 {
			t.Errorf("GetRange(empty, 0, %d) = %d bytes", length, len(got))
		}
	}
	if _, err := b.GetRange(ctx, "empty", 1, 1); !errors.Is(err, objstore.ErrInvalidRange) {
		t.Errorf("GetRange(empty, 1, 1) = %v, want ErrInvalidRange", err)
	}
	var n int
	for info, err := range b.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if info.Key != "empty" || info.Size != 0 {
			t.Errorf("List: %+v", info)
		}
	}
	if n != 1 {
		t.Errorf("List found %d objects, want 1", n)
	}
}

func testRanges(t *testing.T, b objstore.Bucket) {
	ctx := ctxFor(t)
	data := randBytes(1000, 4)
	mustPut(t, ctx, b, "r", data)
	tests := []struct {
		off, length int64
		want        []byte // nil: ErrInvalidRange
	}{
		{0, 1, data[:1]},
		{0, -1, data},
		{0, 1000, data},
		{0, 1001, data},
		{0, 0, []byte{}},
		{10, 0, []byte{}},
		{1, 998, data[1:999]},
		{500, 10000, data[500:]},
		{999, 1, data[999:]},
		{999, -1, data[999:]},
		{999, 2, data[999:]},
		{1000, 1, nil},
		{1000, -1, nil},
		{5000, 1, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("off=%d,len=%d", tt.off, tt.length), func(t *testing.T) {
			rc, err := b.GetRange(ctx, "r", tt.off, tt.length)
			if tt.want == nil {
				if !errors.Is(err, objstore.ErrInvalidRange) {
					if err == nil {
						rc.Close()
					}
					t.Fatalf("err = %v, want ErrInvalidRange", err)
				}
				return
			}
			if got := readAll(t, rc, err); !bytes.Equal(got, tt.want) {
				t.Errorf("got %d bytes, want %d", len(got), len(tt.want))
			}
		})
	}
}

func testLargeObject(t *testing.T, b objstore.Bucket) {
	ctx := ctxFor(t)
	data := randBytes(LargeSize, 5)
	// Once through io.ReaderAt+Seeker (bytes.Reader), once as a plain stream.
	if err := b.Put(ctx, "large/seekable", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put seekable: %v", err)
	}
	if err := b.Put(ctx, "large/stream", onlyReader{bytes.NewReader(data)}, int64(len(data))); err != nil {
		t.Fatalf("Put stream: %v", err)
	}
	for _, k := range []string{"large/seekable", "large/stream"} {
		if got := mustGet(t, ctx, b, k); !bytes.Equal(got, data) {
			t.Errorf("Get(%q): %d bytes, want %d, equal=false", k, len(got), len(data))
		}
		info, err := b.Stat(ctx, k)
		if err != nil || info.Size != int64(len(data)) {
			t.Errorf("Stat(%q) = %+v, %v", k, info, err)
		}
		// Ranges across 5 MiB and 8 MiB part boundaries and the tail.
		for _, off := range []int64{5<<20 - 100, 8<<20 - 100, int64(len(data)) - 50} {
			rc, err := b.GetRange(ctx, k, off, 300)
			want := data[off:min(off+300, int64(len(data)))]
			if got := readAll(t, rc, err); !bytes.Equal(got, want) {
				t.Errorf("GetRange(%q, %d, 300): %d bytes, want %d", k, off, len(got), len(want))
			}
		}
	}
}

func testList(t *testing.T, b objstore.Bucket) {
	ctx := ctxFor(t)
	var want []string
	for i := range ListSize {
		k := fmt.Sprintf("list/%03d", i)
		want = append(want, k)
	}
	// Keys whose order a naive directory walk gets wrong: '-' < '/' < '0'.
	tricky := []string{"p/a-b", "p/a/b", "p/a/c/d", "p/a0", "p/b"}
	others := []string{"other", "lis", "list2/x", "z/last"}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for _, k := range slices.Concat(want, tricky, others) {
		wg.Go(func() {
			if err := b.Put(ctx, k, bytes.NewReader([]byte(k)), int64(len(k))); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	list := func(prefix string) []string {
		t.Helper()
		var keys []string
		for info, err := range b.List(ctx, prefix) {
			if err != nil {
				t.Fatalf("List(%q): %v", prefix, err)
			}
			if info.Size != int64(len(info.Key)) {
				t.Errorf("List(%q): %q has size %d, want %d", prefix, info.Key, info.Size, len(info.Key))
			}
			keys = append(keys, info.Key)
		}
		return keys
	}
	all := slices.Concat(want, tricky, others)
	slices.Sort(all)
	for _, tt := range []struct {
		prefix string
		want   []string
	}{
		{"list/", want},
		{"list/00", want[:10]},
		{"list/024", want[24:]},
		{"list", slices.Concat(want, []string{"list2/x"})},
		{"p/", []string{"p/a-b", "p/a/b", "p/a/c/d", "p/a0", "p/b"}},
		{"p/a", []string{"p/a-b", "p/a/b", "p/a/c/d", "p/a0"}},
		{"p/a/", []string{"p/a/b", "p/a/c/d"}},
		{"p/a/c/d", []string{"p/a/c/d"}},
		{"missing/", nil},
		{"zz", nil},
		{"", all},
	} {
		if got := list(tt.prefix); !slices.Equal(got, tt.want) {
			t.Errorf("List(%q) =\n  %q\nwant\n  %q", tt.prefix, got, tt.want)
		}
	}
}

func testListEarlyStop(t *testing.T, b objstore.Bucket) {
	ctx := ctxFor(t)
	for i := range ListSize {
		mustPut(t, ctx, b, fmt.Sprintf("k/%02d", i), []byte{byte(i)})
	}
	var got []string
	for info, err := range b.List(ctx, "k/") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, info.Key)
		if len(got) == 3 {
			break
		}
	}
	if !slices.Equal(got, []string{"k/00", "k/01", "k/02"}) {
		t.Errorf("first three = %q", got)
	}
}

func testDelete(t *testing.T, b objstore.Bucket) {
	ctx := ctxFor(t)
	if err := b.Delete(ctx, "never/existed"); err != nil {
		t.Errorf("Delete missing: %v", err)
	}
	mustPut(t, ctx, b, "d/x/1", []byte("1"))
	mustPut(t, ctx, b, "d/x2", []byte("2"))
	for range 2 {
		if err := b.Delete(ctx, "d/x/1"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	wantNotExist(t, ctx, b, "d/x/1")
	if _, err := b.Get(ctx, "d/x/1"); !errors.Is(err, objstore.ErrNotExist) {
		t.Errorf("Get deleted = %v, want ErrNotExist", err)
	}
	var keys []string
	for info, err := range b.List(ctx, "d/") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	if !slices.Equal(keys, []string{"d/x2"}) {
		t.Errorf("List after delete = %q", keys)
	}
	// The key can be written again after its directory was emptied.
	mustPut(t, ctx, b, "d/x/1", []byte("again"))
	if got := mustGet(t, ctx, b, "d/x/1"); string(got) != "again" {
		t.Errorf("Get re-put = %q", got)
	}
}

func testNotFound(t *testing.T, b objstore.Bucket) {
	ctx := ctxFor(t)
	mustPut(t, ctx, b, "exists/obj", []byte("x"))
	for _, key := range []string{"missing", "exists/missing", "exists"} {
		if rc, err := b.Get(ctx, key); !errors.Is(err, objstore.ErrNotExist) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("Get(%q) = %v, want ErrNotExist", key, err)
		}
		if rc, err := b.GetRange(ctx, key, 0, 1); !errors.Is(err, objstore.ErrNotExist) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("GetRange(%q) = %v, want ErrNotExist", key, err)
		}
		if _, err := b.Stat(ctx, key); !errors.Is(err, objstore.ErrNotExist) {
			t.Errorf("Stat(%q) = %v, want ErrNotExist", key, err)
		}
	}
}

func testConcurrentWriters(t *testing.T, b objstore.Bucket) {
	ctx := ctxFor(t)
	const writers, each = 8, 4
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("c/%d/%d", w, i)
				data := randBytes(1000+w*each+i, uint64(w*each+i))
				if err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n := 0
	for info, err := range b.List(ctx, "c/") {
		if err != nil {
			t.Fatal(err)
		}
		n++
		var w, i int
		if _, err := fmt.Sscanf(info.Key, "c/%d/%d", &w, &i); err != nil {
			t.Fatalf("unexpected key %q", info.Key)
		}
		want := randBytes(1000+w*each+i, uint64(w*each+i))
		if got := mustGet(t, ctx, b, info.Key); !bytes.Equal(got, want) {
			t.Errorf("%s: wrong content", info.Key)
		}
	}
	if n != writers*each {
		t.Errorf("listed %d objects, want %d", n, writers*each)
	}
}

func testContextCanceled(t *testing.T, b objstore.Bucket) {
	ctx := ctxFor(t)
	mustPut(t, ctx, b, "there", []byte("x"))
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with canceled context = %v, want context.Canceled", op, err)
		}
	}
	check("Put", b.Put(canceled, "new", bytes.NewReader([]byte("y")), 1))
	rc, err := b.Get(canceled, "there")
	if err == nil {
		// A backend may hand out the body lazily; reading it must fail.
		_, err = io.ReadAll(rc)
		rc.Close()
	}
	check("Get", err)
	_, err = b.Stat(canceled, "there")
	check("Stat", err)
	check("Delete", b.Delete(canceled, "there"))
	var lerr error
	for _, err := range b.List(canceled, "") {
		lerr = err
		if err != nil {
			break
		}
	}
	check("List", lerr)
	wantNotExist(t, ctx, b, "new")
	if got := mustGet(t, ctx, b, "there"); string(got) != "x" {
		t.Errorf("object changed by canceled calls: %q", got)
	}
}

// cancelingReader cancels its Put's context halfway through the body and
// then fails the way a reader tied to that context would.
type cancelingReader struct {
	ctx    context.Context
	cancel context.CancelFunc
	r      io.Reader
	left   int
}

func (c *cancelingReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		c.cancel()
		<-c.ctx.Done()
		return 0, c.ctx.Err()
	}
	p = p[:min(len(p), c.left)]
	n, err := c.r.Read(p)
	c.left -= n
	return n, err
}

func testPutCanceledMidway(t *testing.T, b objstore.Bucket) {
	for _, size := range []int{64 << 10, LargeSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			ctx, cancel := context.WithCancel(ctxFor(t))
			data := randBytes(size, 6)
			r := &cancelingReader{ctx: ctx, cancel: cancel, r: bytes.NewReader(data), left: size / 2}
			if err := b.Put(ctx, "half", r, int64(size)); err == nil {
				t.Fatal("Put canceled halfway succeeded")
			}
			wantNotExist(t, ctxFor(t), b, "half")
		})
	}
}

func testShortReader(t *testing.T, b objstore.Bucket) {
	ctx := ctxFor(t)
	for _, tt := range []struct {
		name        string
		have, claim int
	}{
		{"empty", 0, 10},
		{"small", 10, 20},
		{"large", LargeSize - 3<<20, LargeSize},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := randBytes(tt.have, 7)
			for _, r := range []io.Reader{bytes.NewReader(data), onlyReader{bytes.NewReader(data)}} {
				err := b.Put(ctx, "short", r, int64(tt.claim))
				if err == nil {
					t.Fatalf("Put of %d bytes claiming %d succeeded", tt.have, tt.claim)
				}
				if !errors.Is(err, objstore.ErrSizeMismatch) {
					t.Errorf("Put short (%T) = %v, want ErrSizeMismatch", r, err)
				}
				wantNotExist(t, ctx, b, "short")
			}
		})
	}
}
