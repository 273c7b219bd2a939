package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// BenchmarkTailAddOwn adds one commit over 2,000 partitions to the tail
// index, as OnCommitted does at 2,000 partitions: one row per partition,
// or 2,400 rows (a fifth of the partitions with two, in object order), what
// an agent's commit holds in tests/fleet's BenchmarkFleetPartitions.
func BenchmarkTailAddOwn(b *testing.B) {
	const parts = 2000
	for _, nrows := range []int{parts, 2400} {
		b.Run(fmt.Sprintf("rows=%d", nrows), func(b *testing.B) {
			ti := newTailIndex(time.Now)
			rows := make([]catalog.BatchRow, nrows)
			for i := range rows {
				rows[i] = catalog.BatchRow{TopicPartition: catalog.TopicPartition{TopicID: [16]byte{1, 2, 3}, Partition: int32(i * parts / nrows)}, ObjectKey: "v1/abcd/cluster/01J000000000000000000000.seg", ByteLength: 7000, Records: 7, ObjectSize: 16 << 20}
			}
			next := make([]int64, parts)
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				for i := range rows {
					r := &rows[i]
					r.BaseOffset = next[r.Partition]
					r.LastOffset = r.BaseOffset + 6
					next[r.Partition] += 7
					r.CommitID = int64(n + 1)
				}
				ti.addOwn(rows)
				ti.skipOwn(int64(n))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*nrows), "ns/row")
		})
	}
}
