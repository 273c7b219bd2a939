package objstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/mem"
)

// checker is a backend whose bucket is gone: every key is missing, and
// CheckBucket says why.
type checker struct {
	objstore.Bucket
	checks int
}

var errGone = errors.New("bucket gone")

func (c *checker) CheckBucket(context.Context) error { c.checks++; return errGone }

// TestCheckBucketThroughWrappers: CheckBucket reaches the backend's check
// under every wrapper, once; a backend without one is probed with a Stat
// whose not-found passes.
func TestCheckBucketThroughWrappers(t *testing.T) {
	ctx := t.Context()
	c := &checker{Bucket: mem.New(nil)}
	var b objstore.Bucket = objstore.WithLatency(c, objstore.LatencyConfig{})
	b = objstore.WithRequestCount(b, objstore.NewRequestCounter(prometheus.NewRegistry()))
	b, err := objstore.WithHedgedPut(b, objstore.HedgePolicy{Delay: time.Second}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	b = objstore.WithPrefix(b, "p")
	b = objstore.WithRetry(b, objstore.RetryConfig{})
	b = objstore.WithMetrics(b, prometheus.NewRegistry())
	b = objstore.WithBounds(b, objstore.DefaultBounds)
	if err := objstore.CheckBucket(ctx, b); !errors.Is(err, errGone) || c.checks != 1 {
		t.Errorf("CheckBucket = %v after %d checks, want the backend's error after 1", err, c.checks)
	}
	if err := objstore.CheckBucket(ctx, objstore.WithRetry(mem.New(nil), objstore.RetryConfig{})); err != nil {
		t.Errorf("CheckBucket of a mem bucket = %v", err)
	}
}
