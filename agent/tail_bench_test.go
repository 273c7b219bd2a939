package agent

import (
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// BenchmarkTailAddOwn adds one commit of a batch per partition over 2,000
// partitions to the tail index, as OnCommitted does at 2,000 partitions.
func BenchmarkTailAddOwn(b *testing.B) {
	const parts = 2000
	ti := newTailIndex(time.Now)
	rows := make([]catalog.BatchRow, parts)
	for i := range rows {
		rows[i] = catalog.BatchRow{TopicPartition: catalog.TopicPartition{TopicID: [16]byte{1, 2, 3}, Partition: int32(i)}, ObjectKey: "v1/abcd/cluster/01J000000000000000000000.seg", ByteLength: 7000, Records: 7, ObjectSize: 16 << 20}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for i := range rows {
			rows[i].BaseOffset = int64(n) * 7
			rows[i].LastOffset = rows[i].BaseOffset + 6
			rows[i].CommitID = int64(n + 1)
		}
		ti.addOwn(rows)
		ti.skipOwn(int64(n))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*parts), "ns/row")
}
