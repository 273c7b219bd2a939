package compaction_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/compaction"
	"github.com/floebroker/floe/internal/testenv"
)

// oddLengthsBatch is a batch of two records, compressed with codec unless
// it is NoCompression, that Kafka's record reader (and Floe's produce)
// reads with any negative length as null: key "B" with value length -2,
// a tombstone, and key "A" with value "odd" and a header whose value
// length is -5.
func oddLengthsBatch(t *testing.T, codec kgo.CompressionCodec, ts int64) []byte {
	t.Helper()
	var recs []byte
	for i, r := range []struct {
		key, value string
		valueLen   int64
		headerLen  int64 // header value length; 0: no header
	}{{"B", "", -2, 0}, {"A", "odd", 3, -5}} {
		body := []byte{0}                   // attributes
		body = binary.AppendVarint(body, 0) // timestamp delta
		body = binary.AppendVarint(body, int64(i))
		body = append(binary.AppendVarint(body, int64(len(r.key))), r.key...)
		body = append(binary.AppendVarint(body, r.valueLen), r.value...)
		if r.headerLen == 0 {
			body = binary.AppendVarint(body, 0)
		} else {
			body = binary.AppendVarint(body, 1)
			body = append(binary.AppendVarint(body, 1), 'h')
			body = binary.AppendVarint(body, r.headerLen)
		}
		recs = append(binary.AppendVarint(recs, int64(len(body))), body...)
	}
	rb := kmsg.RecordBatch{Magic: 2, LastOffsetDelta: 1, FirstTimestamp: ts, MaxTimestamp: ts,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 2, Records: recs}
	if codec != kgo.NoCompression() {
		comp, err := kgo.DefaultCompressor(codec)
		if err != nil {
			t.Fatal(err)
		}
		out, typ := comp.Compress(new(bytes.Buffer), recs)
		rb.Records, rb.Attributes = append([]byte(nil), out...), int16(typ)
	}
	raw := encodeBatch(&rb)
	return raw
}

// TestLogCompactionNegativeLengthsAreNull: a key, value or header value
// length below -1 is null, as Kafka's record reader (and produce, which
// stores such records) takes it: a value length of -2 is a tombstone. Log
// compaction refused them as malformed, so every later pass of the
// partition failed at that batch and its dirty region grew for good; any
// client allowed to produce to a compacted topic could do it with one
// small batch.
func TestLogCompactionNegativeLengthsAreNull(t *testing.T) {
	for name, codec := range map[string]kgo.CompressionCodec{"uncompressed": kgo.NoCompression(), "gzip": kgo.GzipCompression()} {
		t.Run(name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, e *env) {
				top := e.topic("odd", 1, map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0"})
				tp := tps(top)[0]
				e.put(tp, kv("B", []byte("b")))
				for i := range 5 {
					e.put(tp, kv("A", value("A", i)))
				}
				ts := time.Now().UnixMilli()
				e.flushBatch(tp, oddLengthsBatch(t, codec, ts), 2, ts)
				for i := range 5 {
					e.put(tp, kv("A", value("A", 5+i)))
				}
				e.put(tp, kv("tail", []byte("x")))
				model := lastPerKey(e.records(tp))
				if b := model["B"]; !b.Null {
					t.Fatalf("B's last record %+v is not a tombstone to a consumer", b)
				}
				c := e.compactor("a", nil)
				e.passes(c, 3) // fails the test on a pass error
				got := e.records(tp)
				checkCompacted(t, got, model)
				if len(got) != 3 {
					t.Fatalf("%d records left, want A's last, B's tombstone and the tail", len(got))
				}
			})
		})
	}
}

// misnumberedBatch is a gzip batch of one record, key "A", whose offset
// delta is 1<<33: outside int32, and not its position in the batch.
func misnumberedBatch(t *testing.T, ts int64) []byte {
	t.Helper()
	body := []byte{0}                   // attributes
	body = binary.AppendVarint(body, 0) // timestamp delta
	body = binary.AppendVarint(body, 1<<33)
	body = append(binary.AppendVarint(body, 1), 'A')
	body = append(binary.AppendVarint(body, 3), "odd"...)
	body = binary.AppendVarint(body, 0) // headers
	recs := append(binary.AppendVarint(nil, int64(len(body))), body...)
	comp, err := kgo.DefaultCompressor(kgo.GzipCompression())
	if err != nil {
		t.Fatal(err)
	}
	out, typ := comp.Compress(new(bytes.Buffer), recs)
	rb := kmsg.RecordBatch{Magic: 2, Attributes: int16(typ), FirstTimestamp: ts, MaxTimestamp: ts,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 1, Records: append([]byte(nil), out...)}
	raw := encodeBatch(&rb)
	return raw
}

// TestLogCompactionKeepsMisnumberedRecords: produce refuses a record whose
// offset delta is not its position in the batch where it reads the
// batch, but stores a compressed batch of a delete-policy topic unread.
// Once the topic was made compacted (or for such a batch stored before
// produce checked), log compaction refused a delta outside int32 as a
// malformed record, and every pass of the partition failed at its batch,
// for good. The record is now kept as it is, superseding nothing and
// superseded by nothing, and the rest of the partition is compacted.
func TestLogCompactionKeepsMisnumberedRecords(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		top := e.topic("misnumbered", 1, nil)
		tp := tps(top)[0]
		for i := range 3 {
			e.put(tp, kv("A", value("A", i)))
		}
		ts := time.Now().UnixMilli()
		odd := misnumberedBatch(t, ts)
		e.flushBatch(tp, odd, 1, ts)
		for i := range 3 {
			e.put(tp, kv("A", value("A", 3+i)))
		}
		e.put(tp, kv("tail", []byte("x")))
		if _, err := e.cat.(catalog.Catalog).AlterTopicConfigs(ctx, "misnumbered", []catalog.ConfigOp{
			{Key: "cleanup.policy", Value: "compact"}, {Key: "min.cleanable.dirty.ratio", Value: "0"}}); err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		c, err := compaction.New(compaction.Config{Cluster: cluster, Holder: "a", MergeMinAge: time.Minute, TargetBytes: 64 << 20,
			LeaseTTL: time.Minute, Shards: 1}, e.cat, e.bucket, nil, reg, e.clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		e.passes(c, 3) // fails the test on a pass error
		if n := testenv.Metric(t, reg, "floe_compaction_errors_total", nil); n != 0 {
			t.Errorf("%v errors counted, want none", n)
		}
		if n := testenv.Metric(t, reg, "floe_compaction_log_records_removed_total", nil); n != 5 {
			t.Errorf("%v records removed, want 5: all A's but the last (the misnumbered one neither goes nor supersedes)", n)
		}
		// Left: the misnumbered batch at 3 as it was, A's last at 6, the
		// tail at 7.
		var got []int64
		for _, b := range e.consume(tp) {
			got = append(got, b.Offset)
			if b.Offset == 3 && b.Bytes[8:] != string(odd[8:]) {
				t.Errorf("the misnumbered batch was rewritten")
			}
		}
		if !slices.Equal(got, []int64{3, 6, 7}) {
			t.Errorf("batches at %v, want [3 6 7]", got)
		}
	})
}
