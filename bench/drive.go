package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const partitions = 16

// idleWindow is how long the harness counts PUTs without traffic.
const idleWindow = 2 * time.Second

var topicSeq atomic.Int64

// drive runs the workload against one started target.
func drive(ctx context.Context, o Options, t *target, s setup) (run, error) {
	var r run
	admin, err := kgo.NewClient(kgo.SeedBrokers(t.bootstrap...))
	if err != nil {
		return r, err
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	n := topicSeq.Add(1)
	tputTopic := fmt.Sprintf("bench-tput-%d-%d", time.Now().UnixNano(), n)
	latTopic := fmt.Sprintf("bench-lat-%d-%d", time.Now().UnixNano(), n)
	for _, topic := range []string{tputTopic, latTopic} {
		resp, err := adm.CreateTopic(ctx, partitions, 1, nil, topic)
		if err != nil {
			return r, fmt.Errorf("create topic: %w", err)
		}
		if resp.Err != nil {
			return r, fmt.Errorf("create topic %s: %w", topic, resp.Err)
		}
	}

	// Phase 1: produce throughput.
	prod, err := producer(t.bootstrap)
	if err != nil {
		return r, err
	}
	m0, el, err := timedProduce(ctx, prod, t.metricsURL, tputTopic, o.Records, o.RecordSz)
	prod.Close()
	if err != nil {
		return r, err
	}
	r.producedBytes = float64(o.Records * o.RecordSz)
	r.produceMiBs = r.producedBytes / (1 << 20) / el.Seconds()

	m1, err := scrape(t.metricsURL)
	if err != nil {
		return r, err
	}
	r.puts = m1.puts - m0.puts
	r.flushes = m1.flushes - m0.flushes
	r.commits = m1.commits - m0.commits

	// Idle: no PUTs expected once the last flush has landed.
	if t.metricsURL != "" {
		time.Sleep(time.Second)
		a, err := scrape(t.metricsURL)
		if err != nil {
			return r, err
		}
		time.Sleep(idleWindow)
		b, err := scrape(t.metricsURL)
		if err != nil {
			return r, err
		}
		r.idlePuts = b.allPuts - a.allPuts
	}

	// Phase 2: catch-up consume of everything produced in phase 1.
	// The topic also holds the warm-up records.
	start := time.Now()
	if err := consumeN(ctx, t.bootstrap, tputTopic, o.Records+partitions); err != nil {
		return r, fmt.Errorf("consume: %w", err)
	}
	r.consumeMiBs = float64((o.Records+partitions)*o.RecordSz) / (1 << 20) / time.Since(start).Seconds()

	// Phase 3: ack and end-to-end latency at a fixed rate.
	m2, err := scrape(t.metricsURL)
	if err != nil {
		return r, err
	}
	r.ack, r.e2e, err = latency(ctx, t.bootstrap, latTopic, o.Rate, o.LatencyD*time.Duration(max(s.latencyRuns, 1)), o.RecordSz)
	if err != nil {
		return r, fmt.Errorf("latency: %w", err)
	}
	m3, err := scrape(t.metricsURL)
	if err != nil {
		return r, err
	}
	r.latPuts, r.latFlushes = m3.puts-m2.puts, m3.flushes-m2.flushes
	r.rssMiB = peakRSSMiB(t.pid)
	return r, nil
}

// producer is the harness's franz-go producer: idempotent (franz-go's
// default), acks=all, uncompressed. Values are incompressible anyway
// (payload), so without compression the bytes produced are the bytes the
// broker receives, stores and serves: what MiB/s and PUTs per GiB count.
func producer(bootstrap []string, extra ...kgo.Opt) (*kgo.Client, error) {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(bootstrap...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerBatchMaxBytes(1 << 20),
		kgo.MaxBufferedRecords(1 << 16),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	}, extra...)
	return kgo.NewClient(opts...)
}

// payload returns a record value of size random bytes. Kafka clients
// compress by default (franz-go: snappy), and a repeated pattern
// compresses twentyfold: the broker would then handle a twentieth of the
// bytes the figures are counted in.
func payload(size int) []byte {
	val := make([]byte, size)
	_, _ = rand.Read(val)
	return val
}

// warmUp produces one record to each of the topic's partitions (the
// producer partitions round-robin) and waits for their acks.
func warmUp(ctx context.Context, cl *kgo.Client, topic string, val []byte) error {
	rs := make([]*kgo.Record, partitions)
	for i := range rs {
		rs[i] = &kgo.Record{Topic: topic, Value: val}
	}
	return cl.ProduceSync(ctx, rs...).FirstErr()
}

// timedProduce produces n records of size bytes through cl after a
// warm-up record per partition, and returns the agent's counters before
// the n and the time they took. The warm-up connects the producer, takes
// its producer id and creates its state on every partition: costs paid
// once per producer, which would otherwise be a large share of a phase
// lasting about a second.
func timedProduce(ctx context.Context, cl *kgo.Client, metricsURL, topic string, n, size int) (counters, time.Duration, error) {
	val := payload(size)
	if err := warmUp(ctx, cl, topic, val); err != nil {
		return counters{}, 0, fmt.Errorf("produce: warm-up: %w", err)
	}
	m0, err := scrape(metricsURL)
	if err != nil {
		return counters{}, 0, err
	}
	start := time.Now()
	if err := produceN(ctx, cl, topic, n, val); err != nil {
		return counters{}, 0, fmt.Errorf("produce: %w", err)
	}
	return m0, time.Since(start), nil
}

// produceN produces n records of val through cl and waits for every ack.
func produceN(ctx context.Context, cl *kgo.Client, topic string, n int, val []byte) error {
	var firstErr atomic.Value
	for i := 0; i < n; i++ {
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: val}, func(_ *kgo.Record, err error) {
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if e := firstErr.Load(); e != nil {
		return e.(error)
	}
	return nil
}

func consumeN(ctx context.Context, bootstrap []string, topic string, n int) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(8<<20),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("consumed %d of %d: %w", got, n, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return ferr
		}
		got += fs.NumRecords()
	}
	return nil
}

// latency produces at a fixed rate and measures each record's ack latency
// (due time to the produce callback) and end-to-end latency (due time to a
// tailing consumer receiving it), the due time being the record's slot in
// the fixed-rate schedule (see schedule).
func latency(ctx context.Context, bootstrap []string, topic string, rate int, d time.Duration, size int) (ack, e2e []time.Duration, err error) {
	cons, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	if err != nil {
		return nil, nil, err
	}
	defer cons.Close()
	// 5 ms is the Java client's linger.ms default since Kafka 4.0.
	prod, err := producer(bootstrap, kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return nil, nil, err
	}
	defer prod.Close()

	total := int(float64(rate) * d.Seconds())
	var mu sync.Mutex
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		got := 0
		for got < total {
			fs := cons.PollFetches(cctx)
			if cctx.Err() != nil {
				return
			}
			now := time.Now()
			fs.EachRecord(func(rec *kgo.Record) {
				if len(rec.Value) >= 8 {
					due := time.Unix(0, int64(binary.BigEndian.Uint64(rec.Value)))
					mu.Lock()
					e2e = append(e2e, now.Sub(due))
					mu.Unlock()
				}
				got++
			})
		}
	}()

	base := payload(size)
	var firstErr atomic.Value
	sched := schedule{start: time.Now(), rate: float64(rate)}
	err = sched.run(ctx, total, time.Now, sleepCtx, func(_ int, due time.Time) {
		val := append([]byte(nil), base...)
		binary.BigEndian.PutUint64(val, uint64(due.UnixNano()))
		prod.Produce(ctx, &kgo.Record{Topic: topic, Value: val}, func(_ *kgo.Record, err error) {
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			l := time.Since(due)
			mu.Lock()
			ack = append(ack, l)
			mu.Unlock()
		})
	})
	if err != nil {
		return nil, nil, err
	}
	if err := prod.Flush(ctx); err != nil {
		return nil, nil, err
	}
	if e := firstErr.Load(); e != nil {
		return nil, nil, e.(error)
	}
	select {
	case <-consumed:
	case <-time.After(30 * time.Second):
		return nil, nil, fmt.Errorf("tailing consumer did not receive all %d records", total)
	}
	mu.Lock()
	defer mu.Unlock()
	return ack, e2e, nil
}

// schedule is the latency phase's fixed-rate send schedule: record i is
// due at start + i/rate. Latencies are measured from the due time, not
// from when the record reached the client: a harness that falls behind
// (descheduled on a loaded machine, or blocked by the client) then counts
// the delay in the records it sends late and catches up, rather than
// sending fewer records and timing them from a later start, which would
// leave the stall out of the samples (coordinated omission).
type schedule struct {
	start time.Time
	rate  float64 // records per second
}

// at is record i's due time.
func (s schedule) at(i int) time.Time {
	return s.start.Add(time.Duration(float64(i) * float64(time.Second) / s.rate))
}

// run calls send for records 0 to total-1 in order, each with its due
// time, as soon as it is due: after a stall, every record that fell due
// meanwhile goes at once. now and sleep are the clock (time.Now and
// sleepCtx but in tests).
func (s schedule) run(ctx context.Context, total int, now func() time.Time, sleep func(context.Context, time.Duration) error, send func(i int, due time.Time)) error {
	for i := range total {
		due := s.at(i)
		if wait := due.Sub(now()); wait > 0 {
			if err := sleep(ctx, wait); err != nil {
				return err
			}
		} else if err := ctx.Err(); err != nil {
			return err
		}
		send(i, due)
	}
	return nil
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// counters are the agent metrics the report needs.
type counters struct {
	// allPuts are the PUT requests the store bills: every retry attempt,
	// hedge and multipart request (create, parts, complete, abort).
	allPuts float64
	// puts are allPuts less compaction's: the flushes' PUT requests.
	puts             float64
	flushes, commits float64
}

// Metric names the harness reads from the agent's /metrics.
const (
	metricRequests       = "floe_objstore_requests_total" // label op="put": billed requests, counted by the backend
	metricCompactionPuts = "floe_compaction_puts_total"
	metricFlushes        = "floe_wal_flushes_total"
	metricCommits        = "floe_flush_commit_duration_seconds" // histogram: count = successful commits
	metricCommitErrors   = "floe_flush_commit_errors_total"
)

func scrape(u string) (counters, error) {
	if u == "" {
		return counters{}, nil
	}
	m, err := scrapeMetrics(u)
	if err != nil {
		return counters{}, err
	}
	return m.counters(), nil
}

func (m metrics) counters() counters {
	var c counters
	c.allPuts = m.sum(metricRequests, "op", "put")
	// Compaction puts through the same bucket (every 3 s in floe dev):
	// its merged segments are not flushes. Each of its Put calls is taken
	// as one request, so a retried, hedged or multipart compaction put
	// leaves its extra requests on the flushes' side: an overcount, never
	// an undercount.
	c.puts = max(c.allPuts-m.sum(metricCompactionPuts), 0)
	c.flushes = m.sum(metricFlushes)
	c.commits = m.sum(metricCommits) + m.sum(metricCommitErrors)
	return c
}

// metrics is one scrape of an agent's /metrics.
type metrics map[string]*dto.MetricFamily

func scrapeMetrics(u string) (metrics, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", u, err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", u, err)
	}
	return fams, nil
}

// sum adds the samples of family name whose labels include the label
// name/value pairs kv: a counter's, gauge's or untyped value, a histogram's
// sample count.
func (m metrics) sum(name string, kv ...string) float64 {
	f, ok := m[name]
	if !ok {
		return 0
	}
	var s float64
samples:
	for _, x := range f.GetMetric() {
		for i := 0; i+1 < len(kv); i += 2 {
			match := false
			for _, lp := range x.GetLabel() {
				if lp.GetName() == kv[i] && lp.GetValue() == kv[i+1] {
					match = true
				}
			}
			if !match {
				continue samples
			}
		}
		switch {
		case x.GetCounter() != nil:
			s += x.GetCounter().GetValue()
		case x.GetGauge() != nil:
			s += x.GetGauge().GetValue()
		case x.GetHistogram() != nil:
			s += float64(x.GetHistogram().GetSampleCount())
		case x.GetUntyped() != nil:
			s += x.GetUntyped().GetValue()
		}
	}
	return s
}
