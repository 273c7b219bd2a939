package compaction_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent/flush"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/compaction"
	"github.com/floebroker/floe/segment"
)

// firstSwapConflicts is a catalog on which the first swap loses its race
// (another worker rewrote those rows meanwhile).
type firstSwapConflicts struct {
	compaction.Catalog
	n int
}

func (f *firstSwapConflicts) SwapRows(ctx context.Context, s catalog.RowSwap) error {
	if f.n++; f.n == 1 {
		return catalog.ErrSwapConflict
	}
	return f.Catalog.SwapRows(ctx, s)
}

// keyedBatch encodes one uncompressed batch of the records (a nil value
// is a tombstone).
func keyedBatch(ts int64, kvs ...[2][]byte) []byte {
	var recs []byte
	for i, kv := range kvs {
		r := kmsg.Record{OffsetDelta: int32(i), Key: kv[0], Value: kv[1]}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		recs = r.AppendTo(recs)
	}
	rb := kmsg.RecordBatch{Magic: 2, LastOffsetDelta: int32(len(kvs) - 1), FirstTimestamp: ts, MaxTimestamp: ts,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(len(kvs)), Records: recs}
	raw := encodeBatch(&rb)
	return raw
}

// flushBatch commits one batch of n records in an object of its own.
func (e *env) flushBatch(tp catalog.TopicPartition, b []byte, n int, ts int64) {
	e.t.Helper()
	ctx := context.Background()
	e.seq++
	w := segment.NewWriter(segment.Header{AgentID: "t", Created: time.Now()})
	w.Add(tp, b, segment.BatchMeta{Records: int32(n), FirstTimestamp: ts, MaxTimestamp: ts, ProducerID: -1})
	obj, pl := w.Finish()
	seg := catalog.Segment{Key: flush.ObjectKey(cluster, fmt.Sprintf("kv%06d", e.seq)), Size: int64(len(obj)),
		Batches: []catalog.BatchRef{{TopicPartition: tp, ByteOffset: pl[0].ByteOffset, ByteLength: pl[0].ByteLength,
			OffsetSpan: int32(n), Records: int32(n), FirstTimestamp: ts, MaxTimestamp: ts, ProducerID: -1}}}
	if err := e.bucket.Put(ctx, seg.Key, bytes.NewReader(obj), int64(len(obj))); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.cat.(catalog.Catalog).CommitSegment(ctx, seg); err != nil {
		e.t.Fatal(err)
	}
}

// latestValues is what a consumer that applies the partition's records in
// order ends up with: key to value, deleted keys absent.
func (e *env) latestValues(tp catalog.TopicPartition) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, r := range e.records(tp) {
		if r.Null {
			delete(out, r.Key)
		} else {
			out[r.Key] = r.Value
		}
	}
	return out
}

// A pass whose swap lost a race stops: what it worked out from the rows it
// read (which record is each key's latest) no longer holds, and going on
// could drop a key's tombstone while the record it deletes, in the rows
// whose swap failed, stays: the key would come back.
func TestLogCompactionStopsAtSwapConflict(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		top := e.topic("kv", 1, map[string]string{"cleanup.policy": "compact", "delete.retention.ms": "0"})
		tp := tps(top)[0]
		ts := time.Now().UnixMilli()
		// The first row fills a group (TargetBytes) of its own; the
		// tombstone's row and the tail make the second.
		big := bytes.Repeat([]byte("v"), 2100)
		e.flushBatch(tp, keyedBatch(ts, [2][]byte{[]byte("k"), big}, [2][]byte{[]byte("a"), big}), 2, ts)
		e.flushBatch(tp, keyedBatch(ts, [2][]byte{[]byte("k"), nil}, [2][]byte{[]byte("a"), big}), 2, ts)
		e.flushBatch(tp, keyedBatch(ts, [2][]byte{[]byte("tail"), []byte("x")}), 1, ts)
		if got := e.latestValues(tp); len(got) != 2 || got["a"] == "" || got["tail"] != "x" {
			t.Fatalf("before compaction: %v", got)
		}
		e.clk.Advance(5 * time.Minute)
		cat := &firstSwapConflicts{Catalog: e.cat}
		c, err := compaction.New(compaction.Config{Cluster: cluster, Holder: "w", TargetBytes: 4 << 10, Shards: 1,
			MergeMinAge: time.Minute}, cat, e.bucket, nil, nil, e.clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		for pass := range 2 {
			if err := c.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
			if got := e.latestValues(tp); len(got) != 2 || got["a"] == "" || got["tail"] != "x" {
				t.Fatalf("after pass %d: a consumer reading from the start sees %d keys (k came back?): %v", pass, len(got), keysOf(got))
			}
		}
		if cat.n < 2 {
			t.Fatalf("%d swaps: the second pass did not compact", cat.n)
		}
	})
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
