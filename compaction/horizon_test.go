package compaction_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/internal/batchcodec"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// timedRecord is one record of timedBatch: a key, a value (nil: a
// tombstone) and a timestamp.
type timedRecord struct {
	key, value string
	null       bool
	ts         int64
}

// timedBatch encodes records with their own timestamps (deltas from the
// first's), compressed with codec.
func timedBatch(t *testing.T, codec kgo.CompressionCodec, recs ...timedRecord) []byte {
	t.Helper()
	var body []byte
	maxTs := recs[0].ts
	for i, tr := range recs {
		r := kmsg.Record{OffsetDelta: int32(i), Key: []byte(tr.key), TimestampDelta64: tr.ts - recs[0].ts}
		r.TimestampDelta = int32(r.TimestampDelta64)
		if !tr.null {
			r.Value = []byte(tr.value)
		}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		body = r.AppendTo(body)
		maxTs = max(maxTs, tr.ts)
	}
	comp, err := kgo.DefaultCompressor(codec)
	if err != nil {
		t.Fatal(err)
	}
	var attrs int16
	if comp != nil {
		var buf bytes.Buffer
		out, used := comp.Compress(&buf, body)
		body, attrs = append([]byte(nil), out...), int16(used)
	}
	rb := kmsg.RecordBatch{Magic: 2, Attributes: attrs, LastOffsetDelta: int32(len(recs) - 1), FirstTimestamp: recs[0].ts,
		MaxTimestamp: maxTs, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(len(recs)), Records: body}
	raw := encodeBatch(&rb)
	return raw
}

// A tombstone stays for delete.retention.ms from the first compaction pass
// that keeps it, whatever its own timestamp says (KIP-534). It used to be
// kept for delete.retention.ms from its timestamp, so a delete replicated
// from another cluster or produced with an old timestamp went at the first
// pass, and a consumer a little behind never saw it. That pass writes the
// horizon into the batch (attribute bit 6, the first timestamp field), and
// every record keeps its timestamp.
func TestLogCompactionTombstoneHorizon(t *testing.T) {
	for _, c := range []struct {
		name  string
		codec kgo.CompressionCodec
		attrs int16
	}{{"none", kgo.NoCompression(), 0}, {"zstd", kgo.ZstdCompression(), 4}} {
		t.Run(c.name, func(t *testing.T) { testTombstoneHorizon(t, c.codec, c.attrs) })
	}
}

func testTombstoneHorizon(t *testing.T, codec kgo.CompressionCodec, codecAttrs int16) {
	eachBackendOnClock(t, func(t *testing.T, e *env) {
		const retention = time.Hour
		top := e.topic("horizon", 1, map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0",
			"delete.retention.ms": "3600000"})
		tp := tps(top)[0]
		old := e.clk.Now().Add(-30 * 24 * time.Hour).UnixMilli()
		put := func(recs ...timedRecord) { e.flushBatch(tp, timedBatch(t, codec, recs...), len(recs), recs[0].ts) }
		put(timedRecord{key: "gone", value: "v1", ts: old}, timedRecord{key: "stays", value: "v1", ts: old + 1})
		// The tombstone shares its batch with a live record later in time,
		// so re-encoding the batch moves both records' timestamp deltas.
		put(timedRecord{key: "gone", null: true, ts: old + 10}, timedRecord{key: "other", value: "v", ts: old + 25})
		put(timedRecord{key: "tail", value: "x", ts: e.clk.Now().UnixMilli()})

		want := map[string]int64{"stays": old + 1, "gone": old + 10, "other": old + 25}
		check := func(when string, wantGone bool) {
			t.Helper()
			got := e.records(tp)
			m := lastPerKey(got)
			if _, ok := m["gone"]; ok == wantGone || (ok && !m["gone"].Null) {
				t.Fatalf("%s: %+v: tombstone of gone present %v, want %v", when, got, ok, !wantGone)
			}
			for k, ts := range want {
				if k == "gone" && wantGone {
					continue
				}
				if r, ok := m[k]; !ok || r.Timestamp != ts {
					t.Fatalf("%s: %s is %+v, want timestamp %d", when, k, r, ts)
				}
			}
			if r := m["stays"]; r.Value != "v1" || len(got) != len(want)+1-map[bool]int{true: 1}[wantGone] {
				t.Fatalf("%s: %+v, want each key's last", when, got)
			}
		}

		c := e.compactor("a", nil)
		e.passes(c, 1)
		first := e.clk.Now()
		e.passes(c, 2)
		check("after the first passes", false)
		// The tombstone's batch carries its horizon: the first pass's time
		// plus delete.retention.ms.
		var horizon int64 = -1
		for _, b := range e.consume(tp) {
			var rb kmsg.RecordBatch
			if err := rb.ReadFrom([]byte(b.Bytes)); err != nil {
				t.Fatal(err)
			}
			if rb.Attributes&0x40 != 0 {
				horizon = rb.FirstTimestamp
				if rb.Attributes&0x07 != codecAttrs {
					t.Fatalf("batch attributes %#x, want codec %d kept", rb.Attributes, codecAttrs)
				}
			}
		}
		if lo, hi := first.Add(-3*time.Minute+retention).UnixMilli(), first.Add(retention).UnixMilli(); horizon < lo || horizon > hi {
			t.Fatalf("delete horizon %d, want the first pass's time plus delete.retention.ms, in [%d, %d]", horizon, lo, hi)
		}

		// Later passes within the horizon neither drop it nor move it.
		e.clk.Advance(retention / 2)
		e.passes(c, 2)
		check("within delete.retention.ms of the first pass", false)
		for _, b := range e.consume(tp) {
			var rb kmsg.RecordBatch
			if err := rb.ReadFrom([]byte(b.Bytes)); err != nil {
				t.Fatal(err)
			}
			if rb.Attributes&0x40 != 0 && rb.FirstTimestamp != horizon {
				t.Fatalf("delete horizon moved from %d to %d", horizon, rb.FirstTimestamp)
			}
		}

		e.clk.Advance(retention)
		e.passes(c, 3)
		check("past the horizon", true)
	})
}

// A compression bomb a producer stored in a compacted topic (produce never
// decompresses) fails that partition's log compaction with
// batchcodec.ErrTooLarge instead of inflating past the bound, and the
// topic's other partitions are compacted as usual.
func TestLogCompactionCompressionBomb(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		top := e.topic("bomb", 2, map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0"})
		bombed, fine := tps(top)[0], tps(top)[1]
		now := time.Now().UnixMilli()
		rb := kmsg.RecordBatch{Magic: 2, Attributes: 4, FirstTimestamp: now, MaxTimestamp: now, ProducerID: -1, ProducerEpoch: -1,
			FirstSequence: -1, NumRecords: 1}
		comp, err := kgo.DefaultCompressor(kgo.ZstdCompression())
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		out, _ := comp.Compress(&buf, make([]byte, batchcodec.MaxDecompressed+1))
		rb.Records = append([]byte(nil), out...)
		bomb := rb.AppendTo(nil)
		binary.BigEndian.PutUint32(bomb[8:], uint32(len(bomb)-12))
		binary.BigEndian.PutUint32(bomb[17:], crc32.Checksum(bomb[21:], crc32.MakeTable(crc32.Castagnoli)))
		for _, tp := range []catalog.TopicPartition{bombed, fine} {
			e.put(tp, kv("k", []byte("v1")))
			if tp == bombed {
				e.flushBatch(tp, bomb, 1, now)
			}
			e.put(tp, kv("k", []byte("v2")))
			e.put(tp, kv("tail", []byte("x")))
		}
		c := e.compactor("a", nil)
		e.clk.Advance(2 * time.Minute)
		if err := c.RunOnce(context.Background()); !errors.Is(err, batchcodec.ErrTooLarge) {
			t.Fatalf("pass over a compression bomb: %v, want batchcodec.ErrTooLarge", err)
		}
		if got := e.records(fine); len(got) != 2 || got[0].Value != "v2" {
			t.Fatalf("the other partition: %+v, want k=v2 and tail", got)
		}
	})
}
