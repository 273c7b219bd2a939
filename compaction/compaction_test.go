package compaction_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/compaction"
)

func TestMergePreservesRecordsAndShrinksCatalog(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		top := e.topic("merge", 3, nil)
		parts := tps(top)
		for range 30 {
			e.flushSegment(parts, 2, 3, time.Now().UnixMilli())
		}
		before := map[int32][]readBatch{}
		for _, tp := range parts {
			before[tp.Partition] = e.consume(tp)
		}
		s0 := e.stats()
		c := e.compactor("a", nil)
		// Too young: nothing happens.
		if err := c.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if s := e.stats(); s.Rows != s0.Rows {
			t.Fatalf("young segments merged: rows %d -> %d", s0.Rows, s.Rows)
		}
		e.clk.Advance(2 * time.Minute)
		if err := c.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		s1 := e.stats()
		for _, tp := range parts {
			if got := e.consume(tp); !reflect.DeepEqual(got, before[tp.Partition]) {
				t.Fatalf("partition %d changed by merge: %d batches before, %d after", tp.Partition, len(before[tp.Partition]), len(got))
			}
		}
		if s1.Rows >= s0.Rows/4 || s1.LiveBytes != s0.LiveBytes {
			t.Fatalf("rows %d -> %d, live bytes %d -> %d", s0.Rows, s1.Rows, s0.LiveBytes, s1.LiveBytes)
		}
		// Old objects stay until the grace period passed.
		n0, _ := e.bucketObjects()
		if n0 < 30 {
			t.Fatalf("objects deleted before grace: %d left", n0)
		}
		e.clk.Advance(11 * time.Minute)
		if err := c.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		n1, size := e.bucketObjects()
		s2 := e.stats()
		if int64(n1) != s2.Objects || n1 > 2*len(parts) {
			t.Fatalf("after GC: %d bucket objects, %d catalog objects", n1, s2.Objects)
		}
		if float64(size) > 1.2*float64(s2.LiveBytes) {
			t.Fatalf("bucket holds %d bytes for %d live bytes", size, s2.LiveBytes)
		}
		for _, tp := range parts {
			if got := e.consume(tp); !reflect.DeepEqual(got, before[tp.Partition]) {
				t.Fatalf("partition %d changed after GC", tp.Partition)
			}
		}
	})
}

// TestMergeGetsPastRowsItCannotMerge: a partition busy for a while (rows
// in large objects) and quiet since (small objects). A merge pass reads one
// page of rows; the pages of large-object rows at the log start must not
// keep it from ever reaching the small objects after them.
func TestMergeGetsPastRowsItCannotMerge(t *testing.T) {
	compaction.SetMergeRowsPerPass(t, 8)
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		top := e.topic("busy-then-quiet", 1, nil)
		parts := tps(top)
		now := time.Now().UnixMilli()
		for range 20 {
			e.flushSegment(parts, 1, 400, now) // ≈ 40 KB objects: not small
		}
		for range 12 {
			e.flushSegment(parts, 1, 2, now)
		}
		before := e.consume(parts[0])
		s0 := e.stats()
		e.clk.Advance(2 * time.Minute)
		c := e.compactor("a", nil) // small: below 32 KiB
		for range 6 {
			if err := c.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
		}
		s1 := e.stats()
		if s1.Rows > s0.Rows-10 {
			t.Fatalf("rows %d -> %d: the 12 small objects' rows were not merged", s0.Rows, s1.Rows)
		}
		if got := e.consume(parts[0]); !reflect.DeepEqual(got, before) {
			t.Fatalf("merge changed the partition: %d batches before, %d after", len(before), len(got))
		}
	})
}

func TestSteadyLoadStaysBounded(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		top := e.topic("steady", 4, nil)
		parts := tps(top)
		c := e.compactor("a", func(cfg *compaction.Config) { cfg.GCGrace = 30 * time.Second })
		// One flush per 10 s of simulated time for 30 minutes, a pass
		// every 30 s.
		var maxRows, maxObjects int64
		for i := range 180 {
			e.flushSegment(parts, 1, 2, e.clk.Now().UnixMilli())
			e.clk.Advance(10 * time.Second)
			if i%3 == 2 {
				if err := c.RunOnce(ctx); err != nil {
					t.Fatal(err)
				}
				s := e.stats()
				maxRows, maxObjects = max(maxRows, s.Rows), max(maxObjects, s.Objects)
			}
		}
		// Bound: rows of objects younger than MergeMinAge + grace (≤ 6+3
		// flushes × partitions) plus one row per merged object.
		s := e.stats()
		t.Logf("after 180 flushes: rows %d (max %d), objects %d (max %d), live %d bytes", s.Rows, maxRows, s.Objects, maxObjects, s.LiveBytes)
		if maxRows > 20*int64(len(parts)) || maxObjects > 30 {
			t.Fatalf("unbounded: max rows %d, max objects %d", maxRows, maxObjects)
		}
		n, size := e.bucketObjects()
		if int64(n) != s.Objects || float64(size) > 1.5*float64(s.LiveBytes)+float64(64<<10) {
			t.Fatalf("bucket %d objects %d bytes; catalog %d objects %d live bytes", n, size, s.Objects, s.LiveBytes)
		}
		for _, tp := range parts {
			if got := len(e.consume(tp)); got != 180 {
				t.Fatalf("partition %d: %d batches, want 180", tp.Partition, got)
			}
		}
	})
}

func TestRetention(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		byTime := e.topic("by-time", 1, map[string]string{"retention.ms": "60000"})
		bySize := e.topic("by-size", 1, map[string]string{"retention.bytes": "1"})
		byDelete := e.topic("by-delete", 1, nil)
		all := []catalog.TopicPartition{tps(byTime)[0], tps(bySize)[0], tps(byDelete)[0]}
		old := e.clk.Now().Add(-2 * time.Minute).UnixMilli()
		for range 5 {
			e.flushSegment(all, 1, 2, old)
		}
		for range 3 {
			e.flushSegment(all, 1, 2, e.clk.Now().UnixMilli())
		}
		tpSize := tps(bySize)[0]
		rows, _ := e.cat.CompactionRows(ctx, tpSize, 0, 100)
		size := rows[0].ByteLength
		// Keep at least two rows' bytes.
		if _, err := e.cat.(catalog.Catalog).AlterTopicConfigs(ctx, "by-size",
			[]catalog.ConfigOp{{Key: "retention.bytes", Value: itoa(2 * size)}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.cat.DeleteRecords(ctx, tps(byDelete)[0], 7); err != nil {
			t.Fatal(err)
		}
		c := e.compactor("a", nil)
		if err := c.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			tp                    catalog.TopicPartition
			logStart, batch, rows int
		}{
			{all[0], 10, 3, 3}, // 5 old batches of 2 records expired
			{all[1], 12, 2, 2}, // two newest rows kept
			{all[2], 7, 4, 5},  // DeleteRecords; the row straddling 7 stays
		} {
			o, _ := e.cat.Offsets(ctx, tt.tp)
			got := e.consume(tt.tp)
			rows, _ := e.cat.CompactionRows(ctx, tt.tp, 0, 100)
			if o.LogStart != int64(tt.logStart) || len(got) != tt.batch || len(rows) != tt.rows {
				t.Errorf("partition %v: log start %d, %d batches, %d rows; want %d, %d", tt.tp.Partition, o.LogStart, len(got), len(rows), tt.logStart, tt.batch)
			}
		}
		// Objects of fully expired flushes are freed after the grace period.
		e.clk.Advance(11 * time.Minute)
		if err := c.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		n, _ := e.bucketObjects()
		if s := e.stats(); int64(n) != s.Objects {
			t.Fatalf("bucket %d objects, catalog %d", n, s.Objects)
		}
	})
}

func TestCrashBetweenPutAndSwap(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		top := e.topic("crash", 2, nil)
		parts := tps(top)
		for range 10 {
			e.flushSegment(parts, 1, 2, time.Now().UnixMilli())
		}
		before := e.consume(parts[1])
		e.clk.Advance(5 * time.Minute)
		// The first worker uploads its merge outputs, then dies before
		// every swap (its catalog fails), holding the leases. Its lease
		// must outlast every gap between its renewals, however slow the
		// machine: one that lapses makes it stop before the swap.
		const leaseTTL = 2 * time.Second
		crashing := &failingSwaps{Catalog: e.cat}
		c1, _ := compaction.New(compaction.Config{Cluster: cluster, Holder: "dies", TargetBytes: 64 << 10, Shards: 2,
			MergeMinAge: time.Minute, LeaseTTL: leaseTTL, Interval: leaseTTL, OrphanInterval: leaseTTL}, crashing, e.bucket, nil, nil, e.clk.Now)
		if err := c1.RunOnce(ctx); err == nil || crashing.n == 0 {
			t.Fatalf("no swap attempted (pass: %v)", err)
		}
		objs, _ := e.bucketObjects()
		if s := e.stats(); int64(objs) <= s.Objects {
			t.Fatalf("expected orphaned uploads: bucket %d, catalog %d", objs, s.Objects)
		}
		// The next holder takes over after expiry (the catalog's real
		// clock): every lease was taken or renewed before the pass ended.
		time.Sleep(leaseTTL + 10*time.Millisecond)
		c2 := e.compactor("next", nil)
		if err := c2.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if got := e.consume(parts[1]); !reflect.DeepEqual(got, before) {
			t.Fatal("records changed")
		}
		if s := e.stats(); s.Rows > int64(len(parts)) {
			t.Fatalf("next holder did not merge: %d rows", s.Rows)
		}
		// After the grace period the orphans and the merged-away objects
		// are gone, and every row's object is still there.
		e.clk.Advance(11 * time.Minute)
		if err := c2.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		objs, _ = e.bucketObjects()
		if s := e.stats(); int64(objs) != s.Objects {
			t.Fatalf("after GC: bucket %d objects, catalog %d", objs, s.Objects)
		}
		for _, tp := range parts {
			if got := len(e.consume(tp)); got != 10 {
				t.Fatalf("partition %d: %d batches", tp.Partition, got)
			}
		}
	})
}

func TestSwapConflict(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		top := e.topic("cas", 1, nil)
		tp := tps(top)[0]
		for range 3 {
			e.flushSegment([]catalog.TopicPartition{tp}, 1, 2, 1)
		}
		rows, _ := e.cat.CompactionRows(ctx, tp, 0, 10)
		old := []catalog.BatchRow{rows[0].BatchRow, rows[1].BatchRow}
		swap := catalog.RowSwap{TopicPartition: tp, Old: old, ObjectKey: "v1/0000/x/a.seg", ObjectSize: 1 << 20,
			New: []catalog.BatchRow{{TopicPartition: tp, BaseOffset: 0, LastOffset: 3, ByteOffset: 10, ByteLength: rows[0].ByteLength + rows[1].ByteLength}}}
		// A DeleteRecords + trim removes row 0 first: the swap loses.
		e.cat.DeleteRecords(ctx, tp, 2)
		e.cat.TrimRows(ctx, tp)
		if err := e.cat.SwapRows(ctx, swap); !errors.Is(err, catalog.ErrSwapConflict) {
			t.Fatalf("stale swap: %v", err)
		}
		if got := len(e.consume(tp)); got != 2 {
			t.Fatalf("%d batches after failed swap", got)
		}
		swap.Old, swap.New[0].BaseOffset = old[1:], 2
		if err := e.cat.SwapRows(ctx, swap); err != nil {
			t.Fatal(err)
		}
		if err := e.cat.SwapRows(ctx, swap); !errors.Is(err, catalog.ErrSwapConflict) {
			t.Fatalf("repeated swap: %v", err)
		}
	})
}

// failingSwaps is a catalog whose SwapRows never reaches the database, as
// when the worker dies after its upload.
type failingSwaps struct {
	compaction.Catalog
	n int
}

func (f *failingSwaps) SwapRows(context.Context, catalog.RowSwap) error {
	f.n++
	return errors.New("killed")
}

func (f *failingSwaps) ReleaseLease(context.Context, string, string) error { return nil }

func itoa(n int64) string { return strconvI(n) }
