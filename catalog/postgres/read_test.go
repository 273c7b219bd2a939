package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/floebroker/floe/catalog"
)

// TestBatchesReadWhatTheyReturn: a byte-limited Batches lookup reads
// about the rows it returns, not MaxBatchRows: a catch-up fetch of 5 MiB
// in rows of 1 MiB (a compacted object's) read 1,000 rows to return five.
// Rows too small for the first page cost what they did (the first page
// and MaxBatchRows), and every lookup returns what it did.
func TestBatchesReadWhatTheyReturn(t *testing.T) {
	url := freshSchema(t)
	ctx := context.Background()
	c := openTest(t, url, catalog.Options{})
	top, err := c.CreateTopic(ctx, catalog.TopicSpec{Name: "reads", Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Partition 0: 1,200 rows of 1 MiB; partition 1: 1,200 of 1 KiB.
	const rows = 1200
	n := 0
	for range rows / 200 {
		var segs []catalog.Segment
		for range 200 {
			n++
			segs = append(segs, catalog.Segment{Key: fmt.Sprint("seg-", n), Size: 1<<20 + 1<<10, Batches: []catalog.BatchRef{
				{TopicPartition: catalog.TopicPartition{TopicID: top.ID, Partition: 0}, ByteLength: 1 << 20,
					OffsetSpan: 1, Records: 1, ProducerID: -1, BaseSequence: -1},
				{TopicPartition: catalog.TopicPartition{TopicID: top.ID, Partition: 1}, ByteOffset: 1 << 20, ByteLength: 1 << 10,
					OffsetSpan: 1, Records: 1, ProducerID: -1, BaseSequence: -1},
			}})
		}
		if _, err := c.CommitSegments(ctx, segs); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.pool.Exec(ctx, `ANALYZE batches`); err != nil {
		t.Fatal(err)
	}

	// read returns the rows the lookup reads from batches.
	read := func(tp catalog.TopicPartition, from, maxBytes int64) int64 {
		t.Helper()
		var out []byte
		if err := c.pool.QueryRow(ctx, `EXPLAIN (ANALYZE, FORMAT JSON) `+sqlBatches, batchesArgs(tp, from, maxBytes)...).Scan(&out); err != nil {
			t.Fatal(err)
		}
		var doc []struct{ Plan map[string]any }
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatal(err)
		}
		var n float64
		var walk func(p map[string]any)
		walk = func(p map[string]any) {
			if p["Relation Name"] == "batches" {
				rows, _ := p["Actual Rows"].(float64)
				loops, _ := p["Actual Loops"].(float64)
				n += rows * loops
			}
			for _, c := range children(p) {
				walk(c)
			}
		}
		walk(doc[0].Plan)
		return int64(n)
	}
	for _, tt := range []struct {
		name           string
		partition      int32
		from, maxBytes int64
		want           int // rows returned
		maxRead        int64
	}{
		// Rows of 1 MiB: about the rows returned (4 a row and 8).
		{"one row", 0, 10, 1, 1, 8},
		{"catch-up fetch", 0, 10, 5 << 20, 5, 28},
		{"64 MiB", 0, 10, 64 << 20, 64, 264},
		{"near the end", 0, rows - 3, 5 << 20, 3, 8},
		// Rows of 1 KiB: MaxBatchRows, as before, and the first page.
		{"small rows", 1, 10, 5 << 20, MaxBatchRows, 28 + MaxBatchRows},
		{"small rows, 100 KiB", 1, 10, 100 << 10, 100, 8 + MaxBatchRows},
		{"small rows, page covers", 1, 10, 8 << 10, 8, 8},
	} {
		tp := catalog.TopicPartition{TopicID: top.ID, Partition: tt.partition}
		got, err := c.Batches(ctx, tp, tt.from, tt.maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tt.want || got[0].BaseOffset != tt.from {
			t.Errorf("%s: %d rows from %d, want %d from %d", tt.name, len(got), got[0].BaseOffset, tt.want, tt.from)
		}
		if n := read(tp, tt.from, tt.maxBytes); n > tt.maxRead {
			t.Errorf("%s: %d rows read for %d returned, want at most %d", tt.name, n, len(got), tt.maxRead)
		}
	}
}
