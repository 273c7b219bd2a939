package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/internal/batchcodec"
)

// testBatch describes a batch for makeBatch.
type testBatch struct {
	records       int
	firstTS       int64
	codec         kgo.CompressionCodec // zero: none
	producerID    int64
	producerEpoch int16
	baseSequence  int32
	attrs         int16 // extra attribute bits
}

// makeBatch encodes a valid v2 record batch with kmsg, compressing the
// records with the codec if set. Record i has key "k<i>", value "v<i>" and
// timestamp firstTS+i.
func makeBatch(t testing.TB, tb testBatch) []byte {
	t.Helper()
	var recs []byte
	for i := 0; i < tb.records; i++ {
		r := kmsg.Record{
			TimestampDelta64: int64(i),
			OffsetDelta:      int32(i),
			Key:              []byte{'k', byte('0' + i%10)},
			Value:            []byte{'v', byte('0' + i%10)},
			Headers:          []kmsg.Header{{Key: "h", Value: []byte{byte(i)}}},
		}
		// AppendTo writes the Length field (0 here, one byte) first.
		body := r.AppendTo(nil)[1:]
		recs = binary.AppendVarint(recs, int64(len(body)))
		recs = append(recs, body...)
	}
	attrs := tb.attrs
	if tb.codec != (kgo.CompressionCodec{}) {
		comp, err := kgo.DefaultCompressor(tb.codec)
		if err != nil {
			t.Fatal(err)
		}
		out, typ := comp.Compress(new(bytes.Buffer), recs)
		recs = append([]byte(nil), out...)
		attrs |= int16(typ)
	}
	pid := tb.producerID
	if pid == 0 {
		pid = -1
	}
	epoch, seq := tb.producerEpoch, tb.baseSequence
	if pid < 0 {
		epoch, seq = -1, -1
	}
	b := kmsg.RecordBatch{
		FirstOffset:          0,
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           attrs,
		LastOffsetDelta:      int32(tb.records - 1),
		FirstTimestamp:       tb.firstTS,
		MaxTimestamp:         tb.firstTS + int64(max(tb.records-1, 0)),
		ProducerID:           pid,
		ProducerEpoch:        epoch,
		FirstSequence:        seq,
		NumRecords:           int32(tb.records),
		Records:              recs,
	}
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[batchLengthOffset:], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[batchCRCOffset:], crc32.Checksum(raw[batchAttrsOffset:], castagnoli))
	return raw
}

// recrc fixes the CRC after a test modified a batch.
func recrc(b []byte) []byte {
	binary.BigEndian.PutUint32(b[batchCRCOffset:], crc32.Checksum(b[batchAttrsOffset:], castagnoli))
	return b
}

func TestValidateProduceBatch(t *testing.T) {
	good := makeBatch(t, testBatch{records: 3, firstTS: 1000})
	mutate := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	tests := []struct {
		name    string
		batch   []byte
		version int16
		want    *kerr.Error // nil: valid
	}{
		{"valid", good, 9, nil},
		{"valid gzip", makeBatch(t, testBatch{records: 5, codec: kgo.GzipCompression()}), 9, nil},
		{"valid zstd", makeBatch(t, testBatch{records: 5, codec: kgo.ZstdCompression()}), 9, nil},
		{"zstd before v7", makeBatch(t, testBatch{records: 5, codec: kgo.ZstdCompression()}), 6, kerr.UnsupportedCompressionType},
		{"valid idempotent", makeBatch(t, testBatch{records: 2, producerID: 7, producerEpoch: 1, baseSequence: 10}), 9, nil},
		{"empty", nil, 9, kerr.InvalidRecord},
		{"short header", good[:12], 9, kerr.InvalidRecord},
		{"bad crc", mutate(func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }), 9, kerr.CorruptMessage},
		{"magic 1", mutate(func(b []byte) []byte { b[batchMagicOffset] = 1; return b }), 9, kerr.InvalidRecord},
		{"magic 0", mutate(func(b []byte) []byte { b[batchMagicOffset] = 0; return b }), 9, kerr.InvalidRecord},
		{"magic 3", mutate(func(b []byte) []byte { b[batchMagicOffset] = 3; return b }), 9, kerr.CorruptMessage},
		{"negative magic", mutate(func(b []byte) []byte { b[batchMagicOffset] = 0xff; return b }), 9, kerr.CorruptMessage},
		{"length past end", mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[batchLengthOffset:], uint32(len(b)))
			return b
		}), 9, kerr.InvalidRecord},
		{"length inside the header", mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[batchLengthOffset:], 20)
			return b
		}), 9, kerr.CorruptMessage},
		{"length below header", mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[batchLengthOffset:], 10)
			return b
		}), 9, kerr.CorruptMessage},
		{"negative length", mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[batchLengthOffset:], 0xffffff00)
			return b
		}), 9, kerr.CorruptMessage},
		{"two batches", append(append([]byte(nil), good...), good...), 9, kerr.InvalidRecord},
		{"trailing garbage", append(append([]byte(nil), good...), 1, 2, 3), 9, kerr.CorruptMessage},
		{"count mismatch", mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[batchCountOffset:], 2)
			return recrc(b)
		}), 9, kerr.InvalidRecord},
		{"zero records", mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[batchCountOffset:], 0)
			binary.BigEndian.PutUint32(b[batchLODOffset:], 0xffffffff)
			return recrc(b)
		}), 9, kerr.InvalidRecord},
		{"records fewer than count", mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[batchCountOffset:], 4)
			binary.BigEndian.PutUint32(b[batchLODOffset:], 3)
			return recrc(b)
		}), 9, kerr.InvalidRecord},
		{"transactional", makeBatch(t, testBatch{records: 1, producerID: 3, attrs: attrTransactional}), 9, kerr.InvalidTxnState},
		{"control", makeBatch(t, testBatch{records: 1, attrs: attrControl}), 9, kerr.InvalidRecord},
		{"delete horizon", makeBatch(t, testBatch{records: 1, attrs: attrDeleteHorizon}), 9, kerr.InvalidRecord},
		{"unknown codec", mutate(func(b []byte) []byte {
			b[batchAttrsOffset+1] |= 7
			return recrc(b)
		}), 9, kerr.UnsupportedCompressionType},
		{"idempotent without sequence", mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[batchPIDOffset:], 5)
			return recrc(b)
		}), 9, kerr.InvalidRecord},
		{"implausible compressed count", func() []byte {
			b := makeBatch(t, testBatch{records: 1, codec: kgo.SnappyCompression()})
			binary.BigEndian.PutUint32(b[batchCountOffset:], 1<<30)
			binary.BigEndian.PutUint32(b[batchLODOffset:], 1<<30-1)
			return recrc(b)
		}(), 9, kerr.InvalidRecord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := validateProduceBatch(tt.batch, tt.version)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("valid batch rejected: %v", err)
				}
				if h.Length != len(tt.batch) || h.Records <= 0 {
					t.Fatalf("header %+v", h)
				}
				return
			}
			var be *batchError
			if !errors.As(err, &be) {
				t.Fatalf("got %v, want a batchError with %v", err, tt.want)
			}
			if be.err != tt.want {
				t.Fatalf("got %v (%s), want %v", be.err, be.msg, tt.want)
			}
		})
	}
}

func TestSetLogAppendTime(t *testing.T) {
	b := makeBatch(t, testBatch{records: 4, firstTS: 100})
	setLogAppendTime(b, 123456)
	h, err := validateProduceBatch(b, 9)
	if err != nil {
		t.Fatalf("rewritten batch invalid: %v", err)
	}
	if !h.logAppendTime() || h.MaxTimestamp != 123456 || h.FirstTimestamp != 100 {
		t.Fatalf("header after rewrite: %+v", h)
	}
	var got []int64
	if err := recordTimes(b, h, func(_ int32, ts int64) bool { got = append(got, ts); return true }); err != nil {
		t.Fatal(err)
	}
	for _, ts := range got {
		if ts != 123456 {
			t.Fatalf("record timestamps %v, want all LogAppendTime", got)
		}
	}
}

func TestForEachStoredBatchPatch(t *testing.T) {
	a := makeBatch(t, testBatch{records: 3})
	b := makeBatch(t, testBatch{records: 5})
	row := append(append([]byte(nil), a...), b...)
	var bases []int64
	err := forEachStoredBatch(row, 100, func(batch []byte, base int64, h batchHeader) bool {
		bases = append(bases, base)
		c := append([]byte(nil), batch...)
		patchBaseOffset(c, base)
		if _, err := validateProduceBatch(c, 9); err != nil {
			t.Fatalf("patched batch no longer valid: %v", err)
		}
		if got := int64(binary.BigEndian.Uint64(c)); got != base {
			t.Fatalf("base offset %d, want %d", got, base)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(bases) != 2 || bases[0] != 100 || bases[1] != 103 {
		t.Fatalf("bases %v, want [100 103]", bases)
	}
	if err := forEachStoredBatch(row[:len(row)-1], 0, func([]byte, int64, batchHeader) bool { return true }); !errors.Is(err, errBadStoredBatch) {
		t.Fatalf("truncated row: %v", err)
	}
}

func TestRecordTimesCodecs(t *testing.T) {
	for _, tt := range []struct {
		name  string
		codec kgo.CompressionCodec
	}{
		{"none", kgo.NoCompression()},
		{"gzip", kgo.GzipCompression()},
		{"snappy", kgo.SnappyCompression()},
		{"lz4", kgo.Lz4Compression()},
		{"zstd", kgo.ZstdCompression()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := makeBatch(t, testBatch{records: 20, firstTS: 5000, codec: tt.codec})
			h, err := validateProduceBatch(b, 9)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			err = recordTimes(b, h, func(delta int32, ts int64) bool {
				if int64(delta) != int64(n) || ts != 5000+int64(n) {
					t.Fatalf("record %d: delta %d ts %d", n, delta, ts)
				}
				n++
				return true
			})
			if err != nil || n != 20 {
				t.Fatalf("walked %d records, err %v", n, err)
			}
		})
	}
}

func fuzzBatchSeeds(f *testing.F) [][]byte {
	return [][]byte{
		makeBatch(f, testBatch{records: 3, firstTS: 1}),
		makeBatch(f, testBatch{records: 2, codec: kgo.GzipCompression()}),
		makeBatch(f, testBatch{records: 2, codec: kgo.ZstdCompression(), producerID: 1, producerEpoch: 0, baseSequence: 0}),
		makeBatch(f, testBatch{records: 2, codec: kgo.Lz4Compression()}),
		makeBatch(f, testBatch{records: 2, codec: kgo.SnappyCompression()}),
		{},
		make([]byte, batchHeaderSize),
	}
}

func FuzzValidateProduceBatch(f *testing.F) {
	for _, s := range fuzzBatchSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFuzzedBatch(t, b)
		if len(b) > batchAttrsOffset {
			// Most mutations break the CRC; also try each with a
			// correct CRC so the checks behind it get exercised.
			checkFuzzedBatch(t, recrc(append([]byte(nil), b...)))
		}
	})
}

func checkFuzzedBatch(t *testing.T, b []byte) {
	{
		h, err := validateProduceBatch(b, 9)
		if err != nil {
			var be *batchError
			if !errors.As(err, &be) {
				t.Fatalf("error %v is not a batchError", err)
			}
			return
		}
		// An accepted batch must be walkable as stored bytes, and its
		// records readable without panics (errors are allowed for
		// compressed garbage, which is stored as sent).
		n := 0
		if err := forEachStoredBatch(b, 0, func(batch []byte, base int64, hh batchHeader) bool {
			n++
			_ = recordTimes(batch, hh, func(int32, int64) bool { return true })
			return true
		}); err != nil || n != 1 {
			t.Fatalf("accepted batch walks as %d batches: %v", n, err)
		}
		if h.compression() == 0 {
			// Uncompressed records were checked: they must read.
			if err := recordTimes(b, h, func(int32, int64) bool { return true }); err != nil {
				t.Fatalf("accepted uncompressed batch has unreadable records: %v", err)
			}
		}
		c := append([]byte(nil), b...)
		setLogAppendTime(c, 42)
		if _, err := validateProduceBatch(c, 9); err != nil {
			t.Fatalf("LogAppendTime rewrite broke the batch: %v", err)
		}
	}
}

// TestKeylessCompressedBomb: a compacted topic's batch that decompresses
// past batchcodec.MaxDecompressed is refused with INVALID_RECORD (its
// bytes cannot change on a retry) after a bounded read, not stored.
func TestKeylessCompressedBomb(t *testing.T) {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	body := enc.EncodeAll(make([]byte, batchcodec.MaxDecompressed+1), nil)
	b := append(makeBatch(t, testBatch{records: 1})[:batchHeaderSize], body...)
	binary.BigEndian.PutUint32(b[batchLengthOffset:], uint32(len(b)-12))
	binary.BigEndian.PutUint16(b[batchAttrsOffset:], 4) // zstd
	recrc(b)
	h, err := validateProduceBatch(b, 9)
	if err != nil {
		t.Fatalf("the batch's header is valid: %v", err)
	}
	_, err = keylessCompressed(b, h)
	var be *batchError
	if !errors.As(err, &be) || be.err != kerr.InvalidRecord || !strings.Contains(be.msg, "decompress") {
		t.Fatalf("bomb: %v, want INVALID_RECORD naming the decompression", err)
	}
}

// TestDecompressingGate: one decompression at a time; a waiter gives up
// when its context ends, and the slot is released after a panic.
func TestDecompressingGate(t *testing.T) {
	a := &Agent{decompress: make(chan struct{}, 1)}
	held := make(chan struct{})
	release := make(chan struct{})
	go a.decompressing(context.Background(), func() error {
		close(held)
		<-release
		return nil
	})
	<-held
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	ran := false
	if err := a.decompressing(ctx, func() error { ran = true; return nil }); !errors.Is(err, context.DeadlineExceeded) || ran {
		t.Fatalf("waiter while the slot is held: %v (ran %v), want its deadline", err, ran)
	}
	close(release)
	func() {
		defer func() { _ = recover() }()
		_ = a.decompressing(context.Background(), func() error { panic("boom") })
	}()
	if err := a.decompressing(context.Background(), func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("after a panic the slot is free: %v (ran %v)", err, ran)
	}
}
