package agent

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/internal/testenv"
)

// fetchParts is a fetch of n distinct known topics of two partitions
// each, the ids in a shuffled order, plus an unknown topic.
func fetchParts(n int) [][]fetchPart {
	parts := make([][]fetchPart, 0, n+1)
	for i := range n {
		var id catalog.TopicID
		binary.BigEndian.PutUint64(id[8:], uint64(i*7919%n)) // a permutation: 7919 is prime
		parts = append(parts, []fetchPart{{tp: catalog.TopicPartition{TopicID: id}}, {tp: catalog.TopicPartition{TopicID: id, Partition: 1}}})
	}
	return append(parts, []fetchPart{{errCode: 3}})
}

// TestFetchTopicIDsLinear: a fetch's topic ids are deduplicated by
// sorting. Searching the ids so far for each topic was quadratic: a
// fetch of 100,000 topics, each named twice, took 7.3 s of CPU (0.2 s
// now), and a consumer of 5,000 topics made 12.5 million comparisons per
// fetch.
func TestFetchTopicIDsLinear(t *testing.T) {
	const n = 100_000
	parts := fetchParts(n)
	parts = append(parts, parts[:n]...) // every topic named twice
	var ids []catalog.TopicID
	took := testenv.CPU(t, func() { ids = fetchTopicIDs(parts) })
	t.Logf("%d topics: %v of CPU", n, took)
	if len(ids) != n {
		t.Fatalf("%d ids for %d topics", len(ids), n)
	}
	slices.SortFunc(ids, func(a, b catalog.TopicID) int {
		return int(binary.BigEndian.Uint64(a[8:])) - int(binary.BigEndian.Uint64(b[8:]))
	})
	for i, id := range ids {
		if binary.BigEndian.Uint64(id[8:]) != uint64(i) {
			t.Fatalf("ids[%d] = %x", i, id)
		}
	}
	// 0.12 s, 0.35-0.41 s under the race detector; the quadratic search
	// took 7.3 s.
	if took > 2*time.Second {
		t.Fatalf("%d topics took %v of CPU, want well under 2 s", n, took)
	}
}

func BenchmarkFetchTopicIDs(b *testing.B) {
	for _, n := range []int{1, 3, 100, 5_000} {
		parts := fetchParts(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				fetchTopicIDs(parts)
			}
		})
	}
}
