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

// BenchmarkWriterManyPartitions lays out one flush of a producer spreading
// small batches (6 KiB, about six 1 KiB records) over 2,000 partitions of
// one topic, as the flush does: Order, then Finish.
func BenchmarkWriterManyPartitions(b *testing.B) {
	batch := make([]byte, 6<<10)
	const batches = 2000
	b.SetBytes(batches * int64(len(batch)))
	for b.Loop() {
		w := NewWriter(Header{AgentID: "a", Created: time.Unix(1, 0)})
		for i := range batches {
			w.Add(tp(1, int32(i*7%batches)), batch, BatchMeta{Records: 6, ProducerID: 1})
		}
		w.Order()
		w.Finish()
	}
}

// BenchmarkOrder sorts one flush's 2,000 batches (six requests' worth
// over 2,000 partitions, so partitions repeat and interleave).
func BenchmarkOrder(b *testing.B) {
	w := NewWriter(Header{AgentID: "a", Created: time.Unix(1, 0)})
	for i := range 2000 {
		w.Add(tp(1, int32(i*7%333)), nil, BatchMeta{Records: 6, ProducerID: 1})
	}
	for b.Loop() {
		w.order = nil
		w.Order()
	}
}
