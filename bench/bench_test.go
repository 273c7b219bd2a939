package bench

import (
	"context"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	in := []float64{3, 1, 2}
	median(in)
	if in[0] != 3 || in[1] != 1 {
		t.Errorf("median reordered its input: %v", in)
	}
}

func TestQuantile(t *testing.T) {
	ms := func(n int) []time.Duration { // n, n-1, …, 1 ms
		var ds []time.Duration
		for i := n; i >= 1; i-- {
			ds = append(ds, time.Duration(i)*time.Millisecond)
		}
		return ds
	}
	for _, tc := range []struct {
		n    int
		q    float64
		want int // ms: the rank, as the samples are 1…n ms
	}{
		{100, 0.50, 50},
		{100, 0.99, 99},
		{100, 0.07, 7}, // 0.07·100 is 7.000000000000001 in floating point
		{101, 0.50, 51},
		{150, 0.99, 149}, // 148 would leave 98.7% of the samples at or below
		{400, 0.99, 396},
		{10, 0.99, 10},
		{40000, 0.99, 39600},
		{1, 0.99, 1},
		{1, 0.50, 1},
		{5, 0, 1},
		{5, 1, 5},
	} {
		if got := Quantile(ms(tc.n), tc.q); got != time.Duration(tc.want)*time.Millisecond {
			t.Errorf("Quantile of 1…%d ms at %v = %v, want %d ms", tc.n, tc.q, got, tc.want)
		}
	}
	if got := Quantile(nil, 0.99); got != 0 {
		t.Errorf("p99 of nothing = %v", got)
	}
	in := ms(3)
	Quantile(in, 0.5)
	if in[0] != 3*time.Millisecond {
		t.Errorf("Quantile reordered its input: %v", in)
	}
}

// TestScheduleCountsStalls: a sender that stalls does not move the
// schedule; the records that fell due meanwhile go at once, carrying their
// due times, so their latency includes the stall, and the run ends when
// the schedule says.
func TestScheduleCountsStalls(t *testing.T) {
	t0 := time.Unix(1000, 0)
	clock := t0
	now := func() time.Time { return clock }
	sleep := func(_ context.Context, d time.Duration) error {
		clock = clock.Add(d)
		return nil
	}
	s := schedule{start: t0, rate: 1000} // one record per ms
	const total, stallAt, stall = 100, 10, 50 * time.Millisecond
	var dues, sent []time.Time
	err := s.run(context.Background(), total, now, sleep, func(i int, due time.Time) {
		if i != len(dues) {
			t.Fatalf("record %d sent after %d", i, len(dues))
		}
		dues = append(dues, due)
		sent = append(sent, clock)
		if i == stallAt {
			clock = clock.Add(stall) // the harness is descheduled
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dues) != total {
		t.Fatalf("sent %d records, want %d", len(dues), total)
	}
	for i, due := range dues {
		if want := t0.Add(time.Duration(i) * time.Millisecond); !due.Equal(want) {
			t.Fatalf("record %d due at +%v, want +%v", i, due.Sub(t0), want.Sub(t0))
		}
		if sent[i].Before(due) {
			t.Fatalf("record %d sent %v early", i, due.Sub(sent[i]))
		}
	}
	// The first record after the stall is 49 ms late and counts it.
	if late := sent[stallAt+1].Sub(dues[stallAt+1]); late != stall-time.Millisecond {
		t.Errorf("record %d sent %v after its due time, want %v", stallAt+1, late, stall-time.Millisecond)
	}
	// The schedule caught up: the last record went when due.
	if got, want := sent[total-1].Sub(t0), time.Duration(total-1)*time.Millisecond; got != want {
		t.Errorf("last record sent at +%v, want +%v", got, want)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.run(ctx, total, now, sleep, func(int, time.Time) {}); err == nil {
		t.Error("run with a cancelled context: no error")
	}
}

// TestProducerSendsPayloadBytes: the throughput figures count record
// bytes, so the producer must put on the wire (and the broker store) as
// many bytes as the records hold.
func TestProducerSendsPayloadBytes(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := createTopicAt(ctx, c.ListenAddrs(), "t", partitions); err != nil {
		t.Fatal(err)
	}
	h := &batchBytes{}
	cl, err := producer(c.ListenAddrs(), kgo.WithHooks(h))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n, size = 2000, 1024
	val := payload(size)
	if err := warmUp(ctx, cl, "t", val); err != nil {
		t.Fatal(err)
	}
	if err := produceN(ctx, cl, "t", n, val); err != nil {
		t.Fatal(err)
	}
	// franz-go calls the hook from a goroutine of its own once a
	// response is in, racing the records' promises, which produceN waits
	// for: the last batches' calls may still be coming.
	want := int64(n + partitions)
	for deadline := time.Now().Add(5 * time.Second); h.records.Load() < want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := h.records.Load(); got != want {
		t.Errorf("%d records produced, want %d", got, want)
	}
	if got, min := h.wire.Load(), int64((n+partitions)*size); got < min {
		t.Errorf("%d bytes on the wire for %d records of %d B (%.1f%%)", got, n+partitions, size, 100*float64(got)/float64(min))
	}
}

// batchBytes counts the record batches a producer writes.
type batchBytes struct{ records, wire atomic.Int64 }

var _ kgo.HookProduceBatchWritten = (*batchBytes)(nil)

func (h *batchBytes) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	h.records.Add(int64(m.NumRecords))
	h.wire.Add(int64(m.CompressedBytes))
}

func TestPairRatios(t *testing.T) {
	got := pairRatios([]float64{100, 0, 200, 50}, []float64{80, 10, 100})
	want := []float64{80, 50} // the zero side is dropped, the unpaired one too
	if len(got) != len(want) {
		t.Fatalf("pairRatios = %v, want %v", got, want)
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			t.Errorf("pairRatios[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestFormatValue(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		prec int
		want string
	}{
		{0, 0, "0"},
		{999, 0, "999"},
		{1000, 0, "1,000"},
		{1234567.6, 0, "1,234,568"},
		{-12345, 0, "-12,345"},
		{1.005, 2, "1.00"},
		{52.19, 1, "52.2"},
	} {
		if got := formatValue(tc.v, tc.prec); got != tc.want {
			t.Errorf("formatValue(%v, %d) = %q, want %q", tc.v, tc.prec, got, tc.want)
		}
	}
	if got := formatValues([]float64{79.4, 43, 88}, 0); got != "79; 43; 88" {
		t.Errorf("formatValues = %q", got)
	}
}

func TestFleetMarkdown(t *testing.T) {
	o := DefaultOptions()
	o.Runs = 2
	if got := FleetMarkdown(nil, o); got != "" {
		t.Errorf("no rows: %q, want nothing", got)
	}
	md := FleetMarkdown([]FleetRow{
		{Part: partGets, Figure: "GETs per GiB", Target: "0", Values: []float64{0, 0}},
		{Part: partPartitions, Figure: "2,000 vs 16", Target: "≥ 80%", Unit: "%", Values: []float64{90, 70, 85}},
		{Part: partLatency, Skipped: "PostgreSQL/MinIO not configured"},
		{Part: partLatency, Figure: "p99", Target: "–", Unit: " ms", Prec: 1},
		{Part: partLatency, Failed: "run 2 failed: a | b\nc"},
	}, o)
	for _, want := range []string{
		"| part | figure | target | measured | values |",
		"| fleet-gets | GETs per GiB | 0 | 0 | 0; 0 |",
		"| fleet-partitions | 2,000 vs 16 | ≥ 80% | 85% | 90; 70; 85 |",
		"| fleet-latency | skipped: PostgreSQL/MinIO not configured |",
		"| fleet-latency | p99 | – | – |  |",
		"| fleet-latency | run 2 failed: a / b c |",
		"- **fleet-partitions**: ",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("fleet table lacks %q:\n%s", want, md)
		}
	}
}

func TestUnknownSetups(t *testing.T) {
	o := DefaultOptions()
	o.Setups = []string{"kfake", "fleet-gets", "fleet-latency", "fleet-partitions", "floe-pg-minio", "nope"}
	if got := unknownSetups(o); len(got) != 1 || got[0] != "nope" {
		t.Errorf("unknownSetups = %v, want [nope]", got)
	}
}

func TestMetricsSum(t *testing.T) {
	const text = `# TYPE floe_objstore_operations_total counter
floe_objstore_operations_total{op="get"} 3
floe_objstore_operations_total{op="get_range"} 4
floe_objstore_operations_total{op="put"} 10
# TYPE floe_agent_live_agents gauge
floe_agent_live_agents 3
# TYPE floe_flush_commit_duration_seconds histogram
floe_flush_commit_duration_seconds_bucket{le="+Inf"} 7
floe_flush_commit_duration_seconds_sum 0.5
floe_flush_commit_duration_seconds_count 7
`
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics(fams)
	for _, tc := range []struct {
		name string
		kv   []string
		want float64
	}{
		{"floe_objstore_operations_total", nil, 17},
		{"floe_objstore_operations_total", []string{"op", "put"}, 10},
		{"floe_agent_live_agents", nil, 3},
		{"floe_flush_commit_duration_seconds", nil, 7},
		{"floe_missing_total", nil, 0},
	} {
		if got := m.sum(tc.name, tc.kv...); got != tc.want {
			t.Errorf("sum(%s, %v) = %v, want %v", tc.name, tc.kv, got, tc.want)
		}
	}
	if got := m.bucketGets(); got != 7 {
		t.Errorf("bucketGets = %v, want 7", got)
	}
}

// TestCountersPuts: PUTs per flush are the billed PUT requests (retries,
// hedges and multipart requests all counted by the backend), less
// compaction's puts; idle PUTs are all of them.
func TestCountersPuts(t *testing.T) {
	const text = `# TYPE floe_objstore_requests_total counter
floe_objstore_requests_total{op="put"} 27
floe_objstore_requests_total{op="get"} 5
# TYPE floe_objstore_operations_total counter
floe_objstore_operations_total{op="put"} 20
# TYPE floe_objstore_hedged_puts_total counter
floe_objstore_hedged_puts_total 2
# TYPE floe_compaction_puts_total counter
floe_compaction_puts_total 3
# TYPE floe_wal_flushes_total counter
floe_wal_flushes_total 17
`
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	c := metrics(fams).counters()
	if c.allPuts != 27 || c.puts != 24 || c.flushes != 17 {
		t.Errorf("counters = %+v, want allPuts 27, puts 24, flushes 17", c)
	}
}

// TestTailLoadConsumersFromEnd: consumers positioned by ConsumeFromEnd
// read a batch committed before they ask the broker anything. From their
// creation every ListOffsets is held until the producer's first record is
// acknowledged, as happened by chance when fleet-gets' tailing consumers
// stopped at 16 records of 24: consumers that find the end themselves
// (ConsumeResetOffset AtEnd) then start after that batch and TailLoad
// waits for it in vain.
func TestTailLoadConsumersFromEnd(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	const topic = "t"
	if err := createTopicAt(ctx, c.ListenAddrs(), topic, 4); err != nil {
		t.Fatal(err)
	}
	acked := &firstAck{ch: make(chan struct{})}
	defer acked.close()
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(0), kgo.WithHooks(acked))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()

	atEnd, err := ConsumeFromEnd(ctx, c.ListenAddrs(), topic)
	if err != nil {
		t.Fatal(err)
	}
	c.ControlKey(int16(kmsg.ListOffsets), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { <-acked.ch })
		return nil, nil, false
	})
	var cons []*kgo.Client
	defer func() { closeAll(cons) }()
	for range 3 {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), atEnd, kgo.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		cons = append(cons, cl)
	}
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	n, err := TailLoad(tctx, prod, topic, cons, 100, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("nothing produced")
	}
}

// firstAck closes ch once a produced record is acknowledged.
type firstAck struct {
	ch   chan struct{}
	once sync.Once
}

var _ kgo.HookProduceRecordUnbuffered = (*firstAck)(nil)

func (h *firstAck) OnProduceRecordUnbuffered(_ *kgo.Record, err error) {
	if err == nil {
		h.close()
	}
}

func (h *firstAck) close() { h.once.Do(func() { close(h.ch) }) }

func TestMarkdownPutsPerFlush(t *testing.T) {
	runs := []run{
		{puts: 10, flushes: 10, latPuts: 44, latFlushes: 40, producedBytes: 1 << 30},
		{puts: 12, flushes: 10, latPuts: 40, latFlushes: 40, producedBytes: 1 << 30},
		{puts: 10, flushes: 10, latPuts: 48, latFlushes: 40, producedBytes: 1 << 30},
	}
	r := summarize(setup{name: "floe-s3-standard"}, runs)
	if r.PutsFlush != 1 || r.LatPutsFlush != 1.1 {
		t.Errorf("PUTs per flush %v / %v, want the medians 1 / 1.1", r.PutsFlush, r.LatPutsFlush)
	}
	md := Markdown([]Result{{Setup: "kfake"}, r}, DefaultOptions(), time.Now())
	for _, want := range []string{"| PUTs/GiB | PUTs/flush | idle PUTs |", "| 10 | 1.00 / 1.10 | 0 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
}

// TestAckWindowWholeCycles feeds ackWindow bursts of acks, one burst per
// produce request as with 2,000 partitions, at every phase against the
// window: it measures the true rate within 1%, where counting the acks at
// the window's fixed ends (what ProducePartitions did) is off by up to a
// burst over the window, 30% here.
func TestAckWindowWholeCycles(t *testing.T) {
	const (
		burst  = 50_000
		period = 700 * time.Millisecond
		from   = time.Second
		to     = 3 * time.Second
	)
	want := burst / period.Seconds()
	worstFixed := 0.0
	for phase := time.Duration(0); phase < period; phase += 10 * time.Millisecond {
		w := ackWindow{from: from, to: to}
		var atFrom, atTo int64
		for at := phase; at < to+2*period; at += period {
			for i := 0; i < burst; i++ {
				// A burst is spread over 5 ms.
				ts := at + time.Duration(i)*5*time.Millisecond/burst
				if ts < from {
					atFrom++
				}
				if ts < to {
					atTo++
				}
				w.ack(ts)
			}
		}
		if got := w.rate(to + 2*period); math.Abs(got-want)/want > 0.01 {
			t.Errorf("phase %v: rate %.0f, want %.0f", phase, got, want)
		}
		fixed := float64(atTo-atFrom) / (to - from).Seconds()
		worstFixed = max(worstFixed, math.Abs(fixed-want)/want)
	}
	t.Logf("counting at fixed instants was off by up to %.0f%%", 100*worstFixed)
	if worstFixed < 0.2 {
		t.Errorf("fixed-instant counting off by only %.0f%%: the case does not show the bursts' effect", 100*worstFixed)
	}

	// An ack cycle longer than the window: the run's average.
	w := ackWindow{from: from, to: to}
	for i := 0; i < 10; i++ {
		w.ack(500 * time.Millisecond)
	}
	for i := 0; i < 10; i++ {
		w.ack(4 * time.Second)
	}
	if got := w.rate(5 * time.Second); got != 4 {
		t.Errorf("rate over one long cycle %v, want 4 (20 acks in 5 s)", got)
	}
}
