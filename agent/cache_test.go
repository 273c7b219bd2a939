package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/mem"
)

// TestRangeCache: concurrent misses coalesce into one GET, hits and ranges
// inside cached ranges (whole objects, spans) read nothing, the byte bound
// evicts the least recently used range, errors are not cached.
func TestRangeCache(t *testing.T) {
	ctx := context.Background()
	mb := mem.New(nil)
	obj := bytes.Repeat([]byte("0123456789"), 100)
	if err := mb.Put(ctx, "obj", bytes.NewReader(obj), int64(len(obj))); err != nil {
		t.Fatal(err)
	}
	b := &countingBucket{BucketReader: mb, delay: 20 * time.Millisecond}
	m := newMetrics(nil)
	c := newRangeCache(250, 0, m.cache("tail"))
	get := func(c *rangeCache, off, n, spanOff, spanLen int64) {
		t.Helper()
		v, err := c.get(ctx, b, "obj", off, n, spanOff, spanLen)
		got := v.data
		if err != nil || !bytes.Equal(got, obj[off:off+n]) {
			t.Fatalf("get [%d,+%d): %v %q", off, n, err, got)
		}
	}

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			v, err := c.get(ctx, b, "obj", 10, 100, 10, 100)
			got := v.data
			if err != nil || !bytes.Equal(got, obj[10:110]) {
				t.Errorf("get: %v %q", err, got)
			}
		})
	}
	wg.Wait()
	if n := b.gets.Load(); n != 1 {
		t.Fatalf("%d bucket reads for one range, want 1", n)
	}
	if miss, hit := testutil.ToFloat64(m.cacheMisses.WithLabelValues("tail")), testutil.ToFloat64(m.cacheHits.WithLabelValues("tail")); miss != 1 || hit != 7 {
		t.Fatalf("misses %v hits %v, want 1 and 7", miss, hit)
	}
	get(c, 10, 100, 10, 100)
	get(c, 50, 20, 50, 20) // inside the cached range
	if b.gets.Load() != 1 {
		t.Fatalf("hits read the bucket: %d reads", b.gets.Load())
	}
	// Filling past the bound evicts the least recently used range.
	for off := int64(200); off < 500; off += 100 {
		get(c, off, 100, off, 100)
	}
	before := b.gets.Load()
	get(c, 10, 100, 10, 100)
	if b.gets.Load() != before+1 {
		t.Fatal("evicted range served without a read")
	}
	if size, _ := c.stats(); size > 250 {
		t.Fatalf("cache holds %d bytes over its bound of 250", size)
	}

	// Whole objects (put at commit) and spans serve every range inside.
	c2 := newRangeCache(10_000, 0, m.cache("tail"))
	c2.put("obj", 0, obj)
	get(c2, 990, 10, 990, 10)
	c3 := newRangeCache(10_000, 0, m.cache("catchup"))
	get(c3, 100, 50, 100, 400) // one GET of [100, 500)
	get(c3, 150, 50, 150, 50)
	get(c3, 450, 50, 450, 50)
	if b.gets.Load() != before+2 {
		t.Fatalf("%d reads for a whole object and one span, want 1", b.gets.Load()-before)
	}
	// Errors are not cached.
	if _, err := c.get(ctx, b, "missing", 0, 10, 0, 10); err == nil {
		t.Fatal("missing object read without error")
	}
}

// blockingBucket holds every GetRange (of key only, if set) until release
// is closed, and counts every GetRange.
type blockingBucket struct {
	countingBucket
	key     string
	release chan struct{}
}

func (b *blockingBucket) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	b.gets.Add(1)
	if b.key == "" || key == b.key {
		<-b.release
	}
	return b.BucketReader.GetRange(ctx, key, off, n)
}

// TestCatchUpReadsBounded: catch-up reads hold at most their slots, and a
// prefetch never waits for one: with every slot taken it reads nothing.
func TestCatchUpReadsBounded(t *testing.T) {
	ctx := context.Background()
	mb := mem.New(nil)
	obj := bytes.Repeat([]byte("x"), 1000)
	if err := mb.Put(ctx, "obj", bytes.NewReader(obj), int64(len(obj))); err != nil {
		t.Fatal(err)
	}
	b := &blockingBucket{countingBucket: countingBucket{BucketReader: mb}, release: make(chan struct{})}
	c := newRangeCache(1<<20, 2, newMetrics(nil).cache("catchup"))
	var wg sync.WaitGroup
	for i := range 4 {
		off := int64(i * 100)
		wg.Go(func() {
			if _, err := c.get(ctx, b, "obj", off, 100, off, 100); err != nil {
				t.Error(err)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.gets.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if n := b.gets.Load(); n != 2 {
		t.Fatalf("%d reads in flight with 2 slots", n)
	}
	c.prefetch(b, "obj", 900, 100)
	time.Sleep(20 * time.Millisecond)
	if n := b.gets.Load(); n != 2 {
		t.Fatalf("a prefetch waited for or took a slot: %d reads", n)
	}
	close(b.release)
	wg.Wait()
	c.prefetch(b, "obj", 900, 100)
	deadline = time.Now().Add(5 * time.Second)
	for {
		if _, ok := c.peek("obj", 900, 100); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("prefetch with free slots did not fill the cache")
		}
		time.Sleep(time.Millisecond)
	}
	if n := b.gets.Load(); n != 5 {
		t.Fatalf("%d reads, want 5 (four ranges, one prefetch)", n)
	}
}

// slowBucket holds every GetRange of key held until release is closed,
// and makes the others take delay (or until their context ends).
type slowBucket struct {
	objstore.BucketReader
	held    string
	release chan struct{}
	delay   time.Duration
}

func (b *slowBucket) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if key == b.held {
		<-b.release
	} else {
		select {
		case <-time.After(b.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return b.BucketReader.GetRange(ctx, key, off, n)
}

// TestCatchUpReadTimeoutAfterSlot: a catch-up read's GET has the whole
// read timeout once it has a read slot, whatever it waited for the slot.
// One timeout covered both, so a read that queued most of it failed its
// GET, for every waiter.
func TestCatchUpReadTimeoutAfterSlot(t *testing.T) {
	ctx := context.Background()
	obj := bytes.Repeat([]byte("x"), 1000)
	b := &slowBucket{BucketReader: memWith(t, obj, "x", "z"), held: "z", release: make(chan struct{}), delay: 600 * time.Millisecond}
	c := newRangeCache(1<<20, 1, newMetrics(nil).cache("catchup"))
	c.timeout = time.Second
	c.prefetch(b, "z", 0, 100) // takes the only slot
	time.AfterFunc(700*time.Millisecond, func() { close(b.release) })
	// Queued 700 ms for the slot, then 600 ms of GET.
	if _, err := c.get(ctx, b, "x", 0, 100, 0, 100); err != nil {
		t.Fatalf("a read that waited for its slot: %v", err)
	}
	// The wait for a slot is still bounded.
	b = &slowBucket{BucketReader: b.BucketReader, held: "z", release: make(chan struct{})}
	defer close(b.release)
	c = newRangeCache(1<<20, 1, newMetrics(nil).cache("catchup"))
	c.timeout = 100 * time.Millisecond
	c.prefetch(b, "z", 0, 100)
	if _, err := c.get(ctx, b, "x", 0, 100, 0, 100); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a read that never got a slot: %v, want a deadline error", err)
	}
}

// TestWholeObjectReads: misses on the rows of a small object read it whole
// once, however many partitions and readers ask at once; objects over the
// cache's whole-object limit, or of unknown size, are read by range; and
// one window takes at most a quarter of the budget in whole objects.
func TestWholeObjectReads(t *testing.T) {
	ctx := context.Background()
	mb := mem.New(nil)
	put := func(key string, size int) {
		if err := mb.Put(ctx, key, bytes.NewReader(bytes.Repeat([]byte{'x'}, size)), int64(size)); err != nil {
			t.Fatal(err)
		}
	}
	c := newRangeCache(8_000, 0, newMetrics(nil).cache("catchup")) // whole up to 1,000 bytes
	if c.wholeMax() != 1000 {
		t.Fatalf("wholeMax %d, want an eighth of the budget", c.wholeMax())
	}
	row := func(key string, size, part int64) catalog.BatchRow {
		return catalog.BatchRow{TopicPartition: catalog.TopicPartition{Partition: int32(part)}, ObjectKey: key,
			ByteOffset: 100 + 200*part, ByteLength: 200, ObjectSize: size}
	}
	read := func(b objstore.BucketReader, w *wholeWindow, r catalog.BatchRow) {
		t.Helper()
		off, n, _ := w.span(r)
		v, err := c.get(ctx, b, r.ObjectKey, r.ByteOffset, r.ByteLength, off, n)
		got := v.data
		if err != nil || int64(len(got)) != r.ByteLength {
			t.Errorf("read %s row %d: %v, %d bytes", r.ObjectKey, r.Partition, err, len(got))
		}
	}

	put("small", 1000)
	b := &countingBucket{BucketReader: mb, delay: 20 * time.Millisecond}
	var wg sync.WaitGroup
	for range 3 { // three consumers
		for p := range int64(4) { // four partitions of one object
			wg.Go(func() {
				w := c.window()
				read(b, &w, row("small", 1000, p))
			})
		}
	}
	wg.Wait()
	if n := b.gets.Load(); n != 1 {
		t.Fatalf("%d GETs for the rows of one small object, want 1", n)
	}

	put("big", 1001)
	put("unsized", 1000)
	b = &countingBucket{BucketReader: mb}
	w := c.window()
	for p := range int64(4) {
		read(b, &w, row("big", 1001, p))
		read(b, &w, row("unsized", 0, p))
	}
	if n := b.gets.Load(); n != 8 {
		t.Fatalf("%d GETs for four rows of a big and of an unsized object, want 8 (one per range)", n)
	}

	b = &countingBucket{BucketReader: mb}
	w = c.window() // 2,000 bytes of whole objects
	for i := range 3 {
		put(fmt.Sprint("o", i), 1000)
	}
	for i := range 3 {
		if _, _, whole := w.span(row(fmt.Sprint("o", i), 1000, 0)); whole != (i < 2) {
			t.Fatalf("object %d read whole: %v; a window holds two", i, whole)
		}
	}
	if _, _, whole := w.span(row("small", 1000, 2)); !whole {
		t.Fatal("a cached object costs the window nothing, but was not read whole")
	}
}

// memWith is an in-memory bucket holding obj under each key.
func memWith(t *testing.T, obj []byte, keys ...string) *mem.Bucket {
	t.Helper()
	mb := mem.New(nil)
	for _, key := range keys {
		if err := mb.Put(context.Background(), key, bytes.NewReader(obj), int64(len(obj))); err != nil {
			t.Fatal(err)
		}
	}
	return mb
}

// objectRow is a row of bytes [100, 300) of an object of size bytes.
func objectRow(key string, size int64) catalog.BatchRow {
	return catalog.BatchRow{ObjectKey: key, ByteOffset: 100, ByteLength: 200, ObjectSize: size}
}

// TestTailAndCatchUpShareReads: a row read through one cache is not read
// from the bucket again through the other while the first read is in
// flight or cached. Consumers catching up on an agent read some rows
// through the tail cache (the newest, in its tail index) and the rest
// through the catch-up cache, and the same object was sometimes read
// once for each (fleet-gets: 33–42 GETs for 31 objects in 3 of 12 runs).
func TestTailAndCatchUpShareReads(t *testing.T) {
	ctx := context.Background()
	obj := bytes.Repeat([]byte("0123456789"), 100)
	mb := memWith(t, obj, "x", "y")
	b := &blockingBucket{countingBucket: countingBucket{BucketReader: mb}, release: make(chan struct{})}
	m := newMetrics(nil)
	a := &Agent{bucket: b, cache: newRangeCache(1<<20, 0, m.cache("tail")), catchup: newRangeCache(1<<20, 4, m.cache("catchup")),
		tail: newTailIndex(time.Now)}
	row := func(key string) catalog.BatchRow { return objectRow(key, int64(len(obj))) }
	check := func(what string, raw []byte, err error) {
		t.Helper()
		if err != nil || !bytes.Equal(raw, obj[100:300]) {
			t.Errorf("%s: %v, %q", what, err, raw)
		}
	}
	waitGets := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); b.gets.Load() < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d GETs started, want %d", b.gets.Load(), n)
			}
		}
	}

	// A catch-up read of x is in flight; a tail read of x joins it.
	var wg sync.WaitGroup
	wg.Go(func() {
		w := a.catchup.window()
		v, err := a.readCatchUpRowIn(ctx, row("x"), nil, &w)
		check("catch-up read of x", v.data, err)
	})
	waitGets(1)
	wg.Go(func() {
		w := a.cache.window()
		v, err := a.readTailRow(ctx, row("x"), &w)
		check("tail read of x", v.data, err)
	})
	// A tail read of y is in flight; a catch-up read of y joins it.
	wg.Go(func() {
		w := a.cache.window()
		v, err := a.readTailRow(ctx, row("y"), &w)
		check("tail read of y", v.data, err)
	})
	waitGets(2)
	wg.Go(func() {
		w := a.catchup.window()
		v, err := a.readCatchUpRowIn(ctx, row("y"), nil, &w)
		check("catch-up read of y", v.data, err)
	})
	time.Sleep(50 * time.Millisecond) // let the joining reads start their own GETs, if they would
	close(b.release)
	wg.Wait()
	if n := b.gets.Load(); n != 2 {
		t.Fatalf("%d GETs for two objects each read through both caches, want 2", n)
	}
	// Cached in one, read through the other: no GET.
	w := a.cache.window()
	v, err := a.readTailRow(ctx, row("x"), &w)
	check("tail read of x, cached in the catch-up cache", v.data, err)
	if n := b.gets.Load(); n != 2 {
		t.Fatalf("%d GETs after a read the catch-up cache holds, want 2", n)
	}
}

// TestTailReadsDoNotWaitForCatchUp: a tail read never waits behind the
// catch-up cache when it need not. It serves what the tail cache holds
// even while a catch-up read of the same range is in flight, and it does
// not join a catch-up read that is still queued for a read slot (the
// backfill's slots are its own: a tail read waited behind them for up to
// a minute).
func TestTailReadsDoNotWaitForCatchUp(t *testing.T) {
	ctx := context.Background()
	obj := bytes.Repeat([]byte("0123456789"), 100)
	mb := memWith(t, obj, "x", "z")
	row := func(key string) catalog.BatchRow { return objectRow(key, int64(len(obj))) }
	tailRead := func(a *Agent, key string) {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			w := a.cache.window()
			v, err := a.readTailRow(ctx, row(key), &w)
			if err == nil && !bytes.Equal(v.data, obj[100:300]) {
				err = fmt.Errorf("read %q", v.data)
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the tail read of %s waited for the catch-up cache", key)
		}
	}
	newAgent := func(b objstore.BucketReader, slots int) *Agent {
		m := newMetrics(nil)
		return &Agent{bucket: b, cache: newRangeCache(1<<20, 0, m.cache("tail")), catchup: newRangeCache(1<<20, slots, m.cache("catchup")),
			tail: newTailIndex(time.Now)}
	}

	// The tail cache holds x; a catch-up read of all of x is in flight.
	b := &blockingBucket{countingBucket: countingBucket{BucketReader: mb}, key: "x", release: make(chan struct{})}
	a := newAgent(b, 4)
	a.cache.put("x", 0, obj)
	a.catchup.prefetch(b, "x", 0, int64(len(obj)))
	tailRead(a, "x")
	close(b.release)

	// The only catch-up slot is taken by a read of z; a catch-up read of x
	// queues for it.
	b = &blockingBucket{countingBucket: countingBucket{BucketReader: mb}, key: "z", release: make(chan struct{})}
	defer close(b.release)
	a = newAgent(b, 1)
	a.catchup.prefetch(b, "z", 0, int64(len(obj)))
	for deadline := time.Now().Add(5 * time.Second); b.gets.Load() < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the read of z never started")
		}
	}
	go func() {
		w := a.catchup.window()
		_, _ = a.readCatchUpRowIn(ctx, row("x"), nil, &w)
	}()
	for deadline := time.Now().Add(5 * time.Second); !a.catchup.holds("x", 100, 200); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the catch-up read of x never queued")
		}
	}
	tailRead(a, "x")
}
