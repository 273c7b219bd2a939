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

// BenchmarkBuildLayout is BenchmarkBuild's commit as catalog/postgres
// plans it: laid out once, by position, with no maps.
func BenchmarkBuildLayout(b *testing.B) {
	const n = 2000
	seg := catalog.Segment{Key: "k", Size: n * 100}
	for p := range int32(n) {
		tp := catalog.TopicPartition{TopicID: catalog.TopicID{1}, Partition: p}
		seg.Batches = append(seg.Batches, idem(ref(tp, int64(p)*100, 100, 10), 7, 0, 50))
	}
	l := NewLayout(seg)
	in := NewLayoutInput(seg, l)
	for k := range l.Keys {
		in.States[k] = ProducerState{Entries: []SeqEntry{{0, 9, 0}, {10, 19, 10}, {20, 29, 20}, {30, 39, 30}, {40, 49, 40}}}
		in.HasState[k] = true
	}
	for i := range l.TPs {
		in.Partitions[i], in.Exists[i] = Partition{NextOffset: RelBase}, true
	}
	in.Epochs[0], in.KnownEpoch[0] = 0, true
	b.ReportAllocs()
	for b.Loop() {
		plan := BuildLayout(in)
		if len(plan.Rows) != n || count(plan.Changed) != n {
			b.Fatalf("%d rows, %d states", len(plan.Rows), count(plan.Changed))
		}
	}
}

// BenchmarkNewLayout lays out BenchmarkBuild's commit.
func BenchmarkNewLayout(b *testing.B) {
	const n = 2000
	seg := catalog.Segment{Key: "k", Size: n * 100}
	for p := range int32(n) {
		tp := catalog.TopicPartition{TopicID: catalog.TopicID{1}, Partition: p}
		seg.Batches = append(seg.Batches, idem(ref(tp, int64(p)*100, 100, 10), 7, 0, 50))
	}
	b.ReportAllocs()
	for b.Loop() {
		if l := NewLayout(seg); len(l.Keys) != n {
			b.Fatal(len(l.Keys))
		}
	}
}
