package compaction_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/floebroker/floe/compaction"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/objstoretest"
)

// TestStalledReadEndsPass: a merge whose read stalls gives up after the
// bound, so the agent's later passes run (before, the pass waited on the
// body until TCP gave up, and compaction stopped on that agent).
func TestStalledReadEndsPass(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		top := e.topic("stalled", 1, nil)
		parts := tps(top)
		for range 4 {
			e.flushSegment(parts, 2, 3, time.Now().UnixMilli())
		}
		e.clk.Advance(2 * time.Minute)
		cfg := compaction.Config{Cluster: cluster, Holder: "a", Interval: time.Second, MergeMinAge: time.Minute,
			TargetBytes: 64 << 10, GCGrace: 10 * time.Minute, OrphanInterval: time.Hour, LeaseTTL: time.Minute, Shards: 1,
			Bounds: objstore.Bounds{Call: 100 * time.Millisecond}}
		c, err := compaction.New(cfg, e.cat, objstoretest.Stalling{Bucket: e.bucket}, nil, nil, e.clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		err = c.RunOnce(ctx)
		if !errors.Is(err, objstore.ErrStalled) {
			t.Fatalf("pass over a stalled bucket: err = %v (after %v), want ErrStalled", err, time.Since(start))
		}
		s0 := e.stats()
		// The same agent's next pass, on a bucket that answers, merges.
		c = e.compactor("a", nil)
		if err := c.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		if s := e.stats(); s.Rows >= s0.Rows {
			t.Fatalf("rows %d -> %d: nothing merged after the stall", s0.Rows, s.Rows)
		}
	})
}
