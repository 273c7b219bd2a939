package batchcodec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestXerialSnappy(t *testing.T) {
	// Two xerial blocks, as the Java client frames snappy.
	raw := []byte("hello hello hello hello, xerial framed snappy data")
	var framed []byte
	framed = append(framed, xerialMagic...)
	framed = append(framed, 0, 0, 0, 1, 0, 0, 0, 1)
	for _, part := range [][]byte{raw[:10], raw[10:]} {
		enc := s2.EncodeSnappy(nil, part)
		framed = binary.BigEndian.AppendUint32(framed, uint32(len(enc)))
		framed = append(framed, enc...)
	}
	got, err := Decompress(2, framed)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("decoded %q, %v", got, err)
	}
}

var codecs = []struct {
	name  string
	codec kgo.CompressionCodec
	id    int8
}{
	{"gzip", kgo.GzipCompression(), 1},
	{"snappy", kgo.SnappyCompression(), 2},
	{"lz4", kgo.Lz4Compression(), 3},
	{"zstd", kgo.ZstdCompression(), 4},
}

func compress(t testing.TB, codec kgo.CompressionCodec, data []byte) []byte {
	t.Helper()
	c, err := kgo.DefaultCompressor(codec)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	out, _ := c.Compress(&buf, data)
	return append([]byte(nil), out...)
}

// Each codec round trips data up to the bound, and a compression bomb (a
// small body that inflates past MaxDecompressed) gets ErrTooLarge.
func TestDecompressBound(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			data := bytes.Repeat([]byte("floe "), 1000)
			got, err := Decompress(c.id, compress(t, c.codec, data))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("round trip: %d bytes, %v", len(got), err)
			}
			bomb := compress(t, c.codec, make([]byte, MaxDecompressed+1))
			t.Logf("%d bytes inflating to %d", len(bomb), MaxDecompressed+1)
			if got, err := Decompress(c.id, bomb); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("a %d-byte body inflating to %d: %d bytes, %v; want ErrTooLarge", len(bomb), MaxDecompressed+1, len(got), err)
			}
		})
	}
	if _, err := Decompress(5, []byte{1}); err == nil {
		t.Fatal("codec 5 decoded")
	}
}

// Decompress never panics on hostile bodies; what it returns is within
// the bound.
func FuzzDecompress(f *testing.F) {
	for _, c := range codecs {
		f.Add(c.id, compress(f, c.codec, []byte("some records, some records")))
	}
	f.Add(int8(2), append(append([]byte(nil), xerialMagic...), 0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff))
	f.Fuzz(func(t *testing.T, codec int8, src []byte) {
		out, err := Decompress(codec, src)
		if err == nil && len(out) > MaxDecompressed {
			t.Fatalf("%d bytes out, bound %d", len(out), MaxDecompressed)
		}
	})
}
