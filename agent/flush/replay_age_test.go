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

// TestIdempotentBufferOlderThanProducerExpirationIsRefused: a buffer of
// idempotent batches replayed once its producers' state may have expired
// is dropped (it was never acknowledged): the client may have sent the
// batch again through another agent, and with the state gone the replay
// would be accepted as new and stored twice. A buffer without idempotent
// batches goes through, as does one young enough.
func TestIdempotentBufferOlderThanProducerExpirationIsRefused(t *testing.T) {
	ctx := context.Background()
	now := testCreated.Add(22 * time.Hour)
	cat := newFakeCatalog()
	s := New(Config{Cluster: "c", AgentID: "x", ProducerExpiration: 24 * time.Hour, Now: func() time.Time { return now }},
		mem.New(nil), cat, nil, nil)
	b := sealed() // holds batches of producers 7 and 99
	b.Replayed = true
	if err := s.Upload(ctx, b); !wal.IsPermanent(err) {
		t.Fatalf("upload of a 22-hour-old idempotent buffer: %v, want a permanent error", err)
	}
	if _, err := s.Commit(ctx, b); !wal.IsPermanent(err) {
		t.Fatalf("commit of a 22-hour-old idempotent buffer: %v, want a permanent error", err)
	}
	if _, err := s.CommitGroup(ctx, []*wal.Sealed{b}); err == nil {
		t.Fatal("group commit of a 22-hour-old idempotent buffer succeeded")
	}
	plain := sealed()
	plain.ID = "01J0000000000000000000000B"
	plain.Replayed = true
	plain.Entries = []wal.Entry{plain.Entries[0], plain.Entries[2]} // no producer
	if err := s.Upload(ctx, plain); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, plain); err != nil {
		t.Fatalf("a 22-hour-old buffer without idempotent batches: %v", err)
	}
	now = testCreated.Add(20 * time.Hour)
	if err := s.Upload(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, b); err != nil {
		t.Fatalf("a 20-hour-old idempotent buffer: %v", err)
	}
	if len(cat.segments) != 2 {
		t.Fatalf("%d commits, want 2", len(cat.segments))
	}
}
