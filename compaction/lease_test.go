package compaction_test

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/compaction"
	"github.com/floebroker/floe/internal/testenv"
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

// zstdKeyedBatches is n zstd batches of two records each, k<i>=old then
// k<i>=new: compaction drops a record of every batch, so re-encodes each.
func zstdKeyedBatches(t *testing.T, tag string, n int, ts int64) []byte {
	t.Helper()
	comp, err := kgo.DefaultCompressor(kgo.ZstdCompression())
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for i := range n {
		var body []byte
		for d, v := range []string{"old", "new"} {
			r := kmsg.Record{OffsetDelta: int32(d), Key: fmt.Appendf(nil, "k-%s-%d", tag, i), Value: []byte(v)}
			r.Length = int32(len(r.AppendTo(nil)) - 1)
			body = r.AppendTo(body)
		}
		var buf bytes.Buffer
		z, _ := comp.Compress(&buf, body)
		rb := kmsg.RecordBatch{Magic: 2, Attributes: 4, LastOffsetDelta: 1, FirstTimestamp: ts, MaxTimestamp: ts,
			ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 2, Records: z}
		raw := encodeBatch(&rb)
		out = append(out, raw...)
	}
	return out
}

// A log compaction group of many small compressed batches takes longer to
// re-encode than a lease lasts (here each of 150 batches is made to take
// 10 ms of the test's clock, the lease 1 s; fake time, so that no real
// stall of the test can lapse the lease). The pass renewed the lease
// before each row read and after its upload only: by then the lease had
// lapsed, the upload was dropped, and every later pass did the same, for
// ever, without counting an error; the retention of the topic after it in
// the shard never ran. The pass now renews as it goes.
func TestSlowLogCompactionKeepsLease(t *testing.T) {
	eachBackendOnClock(t, func(t *testing.T, e *env) {
		compaction.SlowCompressors(t, 10*time.Millisecond, e.clk.Advance)
		ctx := context.Background()
		// One shard, the compacted topic first (topics go by name).
		slow := e.topic("a-slow", 1, map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0"})
		kept := e.topic("b-kept-a-minute", 1, map[string]string{"retention.ms": "60000"})
		tp := tps(slow)[0]
		ts := time.Now().UnixMilli()
		const n = 75
		for obj := range 2 {
			e.flushBatch(tp, zstdKeyedBatches(t, strconvI(int64(obj)), n, ts), 2*n, ts)
		}
		e.put(tp, kv("tail", []byte("x")))
		for range 2 {
			e.flushSegment(tps(kept), 1, 2, e.clk.Now().Add(-10*time.Minute).UnixMilli())
		}
		reg := prometheus.NewRegistry()
		c, err := compaction.New(compaction.Config{Cluster: cluster, Holder: "a", MergeMinAge: time.Minute, TargetBytes: 64 << 20,
			LeaseTTL: time.Second, Shards: 1}, e.cat, e.bucket, nil, reg, e.clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		e.passes(c, 3)
		metric := func(name string) float64 { return testenv.Metric(t, reg, name, nil) }
		o, err := e.cat.Offsets(ctx, tps(kept)[0])
		if err != nil {
			t.Fatal(err)
		}
		got := len(e.records(tp))
		t.Logf("errors %v, records removed %v, puts %v; %d records left; retained topic's log start %d of %d",
			metric("floe_compaction_errors_total"), metric("floe_compaction_log_records_removed_total"),
			metric("floe_compaction_puts_total"), got, o.LogStart, o.HighWatermark)
		if n := metric("floe_compaction_errors_total"); n != 0 {
			t.Errorf("%v errors counted, want none", n)
		}
		if got != 2*n+1 || metric("floe_compaction_log_records_removed_total") != 2*n {
			t.Errorf("%d records left, want %d: the superseded half of each batch removed", got, 2*n+1)
		}
		if o.LogStart != o.HighWatermark {
			t.Errorf("the retained topic's log start is %d, want %d: its retention never ran", o.LogStart, o.HighWatermark)
		}
	})
}

// stuckPartition is a catalog on which listing one partition's rows takes
// two lease TTLs (a pass that outlasts its lease whatever it does).
type stuckPartition struct {
	compaction.Catalog
	clk *clock
	tp  catalog.TopicPartition
	ttl time.Duration
}

func (s *stuckPartition) CompactionRows(ctx context.Context, tp catalog.TopicPartition, from int64, limit int) ([]catalog.CompactionRow, error) {
	if tp == s.tp {
		s.clk.Advance(2 * s.ttl)
	}
	return s.Catalog.CompactionRows(ctx, tp, from, limit)
}

// A partition whose pass loses the shard's lease every time ended every
// pass of its shard: the partitions after it were never worked (here a
// topic's retention never ran), and no error was counted. The pass after
// such a loss starts after that partition, and the loss counts in
// floe_compaction_errors_total.
func TestStuckPartitionDoesNotStarveShard(t *testing.T) {
	eachBackendOnClock(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		stuck := e.topic("a-stuck", 1, nil)
		kept := e.topic("b-kept-a-minute", 1, map[string]string{"retention.ms": "60000"})
		for range 2 {
			e.flushSegment(tps(stuck), 1, 2, e.clk.Now().UnixMilli())
			e.flushSegment(tps(kept), 1, 2, e.clk.Now().Add(-10*time.Minute).UnixMilli())
		}
		cat := &stuckPartition{Catalog: e.cat, clk: e.clk, tp: tps(stuck)[0], ttl: time.Minute}
		reg := prometheus.NewRegistry()
		c, err := compaction.New(compaction.Config{Cluster: cluster, Holder: "a", MergeMinAge: time.Minute, LeaseTTL: time.Minute,
			Shards: 1}, cat, e.bucket, nil, reg, e.clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		e.passes(c, 3)
		o, err := e.cat.Offsets(ctx, tps(kept)[0])
		if err != nil {
			t.Fatal(err)
		}
		if o.LogStart != o.HighWatermark {
			t.Errorf("the retained topic's log start is %d, want %d: the shard's passes never reached it", o.LogStart, o.HighWatermark)
		}
		if n := testenv.Metric(t, reg, "floe_compaction_errors_total", nil); n != 3 {
			t.Errorf("floe_compaction_errors_total %v, want 3: one lease lost per pass", n)
		}
	})
}
