package compaction_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/compaction"
)

// TestMergedRowsAreCapped: merging joins adjacent rows only up to the row
// cap, so a fetch, which reads the row holding its offset whole, never
// reads a whole merged object for one batch.
func TestMergedRowsAreCapped(t *testing.T) {
	const limit = 8 << 10
	compaction.SetMaxRowBytes(t, limit)
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		top := e.topic("capped", 2, nil)
		parts := tps(top)
		for range 40 {
			e.flushSegment(parts, 2, 3, time.Now().UnixMilli())
		}
		before := map[int32][]readBatch{}
		for _, tp := range parts {
			before[tp.Partition] = e.consume(tp)
		}
		s0 := e.stats()
		e.clk.Advance(2 * time.Minute)
		if err := e.compactor("a", nil).RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if s := e.stats(); s.Rows*3 > s0.Rows {
			t.Fatalf("rows %d -> %d: merging joined too little", s0.Rows, s.Rows)
		}
		for _, tp := range parts {
			rows, err := e.cat.(catalog.Catalog).Batches(ctx, tp, 0, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				if r.ByteLength > limit {
					t.Errorf("partition %d: merged row %d-%d holds %d bytes, over the %d cap", tp.Partition, r.BaseOffset, r.LastOffset, r.ByteLength, limit)
				}
			}
			if got := e.consume(tp); !reflect.DeepEqual(got, before[tp.Partition]) {
				t.Fatalf("partition %d changed by merge", tp.Partition)
			}
		}
	})
}
