package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/floebroker/floe/catalog"
)

// BenchmarkBatches: the catalog side of a catch-up fetch, one Batches call
// per partition read, on a file catalog holding 200 flushed segments of 16
// partitions each.
func BenchmarkBatches(b *testing.B) {
	ctx := context.Background()
	c := openTest(b, filepath.Join(b.TempDir(), "catalog.db"), catalog.Options{})
	topic, err := c.CreateTopic(ctx, catalog.TopicSpec{Name: "bench", Partitions: 16})
	if err != nil {
		b.Fatal(err)
	}
	const segments, span = 200, 100
	for s := range segments {
		seg := catalog.Segment{Key: fmt.Sprintf("seg-%d", s)}
		for p := range int32(16) {
			seg.Batches = append(seg.Batches, catalog.BatchRef{
				TopicPartition: catalog.TopicPartition{TopicID: topic.ID, Partition: p},
				ByteOffset:     int64(p) * 100_000, ByteLength: 100_000, OffsetSpan: span, Records: span,
				ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
			})
		}
		seg.Size = 16 * 100_000
		if _, err := c.CommitSegment(ctx, seg); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		tp := catalog.TopicPartition{TopicID: topic.ID, Partition: int32(i % 16)}
		rows, err := c.Batches(ctx, tp, int64(i%segments)*span, 6<<20)
		if err != nil || len(rows) == 0 {
			b.Fatalf("Batches: %d rows, %v", len(rows), err)
		}
	}
}
