package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/floebroker/floe/internal/batchcodec"
)

// The Kafka RecordBatch v2 header, as the produce path reads it. All
// integers are big-endian; the CRC-32C covers attributes..end of batch.
//
//	0   int64  baseOffset (patched on fetch; outside the CRC)
//	8   int32  batchLength (bytes after this field)
//	12  int32  partitionLeaderEpoch (outside the CRC)
//	16  int8   magic (2)
//	17  uint32 crc
//	21  int16  attributes
//	23  int32  lastOffsetDelta
//	27  int64  baseTimestamp (firstTimestamp)
//	35  int64  maxTimestamp
//	43  int64  producerId
//	51  int16  producerEpoch
//	53  int32  baseSequence
//	57  int32  recordCount
//	61         records
const (
	batchHeaderSize   = 61
	batchLengthOffset = 8
	batchPLEOffset    = 12 // partitionLeaderEpoch, outside the CRC
	batchMagicOffset  = 16
	batchCRCOffset    = 17
	batchAttrsOffset  = 21
	batchLODOffset    = 23
	batchFirstTSOff   = 27
	batchMaxTSOffset  = 35
	batchPIDOffset    = 43
	batchEpochOffset  = 51
	batchSeqOffset    = 53
	batchCountOffset  = 57

	attrCompressionMask = 0x07
	attrLogAppendTime   = 0x08
	attrTransactional   = 0x10
	attrControl         = 0x20
	// attrDeleteHorizon (KIP-534) says the first timestamp field holds the
	// time after which log compaction may drop the batch's tombstones.
	attrDeleteHorizon = 0x40

	// minRecordSize is the smallest encoded record: a length varint and
	// attributes, timestampDelta, offsetDelta, keyLength, valueLength and
	// headerCount of one byte each.
	minRecordSize = 7
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// batchError is a produce-time rejection of one partition's records: the
// Kafka error the partition gets and a message for the log and for
// ProduceResponse.ErrorMessage.
type batchError struct {
	err *kerr.Error
	msg string
}

func (e *batchError) Error() string { return e.err.Message + ": " + e.msg }
func (e *batchError) Unwrap() error { return e.err }

func corrupt(format string, args ...any) error {
	return &batchError{kerr.CorruptMessage, fmt.Sprintf(format, args...)}
}

func invalidRecord(format string, args ...any) error {
	return &batchError{kerr.InvalidRecord, fmt.Sprintf(format, args...)}
}

// batchHeader is the parsed header of one v2 record batch.
type batchHeader struct {
	Length          int   // whole batch, 12 + batchLength
	Attributes      int16 // compression, timestamp type, transactional, control
	LastOffsetDelta int32
	FirstTimestamp  int64
	MaxTimestamp    int64
	ProducerID      int64
	ProducerEpoch   int16
	BaseSequence    int32
	Records         int32
	// Keyless is the index of the batch's first record without a key, -1
	// if there is none or the batch is compressed (not parsed).
	Keyless int32
}

func (h batchHeader) compression() int8   { return int8(h.Attributes & attrCompressionMask) }
func (h batchHeader) logAppendTime() bool { return h.Attributes&attrLogAppendTime != 0 }

// readBatchHeader reads the header of the batch at the start of b without
// checking its CRC or its records. It fails when b is too short to hold the
// header or the length the header announces, and on any magic but 2.
//
// The codes are Kafka's: its batch iterator refuses a length below the
// smallest record any magic allows and a magic no version has
// (CORRUPT_MESSAGE), but finds no batch at all in bytes that end before
// the length they announce, which its produce validation answers with
// INVALID_RECORD, as it does magic 0 and 1; a v2 batch shorter than its
// header fails the CRC check (CORRUPT_MESSAGE).
func readBatchHeader(b []byte) (batchHeader, error) {
	if len(b) < batchMagicOffset+1 {
		return batchHeader{}, invalidRecord("produce requests must have at least one record batch per partition: %d bytes hold no batch header", len(b))
	}
	length := int64(int32(binary.BigEndian.Uint32(b[batchLengthOffset:]))) + 12
	if length < minRecordOverhead {
		return batchHeader{}, corrupt("record batch length %d is below the minimum record overhead %d", length, minRecordOverhead)
	}
	magic := int8(b[batchMagicOffset])
	if magic < 0 || magic > 2 {
		return batchHeader{}, corrupt("invalid record batch magic %d", magic)
	}
	if length > int64(len(b)) {
		return batchHeader{}, invalidRecord("produce requests must have at least one record batch per partition: the batch's length %d runs past the %d bytes sent", length, len(b))
	}
	if magic != 2 {
		return batchHeader{}, invalidRecord("produce requests with version 3 and later are only allowed to contain record batches with magic version 2, got %d", magic)
	}
	if length < batchHeaderSize {
		return batchHeader{}, corrupt("record batch length %d is shorter than the %d byte header", length, batchHeaderSize)
	}
	return batchHeader{
		Length:          int(length),
		Attributes:      int16(binary.BigEndian.Uint16(b[batchAttrsOffset:])),
		LastOffsetDelta: int32(binary.BigEndian.Uint32(b[batchLODOffset:])),
		FirstTimestamp:  int64(binary.BigEndian.Uint64(b[batchFirstTSOff:])),
		MaxTimestamp:    int64(binary.BigEndian.Uint64(b[batchMaxTSOffset:])),
		ProducerID:      int64(binary.BigEndian.Uint64(b[batchPIDOffset:])),
		ProducerEpoch:   int16(binary.BigEndian.Uint16(b[batchEpochOffset:])),
		BaseSequence:    int32(binary.BigEndian.Uint32(b[batchSeqOffset:])),
		Records:         int32(binary.BigEndian.Uint32(b[batchCountOffset:])),
	}, nil
}

// keylessCompressed decompresses a compressed batch (bounded, as log
// compaction reads it) and returns the index of its first record without
// a key, -1 if every record has one. The records must parse, as Kafka's
// validation of a compacted topic's batches requires.
func keylessCompressed(b []byte, h batchHeader) (int32, error) {
	body, err := batchcodec.Decompress(h.compression(), b[batchHeaderSize:])
	if err != nil {
		// The bytes will not change on a retry: not CORRUPT_MESSAGE.
		return -1, invalidRecord("cannot decompress the record batch: %v", err)
	}
	return checkRecords(body, h.Records)
}

// validateProduceBatch checks the records of one produce partition: exactly
// one v2 batch, consistent lengths, a CRC-32C that matches, a record count
// that agrees with the offset span and (for uncompressed batches) with the
// records actually present, numbered in order by their offset deltas, and
// no transactional or control batch, which Floe does not accept. It never
// decompresses: a compressed batch is stored as sent. Every error is a
// *batchError carrying the Kafka code.
func validateProduceBatch(b []byte, produceVersion int16) (batchHeader, error) {
	if len(b) == 0 {
		return batchHeader{}, invalidRecord("produce requests must have at least one record batch per partition")
	}
	h, err := readBatchHeader(b)
	if err != nil {
		return batchHeader{}, err
	}
	if h.Length != len(b) {
		// Kafka counts any further complete batch as a second batch
		// (INVALID_RECORD); bytes that cannot be a batch are corrupt.
		if _, err := readBatchHeader(b[h.Length:]); err == nil {
			return batchHeader{}, invalidRecord("produce requests are only allowed to contain exactly one record batch per partition")
		}
		return batchHeader{}, corrupt("%d bytes follow the record batch", len(b)-h.Length)
	}
	if got, want := crc32.Checksum(b[batchAttrsOffset:], castagnoli), binary.BigEndian.Uint32(b[batchCRCOffset:]); got != want {
		return batchHeader{}, corrupt("record batch CRC %08x does not match its contents (%08x)", want, got)
	}
	switch c := h.compression(); {
	case c > 4:
		return batchHeader{}, &batchError{kerr.UnsupportedCompressionType, fmt.Sprintf("unknown compression codec %d", c)}
	case c == 4 && produceVersion < 7:
		return batchHeader{}, &batchError{kerr.UnsupportedCompressionType, "zstd needs produce version 7 or later"}
	}
	if h.Attributes&attrControl != 0 {
		return batchHeader{}, invalidRecord("clients may not produce control batches")
	}
	if h.Attributes&attrDeleteHorizon != 0 {
		// Only log compaction sets it. A producer setting it would choose
		// when its tombstones go, ahead of delete.retention.ms, and
		// consumers reading behind would miss the deletes.
		return batchHeader{}, invalidRecord("clients may not set a delete horizon (record batch attribute bit 6)")
	}
	if h.Attributes&attrTransactional != 0 {
		return batchHeader{}, &batchError{kerr.InvalidTxnState, "transactions are not supported"}
	}
	if h.Records <= 0 {
		return batchHeader{}, invalidRecord("invalid reported count for record batch: %d", h.Records)
	}
	if h.LastOffsetDelta < 0 || int64(h.LastOffsetDelta)+1 != int64(h.Records) {
		return batchHeader{}, invalidRecord("inconsistent batch offset range (lastOffsetDelta %d) and count of records %d", h.LastOffsetDelta, h.Records)
	}
	if h.ProducerID >= 0 && (h.ProducerEpoch < 0 || h.BaseSequence < 0) {
		return batchHeader{}, invalidRecord("idempotent batch of producer %d has epoch %d and base sequence %d", h.ProducerID, h.ProducerEpoch, h.BaseSequence)
	}
	h.Keyless = -1
	if h.compression() == 0 {
		if h.Keyless, err = checkRecords(b[batchHeaderSize:], h.Records); err != nil {
			return batchHeader{}, err
		}
	} else if int64(h.Records) > int64(len(b)-batchHeaderSize)*maxCompressionRatio {
		return batchHeader{}, invalidRecord("record count %d is implausible for %d compressed bytes", h.Records, len(b)-batchHeaderSize)
	}
	return h, nil
}

// minRecordOverhead is the smallest batch length (counting the offset and
// length fields) Kafka's batch iterator reads: a v0 message's overhead.
const minRecordOverhead = 26

// maxCompressionRatio bounds the records a compressed batch may claim per
// compressed byte, so that a tiny batch cannot claim billions of offsets.
// Real codecs stay far below it even for empty records.
const maxCompressionRatio = 4096

// checkRecords parses the records of an uncompressed batch (or of a
// compressed one's decompressed body): every field must fit its record,
// every record its batch, record i's offset delta must be i, and their
// number must equal the header's count. It returns the index of the first
// record without a key, -1 if all have one.
func checkRecords(b []byte, want int32) (keyless int32, err error) {
	keyless = -1
	n := int32(0)
	for len(b) > 0 {
		if n == want {
			return -1, invalidRecord("incorrect declared batch size: records remain after the %d the batch counts", want)
		}
		l, sz := varint(b)
		if sz <= 0 || l < minRecordSize-1 || l > int64(len(b)-sz) {
			return -1, invalidRecord("found invalid record structure: record %d has a bad length", n)
		}
		hasKey, delta, err := checkRecord(b[sz : sz+int(l)])
		if err != nil {
			return -1, invalidRecord("found invalid record structure: record %d: %v", n, err)
		}
		if delta != int64(n) {
			// Clients number a v2 batch's records 0 to lastOffsetDelta.
			// Kafka renumbers a compressed batch that does not and keeps
			// an uncompressed one as sent; Floe stores every batch as
			// sent, and log compaction and timestamp lookups take a
			// record's offset from its delta: one beyond int32 failed
			// every later log compaction pass of the partition, and one
			// within it would place the record in another batch.
			return -1, invalidRecord("record %d has offset delta %d: a batch's records must have offset deltas 0 to lastOffsetDelta in order", n, delta)
		}
		if !hasKey && keyless < 0 {
			keyless = n
		}
		b = b[sz+int(l):]
		n++
	}
	if n != want {
		return -1, invalidRecord("incorrect declared batch size: the batch holds %d records, its header says %d", n, want)
	}
	return keyless, nil
}

// checkRecord parses one record body: attributes, timestamp delta, offset
// delta, key, value and headers, which must use it up exactly. It reports
// whether the key is not null, and the offset delta.
func checkRecord(r []byte) (hasKey bool, offsetDelta int64, err error) {
	r = r[1:] // attributes; the length check guarantees the byte
	_, sz := varint(r)
	if sz <= 0 {
		return false, 0, errors.New("bad timestamp delta")
	}
	r = r[sz:]
	offsetDelta, sz = varint(r)
	if sz <= 0 {
		return false, 0, errors.New("bad offset delta")
	}
	r = r[sz:]
	keyLen, sz := varint(r)
	hasKey = sz > 0 && keyLen >= 0
	if r, err = skipVarBytes(r, true, "key"); err != nil {
		return false, 0, err
	}
	if r, err = skipVarBytes(r, true, "value"); err != nil {
		return false, 0, err
	}
	headers, sz := varint(r)
	if sz <= 0 || headers < 0 || headers > int64(len(r)) {
		return false, 0, errors.New("bad header count")
	}
	r = r[sz:]
	for i := int64(0); i < headers; i++ {
		if r, err = skipVarBytes(r, false, "header key"); err != nil {
			return false, 0, err
		}
		if r, err = skipVarBytes(r, true, "header value"); err != nil {
			return false, 0, err
		}
	}
	if len(r) != 0 {
		return false, 0, fmt.Errorf("%d bytes left after the headers", len(r))
	}
	return hasKey, offsetDelta, nil
}

// skipVarBytes skips a varint-length-prefixed field (-1 is null where
// nullable).
func skipVarBytes(r []byte, nullable bool, field string) ([]byte, error) {
	l, sz := varint(r)
	switch {
	case sz <= 0:
		return nil, fmt.Errorf("bad %s length", field)
	case l < 0 && nullable:
		// Kafka's record reader takes any negative length as null.
		return r[sz:], nil
	case l < 0 || l > int64(len(r)-sz):
		return nil, fmt.Errorf("%s length %d does not fit", field, l)
	}
	return r[sz+int(l):], nil
}

// varint is binary.Varint with a fast path for the one-byte values that
// most record fields hold (small deltas and lengths), which the produce
// path decodes a few times per record.
func varint(b []byte) (int64, int) {
	if len(b) > 0 && b[0] < 0x80 {
		return int64(b[0]>>1) ^ -int64(b[0]&1), 1
	}
	return binary.Varint(b)
}

// setLogAppendTime rewrites a validated batch for a topic with
// message.timestamp.type=LogAppendTime: the timestamp-type bit and the max
// timestamp change and the CRC is recomputed. This is the only rewrite of
// producer bytes Floe does; readers take every record's timestamp from the
// batch's max timestamp when the bit is set.
func setLogAppendTime(b []byte, now int64) {
	attrs := binary.BigEndian.Uint16(b[batchAttrsOffset:]) | attrLogAppendTime
	binary.BigEndian.PutUint16(b[batchAttrsOffset:], attrs)
	binary.BigEndian.PutUint64(b[batchMaxTSOffset:], uint64(now))
	binary.BigEndian.PutUint32(b[batchCRCOffset:], crc32.Checksum(b[batchAttrsOffset:], castagnoli))
}

// errBadStoredBatch reports stored bytes that do not parse as batches: a
// bug or a corrupt object, never client input.
var errBadStoredBatch = errors.New("agent: stored record batch is malformed")

// forEachStoredBatch walks the batches of one catalog row: base is the row's
// base offset, and each batch spans lastOffsetDelta+1 offsets. fn gets the
// batch bytes, its base offset and header; returning false stops the walk.
func forEachStoredBatch(b []byte, base int64, fn func(batch []byte, baseOffset int64, h batchHeader) bool) error {
	off := base
	for len(b) > 0 {
		h, err := readBatchHeader(b)
		if err != nil {
			return fmt.Errorf("%w at offset %d: %v", errBadStoredBatch, off, err)
		}
		if h.LastOffsetDelta < 0 {
			return fmt.Errorf("%w at offset %d: negative last offset delta", errBadStoredBatch, off)
		}
		if !fn(b[:h.Length], off, h) {
			return nil
		}
		off += int64(h.LastOffsetDelta) + 1
		b = b[h.Length:]
	}
	return nil
}

// patchBaseOffset sets the base offset of a batch copy; it sits outside
// the CRC, so the batch stays valid.
func patchBaseOffset(batch []byte, base int64) {
	binary.BigEndian.PutUint64(batch, uint64(base))
}
