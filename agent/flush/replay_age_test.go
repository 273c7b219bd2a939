package flush

import (
	"context"
	"testing"
	"time"

	"github.com/floebroker/floe/objstore/mem"
	"github.com/floebroker/floe/wal"
)

// A buffer older than MaxReplayAge is refused with a permanent error at
// upload and at commit: its commit may have happened long ago and its
// tombstone be pruned, so committing it could duplicate its batches.
func TestBufferOlderThanMaxReplayAgeIsRefused(t *testing.T) {
	ctx := context.Background()
	now := testCreated.Add(8 * 24 * time.Hour)
	cat := newFakeCatalog()
	bucket := &countingBucket{Bucket: mem.New(nil)}
	s := New(Config{Cluster: "c", AgentID: "x", Now: func() time.Time { return now }}, bucket, cat, nil, nil)
	b := sealed()
	b.Replayed = true
	if err := s.Upload(ctx, b); !wal.IsPermanent(err) {
		t.Fatalf("upload of an 8-day-old buffer: %v, want a permanent error", err)
	}
	if _, err := s.Commit(ctx, b); !wal.IsPermanent(err) {
		t.Fatalf("commit of an 8-day-old buffer: %v, want a permanent error", err)
	}
	if bucket.puts != 0 || len(cat.segments) != 0 {
		t.Fatalf("%d puts, %d commits of a refused buffer", bucket.puts, len(cat.segments))
	}
	// Within the bound it goes through.
	now = testCreated.Add(6 * 24 * time.Hour)
	if err := s.Upload(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
}
