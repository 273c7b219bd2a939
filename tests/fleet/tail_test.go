package fleet

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fetchAt long-polls addr for topic/0 at offset and returns the partition
// answer and how long it took.
func fetchAt(t *testing.T, addr, topic string, offset int64, wait time.Duration) (kmsg.FetchResponseTopicPartition, time.Duration) {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.Version = 12
	req.ReplicaID = -1
	req.MaxWaitMillis, req.MinBytes, req.MaxBytes = int32(wait/time.Millisecond), 1, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = offset, 1<<20, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	start := time.Now()
	resp := rawRequest(t, addr, "long-poll", req).(*kmsg.FetchResponse)
	return resp.Topics[0].Partitions[0], time.Since(start)
}

// TestLongPollAcrossAgents: a fetch waiting at the tail on agent B returns
// as soon as agent A commits to the partition (catalog.Watch, no polling).
func TestLongPollAcrossAgents(t *testing.T) {
	cat, bucket := services(t)
	a, b := startMember(t, cat, bucket, "a", nil), startMember(t, cat, bucket, "b", nil)
	waitFleet(t, a, b)
	createTopic(t, a.Addr, "poll", 1)
	prod := client(t, a.Addr, kgo.ClientID("producer,floe_az=a"), kgo.DefaultProduceTopic("poll"))
	produceN(t, prod, "poll", 0, 1)
	if p, _ := fetchAt(t, b.Addr, "poll", 0, time.Second); p.ErrorCode != 0 || p.HighWatermark != 1 {
		t.Fatalf("fetch on B: error %d, high watermark %d", p.ErrorCode, p.HighWatermark)
	}
	for round := range 3 {
		// The produce runs beside the long poll; it is waited for before
		// anything can fail or the round ends, so it never outlives the
		// test (its client is closed at cleanup).
		var produced sync.WaitGroup
		produced.Go(func() {
			time.Sleep(300 * time.Millisecond)
			produceN(t, prod, "poll", 0, 1)
		})
		p, took := fetchAt(t, b.Addr, "poll", int64(round+1), 10*time.Second)
		produced.Wait()
		if p.ErrorCode != 0 || len(p.RecordBatches) == 0 {
			t.Fatalf("long poll on B: error %d, %d bytes", p.ErrorCode, len(p.RecordBatches))
		}
		if got := int64(binary.BigEndian.Uint64(p.RecordBatches)); got != int64(round+1) {
			t.Fatalf("long poll returned base offset %d, want %d", got, round+1)
		}
		// The produce is acknowledged after its commit; B learns of the
		// commit by notification, well before its 1s backstop read.
		if took > 300*time.Millisecond+700*time.Millisecond {
			t.Fatalf("long poll on B returned %v after the wait began; A produced at 300ms", took)
		}
		t.Logf("round %d: long poll on B answered %v after it began (A produced at ~300ms)", round, took)
	}
}

// tailWorkload produces one record at a time through prod for d while the
// consumers tail topic (each polling all along, as a tailing application
// does), and waits until every consumer has every record.
func tailWorkload(t *testing.T, prod *kgo.Client, topic string, consumers []*kgo.Client, base int, d time.Duration) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		mu       sync.Mutex
		produced = -1 // unknown until production ends
		wg       sync.WaitGroup
	)
	for _, c := range consumers {
		wg.Go(func() {
			got := 0
			for ctx.Err() == nil {
				mu.Lock()
				done := produced >= 0 && got >= produced
				mu.Unlock()
				if done {
					return
				}
				pctx, pcancel := context.WithTimeout(ctx, 100*time.Millisecond)
				got += c.PollFetches(pctx).NumRecords()
				pcancel()
			}
			t.Errorf("a tailing consumer got %d records; %d were produced", got, produced)
		})
	}
	var acks sync.WaitGroup
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); n++ {
		acks.Add(1)
		prod.Produce(ctx, &kgo.Record{Topic: topic, Value: value(0, base+n)}, func(_ *kgo.Record, err error) {
			defer acks.Done()
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
		time.Sleep(5 * time.Millisecond)
	}
	acks.Wait()
	mu.Lock()
	produced = n
	mu.Unlock()
	wg.Wait()
	return n
}

// TestTailFromMemory measures the tail: consumers at the partition's
// leader (the agent that writes it) are served from memory — no catalog
// read of batches, no bucket GET — and consumers on another agent get
// each object once however many of them tail it. It also checks that
// catch-up reads on a fresh agent go through the catch-up cache only.
func TestTailFromMemory(t *testing.T) {
	cat, bucket := services(t)
	a, b := startMember(t, cat, bucket, "a", nil), startMember(t, cat, bucket, "b", nil)
	waitFleet(t, a, b)
	createTopic(t, a.Addr, "tail", 2)
	prod := client(t, a.Addr, kgo.ClientID("producer,floe_az=a"), kgo.ProducerLinger(0))
	tailer := func(addr, zone string) *kgo.Client {
		cl := client(t, addr, kgo.ClientID("tailer,floe_az="+zone), kgo.ConsumeTopics("tail"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(time.Second))
		return cl
	}
	// Warm up: the consumer is at the tail and its topic is cached.
	consA := tailer(a.Addr, "a")
	tailWorkload(t, prod, "tail", []*kgo.Client{consA}, 0, 200*time.Millisecond)

	hitsA := func() (float64, float64) {
		return counter(t, a.reg, "floe_agent_read_cache_hits_total", map[string]string{"cache": "tail"}),
			counter(t, a.reg, "floe_agent_read_cache_misses_total", map[string]string{"cache": "tail"})
	}
	h0, m0 := hitsA()
	f0 := requests(t, a, "Fetch")
	cat.batches.Store(0)
	cat.offsets.Store(0)
	cat.topics.Store(0)
	bucket.reset()
	const d = 2 * time.Second
	n := tailWorkload(t, prod, "tail", []*kgo.Client{consA}, 10_000, d)
	h1, m1 := hitsA()
	fetches := requests(t, a, "Fetch") - f0
	t.Logf("tail at the writer: %d records in %v, %.0f fetches; catalog: %d Batches, %d Offsets (background), %d topic reads; bucket GETs: %d; tail cache hits %.0f, misses %.0f (hit ratio %.3f)",
		n, d, fetches, cat.batches.Load(), cat.offsets.Load(), cat.topics.Load(), bucket.gets.Load(), h1-h0, m1-m0, (h1-h0)/max(h1-h0+m1-m0, 1))
	if cat.batches.Load() != 0 || bucket.gets.Load() != 0 || m1 != m0 {
		t.Errorf("fetches at the tail read the catalog's batches (%d) or the bucket (%d GETs, %.0f misses)", cat.batches.Load(), bucket.gets.Load(), m1-m0)
	}
	// Offsets are re-read in the background, at most about once a second
	// per partition, never by the fetch itself.
	if max := int64(2 * (d/time.Second + 2)); cat.offsets.Load() > max {
		t.Errorf("%d Offsets reads in %v for 2 partitions, want at most %d", cat.offsets.Load(), d, max)
	}

	// Three consumers on B, which did not write the records: every object
	// range is read from the bucket once, whoever asks first.
	var consB []*kgo.Client
	for range 3 {
		consB = append(consB, tailer(b.Addr, "b"))
	}
	tailWorkload(t, prod, "tail", consB, 20_000, 200*time.Millisecond)
	bucket.reset()
	hb0 := counter(t, b.reg, "floe_agent_read_cache_hits_total", map[string]string{"cache": "tail"})
	mb0 := counter(t, b.reg, "floe_agent_read_cache_misses_total", map[string]string{"cache": "tail"})
	n = tailWorkload(t, prod, "tail", consB, 30_000, d)
	objects, most := bucket.maxPerObject()
	hb := counter(t, b.reg, "floe_agent_read_cache_hits_total", map[string]string{"cache": "tail"}) - hb0
	mb := counter(t, b.reg, "floe_agent_read_cache_misses_total", map[string]string{"cache": "tail"}) - mb0
	t.Logf("3 consumers tailing on another agent: %d records, %d GETs of %d objects (at most %d per object); tail cache hits %.0f, misses %.0f (hit ratio %.3f)",
		n, bucket.gets.Load(), objects, most, hb, mb, hb/max(hb+mb, 1))
	if most > 2 {
		// One GET per partition range of an object; the topic has 2.
		t.Errorf("an object was read %d times by one agent for 2 partitions", most)
	}

	// A fresh agent has no tail index: three consumers reading from the
	// start catch up through the catch-up cache, with prefetch, and leave
	// the tail cache empty.
	c := startMember(t, cat, bucket, "c", nil)
	waitFleet(t, a, b, c)
	ends, err := kadm.NewClient(client(t, c.Addr)).ListEndOffsets(context.Background(), "tail")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	bucket.reset()
	catchUpStart := time.Now()
	var wg sync.WaitGroup
	for range 3 {
		cl := tailer(c.Addr, "c")
		wg.Go(func() {
			var got int64
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for got < total && ctx.Err() == nil {
				got += int64(cl.PollFetches(ctx).NumRecords())
			}
			if got < total {
				t.Errorf("a catching-up consumer got %d of %d records", got, total)
			}
		})
	}
	wg.Wait()
	objects, most = bucket.maxPerObject()
	t.Logf("3 consumers catching up on a fresh agent: %d records each in %v; %d GETs of %d objects (at most %d per object), %.0f prefetches; tail cache %.0f bytes, catch-up cache %.0f bytes",
		total, time.Since(catchUpStart).Round(time.Millisecond), bucket.gets.Load(), objects, most,
		counter(t, c.reg, "floe_agent_read_cache_prefetches_total", nil),
		counter(t, c.reg, "floe_agent_read_cache_bytes", map[string]string{"cache": "tail"}),
		counter(t, c.reg, "floe_agent_read_cache_bytes", map[string]string{"cache": "catchup"}))
	if most > 2 {
		t.Errorf("catching up read an object %d times for 2 partitions", most)
	}
	if counter(t, c.reg, "floe_agent_read_cache_bytes", map[string]string{"cache": "tail"}) != 0 {
		t.Error("catch-up reads filled the tail cache")
	}
}
