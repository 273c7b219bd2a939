// Package batchcodec decompresses the records of Kafka record batches
// from untrusted sources (producers, stored objects) within a fixed memory
// bound.
//
// Produce and fetch never decompress: batches are validated and stored as
// sent. Decompression happens only where records must be read, in a
// timestamp lookup and in log compaction, and there a hostile producer's
// compression bomb (a few KiB that inflate to gigabytes) must cost an
// error, not the process. franz-go's kgo.DefaultDecompressor bounds a
// batch at 2 GiB, four times an agent's memory budget, so Floe bounds it
// here.
package batchcodec

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

// MaxDecompressed bounds what one record batch may decompress to.
const MaxDecompressed = 64 << 20

// ErrTooLarge is Decompress's error for a batch that decompresses past
// MaxDecompressed.
var ErrTooLarge = errors.New("batchcodec: batch decompresses past the size bound")

var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(MaxDecompressed))
	if err != nil {
		return err
	}
	return d
}}

// Decompress returns the record bytes of a batch body compressed with
// codec (0 none, 1 gzip, 2 snappy raw or xerial-framed, 3 lz4, 4 zstd),
// failing with ErrTooLarge rather than decompressing past
// MaxDecompressed.
func Decompress(codec int8, src []byte) ([]byte, error) {
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
			return nil, ErrTooLarge
		}
		return out, err
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}

func readBounded(r io.Reader) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, MaxDecompressed+1))
	if err != nil {
		return nil, err
	}
	if len(out) > MaxDecompressed {
		return nil, ErrTooLarge
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
	if len(dst)+n > MaxDecompressed {
		return nil, ErrTooLarge
	}
	dec, err := s2.Decode(nil, block)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	return append(dst, dec...), nil
}
