package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/oklog/ulid/v2"
)

const (
	fileMagic      = "FLOEWAL1"
	fileVersion    = 1
	fileHeaderSize = 48
	frameHeader    = 8 // length + CRC
	entryFixed     = 59
	recordEntry    = 1
	// MaxBatchBytes is the largest batch an Entry may carry. It bounds what
	// a decoder believes of a length field.
	MaxBatchBytes = 256 << 20
	maxPayload    = entryFixed + MaxBatchBytes
)

var (
	le         = binary.LittleEndian
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

type fileHeader struct {
	seq     uint64
	created int64 // Unix nanoseconds
	id      ulid.ULID
}

func appendFileHeader(b []byte, h fileHeader) []byte {
	start := len(b)
	b = append(b, fileMagic...)
	b = le.AppendUint16(b, fileVersion)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint64(b, h.seq)
	b = le.AppendUint64(b, uint64(h.created))
	b = append(b, h.id[:]...)
	return le.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

func (h fileHeader) createdTime() time.Time { return time.Unix(0, h.created).UTC() }

// decodeFileHeader decodes the first fileHeaderSize bytes of b.
func decodeFileHeader(b []byte) (fileHeader, error) {
	if len(b) < fileHeaderSize {
		return fileHeader{}, &CorruptionError{Offset: int64(len(b)), Reason: "file header incomplete"}
	}
	if string(b[:8]) != fileMagic {
		return fileHeader{}, &CorruptionError{Reason: fmt.Sprintf("bad magic %q", b[:8])}
	}
	if got, want := crc32.Checksum(b[:44], castagnoli), le.Uint32(b[44:48]); got != want {
		return fileHeader{}, &CorruptionError{Offset: 44, Reason: fmt.Sprintf("header CRC-32C %08x, stored %08x", got, want)}
	}
	if v := le.Uint16(b[8:10]); v != fileVersion {
		return fileHeader{}, &CorruptionError{Offset: 8, Reason: fmt.Sprintf("unsupported version %d", v)}
	}
	var h fileHeader
	h.seq = le.Uint64(b[12:20])
	h.created = int64(le.Uint64(b[20:28]))
	copy(h.id[:], b[28:44])
	return h, nil
}

// frameSize is the on-disk size of e's record.
func frameSize(e *Entry) int { return frameHeader + entryFixed + len(e.Batch) }

// appendEntry appends e's framed record to b.
func appendEntry(b []byte, e *Entry) []byte {
	start := len(b)
	b = le.AppendUint32(b, uint32(entryFixed+len(e.Batch)))
	b = le.AppendUint32(b, 0) // CRC, filled below
	p := len(b)
	b = append(b, recordEntry)
	b = append(b, e.TopicPartition.TopicID[:]...)
	b = le.AppendUint32(b, uint32(e.TopicPartition.Partition))
	b = le.AppendUint32(b, uint32(e.OffsetSpan))
	b = le.AppendUint32(b, uint32(e.Records))
	b = le.AppendUint64(b, uint64(e.FirstTimestamp))
	b = le.AppendUint64(b, uint64(e.MaxTimestamp))
	b = le.AppendUint64(b, uint64(e.ProducerID))
	b = le.AppendUint16(b, uint16(e.ProducerEpoch))
	b = le.AppendUint32(b, uint32(e.BaseSequence))
	b = append(b, e.Batch...)
	le.PutUint32(b[start+4:], crc32.Checksum(b[p:], castagnoli))
	return b
}

// decodeEntry decodes a payload whose CRC was checked. The entry's Batch
// aliases p.
func decodeEntry(p []byte) (Entry, error) {
	if len(p) < entryFixed {
		return Entry{}, fmt.Errorf("payload of %d bytes shorter than %d", len(p), entryFixed)
	}
	if p[0] != recordEntry {
		return Entry{}, fmt.Errorf("unknown record type %d", p[0])
	}
	var e Entry
	copy(e.TopicPartition.TopicID[:], p[1:17])
	e.TopicPartition.Partition = int32(le.Uint32(p[17:21]))
	e.OffsetSpan = int32(le.Uint32(p[21:25]))
	e.Records = int32(le.Uint32(p[25:29]))
	e.FirstTimestamp = int64(le.Uint64(p[29:37]))
	e.MaxTimestamp = int64(le.Uint64(p[37:45]))
	e.ProducerID = int64(le.Uint64(p[45:53]))
	e.ProducerEpoch = int16(le.Uint16(p[53:55]))
	e.BaseSequence = int32(le.Uint32(p[55:59]))
	e.Batch = p[entryFixed:len(p):len(p)]
	return e, nil
}

// decodeFile decodes a whole buffer file. For an unsealed file (sealed ==
// false) a torn tail is not an error: valid is the length of the intact
// prefix and the caller truncates the file to it. Other damage is a
// *CorruptionError (without File set) at the first bad record, returned
// with the entries before it and valid at its offset: in a sealed file,
// which was fsynced whole before its rename, it is fatal, while replay
// cuts an unsealed file there too (but logs it louder than a torn tail).
// Entries alias data.
func decodeFile(data []byte, sealed bool) (h fileHeader, entries []Entry, valid int64, err error) {
	h, err = decodeFileHeader(data)
	if err != nil {
		return h, nil, 0, err
	}
	off := fileHeaderSize
	for off < len(data) {
		torn := func(reason string) error {
			if sealed {
				return &CorruptionError{Offset: int64(off), Reason: reason + " in a sealed file"}
			}
			return nil
		}
		rest := data[off:]
		if len(rest) < frameHeader {
			return h, entries, int64(off), torn("incomplete record header")
		}
		n := le.Uint32(rest[0:4])
		if n < entryFixed || n > maxPayload {
			if zeroSuffix(rest) < 4 {
				// A crash can leave the file longer than what was written
				// into it; the unwritten part reads as zeros. It starts
				// at a page boundary, which may fall inside this length.
				return h, entries, int64(off), torn("zero-filled tail")
			}
			return h, entries, int64(off), &CorruptionError{Offset: int64(off), Reason: fmt.Sprintf("record length %d outside [%d, %d]", n, entryFixed, maxPayload)}
		}
		if int64(len(rest)) < frameHeader+int64(n) {
			return h, entries, int64(off), torn(fmt.Sprintf("record of %d bytes runs past the end", n))
		}
		p := rest[frameHeader : frameHeader+n]
		if got, want := crc32.Checksum(p, castagnoli), le.Uint32(rest[4:8]); got != want {
			if allZero(rest[frameHeader+n:]) {
				// The last record, cut short by the end of the file or
				// by the zeros of a never-written tail.
				return h, entries, int64(off), torn("bad CRC in last record")
			}
			return h, entries, int64(off), &CorruptionError{Offset: int64(off), Reason: fmt.Sprintf("record CRC-32C %08x, stored %08x", got, want)}
		}
		e, err := decodeEntry(p)
		if err != nil {
			return h, entries, int64(off), &CorruptionError{Offset: int64(off), Reason: err.Error()}
		}
		entries = append(entries, e)
		off += frameHeader + int(n)
	}
	return h, entries, int64(off), nil
}

// zeroSuffix returns where the run of zero bytes ending b starts
// (len(b) if b does not end in a zero).
func zeroSuffix(b []byte) int {
	i := len(b)
	for i > 0 && b[i-1] == 0 {
		i--
	}
	return i
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
