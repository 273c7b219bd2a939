package wal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/floebroker/floe/catalog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func tp(topic byte, part int32) catalog.TopicPartition {
	return catalog.TopicPartition{TopicID: catalog.TopicID{topic}, Partition: part}
}

// entry makes an entry of n batch bytes whose batch says which tp it is.
func entry(t catalog.TopicPartition, n int, span int32) Entry {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(int(t.TopicID[0])*7 + int(t.Partition) + i)
	}
	return Entry{TopicPartition: t, Batch: b, OffsetSpan: span, Records: span, FirstTimestamp: 1, MaxTimestamp: 2, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
}

// fakeSink assigns offsets like the catalog: per partition, gapless, and
// idempotent per buffer ID (a re-commit returns the first results).
type fakeSink struct {
	mu        sync.Mutex
	uploads   []string // buffer IDs, in upload call order
	commits   []string // buffer IDs, in the order commits took effect
	sealed    map[string]Sealed
	results   map[string][]catalog.BatchResult
	next      map[catalog.TopicPartition]int64
	onUpload  func(ctx context.Context, b *Sealed) error // optional, before recording
	onCommit  func(ctx context.Context, b *Sealed) error // optional, before committing
	afterCmt  func(b *Sealed)                            // optional, after committing
	uploadedC chan string
}

func newFakeSink() *fakeSink {
	return &fakeSink{
		sealed:    make(map[string]Sealed),
		results:   make(map[string][]catalog.BatchResult),
		next:      make(map[catalog.TopicPartition]int64),
		uploadedC: make(chan string, 100),
	}
}

func (s *fakeSink) Upload(ctx context.Context, b *Sealed) error {
	if s.onUpload != nil {
		if err := s.onUpload(ctx, b); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.uploads = append(s.uploads, b.ID)
	s.sealed[b.ID] = *b
	s.mu.Unlock()
	select {
	case s.uploadedC <- b.ID:
	default:
	}
	return nil
}

func (s *fakeSink) Commit(ctx context.Context, b *Sealed) ([]catalog.BatchResult, error) {
	if s.onCommit != nil {
		if err := s.onCommit(ctx, b); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	res, ok := s.results[b.ID]
	if !ok {
		res = make([]catalog.BatchResult, len(b.Entries))
		for i, e := range b.Entries {
			res[i] = catalog.BatchResult{BaseOffset: s.next[e.TopicPartition]}
			s.next[e.TopicPartition] += int64(e.OffsetSpan)
		}
		s.results[b.ID] = res
		s.commits = append(s.commits, b.ID)
	}
	s.mu.Unlock()
	if s.afterCmt != nil && !ok {
		s.afterCmt(b)
	}
	return res, nil
}

func (s *fakeSink) counts() (uploads, commits int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.uploads), len(s.commits)
}

func (s *fakeSink) commitOrder() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commits...)
}

// testConfig is fast: tests wait on short intervals and backoffs.
func testConfig(fs FS) Config {
	return Config{
		Dir:             "/wal",
		FlushInterval:   5 * time.Millisecond,
		FlushBytes:      1 << 20,
		RetryBackoff:    time.Millisecond,
		MaxRetryBackoff: 5 * time.Millisecond,
		DrainTimeout:    5 * time.Second,
		FS:              fs,
	}
}

// running is a Log with its Run goroutine.
type running struct {
	*Log
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg Config, sink Sink) *running {
	t.Helper()
	l, err := Open(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Log: l, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- l.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and returns its result (once; later calls return nil).
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func mustAppend(t *testing.T, l *Log, es ...Entry) *Ack {
	t.Helper()
	ack, err := l.Append(context.Background(), es)
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

func wait(t *testing.T, a *Ack) []catalog.BatchResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := a.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// eventually polls cond for up to 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func walFiles(t *testing.T, fs FS, dir string) []string {
	t.Helper()
	names, err := fs.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

var errTransient = errors.New("transient")

func offsets(res []catalog.BatchResult) string {
	s := ""
	for _, r := range res {
		s += fmt.Sprintf("%d ", r.BaseOffset)
	}
	return s
}
