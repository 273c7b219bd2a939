package wal

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// TestLargeAppendReplays: an append larger than frameChunk (many frames,
// one of them alone larger than a chunk) is written in several chunks and
// reads back frame for frame.
func TestLargeAppendReplays(t *testing.T) {
	fs := NewMemFS()
	sink := newFakeSink()
	blocked := make(chan struct{}, 1)
	sink.onCommit = func(ctx context.Context, b *Sealed) error {
		blocked <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	cfg := testConfig(fs)
	cfg.DrainTimeout = 10 * time.Millisecond
	l1 := start(t, cfg, sink)
	var entries []Entry
	for i := range 40 {
		entries = append(entries, entry(tp(1, int32(i%7)), 100_000+i, 1))
	}
	entries = append(entries, entry(tp(2, 0), frameChunk+12345, 2), entry(tp(2, 1), 10, 1))
	size := 0
	for i := range entries {
		size += frameSize(&entries[i])
	}
	chunks := encodeFrames(entries, size)
	total := 0
	for _, c := range chunks {
		if len(*c) > frameChunk && len(*c) != frameSize(&entries[40]) {
			t.Fatalf("a chunk of %d bytes", len(*c))
		}
		total += len(*c)
	}
	if len(chunks) < 5 || total != size {
		t.Fatalf("%d chunks of %d bytes in all for %d entries of %d bytes", len(chunks), total, len(entries), size)
	}
	mustAppend(t, l1.Log, entries...)
	<-blocked
	disk := fs.Crash()
	l1.stop(t)

	l2, err := Open(testConfig(disk), newFakeSink())
	if err != nil {
		t.Fatal(err)
	}
	l2.mu.Lock()
	var got []Entry
	for _, b := range l2.mu.sealed {
		got = append(got, b.sealed.Entries...)
	}
	l2.mu.Unlock()
	if len(got) != len(entries) {
		t.Fatalf("replayed %d entries, appended %d", len(got), len(entries))
	}
	for i := range got {
		if got[i].TopicPartition != entries[i].TopicPartition || !bytes.Equal(got[i].Batch, entries[i].Batch) {
			t.Fatalf("entry %d differs after replay", i)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = l2.Run(ctx)
}

// TestCommitting: Committing is non-nil exactly while the sink's Commit
// runs, and its channel is closed when Commit returns.
func TestCommitting(t *testing.T) {
	sink := newFakeSink()
	var during <-chan struct{}
	l := start(t, testConfig(NewMemFS()), sink)
	sink.onCommit = func(context.Context, *Sealed) error {
		during = l.Committing()
		return nil
	}
	if l.Committing() != nil {
		t.Fatal("Committing before any commit")
	}
	wait(t, mustAppend(t, l.Log, entry(tp(1, 0), 10, 1)))
	if during == nil {
		t.Fatal("Committing was nil during the sink's Commit")
	}
	select {
	case <-during:
	default:
		t.Fatal("Committing's channel still open after the commit")
	}
	if l.Committing() != nil {
		t.Fatal("Committing after the commit returned")
	}
	if err := l.stop(t); err != nil {
		t.Fatal(err)
	}
}
