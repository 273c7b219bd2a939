package segment

import (
	"bytes"
	"context"
	"hash/crc32"
	"testing"
	"time"
)

func crc32Index(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// FuzzDecodeIndex feeds hostile tails to DecodeIndex and ReadIndex: they
// must not panic, must allocate no more than the input justifies (runs are
// bounded by the index bytes), and whatever decodes must describe runs that
// lie inside the object.
func FuzzDecodeIndex(f *testing.F) {
	_, obj, _ := sample()
	f.Add(obj, int64(len(obj)), true)
	empty, _ := NewWriter(Header{Created: time.Unix(0, 0)}).Finish()
	f.Add(empty, int64(len(empty)), false)
	for _, tc := range corruptions() {
		_, o, _ := sample()
		o = tc.edit(o)
		f.Add(o, int64(len(o)), true)
	}
	// Hostile lengths and counts with a valid CRC, so they reach the parser.
	_, o, _ := sample()
	ioff := int(le.Uint64(o[len(o)-FooterSize:]))
	le.PutUint32(o[ioff+indexFixed+len("agent-1")-4:], 0xffffffff)
	f.Add(resealed(o), int64(len(o)), true)
	_, o, _ = sample()
	le.PutUint16(o[ioff+8:], 0xffff)
	f.Add(resealed(o), int64(len(o)), false)
	f.Add([]byte(Magic), int64(1<<62), false)

	f.Fuzz(func(t *testing.T, tail []byte, size int64, resealIndex bool) {
		if resealIndex && len(tail) >= FooterSize {
			// Give mutated indexes a correct CRC so the parser is exercised.
			ioff := le.Uint64(tail[len(tail)-FooterSize:])
			if ioff < uint64(len(tail)-FooterSize) {
				le.PutUint32(tail[len(tail)-FooterSize+16:], crc32Index(tail[ioff:len(tail)-FooterSize]))
			}
		}
		idx, err := DecodeIndex(tail, size)
		if err != nil {
			return
		}
		if len(idx.Runs)*RunSize > len(tail) {
			t.Fatalf("%d runs from %d bytes", len(idx.Runs), len(tail))
		}
		for _, r := range idx.Runs {
			if r.ByteOffset < HeaderSize || r.ByteOffset+r.ByteLength > size-FooterSize {
				t.Fatalf("run %+v outside object of %d bytes", r, size)
			}
		}
		// A tail that decodes as a whole object must read back the same.
		if size == int64(len(tail)) {
			b := &countingBucket{objs: map[string][]byte{"k": bytes.Clone(tail)}}
			got, err := ReadIndex(context.Background(), b, "k", size)
			if err != nil || len(got.Runs) != len(idx.Runs) {
				t.Fatalf("ReadIndex disagrees: %v", err)
			}
			if b.ranges > 2 {
				t.Fatalf("%d range reads", b.ranges)
			}
		}
	})
}
