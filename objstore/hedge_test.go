package objstore_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floebroker/floe/internal/testenv"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/mem"
)

// slowPuts delays each Put by the next duration of delays (then none).
type slowPuts struct {
	objstore.Bucket
	mu     sync.Mutex
	delays []time.Duration
	fail   []error
	puts   atomic.Int32
}

func (s *slowPuts) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	s.puts.Add(1)
	s.mu.Lock()
	var d time.Duration
	var err error
	if len(s.delays) > 0 {
		d, s.delays = s.delays[0], s.delays[1:]
	}
	if len(s.fail) > 0 {
		err, s.fail = s.fail[0], s.fail[1:]
	}
	s.mu.Unlock()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	return s.Bucket.Put(ctx, key, r, size)
}

func TestHedgedPut(t *testing.T) {
	ctx := context.Background()
	data := []byte("segment bytes")
	for _, tc := range []struct {
		name     string
		delays   []time.Duration
		fail     []error
		body     io.Reader
		wantPuts int32
		wantErr  bool
		maxTime  time.Duration
		// hedge is the hedge delay, 20 ms unless set: the cases that must
		// neither hedge nor wait for the delay use a long one, which a
		// loaded machine cannot reach by slowing a mem PUT down.
		hedge time.Duration
	}{
		{name: "fast put, no hedge", delays: []time.Duration{0}, body: bytes.NewReader(data), wantPuts: 1, maxTime: 500 * time.Millisecond, hedge: 2 * time.Second},
		{name: "slow put is hedged", delays: []time.Duration{5 * time.Second, 0}, body: bytes.NewReader(data), wantPuts: 2, maxTime: 2 * time.Second},
		{name: "failed first attempt, hedge succeeds", delays: []time.Duration{100 * time.Millisecond, 0}, fail: []error{errors.New("boom"), nil}, body: bytes.NewReader(data), wantPuts: 2, maxTime: 2 * time.Second},
		{name: "early failure returns without waiting", delays: []time.Duration{0}, fail: []error{errors.New("boom")}, body: bytes.NewReader(data), wantPuts: 1, wantErr: true, maxTime: 500 * time.Millisecond, hedge: 2 * time.Second},
		{name: "non-ReaderAt body is not hedged", delays: []time.Duration{200 * time.Millisecond}, body: struct{ io.Reader }{bytes.NewReader(data)}, wantPuts: 1, maxTime: 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &slowPuts{Bucket: mem.New(nil), delays: tc.delays, fail: tc.fail}
			b, err := objstore.WithHedgedPut(inner, objstore.HedgePolicy{Delay: cmp.Or(tc.hedge, 20*time.Millisecond)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = b.Put(ctx, "k", tc.body, int64(len(data)))
			if el := time.Since(start); el > tc.maxTime {
				t.Errorf("Put took %v, want < %v", el, tc.maxTime)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("Put: %v", err)
			}
			if got := inner.puts.Load(); got != tc.wantPuts {
				t.Errorf("%d puts, want %d", got, tc.wantPuts)
			}
			if tc.wantErr {
				return
			}
			rc, err := b.Get(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(got, data) {
				t.Fatalf("stored %q", got)
			}
		})
	}
}

// TestHedgedPutAdaptive: with a quantile the delay follows the PUTs' own
// latencies, the hedges it causes do not drag it down, and it never goes
// below MinDelay.
func TestHedgedPutAdaptive(t *testing.T) {
	ctx := context.Background()
	data := []byte("segment bytes")
	// 90 of every 100 PUTs take 5 ms, the other 10 take 2 s: the first
	// attempt's p80 is 5 ms, so the delay settles at MinDelay (100 ms), and
	// the slow tenth is hedged there. The floor is far above the fast PUTs
	// so that a loaded machine (a 5 ms timer firing 20 ms late) does not
	// make fast PUTs look slow and hedge them.
	var delays []time.Duration
	for i := range 200 {
		d := 5 * time.Millisecond
		if i%10 == 9 {
			d = 2 * time.Second
		}
		delays = append(delays, d)
	}
	inner := &slowPuts{Bucket: mem.New(nil), delays: delays}
	reg := prometheus.NewRegistry()
	b, err := objstore.WithHedgedPut(inner, objstore.HedgePolicy{Delay: time.Hour, Quantile: 0.8, MinDelay: 100 * time.Millisecond}, reg)
	if err != nil {
		t.Fatal(err)
	}
	// Until warmed up the configured delay (an hour) holds: no hedges, so
	// only fast PUTs are sent then.
	inner.delays = inner.delays[:0]
	for range 40 {
		if err := b.Put(ctx, "k", bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	if got := testenv.Metric(t, reg, "floe_objstore_hedge_delay_seconds", map[string]string{"size": "le1MiB"}); got != 0.1 {
		t.Fatalf("delay after 40 fast PUTs = %vs, want the 100 ms floor", got)
	}
	inner.mu.Lock()
	inner.delays = delays
	inner.mu.Unlock()
	start := time.Now()
	for range 100 {
		if err := b.Put(ctx, "k", bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("100 PUTs with 10 slow ones took %v: the slow ones were not hedged", el)
	}
	// 10 slow first attempts hedged, the 10 PUTs after them sent twice at
	// once, plus the hedges of those hedges' own attempts (each attempt
	// draws the next delay in the schedule).
	if h := testenv.Metric(t, reg, "floe_objstore_hedged_puts_total", nil); h < 10 || h > 35 {
		t.Errorf("%v hedges, want 10–35", h)
	}
}

func TestHedgePolicyValidate(t *testing.T) {
	for _, p := range []objstore.HedgePolicy{{Delay: time.Second, Quantile: 1}, {Delay: time.Second, Quantile: -0.5}, {Delay: time.Second, MinDelay: -1}, {Delay: time.Second, MaxExtra: -0.1}, {Delay: time.Second, MaxExtra: 1.5},
		{Delay: time.Second, MaxExtra: math.NaN()}, {Delay: time.Second, Quantile: math.NaN()}} {
		if _, err := objstore.WithHedgedPut(mem.New(nil), p, nil); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

// TestHedgeDelays: the adaptive delay is the quantile of its size class's
// window, each class apart; after a slow PUT the next ones are sent twice
// at once, until one is fast.
func TestHedgeDelays(t *testing.T) {
	b, err := objstore.WithHedgedPut(mem.New(nil), objstore.HedgePolicy{Delay: time.Second, Quantile: 0.9, MinDelay: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const small, big = 100 << 10, 8 << 20
	for i := range 104 { // 1..100 ms, then 1..4 (the last PUT was fast)
		objstore.ObserveHedge(b, small, time.Duration(i%100+1)*time.Millisecond)
	}
	for range 10 { // still warming up
		objstore.ObserveHedge(b, big, time.Millisecond)
	}
	if d := objstore.HedgeDelay(b, small); d != 90*time.Millisecond {
		t.Errorf("small delay %v, want the p90 90ms", d)
	}
	if d := objstore.HedgeDelay(b, big); d != time.Second {
		t.Errorf("big delay %v, want the configured 1s before warm-up", d)
	}
	objstore.ObserveHedge(b, small, 5*time.Second) // slow
	if d := objstore.HedgeDelay(b, small); d != 0 {
		t.Errorf("delay after a slow PUT %v, want none (two attempts at once)", d)
	}
	objstore.ObserveHedge(b, small, 70*time.Millisecond) // urgent, not slow
	if d := objstore.HedgeDelay(b, small); d < 80*time.Millisecond {
		t.Errorf("delay two PUTs after a slow one %v, want the p90 again", d)
	}
	// Fixed delays stay fixed.
	f, err := objstore.WithHedgedPut(mem.New(nil), objstore.HedgePolicy{Delay: 250 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	objstore.ObserveHedge(f, small, 5*time.Second)
	if d := objstore.HedgeDelay(f, small); d != 250*time.Millisecond {
		t.Errorf("fixed delay became %v", d)
	}
}

// A hedged Put stores the size bytes from where the body stands, as every
// backend does, not from the start of the underlying bytes.
func TestHedgedPutReadsFromBodyPosition(t *testing.T) {
	ctx := context.Background()
	b, err := objstore.WithHedgedPut(mem.New(nil), objstore.HedgePolicy{Delay: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.NewReader([]byte("skip:segment"))
	if _, err := body.Seek(5, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "k", body, 7); err != nil {
		t.Fatal(err)
	}
	rc, err := b.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "segment" {
		t.Fatalf("stored %q, want %q", got, "segment")
	}
}

// TestHedgeSlowState: while the store is slow (the last PUT to succeed
// took the delay or longer), every PUT that starts is sent twice at once,
// until one succeeds fast; a failed PUT ends the slow state, so a failing
// (throttling) bucket is not sent every PUT and retry twice.
func TestHedgeSlowState(t *testing.T) {
	ctx := context.Background()
	data := []byte("segment bytes")
	put := func(b objstore.Bucket) error {
		return b.Put(ctx, "k", bytes.NewReader(data), int64(len(data)))
	}
	newHedged := func(inner objstore.Bucket) objstore.Bucket {
		b, err := objstore.WithHedgedPut(inner, objstore.HedgePolicy{Delay: time.Hour, Quantile: 0.9, MinDelay: time.Hour}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 32 { // warm: the delay is the one-hour floor
			objstore.ObserveHedge(b, int64(len(data)), time.Millisecond)
		}
		objstore.ObserveHedge(b, int64(len(data)), 2*time.Hour) // slow
		return b
	}

	t.Run("slow spell", func(t *testing.T) {
		const puts = 3
		var delays []time.Duration
		for range 2 * puts {
			delays = append(delays, 50*time.Millisecond)
		}
		inner := &slowPuts{Bucket: mem.New(nil), delays: delays}
		b := newHedged(inner)
		// PUTs that start together while the store is slow, as flushes
		// sealed during a slow PUT do.
		var wg sync.WaitGroup
		for range puts {
			wg.Go(func() {
				if err := put(b); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if got := inner.puts.Load(); got != 2*puts {
			t.Errorf("%d PUTs started while slow sent %d PUTs, want %d (each twice)", puts, got, 2*puts)
		}
		// They finished fast (50 ms against the 1 h delay): the slow
		// state is over.
		if d := objstore.HedgeDelay(b, int64(len(data))); d != time.Hour {
			t.Errorf("after fast PUTs the next is hedged after %v, want the delay (1h)", d)
		}
		if err := put(b); err != nil {
			t.Fatal(err)
		}
		if got := inner.puts.Load(); got != 2*puts+1 {
			t.Errorf("a PUT after the slow spell sent %d PUTs, want 1", got-2*puts)
		}
	})

	t.Run("failing bucket", func(t *testing.T) {
		const puts = 5
		var fail []error
		for range 2 * puts {
			fail = append(fail, errors.New("503 SlowDown"))
		}
		inner := &slowPuts{Bucket: mem.New(nil), fail: fail}
		b := newHedged(inner)
		for range puts {
			if err := put(b); err == nil {
				t.Fatal("a failing Put succeeded")
			}
		}
		if got := inner.puts.Load(); got > puts+1 {
			t.Errorf("%d failing Puts after one slow PUT sent %d PUTs, want at most %d", puts, got, puts+1)
		}
		if d := objstore.HedgeDelay(b, int64(len(data))); d != time.Hour {
			t.Errorf("after %d failed Puts the next is hedged after %v, want the delay (1h)", puts, d)
		}
	})
}

// TestHedgeBudget: against a store slower than the hedge delay on every
// PUT, hedging adds at most MaxExtra PUTs per PUT, plus the few it saves
// up, not one per PUT.
func TestHedgeBudget(t *testing.T) {
	ctx := context.Background()
	data := []byte("segment bytes")
	const puts = 40
	var delays []time.Duration
	for range 2 * puts {
		delays = append(delays, 5*time.Millisecond)
	}
	inner := &slowPuts{Bucket: mem.New(nil), delays: delays}
	b, err := objstore.WithHedgedPut(inner, objstore.HedgePolicy{Delay: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range puts {
		if err := b.Put(ctx, "k", bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	extra := int(inner.puts.Load()) - puts
	// The default budget: a quarter of a PUT per PUT, 4 saved up at first.
	if most := puts/4 + 4; extra > most || extra < 1 {
		t.Errorf("%d PUTs, each slower than the hedge delay, sent %d extra PUTs, want 1 to %d", puts, extra, most)
	}
}
