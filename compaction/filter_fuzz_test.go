package compaction

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fuzzBatch encodes keyed records (a nil value is a tombstone) as one
// batch compressed with codec, with attrs or'ed into its attributes.
func fuzzBatch(f *testing.F, codec kgo.CompressionCodec, attrs int16, values ...[]byte) []byte {
	var body []byte
	for i, v := range values {
		r := kmsg.Record{OffsetDelta: int32(i), TimestampDelta64: int64(i * 3), TimestampDelta: int32(i * 3), Key: []byte{'k', byte('0' + i%3)}, Value: v,
			Headers: []kmsg.Header{{Key: "h", Value: []byte{byte(i)}}}}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		body = r.AppendTo(body)
	}
	c, err := kgo.DefaultCompressor(codec)
	if err != nil {
		f.Fatal(err)
	}
	if c != nil {
		var buf bytes.Buffer
		out, used := c.Compress(&buf, body)
		body, attrs = append([]byte(nil), out...), attrs|int16(used)
	}
	rb := kmsg.RecordBatch{Magic: 2, Attributes: attrs, LastOffsetDelta: int32(len(values) - 1), FirstTimestamp: 1000,
		MaxTimestamp: 1000 + int64(3*(len(values)-1)), ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: int32(len(values)), Records: body}
	raw := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[batchLengthOff:], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[batchCRCOff:], crc32.Checksum(raw[batchAttrOff:], crcTable))
	return raw
}

// The cleaner reads stored batches, which a bucket can hand back
// corrupted: whatever the bytes, filtering never panics, and a batch it
// rewrites is a well-formed batch of the records it kept.
func FuzzCleanBatches(f *testing.F) {
	f.Add(fuzzBatch(f, kgo.NoCompression(), 0, []byte("a"), nil, []byte("b"), nil))
	f.Add(fuzzBatch(f, kgo.ZstdCompression(), 0, []byte("a"), nil, nil))
	f.Add(fuzzBatch(f, kgo.GzipCompression(), batchDeleteHorizonFlag, nil, []byte("c")))
	f.Add(fuzzBatch(f, kgo.NoCompression(), 0x08, []byte("a"), nil))
	f.Add(append(fuzzBatch(f, kgo.SnappyCompression(), 0, nil), fuzzBatch(f, kgo.Lz4Compression(), 0, []byte("x"), nil)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		var batches [][]byte
		if err := eachBatch(data, func(b []byte) { batches = append(batches, b) }); err != nil {
			return
		}
		for i, b := range batches {
			cl := &cleaner{now: 2000 + int64(i), horizon: 5000}
			cl.classify = func(rec *record, base int64) verdict {
				switch {
				case rec.offsetDelta%2 == 1:
					return dropRecord
				case rec.key != nil && rec.value == nil:
					return keepTombstone
				}
				return keepRecord
			}
			// What a reader sees of each record (with its absolute
			// timestamp), before and after.
			type seen struct {
				offsetDelta      int64
				ts               int64
				key, value       string
				keyNull, valNull bool
			}
			view := func(batch []byte, keep func(*record) bool) ([]seen, error) {
				first := int64(binary.BigEndian.Uint64(batch[batchFirstTsOff:]))
				var out []seen
				err := eachRecord(batch, func(rec *record, _ []byte) {
					if keep(rec) {
						out = append(out, seen{rec.offsetDelta, first + rec.tsDelta, string(rec.key), string(rec.value), rec.key == nil, rec.value == nil})
					}
				})
				return out, err
			}
			got, err := cl.filter(b, 0)
			if err != nil || got.kept == 0 || bytes.Equal(got.batch, b) {
				continue
			}
			var rb kmsg.RecordBatch
			if err := rb.ReadFrom(got.batch); err != nil {
				t.Fatalf("rewritten batch does not parse: %v", err)
			}
			if rb.NumRecords != int32(got.kept) || int(rb.Length) != len(got.batch)-12 ||
				uint32(rb.CRC) != crc32.Checksum(got.batch[batchAttrOff:], crcTable) {
				t.Fatalf("rewritten batch: %d records (kept %d), length %d of %d, bad CRC?", rb.NumRecords, got.kept, rb.Length, len(got.batch))
			}
			if binary.BigEndian.Uint16(b[batchAttrOff:])&0x08 != 0 {
				continue // LogAppendTime: record timestamps are the batch's
			}
			horizonSet := rb.Attributes&batchDeleteHorizonFlag != 0 && binary.BigEndian.Uint16(b[batchAttrOff:])&batchDeleteHorizonFlag == 0
			want, _ := view(b, func(rec *record) bool {
				v := cl.classify(rec, 0)
				return v == keepRecord || (v == keepTombstone && (horizonSet || int64(binary.BigEndian.Uint64(b[batchFirstTsOff:])) > cl.now))
			})
			out, err := view(got.batch, func(*record) bool { return true })
			if err != nil || len(out) != got.kept || !slices.Equal(out, want) {
				t.Fatalf("rewritten batch reads as %+v (%v), want %+v", out, err, want)
			}
		}
	})
}
