package agent

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// TestTailIndexEnd: whatever adds, trims, forgets and log start moves a
// partition sees, its kept end is its last row's, and byTopic finds
// exactly the partitions parts holds.
func TestTailIndexEnd(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ti := newTailIndex(time.Now)
	topics := []catalog.TopicID{{1}, {2}}
	next := map[catalog.TopicPartition]int64{}
	for range 5000 {
		tp := catalog.TopicPartition{TopicID: topics[rng.IntN(2)], Partition: int32(rng.IntN(5))}
		switch op := rng.IntN(20); {
		case op == 0:
			ti.forget(tp)
		case op == 1:
			ti.storeOffsets(tp, catalog.PartitionOffsets{LogStart: next[tp] - rng.Int64N(40), HighWatermark: next[tp]}, time.Now())
		default:
			var rows []catalog.BatchRow
			for range 1 + rng.IntN(3) {
				switch rng.IntN(10) {
				case 0:
					next[tp] += 5 // a gap
				case 1:
					next[tp] = max(next[tp]-3, 0) // already known
				}
				span := 1 + rng.Int64N(3)
				rows = append(rows, catalog.BatchRow{TopicPartition: tp, BaseOffset: next[tp], LastOffset: next[tp] + span - 1, ByteLength: 1})
				next[tp] += span
			}
			if op == 2 {
				ti.add(rows)
			} else {
				ti.addOwn(rows)
			}
		}
		n := 0
		for _, ps := range ti.mu.byTopic {
			for _, p := range ps {
				if p != nil {
					n++
				}
			}
		}
		if n != len(ti.mu.parts) {
			t.Fatalf("byTopic holds %d partitions, parts %d", n, len(ti.mu.parts))
		}
		for tp, p := range ti.mu.parts {
			if ps := ti.mu.byTopic[tp.TopicID]; int(tp.Partition) >= len(ps) || ps[tp.Partition] != p {
				t.Fatalf("byTopic does not find %v", tp)
			}
			if k := len(p.rows); k > 0 && p.end != p.rows[k-1].LastOffset {
				t.Fatalf("%v: end %d, last row ends at %d", tp, p.end, p.rows[k-1].LastOffset)
			}
		}
	}
}
