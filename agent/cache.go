package agent

import (
	"container/list"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore"
)

// The agent reads objects through two caches of the same kind:
//
//   - the tail cache holds what consumers at the tail read: the segment
//     objects this agent just wrote (whole, put at commit time, so the
//     partition's leader serves its tail with no GET at all) and the rows
//     of the tail index that other agents wrote;
//   - the catch-up cache holds what consumers far behind read (rows found
//     in the catalog, below the tail index, and rows of the tail index
//     far behind its newest that the tail cache no longer holds: see
//     tailNearRows) and what is prefetched for them. It has its own byte budget and a bound on its concurrent bucket
//     reads, so a backfill can neither evict the tail nor take every
//     connection to the bucket.
//
// A flushed segment object holds the rows of many partitions, and
// consumers read each partition's row separately. A miss on a row of a
// small object therefore reads the whole object (wholeObjectMaxBytes), so
// one GET serves every partition's row of it, whichever consumer or fetch
// asks first, and concurrent misses on the object wait for that one GET.
// Large objects — compacted per-partition segments, up to hundreds of MiB
// — are read by range: a row and the rows stored after it, prefetched.

// wholeObjectMaxBytes caps the objects a miss reads whole: flushed
// segments (8 MiB by default on S3, far less with a short flush interval)
// but not compacted ones. A cache reads an object whole only if it is also
// at most an eighth of the cache's budget (wholeMax: 16 MiB of the default
// 128 MiB tail cache), so the objects one
// fetch brings in stay cached while the fetch's other partitions, and
// other consumers, read their rows of them; and one partition read brings
// in at most a quarter of the budget in whole objects (wholeWindow), so a
// partition whose rows are thin slices of many objects cannot sweep the
// cache: past that it reads ranges.
const wholeObjectMaxBytes = 16 << 20

// readTimeout bounds one bucket read, and apart from it a catch-up read's
// wait for a read slot. The read is shared by every waiter, so it does not
// run on any one request's context.
const readTimeout = time.Minute

// rangeCache is a byte-bounded LRU of object byte ranges in front of the
// bucket. A lookup is served by any cached range that contains it, so a
// whole object or a span of several rows serves each row inside it.
// Concurrent misses for ranges inside one read in flight share it: one
// GET. Cached slices are shared and must not be modified. Safe for
// concurrent use.
type rangeCache struct {
	max int64
	// sem bounds the bucket reads in flight; nil: unbounded.
	sem chan struct{}
	m   cacheMetrics
	// timeout is readTimeout (shorter in tests).
	timeout time.Duration

	mu struct {
		sync.Mutex
		size     int64
		lru      *list.List                 // of *cacheEntry, front = most recent
		byKey    map[string][]*list.Element // ranges held of each object
		inflight map[string][]*cacheCall    // reads in flight of each object
	}
}

type cacheEntry struct {
	key  string
	off  int64
	data []byte
}

// cacheCall is one bucket read in flight.
type cacheCall struct {
	off, length int64
	done        chan struct{}
	data        []byte
	err         error
	// reading: the GET has its read slot (catch-up reads may queue for
	// one). Only such a read is joined from the other cache (held).
	reading atomic.Bool
}

// cacheMetrics are one cache's series of the floe_agent_read_cache_*
// metrics.
type cacheMetrics struct {
	hits, misses, prefetches, evictions prometheus.Counter
	bytes                               prometheus.Gauge
}

func newRangeCache(maxBytes int64, concurrency int, m cacheMetrics) *rangeCache {
	c := &rangeCache{max: maxBytes, m: m, timeout: readTimeout}
	if concurrency > 0 {
		c.sem = make(chan struct{}, concurrency)
	}
	c.mu.lru = list.New()
	c.mu.byKey = make(map[string][]*list.Element)
	c.mu.inflight = make(map[string][]*cacheCall)
	return c
}

// wholeMax is the largest object this cache reads whole.
func (c *rangeCache) wholeMax() int64 { return min(wholeObjectMaxBytes, c.max/8) }

// wholeWindow tracks the whole objects one partition read of a fetch
// brings into a cache (see wholeObjectMaxBytes). The zero value reads
// nothing whole.
type wholeWindow struct {
	c     *rangeCache
	left  int64
	taken map[string]struct{}
}

func (c *rangeCache) window() wholeWindow {
	return wholeWindow{c: c, left: c.max / 4}
}

// span returns the range of row's object to read on a miss: the whole
// object when it is small enough and the window has room, else the row's
// own range (always for a nil window). An object taken before, or cached
// or being read whole already, costs the window nothing.
func (w *wholeWindow) span(row catalog.BatchRow) (off, length int64, whole bool) {
	if w == nil || w.c == nil || row.ObjectSize <= 0 || row.ObjectSize > w.c.wholeMax() || row.ByteOffset+row.ByteLength > row.ObjectSize {
		return row.ByteOffset, row.ByteLength, false
	}
	if _, ok := w.taken[row.ObjectKey]; !ok {
		held := w.c.holds(row.ObjectKey, 0, row.ObjectSize)
		if !held && row.ObjectSize > w.left {
			return row.ByteOffset, row.ByteLength, false
		}
		if w.taken == nil {
			w.taken = make(map[string]struct{})
		}
		w.taken[row.ObjectKey] = struct{}{}
		if !held {
			w.left -= row.ObjectSize
		}
	}
	return 0, row.ObjectSize, true
}

func contains(off, length, innerOff, innerLen int64) bool {
	return innerOff >= off && innerOff+innerLen <= off+length
}

// lookupLocked returns the bytes of [off, off+length) of key if a cached
// range holds them, and marks that range used.
func (c *rangeCache) lookupLocked(key string, off, length int64) (view, bool) {
	for _, el := range c.mu.byKey[key] {
		e := el.Value.(*cacheEntry)
		if contains(e.off, int64(len(e.data)), off, length) {
			c.mu.lru.MoveToFront(el)
			return viewOf(e.data, off-e.off, length), true
		}
	}
	return view{}, false
}

// view is bytes read from the bucket: data, a range of buf, the whole
// buffer one read allocated, which data keeps reachable for as long as it
// is referenced (after the cache evicted it too).
type view struct {
	data, buf []byte
}

func viewOf(buf []byte, i, length int64) view {
	return view{data: buf[i : i+length : i+length], buf: buf}
}

func (c *rangeCache) inflightLocked(key string, off, length int64) *cacheCall {
	for _, call := range c.mu.inflight[key] {
		if contains(call.off, call.length, off, length) {
			return call
		}
	}
	return nil
}

// holds reports whether the range is cached or being read.
func (c *rangeCache) holds(key string, off, length int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.lookupLocked(key, off, length); ok {
		return true
	}
	return c.inflightLocked(key, off, length) != nil
}

// heldFrom returns how far from off the cache holds key's bytes, cached
// or being read, without a gap: off if it holds none at off. Catch-up
// reads start their spans there, so as not to read again what an earlier
// read brought or brings.
func (c *rangeCache) heldFrom(key string, off int64) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	end := off
	for moved := true; moved; {
		moved = false
		for _, el := range c.mu.byKey[key] {
			e := el.Value.(*cacheEntry)
			if e.off <= end && e.off+int64(len(e.data)) > end {
				end, moved = e.off+int64(len(e.data)), true
			}
		}
		for _, call := range c.mu.inflight[key] {
			if call.off <= end && call.off+call.length > end {
				end, moved = call.off+call.length, true
			}
		}
	}
	return end
}

// peek returns the range if it is cached, without reading the bucket or
// counting a hit (the caller counts what it serves).
func (c *rangeCache) peek(key string, off, length int64) (view, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lookupLocked(key, off, length)
}

// held returns the range if the cache holds it or a read in flight that
// has its read slot brings it (waiting for that read), and false
// otherwise; it never reads the bucket itself. The tail and catch-up
// caches each ask the other when they do not hold a range themselves, so
// that a consumer reading an object through one does not GET what another
// consumer's read brings into the other. A catch-up read still queued for
// a slot is not joined: a tail read must not wait behind a backfill.
func (c *rangeCache) held(ctx context.Context, key string, off, length int64) (view, bool, error) {
	c.mu.Lock()
	if v, ok := c.lookupLocked(key, off, length); ok {
		c.mu.Unlock()
		c.m.hits.Inc()
		return v, true, nil
	}
	call := c.inflightLocked(key, off, length)
	c.mu.Unlock()
	if call == nil || !call.reading.Load() {
		return view{}, false, nil
	}
	select {
	case <-call.done:
		if call.err != nil {
			return view{}, false, nil // the caller reads for itself
		}
		c.m.hits.Inc()
		return viewOf(call.data, off-call.off, length), true, nil
	case <-ctx.Done():
		return view{}, false, ctx.Err()
	}
}

// put caches data as the bytes of key from off (a whole object: off 0).
func (c *rangeCache) put(key string, off int64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.insertLocked(key, off, data)
}

// get returns length bytes of key from off: from a cached range, from a
// read in flight that covers them, or else by reading [spanOff,
// spanOff+spanLen) — which must contain the range — from the bucket and
// caching it. Reading a span of several rows at once is how catch-up reads
// fetch the next rows with the same GET.
func (c *rangeCache) get(ctx context.Context, b objstore.BucketReader, key string, off, length, spanOff, spanLen int64) (view, error) {
	return c.start(b, key, off, length, spanOff, spanLen).wait(ctx)
}

// pendingRead is a range being read through a cache: its bytes, or the
// read in flight that brings them.
type pendingRead struct {
	v           view
	call        *cacheCall
	off, length int64
}

// start is get without the wait: it starts the bucket read get would
// make, if any, so that the caller can start others before it waits.
func (c *rangeCache) start(b objstore.BucketReader, key string, off, length, spanOff, spanLen int64) pendingRead {
	if !contains(spanOff, spanLen, off, length) {
		spanOff, spanLen = off, length
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.lookupLocked(key, off, length); ok {
		c.m.hits.Inc()
		return pendingRead{v: v}
	}
	call := c.inflightLocked(key, off, length)
	if call == nil {
		call = c.startLocked(b, key, spanOff, spanLen, false)
		c.m.misses.Inc()
	} else {
		// Another request's read brings these bytes: no GET of our own.
		c.m.hits.Inc()
	}
	return pendingRead{call: call, off: off, length: length}
}

// wait returns the bytes once they are read.
func (r pendingRead) wait(ctx context.Context) (view, error) {
	if r.call == nil {
		return r.v, nil
	}
	select {
	case <-r.call.done:
		if r.call.err != nil {
			return view{}, r.call.err
		}
		return viewOf(r.call.data, r.off-r.call.off, r.length), nil
	case <-ctx.Done():
		return view{}, ctx.Err()
	}
}

// prefetch starts reading [off, off+length) of key into the cache unless
// it is cached or being read, or every read slot is taken: prefetching
// never waits for, or takes a slot from, a read a consumer waits on.
func (c *rangeCache) prefetch(b objstore.BucketReader, key string, off, length int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.lookupLocked(key, off, length); ok || c.inflightLocked(key, off, length) != nil {
		return
	}
	if c.sem != nil {
		select {
		case c.sem <- struct{}{}:
		default:
			return
		}
	}
	c.startLocked(b, key, off, length, true)
	c.m.prefetches.Inc()
}

// startLocked starts one bucket read. acquired says the caller holds a
// read slot already.
func (c *rangeCache) startLocked(b objstore.BucketReader, key string, off, length int64, acquired bool) *cacheCall {
	call := &cacheCall{off: off, length: length, done: make(chan struct{})}
	call.reading.Store(c.sem == nil || acquired)
	c.mu.inflight[key] = append(c.mu.inflight[key], call)
	go func() {
		if c.sem != nil && !acquired {
			// The wait for a slot is bounded on its own, and the GET's
			// timeout starts once it has one: under one bound, a read
			// that queued 55 s had 5 s to move up to 8 MiB, and its
			// failure went to every waiter.
			wait := time.NewTimer(c.timeout)
			select {
			case c.sem <- struct{}{}:
				wait.Stop()
				call.reading.Store(true)
			case <-wait.C:
				c.finish(key, call, nil, fmt.Errorf("agent: read %s: waiting for a read slot: %w", key, context.DeadlineExceeded))
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		data, err := readRange(ctx, b, key, off, length)
		if c.sem != nil {
			<-c.sem
		}
		c.finish(key, call, data, err)
	}()
	return call
}

func (c *rangeCache) finish(key string, call *cacheCall, data []byte, err error) {
	call.data, call.err = data, err
	c.mu.Lock()
	calls := c.mu.inflight[key]
	for i, x := range calls {
		if x == call {
			calls = append(calls[:i:i], calls[i+1:]...)
			break
		}
	}
	if len(calls) == 0 {
		delete(c.mu.inflight, key)
	} else {
		c.mu.inflight[key] = calls
	}
	if err == nil {
		c.insertLocked(key, call.off, data)
	}
	c.mu.Unlock()
	close(call.done)
}

func readRange(ctx context.Context, b objstore.BucketReader, key string, off, length int64) ([]byte, error) {
	rc, err := b.GetRange(ctx, key, off, length)
	if err != nil {
		return nil, fmt.Errorf("agent: read %s [%d,+%d): %w", key, off, length, err)
	}
	defer rc.Close()
	buf := make([]byte, length)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, fmt.Errorf("agent: read %s [%d,+%d): %w", key, off, length, err)
	}
	return buf, nil
}

// insertLocked caches a range unless a cached range holds it already or
// it would take more than half the budget (one object must not evict most
// of the cache), then evicts the least recently used ranges over budget.
func (c *rangeCache) insertLocked(key string, off int64, data []byte) {
	n := int64(len(data))
	if n > c.max/2 {
		return
	}
	els := c.mu.byKey[key]
	for _, el := range els {
		e := el.Value.(*cacheEntry)
		if contains(e.off, int64(len(e.data)), off, n) {
			return
		}
	}
	// Ranges the new one holds are redundant now.
	kept := els[:0]
	for _, el := range els {
		e := el.Value.(*cacheEntry)
		if contains(off, n, e.off, int64(len(e.data))) {
			c.mu.lru.Remove(el)
			c.mu.size -= int64(len(e.data))
			continue
		}
		kept = append(kept, el)
	}
	c.mu.byKey[key] = append(kept, c.mu.lru.PushFront(&cacheEntry{key: key, off: off, data: data}))
	c.mu.size += n
	for c.mu.size > c.max {
		c.removeLocked(c.mu.lru.Back())
		c.m.evictions.Inc()
	}
	c.m.bytes.Set(float64(c.mu.size))
}

func (c *rangeCache) removeLocked(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.mu.lru.Remove(el)
	c.mu.size -= int64(len(e.data))
	els := c.mu.byKey[e.key]
	for i, x := range els {
		if x == el {
			els = append(els[:i:i], els[i+1:]...)
			break
		}
	}
	if len(els) == 0 {
		delete(c.mu.byKey, e.key)
	} else {
		c.mu.byKey[e.key] = els
	}
}

// stats returns the bytes held and the number of ranges, for tests.
func (c *rangeCache) stats() (int64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.size, c.mu.lru.Len()
}
