package agent

import (
	"container/list"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/floebroker/floe/objstore"
)

// readCache is a byte-bounded LRU of object bytes in front of the bucket.
// Entries are whole objects (the segments this agent just flushed, from
// OnCommitted) or the byte ranges of catalog rows that fetches read.
// Concurrent misses for one range share one bucket read. Cached slices are
// shared and must not be modified.
type readCache struct {
	max int64
	m   *metrics

	mu struct {
		sync.Mutex
		size     int64
		lru      *list.List // of *cacheEntry, front = most recent
		entries  map[cacheKey]*list.Element
		objects  map[string]*list.Element // whole objects by key
		inflight map[cacheKey]*cacheCall
	}
}

// cacheKey names a byte range; length -1 is a whole object.
type cacheKey struct {
	key         string
	off, length int64
}

type cacheEntry struct {
	k    cacheKey
	data []byte
}

type cacheCall struct {
	done chan struct{}
	data []byte
	err  error
}

func newReadCache(maxBytes int64, m *metrics) *readCache {
	c := &readCache{max: maxBytes, m: m}
	c.mu.lru = list.New()
	c.mu.entries = make(map[cacheKey]*list.Element)
	c.mu.objects = make(map[string]*list.Element)
	c.mu.inflight = make(map[cacheKey]*cacheCall)
	return c
}

// putObject caches a whole object.
func (c *readCache) putObject(key string, obj []byte) {
	if int64(len(obj)) > c.max/2 {
		return // would evict most of the cache for one object
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.insertLocked(cacheKey{key: key, off: 0, length: -1}, obj)
}

// get returns length bytes of key from off: from a cached whole object or
// range, else from the bucket (and then cached).
func (c *readCache) get(ctx context.Context, b objstore.BucketReader, key string, off, length int64) ([]byte, error) {
	k := cacheKey{key: key, off: off, length: length}
	c.mu.Lock()
	if el, ok := c.mu.objects[key]; ok {
		obj := el.Value.(*cacheEntry).data
		if off >= 0 && length >= 0 && off+length <= int64(len(obj)) {
			c.mu.lru.MoveToFront(el)
			c.mu.Unlock()
			c.m.cacheHits.Inc()
			return obj[off : off+length : off+length], nil
		}
	}
	if el, ok := c.mu.entries[k]; ok {
		c.mu.lru.MoveToFront(el)
		c.mu.Unlock()
		c.m.cacheHits.Inc()
		return el.Value.(*cacheEntry).data, nil
	}
	if call, ok := c.mu.inflight[k]; ok {
		c.mu.Unlock()
		select {
		case <-call.done:
			return call.data, call.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	call := &cacheCall{done: make(chan struct{})}
	c.mu.inflight[k] = call
	c.mu.Unlock()
	c.m.cacheMisses.Inc()

	// The read is shared by every waiter, so one waiter's cancellation
	// must not fail the others: it runs on a context of its own.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer cancel()
		call.data, call.err = readRange(rctx, b, key, off, length)
		c.mu.Lock()
		delete(c.mu.inflight, k)
		if call.err == nil {
			c.insertLocked(k, call.data)
		}
		c.mu.Unlock()
		close(call.done)
	}()
	select {
	case <-call.done:
		return call.data, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
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

func (c *readCache) insertLocked(k cacheKey, data []byte) {
	if int64(len(data)) > c.max {
		return
	}
	if k.length < 0 {
		if _, ok := c.mu.objects[k.key]; ok {
			return
		}
	} else if _, ok := c.mu.entries[k]; ok {
		return
	}
	el := c.mu.lru.PushFront(&cacheEntry{k: k, data: data})
	if k.length < 0 {
		c.mu.objects[k.key] = el
	} else {
		c.mu.entries[k] = el
	}
	c.mu.size += int64(len(data))
	for c.mu.size > c.max {
		last := c.mu.lru.Back()
		e := last.Value.(*cacheEntry)
		c.mu.lru.Remove(last)
		if e.k.length < 0 {
			delete(c.mu.objects, e.k.key)
		} else {
			delete(c.mu.entries, e.k)
		}
		c.mu.size -= int64(len(e.data))
		c.m.cacheEvictions.Inc()
	}
	c.m.cacheBytes.Set(float64(c.mu.size))
}
