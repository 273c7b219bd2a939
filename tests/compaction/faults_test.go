package compaction_test

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/postgres"
	"github.com/floebroker/floe/objstore/minio"
	"github.com/floebroker/floe/tests/floetest"
)

// TestKillDuringMergeAndGC proves the fault half of compaction's
// guarantees with real processes on PostgreSQL and MinIO:
//
//  1. agent P (compaction off) acknowledges records flushed as many small
//     multi-partition segments, and stops;
//  2. agent A merges with slow bucket reads and is killed with SIGKILL
//     after its first row swap, before the pass ends: every row still
//     names an object in the bucket;
//  3. agent B, the next lease holder once A's lease expired, finishes the
//     merge (one row per partition), and stops;
//  4. agent C collects the merged-away objects with slow deletes and is
//     killed mid-sweep: every row still names an object in the bucket;
//  5. agent D, the next holder, finishes the sweep (including the object
//     C may have turned into a tombstone but not yet deleted, which only
//     the orphan listing finds): the bucket holds exactly the objects the
//     rows reference, and every acknowledged record reads back unchanged.
func TestKillDuringMergeAndGC(t *testing.T) {
	pg := floetest.PostgresURL(t)
	mc := floetest.MinIOConfig(t)
	bin := floeBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)

	bucketURL := func(latency string) string {
		u := fmt.Sprintf("minio://%s:%s@%s/%s?secure=false", url.QueryEscape(mc.AccessKey), url.QueryEscape(mc.SecretKey), mc.Endpoint, mc.Bucket)
		if latency != "" {
			u += "&latency=" + url.QueryEscape(latency)
		}
		return u
	}
	// Short heartbeats so dead agents leave metadata quickly, a short
	// lease TTL so the next holder takes over within seconds, and a pass
	// every 100ms.
	agentArgs := func(latency string, extra ...string) []string {
		return append([]string{"agent", "--catalog", pg, "--bucket", bucketURL(latency), "--data", t.TempDir(),
			"--listen", "127.0.0.1:0", "--admin-listen", "", "--log-format", "text", "--log-level", "info",
			"--flush-interval", "5ms", "--heartbeat-interval", "200ms", "--agent-ttl", "1500ms",
			"--compaction.interval", "100ms", "--compaction.merge-min-age", "1ms", "--compaction.lease-ttl", "2s",
			"--compaction.shards", "2"}, extra...)
	}
	// Merging agents keep every unreferenced object (GC must not run
	// yet); collecting agents keep them for half a second.
	noGC := []string{"--compaction.gc-grace", "1h", "--compaction.orphan-interval", "1h"}
	fastGC := []string{"--compaction.gc-grace", "500ms", "--compaction.orphan-interval", "500ms", "--upload-max-age", "100ms"}

	// 1. Produce: each ProduceSync carries one record per partition and is
	// acknowledged after its own flush, so every segment holds a small
	// row of each partition.
	const parts, rounds = 4, 120
	p := startAgent(t, bin, agentArgs("", "--compaction.disabled")...)
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.Addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	const topic = "faults"
	if resp, err := kadm.NewClient(cl).CreateTopic(ctx, parts, -1, nil, topic); err != nil || resp.Err != nil {
		t.Fatalf("create topic: %v %v", err, resp.Err)
	}
	acked := map[int32]map[int64]string{}
	for i := range rounds {
		var rs []*kgo.Record
		for part := range int32(parts) {
			rs = append(rs, &kgo.Record{Topic: topic, Partition: part, Key: fmt.Appendf(nil, "k%d", i),
				Value: fmt.Appendf(nil, "round %d partition %d %s", i, part, strings.Repeat("x", 200))})
		}
		res := cl.ProduceSync(ctx, rs...)
		if err := res.FirstErr(); err != nil {
			t.Fatalf("produce round %d: %v", i, err)
		}
		for _, r := range res {
			if acked[r.Record.Partition] == nil {
				acked[r.Record.Partition] = map[int64]string{}
			}
			acked[r.Record.Partition][r.Record.Offset] = string(r.Record.Value)
		}
	}
	cl.Close()
	p.Stop()

	cat, err := postgres.Open(ctx, pg, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	bkt, err := minio.New(ctx, mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bkt.Close() })
	st := &faultState{t: t, ctx: ctx, cat: cat, bkt: bkt}
	before := st.stats()
	if before.Rows < rounds*parts/2 || before.Objects < rounds/2 {
		t.Fatalf("produced %d rows in %d objects; want many small segments", before.Rows, before.Objects)
	}
	st.checkRowsStored("after produce")

	// 2. Kill A mid-merge. Every row read costs ~20ms, so a pass over
	// all partitions takes several seconds; the first swap comes after
	// one partition's worth.
	a := startAgent(t, bin, agentArgs("get=p50:20ms,p99:30ms", noGC...)...)
	st.waitFor(30*time.Second, "A's first merge swap", func(s catalog.CompactionStats) bool { return s.Rows < before.Rows })
	a.Kill()
	mid := st.stats()
	t.Logf("killed A mid-merge: rows %d → %d, objects %d → %d", before.Rows, mid.Rows, before.Objects, mid.Objects)
	if mid.Rows <= parts {
		t.Fatalf("A finished the merge (%d rows) before the kill: the kill did not hit a merge in progress", mid.Rows)
	}
	st.checkRowsStored("after killing A")

	// 3. B takes the shard leases once A's expire and finishes.
	b := startAgent(t, bin, agentArgs("", noGC...)...)
	merged := st.waitFor(30*time.Second, "B to finish the merge", func(s catalog.CompactionStats) bool { return s.Rows == parts })
	b.Stop()
	st.checkRowsStored("after B's merge")
	if merged.Objects <= parts {
		t.Fatalf("no merged-away objects left to collect: %+v", merged)
	}

	// 4. Kill C mid-sweep: every delete costs ~40ms.
	c := startAgent(t, bin, agentArgs("delete=p50:40ms,p99:60ms", fastGC...)...)
	st.waitFor(30*time.Second, "C's GC sweep to start", func(s catalog.CompactionStats) bool { return s.Tombstones >= 5 })
	c.Kill()
	mid = st.stats()
	t.Logf("killed C mid-sweep: objects %d → %d, tombstones %d", merged.Objects, mid.Objects, mid.Tombstones)
	if mid.Objects <= parts {
		t.Fatalf("C finished the sweep (%d objects) before the kill: the kill did not hit a sweep in progress", mid.Objects)
	}
	st.checkRowsStored("after killing C")
	// A kill between ForgetObject and the bucket delete leaves an object
	// only the orphan listing can find; say whether this run hit it.
	unref, err := cat.UnreferencedObjects(ctx, time.Now().Add(time.Hour), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	orphans := st.bucketKeys()
	for k := range st.referencedKeys() {
		delete(orphans, k)
	}
	for _, o := range unref {
		delete(orphans, o.Key)
	}
	t.Logf("C left %d unreferenced objects and %d orphans (tombstoned, not deleted)", len(unref), len(orphans))

	// 5. D takes the GC lease once C's expires and finishes, orphans
	// included: the bucket then holds exactly the referenced objects.
	d := startAgent(t, bin, agentArgs("", fastGC...)...)
	st.waitFor(30*time.Second, "D to finish the sweep", func(s catalog.CompactionStats) bool {
		if s.Objects != parts {
			return false
		}
		stored, referenced := st.bucketKeys(), st.referencedKeys()
		return len(stored) == len(referenced)
	})
	st.checkRowsStored("after D's sweep")
	if stored, referenced := st.bucketKeys(), st.referencedKeys(); len(stored) != parts || len(referenced) != parts {
		t.Fatalf("bucket holds %d segments, rows reference %d; want %d each", len(stored), len(referenced), parts)
	}

	// Every acknowledged record reads back at its offset, through D
	// alone (the others are gone from metadata once their heartbeats
	// expire).
	got := readAll(t, ctx, d.Addr, topic, parts, rounds)
	for part := range int32(parts) {
		if len(got[part]) != len(acked[part]) {
			t.Errorf("partition %d: read %d records, %d acknowledged", part, len(got[part]), len(acked[part]))
		}
		for off, v := range acked[part] {
			if got[part][off] != v {
				t.Errorf("partition %d offset %d: read %q, acknowledged %q", part, off, got[part][off], v)
			}
		}
	}
}

// faultState looks at the catalog and bucket behind the processes.
type faultState struct {
	t   *testing.T
	ctx context.Context
	cat *postgres.Catalog
	bkt *minio.Bucket
}

func (s *faultState) stats() catalog.CompactionStats {
	s.t.Helper()
	st, err := s.cat.CompactionStats(s.ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	return st
}

func (s *faultState) waitFor(d time.Duration, what string, ok func(catalog.CompactionStats) bool) catalog.CompactionStats {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := s.stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting for %s: %+v", what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// referencedKeys are the objects the catalog's batch rows name.
func (s *faultState) referencedKeys() map[string]bool {
	s.t.Helper()
	topics, err := s.cat.ListTopics(s.ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, tp := range topics {
		for part := range tp.Partitions {
			rows, err := s.cat.CompactionRows(s.ctx, catalog.TopicPartition{TopicID: tp.ID, Partition: part}, 0, 1<<20)
			if err != nil {
				s.t.Fatal(err)
			}
			for _, r := range rows {
				keys[r.ObjectKey] = true
			}
		}
	}
	return keys
}

// bucketKeys are the segment objects in the bucket.
func (s *faultState) bucketKeys() map[string]bool {
	s.t.Helper()
	keys := map[string]bool{}
	for o, err := range s.bkt.List(s.ctx, "v1/") {
		if err != nil {
			s.t.Fatal(err)
		}
		if strings.HasSuffix(o.Key, ".seg") {
			keys[o.Key] = true
		}
	}
	return keys
}

// checkRowsStored fails if a batch row names an object not in the bucket.
func (s *faultState) checkRowsStored(when string) {
	s.t.Helper()
	stored := s.bucketKeys()
	var missing []string
	for k := range s.referencedKeys() {
		if !stored[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		s.t.Fatalf("%s: %d objects referenced by rows are missing from the bucket: %v", when, len(missing), missing)
	}
}

// readAll consumes topic from offset 0 through addr until each of its
// parts partitions has want records, failing on any fetch error.
func readAll(t *testing.T, ctx context.Context, addr, topic string, parts, want int) map[int32]map[int64]string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	got := map[int32]map[int64]string{}
	n := 0
	for len(got) < parts || !allHave(got, want) {
		fs := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			t.Fatalf("read %d records before timing out", n)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if got[r.Partition] == nil {
				got[r.Partition] = map[int64]string{}
			}
			if _, dup := got[r.Partition][r.Offset]; dup {
				t.Errorf("partition %d offset %d read twice", r.Partition, r.Offset)
			}
			got[r.Partition][r.Offset] = string(r.Value)
			n++
		})
	}
	return got
}

func allHave(got map[int32]map[int64]string, want int) bool {
	for _, m := range got {
		if len(m) < want {
			return false
		}
	}
	return true
}

// floeBinary builds cmd/floe into the test's temporary directory.
func floeBinary(t *testing.T) string {
	t.Helper()
	bin, err := floetest.BuildFloe(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// floeProc is a running floe process.
type floeProc = floetest.Process

// startAgent runs bin with args and waits until it serves.
func startAgent(t *testing.T, bin string, args ...string) *floeProc {
	t.Helper()
	return floetest.StartProcess(t, bin, args...)
}
