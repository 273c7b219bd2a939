package objstore

import (
	"context"
	"time"
)

// SetRetryHooks replaces the retry wrapper's sleep and jitter, for tests.
func SetRetryHooks(c *RetryConfig, sleep func(context.Context, time.Duration) error, jitter func() float64) {
	c.sleep, c.jitter = sleep, jitter
}

// Sample exposes Dist.sample.
func (d Dist) Sample(z float64) time.Duration { return d.sample(z) }

// HedgeDelay returns the delay b (from WithHedgedPut) would use now for a
// PUT of size bytes, and ObserveHedge records a first attempt's latency
// as a finished PUT does.
func HedgeDelay(b Bucket, size int64) time.Duration {
	h := b.(*hedgeBucket)
	return h.delay(sizeClass(size))
}

func ObserveHedge(b Bucket, size int64, d time.Duration) {
	h := b.(*hedgeBucket)
	h.observe(sizeClass(size), d, false)
}
