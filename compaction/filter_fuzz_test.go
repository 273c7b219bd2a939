package compaction

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/segment"
)

// fuzzBatch encodes keyed records (a nil value is a tombstone) as one
// batch compressed with codec, with attrs or'ed into its attributes.
func fuzzBatch(f *testing.F, codec kgo.CompressionCodec, attrs int16, values ...[]byte) []byte {
	var body []byte
	for i, v := range values {
		r := kmsg.Record{OffsetDelta: int32(i), TimestampDelta64: int64(i * 3), TimestampDelta: int32(i * 3), Key: []byte{'k', byte('0' + i%3)}, Value: v}
		body = appendRecord(body, &r)
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
		if err := eachBatch(data, func(b []byte, _ segment.BatchMeta) { batches = append(batches, b) }); err != nil {
			return
		}
		for i, b := range batches {
			cl := &cleaner{now: 2000 + int64(i), horizon: 5000}
			cl.classify = func(rec *kmsg.Record, base int64) verdict {
				switch {
				case rec.OffsetDelta%2 == 1:
					return dropRecord
				case rec.Key != nil && rec.Value == nil:
					return keepTombstone
				}
				return keepRecord
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
			n := 0
			if err := eachRecord(got.batch, func(*kmsg.Record, []byte) { n++ }); err != nil || n != got.kept {
				t.Fatalf("rewritten batch reads as %d records (%v), kept %d", n, err, got.kept)
			}
		}
	})
}
