package bench

import (
	"context"
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

	m0, err := scrape(t.metricsURL)
	if err != nil {
		return r, err
	}

	// Phase 1: produce throughput.
	start := time.Now()
	if err := produceN(ctx, t.bootstrap, tputTopic, o.Records, o.RecordSz); err != nil {
		return r, fmt.Errorf("produce: %w", err)
	}
	el := time.Since(start)
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
		a, _ := scrape(t.metricsURL)
		time.Sleep(2 * time.Second)
		b, _ := scrape(t.metricsURL)
		r.idlePuts = b.puts - a.puts
	}

	// Phase 2: catch-up consume of everything produced in phase 1.
	start = time.Now()
	if err := consumeN(ctx, t.bootstrap, tputTopic, o.Records); err != nil {
		return r, fmt.Errorf("consume: %w", err)
	}
	r.consumeMiBs = r.producedBytes / (1 << 20) / time.Since(start).Seconds()

	// Phase 3: ack and end-to-end latency at a fixed rate.
	r.ack, r.e2e, err = latency(ctx, t.bootstrap, latTopic, o.Rate, o.LatencyD, o.RecordSz)
	if err != nil {
		return r, fmt.Errorf("latency: %w", err)
	}
	r.rssMiB = peakRSSMiB(t.pid)
	return r, nil
}

func producer(bootstrap []string, extra ...kgo.Opt) (*kgo.Client, error) {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(bootstrap...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerBatchMaxBytes(1 << 20),
		kgo.MaxBufferedRecords(1 << 16),
	}, extra...)
	return kgo.NewClient(opts...)
}

func produceN(ctx context.Context, bootstrap []string, topic string, n, size int) error {
	cl, err := producer(bootstrap)
	if err != nil {
		return err
	}
	defer cl.Close()
	val := make([]byte, size)
	for i := range val {
		val[i] = byte('a' + i%26)
	}
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
// (produce call to callback) and end-to-end latency (produce call to a
// tailing consumer receiving it).
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
					sent := time.Unix(0, int64(binary.BigEndian.Uint64(rec.Value)))
					mu.Lock()
					e2e = append(e2e, now.Sub(sent))
					mu.Unlock()
				}
				got++
			})
		}
	}()

	const tick = 5 * time.Millisecond
	perTick := float64(rate) * tick.Seconds()
	tk := time.NewTicker(tick)
	defer tk.Stop()
	var owed float64
	var firstErr atomic.Value
	sent := 0
	for sent < total {
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-tk.C:
		}
		owed += perTick
		for owed >= 1 && sent < total {
			owed--
			sent++
			val := make([]byte, size)
			start := time.Now()
			binary.BigEndian.PutUint64(val, uint64(start.UnixNano()))
			prod.Produce(ctx, &kgo.Record{Topic: topic, Value: val}, func(_ *kgo.Record, err error) {
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				l := time.Since(start)
				mu.Lock()
				ack = append(ack, l)
				mu.Unlock()
			})
		}
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

// counters are the agent metrics the report needs.
type counters struct{ puts, flushes, commits float64 }

// Metric names the harness reads from the agent's /metrics.
const (
	metricRequests     = "floe_objstore_operations_total"  // label op="put"
	metricHedges       = "floe_objstore_hedged_puts_total" // extra PUTs, billed too
	metricFlushes      = "floe_wal_flushes_total"
	metricCommits      = "floe_flush_commit_duration_seconds" // histogram: count = successful commits
	metricCommitErrors = "floe_flush_commit_errors_total"
)

func scrape(u string) (counters, error) {
	var c counters
	if u == "" {
		return c, nil
	}
	m, err := scrapeMetrics(u)
	if err != nil {
		return c, err
	}
	c.puts = m.sum(metricRequests, "op", "put") + m.sum(metricHedges)
	c.flushes = m.sum(metricFlushes)
	c.commits = m.sum(metricCommits) + m.sum(metricCommitErrors)
	return c, nil
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
