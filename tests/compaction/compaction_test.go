// Package compaction_test proves compaction with real Kafka clients
// through an in-process agent: merges, GC and log compaction change
// nothing a consumer can tell apart (except, for compacted topics, the
// superseded records), even while the consumer reads.
package compaction_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/sqlite"
	"github.com/floebroker/floe/compaction"
	"github.com/floebroker/floe/internal/testenv"
	"github.com/floebroker/floe/objstore/file"
	"github.com/floebroker/floe/tests/floetest"
)

// clock is the compactor's clock: real time plus a skew tests advance,
// so grace periods pass without waiting.
type clock struct {
	mu   sync.Mutex
	skew time.Duration
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.skew) }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skew += d
}

type env struct {
	a   *floetest.Agent
	clk *clock
	c   *compaction.Compactor
	cat compaction.Catalog
}

// eachBackend runs fn on SQLite + a directory bucket, and on PostgreSQL +
// MinIO (skipped without the services, failed under CI=true).
func eachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Run("sqlite-file", func(t *testing.T) {
		dir := t.TempDir()
		cat, err := sqlite.Open(context.Background(), filepath.Join(dir, "catalog.db"), catalog.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cat.Close() })
		bkt, err := file.New(filepath.Join(dir, "bucket"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bkt.Close() })
		fn(t, newEnv(t, floetest.Options{Catalog: cat, Bucket: bkt}))
	})
	t.Run("postgres-minio", func(t *testing.T) {
		fn(t, newEnv(t, floetest.Options{Catalog: floetest.PostgresCatalog(t), Bucket: floetest.MinIOBucket(t)}))
	})
}

func newEnv(t *testing.T, opts floetest.Options) *env { return newEnvB(t, opts) }

func newEnvB(t testing.TB, opts floetest.Options) *env {
	a := floetest.Start(t, opts)
	clk := &clock{}
	cat := a.Catalog.(compaction.Catalog)
	c, err := compaction.New(compaction.Config{Cluster: agent.DefaultConfig().ClusterID, Holder: "test", MergeMinAge: time.Nanosecond,
		TargetBytes: 1 << 20, GCGrace: 10 * time.Minute, OrphanInterval: time.Nanosecond, Shards: 2}, cat, a.Bucket, nil, nil, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return &env{a: a, clk: clk, c: c, cat: cat}
}

// reader replaces the agent by a fresh one on the same catalog and
// bucket. An agent keeps serving the rows its tail index learnt from
// commits (SwapRows is not a commit) from its memory cache, so a
// log-compacted partition's head is seen compacted only by agents that
// did not hold it before (or once those rows leave the tail index): tests
// read compacted data through a fresh agent. (A second agent alongside
// would not do: metadata may route the partition to the first.)
func (e *env) reader(t *testing.T) *floetest.Agent { return e.restart(t) }

func (e *env) restart(t testing.TB) *floetest.Agent {
	if err := e.a.Stop(); err != nil {
		t.Fatal(err)
	}
	e.a = floetest.Start(t, floetest.Options{Catalog: e.a.Catalog, Bucket: e.a.Bucket})
	return e.a
}

func (e *env) pass(t *testing.T) {
	t.Helper()
	if err := e.c.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (e *env) stats(t *testing.T) catalog.CompactionStats {
	s, err := e.cat.CompactionStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func createTopicB(t testing.TB, cl *kgo.Client, name string, parts int32) {
	createTopicTB(t, cl, name, parts, nil)
}

func createTopic(t *testing.T, cl *kgo.Client, name string, parts int32, configs map[string]*string) {
	createTopicTB(t, cl, name, parts, configs)
}

func createTopicTB(t testing.TB, cl *kgo.Client, name string, parts int32, configs map[string]*string) {
	t.Helper()
	resp, err := kadm.NewClient(cl).CreateTopic(context.Background(), parts, 1, configs, name)
	if err != nil || resp.Err != nil {
		t.Fatalf("create topic %s: %v %v", name, err, resp.Err)
	}
}

// rec is what a consumer can observe of a record.
type rec struct {
	Partition int32
	Offset    int64
	Key       string
	Value     string
	Null      bool
	Headers   string
	Ts        int64
}

func recOf(r *kgo.Record) rec {
	return rec{r.Partition, r.Offset, string(r.Key), string(r.Value), r.Value == nil, fmt.Sprint(r.Headers), r.Timestamp.UnixMilli()}
}

// consumeAll reads topic from the start until it has want records (or
// the high watermarks, when want < 0), failing on any fetch error.
func consumeAll(t *testing.T, a *floetest.Agent, topic string, want int, opts ...kgo.Opt) []rec {
	t.Helper()
	cl := a.Client(t, append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(50 * time.Millisecond)}, opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ends map[int32]int64
	if want < 0 {
		lo, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		ends = map[int32]int64{}
		lo.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	}
	done := func(got []rec) bool {
		if want >= 0 {
			return len(got) >= want
		}
		last := map[int32]int64{}
		for _, r := range got {
			last[r.Partition] = r.Offset
		}
		for p, end := range ends {
			if end > 0 && last[p] < end-1 {
				return false
			}
		}
		return true
	}
	var got []rec
	for !done(got) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d records before timing out", len(got))
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { got = append(got, recOf(r)) })
	}
	return got
}

func byPartition(rs []rec) map[int32][]rec {
	out := map[int32][]rec{}
	for _, r := range rs {
		out[r.Partition] = append(out[r.Partition], r)
	}
	return out
}

// consumeCount reads want records from the start and counts them.
func consumeCount(t testing.TB, a *floetest.Agent, topic string, want int) int {
	cl := a.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := 0
	for n < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records", n, want)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		n += fs.NumRecords()
	}
	cl.Close()
	return n
}

// produceEvents writes n records in batches of per, one flush each.
func produceEvents(t *testing.T, cl *kgo.Client, topic string, n, per int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i += per {
		var rs []*kgo.Record
		for j := i; j < min(n, i+per); j++ {
			rs = append(rs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "key-%d", j%37), Value: fmt.Appendf(nil, "value-%d", j),
				Headers:   []kgo.RecordHeader{{Key: "n", Value: fmt.Appendf(nil, "%d", j)}},
				Timestamp: time.UnixMilli(time.Now().UnixMilli() - int64(n-j))})
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// Consume a topic fully, compact, consume again: identical records,
// offsets, keys, headers and timestamps; again after GC collected the
// merged-away objects.
func TestConsumeCompactConsume(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		cl := e.a.Client(t, kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
		createTopic(t, cl, "events", 3, nil)
		produceEvents(t, cl, "events", 1500, 25)
		before := byPartition(consumeAll(t, e.a, "events", 1500))
		s0 := e.stats(t)
		e.pass(t)
		s1 := e.stats(t)
		if s1.Rows >= s0.Rows/4 || s1.LiveBytes != s0.LiveBytes {
			t.Fatalf("merge: rows %d -> %d, live bytes %d -> %d", s0.Rows, s1.Rows, s0.LiveBytes, s1.LiveBytes)
		}
		if after := byPartition(consumeAll(t, e.a, "events", 1500)); !reflect.DeepEqual(after, before) {
			t.Fatal("records differ after merge")
		}
		e.clk.Advance(11 * time.Minute)
		e.pass(t)
		if after := byPartition(consumeAll(t, e.a, "events", 1500)); !reflect.DeepEqual(after, before) {
			t.Fatal("records differ after GC")
		}
		t.Logf("rows %d -> %d, objects %d -> %d (tombstones %d)", s0.Rows, s1.Rows, s0.Objects, e.stats(t).Objects, e.stats(t).Tombstones)
	})
}

// A consumer reading while compaction merges and GC deletes the old
// objects (grace periods skipped by the clock) sees no error, gap or
// duplicate.
func TestConsumerDuringCompaction(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		cl := e.a.Client(t, kgo.ProducerLinger(0))
		createTopic(t, cl, "live", 2, nil)
		produceEvents(t, cl, "live", 2000, 20)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				e.clk.Advance(11 * time.Minute)
				if err := e.c.RunOnce(context.Background()); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
		got := consumeAll(t, e.a, "live", 2000, kgo.FetchMaxPartitionBytes(2<<10), kgo.FetchMaxBytes(4<<10))
		close(stop)
		wg.Wait()
		for p, rs := range byPartition(got) {
			for i, r := range rs {
				if r.Offset != int64(i) {
					t.Fatalf("partition %d: record %d has offset %d (gap or duplicate)", p, i, r.Offset)
				}
			}
		}
		if len(got) != 2000 {
			t.Fatalf("%d records, want 2000", len(got))
		}
	})
}

// kv is a keyed workload with overwrites and tombstones, in batches.
type kv struct {
	batches [][]*kgo.Record
}

func newKV(seed uint64) kv {
	r := rand.New(rand.NewPCG(seed, 1))
	var w kv
	for b := 0; b < 60; b++ {
		var batch []*kgo.Record
		for range 30 {
			k := fmt.Sprintf("k%03d", r.IntN(120))
			var v []byte
			if r.IntN(10) != 0 {
				v = fmt.Appendf(nil, "v%d", r.Uint32())
			}
			batch = append(batch, &kgo.Record{Key: []byte(k), Value: v, Headers: []kgo.RecordHeader{{Key: "b", Value: fmt.Appendf(nil, "%d", b)}}})
		}
		w.batches = append(w.batches, batch)
	}
	// A last batch on its own key: the active tail, which no broker compacts.
	w.batches = append(w.batches, []*kgo.Record{{Key: []byte("tail"), Value: []byte("tail")}})
	return w
}

func (w kv) produce(t *testing.T, cl *kgo.Client, topic string) {
	t.Helper()
	for _, b := range w.batches {
		rs := make([]*kgo.Record, len(b))
		for i, r := range b {
			c := *r
			c.Topic = topic
			rs[i] = &c
		}
		if err := cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// model is the latest record per key: its offset, and its value (nil: a
// tombstone).
func (w kv) model() map[string]rec {
	m := map[string]rec{}
	var off int64
	for _, b := range w.batches {
		for _, r := range b {
			m[string(r.Key)] = rec{Offset: off, Key: string(r.Key), Value: string(r.Value), Null: r.Value == nil}
			off++
		}
	}
	return m
}

// apply replays consumed records into key → value (tombstones delete).
func apply(rs []rec) map[string]string {
	out := map[string]string{}
	for _, r := range rs {
		if r.Null {
			delete(out, r.Key)
		} else {
			out[r.Key] = r.Value
		}
	}
	return out
}

// Log compaction against a model: the topic holds exactly the latest
// record per key at its original offset; tombstones stay until
// delete.retention.ms, then vanish. Batches are zstd-compressed, so the
// re-encoding path is exercised. kfake (which implements log compaction,
// Cluster.Compact) given the same workload yields the same latest value
// per key.
func TestLogCompaction(t *testing.T) {
	w := newKV(7)
	model := w.model()
	live := map[string]string{}
	for k, r := range model {
		if !r.Null {
			live[k] = r.Value
		}
	}
	eachBackend(t, func(t *testing.T, e *env) {
		cl := e.a.Client(t, kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.ZstdCompression()))
		createTopic(t, cl, "kv", 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact"), "delete.retention.ms": kadm.StringPtr("60000")})
		w.produce(t, cl, "kv")
		before := consumeAll(t, e.a, "kv", -1)
		e.pass(t)
		got := consumeAll(t, e.reader(t), "kv", -1)
		check := func(got []rec, tombstones bool) {
			t.Helper()
			seen := map[string]bool{}
			for _, r := range got {
				m := model[r.Key]
				if seen[r.Key] || r.Offset != m.Offset || r.Value != m.Value || r.Null != m.Null {
					t.Fatalf("record %+v: want only the latest per key %+v", r, m)
				}
				seen[r.Key] = true
			}
			for k, m := range model {
				if !seen[k] && (!m.Null || tombstones) {
					t.Fatalf("key %s (latest %+v) missing", k, m)
				}
			}
			if a := apply(got); !reflect.DeepEqual(a, live) {
				t.Fatalf("consumed state has %d keys, model %d", len(a), len(live))
			}
		}
		check(got, true)
		t.Logf("records %d -> %d", len(before), len(got))
		// The kept tombstones' batches now carry a delete horizon (KIP-534)
		// in their first timestamp field: every record keeps its own
		// timestamp, for franz-go and for librdkafka.
		ts := map[int64]int64{}
		for _, r := range before {
			ts[r.Offset] = r.Ts
		}
		var want bytes.Buffer
		for _, r := range got {
			if r.Ts != ts[r.Offset] {
				t.Fatalf("record %+v: timestamp %d before compaction", r, ts[r.Offset])
			}
			size := len(r.Value)
			if r.Null {
				size = -1
			}
			fmt.Fprintf(&want, "%d:%s:%d:%d\n", r.Offset, r.Key, r.Ts, size)
		}
		kcatOut := testenv.RunKcat(t, testenv.Kcat(t), nil, "-C", "-b", e.reader(t).Addr, "-t", "kv", "-p", "0", "-o", "beginning", "-e", "-q",
			"-f", "%o:%k:%T:%S\n")
		if !bytes.Equal(kcatOut, want.Bytes()) {
			t.Fatalf("kcat read the compacted topic as\n%s\nwant\n%s", kcatOut, want.Bytes())
		}
		if !reflect.DeepEqual(apply(before), live) {
			t.Fatal("uncompacted topic disagrees with the model")
		}
		// After delete.retention.ms the tombstones go.
		e.clk.Advance(2 * time.Minute)
		e.pass(t)
		got = consumeAll(t, e.reader(t), "kv", -1)
		check(got, false)
		for _, r := range got {
			if r.Null {
				t.Fatalf("tombstone %+v left after delete.retention.ms", r)
			}
		}
		// A third pass changes nothing.
		e.pass(t)
		if again := consumeAll(t, e.reader(t), "kv", -1); !reflect.DeepEqual(again, got) {
			t.Fatal("compaction of a compacted topic changed it")
		}
	})

	t.Run("kfake", func(t *testing.T) {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.ZstdCompression()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		createTopic(t, cl, "kv", 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact"), "delete.retention.ms": kadm.StringPtr("0")})
		w.produce(t, cl, "kv")
		c.Compact()
		cons, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("kv"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer cons.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var got []rec
		for len(got) == 0 || got[len(got)-1].Key != "tail" {
			fs := cons.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatal("timed out reading kfake")
			}
			fs.EachRecord(func(r *kgo.Record) { got = append(got, recOf(r)) })
		}
		if a := apply(got); !reflect.DeepEqual(a, live) {
			t.Fatalf("kfake's compacted state has %d keys, the model (and Floe) %d", len(a), len(live))
		}
		t.Logf("kfake kept %d records", len(got))
	})
}
