package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The workloads of the fleet parts (fleet.go), one run each.

const gib = 1 << 30

// Agent metrics the fleet parts read.
const (
	metricObjectOps = "floe_objstore_operations_total" // op="get", "get_range"
	metricServed    = "floe_agent_fetched_bytes_total"
)

// bucketGets is an agent's GETs so far, whole-object and ranged.
func (m metrics) bucketGets() float64 {
	return m.sum(metricObjectOps, "op", "get") + m.sum(metricObjectOps, "op", "get_range")
}

// runFleetGets measures bucket GETs per GiB served and per object to three
// consumers tailing a topic at the agent that writes it, at another agent,
// and catching up on an agent that has served nothing.
func runFleetGets(ctx context.Context, o Options) (map[string][]float64, error) {
	f, err := startFleet(ctx, o, "a", "b", "c")
	if err != nil {
		return nil, err
	}
	defer f.stop()
	a, b, c := f.agents[0], f.agents[1], f.agents[2]
	const topic = "gets"
	if err := createTopicAt(ctx, a.bootstrap, topic, getsPartitions); err != nil {
		return nil, err
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(a.bootstrap...), kgo.ClientID("producer,floe_az=a"),
		kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		return nil, err
	}
	defer prod.Close()
	out := map[string][]float64{}
	for _, at := range []struct {
		id, zone string
		t        *target
	}{{"tail-writer", "a", a}, {"tail-other", "b", b}} {
		gets, served, objects, err := tailPhase(ctx, prod, at.t, a, at.zone, topic)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", at.id, err)
		}
		perGiB, perObject := gets/(served/gib), gets/max(objects, 1)
		if at.id == "tail-writer" {
			out["tail-writer"] = append(out["tail-writer"], perGiB)
		} else {
			out["tail-other"] = append(out["tail-other"], perObject)
			out["tail-other-gib"] = append(out["tail-other-gib"], perGiB)
		}
		o.Logger.Info("bench: fleet-gets", "phase", at.id, "served_MiB", served/(1<<20),
			"gets", gets, "objects", objects, "gets_per_GiB", perGiB, "gets_per_object", perObject)
	}

	// Catch-up: three consumers read everything from the start on c.
	total, err := endOffsets(ctx, c.bootstrap, topic)
	if err != nil {
		return nil, err
	}
	s0, err := scrapeMetrics(c.metricsURL)
	if err != nil {
		return nil, err
	}
	cons, err := consumers(c, "catchup,floe_az=c", kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	defer closeAll(cons)
	start := time.Now()
	if err := readAll(ctx, cons, total); err != nil {
		return nil, fmt.Errorf("catch-up: %w", err)
	}
	took := time.Since(start)
	s1, err := scrapeMetrics(c.metricsURL)
	if err != nil {
		return nil, err
	}
	var objects float64
	for _, t := range f.agents {
		m, err := scrapeMetrics(t.metricsURL)
		if err != nil {
			return nil, err
		}
		objects += m.sum(metricFlushes)
	}
	gets := s1.bucketGets() - s0.bucketGets()
	served := s1.sum(metricServed) - s0.sum(metricServed)
	if served <= 0 {
		return nil, errors.New("catch-up: no bytes served")
	}
	out["catchup"] = append(out["catchup"], gets/max(objects, 1))
	out["catchup-gib"] = append(out["catchup-gib"], gets/(served/gib))
	o.Logger.Info("bench: fleet-gets", "phase", "catchup", "records", total, "took", took.Round(time.Millisecond),
		"served_MiB", served/(1<<20), "gets", gets, "objects", objects)
	return out, nil
}

// tailPhase runs tailLoad for getsTail with getsConsumers consumers at t
// in zone and returns t's GETs and bytes served meanwhile, and the objects
// the writer flushed.
func tailPhase(ctx context.Context, prod *kgo.Client, t, writer *target, zone, topic string) (gets, served, objects float64, err error) {
	atEnd, err := ConsumeFromEnd(ctx, t.bootstrap, topic)
	if err != nil {
		return 0, 0, 0, err
	}
	cons, err := consumers(t, "tailer,floe_az="+zone, atEnd)
	if err != nil {
		return 0, 0, 0, err
	}
	defer closeAll(cons)
	// Brief production first, so the consumers are at the tail and their
	// metadata is cached before counting starts.
	if _, err := TailLoad(ctx, prod, topic, cons, getsRecordSize, 300*time.Millisecond); err != nil {
		return 0, 0, 0, err
	}
	s0, w0, err := scrapeBoth(t, writer)
	if err != nil {
		return 0, 0, 0, err
	}
	n, err := TailLoad(ctx, prod, topic, cons, getsRecordSize, getsTail)
	if err != nil {
		return 0, 0, 0, err
	}
	s1, w1, err := scrapeBoth(t, writer)
	if err != nil {
		return 0, 0, 0, err
	}
	gets = s1.bucketGets() - s0.bucketGets()
	served = s1.sum(metricServed) - s0.sum(metricServed)
	objects = w1.sum(metricFlushes) - w0.sum(metricFlushes)
	if served <= 0 {
		return 0, 0, 0, fmt.Errorf("no bytes served (%d records produced)", n)
	}
	return gets, served, objects, nil
}

func scrapeBoth(x, y *target) (metrics, metrics, error) {
	mx, err := scrapeMetrics(x.metricsURL)
	if err != nil {
		return nil, nil, err
	}
	my, err := scrapeMetrics(y.metricsURL)
	return mx, my, err
}

// consumers returns getsConsumers clients of t (no group), each reading
// what consume says.
func consumers(t *target, clientID string, consume ...kgo.Opt) ([]*kgo.Client, error) {
	var out []*kgo.Client
	for range getsConsumers {
		opts := append([]kgo.Opt{kgo.SeedBrokers(t.bootstrap...), kgo.ClientID(clientID), kgo.FetchMaxWait(time.Second)}, consume...)
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			closeAll(out)
			return nil, err
		}
		out = append(out, cl)
	}
	return out, nil
}

func closeAll(cls []*kgo.Client) {
	for _, cl := range cls {
		cl.Close()
	}
}

// ConsumeFromEnd returns the option to consume every partition of topic
// from its end offsets as listed now, for consumers that must see
// everything produced from here on. A consumer left to find the end
// itself (ConsumeResetOffset AtEnd) lists it when its client gets to it,
// and a batch committed before that is behind it, never read: TailLoad
// then waits for records that never come (fleet-gets failed so in about
// one run in ten, the consumers at 16 records of 24: the producer's first
// batch committed 18 ms after they were created, before they had listed
// the end of its partition).
func ConsumeFromEnd(ctx context.Context, bootstrap []string, topic string) (kgo.Opt, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	at := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) { at[o.Partition] = kgo.NewOffset().At(o.Offset) })
	return kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: at}), nil
}

// TailLoad produces batches of 8 incompressible records of size bytes
// through prod for d, pausing 5 ms after each, while every consumer tails
// the topic, and waits until each consumer has every record. It returns
// how many records it produced. The consumers must be positioned before
// it is called (ConsumeFromEnd). tests/fleet's benchmarks share it.
func TailLoad(ctx context.Context, prod *kgo.Client, topic string, cons []*kgo.Client, size int, d time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var produced atomic.Int64
	produced.Store(-1) // unknown until production ends
	var wg sync.WaitGroup
	errs := make([]error, len(cons))
	for i, c := range cons {
		wg.Go(func() {
			var got int64
			for ctx.Err() == nil {
				if p := produced.Load(); p >= 0 && got >= p {
					return
				}
				pctx, pcancel := context.WithTimeout(ctx, 100*time.Millisecond)
				got += int64(c.PollFetches(pctx).NumRecords())
				pcancel()
			}
			errs[i] = fmt.Errorf("a tailing consumer got %d records of %d", got, produced.Load())
		})
	}
	val := make([]byte, size)
	_, _ = rand.Read(val) // incompressible, so bytes served are bytes stored
	var n int64
	for end := time.Now().Add(d); time.Now().Before(end); {
		rs := make([]*kgo.Record, 8)
		for i := range rs {
			rs[i] = &kgo.Record{Topic: topic, Value: val}
		}
		if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			cancel()
			wg.Wait()
			return n, fmt.Errorf("produce: %w", err)
		}
		n += int64(len(rs))
		time.Sleep(5 * time.Millisecond)
	}
	produced.Store(n)
	wg.Wait()
	return n, errors.Join(errs...)
}

// readAll waits until every consumer has read total records.
func readAll(ctx context.Context, cons []*kgo.Client, total int64) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(cons))
	for i, cl := range cons {
		wg.Go(func() {
			var got int64
			for got < total && ctx.Err() == nil {
				got += int64(cl.PollFetches(ctx).NumRecords())
			}
			if got < total {
				errs[i] = fmt.Errorf("a consumer got %d of %d records", got, total)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func endOffsets(ctx context.Context, bootstrap []string, topic string) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap...))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("list end offsets: %w", err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	return total, nil
}

func createTopicAt(ctx context.Context, bootstrap []string, topic string, partitions int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap...))
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, int32(partitions), -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

// runFleetLatency measures end-to-end latency to a consumer on the
// producer's agent and one on another agent, on the same records.
func runFleetLatency(ctx context.Context, o Options) (map[string][]float64, error) {
	f, err := startFleet(ctx, o, "a", "b", "c")
	if err != nil {
		return nil, err
	}
	defer f.stop()
	a, b := f.agents[0], f.agents[1]
	const topic = "latency"
	if err := createTopicAt(ctx, a.bootstrap, topic, 1); err != nil {
		return nil, err
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(a.bootstrap...), kgo.ClientID("producer,floe_az=a"), kgo.ProducerLinger(0))
	if err != nil {
		return nil, err
	}
	defer prod.Close()

	var cls []*kgo.Client
	defer func() { closeAll(cls) }()
	for _, at := range []struct {
		zone string
		t    *target
	}{{"a", a}, {"b", b}} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(at.t.bootstrap...), kgo.ClientID("consumer,floe_az="+at.zone), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		cls = append(cls, cl)
	}
	lats, err := EndToEnd(ctx, prod, topic, cls, latencyRecords, latencySpacing)
	if err != nil {
		return nil, err
	}
	out := map[string][]float64{}
	for i, name := range []string{"same", "other"} {
		p50, p99 := Quantile(lats[i], 0.50), Quantile(lats[i], 0.99)
		out["p50-"+name] = []float64{float64(p50) / float64(time.Millisecond)}
		out["p99-"+name] = []float64{float64(p99) / float64(time.Millisecond)}
		o.Logger.Info("bench: fleet-latency", "consumer", name, "records", len(lats[i]), "p50", p50, "p99", p99)
	}
	return out, nil
}

// EndToEnd measures end-to-end latency, produce call to receipt, to each
// of consumers (new clients consuming topic from its end): it produces
// warm-up records until every consumer receives, then n records spacing
// apart, each carrying its send time, and returns each consumer's n
// latencies. tests/fleet's benchmarks share it.
func EndToEnd(ctx context.Context, prod *kgo.Client, topic string, consumers []*kgo.Client, n int, spacing time.Duration) ([][]time.Duration, error) {
	type result struct {
		warmed atomic.Bool
		mu     sync.Mutex
		lat    []time.Duration
	}
	count := func(r *result) int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.lat)
	}
	results := make([]*result, len(consumers))
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	for i, cl := range consumers {
		r := &result{}
		results[i] = r
		wg.Go(func() {
			for cctx.Err() == nil {
				fs := cl.PollFetches(cctx)
				now := time.Now()
				fs.EachRecord(func(rec *kgo.Record) {
					r.warmed.Store(true)
					if len(rec.Value) < 8 {
						return
					}
					if sent := int64(binary.BigEndian.Uint64(rec.Value)); sent > 0 {
						r.mu.Lock()
						r.lat = append(r.lat, now.Sub(time.Unix(0, sent)))
						r.mu.Unlock()
					}
				})
			}
		})
	}
	warmed := func() bool {
		for _, r := range results {
			if !r.warmed.Load() {
				return false
			}
		}
		return true
	}
	// Warm-up records (send time 0) until every consumer is at the tail.
	for deadline := time.Now().Add(30 * time.Second); !warmed(); {
		if time.Now().After(deadline) {
			return nil, errors.New("the consumers did not reach the tail in 30s")
		}
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: make([]byte, 8)}).FirstErr(); err != nil {
			return nil, fmt.Errorf("produce: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var acks sync.WaitGroup
	var firstErr atomic.Value
	for range n {
		v := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
		acks.Add(1)
		prod.Produce(ctx, &kgo.Record{Topic: topic, Value: v}, func(_ *kgo.Record, err error) {
			defer acks.Done()
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
		})
		time.Sleep(spacing)
	}
	acks.Wait()
	if e := firstErr.Load(); e != nil {
		return nil, fmt.Errorf("produce: %w", e.(error))
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, r := range results {
		for count(r) < n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	cancel()
	wg.Wait()
	out := make([][]time.Duration, len(results))
	for i, r := range results {
		if len(r.lat) < n {
			return nil, fmt.Errorf("consumer %d received %d of %d records", i, len(r.lat), n)
		}
		out[i] = r.lat
	}
	return out, nil
}

// runFleetPartitions measures one agent's produce throughput with 16 and
// with 2,000 partitions in alternating pairs of rounds, and kfake's the
// same way between them.
func runFleetPartitions(ctx context.Context, o Options) (map[string][]float64, error) {
	e, err := newS3Env(ctx, o, "")
	if err != nil {
		return nil, err
	}
	defer e.drop()
	a, err := e.start(ctx, o) // `floe agent`'s flush settings
	if err != nil {
		return nil, err
	}
	defer a.stop()
	kf, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0))
	if err != nil {
		return nil, err
	}
	defer kf.Close()
	kadmCl, err := kgo.NewClient(kgo.SeedBrokers(kf.ListenAddrs()...))
	if err != nil {
		return nil, err
	}
	defer kadmCl.Close()

	out := map[string][]float64{}
	for p := range partsPairs {
		order := []int{partsFew, partsMany}
		if p%2 == 1 {
			order = []int{partsMany, partsFew}
		}
		for _, sys := range []struct {
			name, prefix string
			bootstrap    []string
		}{{"floe", "", a.bootstrap}, {"kfake", "kfake-", kf.ListenAddrs()}} {
			rates := map[int]float64{}
			firstAcks := map[int]time.Duration{}
			for _, n := range order {
				// kfake's deleted topics are garbage of this process:
				// collect it now rather than during the next round.
				runtime.GC()
				topic := fmt.Sprintf("parts-%d-%d", n, p)
				if err := createTopicAt(ctx, sys.bootstrap, topic, n); err != nil {
					return nil, err
				}
				r, err := ProducePartitions(ctx, sys.bootstrap, topic, n, partsRecordSize, partsWarm, partsRound)
				if err != nil {
					return nil, fmt.Errorf("%s%d partitions: %w", sys.prefix, n, err)
				}
				rates[n] = r.Rate
				firstAcks[n] = r.FirstAck
				if sys.prefix == "kfake-" {
					// kfake keeps every record in memory.
					if _, err := kadm.NewClient(kadmCl).DeleteTopics(ctx, topic); err != nil {
						return nil, fmt.Errorf("kfake: delete topic: %w", err)
					}
				}
			}
			out[sys.prefix+"few"] = append(out[sys.prefix+"few"], rates[partsFew])
			out[sys.prefix+"many"] = append(out[sys.prefix+"many"], rates[partsMany])
			out[sys.prefix+"ratio"] = append(out[sys.prefix+"ratio"], pairRatios([]float64{rates[partsFew]}, []float64{rates[partsMany]})...)
			out[sys.prefix+"first-few"] = append(out[sys.prefix+"first-few"], float64(firstAcks[partsFew].Microseconds())/1e3)
			out[sys.prefix+"first-many"] = append(out[sys.prefix+"first-many"], float64(firstAcks[partsMany].Microseconds())/1e3)
			o.Logger.Info("bench: fleet-partitions", "system", sys.name, "pair", p, "few", rates[partsFew], "many", rates[partsMany])
		}
	}
	return out, nil
}

// ProducePartitions produces records of size bytes round-robin over
// topic's partitions through a new idempotent client for warm+d, keeping
// the producer's buffer (franz-go's default, 50,000 records) full, and
// returns the steady rate: the records acknowledged during the last d,
// per second. The first warm is left out: a new topic's first commits
// create its producer state and warm the agent's caches, a cost paid once
// per producer and partition, not per record; FirstAck reports it. extra
// adds client options (hooks). tests/fleet's benchmarks share it.
//
// Acknowledgements come in bursts: a commit answers every produce request
// whose records it holds, and with 2,000 partitions each request carries
// 5,000–15,000 records and a commit often several requests. The acks
// counted at two fixed instants are off by up to a burst, up to ±25% of
// the rate over a 2 s window, which is what the rate used to be. The
// window therefore runs from the first ack at or after warm to the first
// ack at or after warm+d, and counts the acks between those two instants:
// a whole number of ack cycles over the time they took.
func ProducePartitions(ctx context.Context, bootstrap []string, topic string, partitions, size int, warm, d time.Duration, extra ...kgo.Opt) (PartitionsResult, error) {
	val := make([]byte, size)
	_, _ = rand.Read(val)
	opts := append([]kgo.Opt{kgo.SeedBrokers(bootstrap...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5 * time.Millisecond), kgo.ProducerBatchCompression(kgo.NoCompression())}, extra...)
	prod, err := kgo.NewClient(opts...)
	if err != nil {
		return PartitionsResult{}, err
	}
	defer prod.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var acks sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	// The client calls back one record at a time, so the lock is not
	// contended.
	var mu sync.Mutex
	w := ackWindow{from: warm, to: warm + d}
	start := time.Now()
	for i := 0; time.Since(start) < warm+d; i++ {
		acks.Add(1)
		prod.Produce(ctx, &kgo.Record{Topic: topic, Partition: int32(i % partitions), Value: val}, func(_ *kgo.Record, err error) {
			defer acks.Done()
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			mu.Lock()
			w.ack(time.Since(start))
			mu.Unlock()
		})
	}
	acks.Wait()
	r := PartitionsResult{N: w.n, Took: time.Since(start), FirstAck: w.first, Rate: w.rate(time.Since(start))}
	if failed.Load() > 0 {
		return r, fmt.Errorf("%d records failed: %w", failed.Load(), firstErr.Load().(error))
	}
	return r, nil
}

// ackWindow measures a rate of acks that come in bursts: between the first
// ack at or after from and the first at or after to, the acks counted over
// the time between those two instants, a whole number of ack cycles.
type ackWindow struct {
	from, to time.Duration
	n        int64
	first    time.Duration
	ends     [2]time.Duration // the instants of the window's two ends
	counts   [2]int64         // the acks before each end
	seen     int              // ends found
}

// ack counts one ack at time at since the start; acks come in time order.
func (w *ackWindow) ack(at time.Duration) {
	if w.n == 0 {
		w.first = at
	}
	for ; w.seen < 2 && at >= [2]time.Duration{w.from, w.to}[w.seen]; w.seen++ {
		w.ends[w.seen], w.counts[w.seen] = at, w.n
	}
	w.n++
}

// rate is the acks per second in the window; if one ack cycle outlasted
// it, the average over the whole run of length took.
func (w *ackWindow) rate(took time.Duration) float64 {
	if w.seen < 2 || w.ends[1] <= w.ends[0] {
		return float64(w.n) / took.Seconds()
	}
	return float64(w.counts[1]-w.counts[0]) / (w.ends[1] - w.ends[0]).Seconds()
}

// PartitionsResult is what ProducePartitions measured.
type PartitionsResult struct {
	Rate     float64       // records acknowledged per second after the warm-up
	N        int64         // records acknowledged in all
	Took     time.Duration // from the first produce to the last ack
	FirstAck time.Duration // from the first produce to the first ack
}
