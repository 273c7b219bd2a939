package segment

import (
	"testing"
	"time"
)

// BenchmarkWriter lays out an 8 MiB object of 1 KiB batches over 64
// partitions, a typical full flush.
func BenchmarkWriter(b *testing.B) {
	batch := make([]byte, 1024)
	b.SetBytes(8 << 20)
	for b.Loop() {
		w := NewWriter(Header{AgentID: "a", Created: time.Unix(1, 0)})
		for i := range 8192 {
			w.Add(tp(byte(i%4), int32(i%16)), batch, BatchMeta{Records: 1, ProducerID: -1})
		}
		w.Finish()
	}
}
