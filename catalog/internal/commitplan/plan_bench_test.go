package commitplan

import (
	"testing"

	"github.com/floebroker/floe/catalog"
)

// BenchmarkBuild plans one idempotent batch on each of 2,000 partitions,
// the commit of an agent leading 2,000 partitions.
func BenchmarkBuild(b *testing.B) {
	const n = 2000
	in := Input{
		Segment:    catalog.Segment{Key: "k", Size: n * 100},
		Partitions: make(map[catalog.TopicPartition]Partition, n),
		States:     make(map[ProducerKey]ProducerState, n),
		Epochs:     map[int64]int16{7: 0},
	}
	for p := range int32(n) {
		tp := catalog.TopicPartition{TopicID: catalog.TopicID{1}, Partition: p}
		in.Segment.Batches = append(in.Segment.Batches, idem(ref(tp, int64(p)*100, 100, 10), 7, 0, 50))
		in.Partitions[tp] = Partition{NextOffset: RelBase}
		in.States[ProducerKey{7, tp}] = ProducerState{Entries: []SeqEntry{{0, 9, 0}, {10, 19, 10}, {20, 29, 20}, {30, 39, 30}, {40, 49, 40}}}
	}
	b.ReportAllocs()
	for b.Loop() {
		plan := Build(in)
		if len(plan.Rows) != n || len(plan.States) != n {
			b.Fatalf("%d rows, %d states", len(plan.Rows), len(plan.States))
		}
	}
}
