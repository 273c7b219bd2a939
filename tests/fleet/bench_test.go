package fleet

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/bench"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/internal/testenv"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/tests/floetest"
	"github.com/floebroker/floe/wal"
)

// The fleet benchmarks of issue 6, on PostgreSQL + MinIO (the services
// of scripts/services.sh). Each does its work once per run, so run them
// with -benchtime 1x:
//
//	go test -run - -bench Fleet -benchtime 1x -v ./tests/fleet/
//
// The figures are reported as custom metrics and logged. `make bench`
// (package bench) measures the same workloads against `floe agent`
// subprocesses, as operators run them; these run the agents in-process,
// with per-agent bucket and metric views, for profiling (-cpuprofile) and
// for detail a subprocess does not expose.

const gib = 1 << 30

// benchMember starts an agent in zone with its own GET-counting view of
// the shared bucket, so each agent's reads are counted apart.
func benchMember(tb testing.TB, cat catalog.Catalog, base objstore.Bucket, zone string) (*member, *rangeBucket) {
	return benchMemberFlush(tb, cat, base, zone, 0)
}

// benchMemberFlush is benchMember with a WAL flush interval (0: floetest's
// short test default).
func benchMemberFlush(tb testing.TB, cat catalog.Catalog, base objstore.Bucket, zone string, flush time.Duration) (*member, *rangeBucket) {
	tb.Helper()
	cb := &rangeBucket{countingBucket: &countingBucket{Bucket: base}}
	reg := prometheus.NewRegistry()
	a := floetest.Start(tb, floetest.Options{FlushInterval: flush, Catalog: cat, Bucket: cb, Registerer: reg, Config: func(c *agent.Config) {
		c.Zone = zone
		c.HeartbeatInterval = 100 * time.Millisecond
		c.AgentTTL = time.Second
	}})
	return &member{Agent: a, zone: zone, reg: reg}, cb
}

// rangeBucket also counts the GETs of each byte range, to tell one GET
// per partition range of an object from the same range read twice, and
// the bytes the range reads asked for, to show what reading whole objects
// costs in bytes.
type rangeBucket struct {
	*countingBucket
	bytes  atomic.Int64
	mu     sync.Mutex
	ranges map[string]int
}

func (b *rangeBucket) countRange(key string, off, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ranges == nil {
		b.ranges = map[string]int{}
	}
	b.ranges[fmt.Sprintf("%s@%d+%d", key, off, n)]++
}

func (b *rangeBucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	b.countRange(key, 0, -1)
	return b.countingBucket.Get(ctx, key)
}

func (b *rangeBucket) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	b.countRange(key, off, n)
	b.bytes.Add(max(n, 0))
	return b.countingBucket.GetRange(ctx, key, off, n)
}

func (b *rangeBucket) resetAll() {
	b.reset()
	b.bytes.Store(0)
	b.mu.Lock()
	b.ranges = nil
	b.mu.Unlock()
}

// mostPerRange is the most GETs of any one byte range since resetAll.
func (b *rangeBucket) mostPerRange() (ranges, most int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range b.ranges {
		most = max(most, n)
	}
	return len(b.ranges), most
}

func benchWaitFleet(tb testing.TB, members ...*member) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := true
		for _, m := range members {
			adm := kadm.NewClient(benchClient(tb, m.Addr))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			md, err := adm.BrokerMetadata(ctx)
			cancel()
			if err != nil || len(md.Brokers) != len(members) {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the %d agents do not all list each other after 10s", len(members))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func benchClient(tb testing.TB, addrs string, opts ...kgo.Opt) *kgo.Client {
	tb.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(strings.Split(addrs, ",")...)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	return cl
}

func benchTopic(tb testing.TB, addr, topic string, partitions int32) {
	tb.Helper()
	resp, err := kadm.NewClient(benchClient(tb, addr)).CreateTopic(context.Background(), partitions, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		tb.Fatalf("create topic %s: %v", topic, err)
	}
}

// tailLoad is bench.TailLoad, failing tb on error.
func tailLoad(tb testing.TB, prod *kgo.Client, topic string, consumers []*kgo.Client, size int, d time.Duration) int64 {
	tb.Helper()
	n, err := bench.TailLoad(context.Background(), prod, topic, consumers, size, d)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// BenchmarkFleetGETs: bucket GETs per GiB served to three consumers that
// tail a topic at the agent that writes it (target: none), at another
// agent, and catching up from the start on a fresh agent (target for both:
// at most one GET per object per agent, though each object holds several
// partitions' rows). Bytes read per byte served show what reading small
// objects whole costs: rows of partitions nobody reads.
func BenchmarkFleetGETs(b *testing.B) {
	cat := floetest.PostgresCatalog(b)
	base := floetest.MinIOBucket(b)
	a, aGets := benchMember(b, cat, base, "a")
	bm, bGets := benchMember(b, cat, base, "b")
	benchWaitFleet(b, a, bm)
	const topic, partitions, size = "gets", 4, 4 << 10
	benchTopic(b, a.Addr, topic, partitions)
	prod := benchClient(b, a.Addr, kgo.ClientID("producer,floe_az=a"), kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	tailers := func(m *member) []*kgo.Client {
		atEnd, err := bench.ConsumeFromEnd(context.Background(), strings.Split(m.Addr, ","), topic)
		if err != nil {
			b.Fatal(err)
		}
		var out []*kgo.Client
		for range 3 {
			out = append(out, benchClient(b, m.Addr, kgo.ClientID("tailer,floe_az="+m.zone), atEnd, kgo.FetchMaxWait(time.Second)))
		}
		return out
	}
	const d = 3 * time.Second
	served := func(m *member) float64 { return counter(b, m.reg, "floe_agent_fetched_bytes_total", nil) }

	for _, at := range []struct {
		name string
		m    *member
		gets *rangeBucket
	}{{"writer", a, aGets}, {"other", bm, bGets}} {
		cons := tailers(at.m)
		tailLoad(b, prod, topic, cons, size, 300*time.Millisecond) // at the tail, metadata cached
		at.gets.resetAll()
		s0 := served(at.m)
		n := tailLoad(b, prod, topic, cons, size, d)
		bytes := served(at.m) - s0
		objects, most := at.gets.maxPerObject()
		ranges, mostRange := at.gets.mostPerRange()
		perGiB := float64(at.gets.gets.Load()) / (bytes / gib)
		perObject := float64(at.gets.gets.Load()) / float64(max(objects, 1))
		b.ReportMetric(perGiB, "GETs/GiB-tail-"+at.name)
		if at.name != "writer" {
			b.ReportMetric(perObject, "GETs/object-tail-"+at.name)
		}
		b.Logf("3 consumers tailing at the %s agent: %d records of %d B, %.1f MiB served, %d GETs of %d objects (at most %d per object, %d partitions), %d distinct ranges (at most %d GETs per range): %.0f GETs per GiB served, %.2f GETs per object, %.1f MiB read from the bucket",
			at.name, n, size, bytes/(1<<20), at.gets.gets.Load(), objects, most, partitions, ranges, mostRange, perGiB, perObject, float64(at.gets.bytes.Load())/(1<<20))
		for _, c := range cons {
			c.Close()
		}
	}

	// A fresh agent catches three consumers up from the start.
	c, cGets := benchMember(b, cat, base, "c")
	benchWaitFleet(b, a, bm, c)
	ends, err := kadm.NewClient(benchClient(b, c.Addr)).ListEndOffsets(context.Background(), topic)
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	s0 := served(c)
	start := time.Now()
	var wg sync.WaitGroup
	for range 3 {
		cl := benchClient(b, c.Addr, kgo.ClientID("catchup,floe_az=c"), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(time.Second))
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var got int64
			for got < total && ctx.Err() == nil {
				got += int64(cl.PollFetches(ctx).NumRecords())
			}
			if got < total {
				b.Errorf("a catching-up consumer got %d of %d records", got, total)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	bytes := served(c) - s0
	objects, most := cGets.maxPerObject()
	ranges, mostRange := cGets.mostPerRange()
	gets := cGets.gets.Load()
	b.ReportMetric(float64(mostRange), "max-GETs/range-catchup")
	b.ReportMetric(float64(gets)/(bytes/gib), "GETs/GiB-catchup")
	b.ReportMetric(float64(gets)/float64(max(objects, 1)), "GETs/object-catchup")
	b.Logf("3 consumers catching up on a fresh agent: %d records each in %v, %.1f MiB served, %d GETs of %d objects (at most %d per object, %d partitions), %d distinct ranges (at most %d GETs per range): %.0f GETs per GiB served, %.2f GETs per object, %.1f MiB read from the bucket",
		total, took.Round(time.Millisecond), bytes/(1<<20), gets, objects, most, partitions, ranges, mostRange, float64(gets)/(bytes/gib), float64(gets)/float64(max(objects, 1)), float64(cGets.bytes.Load())/(1<<20))
}

// BenchmarkFleetLatency: end-to-end latency (produce call to the consumer
// receiving the record) with the consumer on the producer's agent and on
// another agent, measured at once on the same records.
func BenchmarkFleetLatency(b *testing.B) {
	cat := floetest.PostgresCatalog(b)
	base := floetest.MinIOBucket(b)
	a, _ := benchMember(b, cat, base, "a")
	bm, _ := benchMember(b, cat, base, "b")
	benchWaitFleet(b, a, bm)
	const topic = "latency"
	benchTopic(b, a.Addr, topic, 1)
	prod := benchClient(b, a.Addr, kgo.ClientID("producer,floe_az=a"), kgo.ProducerLinger(0))

	var cons []*kgo.Client
	for _, m := range []*member{a, bm} {
		cons = append(cons, benchClient(b, m.Addr, kgo.ClientID("consumer,floe_az="+m.zone), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(5*time.Second)))
	}
	lats, err := bench.EndToEnd(context.Background(), prod, topic, cons, 400, 10*time.Millisecond)
	if err != nil {
		b.Fatal(err)
	}
	for i, name := range []string{"same", "different"} {
		lat := lats[i]
		slices.Sort(lat)
		p50, p99 := bench.Quantile(lat, 0.50), bench.Quantile(lat, 0.99)
		b.ReportMetric(float64(p99)/float64(time.Millisecond), "p99-ms-"+name)
		b.Logf("end-to-end latency, consumer on the %s agent: %d records, p50 %v, p99 %v, max %v",
			name, len(lat), p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), lat[len(lat)-1].Round(100*time.Microsecond))
	}
}

// BenchmarkFleetPartitions: produce throughput of one agent, with the
// flush settings of `floe agent`, spreading records over 2,000 partitions
// against 16 (target: at least 80%), each for a fixed time with the
// producer's buffer kept full.
func BenchmarkFleetPartitions(b *testing.B) {
	cat := floetest.PostgresCatalog(b)
	base := floetest.MinIOBucket(b)
	// The flush settings of `floe agent` (250 ms, early seals): a busy
	// agent's buffers are then sealed by its producers' windows, as in
	// production. floetest's 5 ms test default would seal (and commit)
	// every few milliseconds whatever the load.
	a, _ := benchMemberFlush(b, cat, base, "", wal.DefaultFlushInterval)
	benchWaitFleet(b, a)
	partitionsRatio(b, func(partitions int32, round int) float64 {
		topic := fmt.Sprintf("parts-%d-%d", partitions, round)
		benchTopic(b, a.Addr, topic, partitions)
		flushes0, entries0 := metricHist(b, a.reg, "floe_wal_flush_entries")
		commits0, commitSecs0 := metricHist(b, a.reg, "floe_flush_commit_duration_seconds")
		puts0, putSecs0 := metricHist(b, a.reg, "floe_flush_put_duration_seconds")
		s2c0, s2cSecs0 := metricHist(b, a.reg, "floe_wal_seal_to_commit_seconds")
		seals0 := sealReasons(b, a.reg)
		reqs0, reqSecs0 := metricHist(b, a.reg, "floe_agent_request_duration_seconds")
		up0, upSecs0 := metricHist(b, a.reg, "floe_wal_upload_duration_seconds")
		fs0, fsSecs0 := metricHist(b, a.reg, "floe_wal_fsync_duration_seconds")
		cw0, cwSecs0 := metricHist(b, a.reg, "floe_wal_commit_wait_seconds")
		rate, n, took := producePartitions(b, a.Addr, topic, partitions)
		up, upSecs := metricHist(b, a.reg, "floe_wal_upload_duration_seconds")
		fs, fsSecs := metricHist(b, a.reg, "floe_wal_fsync_duration_seconds")
		cw, cwSecs := metricHist(b, a.reg, "floe_wal_commit_wait_seconds")
		reqs, reqSecs := metricHist(b, a.reg, "floe_agent_request_duration_seconds")
		flushes, entries := metricHist(b, a.reg, "floe_wal_flush_entries")
		commits, commitSecs := metricHist(b, a.reg, "floe_flush_commit_duration_seconds")
		puts, putSecs := metricHist(b, a.reg, "floe_flush_put_duration_seconds")
		s2c, s2cSecs := metricHist(b, a.reg, "floe_wal_seal_to_commit_seconds")
		seals := sealReasons(b, a.reg)
		for r := range seals {
			seals[r] -= seals0[r]
		}
		flushes, entries = flushes-flushes0, entries-entries0
		mean := func(secs, n float64) time.Duration {
			return time.Duration(float64(time.Second) * secs / max(n, 1)).Round(100 * time.Microsecond)
		}
		b.Logf("%d partitions, round %d: %d records of %d B in %v: %.0f records/s, %.1f MiB/s; %.0f objects of %.0f batches each on average (sealed by %v), %.0f CommitSegment calls (%.2f per flush; catalog transactions), mean put %v, mean commit %v, mean seal to commit %v, %.0f requests of mean %v, upload %v, fsync %v, commit wait %v",
			partitions, round, n, partitionsRecordSize, took.Round(time.Millisecond), rate, rate*partitionsRecordSize/(1<<20),
			flushes, entries/max(flushes, 1), seals, commits-commits0, (commits-commits0)/max(flushes, 1),
			mean(putSecs-putSecs0, puts-puts0), mean(commitSecs-commitSecs0, commits-commits0), mean(s2cSecs-s2cSecs0, s2c-s2c0), reqs-reqs0, mean(reqSecs-reqSecs0, reqs-reqs0), mean(upSecs-upSecs0, up-up0), mean(fsSecs-fsSecs0, fs-fs0), mean(cwSecs-cwSecs0, cw-cw0))
		return rate
	})
}

// BenchmarkKfakePartitions is BenchmarkFleetPartitions against franz-go's
// in-memory kfake broker in the same process: the ratio the client alone
// allows on this machine, the ceiling for the agent's.
func BenchmarkKfakePartitions(b *testing.B) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	addr := c.ListenAddrs()[0]
	adm := kadm.NewClient(benchClient(b, addr))
	partitionsRatio(b, func(partitions int32, round int) float64 {
		topic := fmt.Sprintf("parts-%d-%d", partitions, round)
		benchTopic(b, addr, topic, partitions)
		rate, n, took := producePartitions(b, addr, topic, partitions)
		b.Logf("kfake, %d partitions, round %d: %d records of %d B in %v: %.0f records/s", partitions, round, n, partitionsRecordSize, took.Round(time.Millisecond), rate)
		// kfake keeps every record in memory.
		if _, err := adm.DeleteTopics(context.Background(), topic); err != nil {
			b.Fatal(err)
		}
		return rate
	})
}

// partitionsRecordSize is the value size of the partition benchmarks.
const partitionsRecordSize = 1 << 10

// producePartitions is bench.ProducePartitions measuring two seconds after
// one of warm-up, failing tb on error.
func producePartitions(tb testing.TB, addr, topic string, partitions int32) (rate float64, n int64, took time.Duration) {
	tb.Helper()
	r, err := bench.ProducePartitions(context.Background(), []string{addr}, topic, int(partitions), partitionsRecordSize, time.Second, 2*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	return r.Rate, r.N, r.Took
}

// partitionsRatio alternates runs of 16 and 2,000 partitions and reports
// the ratio of their best rounds, so a burst of load from elsewhere on the
// machine does not decide it.
//
// FLOE_BENCH_PARTITIONS=16 or =2000 runs only that side, for profiling
// one of them (-cpuprofile); the ratio is then meaningless.
func partitionsRatio(b *testing.B, run func(partitions int32, round int) float64) {
	only := os.Getenv("FLOE_BENCH_PARTITIONS")
	var best16, best2000 float64
	for round := range 2 {
		if only != "2000" {
			best16 = max(best16, run(16, round))
		}
		if only != "16" {
			best2000 = max(best2000, run(2000, round))
		}
	}
	ratio := best2000 / best16
	b.ReportMetric(best16, "rec/s-16")
	b.ReportMetric(best2000, "rec/s-2000")
	b.ReportMetric(100*ratio, "%-2000-vs-16")
	b.Logf("throughput with 2,000 partitions is %.0f%% of 16 partitions' (target at least 80%%)", 100*ratio)
}

// sealReasons counts the WAL's seals by reason.
func sealReasons(tb testing.TB, reg *prometheus.Registry) map[string]float64 {
	tb.Helper()
	out := map[string]float64{}
	for _, r := range []string{"interval", "bytes", "early"} {
		out[r] = counter(tb, reg, "floe_wal_seals_total", map[string]string{"reason": r})
	}
	return out
}

// metricHist returns a histogram family's total sample count and sum.
func metricHist(tb testing.TB, reg *prometheus.Registry, name string) (count, sum float64) {
	tb.Helper()
	c, sum := testenv.Histogram(tb, reg, name)
	return float64(c), sum
}
