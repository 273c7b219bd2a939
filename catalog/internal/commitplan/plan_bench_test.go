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
		Segment:    benchSegment(n),
		Partitions: make(map[catalog.TopicPartition]Partition, n),
		States:     make(map[ProducerKey]ProducerState, n),
		Epochs:     map[int64]int16{7: 0},
	}
	for _, b := range in.Segment.Batches {
		in.Partitions[b.TopicPartition] = Partition{NextOffset: RelBase}
		in.States[ProducerKey{7, b.TopicPartition}] = benchState
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
	seg := benchSegment(n)
	l := NewLayout(seg)
	in := NewLayoutInput(seg, l)
	for k := range l.Keys {
		in.States[k] = benchState
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
	seg := benchSegment(n)
	b.ReportAllocs()
	for b.Loop() {
		if l := NewLayout(seg); len(l.Keys) != n {
			b.Fatal(len(l.Keys))
		}
	}
}

// benchSegment is one idempotent batch (producer 7, sequence 50) on each
// of n partitions of one topic, the commit of an agent leading them.
func benchSegment(n int32) catalog.Segment {
	seg := catalog.Segment{Key: "k", Size: int64(n) * 100}
	for p := range n {
		tp := catalog.TopicPartition{TopicID: catalog.TopicID{1}, Partition: p}
		seg.Batches = append(seg.Batches, idem(ref(tp, int64(p)*100, 100, 10), 7, 0, 50))
	}
	return seg
}

// benchState is producer 7's stored state before benchSegment: five
// batches, the last ending at sequence 49.
var benchState = ProducerState{Entries: []SeqEntry{{0, 9, 0}, {10, 19, 10}, {20, 29, 20}, {30, 39, 30}, {40, 49, 40}}}
