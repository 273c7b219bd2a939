package agent

import (
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

func TestTailRowLimit(t *testing.T) {
	for _, tc := range []struct{ parts, want int }{
		{0, maxTailRows},
		{1, maxTailRows},
		{256, maxTailRows},
		{2000, tailRowBudget / 2000},
		{1 << 20, minTailRows},
	} {
		if got := tailRowLimit(tc.parts); got != tc.want {
			t.Errorf("tailRowLimit(%d) = %d, want %d", tc.parts, got, tc.want)
		}
	}
}

// TestTailIndexRowBudget: each partition keeps its newest rows, fewer of
// them as partitions are added, and gives back the memory of a larger
// limit once it is trimmed.
func TestTailIndexRowBudget(t *testing.T) {
	ti := newTailIndex(time.Now)
	next := map[int32]int64{}
	add := func(p int32, n int) {
		rows := make([]catalog.BatchRow, n)
		for i := range rows {
			rows[i] = catalog.BatchRow{
				TopicPartition: catalog.TopicPartition{Partition: p},
				BaseOffset:     next[p], LastOffset: next[p], ByteLength: 1,
			}
			next[p]++
		}
		ti.add(rows)
	}
	check := func(p int32, limit int) {
		t.Helper()
		ti.mu.Lock()
		tp := ti.mu.parts[catalog.TopicPartition{Partition: p}]
		n, c := len(tp.rows), cap(tp.rows)
		last := tp.rows[n-1].LastOffset
		ti.mu.Unlock()
		if n > limit || n < limit/2 || last != next[p]-1 {
			t.Fatalf("partition %d: %d rows up to %d, want %d..%d rows up to %d", p, n, last, limit/2, limit, next[p]-1)
		}
		if c > 2*limit {
			t.Fatalf("partition %d: %d rows kept in an array of %d, limit %d", p, n, c, limit)
		}
		// The newest rows are served from memory.
		if _, ok := ti.lookup(catalog.TopicPartition{Partition: p}, next[p]-1, 1); !ok {
			t.Fatalf("partition %d: newest offset not covered", p)
		}
	}
	add(0, 3*maxTailRows)
	check(0, maxTailRows)
	// Many more partitions: partition 0's next add trims it to the lower
	// limit and into a smaller array.
	for p := int32(1); p < 4000; p++ {
		add(p, 1)
	}
	limit := tailRowLimit(4000)
	add(0, 1)
	check(0, limit)
	add(0, 3*limit)
	check(0, limit)
	add(1, 3*limit)
	check(1, limit)
}
