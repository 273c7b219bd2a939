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
