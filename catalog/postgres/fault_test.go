package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floebroker/floe/catalog"
)

// TestFaultTerminateBackend kills the committers' PostgreSQL connections
// with pg_terminate_backend while commits run, and cuts some commits off
// with contexts that expire mid-flight. Every commit must happen entirely
// or not at all: ambiguous ones surface as ErrCommitUnknown, and retrying
// the same segment key resolves every one, with each batch stored exactly
// once.
func TestFaultTerminateBackend(t *testing.T) {
	url := freshSchema(t)
	var b [4]byte
	rand.Read(b[:])
	app := "floe-fault-" + hex.EncodeToString(b[:])
	admin := openTest(t, url, catalog.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topic, err := admin.CreateTopic(ctx, catalog.TopicSpec{Name: "fault", Partitions: 8})
	if err != nil {
		t.Fatal(err)
	}
	pid, epoch, err := admin.AllocateProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}

	const committers, each = 4, 60
	cats := make([]*Catalog, committers)
	for i := range cats {
		cats[i] = openTest(t, url, catalog.Options{ApplicationName: app, MaxConns: 2})
	}

	// The killer terminates every backend of the committers, every few
	// milliseconds, until the committers are done. On a loaded machine a
	// commit (with its new connection) can take longer than that, and
	// none would ever finish: after a few rounds without a commit it waits
	// for one.
	killCtx, stopKiller := context.WithCancel(ctx)
	var killed, committed atomic.Int64
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		conn, err := pgx.Connect(ctx, testURL(t))
		if err != nil {
			t.Errorf("killer connect: %v", err)
			return
		}
		defer conn.Close(context.Background())
		const roundsPerCommit = 3
		seen, rounds := committed.Load(), 0
		for killCtx.Err() == nil {
			if n := committed.Load(); n != seen {
				seen, rounds = n, 0
			} else if rounds >= roundsPerCommit {
				time.Sleep(time.Millisecond)
				continue
			}
			rounds++
			var n int64
			err := conn.QueryRow(killCtx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n)
			if err != nil && killCtx.Err() == nil {
				t.Errorf("terminate: %v", err)
				return
			}
			killed.Add(n)
			time.Sleep(time.Duration(5+mrand.IntN(20)) * time.Millisecond)
		}
	}()

	type done struct {
		seg catalog.Segment
		res catalog.CommitResult
	}
	var mu sync.Mutex
	var all []done
	var unknown, failed atomic.Int64
	var seqMu sync.Mutex
	seq := make([]int32, 8) // the one idempotent producer's next sequence per partition
	var wg sync.WaitGroup
	for w := range committers {
		c := cats[w]
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(w), 7))
			for i := range each {
				var batches []catalog.BatchRef
				var off int64
				for _, p := range rng.Perm(8)[:1+rng.IntN(4)] {
					b := catalog.BatchRef{
						TopicPartition: catalog.TopicPartition{TopicID: topic.ID, Partition: int32(p)},
						ByteOffset:     off, ByteLength: 100, OffsetSpan: int32(1 + rng.IntN(3)), Records: 1,
						ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
					}
					if w == 0 {
						// One committer carries an idempotent producer, so
						// its state is written under fire too.
						seqMu.Lock()
						b.ProducerID, b.ProducerEpoch, b.BaseSequence = pid, epoch, seq[p]
						seq[p] += b.OffsetSpan
						seqMu.Unlock()
					}
					batches = append(batches, b)
					off += 100
				}
				seg := catalog.Segment{Key: fmt.Sprintf("fault/%d/%d", w, i), Size: off, Batches: batches}
				for attempt := 0; ; attempt++ {
					if attempt > 200 {
						t.Errorf("commit %s never succeeded", seg.Key)
						return
					}
					cctx, ccancel := ctx, context.CancelFunc(func() {})
					if rng.IntN(4) == 0 {
						// A deadline that may expire anywhere in the commit,
						// including after COMMIT was sent.
						cctx, ccancel = context.WithTimeout(ctx, time.Duration(200+rng.IntN(3000))*time.Microsecond)
					}
					res, err := c.CommitSegment(cctx, seg)
					ccancel()
					if err == nil {
						mu.Lock()
						all = append(all, done{seg, res})
						mu.Unlock()
						committed.Add(1)
						break
					}
					if errors.Is(err, catalog.ErrCommitUnknown) {
						unknown.Add(1)
					} else {
						failed.Add(1)
					}
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	stopKiller()
	<-killerDone
	if t.Failed() {
		return
	}
	t.Logf("%d commits, %d backends terminated, %d ErrCommitUnknown, %d other errors (timeouts, terminations; all retried with the same key)",
		len(all), killed.Load(), unknown.Load(), failed.Load())
	if killed.Load() == 0 || unknown.Load() == 0 {
		t.Fatal("no backend was terminated or no commit outcome was ambiguous: the test proved nothing")
	}

	// Every batch of every commit is stored exactly once: per partition the
	// reported offsets tile [0, high watermark).
	type span struct{ base, n int64 }
	spans := map[int32][]span{}
	for _, d := range all {
		for i, r := range d.res.Results {
			if r.Err != nil || r.Duplicate {
				t.Fatalf("%s batch %d: %+v", d.seg.Key, i, r)
			}
			b := d.seg.Batches[i]
			spans[b.Partition] = append(spans[b.Partition], span{r.BaseOffset, int64(b.OffsetSpan)})
		}
	}
	for p := range int32(8) {
		ss := spans[p]
		slices.SortFunc(ss, func(a, b span) int { return int(a.base - b.base) })
		var next int64
		for _, s := range ss {
			if s.base != next {
				t.Fatalf("partition %d: batch at %d, expected %d", p, s.base, next)
			}
			next += s.n
		}
		o, err := admin.Offsets(ctx, catalog.TopicPartition{TopicID: topic.ID, Partition: p})
		if err != nil {
			t.Fatal(err)
		}
		if o.HighWatermark != next {
			t.Fatalf("partition %d: high watermark %d, but committed batches end at %d (a commit was applied twice or partly)", p, o.HighWatermark, next)
		}
	}
	var objects int
	if err := admin.pool.QueryRow(ctx, `SELECT count(*) FROM objects`).Scan(&objects); err != nil {
		t.Fatal(err)
	}
	if objects != len(all) {
		t.Fatalf("%d objects rows for %d commits", objects, len(all))
	}
}
