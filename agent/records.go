package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Reading the records inside stored batches. Only ListOffsets by timestamp
// needs this (to find the first record at or after a timestamp inside a
// batch); the produce and fetch paths never decompress.

// maxDecompressedBatch bounds what one stored batch may decompress to, so a
// hostile producer's compression bomb cannot exhaust memory when a
// timestamp lookup reads its batch.
const maxDecompressedBatch = 64 << 20

var errDecompressTooLarge = errors.New("agent: batch decompresses past the size bound")

var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(maxDecompressedBatch))
	if err != nil {
		return err
	}
	return d
}}

// decompress returns the record bytes of a batch body compressed with
// codec (1 gzip, 2 snappy, 3 lz4, 4 zstd), at most maxDecompressedBatch.
func decompress(codec int8, src []byte) ([]byte, error) {
	switch codec {
	case 0:
		return src, nil
	case 1:
		zr, err := gzip.NewReader(bytes.NewReader(src))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return readBounded(zr)
	case 2:
		return decodeSnappy(src)
	case 3:
		return readBounded(lz4.NewReader(bytes.NewReader(src)))
	case 4:
		d := zstdDecoders.Get()
		dec, ok := d.(*zstd.Decoder)
		if !ok {
			return nil, fmt.Errorf("zstd: %v", d)
		}
		defer zstdDecoders.Put(dec)
		out, err := dec.DecodeAll(src, nil)
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
			return nil, errDecompressTooLarge
		}
		return out, err
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}

func readBounded(r io.Reader) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, maxDecompressedBatch+1))
	if err != nil {
		return nil, err
	}
	if len(out) > maxDecompressedBatch {
		return nil, errDecompressTooLarge
	}
	return out, nil
}

// xerialMagic starts snappy data framed the way the Java client's
// snappy-java stream frames it: the magic, two int32 versions, then
// blocks of a big-endian int32 length and a raw snappy block.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

func decodeSnappy(src []byte) ([]byte, error) {
	if !bytes.HasPrefix(src, xerialMagic) {
		return decodeSnappyBlock(nil, src)
	}
	if len(src) < 16 {
		return nil, errors.New("snappy: short xerial header")
	}
	src = src[16:]
	var out []byte
	for len(src) > 0 {
		if len(src) < 4 {
			return nil, errors.New("snappy: short xerial block length")
		}
		n := binary.BigEndian.Uint32(src)
		src = src[4:]
		if uint64(n) > uint64(len(src)) {
			return nil, errors.New("snappy: xerial block runs past the data")
		}
		var err error
		if out, err = decodeSnappyBlock(out, src[:n]); err != nil {
			return nil, err
		}
		src = src[n:]
	}
	return out, nil
}

// decodeSnappyBlock appends one decoded raw snappy block to dst, checking
// the length the block claims before allocating for it.
func decodeSnappyBlock(dst, block []byte) ([]byte, error) {
	n, err := s2.DecodedLen(block)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if len(dst)+n > maxDecompressedBatch {
		return nil, errDecompressTooLarge
	}
	dec, err := s2.Decode(nil, block)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	return append(dst, dec...), nil
}

// recordTimes calls fn with the offset delta and absolute timestamp of each
// record of a batch, in order, until fn returns false. For a LogAppendTime
// batch every record carries the batch's max timestamp. A record whose
// offset delta lies outside the batch's offset range (its producer wrote
// it so; records are not checked on produce) is skipped: its offset would
// be past the high watermark or another batch's.
func recordTimes(batch []byte, h batchHeader, fn func(offsetDelta int32, ts int64) bool) error {
	body, err := decompress(h.compression(), batch[batchHeaderSize:h.Length])
	if err != nil {
		return err
	}
	for i := int32(0); i < h.Records && len(body) > 0; i++ {
		l, n := binary.Varint(body)
		if n <= 0 || l < 0 || l > int64(len(body)-n) {
			return fmt.Errorf("%w: record %d length", errBadStoredBatch, i)
		}
		rec := body[n : n+int(l)]
		body = body[n+int(l):]
		if len(rec) < 1 {
			return fmt.Errorf("%w: record %d is empty", errBadStoredBatch, i)
		}
		rec = rec[1:] // attributes
		tsDelta, n1 := binary.Varint(rec)
		if n1 <= 0 {
			return fmt.Errorf("%w: record %d timestamp", errBadStoredBatch, i)
		}
		offDelta, n2 := binary.Varint(rec[n1:])
		if n2 <= 0 {
			return fmt.Errorf("%w: record %d offset delta", errBadStoredBatch, i)
		}
		if offDelta < 0 || offDelta > int64(h.LastOffsetDelta) {
			continue
		}
		ts := h.FirstTimestamp + tsDelta
		if h.logAppendTime() {
			ts = h.MaxTimestamp
		}
		if !fn(int32(offDelta), ts) {
			return nil
		}
	}
	return nil
}
