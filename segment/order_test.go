package segment

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// TestOrderIsStableSortByPartition checks Order against its definition: a
// stable sort of the Add indexes by (TopicID bytes, Partition), on batches
// whose topic ids differ in every byte position and whose partitions
// repeat and interleave.
func TestOrderIsStableSortByPartition(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	w := NewWriter(Header{AgentID: "a", Created: time.Unix(1, 0)})
	var tps []catalog.TopicPartition
	for range 3000 {
		var id catalog.TopicID
		id[r.IntN(16)] = byte(r.IntN(3)) * 0x7f // 0x00, 0x7f, 0xfe: signed and unsigned orders differ
		tp := catalog.TopicPartition{TopicID: id, Partition: int32(r.IntN(5)) - 1}
		tps = append(tps, tp)
		w.Add(tp, nil, BatchMeta{})
	}
	want := make([]int, len(tps))
	for i := range want {
		want[i] = i
	}
	slices.SortStableFunc(want, func(a, b int) int {
		switch {
		case Less(tps[a], tps[b]):
			return -1
		case Less(tps[b], tps[a]):
			return 1
		}
		return 0
	})
	if got := w.Order(); !slices.Equal(got, want) {
		t.Fatalf("Order differs from a stable sort by topic partition")
	}
	w.Add(tps[0], nil, BatchMeta{})
	if got := w.Order(); len(got) != len(tps)+1 {
		t.Fatalf("Order after another Add has %d entries, want %d", len(got), len(tps)+1)
	}
}
