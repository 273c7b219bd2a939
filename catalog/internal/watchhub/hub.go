// Package watchhub fans commit ids out to Watch subscribers. Each subscriber
// has a one-slot channel that always holds the latest id not yet read, so a
// slow reader never blocks publishers and never sees ids go backwards.
package watchhub

import (
	"context"
	"sync"
)

// Hub is safe for concurrent use. The zero value is not usable; use New.
type Hub struct {
	done chan struct{} // closed by Close
	mu   struct {
		sync.Mutex
		subs   map[*sub]struct{}
		latest int64
		closed bool
	}
}

type sub struct {
	ch   chan int64
	done bool
}

// New returns an empty hub.
func New() *Hub {
	h := &Hub{done: make(chan struct{})}
	h.mu.subs = make(map[*sub]struct{})
	return h
}

// Subscribe returns a channel that receives published ids until ctx ends or
// the hub closes, when it is closed. ok is false if the hub is closed.
func (h *Hub) Subscribe(ctx context.Context) (<-chan int64, bool) {
	s := &sub{ch: make(chan int64, 1)}
	h.mu.Lock()
	if h.mu.closed {
		h.mu.Unlock()
		return nil, false
	}
	h.mu.subs[s] = struct{}{}
	h.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
			h.remove(s)
		case <-h.done:
		}
	}()
	return s.ch, true
}

// Count returns the number of subscribers.
func (h *Hub) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.mu.subs)
}

// Latest returns the highest id published so far.
func (h *Hub) Latest() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mu.latest
}

func (h *Hub) remove(s *sub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	delete(h.mu.subs, s)
	close(s.ch)
}

// Publish delivers id to every subscriber, replacing an unread older id.
// Ids not above the latest published one are dropped, so subscribers only
// ever see increasing ids.
func (h *Hub) Publish(id int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id <= h.mu.latest {
		return
	}
	h.mu.latest = id
	for s := range h.mu.subs {
		// Only Publish sends, under h.mu, so after draining the slot the
		// send cannot block.
		select {
		case s.ch <- id:
		default:
			select {
			case <-s.ch:
			default:
			}
			s.ch <- id
		}
	}
}

// Close closes every subscriber's channel; later Subscribes fail.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.closed {
		return
	}
	h.mu.closed = true
	close(h.done)
	for s := range h.mu.subs {
		s.done = true
		close(s.ch)
	}
	clear(h.mu.subs)
}
