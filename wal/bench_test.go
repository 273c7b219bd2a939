package wal

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

type nopSink struct{}

func (nopSink) Upload(context.Context, *Sealed) error { return nil }
func (nopSink) Commit(_ context.Context, b *Sealed) ([]catalog.BatchResult, error) {
	return make([]catalog.BatchResult, len(b.Entries)), nil
}

// BenchmarkAppendOSFS measures appends of 1 KiB batches, each waited for,
// from many producers on the real file system with an instant sink: the
// WAL's own cost (write, fsync per seal, rename, directory fsync, commit
// bookkeeping) and its group commit. ns/op times producers is the
// append-to-ack latency.
func BenchmarkAppendOSFS(b *testing.B) {
	for _, producers := range []int{16, 256} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) { benchAppend(b, producers) })
	}
}

func benchAppend(b *testing.B, producers int) {
	cfg := Config{Dir: b.TempDir(), FlushInterval: 5 * time.Millisecond}
	l, err := Open(cfg, nopSink{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	e := entry(tp(1, 0), 1024, 1)
	b.SetBytes(1024)
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N/producers + 1
	for range producers {
		wg.Go(func() {
			for range per {
				ack, err := l.Append(ctx, []Entry{e})
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := ack.Wait(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAppendManyPartitions appends one produce request's worth of
// entries, small batches over 2,000 partitions, on the real file system
// without waiting for the acks: the per-request work of Append (framing,
// CRCs, the write) that the producing connection pays.
func BenchmarkAppendManyPartitions(b *testing.B) {
	l, err := Open(Config{Dir: b.TempDir(), FlushInterval: 5 * time.Millisecond}, nopSink{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	entries := make([]Entry, 2000)
	for i := range entries {
		entries[i] = entry(tp(1, int32(i)), 300, 6)
	}
	b.SetBytes(2000 * 300)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Append(ctx, entries); err != nil {
			b.Fatal(err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
