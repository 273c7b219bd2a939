package compaction_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/floebroker/floe/agent/flush"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/compaction"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/mem"
	"github.com/floebroker/floe/wal"
)

// afterKnownObjects runs hook once, after the real KnownObjects answered
// and before the orphan sweep acts on the answer.
type afterKnownObjects struct {
	compaction.Catalog
	hook func()
}

func (h *afterKnownObjects) KnownObjects(ctx context.Context, keys []string) (map[string]bool, error) {
	m, err := h.Catalog.KnownObjects(ctx, keys)
	if f := h.hook; f != nil {
		h.hook = nil
		f()
	}
	return m, err
}

// TestSweepSparesObjectPutAgain: an agent uploads a buffer and dies before
// its commit; it comes back after the GC grace and replays the buffer (the
// object is put again, then committed) just after another agent's orphan
// sweep listed the old object and found it unknown. The sweep must not
// delete it: the committed rows would have no bytes, and every fetch of
// them would fail.
func TestSweepSparesObjectPutAgain(t *testing.T) {
	eachBackendOnClock(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.bucket = mem.New(e.clk.Now)
		tp := tps(e.topic("race", 1, nil))[0]
		cat := e.cat.(catalog.Catalog)
		batch := makeBatch(3, e.clk.Now().UnixMilli(), "x")
		b := &wal.Sealed{ID: ulid.Make().String(), Created: e.clk.Now(), Bytes: int64(len(batch)), Entries: []wal.Entry{{
			TopicPartition: tp, Batch: batch, OffsetSpan: 3, Records: 3,
			FirstTimestamp: 1, MaxTimestamp: 3, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}}}
		sink := func() *flush.Sink {
			return flush.New(flush.Config{Cluster: cluster, AgentID: "a", Now: e.clk.Now}, e.bucket, cat, nil, nil)
		}
		if err := sink().Upload(ctx, b); err != nil {
			t.Fatal(err)
		}
		e.clk.Advance(11 * time.Minute) // down for longer than the grace
		replayed := *b
		replayed.Replayed = true
		var res []catalog.BatchResult
		hc := &afterKnownObjects{Catalog: e.cat, hook: func() {
			s := sink()
			if err := s.Upload(ctx, &replayed); err != nil {
				t.Fatal(err)
			}
			r, err := s.Commit(ctx, &replayed)
			if err != nil {
				t.Fatal(err)
			}
			res = r
		}}
		c, err := compaction.New(compaction.Config{Cluster: cluster, Holder: "gc", Interval: time.Second, MergeMinAge: time.Hour,
			TargetBytes: 64 << 10, GCGrace: 10 * time.Minute, OrphanInterval: time.Nanosecond, LeaseTTL: time.Minute, Shards: 1},
			hc, e.bucket, nil, nil, e.clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if res == nil || res[0].Err != nil {
			t.Fatalf("replayed commit: %+v", res)
		}
		rows, err := cat.Batches(ctx, tp, 0, 1<<20)
		if err != nil || len(rows) == 0 {
			t.Fatalf("rows %v, %v", rows, err)
		}
		if _, err := e.bucket.Stat(ctx, rows[0].ObjectKey); errors.Is(err, objstore.ErrNotExist) {
			t.Fatalf("the committed record at offset %d references %s, which the orphan sweep deleted", res[0].BaseOffset, rows[0].ObjectKey)
		}
	})
}

// TestSweepSparesOtherClusters: the orphan sweep deletes its own cluster's
// unknown objects only, never those of other clusters sharing the bucket,
// whatever their names: it took any key holding "/<cluster>/", such as a
// cluster "team/<cluster>"'s or one under a prefix starting with "v1/".
func TestSweepSparesOtherClusters(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		id := ulid.Make().String()
		own := flush.ObjectKey(cluster, ulid.Make().String()) // an upload never committed
		others := []string{
			flush.ObjectKey("other", id),
			"v1/0000/team/" + cluster + "/" + id + ".seg",
			"v1/staging/" + flush.ObjectKey(cluster, id),
		}
		for _, k := range append(others, own) {
			if err := e.bucket.Put(ctx, k, strings.NewReader("x"), 1); err != nil {
				t.Fatal(err)
			}
		}
		e.clk.Advance(time.Hour)
		if err := e.compactor("a", nil).RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := e.bucket.Stat(ctx, own); !errors.Is(err, objstore.ErrNotExist) {
			t.Errorf("the cluster's own orphan %s was kept: %v", own, err)
		}
		for _, k := range others {
			if _, err := e.bucket.Stat(ctx, k); err != nil {
				t.Errorf("another cluster's object %s: %v", k, err)
			}
		}
	})
}
