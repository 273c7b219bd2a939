package objstore

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HedgePolicy says when WithHedgedPut starts a second attempt of a PUT.
//
// A fixed Delay suits a store whose latency is known and steady. With
// Quantile set, the delay follows the store instead: it is that quantile of
// the recent first-attempt latencies of PUTs of similar size, so about
// 1-Quantile of PUTs are hedged whatever the region, object size or time of
// day, and a slow spell raises the delay rather than doubling every PUT.
//
// An adaptive policy also sends every PUT that starts while the store is
// slow (the last PUT to succeed took the delay or longer) twice at once.
// Floe's PUTs gate producers: while a segment's PUT is slow, producers
// whose window is full cannot send, and the segments that follow carry
// everything they held back, which has already waited through the slow
// PUT. Two attempts from the start make such a PUT take the faster of two
// draws of the store's latency, spending extra PUTs exactly where the
// produce p99 is made. (Hedging them at the median instead gave an S3
// Standard-like ack p99 about 65 ms higher: 490 ms against 424 ms, medians
// of 6 interleaved runs; doubling only the first PUT after a slow one gave
// 469 ms against 423 ms, medians of 3 interleaved pairs.) A failed PUT
// ends the slow state: a store that fails is not answered with twice the
// requests, retries included.
//
// Whatever the store does, hedging adds at most MaxExtra PUTs per PUT over
// time (a few more in a burst): a store slow because it is overloaded gets
// a bounded share of extra load, not twice its requests.
type HedgePolicy struct {
	// Delay is the hedge delay, or with Quantile set the delay used until
	// enough PUTs of a size have been timed. <= 0 turns hedging off.
	Delay time.Duration
	// Quantile in (0, 1) makes the delay adaptive (0.9: hedge the slowest
	// tenth). 0 keeps Delay fixed.
	Quantile float64
	// MinDelay is the least adaptive delay (default DefaultHedgeMinDelay):
	// hedging a store that answers in milliseconds buys nothing.
	MinDelay time.Duration
	// MaxExtra bounds the extra PUTs per PUT hedging may send over time
	// (default DefaultHedgeMaxExtra). A PUT that would exceed it waits for
	// its first attempt alone.
	MaxExtra float64
}

// DefaultHedgeMinDelay is HedgePolicy.MinDelay's default.
const DefaultHedgeMinDelay = 50 * time.Millisecond

// DefaultHedgeMaxExtra is HedgePolicy.MaxExtra's default: at most a
// quarter more PUTs. At p90 with slow spells doubled, S3 Standard-like
// latency costs 0.14–0.24 extra PUTs per PUT.
const DefaultHedgeMaxExtra = 0.25

// hedgeBurst is how many extra PUTs the budget saves up: a slow spell
// after a quiet one may double a few PUTs in a row.
const hedgeBurst = 4

// Validate reports a policy WithHedgedPut cannot follow. The ranges are
// checked as what must hold, so that NaN, which every comparison fails,
// is refused: a NaN MaxExtra made the budget NaN, which never ran out (every
// PUT could be sent twice), and a NaN Quantile indexed the window with
// int(NaN), out of range on amd64: a panic.
func (p HedgePolicy) Validate() error {
	if !(p.Quantile >= 0 && p.Quantile < 1) {
		return fmt.Errorf("objstore: hedge quantile %v outside [0, 1)", p.Quantile)
	}
	if p.MinDelay < 0 {
		return fmt.Errorf("objstore: hedge min delay %v < 0", p.MinDelay)
	}
	if !(p.MaxExtra >= 0 && p.MaxExtra <= 1) {
		return fmt.Errorf("objstore: hedge max extra %v outside [0, 1]", p.MaxExtra)
	}
	return nil
}

// WithHedgedPut returns a Bucket whose Put starts a second, identical Put
// of the same key when the first has not finished after the policy's delay,
// and returns as soon as either succeeds (the other is cancelled).
//
// Object stores have long latency tails (S3 Standard: PUT p50 ≈ 100 ms,
// p99 ≈ 400 ms), and a produce is acknowledged only after its segment's PUT,
// so the PUT tail is the produce tail. A hedge at roughly the p90 cuts the
// p99 at the cost of a tenth more PUTs. It is safe because Floe writes
// every key once with immutable bytes: both attempts write the same object,
// and Put is atomic, so readers see one whole copy whichever lands last.
//
// Only a body that is an io.ReaderAt (bytes.Reader, *os.File, …) can be
// read by two attempts at once; any other body is put without a hedge.
// A policy with no delay returns b unchanged. reg, if not nil, receives
// floe_objstore_hedged_puts_total (the extra PUTs, which are billed) and,
// for an adaptive policy, floe_objstore_hedge_delay_seconds.
func WithHedgedPut(b Bucket, p HedgePolicy, reg prometheus.Registerer) (Bucket, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.Delay <= 0 {
		return b, nil
	}
	if p.MinDelay == 0 {
		p.MinDelay = DefaultHedgeMinDelay
	}
	if p.MaxExtra == 0 {
		p.MaxExtra = DefaultHedgeMaxExtra
	}
	h := &hedgeBucket{Bucket: b, policy: p, tokens: hedgeBurst}
	for i := range h.classes {
		h.classes[i].delay = p.Delay
	}
	if reg != nil {
		h.hedges = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_objstore_hedged_puts_total",
			Help: "Second PUTs started: the first had not finished within the hedge delay, or the store was slow when it started.",
		}))
		if p.Quantile > 0 {
			h.delays = register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "floe_objstore_hedge_delay_seconds",
				Help: "The adaptive hedge delay now in force, per object size class.",
			}, []string{"size"}))
			for i := range h.classes {
				h.delays.WithLabelValues(sizeClassNames[i]).Set(p.Delay.Seconds())
			}
		}
	}
	return h, nil
}

// Size classes: a PUT's latency grows with its size, so each class keeps
// its own window. Segment objects are mostly in one class at a time.
var (
	sizeClassLimits = [...]int64{1 << 20, 4 << 20, 16 << 20}
	sizeClassNames  = [...]string{"le1MiB", "le4MiB", "le16MiB", "gt16MiB"}
)

func sizeClass(size int64) int {
	for i, l := range sizeClassLimits {
		if size <= l {
			return i
		}
	}
	return len(sizeClassLimits)
}

const (
	// hedgeWindow is how many recent PUTs per class the quantile is taken
	// over: a few minutes of flushes, so it tracks the store without
	// swinging on one slow second.
	hedgeWindow = 256
	// hedgeWarmup PUTs are timed before the quantile replaces Delay.
	hedgeWarmup = 32
	// hedgeRecompute: the quantile is recomputed every so many PUTs.
	hedgeRecompute = 8
)

type hedgeBucket struct {
	Bucket
	policy  HedgePolicy
	hedges  prometheus.Counter
	delays  *prometheus.GaugeVec
	classes [len(sizeClassNames)]latencyWindow

	// The budget of extra PUTs: each PUT earns MaxExtra of one, up to
	// hedgeBurst saved, and each second attempt spends one.
	mu     sync.Mutex
	tokens float64
}

// latencyWindow holds a class's recent first-attempt latencies and the
// delay derived from them.
type latencyWindow struct {
	mu      sync.Mutex
	samples [hedgeWindow]time.Duration
	n       int // samples recorded, total
	delay   time.Duration
	warm    bool // enough PUTs timed for the quantile
	// slow: the last PUT to succeed took the delay or longer, and no PUT
	// has failed since.
	slow    bool
	scratch []time.Duration
}

var _ Bucket = (*hedgeBucket)(nil)

// delay is the hedge delay of a PUT starting now: none (two attempts at
// once) while the store is slow, else the class's delay.
func (h *hedgeBucket) delay(class int) time.Duration {
	w := &h.classes[class]
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.slow && w.warm {
		return 0
	}
	return w.delay
}

// earn credits the budget with one PUT's share of extra PUTs.
func (h *hedgeBucket) earn() {
	h.mu.Lock()
	h.tokens = min(h.tokens+h.policy.MaxExtra, hedgeBurst)
	h.mu.Unlock()
}

// spend takes one extra PUT from the budget, if it holds one.
func (h *hedgeBucket) spend() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tokens < 1 {
		return false
	}
	h.tokens--
	return true
}

// failed ends a slow state: a PUT failed, and a failing store is not sent
// every PUT and retry twice.
func (h *hedgeBucket) failed(class int) {
	w := &h.classes[class]
	w.mu.Lock()
	w.slow = false
	w.mu.Unlock()
}

// observe records how long a PUT's first attempt took. When the hedge won,
// the first attempt's time is known only to exceed the elapsed time; that
// lower bound is recorded. It is above the delay, which is all a quantile
// at or below the delay's needs, so the estimate is not pulled down by the
// hedges it causes. A PUT sent twice from the start (doubled) took the
// faster of two draws, which says whether the store is still slow but
// would pull the quantile down: it is not recorded.
func (h *hedgeBucket) observe(class int, d time.Duration, doubled bool) {
	if h.policy.Quantile <= 0 {
		return
	}
	w := &h.classes[class]
	w.mu.Lock()
	defer w.mu.Unlock()
	// Slow by the ordinary delay, not by the zero delay of a doubled PUT:
	// a fast one ends the slow state.
	w.slow = d >= w.delay
	if doubled {
		return
	}
	w.samples[w.n%hedgeWindow] = d
	w.n++
	if w.n < hedgeWarmup || w.n%hedgeRecompute != 0 {
		return
	}
	w.scratch = append(w.scratch[:0], w.samples[:min(w.n, hedgeWindow)]...)
	slices.Sort(w.scratch)
	q := w.scratch[int(h.policy.Quantile*float64(len(w.scratch)))]
	w.delay = max(q, h.policy.MinDelay)
	w.warm = true
	if h.delays != nil {
		h.delays.WithLabelValues(sizeClassNames[class]).Set(w.delay.Seconds())
	}
}

func (h *hedgeBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	ra, ok := r.(io.ReaderAt)
	if !ok {
		return h.Bucket.Put(ctx, key, r, size)
	}
	// The body's bytes start where r stands, not at the start of ra.
	var base int64
	if s, ok := r.(io.Seeker); ok {
		var err error
		if base, err = s.Seek(0, io.SeekCurrent); err != nil {
			return h.Bucket.Put(ctx, key, r, size)
		}
	}
	class := sizeClass(size)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan error, 2)
	attempt := func() {
		results <- h.Bucket.Put(ctx, key, io.NewSectionReader(ra, base, size), size)
	}
	h.earn()
	start := time.Now()
	go attempt()
	running := 1
	// Two attempts at once while the store is slow, else a hedge after
	// the delay; either only within the budget.
	var timer <-chan time.Time // nil: no hedge to come
	d := h.delay(class)
	second := func() {
		h.hedged()
		running++
		go attempt()
	}
	doubled := d == 0 && h.spend()
	switch {
	case doubled:
		second()
	case d > 0:
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	var firstErr error
	for {
		select {
		case <-timer:
			if h.spend() {
				second()
			}
		case err := <-results:
			running--
			if err == nil {
				h.observe(class, time.Since(start), doubled)
				return nil
			}
			if firstErr == nil {
				firstErr = err
			}
			// A failure before the hedge started does not wait for the
			// hedge delay: the retry wrapper above decides what comes next.
			if running == 0 {
				h.failed(class)
				return firstErr
			}
		}
	}
}

func (h *hedgeBucket) hedged() {
	if h.hedges != nil {
		h.hedges.Inc()
	}
}

// Unwrap returns the bucket this one wraps (see CheckBucket).
func (h *hedgeBucket) Unwrap() Bucket { return h.Bucket }
