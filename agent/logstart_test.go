package agent

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/wal"
)

// offsetsCounting counts the catalog's offsets queries: each Offsets and
// each OffsetsOf is one, and parts counts the partitions OffsetsOf read.
type offsetsCounting struct {
	catalog.Catalog
	queries, parts atomic.Int64
	single         atomic.Int64 // Offsets calls (a fetch reading the catalog itself)
}

func (c *offsetsCounting) Offsets(ctx context.Context, tp catalog.TopicPartition) (catalog.PartitionOffsets, error) {
	c.queries.Add(1)
	c.single.Add(1)
	return c.Catalog.Offsets(ctx, tp)
}

func (c *offsetsCounting) OffsetsOf(ctx context.Context, tps []catalog.TopicPartition) (map[catalog.TopicPartition]catalog.PartitionOffsets, error) {
	c.queries.Add(1)
	c.parts.Add(int64(len(tps)))
	return c.Catalog.OffsetsOf(ctx, tps)
}

// TestLogStartsReadTogether: a consumer at the tail of many busy
// partitions makes the agent re-read their log starts in a query or two
// per second for all of them, not a query per partition per second, and
// a partition the refresher finds gone makes the agent forget its topic.
func TestLogStartsReadTogether(t *testing.T) {
	var (
		a  *Agent
		oc *offsetsCounting
	)
	addr := startAgentWAL(t, wal.Config{FlushInterval: 50 * time.Millisecond}, func(ag *Agent) {
		a = ag
		oc = &offsetsCounting{Catalog: ag.cat}
		ag.cat = oc
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	const parts = 40
	adm, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if _, err := kadm.NewClient(adm).CreateTopic(ctx, parts, 1, nil, "busy"); err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("busy"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	producing := make(chan struct{})
	go func() {
		defer close(producing)
		for ctx.Err() == nil {
			for range parts {
				prod.Produce(ctx, &kgo.Record{Value: []byte("x")}, nil)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	cons, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("busy"), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	poll := func(d time.Duration) (recs int) {
		for end := time.Now().Add(d); time.Now().Before(end); {
			pctx, pcancel := context.WithDeadline(ctx, end)
			recs += cons.PollFetches(pctx).NumRecords()
			pcancel()
		}
		return recs
	}
	poll(2 * time.Second)
	q0, p0 := oc.queries.Load(), oc.parts.Load()
	start := time.Now()
	recs := poll(4 * time.Second)
	d := time.Since(start)
	queries, read := oc.queries.Load()-q0, oc.parts.Load()-p0
	t.Logf("consumer of %d busy partitions: %d records, %d offsets queries in %v (%.2f/s), %d partition offsets read (%.2f per partition per second)",
		parts, recs, queries, d.Round(time.Millisecond), float64(queries)/d.Seconds(), read, float64(read)/parts/d.Seconds())
	if recs == 0 {
		t.Fatal("the consumer read nothing")
	}
	// One read per tick (two a second), and a few forced reads.
	if limit := int64(d.Seconds()*float64(time.Second/logStartTick)) + 4; queries > limit {
		t.Errorf("%d offsets queries in %v for %d partitions, want at most %d", queries, d, parts, limit)
	}
	if read < parts {
		t.Errorf("the log starts were re-read for %d partitions in %v, want every one of the %d", read, d, parts)
	}
	cancel()
	<-producing

	// The topic is deleted elsewhere: the refresher finds its partitions
	// gone and the agent forgets it.
	topic, err := a.cat.Topic(t.Context(), "busy")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.cat.DeleteTopic(t.Context(), "busy", topic.ID); err != nil {
		t.Fatal(err)
	}
	tp := catalog.TopicPartition{TopicID: topic.ID, Partition: 3}
	a.tail.queueRefresh(tp)
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, _, cached := a.topics.get(topic.ID)
		a.tail.mu.Lock()
		_, kept := a.tail.mu.parts[tp]
		a.tail.mu.Unlock()
		if !cached && !kept {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after the refresher read a deleted topic's partition: topic cached %v, partition kept %v", cached, kept)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSlowPartitionLongPollReadsNoCatalog: a consumer long-polling (5 s,
// franz-go's default) a partition written every couple of seconds is woken
// by each record and served on a log start the refresher keeps fresh while
// it waits: no fetch reads the catalog itself. (Once a cached log start
// was served at most maxLogStartAge old, the long poll let it age past
// that, and every record's wake read the catalog.)
func TestSlowPartitionLongPollReadsNoCatalog(t *testing.T) {
	var oc *offsetsCounting
	addr := startAgentWAL(t, wal.Config{FlushInterval: 5 * time.Millisecond}, func(ag *Agent) {
		oc = &offsetsCounting{Catalog: ag.cat}
		ag.cat = oc
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if _, err := kadm.NewClient(adm).CreateTopic(ctx, 1, 1, nil, "slow"); err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("slow"), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	cons, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("slow"), kgo.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	produce := func() {
		if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	consumeOne := func() {
		for ctx.Err() == nil {
			if cons.PollFetches(ctx).NumRecords() > 0 {
				return
			}
		}
		t.Fatal("no record consumed")
	}
	produce()
	consumeOne() // the consumer is now at the tail, long-polling
	before := oc.single.Load()
	const records = 3
	for range records {
		time.Sleep(2500 * time.Millisecond)
		produce()
		consumeOne()
	}
	if n := oc.single.Load() - before; n > 0 {
		t.Errorf("%d fetches of a partition written every 2.5 s read the catalog for its offsets, want none (%d records consumed)", n, records)
	}
}
