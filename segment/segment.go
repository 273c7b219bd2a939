// Package segment owns the format of Floe's segment objects: the one object
// a flush (or a compaction) writes to the bucket, holding the record batches
// of many partitions plus an index of the partition runs inside it.
//
// Guarantees:
//   - Writer output is a pure function of the Header and the Add calls, so a
//     buffer replayed from the WAL produces the same bytes as the original
//     flush and may be re-put under the same key.
//   - Record batches are stored byte for byte as they were added; a run's
//     batches can be served to a fetcher by slicing the object.
//   - The byte offsets of batches do not depend on the agent id (it lives in
//     the index, not in the front header), so two writers that differ only in
//     agent id place every batch at the same offset.
//   - A reader needs at most two range reads: the tail (footer and index,
//     usually one read, see ReadIndex), then the run's bytes.
//   - DecodeIndex and ReadIndex never panic on hostile bytes and never
//     allocate more than the input length justifies; every inconsistency is a
//     *CorruptError (errors.Is(err, ErrCorrupt)).
//
// # Format, version 1
//
// All integers are little-endian. Offsets are from the start of the object.
//
//	header (HeaderSize = 32 bytes)
//	  0   [8]byte  magic "FLOESEG1"
//	  8   uint16   format version (1)
//	  10  uint16   flags (0)
//	  12  uint32   header length (32; the body starts here)
//	  16  int64    creation time, Unix nanoseconds
//	  24  uint32   reserved (0)
//	  28  uint32   CRC-32C (Castagnoli) of bytes 0..28
//	body
//	  for each (topic id, partition) ascending (topic id bytewise, then
//	  partition), that partition's record batches back to back, exactly as
//	  added (Kafka RecordBatch v2), in Add order
//	index (at the footer's index offset, directly before the footer)
//	  0   int64    creation time, Unix nanoseconds (same as the header)
//	  8   uint16   agent id length n
//	  10  [n]byte  agent id (UTF-8)
//	  ..  uint32   run count r
//	  ..  r runs of RunSize = 80 bytes each, in body order:
//	        0   [16]byte topic id
//	        16  int32    partition
//	        20  int64    byte offset of the run's first batch
//	        28  int64    byte length of the run
//	        36  int32    batch count
//	        40  int64    record count
//	        48  int64    first timestamp (smallest batch first timestamp)
//	        56  int64    last timestamp (largest batch max timestamp)
//	        64  int64    min producer id (-1 if no idempotent batch)
//	        72  int64    max producer id (-1 if no idempotent batch)
//	footer (FooterSize = 32 bytes, the last bytes of the object)
//	  0   uint64   index offset
//	  8   uint64   index length
//	  16  uint32   CRC-32C (Castagnoli) of the index bytes
//	  20  uint16   format version (1)
//	  22  uint16   reserved (0)
//	  24  [8]byte  magic "FLOESEG1"
//
// The index repeats the creation time and carries the agent id so that a
// reader of the tail alone (ReadIndex) has the whole Header.
package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/floebroker/floe/catalog"
)

// Format constants.
const (
	Magic      = "FLOESEG1"
	Version    = 1
	HeaderSize = 32
	FooterSize = 32
	RunSize    = 80

	// indexFixed is the index size without agent id and runs.
	indexFixed = 8 + 2 + 4
	// MaxAgentIDLen is the longest agent id the format can carry.
	MaxAgentIDLen = 1<<16 - 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt reports a segment object that does not decode. Every decoding
// error is a *CorruptError that matches ErrCorrupt with errors.Is.
var ErrCorrupt = errors.New("segment: corrupt object")

// CorruptError says where and why a segment object failed to decode.
type CorruptError struct {
	Key    string // object key, if known
	Offset int64  // byte offset in the object where the problem was found
	Reason string
}

func (e *CorruptError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("segment: corrupt object at offset %d: %s", e.Offset, e.Reason)
	}
	return fmt.Sprintf("segment: corrupt object %s at offset %d: %s", e.Key, e.Offset, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

func corrupt(off int64, format string, args ...any) error {
	return &CorruptError{Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// Header describes the object as a whole.
type Header struct {
	AgentID string
	Created time.Time
}

// BatchMeta is what the index needs to know about one added batch; the
// caller has parsed it from the batch header once.
type BatchMeta struct {
	Records        int32
	FirstTimestamp int64
	MaxTimestamp   int64
	// ProducerID is < 0 for a non-idempotent batch.
	ProducerID int64
}

// Placement is where one added batch landed in the object.
type Placement struct {
	catalog.TopicPartition
	ByteOffset int64
	ByteLength int64
}

// Run describes the contiguous bytes of one partition in the object.
type Run struct {
	catalog.TopicPartition
	ByteOffset     int64
	ByteLength     int64
	Batches        int32
	Records        int64
	FirstTimestamp int64
	LastTimestamp  int64
	// MinProducerID and MaxProducerID are -1 when the run holds no
	// idempotent batch.
	MinProducerID int64
	MaxProducerID int64
}

// Index is the decoded tail of an object.
type Index struct {
	Header Header
	Runs   []Run
}

// Less orders topic partitions as the body lays them out.
func Less(a, b catalog.TopicPartition) bool {
	if c := compareID(a.TopicID, b.TopicID); c != 0 {
		return c < 0
	}
	return a.Partition < b.Partition
}

func compareID(a, b catalog.TopicID) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

var le = binary.LittleEndian
