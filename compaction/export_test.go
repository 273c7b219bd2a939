package compaction

import (
	"bytes"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// SetMergeRowsPerPass makes merge passes read pages of n rows for the
// rest of t.
func SetMergeRowsPerPass(t testing.TB, n int) {
	old := mergeRowsPerPass
	mergeRowsPerPass = n
	t.Cleanup(func() { mergeRowsPerPass = old })
}

// SetMaxRowBytes caps the rows compaction joins at n bytes for the rest
// of t.
func SetMaxRowBytes(t testing.TB, n int64) {
	old := maxRowBytes
	maxRowBytes = n
	t.Cleanup(func() { maxRowBytes = old })
}

// SlowCompressors makes every batch log compaction re-encodes take d
// longer, for the rest of t: it calls advance(d), which moves the test's
// clock on, rather than sleeping, so the test depends on no real time.
func SlowCompressors(t testing.TB, d time.Duration, advance func(time.Duration)) {
	old := compressors
	slow := map[kgo.CompressionCodecType]kgo.Compressor{}
	for codec, c := range old() {
		slow[codec] = slowCompressor{c, d, advance}
	}
	compressors = func() map[kgo.CompressionCodecType]kgo.Compressor { return slow }
	t.Cleanup(func() { compressors = old })
}

type slowCompressor struct {
	kgo.Compressor
	d       time.Duration
	advance func(time.Duration)
}

func (s slowCompressor) Compress(dst *bytes.Buffer, src []byte, flags ...kgo.CompressFlag) ([]byte, kgo.CompressionCodecType) {
	s.advance(s.d)
	return s.Compressor.Compress(dst, src, flags...)
}
