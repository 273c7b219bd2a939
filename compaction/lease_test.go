package compaction_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/compaction"
)

// lostLease is a catalog on which the lease is lost once work has begun:
// every read of a partition's rows takes a whole lease TTL (a slow pass, a
// paused process) and renewals fail, as when another worker took over.
type lostLease struct {
	compaction.Catalog
	clk   *clock
	ttl   time.Duration
	swaps atomic.Int32
}

func (l *lostLease) CompactionRows(ctx context.Context, tp catalog.TopicPartition, from int64, limit int) ([]catalog.CompactionRow, error) {
	l.clk.Advance(l.ttl)
	return l.Catalog.CompactionRows(ctx, tp, from, limit)
}

func (l *lostLease) RenewLease(context.Context, string, string, time.Duration) (bool, error) {
	return false, nil
}

func (l *lostLease) SwapRows(ctx context.Context, s catalog.RowSwap) error {
	l.swaps.Add(1)
	return l.Catalog.SwapRows(ctx, s)
}

// A worker whose lease expired in the middle of a partition's pass stops
// before its next swap: another worker may be working the partition.
func TestNoSwapAfterLeaseLost(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		top := e.topic("lease", 1, map[string]string{"cleanup.policy": "compact,delete"})
		tp := tps(top)
		for range 10 {
			e.flushSegment(tp, 1, 2, time.Now().UnixMilli())
		}
		before := e.consume(tp[0])
		e.clk.Advance(5 * time.Minute)
		cat := &lostLease{Catalog: e.cat, clk: e.clk, ttl: time.Minute}
		c, err := compaction.New(compaction.Config{Cluster: cluster, Holder: "slow", TargetBytes: 1 << 10, Shards: 1,
			MergeMinAge: time.Minute, LeaseTTL: time.Minute}, cat, e.bucket, nil, nil, e.clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RunOnce(ctx); err != nil {
			t.Fatalf("a lost lease is not a failed pass: %v", err)
		}
		if n := cat.swaps.Load(); n != 0 {
			t.Fatalf("%d swaps after the lease was lost", n)
		}
		if got := e.consume(tp[0]); len(got) != len(before) {
			t.Fatalf("%d batches, want %d", len(got), len(before))
		}
		if objs, _ := e.bucketObjects(); int64(objs) != e.stats().Objects {
			t.Fatalf("bucket %d objects, catalog %d: an upload of the abandoned work was left behind", objs, e.stats().Objects)
		}
	})
}
