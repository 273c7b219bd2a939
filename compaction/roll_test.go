package compaction_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/compaction"
	"github.com/floebroker/floe/objstore"
)

// A slow partition's rows are merged as they age; a merged row must not
// cover more than the topic's roll time (segment.ms, and for a compacted
// topic max.compaction.lag.ms), as Kafka rolls its active segment, or the
// row would age by its newest record forever and neither retention nor
// the compaction lags would bound how long a record stays.

// putNow flushes one batch of kvs stamped with the clock's time.
func (e *env) putNow(tp catalog.TopicPartition, kvs ...[2][]byte) {
	e.t.Helper()
	ts := e.clk.Now().UnixMilli()
	e.flushBatch(tp, keyedBatch(ts, kvs...), len(kvs), ts)
}

// trickle writes one record of key k every step for n steps, running a
// compaction pass after each.
func trickle(t *testing.T, e *env, tp catalog.TopicPartition, k string, n int, step time.Duration, passes func() error) {
	t.Helper()
	for i := range n {
		e.putNow(tp, kv(k, value(k, i)))
		e.clk.Advance(step)
		if err := passes(); err != nil {
			t.Fatal(err)
		}
	}
}

func versions(rs []record, k string) int {
	n := 0
	for _, r := range rs {
		if r.Key == k {
			n++
		}
	}
	return n
}

// TestMaxCompactionLagUnderTrickle: with max.compaction.lag.ms of 10
// minutes and one update of a key every 2 minutes for 80 minutes (too
// little dirt for min.cleanable.dirty.ratio ever to trigger a pass), the
// superseded versions go within about the lag, as KIP-354 promises. Before
// rows were rolled, all 40 stayed.
func TestMaxCompactionLagUnderTrickle(t *testing.T) {
	eachBackendOnClock(t, func(t *testing.T, e *env) {
		tp := tps(e.topic("maxlag", 1, map[string]string{"cleanup.policy": "compact", "max.compaction.lag.ms": "600000"}))[0]
		for r := range 10 { // 100 other keys: the updates stay under the dirty ratio
			var kvs [][2][]byte
			for i := range 10 {
				kvs = append(kvs, kv(fmt.Sprintf("u%03d", r*10+i), value("u", r)))
			}
			e.putNow(tp, kvs...)
		}
		c := e.compactor("a", nil)
		trickle(t, e, tp, "k", 40, 2*time.Minute, func() error { return c.RunOnce(context.Background()) })
		// A version is superseded at most one roll (10 min) plus the lag
		// (10 min) plus a merge's age and a pass ago: about 12 versions.
		if n := versions(e.records(tp), "k"); n > 12 {
			t.Fatalf("%d versions of k after 80 minutes with a 10-minute max compaction lag, want at most 12", n)
		}
	})
}

// TestMinCompactionLagUnderTrickle: with min.compaction.lag.ms 10 minutes
// and max.compaction.lag.ms and segment.ms 30 minutes, a key updated every
// 2 minutes for 3 hours keeps only the versions of about the last 40
// minutes (Kafka: a rolled segment is cleanable once its newest record is
// older than the min lag); once writes stop, only the latest and the
// active tail remain. Before rows were rolled, all 90 stayed.
func TestMinCompactionLagUnderTrickle(t *testing.T) {
	eachBackendOnClock(t, func(t *testing.T, e *env) {
		tp := tps(e.topic("minlag", 1, map[string]string{"cleanup.policy": "compact",
			"min.compaction.lag.ms": "600000", "max.compaction.lag.ms": "1800000", "segment.ms": "1800000"}))[0]
		c := e.compactor("a", nil)
		pass := func() error { return c.RunOnce(context.Background()) }
		trickle(t, e, tp, "k", 90, 2*time.Minute, pass)
		if n := versions(e.records(tp), "k"); n > 35 {
			t.Fatalf("%d versions of k after 3 hours, want at most 35 (about 70 minutes' worth)", n)
		}
		for range 30 { // an hour without writes
			e.clk.Advance(2 * time.Minute)
			if err := pass(); err != nil {
				t.Fatal(err)
			}
		}
		if n := versions(e.records(tp), "k"); n > 2 {
			t.Fatalf("%d versions of k an hour after the last write, want at most 2", n)
		}
	})
}

// TestRetentionUnderTrickle: a delete-policy topic with retention.ms 30
// minutes and segment.ms 10 minutes, written once every 2 minutes for 3
// hours, holds about the last 40 minutes of records (retention plus one
// roll), as Kafka's. Before rows were rolled, the first row kept
// absorbing new batches and nothing was ever deleted while writes went on.
func TestRetentionUnderTrickle(t *testing.T) {
	eachBackendOnClock(t, func(t *testing.T, e *env) {
		tp := tps(e.topic("trickle", 1, map[string]string{"retention.ms": "1800000", "segment.ms": "600000"}))[0]
		c := e.compactor("a", nil)
		trickle(t, e, tp, "k", 90, 2*time.Minute, func() error { return c.RunOnce(context.Background()) })
		if n := len(e.records(tp)); n > 30 {
			t.Fatalf("%d records kept after 3 hours with a 30-minute retention, want at most 30 (an hour's worth)", n)
		}
	})
}

// TestFutureTimestampWithoutMinLag: without min.compaction.lag.ms, Kafka
// does not look at timestamps, so a batch stamped in the future (a client
// clock ahead, within message.timestamp.after.max.ms) does not hold back
// the compaction of what follows it.
func TestFutureTimestampWithoutMinLag(t *testing.T) {
	eachBackendOnClock(t, func(t *testing.T, e *env) {
		tp := tps(e.topic("future", 1, map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"}))[0]
		ahead := e.clk.Now().Add(50 * time.Minute).UnixMilli()
		e.flushBatch(tp, keyedBatch(ahead, kv("early", value("early", 0))), 1, ahead)
		for i := range 10 {
			e.putNow(tp, kv("k", value("k", i)))
		}
		e.putNow(tp, kv("tail", value("tail", 0)))
		e.clk.Advance(5 * time.Minute)
		c := e.compactor("a", nil)
		e.passes(c, 4)
		if n := versions(e.records(tp), "k"); n != 1 {
			t.Fatalf("%d versions of k behind a batch stamped 50 minutes ahead, want 1", n)
		}
	})
}

// slowPutBucket advances the clock by a minute at each put, as a pass
// stalled between its put and its swap would see.
type slowPutBucket struct {
	objstore.Bucket
	clk  *clock
	puts map[string]int
}

func (b *slowPutBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	b.puts[key]++
	b.clk.Advance(time.Minute)
	return b.Bucket.Put(ctx, key, r, size)
}

// slowSwapPass makes a compacted partition with superseded records and a
// compactor, on cat, whose puts each take a minute of the clock.
func slowSwapPass(t *testing.T, e *env, topic string, cat compaction.Catalog) (catalog.TopicPartition, *slowPutBucket, *compaction.Compactor) {
	t.Helper()
	tp := tps(e.topic(topic, 1, map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"}))[0]
	for i := range 5 {
		e.putNow(tp, kv("k", value("k", i)))
	}
	e.putNow(tp, kv("tail", value("tail", 0)))
	e.clk.Advance(5 * time.Minute)
	sb := &slowPutBucket{Bucket: e.bucket, clk: e.clk, puts: map[string]int{}}
	c, err := compaction.New(compaction.Config{Cluster: cluster, Holder: "a", Interval: time.Second, MergeMinAge: time.Minute,
		TargetBytes: 64 << 10, GCGrace: 10 * time.Minute, OrphanInterval: time.Hour, LeaseTTL: time.Hour, Shards: 1}, cat, sb, nil, nil, e.clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return tp, sb, c
}

// TestStaleOutputPutAgainBeforeSwap: an output object put longer ago than
// an upload may be when its commit starts is put again before its swap, so
// the orphan sweep (which takes unknown objects once GCGrace old) cannot
// have taken it: the swapped-in rows' object exists.
func TestStaleOutputPutAgainBeforeSwap(t *testing.T) {
	eachBackendOnClock(t, func(t *testing.T, e *env) {
		tp, sb, c := slowSwapPass(t, e, "stale", e.cat)
		if err := c.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(sb.puts) == 0 {
			t.Fatal("no output object was put")
		}
		for key, n := range sb.puts {
			if n != 2 {
				t.Errorf("output %s put %d times, want 2 (again before its swap)", key, n)
			}
		}
		if n := versions(e.records(tp), "k"); n != 1 {
			t.Fatalf("%d versions of k after the pass, want 1", n)
		}
	})
}

// appendTimeBatch is a LogAppendTime batch as produce stores it: the
// producer's first timestamp (here a device clock at the epoch) kept, the
// max timestamp the append time.
func appendTimeBatch(appendTs int64) []byte {
	r := kmsg.Record{Key: []byte("k"), Value: []byte("v")}
	r.Length = int32(len(r.AppendTo(nil)) - 1)
	rb := kmsg.RecordBatch{Magic: 2, Attributes: 0x08, FirstTimestamp: 0, MaxTimestamp: appendTs,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 1, Records: r.AppendTo(nil)}
	raw := encodeBatch(&rb)
	return raw
}

// TestRollIgnoresEarlierTimestamps: a row's span for rolling runs from its
// first batch's max timestamp, as Kafka's segment roll does, so batches
// whose first timestamp is far in the past (LogAppendTime topics keep the
// producer's) still merge into one row instead of one row each.
func TestRollIgnoresEarlierTimestamps(t *testing.T) {
	eachBackendOnClock(t, func(t *testing.T, e *env) {
		tp := tps(e.topic("lat", 1, map[string]string{"message.timestamp.type": "LogAppendTime"}))[0]
		for range 20 {
			ts := e.clk.Now().UnixMilli()
			e.flushBatch(tp, appendTimeBatch(ts), 1, ts)
			e.clk.Advance(time.Second)
		}
		e.clk.Advance(5 * time.Minute)
		c := e.compactor("a", nil)
		e.passes(c, 3)
		rows, err := e.cat.CompactionRows(context.Background(), tp, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 {
			t.Fatalf("%d rows after merging 20 batches appended within 20 s, want 1", len(rows))
		}
	})
}

// sweepBeforeSwap deletes each swap's output object just before the swap,
// as an orphan sweep whose last look predates a put again would.
type sweepBeforeSwap struct {
	compaction.Catalog
	bucket objstore.Bucket
}

func (s sweepBeforeSwap) SwapRows(ctx context.Context, swap catalog.RowSwap) error {
	if err := s.bucket.Delete(ctx, swap.ObjectKey); err != nil {
		return err
	}
	return s.Catalog.SwapRows(ctx, swap)
}

// TestOutputPutAgainIsRestoredAfterSwap: an output object put again before
// its swap and deleted by a sweep in between is put back once swapped in.
func TestOutputPutAgainIsRestoredAfterSwap(t *testing.T) {
	eachBackendOnClock(t, func(t *testing.T, e *env) {
		tp, _, c := slowSwapPass(t, e, "restored", sweepBeforeSwap{Catalog: e.cat, bucket: e.bucket})
		if err := c.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := versions(e.records(tp), "k"); n != 1 {
			t.Fatalf("%d versions of k after the pass, want 1 (every record readable)", n)
		}
	})
}
