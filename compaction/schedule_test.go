package compaction_test

import (
	"context"
	"iter"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/compaction"
	"github.com/floebroker/floe/objstore"
)

// countingCatalog counts the per-partition reads of a pass and the
// producer-state scans.
type countingCatalog struct {
	compaction.Catalog
	offsets, expiries atomic.Int64
}

func (c *countingCatalog) Offsets(ctx context.Context, tp catalog.TopicPartition) (catalog.PartitionOffsets, error) {
	c.offsets.Add(1)
	return c.Catalog.Offsets(ctx, tp)
}

func (c *countingCatalog) ExpireProducerStates(ctx context.Context, before time.Time, limit int) (int, error) {
	c.expiries.Add(1)
	return c.Catalog.ExpireProducerStates(ctx, before, limit)
}

// TestWorkDoneOncePerInterval: agents' passes in one interval do each
// shard, the GC and the producer expiry once between them, not once each
// (each agent took every lease the one before had just given back).
func TestWorkDoneOncePerInterval(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		top := e.topic("shared", 8, nil)
		e.flushSegment(tps(top), 1, 2, time.Now().UnixMilli())
		const interval = time.Second
		counted := make([]*countingCatalog, 3)
		var cs []*compaction.Compactor
		for i, holder := range []string{"a", "b", "c"} {
			counted[i] = &countingCatalog{Catalog: e.cat}
			c, err := compaction.New(compaction.Config{Cluster: cluster, Holder: holder, Interval: interval, Shards: 4,
				OrphanInterval: time.Hour}, counted[i], e.bucket, nil, nil, e.clk.Now)
			if err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
		for _, c := range cs {
			if err := c.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
		}
		var offsets, expiries int64
		for _, c := range counted {
			offsets += c.offsets.Load()
			expiries += c.expiries.Load()
		}
		if offsets != 8 || expiries != 1 {
			t.Fatalf("three agents' passes read %d partitions' offsets and scanned producer states %d times, want 8 and 1", offsets, expiries)
		}
		// Once the interval has passed, the work is due again.
		time.Sleep(interval)
		if err := cs[1].RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if n := counted[1].offsets.Load(); n == 0 {
			t.Fatal("the shards were not done again after the interval")
		}
	})
}

// listCounter counts bucket listings (orphan sweeps).
type listCounter struct {
	objstore.Bucket
	lists atomic.Int64
}

func (b *listCounter) List(ctx context.Context, prefix string) iter.Seq2[objstore.ObjectInfo, error] {
	b.lists.Add(1)
	return b.Bucket.List(ctx, prefix)
}

// TestSweepDueAfterHolderDies: an agent that finds the orphan sweep's
// lease held by one that swept and died sweeps once the lease lapses, not
// a further interval after it first looked.
func TestSweepDueAfterHolderDies(t *testing.T) {
	eachBackendOnClock(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		const orphans = 10 * time.Minute
		b := &listCounter{Bucket: e.bucket}
		newC := func(holder string) *compaction.Compactor {
			c, err := compaction.New(compaction.Config{Cluster: cluster, Holder: holder, Interval: time.Minute, Shards: 1,
				OrphanInterval: orphans}, e.cat, b, nil, nil, e.clk.Now)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		if err := newC("dies").RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if n := b.lists.Load(); n != 1 {
			t.Fatalf("%d sweeps by the first agent, want 1", n)
		}
		next := newC("next")
		e.clk.Advance(2 * time.Minute)
		if err := next.RunOnce(ctx); err != nil { // the sweep's lease is still held
			t.Fatal(err)
		}
		e.clk.Advance(orphans - time.Minute) // past the dead holder's lease
		if err := next.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if n := b.lists.Load(); n != 2 {
			t.Fatalf("%d sweeps once the dead holder's lease lapsed, want 2", n)
		}
	})
}
