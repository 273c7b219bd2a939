package catalogtest

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// StressConfig sizes Stress. Zero fields take the defaults in brackets.
type StressConfig struct {
	Committers      int // concurrent committers, each its own Catalog [8]
	Commits         int // commits per committer [1000]
	Partitions      int // partitions shared by all committers [50]
	MaxRuns         int // partitions per commit, 1..MaxRuns [8]
	Producers       int // idempotent producers in the second phase [16]
	ProducerBatches int // batches per producer, each sent twice [25]
}

func (c StressConfig) withDefaults() StressConfig {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Committers, 8)
	def(&c.Commits, 1000)
	def(&c.Partitions, 50)
	def(&c.MaxRuns, 8)
	def(&c.Producers, 16)
	def(&c.ProducerBatches, 25)
	return c
}

// CommitsFromEnv returns FLOE_CATALOG_STRESS_COMMITS if set, else def, so a
// developer can run the stress test longer or shorter without editing it.
func CommitsFromEnv(def int) int {
	if v, err := strconv.Atoi(os.Getenv("FLOE_CATALOG_STRESS_COMMITS")); err == nil && v > 0 {
		return v
	}
	return def
}

type stored struct {
	tp        catalog.TopicPartition
	base      int64
	span      int32
	committer int
	seq       int // the committer's commit number
	commitID  int64
}

// Stress runs concurrent committers, each on its own Catalog from open
// (which must return a new handle on the same store every call, closed at
// cleanup), committing segments over overlapping random partition sets in
// random batch order. It then checks that every partition's offsets are
// gapless, unique and increasing, that commit ids are unique and follow
// each committer's order, and that CommitsSince returns every row once.
// A second phase has idempotent producers send every batch twice through
// different committers, and checks exactly one copy is stored.
func Stress(t *testing.T, open Factory, cfg StressConfig) {
	cfg = cfg.withDefaults()
	admin := open(t)
	topics := make([]catalog.Topic, 0, 5)
	var tps []catalog.TopicPartition
	for i := 0; len(tps) < cfg.Partitions; i++ {
		n := min(10, cfg.Partitions-len(tps))
		tp := createTopic(t, admin, fmt.Sprintf("stress-%d", i), int32(n), nil)
		topics = append(topics, tp)
		for p := range n {
			tps = append(tps, tpOf(tp, int32(p)))
		}
	}
	handles := make([]catalog.Catalog, cfg.Committers)
	for i := range handles {
		handles[i] = open(t)
	}

	start := time.Now()
	var mu sync.Mutex
	var all []stored
	var wg sync.WaitGroup
	for w := range cfg.Committers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			var mine []stored
			for i := range cfg.Commits {
				k := 1 + rng.IntN(cfg.MaxRuns)
				var batches []catalog.BatchRef
				for _, j := range rng.Perm(len(tps))[:k] {
					for range 1 + rng.IntN(2) {
						batches = append(batches, batch(tps[j], int32(1+rng.IntN(5)), int64(i)))
					}
				}
				// The catalog must not rely on the flusher's ordering for
				// its lock order: shuffle.
				rng.Shuffle(len(batches), func(a, b int) { batches[a], batches[b] = batches[b], batches[a] })
				seg := segment(batches...)
				res, err := handles[w].CommitSegment(ctx(t), seg)
				if err != nil {
					t.Errorf("committer %d commit %d: %v", w, i, err)
					return
				}
				for j, r := range res.Results {
					if r.Err != nil || r.Duplicate {
						t.Errorf("committer %d commit %d batch %d: %s", w, i, j, describe(r))
						return
					}
					mine = append(mine, stored{seg.Batches[j].TopicPartition, r.BaseOffset, seg.Batches[j].OffsetSpan, w, i, res.CommitID})
				}
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	elapsed := time.Since(start)
	total := cfg.Committers * cfg.Commits
	t.Logf("phase 1: %d commits by %d committers in %v (%.0f commits/s)", total, cfg.Committers, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds())

	vstart := time.Now()
	checkStored(t, admin, tps, all)
	checkCommitIDs(t, all)
	t.Logf("checked offsets in %v", time.Since(vstart).Round(time.Millisecond))
	vstart = time.Now()
	checkFollow(t, admin, len(all))
	t.Logf("followed every commit in %v", time.Since(vstart).Round(time.Millisecond))
	if t.Failed() {
		return
	}

	phase2 := stressProducers(t, admin, handles, tps, cfg)
	all = append(all, phase2...)
	checkStored(t, admin, tps, all)
}

// checkStored checks each partition's batches tile [0, high watermark) and
// that a committer's later commits got later offsets.
func checkStored(t *testing.T, c catalog.Catalog, tps []catalog.TopicPartition, all []stored) {
	t.Helper()
	byTP := map[catalog.TopicPartition][]stored{}
	for _, s := range all {
		byTP[s.tp] = append(byTP[s.tp], s)
	}
	for _, tp := range tps {
		ss := byTP[tp]
		slices.SortFunc(ss, func(a, b stored) int { return cmp.Compare(a.base, b.base) })
		var next int64
		last := map[int]stored{}
		for _, s := range ss {
			if s.base != next {
				t.Fatalf("partition %x/%d: batch at %d, expected %d (gap or overlap)", tp.TopicID[:4], tp.Partition, s.base, next)
			}
			next += int64(s.span)
			if p, ok := last[s.committer]; ok && p.seq > s.seq {
				t.Fatalf("partition %d: committer %d's commit %d got an offset below its commit %d", tp.Partition, s.committer, s.seq, p.seq)
			}
			last[s.committer] = s
		}
		checkTiling(t, c, tp, next)
	}
}

func checkCommitIDs(t *testing.T, all []stored) {
	t.Helper()
	owner := map[int64][2]int{}
	lastByCommitter := map[int]stored{}
	for _, s := range all {
		if o, ok := owner[s.commitID]; ok && o != [2]int{s.committer, s.seq} {
			t.Fatalf("commit id %d returned to two commits: %v and %v", s.commitID, o, [2]int{s.committer, s.seq})
		}
		owner[s.commitID] = [2]int{s.committer, s.seq}
		if p, ok := lastByCommitter[s.committer]; ok && p.seq < s.seq && p.commitID >= s.commitID {
			t.Fatalf("committer %d: commit %d has id %d after commit %d had %d", s.committer, s.seq, s.commitID, p.seq, p.commitID)
		}
		lastByCommitter[s.committer] = s
	}
}

// checkFollow pages through CommitsSince like a follower and counts offsets.
func checkFollow(t *testing.T, c catalog.Catalog, batches int) {
	t.Helper()
	var after int64
	var offsets int64
	type rowKey struct {
		tp   catalog.TopicPartition
		base int64
	}
	seen := map[rowKey]bool{}
	for {
		rows, latest, err := c.CommitsSince(ctx(t), after, 500)
		noErr(t, err, "CommitsSince")
		if len(rows) == 0 {
			break
		}
		for _, r := range rows {
			k := rowKey{r.TopicPartition, r.BaseOffset}
			if seen[k] {
				t.Fatalf("CommitsSince returned row %v twice", k)
			}
			seen[k] = true
			offsets += r.LastOffset - r.BaseOffset + 1
		}
		after = latest
	}
	if len(seen) == 0 || len(seen) > batches {
		t.Fatalf("CommitsSince returned %d rows for %d batches", len(seen), batches)
	}
}

// stressProducers sends every idempotent batch twice, through different
// committers and concurrently: half the time as a retry of the same
// segment key, half the time inside a different segment.
func stressProducers(t *testing.T, admin catalog.Catalog, handles []catalog.Catalog, tps []catalog.TopicPartition, cfg StressConfig) []stored {
	start := time.Now()
	var mu sync.Mutex
	var out []stored
	var wg sync.WaitGroup
	for p := range cfg.Producers {
		pid, epoch, err := admin.AllocateProducerID(ctx(t))
		noErr(t, err, "AllocateProducerID")
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), uint64(time.Now().UnixNano())))
			tp := tps[rng.IntN(len(tps))]
			var seq int32
			for i := range cfg.ProducerBatches {
				span := int32(1 + rng.IntN(4))
				b := idemBatch(tp, span, pid, epoch, seq)
				seq += span
				segA := segment(b, batch(tps[rng.IntN(len(tps))], 1, 1))
				segB := segA
				sameKey := rng.IntN(2) == 0
				if !sameKey {
					segB = segment(batch(tps[rng.IntN(len(tps))], 1, 1), b)
				}
				x, y := rng.IntN(len(handles)), rng.IntN(len(handles)-1)
				if y >= x {
					y++
				}
				var ra, rb catalog.CommitResult
				var ea, eb error
				var pair sync.WaitGroup
				pair.Add(2)
				go func() { defer pair.Done(); ra, ea = handles[x].CommitSegment(ctx(t), segA) }()
				go func() { defer pair.Done(); rb, eb = handles[y].CommitSegment(ctx(t), segB) }()
				pair.Wait()
				if ea != nil || eb != nil {
					t.Errorf("producer %d batch %d: %v / %v", p, i, ea, eb)
					return
				}
				ia, ib := 0, 1 // position of the idempotent batch in each segment
				if sameKey {
					ib = 0
				}
				a, bb := ra.Results[ia], rb.Results[ib]
				if a.Err != nil || bb.Err != nil || a.BaseOffset != bb.BaseOffset {
					t.Errorf("producer %d batch %d: %s and %s", p, i, describe(a), describe(bb))
					return
				}
				if sameKey && (ra.CommitID != rb.CommitID || a.Duplicate || bb.Duplicate) {
					t.Errorf("producer %d batch %d: same key committed twice: %+v %+v", p, i, ra, rb)
					return
				}
				if !sameKey && a.Duplicate == bb.Duplicate {
					t.Errorf("producer %d batch %d: want exactly one duplicate: %s and %s", p, i, describe(a), describe(bb))
					return
				}
				mu.Lock()
				out = append(out, stored{tp, a.BaseOffset, span, 1000 + p, i, 0})
				// The filler batches are stored too (once per distinct
				// segment).
				for _, pr := range []struct {
					seg catalog.Segment
					res catalog.CommitResult
					idx int
				}{{segA, ra, 1}, {segB, rb, 0}} {
					if sameKey && pr.idx == 0 {
						continue
					}
					f := pr.res.Results[pr.idx]
					if f.Err != nil || f.Duplicate {
						t.Errorf("filler batch: %s", describe(f))
					}
					out = append(out, stored{pr.seg.Batches[pr.idx].TopicPartition, f.BaseOffset, 1, -1, 0, 0})
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("phase 2: %d producers × %d batches, each sent twice, in %v", cfg.Producers, cfg.ProducerBatches, time.Since(start).Round(time.Millisecond))
	return out
}
