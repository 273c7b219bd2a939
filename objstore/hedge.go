package objstore

import (
	"context"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// WithHedgedPut returns a Bucket whose Put starts a second, identical Put
// of the same key when the first has not finished after `after`, and
// returns as soon as either succeeds (the other is cancelled).
//
// Object stores have long latency tails (S3 Standard: PUT p50 ≈ 100 ms,
// p99 ≈ 400 ms), and a produce is acknowledged only after its segment's PUT,
// so the PUT tail is the produce tail. A hedge at roughly the p90 cuts the
// p99 at the cost of a few percent more PUTs. It is safe because Floe writes
// every key once with immutable bytes: both attempts write the same object,
// and Put is atomic, so readers see one whole copy whichever lands last.
//
// Only a body that is an io.ReaderAt (bytes.Reader, *os.File, …) can be
// read by two attempts at once; any other body is put without a hedge.
// after <= 0 returns b unchanged. reg, if not nil, receives
// floe_objstore_hedged_puts_total (the extra PUTs, which are billed).
func WithHedgedPut(b Bucket, after time.Duration, reg prometheus.Registerer) Bucket {
	if after <= 0 {
		return b
	}
	h := &hedgeBucket{Bucket: b, after: after}
	if reg != nil {
		h.hedges = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_objstore_hedged_puts_total",
			Help: "Second PUTs started because the first had not finished within the hedge delay.",
		}))
	}
	return h
}

type hedgeBucket struct {
	Bucket
	after  time.Duration
	hedges prometheus.Counter
}

var _ Bucket = (*hedgeBucket)(nil)

func (h *hedgeBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	ra, ok := r.(io.ReaderAt)
	if !ok {
		return h.Bucket.Put(ctx, key, r, size)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan error, 2)
	attempt := func() {
		results <- h.Bucket.Put(ctx, key, io.NewSectionReader(ra, 0, size), size)
	}
	go attempt()
	timer := time.NewTimer(h.after)
	defer timer.Stop()
	running := 1
	var firstErr error
	for {
		select {
		case <-timer.C:
			if h.hedges != nil {
				h.hedges.Inc()
			}
			running++
			go attempt()
		case err := <-results:
			running--
			if err == nil {
				return nil
			}
			if firstErr == nil {
				firstErr = err
			}
			// A failure before the hedge started does not wait for the
			// hedge delay: the retry wrapper above decides what comes next.
			if running == 0 {
				return firstErr
			}
		}
	}
}
