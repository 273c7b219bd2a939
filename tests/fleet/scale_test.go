package fleet

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestScale2000Partitions: one agent serves a topic of 2,000 partitions;
// records produced to every partition all read back, in order, from every
// partition.
func TestScale2000Partitions(t *testing.T) {
	cat, bucket := services(t)
	a := startMember(t, cat, bucket, "", nil)
	waitFleet(t, a)
	const (
		partitions   = 2000
		perPartition = 3
	)
	start := time.Now()
	createTopic(t, a.Addr, "scale", partitions)
	created := time.Since(start)

	prod := client(t, a.Addr, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rs []*kgo.Record
	for seq := range perPartition {
		for p := range int32(partitions) {
			rs = append(rs, &kgo.Record{Topic: "scale", Partition: p, Value: value(int(p), seq)})
		}
	}
	start = time.Now()
	if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce to %d partitions: %v", partitions, err)
	}
	produced := time.Since(start)

	cons := client(t, a.Addr, kgo.ConsumeTopics("scale"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond))
	start = time.Now()
	got := consumeAll(t, cons, partitions*perPartition)
	consumed := time.Since(start)
	if len(got) != partitions {
		t.Fatalf("read back %d partitions, want %d", len(got), partitions)
	}
	for p, vs := range got {
		if len(vs) != perPartition {
			t.Fatalf("partition %d: %d records, want %d", p, len(vs), perPartition)
		}
		for seq, v := range vs {
			if gp, gs := parseValue(v); gp != int(p) || gs != seq {
				t.Fatalf("partition %d offset %d: record %d/%d, want %d/%d", p, seq, gp, gs, p, seq)
			}
		}
	}
	t.Logf("%d partitions on one agent: created in %v, %d records produced in %v, read back in %v",
		partitions, created.Round(time.Millisecond), len(rs), produced.Round(time.Millisecond), consumed.Round(time.Millisecond))
}

// TestJoinAndLeaveUnderLoad: idempotent producers and a consumer run
// against two agents; a third joins, then one of the first leaves (its
// context is cancelled, as on SIGTERM). Every acknowledged record is read
// back, none twice, by the running consumer and by a fresh one.
func TestJoinAndLeaveUnderLoad(t *testing.T) {
	cat, bucket := services(t)
	a, b := startMember(t, cat, bucket, "", nil), startMember(t, cat, bucket, "", nil)
	waitFleet(t, a, b)
	const topic, partitions = "churn", 8
	createTopic(t, a.Addr, topic, partitions)
	seeds := a.Addr + "," + b.Addr

	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()

	// The running consumer reads every partition from the start, through
	// the membership changes, and records what it sees.
	var (
		seenMu sync.Mutex
		seen   = map[string]int{}
		dups   []string
	)
	cons := client(t, seeds, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond), kgo.MetadataMinAge(100*time.Millisecond), kgo.MetadataMaxAge(500*time.Millisecond))
	consCtx, stopCons := context.WithCancel(ctx)
	consDone := make(chan struct{})
	go func() {
		defer close(consDone)
		for consCtx.Err() == nil {
			fs := cons.PollFetches(consCtx)
			fs.EachRecord(func(r *kgo.Record) {
				seenMu.Lock()
				k := string(r.Value)
				if seen[k]++; seen[k] == 2 {
					dups = append(dups, k)
				}
				seenMu.Unlock()
			})
		}
	}()

	// Two idempotent producers (franz-go's default), each with a key per
	// record so records spread over the partitions.
	var (
		ackMu sync.Mutex
		acked = map[string]bool{}
		fails int
	)
	stopProd := make(chan struct{})
	var prodWG sync.WaitGroup
	for id := range 2 {
		prod := client(t, seeds, kgo.ClientID("churn-producer"), kgo.ProducerLinger(2*time.Millisecond),
			kgo.MetadataMinAge(100*time.Millisecond), kgo.MetadataMaxAge(500*time.Millisecond),
			kgo.RecordDeliveryTimeout(20*time.Second))
		prodWG.Go(func() {
			var acks sync.WaitGroup
			defer acks.Wait()
			for seq := 0; ; seq++ {
				select {
				case <-stopProd:
					return
				default:
				}
				v := value(id, seq)
				acks.Add(1)
				prod.Produce(ctx, &kgo.Record{Topic: topic, Key: v, Value: v}, func(r *kgo.Record, err error) {
					defer acks.Done()
					ackMu.Lock()
					defer ackMu.Unlock()
					if err != nil {
						fails++
						return
					}
					acked[string(r.Value)] = true
				})
				time.Sleep(2 * time.Millisecond)
			}
		})
	}

	time.Sleep(1500 * time.Millisecond)
	c := startMember(t, cat, bucket, "", nil)
	waitFleet(t, a, b, c)
	time.Sleep(1500 * time.Millisecond)
	// The leaver is whichever first agent has served more produces: with
	// 8 partitions hashed over the agents, one of them can lead none.
	leaver, stayer := a, b
	if requests(t, b, "Produce") > requests(t, a, "Produce") {
		leaver, stayer = b, a
	}
	leaverProduces := requests(t, leaver, "Produce")
	leaveStart := time.Now()
	if err := leaver.Stop(); err != nil {
		t.Fatalf("agent leaving: %v", err)
	}
	left := time.Since(leaveStart)
	waitFleet(t, stayer, c)
	time.Sleep(1500 * time.Millisecond)
	close(stopProd)
	prodWG.Wait()

	ackMu.Lock()
	nAcked, nFails := len(acked), fails
	ackMu.Unlock()
	if nAcked == 0 {
		t.Fatal("no record was acknowledged")
	}
	// The running consumer catches up with every acknowledged record.
	waitUntil(t, 20*time.Second, "the running consumer has every acknowledged record", func() bool {
		seenMu.Lock()
		defer seenMu.Unlock()
		for k := range acked {
			if seen[k] == 0 {
				return false
			}
		}
		return true
	})
	stopCons()
	<-consDone
	seenMu.Lock()
	if len(dups) > 0 {
		t.Errorf("the running consumer read %d records twice, e.g. %x", len(dups), dups[0])
	}
	nSeen := len(seen)
	seenMu.Unlock()

	// A fresh consumer on the joined agent reads the log: the same check
	// on the stored data, independent of the running consumer's session.
	ends := endOffsets(t, c.Addr, topic)
	var total int64
	for _, e := range ends {
		total += e
	}
	fresh := client(t, c.Addr+","+stayer.Addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond))
	log := consumeAll(t, fresh, int(total))
	stored := map[string]int{}
	for _, vs := range log {
		for _, v := range vs {
			stored[string(v)]++
		}
	}
	var dupStored []string
	for k, n := range stored {
		if n > 1 {
			dupStored = append(dupStored, k)
		}
	}
	if len(dupStored) > 0 {
		t.Errorf("the log holds %d records more than once, e.g. %x", len(dupStored), dupStored[0])
	}
	var lost []string
	for k := range acked {
		if stored[k] == 0 {
			lost = append(lost, k)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged records are not in the log, e.g. %x", len(lost), lost[0])
	}
	// Both membership changes happened under load: the leaving agent had
	// served produces, and the joining one served some after it joined.
	if leaverProduces == 0 || requests(t, c, "Produce") == 0 {
		t.Errorf("produces served: %.0f by the leaving agent, %.0f by the joining one; want both under load", leaverProduces, requests(t, c, "Produce"))
	}
	t.Logf("join and leave under load: %d records acknowledged, %d failed; running consumer saw %d distinct; log holds %d; agent left in %v; served by the joiner: %.0f produces, %.0f fetches",
		nAcked, nFails, nSeen, total, left.Round(time.Millisecond), requests(t, c, "Produce"), requests(t, c, "Fetch"))
}

// endOffsets lists the end offsets of topic's partitions via addr.
func endOffsets(t *testing.T, addr, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(client(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("list end offsets of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	for _, o := range ends[topic] {
		out[o.Partition] = o.Offset
	}
	return out
}
