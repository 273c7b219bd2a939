package postgres

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// BenchmarkCommit measures CommitSegment against the test PostgreSQL:
// runs partitions per commit (one idempotent batch each, as agents flush
// them) × committers, each committer its own Catalog like separate agents.
// Partitions are drawn at random from one 256-partition topic shared by all
// committers ("shared": every commit competes for the same row locks) or
// from a slice of it per committer ("spread": partitions led by different
// agents, what rendezvous leadership produces). runs=2000 is one agent
// leading 2,000 partitions of one topic, flushing one batch of one
// idempotent producer to each (issue 6). Reports commits/s and p50/p99
// commit latency. A run writes at most maxBenchRows batch rows (fewer
// commits than b.N when commits are large), so -benchtime 3000x stays
// quick for runs=2000; the metrics are per commit made.
func BenchmarkCommit(b *testing.B) {
	for _, layout := range []string{"shared", "spread"} {
		for _, runs := range []int{1, 16, 256} {
			for _, committers := range []int{1, 8} {
				if layout == "spread" && (committers == 1 || runs == 256) {
					continue // same as shared
				}
				b.Run(fmt.Sprintf("layout=%s/runs=%d/committers=%d", layout, runs, committers), func(b *testing.B) {
					benchCommit(b, layout, runs, committers)
				})
			}
		}
	}
	b.Run("layout=shared/runs=2000/committers=1", func(b *testing.B) {
		benchCommit(b, "shared", 2000, 1)
	})
	// Group commit: an agent whose uploaded buffers queue behind a commit
	// commits them together (CommitSegments); metrics are per segment.
	for _, group := range []int{2, 4} {
		b.Run(fmt.Sprintf("layout=shared/runs=2000/committers=1/group=%d", group), func(b *testing.B) {
			benchCommitGroup(b, "shared", 2000, 1, group)
		})
	}
}

// maxBenchRows caps the batch rows one benchmark run writes (3,000
// commits of 256 runs fit).
const maxBenchRows = 800_000

var benchLocked = flag.Bool("locked", false, "benchmark commits in locked mode only")

func benchCommit(b *testing.B, layout string, runs, committers int) {
	benchCommitGroup(b, layout, runs, committers, 1)
}

func benchCommitGroup(b *testing.B, layout string, runs, committers, group int) {
	partitions := max(256, runs)
	url := freshSchema(b)
	admin := openTest(b, url, catalog.Options{})
	topic, err := admin.CreateTopic(context.Background(), catalog.TopicSpec{Name: "bench", Partitions: int32(partitions)})
	if err != nil {
		b.Fatal(err)
	}
	type committer struct {
		c    *Catalog
		pid  int64
		seq  []int32
		lat  []time.Duration
		pool []int32 // partitions it draws from
	}
	// The committers' backends, told apart by name to measure their CPU.
	app := fmt.Sprintf("floe-bench-%d", rand.Uint64())
	cs := make([]*committer, committers)
	for i := range cs {
		c := openTest(b, url, catalog.Options{MaxConns: 2, ApplicationName: app})
		c.alwaysLock = *benchLocked
		pid, _, err := c.AllocateProducerID(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		pool := make([]int32, partitions)
		for p := range pool {
			pool[p] = int32(p)
		}
		if layout == "spread" {
			// Each committer mostly writes its own slice, plus a few
			// partitions of others, as clients with stale metadata do.
			per := partitions / committers
			own := pool[i*per : (i+1)*per]
			pool = append(slices.Clone(own), int32((i*per+per+3)%partitions))
		}
		cs[i] = &committer{c: c, pid: pid, seq: make([]int32, partitions), pool: pool}
	}
	segFor := func(cm *committer, rng *rand.Rand) catalog.Segment {
		n := min(runs, len(cm.pool))
		parts := make([]int32, 0, n)
		for _, j := range rng.Perm(len(cm.pool))[:n] {
			parts = append(parts, cm.pool[j])
		}
		slices.Sort(parts)
		seg := catalog.Segment{Key: fmt.Sprintf("bench/%d/%d", cm.pid, rng.Uint64())}
		var off int64
		for _, p := range parts {
			seg.Batches = append(seg.Batches, catalog.BatchRef{
				TopicPartition: catalog.TopicPartition{TopicID: topic.ID, Partition: p},
				ByteOffset:     off, ByteLength: 1000, OffsetSpan: 10, Records: 10,
				FirstTimestamp: 1, MaxTimestamp: 2,
				ProducerID: cm.pid, BaseSequence: cm.seq[p],
			})
			cm.seq[p] += 10
			off += 1000
		}
		seg.Size = off
		return seg
	}

	cpu := startBackendCPU(b, url, app)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	n := min(b.N, max(maxBenchRows/runs, 1))
	per := (n + committers - 1) / committers
	for i, cm := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			for range (per + group - 1) / group {
				segs := make([]catalog.Segment, group)
				for i := range segs {
					segs[i] = segFor(cm, rng)
				}
				t0 := time.Now()
				res, err := cm.c.CommitSegments(context.Background(), segs)
				for range group {
					cm.lat = append(cm.lat, time.Since(t0)/time.Duration(group))
				}
				if err != nil {
					b.Error(err)
					return
				}
				for _, cr := range res {
					for _, r := range cr.Results {
						if r.Err != nil {
							b.Errorf("result: %v", r.Err)
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	pgCPU := cpu.stop(b)
	var lat []time.Duration
	for _, cm := range cs {
		lat = append(lat, cm.lat...)
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "commits/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	var conflicts int64
	for _, cm := range cs {
		conflicts += cm.c.CommitConflicts()
	}
	b.ReportMetric(float64(conflicts)/float64(len(lat)), "conflicts/op")
	if pgCPU >= 0 {
		// The server's CPU per commit, when it runs on this machine.
		b.ReportMetric(pgCPU/float64(len(lat)), "pg-cpu-ms/op")
	}
	b.ReportMetric(0, "ns/op")

}

// BenchmarkFirstCommit measures the first commit of a new producer on a
// topic just created through the same Catalog, as an agent makes it when a
// producer starts on a new topic and spreads its first request over every
// partition: one idempotent batch per partition (sequence 0). Only the
// commit is timed; reports its median.
func BenchmarkFirstCommit(b *testing.B) {
	for _, parts := range []int{16, 2000} {
		b.Run(fmt.Sprintf("partitions=%d", parts), func(b *testing.B) {
			url := freshSchema(b)
			c := openTest(b, url, catalog.Options{})
			ctx := context.Background()
			var lat []time.Duration
			for i := range b.N {
				topic, err := c.CreateTopic(ctx, catalog.TopicSpec{Name: fmt.Sprintf("first-%d", i), Partitions: int32(parts)})
				if err != nil {
					b.Fatal(err)
				}
				pid, epoch, err := c.AllocateProducerID(ctx)
				if err != nil {
					b.Fatal(err)
				}
				seg := catalog.Segment{Key: fmt.Sprintf("first/%d", i), Size: int64(parts) * 1000}
				for p := range parts {
					seg.Batches = append(seg.Batches, catalog.BatchRef{
						TopicPartition: catalog.TopicPartition{TopicID: topic.ID, Partition: int32(p)},
						ByteOffset:     int64(p) * 1000, ByteLength: 1000, OffsetSpan: 10, Records: 10,
						FirstTimestamp: 1, MaxTimestamp: 2, ProducerID: pid, ProducerEpoch: epoch,
					})
				}
				start := time.Now()
				if _, err := c.CommitSegment(ctx, seg); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2])/float64(time.Millisecond), "p50-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
