package compaction_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/compaction"
	"github.com/floebroker/floe/objstore"
)

// countingBucket counts reads.
type countingBucket struct {
	objstore.Bucket
	gets atomic.Int64
}

func (b *countingBucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	b.gets.Add(1)
	return b.Bucket.Get(ctx, key)
}

func (b *countingBucket) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	b.gets.Add(1)
	return b.Bucket.GetRange(ctx, key, off, n)
}

// record is one record as a consumer sees it.
type record struct {
	Offset      int64
	Key, Value  string
	Null        bool
	Timestamp   int64
	BatchOffset int64
}

// records reads tp from its log start.
func (e *env) records(tp catalog.TopicPartition) []record {
	e.t.Helper()
	var out []record
	batches, logStart := e.read(tp, true)
	for _, b := range batches {
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom([]byte(b.Bytes)); err != nil {
			e.t.Fatal(err)
		}
		recs := rb.Records
		if codec := kgo.CompressionCodecType(rb.Attributes & 0x07); codec != kgo.CodecNone {
			var err error
			if recs, err = kgo.DefaultDecompressor().Decompress(recs, codec); err != nil {
				e.t.Fatal(err)
			}
		}
		for range rb.NumRecords {
			l, n := binary.Varint(recs)
			var r kmsg.Record
			if err := r.ReadFrom(recs[:n+int(l)]); err != nil {
				e.t.Fatal(err)
			}
			recs = recs[n+int(l):]
			if b.Offset+int64(r.OffsetDelta) < logStart {
				continue
			}
			out = append(out, record{Offset: b.Offset + int64(r.OffsetDelta), Key: string(r.Key), Value: string(r.Value),
				Null: r.Value == nil, Timestamp: rb.FirstTimestamp + r.TimestampDelta64, BatchOffset: b.Offset})
		}
	}
	return out
}

// lastPerKey is each key's last record.
func lastPerKey(rs []record) map[string]record {
	m := map[string]record{}
	for _, r := range rs {
		m[r.Key] = r
	}
	return m
}

// checkCompacted fails unless got holds exactly model's records: each
// key's last, at its offset.
func checkCompacted(t *testing.T, got []record, model map[string]record) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range got {
		m, ok := model[r.Key]
		if seen[r.Key] || !ok || r.Offset != m.Offset || r.Value != m.Value || r.Null != m.Null {
			t.Fatalf("record %s@%d (%q): want only each key's last, here %+v (seen before: %v)", r.Key, r.Offset, r.Value, m, seen[r.Key])
		}
		seen[r.Key] = true
	}
	if len(seen) != len(model) {
		t.Fatalf("%d keys left, want %d", len(seen), len(model))
	}
}

// put commits one batch of the key/value pairs in an object of its own.
func (e *env) put(tp catalog.TopicPartition, kvs ...[2][]byte) {
	ts := time.Now().UnixMilli()
	e.flushBatch(tp, keyedBatch(ts, kvs...), len(kvs), ts)
}

func kv(k string, v []byte) [2][]byte { return [2][]byte{[]byte(k), v} }

func value(tag string, i int) []byte {
	return fmt.Appendf(bytes.Repeat([]byte("."), 50), "%s-%d", tag, i)
}

// passes runs n compaction passes, MergeMinAge apart (each pass's output
// is young until then).
func (e *env) passes(c *compaction.Compactor, n int) {
	e.t.Helper()
	for range n {
		e.clk.Advance(2 * time.Minute)
		if err := c.RunOnce(context.Background()); err != nil {
			e.t.Fatal(err)
		}
	}
}

// The stall: a pass used to read at most 2×TargetBytes from the log
// start, so a partition starting with more distinct keys than that never
// had the updates after them compacted. Passes now go on from where the
// last one stopped, each within a bounded key map, and reach them (with
// the default min.cleanable.dirty.ratio).
func TestLogCompactionGetsPastDistinctKeys(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		top := e.topic("stall", 1, map[string]string{"cleanup.policy": "compact"})
		tp := tps(top)[0]
		for r := range 20 { // ≈ 17 KB of distinct keys: 4 windows of old
			var kvs [][2][]byte
			for i := range 10 {
				kvs = append(kvs, kv(fmt.Sprintf("u%03d", r*10+i), value("u", r)))
			}
			e.put(tp, kvs...)
		}
		for r := range 100 { // ≈ 30 KB of updates of three keys
			e.put(tp, kv("h0", value("h0", r)), kv("h1", value("h1", r)), kv("h2", value("h2", r)))
		}
		e.put(tp, kv("tail", []byte("x")))
		model := lastPerKey(e.records(tp))
		c := e.compactor("a", func(cfg *compaction.Config) { cfg.TargetBytes = 4 << 10 })
		e.passes(c, 8)
		got := e.records(tp)
		checkCompacted(t, got, model)
		if len(got) != 204 {
			t.Fatalf("%d records left, want 204", len(got))
		}
	})
}

// A key written early, and updated only once the pass cleaning its first
// record is long done, loses that record to a later pass (whose dirty
// region holds the update).
func TestLogCompactionLaterUpdateSupersedesCleanedRecord(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		// Ratio 0: every pass with a dirty region runs, so the second
		// round's dirty part is cleaned to its end however small the map.
		top := e.topic("early", 1, map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0"})
		tp := tps(top)[0]
		e.put(tp, kv("early", []byte("v1")), kv("early", []byte("v1'")))
		for r := range 10 {
			e.put(tp, kv(fmt.Sprintf("a%d", r), value("a", r)), kv(fmt.Sprintf("b%d", r), value("b", r)))
		}
		e.put(tp, kv("tail1", []byte("x")))
		c := e.compactor("a", func(cfg *compaction.Config) { cfg.TargetBytes = 1 << 10 })
		e.passes(c, 5)
		first := e.records(tp)
		checkCompacted(t, first, lastPerKey(first))
		if m := lastPerKey(first); m["early"].Value != "v1'" || len(first) != 22 {
			t.Fatalf("after the first passes: %d records, early %+v", len(first), m["early"])
		}
		// New keys (more than one pass's map), then the update.
		for r := range 15 {
			e.put(tp, kv(fmt.Sprintf("c%d", r), value("c", r)), kv(fmt.Sprintf("d%d", r), value("d", r)))
		}
		e.put(tp, kv("early", []byte("v2")))
		e.put(tp, kv("tail2", []byte("x")))
		model := lastPerKey(e.records(tp))
		e.passes(c, 6)
		got := e.records(tp)
		checkCompacted(t, got, model)
		if m := lastPerKey(got); m["early"].Value != "v2" {
			t.Fatalf("early: %+v, want v2", m["early"])
		}
	})
}

// A compacted partition whose dirty part is below min.cleanable.dirty.
// ratio is not read at all, quiet or not; a dirty record older than
// max.compaction.lag.ms forces the pass.
func TestLogCompactionDirtyRatioGate(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		top := e.topic("gate", 1, map[string]string{"cleanup.policy": "compact"})
		tp := tps(top)[0]
		for r := range 20 {
			e.put(tp, kv(fmt.Sprintf("k%02d", r), value("k", r)))
		}
		e.put(tp, kv("tail1", []byte("x")))
		bkt := &countingBucket{Bucket: e.bucket}
		// SmallObjectBytes 1: merges read nothing either.
		c, err := compaction.New(compaction.Config{Cluster: cluster, Holder: "a", MergeMinAge: time.Minute, TargetBytes: 64 << 10,
			SmallObjectBytes: 1, Shards: 1}, e.cat, bkt, nil, nil, e.clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		e.passes(c, 1)
		if bkt.gets.Load() == 0 {
			t.Fatal("the first pass read nothing")
		}
		gets := func(what string) {
			t.Helper()
			bkt.gets.Store(0)
			e.passes(c, 2)
			if n := bkt.gets.Load(); n != 0 {
				t.Fatalf("%s: %d reads", what, n)
			}
		}
		gets("quiet compacted partition")

		// Two updates and a new tail: about 15% dirty.
		e.put(tp, kv("k00", value("k", 100)))
		e.put(tp, kv("k01", value("k", 101)))
		e.put(tp, kv("tail2", []byte("x")))
		gets("dirty below the ratio")
		if n := len(e.records(tp)); n != 24 {
			t.Fatalf("%d records, want all 24 still there", n)
		}

		// Past max.compaction.lag.ms the dirty part is compacted anyway.
		model := lastPerKey(e.records(tp))
		if _, err := e.cat.(catalog.Catalog).AlterTopicConfigs(ctx, "gate",
			[]catalog.ConfigOp{{Key: "max.compaction.lag.ms", Value: "60000"}}); err != nil {
			t.Fatal(err)
		}
		bkt.gets.Store(0)
		e.passes(c, 1)
		if bkt.gets.Load() == 0 {
			t.Fatal("max.compaction.lag.ms did not force a pass")
		}
		checkCompacted(t, e.records(tp), model)
	})
}

// The cleaned-up-to offset lives in one Compactor's memory: a Compactor
// taking the partition over starts from the log start, and one getting it
// back goes on from its own, stale, offset. Either way the result is each
// key's last record (tombstones included, within delete.retention.ms).
func TestLogCompactionAcrossCompactors(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		top := e.topic("handover", 1, map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0"})
		tp := tps(top)[0]
		rnd := rand.New(rand.NewPCG(3, 4))
		n := 0
		write := func() map[string]record {
			for range 30 {
				var kvs [][2][]byte
				for range 8 {
					var v []byte
					if rnd.IntN(8) != 0 {
						v = value("v", n)
					}
					n++
					kvs = append(kvs, kv(fmt.Sprintf("k%03d", rnd.IntN(100)), v))
				}
				e.put(tp, kvs...)
			}
			e.put(tp, kv(fmt.Sprintf("tail%d", n), []byte("x")))
			return lastPerKey(e.records(tp))
		}
		// A compactor keeps the leases of the work it did for an
		// interval: the next one takes over once they lapse.
		const interval = 50 * time.Millisecond
		small := func(cfg *compaction.Config) { cfg.TargetBytes, cfg.Interval = 4<<10, interval }
		c1, c2 := e.compactor("one", small), e.compactor("two", small)
		for i, c := range []*compaction.Compactor{c1, c2, c1} {
			time.Sleep(interval)
			model := write()
			e.passes(c, 12)
			got := e.records(tp)
			t.Logf("round %d: %d records left of %d written", i, len(got), n)
			checkCompacted(t, got, model)
		}
	})
}

// A tombstone without a timestamp (-1, which Kafka accepts under
// CreateTime) is kept for delete.retention.ms from the first pass that
// kept it, as every tombstone is (TestLogCompactionTombstoneHorizon): it
// once compared -1 with the deletion cutoff and was dropped by the first
// pass, so a consumer reading a little behind never saw the delete. Past
// it, it goes.
func TestLogCompactionUntimedTombstoneKept(t *testing.T) {
	eachBackendOnClock(t, func(t *testing.T, e *env) {
		top := e.topic("untimed", 1, map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0",
			"delete.retention.ms": "3600000"})
		tp := tps(top)[0]
		put := func(kvs ...[2][]byte) { e.flushBatch(tp, keyedBatch(-1, kvs...), len(kvs), -1) }
		put(kv("gone", []byte("v1")), kv("kept", []byte("v1")))
		put(kv("gone", nil))
		put(kv("tail", []byte("x")))
		c := e.compactor("a", nil)
		e.passes(c, 3)
		got := e.records(tp)
		if m := lastPerKey(got); !m["gone"].Null || len(got) != 3 {
			t.Fatalf("within delete.retention.ms: %+v, want kept, the tombstone of gone and tail", got)
		}
		e.clk.Advance(2 * time.Hour)
		e.passes(c, 3)
		if got := e.records(tp); len(got) != 2 || got[0].Key != "kept" || got[1].Key != "tail" {
			t.Fatalf("after delete.retention.ms: %+v, want kept and tail", got)
		}
	})
}

// DeleteRecords may set the log start of a compact,delete topic inside a
// batch, and a Compactor then starts cleaning there (so does any
// Compactor taking the shard over). The batch's records at and after the
// log start are dirty like any other: a key's record there superseded by
// a later one in the same batch goes, and a tombstone there, once past
// its delete horizon, leaves nothing of its key behind. The pass once
// skipped that batch's records when building its key map, as if all were
// below the log start, so both K=v1 and K's tombstone were kept, and when
// the tombstone went K=v1 came back.
func TestLogCompactionFromMidBatchLogStart(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		top := e.topic("midbatch", 1, map[string]string{"cleanup.policy": "compact,delete", "min.cleanable.dirty.ratio": "0",
			"delete.retention.ms": "3600000"})
		tp := tps(top)[0]
		e.put(tp, kv("old", []byte("o")), kv("A", []byte("a")), kv("K", []byte("v1")), kv("K", nil)) // offsets 0-3
		if _, err := e.cat.DeleteRecords(ctx, tp, 1); err != nil {
			t.Fatal(err)
		}
		e.put(tp, kv("tail", []byte("x")))
		c := e.compactor("a", nil)
		e.passes(c, 2)
		if got := e.records(tp); len(got) != 3 || got[1].Key != "K" || !got[1].Null || got[1].Offset != 3 {
			t.Errorf("within delete.retention.ms: %+v, want A, K's tombstone at 3 (its value at 2 gone) and tail", got)
		}
		e.put(tp, kv("B", []byte("b")))
		e.put(tp, kv("tail2", []byte("x")))
		e.passes(c, 2)
		e.clk.Advance(2 * time.Hour)
		e.passes(c, 3)
		got := e.latestValues(tp)
		if _, ok := got["K"]; ok || len(got) != 4 {
			t.Fatalf("past delete.retention.ms a consumer from the log start sees %v, want A, tail, B and tail2: K was deleted", got)
		}
	})
}
