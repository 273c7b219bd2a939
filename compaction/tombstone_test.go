package compaction_test

import (
	"context"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/floebroker/floe/agent/flush"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/compaction"
	"github.com/floebroker/floe/wal"
)

// An agent that crashed after its commit and before deleting its WAL file
// replays the buffer on restart, possibly long after the object was
// merged away and garbage collected. The replay must get the original
// offsets back (the tombstone), not commit the batches a second time; the
// replay's re-put object is an orphan the sweep removes; a buffer older
// than the tombstone retention is refused instead of committed.
func TestLateReplayAfterGCIsNotDuplicated(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		top := e.topic("replay", 1, nil)
		tp := catalog.TopicPartition{TopicID: top.ID, Partition: 0}
		buf := &wal.Sealed{ID: ulid.Make().String(), Created: time.Now()}
		for i := range 3 {
			ts := time.Now().UnixMilli()
			b := makeBatch(4, ts, string(rune('a'+i)))
			buf.Entries = append(buf.Entries, wal.Entry{TopicPartition: tp, Batch: b, OffsetSpan: 4, Records: 4,
				FirstTimestamp: ts, MaxTimestamp: ts + 3, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1})
			buf.Bytes += int64(len(b))
		}
		sinkAt := func(now func() time.Time) *flush.Sink {
			return flush.New(flush.Config{Cluster: cluster, AgentID: "a", Now: now}, e.bucket, e.cat.(catalog.Catalog), nil, nil)
		}
		s := sinkAt(nil)
		if err := s.Upload(ctx, buf); err != nil {
			t.Fatal(err)
		}
		first, err := s.Commit(ctx, buf)
		if err != nil {
			t.Fatal(err)
		}
		e.flushSegment([]catalog.TopicPartition{tp}, 1, 2, time.Now().UnixMilli())
		want := e.consume(tp)

		// Merge, then collect the flushed objects after the grace period.
		c := e.compactor("a", nil)
		e.clk.Advance(2 * time.Minute)
		if err := c.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		e.clk.Advance(11 * time.Minute)
		if err := c.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if s := e.stats(); s.Tombstones != 2 || s.Objects != 1 {
			t.Fatalf("after merge and GC: %+v, want 1 object and 2 tombstones", s)
		}
		hw := func() int64 {
			o, err := e.cat.Offsets(ctx, tp)
			if err != nil {
				t.Fatal(err)
			}
			return o.HighWatermark
		}
		before := hw()

		// The late replay, by a restarted agent.
		replay := *buf
		replay.Replayed = true
		r := sinkAt(nil)
		if err := r.Upload(ctx, &replay); err != nil {
			t.Fatal(err)
		}
		again, err := r.Commit(ctx, &replay)
		if err != nil {
			t.Fatal(err)
		}
		for i := range first {
			if again[i] != first[i] {
				t.Fatalf("replay result %d: %+v, want the original %+v", i, again[i], first[i])
			}
		}
		if got := hw(); got != before {
			t.Fatalf("replay after GC committed again: high watermark %d -> %d", before, got)
		}
		if got := e.consume(tp); len(got) != len(want) {
			t.Fatalf("replay changed the log: %d batches, want %d", len(got), len(want))
		}
		// The re-put object is referenced by nothing: the orphan sweep
		// takes it once it is older than the grace period.
		if n, _ := e.bucketObjects(); n != 2 {
			t.Fatalf("bucket holds %d objects, want the merged one and the replay's re-put", n)
		}
		c2 := e.compactor("a", func(cfg *compaction.Config) { cfg.GCGrace = time.Nanosecond; cfg.TombstoneRetention = time.Hour })
		time.Sleep(2 * time.Millisecond) // the bucket stamps LastModified with the real clock
		if err := c2.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if n, _ := e.bucketObjects(); n != 1 {
			t.Fatalf("bucket holds %d objects after the orphan sweep, want 1", n)
		}

		// Tombstones go after their retention; a buffer that old is
		// refused at replay rather than committed twice.
		e.clk.Advance(2 * time.Hour)
		if err := c2.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if s := e.stats(); s.Tombstones != 0 {
			t.Fatalf("tombstones left after their retention: %+v", s)
		}
		late := sinkAt(func() time.Time { return time.Now().Add(catalog.DefaultTombstoneRetention + time.Hour) })
		if err := late.Upload(ctx, &replay); !wal.IsPermanent(err) {
			t.Fatalf("replay older than the retention: %v, want a permanent error", err)
		}
		if _, err := late.Commit(ctx, &replay); !wal.IsPermanent(err) {
			t.Fatalf("commit older than the retention: %v, want a permanent error", err)
		}
		if got := hw(); got != before {
			t.Fatalf("refused replay committed: high watermark %d -> %d", before, got)
		}
	})
}
