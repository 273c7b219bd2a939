package watchhub

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCoalescesToLatest(t *testing.T) {
	h := New()
	defer h.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, ok := h.Subscribe(ctx)
	if !ok {
		t.Fatal("subscribe failed")
	}
	for i := int64(1); i <= 10; i++ {
		h.Publish(i)
	}
	h.Publish(3) // older: dropped
	if got := <-ch; got != 10 {
		t.Fatalf("got %d, want 10", got)
	}
	select {
	case v := <-ch:
		t.Fatalf("unexpected %d", v)
	default:
	}
}

func TestCancelClosesChannel(t *testing.T) {
	h := New()
	defer h.Close()
	ctx, cancel := context.WithCancel(t.Context())
	ch, _ := h.Subscribe(ctx)
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			// a value may not be pending; the next receive must be the close
			if _, ok := <-ch; ok {
				t.Fatal("channel not closed")
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after cancel")
	}
	if n := h.Count(); n != 0 {
		t.Fatalf("%d subscribers left", n)
	}
}

func TestCloseClosesAll(t *testing.T) {
	h := New()
	var chans []<-chan int64
	for range 3 {
		ch, _ := h.Subscribe(t.Context())
		chans = append(chans, ch)
	}
	h.Close()
	h.Close()
	for _, ch := range chans {
		for range ch {
		}
	}
	if _, ok := h.Subscribe(t.Context()); ok {
		t.Fatal("subscribe after close succeeded")
	}
}

func TestConcurrentPublishMonotonic(t *testing.T) {
	h := New()
	defer h.Close()
	ch, _ := h.Subscribe(t.Context())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				h.Publish(int64(i*4 + w + 1))
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var last int64
	for {
		select {
		case v := <-ch:
			if v <= last {
				t.Fatalf("%d after %d", v, last)
			}
			last = v
		case <-done:
			if h.Latest() != 4000 {
				t.Fatalf("latest %d", h.Latest())
			}
			return
		}
	}
}
