package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

func TestDbgCommitsSince(t *testing.T) {
	c := openTest(t, freshSchema(t), catalog.Options{MaxConns: 1})
	ctx := context.Background()
	topic, _ := c.CreateTopic(ctx, catalog.TopicSpec{Name: "x", Partitions: 64})
	for i := 0; i < 5000; i++ {
		seg := catalog.Segment{Key: fmt.Sprintf("k%d", i), Size: 16000}
		for p := 0; p < 7; p++ {
			seg.Batches = append(seg.Batches, catalog.BatchRef{TopicPartition: catalog.TopicPartition{TopicID: topic.ID, Partition: int32((p*9 + i) % 64)},
				ByteOffset: int64(p) * 1000, ByteLength: 1000, OffsetSpan: 1, Records: 1, ProducerID: -1})
		}
		if _, err := c.CommitSegment(ctx, seg); err != nil {
			t.Fatal(err)
		}
	}

	t0 := time.Now()
	_, _, err := c.CommitsSince(ctx, 1000, 500)
	t.Log(time.Since(t0), err)
	for _, q := range []string{"LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0", "SET auto_explain.log_analyze = on"} {
		c.pool.Exec(ctx, q)
	}
	t0 = time.Now()
	_, _, err = c.CommitsSince(ctx, 1000, 500)
	t.Log(time.Since(t0), err)
}
