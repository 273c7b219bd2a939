package floetest

import (
	"encoding/binary"
	"hash/crc32"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// BatchSpec describes a record batch for Batch.
type BatchSpec struct {
	// Records is the record count (at least 1). Record i has key "k<i>",
	// value Value (or "v<i>") and timestamp FirstTimestamp+i.
	Records        int
	FirstTimestamp int64
	Value          []byte
	// ProducerID < 0 (or 0 with Idempotent false) makes a non-idempotent
	// batch.
	Idempotent    bool
	ProducerID    int64
	ProducerEpoch int16
	BaseSequence  int32
	// Magic overrides the magic byte (2) after encoding.
	Magic int8
	// NullKeys lists records (by index) written without a key.
	NullKeys []int
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Batch encodes an uncompressed Kafka v2 record batch with a correct CRC.
func Batch(s BatchSpec) []byte {
	n := max(s.Records, 1)
	var recs []byte
	for i := 0; i < n; i++ {
		v := s.Value
		if v == nil {
			v = []byte("v" + strconv.Itoa(i))
		}
		r := kmsg.Record{TimestampDelta64: int64(i), OffsetDelta: int32(i), Key: []byte("k" + strconv.Itoa(i)), Value: v}
		if slices.Contains(s.NullKeys, i) {
			r.Key = nil
		}
		body := r.AppendTo(nil)[1:] // AppendTo writes Length (0, one byte) first
		recs = binary.AppendVarint(recs, int64(len(body)))
		recs = append(recs, body...)
	}
	pid, epoch, seq := int64(-1), int16(-1), int32(-1)
	if s.Idempotent {
		pid, epoch, seq = s.ProducerID, s.ProducerEpoch, s.BaseSequence
	}
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		LastOffsetDelta:      int32(n - 1),
		FirstTimestamp:       s.FirstTimestamp,
		MaxTimestamp:         s.FirstTimestamp + int64(n-1),
		ProducerID:           pid,
		ProducerEpoch:        epoch,
		FirstSequence:        seq,
		NumRecords:           int32(n),
		Records:              recs,
	}
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	if s.Magic != 0 {
		raw[16] = byte(s.Magic)
	}
	return FixCRC(raw)
}

// FixCRC recomputes a v2 batch's CRC-32C (over attributes..end).
func FixCRC(b []byte) []byte {
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}
