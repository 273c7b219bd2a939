package agent

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

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
		if _, ok := ti.lookup(catalog.TopicPartition{Partition: p}, next[p]-1, 1, 0); !ok {
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

// TestDeletedTopicLeavesTailIndex: deleting a topic drops its partitions'
// rows from the tail index. Nothing adds rows for a deleted topic's id
// again (a topic created under its name has a new id), so every deleted
// topic kept up to maxTailRows rows per partition for the agent's life,
// and counted against every live partition's share of the row budget.
func TestDeletedTopicLeavesTailIndex(t *testing.T) {
	var a *Agent
	addr := startInternalAgent(t, func(x *Agent) { a = x })
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("gone"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	topic, err := a.cat.Topic(ctx, "gone")
	if err != nil {
		t.Fatal(err)
	}
	tp := catalog.TopicPartition{TopicID: topic.ID}
	for deadline := time.Now().Add(5 * time.Second); !a.tail.covers(tp, 0); {
		if time.Now().After(deadline) {
			t.Fatal("the produced row never reached the tail index")
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := kadm.NewClient(cl).DeleteTopics(ctx, "gone")
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	a.tail.mu.Lock()
	_, kept := a.tail.mu.parts[tp]
	indexed := len(a.tail.mu.byTopic[topic.ID])
	a.tail.mu.Unlock()
	if kept || indexed != 0 {
		t.Fatalf("deleted topic still in the tail index: partition kept %v, %d indexed", kept, indexed)
	}
}
