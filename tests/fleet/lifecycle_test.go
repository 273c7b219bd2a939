package fleet

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/postgres"
	"github.com/floebroker/floe/internal/testenv"
	"github.com/floebroker/floe/tests/floetest"
)

// ownCatalogs opens n catalogs on one fresh PostgreSQL schema, one per
// agent, as separate agent processes would.
func ownCatalogs(t *testing.T, n int) []catalog.Catalog {
	t.Helper()
	cats, _ := ownCatalogsAt(t, n)
	return cats
}

// ownCatalogsAt is ownCatalogs, also returning the schema's URL.
func ownCatalogsAt(t *testing.T, n int) ([]catalog.Catalog, string) {
	t.Helper()
	url := floetest.PostgresURL(t)
	cats := make([]catalog.Catalog, n)
	for i := range cats {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := postgres.Open(ctx, url, catalog.Options{})
		cancel()
		if err != nil {
			t.Fatalf("open catalog: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		cats[i] = c
	}
	return cats, url
}

// produceRaw sends one produce request of one batch to addr itself and
// returns the partition's answer.
func produceRaw(t *testing.T, addr, topic string, partition int32) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Version = 9
	req.Acks = -1
	req.TimeoutMillis = 10_000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = floetest.Batch(floetest.BatchSpec{Records: 1, FirstTimestamp: time.Now().UnixMilli()})
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := rawRequest(t, addr, "", req).(*kmsg.ProduceResponse)
	return resp.Topics[0].Partitions[0]
}

// TestIdleAgentSeesTopicChanges: an agent that read a topic once and then
// served nothing for a while must not answer its next request from what it
// read then. Partitions added and configs changed through another agent
// meanwhile are in force at once, as on a Kafka broker, which learns them
// within milliseconds: a consumer whose first metadata lists the old
// partition count reads none of the new partitions until its next
// metadata refresh (5 minutes in franz-go and the Java client).
func TestIdleAgentSeesTopicChanges(t *testing.T) {
	const ttl = 100 * time.Millisecond
	cats := ownCatalogs(t, 2)
	bucket := floetest.MinIOBucket(t)
	short := func(c *agent.Config) { c.TopicCacheTTL = ttl }
	a := startMember(t, cats[0], bucket, "", short)
	b := startMember(t, cats[1], bucket, "", short)
	waitFleet(t, a, b)
	createTopic(t, a.Addr, "grown", 1)
	createTopic(t, a.Addr, "stamped", 1)
	metadata(t, b.Addr, "", []string{"grown", "stamped"}) // b caches both

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(client(t, a.Addr))
	if rs, err := adm.CreatePartitions(ctx, 2, "grown"); err != nil || rs["grown"].Err != nil {
		t.Fatalf("create partitions: %v %v", err, rs["grown"].Err)
	}
	lat := catalog.TimestampTypeLogAppendTime
	if rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: catalog.ConfigMessageTimestampType, Value: &lat}}, "stamped"); err != nil || rs[0].Err != nil {
		t.Fatalf("alter configs: %v %v", err, rs)
	}
	time.Sleep(10 * ttl) // b serves nothing meanwhile

	if p := produceRaw(t, b.Addr, "stamped", 0); p.ErrorCode != 0 || p.LogAppendTime < 0 {
		t.Errorf("produce through b after the change to LogAppendTime: error %d, log append time %d; want a log append time", p.ErrorCode, p.LogAppendTime)
	}

	// A consumer that asks b first must consume every partition.
	cons := client(t, b.Addr, kgo.ConsumeTopics("grown"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	prod := client(t, a.Addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := int32(0); p < 3; p++ {
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "grown", Partition: p, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatalf("produce to partition %d: %v", p, err)
		}
	}
	seen := map[int32]bool{}
	pollCtx, pollCancel := context.WithTimeout(ctx, 5*time.Second)
	defer pollCancel()
	for len(seen) < 3 && pollCtx.Err() == nil {
		cons.PollFetches(pollCtx).EachRecord(func(r *kgo.Record) { seen[r.Partition] = true })
	}
	if len(seen) < 3 {
		t.Errorf("a consumer seeded with b read partitions %v of 3", seen)
	}

	// The same for a request naming many topics (read with one query).
	if rs, err := adm.CreatePartitions(ctx, 2, "grown"); err != nil || rs["grown"].Err != nil {
		t.Fatalf("create partitions: %v %v", err, rs["grown"].Err)
	}
	names := []string{"grown"}
	for i := range 9 {
		names = append(names, fmt.Sprintf("other-%d", i))
	}
	for _, mt := range metadata(t, b.Addr, "", names).Topics {
		if *mt.Topic == "grown" && len(mt.Partitions) != 5 {
			t.Errorf("metadata of 10 topics through b: grown has %d partitions, want 5", len(mt.Partitions))
		}
	}
}

// TestRecreatedTopicReadByName: a topic deleted and created again under
// its name through agent A is a new, empty log. A consumer that names
// topics in its fetches (librdkafka before Fetch v13: kcat) and is sent to
// agent B must read only the new topic's records from B, never the deleted
// topic's: their offsets collide with the new topic's, so it would take
// old records for new ones and skip as many new ones.
func TestRecreatedTopicReadByName(t *testing.T) {
	kcat := testenv.Kcat(t)
	cats := ownCatalogs(t, 2)
	bucket := floetest.MinIOBucket(t)
	noAuto := func(c *agent.Config) { c.AutoCreateTopics = false }
	a := startMember(t, cats[0], bucket, "a", noAuto)
	b := startMember(t, cats[1], bucket, "b", noAuto)
	waitFleet(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(client(t, a.Addr))
	produce := func(vals ...string) {
		t.Helper()
		// A new client each time: franz-go fails a topic that was
		// re-created under a client that knew it (KIP-516).
		prod := client(t, a.Addr, kgo.ClientID("producer,floe_az=a"))
		for _, v := range vals {
			if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "reborn", Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatalf("produce %s: %v", v, err)
			}
		}
	}

	createTopic(t, a.Addr, "reborn", 1)
	produce("old-0", "old-1", "old-2", "old-3")
	// B reads the topic by name: it knows it and its tail.
	waitUntil(t, 5*time.Second, "b serves the old records", func() bool {
		p, _ := fetchAt(t, b.Addr, "reborn", 0, 0)
		return p.ErrorCode == 0 && p.HighWatermark == 4
	})

	if rs, err := adm.DeleteTopics(ctx, "reborn"); err != nil || rs["reborn"].Err != nil {
		t.Fatalf("delete: %v %v", err, rs["reborn"].Err)
	}
	createTopic(t, a.Addr, "reborn", 1)
	produce("new-0", "new-1")

	out := testenv.RunKcat(t, kcat, nil, "-C", "-b", b.Addr, "-X", "client.id=kcat,floe_az=b", "-t", "reborn", "-p", "0", "-o", "beginning", "-c", "2", "-f", "%o:%s\n")
	if got, want := string(out), "0:new-0\n1:new-1\n"; got != want {
		t.Errorf("kcat read the re-created topic through b as\n%s\nwant\n%s", got, want)
	}
	p, _ := fetchAt(t, b.Addr, "reborn", 0, 0)
	if p.ErrorCode != 0 || p.HighWatermark != 2 || !bytes.Contains(p.RecordBatches, []byte("new-0")) {
		t.Errorf("fetch by name through b: error %d, high watermark %d, old records %v; want 0, 2, false",
			p.ErrorCode, p.HighWatermark, bytes.Contains(p.RecordBatches, []byte("old-0")))
	}
}

// TestGrowPartitionsUnderLoad: partitions added through agent A while a
// producer writes through agent B (and reads its metadata there) are
// used once the producer's metadata lists them, every record is
// acknowledged without error, and each is read back once.
func TestGrowPartitionsUnderLoad(t *testing.T) {
	cats := ownCatalogs(t, 2)
	bucket := floetest.MinIOBucket(t)
	short := func(c *agent.Config) { c.TopicCacheTTL = 200 * time.Millisecond }
	a := startMember(t, cats[0], bucket, "a", short)
	b := startMember(t, cats[1], bucket, "b", short)
	waitFleet(t, a, b)
	createTopic(t, a.Addr, "growing", 1)
	prod := client(t, b.Addr, kgo.ClientID("producer,floe_az=b"), kgo.DefaultProduceTopic("growing"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.MetadataMaxAge(100*time.Millisecond), kgo.MetadataMinAge(10*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		errs  []error
		acked = map[int32]int{}
	)
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r := &kgo.Record{Value: value(0, i)}
			prod.Produce(ctx, r, func(r *kgo.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				acked[r.Partition]++
			})
			time.Sleep(time.Millisecond)
		}
	})
	adm := kadm.NewClient(client(t, a.Addr))
	for _, n := range []int{2, 4, 8} {
		time.Sleep(300 * time.Millisecond)
		if rs, err := adm.CreatePartitions(ctx, n-int(mustPartitions(t, adm, "growing")), "growing"); err != nil || rs["growing"].Err != nil {
			t.Fatalf("grow to %d: %v %v", n, err, rs["growing"].Err)
		}
	}
	waitUntil(t, 10*time.Second, "records reach the last partition", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return acked[7] > 0
	})
	close(stop)
	wg.Wait()
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("%d produce errors, first %v", len(errs), errs[0])
	}
	total := 0
	for _, n := range acked {
		total += n
	}
	cons := client(t, b.Addr, kgo.ClientID("consumer,floe_az=b"), kgo.ConsumeTopics("growing"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := consumeAll(t, cons, total)
	for p, n := range acked {
		if len(got[p]) != n {
			t.Errorf("partition %d: read %d records, %d acknowledged", p, len(got[p]), n)
		}
	}
}

func mustPartitions(t *testing.T, adm *kadm.Client, topic string) int32 {
	t.Helper()
	td, err := adm.ListTopics(context.Background(), topic)
	if err != nil || td[topic].Err != nil {
		t.Fatalf("list %s: %v %v", topic, err, td[topic].Err)
	}
	return int32(len(td[topic].Partitions))
}

// TestRecreateUnderLoad: a topic deleted through agent A while a producer
// and a group consumer work through agent B, then created again: the new
// topic holds exactly what was acknowledged into it, its high watermark
// counts only that, through either agent.
func TestRecreateUnderLoad(t *testing.T) {
	cats, url := ownCatalogsAt(t, 2)
	bucket := floetest.MinIOBucket(t)
	noAuto := func(c *agent.Config) { c.AutoCreateTopics = false }
	a := startMember(t, cats[0], bucket, "a", noAuto)
	b := startMember(t, cats[1], bucket, "b", noAuto)
	waitFleet(t, a, b)
	createTopic(t, a.Addr, "churn", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	oldProd := client(t, b.Addr, kgo.ClientID("old-producer,floe_az=b"), kgo.DefaultProduceTopic("churn"),
		kgo.RecordDeliveryTimeout(3*time.Second))
	oldCons := client(t, b.Addr, kgo.ClientID("old-consumer,floe_az=b"), kgo.ConsumeTopics("churn"), kgo.ConsumerGroup("g-churn"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AutoCommitInterval(100*time.Millisecond))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			oldProd.Produce(ctx, &kgo.Record{Value: []byte("old")}, nil)
			time.Sleep(2 * time.Millisecond)
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
			oldCons.PollFetches(pctx)
			pcancel()
		}
	})
	time.Sleep(time.Second)
	adm := kadm.NewClient(client(t, a.Addr))
	if rs, err := adm.DeleteTopics(ctx, "churn"); err != nil || rs["churn"].Err != nil {
		t.Fatalf("delete: %v %v", err, rs["churn"].Err)
	}
	createTopic(t, a.Addr, "churn", 2)
	newProd := client(t, b.Addr, kgo.ClientID("new-producer,floe_az=b"), kgo.DefaultProduceTopic("churn"))
	const n = 200
	for i := range n {
		if err := newProd.ProduceSync(ctx, &kgo.Record{Key: []byte{byte(i)}, Value: []byte("new")}).FirstErr(); err != nil {
			t.Fatalf("produce to the new topic: %v", err)
		}
	}
	time.Sleep(time.Second) // the old clients keep going meanwhile
	close(stop)
	wg.Wait()

	for _, m := range []*member{a, b} {
		cons := client(t, m.Addr, kgo.ClientID("new-consumer,floe_az="+m.zone), kgo.ConsumeTopics("churn"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		got := consumeAll(t, cons, n)
		for p, vals := range got {
			for i, v := range vals {
				if string(v) != "new" {
					t.Fatalf("through %s: partition %d offset %d holds %q of the deleted topic", m.zone, p, i, v)
				}
			}
		}
		ends, err := kadm.NewClient(cons).ListEndOffsets(ctx, "churn")
		if err != nil {
			t.Fatal(err)
		}
		total := int64(0)
		ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
		if total != n {
			t.Errorf("through %s: high watermarks sum to %d, want %d", m.zone, total, n)
		}
	}

	// Nothing of the old topic stays in the catalog: rows of it would
	// keep their objects from the garbage collector for good.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, table := range []string{"partitions", "batches", "producer_state"} {
		var left int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE topic_id NOT IN (SELECT id FROM topics)`).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left != 0 {
			t.Errorf("%d rows of %s name no topic", left, table)
		}
	}
}
