package segment

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"time"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore"
)

// TailGuess is how many bytes ReadIndex reads from the end of an object in
// its first range read. An index of up to (TailGuess-FooterSize-indexFixed)/
// RunSize runs (about 800 partitions) arrives in that one read.
const TailGuess = 64 << 10

// footer is the decoded fixed-size footer.
type footer struct {
	indexOff int64
	indexLen int64
	indexCRC uint32
}

// decodeFooter checks the footer at the end of tail (the last len(tail)
// bytes of an object of size bytes) and that the index it points to fits
// the object.
func decodeFooter(tail []byte, size int64) (footer, error) {
	if size < HeaderSize+FooterSize+indexFixed {
		return footer{}, corrupt(0, "object of %d bytes is smaller than an empty segment", size)
	}
	if int64(len(tail)) > size {
		return footer{}, corrupt(0, "tail of %d bytes is longer than the object (%d bytes)", len(tail), size)
	}
	if len(tail) < FooterSize {
		return footer{}, corrupt(size-int64(len(tail)), "tail of %d bytes is shorter than the footer", len(tail))
	}
	footOff := size - FooterSize
	f := tail[len(tail)-FooterSize:]
	if string(f[24:32]) != Magic {
		return footer{}, corrupt(footOff+24, "bad footer magic %q", f[24:32])
	}
	if v := le.Uint16(f[20:22]); v != Version {
		return footer{}, corrupt(footOff+20, "unsupported format version %d", v)
	}
	ioff, ilen := le.Uint64(f[0:8]), le.Uint64(f[8:16])
	// Compare in uint64 so hostile values cannot overflow into range.
	if ioff < HeaderSize || ioff > uint64(footOff) {
		return footer{}, corrupt(footOff, "index offset %d outside body end range [%d, %d]", ioff, HeaderSize, footOff)
	}
	if ilen != uint64(footOff)-ioff {
		return footer{}, corrupt(footOff+8, "index length %d does not end at the footer (index offset %d, footer at %d)", ilen, ioff, footOff)
	}
	if ilen < indexFixed {
		return footer{}, corrupt(footOff+8, "index length %d shorter than %d", ilen, indexFixed)
	}
	return footer{indexOff: int64(ioff), indexLen: int64(ilen), indexCRC: le.Uint32(f[16:20])}, nil
}

// DecodeIndex decodes the footer and index of an object of size bytes from
// tail, its last len(tail) bytes. tail must hold the whole index; ReadIndex
// shows how to get it. The returned Index does not reference tail.
func DecodeIndex(tail []byte, size int64) (*Index, error) {
	f, err := decodeFooter(tail, size)
	if err != nil {
		return nil, err
	}
	if f.indexLen > int64(len(tail)-FooterSize) {
		return nil, corrupt(f.indexOff, "index of %d bytes is not in the %d-byte tail", f.indexLen, len(tail))
	}
	start := int64(len(tail)) - FooterSize - f.indexLen
	idx := tail[start : start+f.indexLen]
	if got := crc32.Checksum(idx, castagnoli); got != f.indexCRC {
		return nil, corrupt(f.indexOff, "index CRC-32C %08x, footer says %08x", got, f.indexCRC)
	}

	// at converts a position in idx to an object offset for errors.
	at := func(p int) int64 { return f.indexOff + int64(p) }
	created := int64(le.Uint64(idx[0:8]))
	n := int(le.Uint16(idx[8:10]))
	p := 10
	if len(idx)-p < n+4 {
		return nil, corrupt(at(8), "agent id of %d bytes overruns the index", n)
	}
	agent := string(idx[p : p+n])
	p += n
	count := int64(le.Uint32(idx[p : p+4]))
	p += 4
	// The count must match the bytes present exactly, which also bounds the
	// allocation below by the input length.
	if rem := int64(len(idx) - p); count*RunSize != rem {
		return nil, corrupt(at(p-4), "run count %d needs %d bytes, index has %d", count, count*RunSize, rem)
	}
	out := &Index{
		Header: Header{AgentID: agent, Created: time.Unix(0, created).UTC()},
		Runs:   make([]Run, count),
	}
	end := int64(HeaderSize) // end of the previous run
	for i := range out.Runs {
		b := idx[p : p+RunSize]
		r := &out.Runs[i]
		copy(r.TopicID[:], b[0:16])
		r.Partition = int32(le.Uint32(b[16:20]))
		r.ByteOffset = int64(le.Uint64(b[20:28]))
		r.ByteLength = int64(le.Uint64(b[28:36]))
		r.Batches = int32(le.Uint32(b[36:40]))
		r.Records = int64(le.Uint64(b[40:48]))
		r.FirstTimestamp = int64(le.Uint64(b[48:56]))
		r.LastTimestamp = int64(le.Uint64(b[56:64]))
		r.MinProducerID = int64(le.Uint64(b[64:72]))
		r.MaxProducerID = int64(le.Uint64(b[72:80]))
		if err := checkRun(r, end, f.indexOff); err != nil {
			return nil, corrupt(at(p), "run %d: %v", i, err)
		}
		if i > 0 && !Less(out.Runs[i-1].TopicPartition, r.TopicPartition) {
			return nil, corrupt(at(p), "run %d: partitions not strictly ascending", i)
		}
		end = r.ByteOffset + r.ByteLength
		p += RunSize
	}
	return out, nil
}

// checkRun validates one run against the body bounds [prevEnd, bodyEnd).
func checkRun(r *Run, prevEnd, bodyEnd int64) error {
	switch {
	case r.Partition < 0:
		return fmt.Errorf("negative partition %d", r.Partition)
	case r.ByteOffset < prevEnd:
		return fmt.Errorf("byte offset %d overlaps the previous run or header (ends at %d)", r.ByteOffset, prevEnd)
	case r.ByteLength <= 0 || r.ByteLength > bodyEnd-r.ByteOffset:
		return fmt.Errorf("byte range %d+%d outside body ending at %d", r.ByteOffset, r.ByteLength, bodyEnd)
	case r.Batches <= 0 || int64(r.Batches) > r.ByteLength:
		return fmt.Errorf("batch count %d invalid for %d bytes", r.Batches, r.ByteLength)
	case r.Records < 0:
		return fmt.Errorf("negative record count %d", r.Records)
	case (r.MinProducerID < 0) != (r.MaxProducerID < 0):
		return fmt.Errorf("producer id range [%d, %d] half empty", r.MinProducerID, r.MaxProducerID)
	case r.MinProducerID < -1 || r.MinProducerID > r.MaxProducerID:
		return fmt.Errorf("producer id range [%d, %d] invalid", r.MinProducerID, r.MaxProducerID)
	}
	return nil
}

// ReadIndex reads and decodes the index of the object key, which is size
// bytes long (from the catalog or Stat). It reads min(size, TailGuess) bytes
// from the end in one range read, and reads again only when the index is
// larger than that. Decoding errors are *CorruptError with Key set.
func ReadIndex(ctx context.Context, r objstore.BucketReader, key string, size int64) (*Index, error) {
	if size < HeaderSize+FooterSize+indexFixed {
		return nil, &CorruptError{Key: key, Reason: fmt.Sprintf("object of %d bytes is smaller than an empty segment", size)}
	}
	n := min(size, TailGuess)
	tail, err := readRange(ctx, r, key, size-n, n)
	if err != nil {
		return nil, err
	}
	f, err := decodeFooter(tail, size)
	if err != nil {
		return nil, withKey(err, key)
	}
	if need := f.indexLen + FooterSize; need > int64(len(tail)) {
		// need <= size: decodeFooter checked that the index lies inside.
		if tail, err = readRange(ctx, r, key, size-need, need); err != nil {
			return nil, err
		}
	}
	idx, err := DecodeIndex(tail, size)
	if err != nil {
		return nil, withKey(err, key)
	}
	return idx, nil
}

func withKey(err error, key string) error {
	var ce *CorruptError
	if errors.As(err, &ce) {
		c := *ce
		c.Key = key
		return &c
	}
	return err
}

// readRange reads exactly n bytes at off. A short object is corruption: the
// caller's size says it is longer.
func readRange(ctx context.Context, r objstore.BucketReader, key string, off, n int64) ([]byte, error) {
	rc, err := r.GetRange(ctx, key, off, n)
	if err != nil {
		return nil, fmt.Errorf("segment: read index of %s: %w", key, err)
	}
	defer rc.Close()
	buf := make([]byte, n)
	if _, err := io.ReadFull(rc, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, &CorruptError{Key: key, Offset: off, Reason: fmt.Sprintf("object shorter than its size %d", off+n)}
		}
		return nil, fmt.Errorf("segment: read index of %s: %w", key, err)
	}
	return buf, nil
}

// Run returns the run of tp, if the object holds one. Runs are sorted, so
// this is a binary search.
func (x *Index) Run(tp catalog.TopicPartition) (Run, bool) {
	i, ok := slices.BinarySearchFunc(x.Runs, tp, func(r Run, tp catalog.TopicPartition) int {
		switch {
		case Less(r.TopicPartition, tp):
			return -1
		case r.TopicPartition == tp:
			return 0
		}
		return 1
	})
	if !ok {
		return Run{}, false
	}
	return x.Runs[i], true
}
