package compaction

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// zstdBatch is a batch of count records whose encoded bytes are body,
// zstd-compressed.
func zstdBatch(t *testing.T, body []byte, count int32) []byte {
	return compressedBatch(t, kgo.ZstdCompression(), body, count)
}

// compressedBatch is a batch of count records whose encoded bytes are
// body, compressed with codec.
func compressedBatch(t testing.TB, codec kgo.CompressionCodec, body []byte, count int32) []byte {
	t.Helper()
	c, err := kgo.DefaultCompressor(codec)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	out, used := c.Compress(&buf, body)
	rb := kmsg.RecordBatch{Magic: 2, Attributes: int16(used), LastOffsetDelta: count - 1, FirstTimestamp: 1000, MaxTimestamp: 1000,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: count, Records: append([]byte(nil), out...)}
	raw := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[batchLengthOff:], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[batchCRCOff:], crc32.Checksum(raw[batchAttrOff:], crcTable))
	return raw
}

// allocated is the bytes fn allocates.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Cleaning a stored batch costs memory in proportion to its decompressed
// bytes (which batchcodec bounds), whatever its records claim. A kept
// record used to be held as a decoded kmsg.Record (about 136 bytes), so a
// few KiB of zstd holding millions of tiny records cost gigabytes; and
// kmsg.Record.ReadFrom allocates for the header count a record claims
// before reading a header, 40 bytes per claimed header.
func TestCleanerMemoryBounded(t *testing.T) {
	keepAll := &cleaner{now: 2000, horizon: 5000, classify: func(*record, int64) verdict { return keepRecord }}

	t.Run("many tiny records", func(t *testing.T) {
		const n = 1 << 20
		var body []byte
		for i := range n {
			r := kmsg.Record{OffsetDelta: int32(i)} // no key, no value: 7 bytes
			r.Length = int32(len(r.AppendTo(nil)) - 1)
			body = r.AppendTo(body)
		}
		b := zstdBatch(t, body, n)
		var f filtered
		var err error
		got := allocated(func() { f, err = keepAll.filter(b, 0) })
		if err != nil || f.kept != n {
			t.Fatalf("kept %d of %d: %v", f.kept, n, err)
		}
		t.Logf("%d records, %d bytes decompressed: %d bytes allocated", n, len(body), got)
		if limit := uint64(4 * len(body)); got > limit {
			t.Fatalf("cleaning %d records (%d bytes decompressed) allocated %d bytes, want at most %d", n, len(body), got, limit)
		}
	})

	t.Run("header count", func(t *testing.T) {
		// One record claiming a header per byte of a body of zeros.
		const zeros = 8 << 20
		var rec []byte
		rec = append(rec, 0)                         // attributes
		rec = binary.AppendVarint(rec, 0)            // timestamp delta
		rec = binary.AppendVarint(rec, 0)            // offset delta
		rec = binary.AppendVarint(rec, -1)           // null key
		rec = binary.AppendVarint(rec, -1)           // null value
		rec = binary.AppendVarint(rec, int64(zeros)) // headers
		rec = append(rec, make([]byte, zeros)...)
		body := binary.AppendVarint(nil, int64(len(rec)))
		body = append(body, rec...)
		b := zstdBatch(t, body, 1)
		var err error
		got := allocated(func() { _, err = keepAll.filter(b, 0) })
		if !errors.Is(err, errBadRecord) {
			t.Fatalf("a record claiming %d headers in %d bytes: %v, want errBadRecord", zeros, zeros, err)
		}
		if limit := uint64(3 * len(body)); got > limit {
			t.Fatalf("reading it allocated %d bytes, want at most %d", got, limit)
		}
		got = allocated(func() { _, err = earliestTimestamp(b) })
		if err == nil || got > uint64(3*len(body)) {
			t.Fatalf("earliestTimestamp: %v after allocating %d bytes", err, got)
		}
	})
}

// Re-encoding a batch that lost a record reuses the codec's encoder. A
// compressor was made per batch, and with it a new encoder: 1.6 MiB and
// 2 ms for zstd, 1.1 MiB for gzip, for a batch of two small records, so a
// group of tens of thousands of them took longer than the lease.
func TestCleanerReusesCompressors(t *testing.T) {
	dropFirst := &cleaner{now: 2000, horizon: 5000, classify: func(rec *record, _ int64) verdict {
		if rec.offsetDelta == 0 {
			return dropRecord
		}
		return keepRecord
	}}
	var body []byte
	for i := range 2 {
		r := kmsg.Record{OffsetDelta: int32(i), Key: []byte("k"), Value: []byte(fmt.Sprintf("value %d", i))}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		body = r.AppendTo(body)
	}
	for _, c := range []struct {
		name  string
		codec kgo.CompressionCodec
	}{{"gzip", kgo.GzipCompression()}, {"snappy", kgo.SnappyCompression()}, {"lz4", kgo.Lz4Compression()}, {"zstd", kgo.ZstdCompression()}} {
		t.Run(c.name, func(t *testing.T) {
			b := compressedBatch(t, c.codec, body, 2)
			// Each call's bytes: the least of them, as a GC empties the
			// encoders' pool and the race detector drops a quarter of
			// what is put in a sync.Pool.
			const n = 20
			var per [n]uint64
			var ms runtime.MemStats
			for i := range n {
				runtime.ReadMemStats(&ms)
				before := ms.TotalAlloc
				f, err := dropFirst.filter(b, 0)
				runtime.ReadMemStats(&ms)
				if err != nil || f.kept != 1 || f.dropped != 1 {
					t.Fatalf("kept %d, dropped %d: %v", f.kept, f.dropped, err)
				}
				per[i] = ms.TotalAlloc - before
			}
			slices.Sort(per[:])
			t.Logf("bytes allocated per batch re-encoded: least %d, median %d, most %d", per[0], per[n/2], per[n-1])
			if per[0] > 256<<10 {
				t.Fatalf("re-encoding a batch of two small records allocated at least %d bytes (in %d tries), want at most 256 KiB", per[0], n)
			}
		})
	}
}
