package wal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/floebroker/floe/catalog"
)

// groupSink is a fakeSink that also commits groups: buffer by buffer
// with the fakeSink's Commit, so its per-ID idempotence holds across a
// failed group and the per-buffer commits that follow.
type groupSink struct {
	*fakeSink
	// fail, when set, makes CommitGroup commit the first buffer and then
	// fail with this error; nil error with fail set returns results for
	// the first buffer only.
	fail    bool
	failErr error
	// onGroup, if set, runs at the start of each CommitGroup (after
	// recording it); its error is CommitGroup's.
	onGroup func(ctx context.Context) error
	// afterGroup, if set, runs once CommitGroup has committed every
	// buffer; its error is CommitGroup's (a reply lost after the commit).
	afterGroup func(ctx context.Context) error
	// onOne, if set, runs at the start of each Commit call the Log makes
	// (not those CommitGroup makes); its error is Commit's.
	onOne func(ctx context.Context, b *Sealed) error

	mu     sync.Mutex
	groups [][]string // buffer IDs of each CommitGroup call
}

var _ GroupSink = (*groupSink)(nil)

func (s *groupSink) CommitGroup(ctx context.Context, bs []*Sealed) ([][]catalog.BatchResult, error) {
	ids := make([]string, len(bs))
	for i, b := range bs {
		ids[i] = b.ID
	}
	s.mu.Lock()
	s.groups = append(s.groups, ids)
	s.mu.Unlock()
	if s.onGroup != nil {
		if err := s.onGroup(ctx); err != nil {
			return nil, err
		}
	}
	var out [][]catalog.BatchResult
	for i, b := range bs {
		if s.fail && i == 1 {
			return out, s.failErr
		}
		res, err := s.fakeSink.Commit(ctx, b)
		if err != nil {
			return nil, err
		}
		out = append(out, res)
	}
	if s.afterGroup != nil {
		if err := s.afterGroup(ctx); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Commit is the Log's per-buffer commit: a single buffer, or one of a
// group whose call failed.
func (s *groupSink) Commit(ctx context.Context, b *Sealed) ([]catalog.BatchResult, error) {
	if s.onOne != nil {
		if err := s.onOne(ctx, b); err != nil {
			return nil, err
		}
	}
	return s.fakeSink.Commit(ctx, b)
}

func (s *groupSink) groupCalls() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.groups)
}

// checkGroupCalls fails t unless the sink's group calls were want, in order.
func (s *groupSink) checkGroupCalls(t *testing.T, want ...[]string) {
	t.Helper()
	if got := s.groupCalls(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("group calls %v, want %v", got, want)
	}
}

// queue is buffers 1..n of a log whose first commit is held: buffer i
// holds one entry of its own partition tp(1, i) and one of the shared
// partition tp(9, 0) with offset span i. gated names buffers whose upload
// waits until their channel in uploads is closed. tweak, if not nil,
// changes the log's configuration.
type queue struct {
	l        *running
	acks     []*Ack
	ids      []string // buffer IDs in seal order
	release  chan struct{}
	uploads  map[int32]chan struct{}
	sink     *groupSink
	registry *prometheus.Registry
}

func newQueue(t *testing.T, sink *groupSink, n int, tweak func(*Config), gated ...int32) *queue {
	t.Helper()
	q := &queue{release: make(chan struct{}), uploads: map[int32]chan struct{}{}, sink: sink, registry: prometheus.NewRegistry()}
	for _, i := range gated {
		q.uploads[i] = make(chan struct{})
	}
	committing := make(chan struct{})
	sink.onUpload = func(ctx context.Context, b *Sealed) error {
		if gate, ok := q.uploads[b.Entries[0].TopicPartition.Partition]; ok {
			return waitRelease(ctx, gate)
		}
		return nil
	}
	sink.onCommit = func(ctx context.Context, b *Sealed) error {
		if b.Entries[0].TopicPartition.Partition == 1 {
			select {
			case <-committing:
			default:
				close(committing)
			}
			return waitRelease(ctx, q.release)
		}
		return nil
	}
	cfg := testConfig(NewMemFS())
	cfg.FlushBytes, cfg.MaxInflight = 10, 8 // every append seals its own buffer
	cfg.Registerer = q.registry
	if tweak != nil {
		tweak(&cfg)
	}
	q.l = start(t, cfg, sink)
	for i := 1; i <= n; i++ {
		q.acks = append(q.acks, mustAppend(t, q.l.Log, entry(tp(1, int32(i)), 10, 1), entry(tp(9, 0), 10, int32(i))))
		eventually(t, "the buffer sealed", func() bool {
			q.l.mu.Lock()
			defer q.l.mu.Unlock()
			return q.l.mu.cur == nil
		})
		if i == 1 {
			<-committing
		}
	}
	q.l.mu.Lock()
	for _, b := range q.l.mu.sealed {
		q.ids = append(q.ids, b.sealed.ID)
	}
	q.l.mu.Unlock()
	if len(q.ids) != n {
		t.Fatalf("%d buffers sealed, want %d", len(q.ids), n)
	}
	return q
}

// waitUploaded waits until the uploads of buffers (1-based) were recorded.
func (q *queue) waitUploaded(t *testing.T, buffers ...int) {
	t.Helper()
	eventually(t, "uploads recorded", func() bool {
		q.l.mu.Lock()
		defer q.l.mu.Unlock()
		for _, i := range buffers {
			select {
			case <-q.l.mu.sealed[i-1].uploaded:
			default:
				return false
			}
		}
		return true
	})
}

// check waits for every ack and checks its results: offset 0 on the
// buffer's own partition, and on the shared one the sum of the spans of
// the buffers before it, which holds only if they committed in seal order.
func (q *queue) check(t *testing.T) {
	t.Helper()
	shared := int64(0)
	for i, a := range q.acks {
		res := wait(t, a)
		if len(res) != 2 || res[0].BaseOffset != 0 || res[1].BaseOffset != shared {
			t.Fatalf("buffer %d: results %+v, want offsets [0 %d]", i+1, res, shared)
		}
		shared += int64(i + 1)
	}
	if got := q.sink.commitOrder(); !slices.Equal(got, q.ids) {
		t.Fatalf("commit order %v, want seal order %v", got, q.ids)
	}
}

// groupHist returns floe_wal_commit_group_buffers' sample count and sum.
func (q *queue) groupHist(t *testing.T) (count uint64, sum float64) {
	t.Helper()
	var m dto.Metric
	if err := q.l.m.commitGroup.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// TestGroupCommit: buffers uploaded while a commit runs are committed
// together once it returns, in seal order, each append getting its own
// results; a buffer whose upload is still running ends the group and is
// committed next, not skipped or reordered.
func TestGroupCommit(t *testing.T) {
	sink := &groupSink{fakeSink: newFakeSink()}
	// Buffer 3's upload is held until buffer 2 has committed: 2 commits
	// alone, and 3 (taken from the queue while gathering 2's group) is
	// committed next, with 4 and 5.
	q := newQueue(t, sink, 5, nil, 3)
	var during []bool
	sink.onGroup = func(context.Context) error {
		during = append(during, q.l.Committing() != nil)
		return nil
	}
	q.waitUploaded(t, 2, 4, 5)
	close(q.release)
	eventually(t, "buffer 2 committed", func() bool { _, c := sink.counts(); return c == 2 })
	close(q.uploads[3])
	q.check(t)

	sink.checkGroupCalls(t, q.ids[2:5])
	if !slices.Equal(during, []bool{true}) {
		t.Fatalf("Committing during group calls: %v", during)
	}
	// Three successful commit calls: 1, 2, then 3-5 together.
	if n, sum := q.groupHist(t); n != 3 || sum != 5 {
		t.Fatalf("commit group histogram: %d calls, %v buffers; want 3, 5", n, sum)
	}
	if n := testutil.ToFloat64(q.l.m.flushes); n != 5 {
		t.Fatalf("flushes %v", n)
	}
	var m dto.Metric
	if err := q.l.m.commitWait.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetHistogram().GetSampleCount(); n != 5 {
		t.Fatalf("commit wait: %d samples, want one per buffer", n)
	}
	eventually(t, "files deleted", func() bool { return len(walFiles(t, q.l.fs, "/wal")) == 0 })
}

// TestGroupCommitFailureFallsBack: a group call that fails, after
// committing part of the group or not, or answers with the wrong shape,
// is followed by per-buffer commits, which return the results of what
// the group call did commit.
func TestGroupCommitFailureFallsBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"error after the first buffer", catalog.ErrCommitUnknown},
		{"permanent error after the first buffer", Permanent(errors.New("refused"))},
		{"too few results", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &groupSink{fakeSink: newFakeSink(), fail: true, failErr: tc.err}
			q := newQueue(t, sink, 4, nil)
			q.waitUploaded(t, 2, 3, 4)
			close(q.release)
			q.check(t)
			sink.checkGroupCalls(t, q.ids[1:4])
			if n, sum := q.groupHist(t); n != 4 || sum != 4 {
				t.Fatalf("commit group histogram: %d calls, %v buffers; want 4, 4", n, sum)
			}
			if n := testutil.ToFloat64(q.l.m.retries.WithLabelValues("commit")); n != 1 {
				t.Fatalf("commit retries %v, want 1 (the group call)", n)
			}
			if n := testutil.ToFloat64(q.l.m.dropped); n != 0 {
				t.Fatalf("%v buffers dropped", n)
			}
		})
	}
}

// TestGroupCommitAtShutdown: a group call still running when the drain
// times out settles its buffers with its results if it returns them, and
// otherwise leaves them to Run (failed with ErrClosed, kept for replay)
// without committing them one by one.
func TestGroupCommitAtShutdown(t *testing.T) {
	for _, commits := range []bool{false, true} {
		t.Run(fmt.Sprintf("commits=%v", commits), func(t *testing.T) {
			sink := &groupSink{fakeSink: newFakeSink()}
			sink.onGroup = func(ctx context.Context) error {
				<-ctx.Done() // the drain timed out
				if commits {
					return nil
				}
				return ctx.Err()
			}
			q := newQueue(t, sink, 3, func(c *Config) { c.DrainTimeout = 20 * time.Millisecond })
			q.waitUploaded(t, 2, 3)
			close(q.release)
			eventually(t, "the group call", func() bool { return len(sink.groupCalls()) == 1 })
			if err := q.l.stop(t); !errors.Is(err, ErrClosed) {
				t.Fatalf("Run: %v", err)
			}
			if commits {
				q.check(t)
				return
			}
			wait(t, q.acks[0])
			for i, a := range q.acks[1:] {
				if _, err := a.Wait(context.Background()); !errors.Is(err, ErrClosed) {
					t.Fatalf("ack %d: %v", i+2, err)
				}
			}
			if _, c := sink.counts(); c != 1 {
				t.Fatalf("%d buffers committed, want only the first", c)
			}
			if n := len(walFiles(t, q.l.fs, "/wal")); n != 2 {
				t.Fatalf("%d files left for replay, want 2", n)
			}
		})
	}
}

// oneCalls records the per-buffer Commit calls of a groupSink, by the
// buffer's index in seal order (its own partition, 1-based).
type oneCalls struct {
	mu    sync.Mutex
	calls []int32
}

func (c *oneCalls) add(b *Sealed) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, b.Entries[0].TopicPartition.Partition)
}

func (c *oneCalls) get() []int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// TestGroupCommitLostReplyFallsBack: a group call whose transaction
// committed every buffer but whose reply was lost (the connection died
// after COMMIT reached the catalog) is followed by one Commit per buffer,
// each getting the offsets the group call assigned: nothing is committed
// twice, and the next buffer's offsets follow on without a gap or overlap.
func TestGroupCommitLostReplyFallsBack(t *testing.T) {
	var lost sync.Once
	var calls oneCalls
	sink := &groupSink{fakeSink: newFakeSink()}
	sink.afterGroup = func(context.Context) (err error) {
		lost.Do(func() { err = catalog.ErrCommitUnknown })
		return err
	}
	sink.onOne = func(_ context.Context, b *Sealed) error { calls.add(b); return nil }
	q := newQueue(t, sink, 4, nil)
	q.waitUploaded(t, 2, 3, 4)
	close(q.release)
	q.check(t)
	sink.checkGroupCalls(t, q.ids[1:4])
	if got := calls.get(); !slices.Equal(got, []int32{1, 2, 3, 4}) {
		t.Fatalf("per-buffer commits %v, want each buffer once in seal order", got)
	}
	if n := testutil.ToFloat64(q.l.m.dropped); n != 0 {
		t.Fatalf("%v buffers dropped", n)
	}
	// The shared partition holds 1+2+3+4 offsets: the next starts at 10.
	r := wait(t, mustAppend(t, q.l.Log, entry(tp(1, 5), 10, 1), entry(tp(9, 0), 10, 1)))
	if r[1].BaseOffset != 10 {
		t.Fatalf("next offset %d, want 10: the fallback assigned offsets again", r[1].BaseOffset)
	}
	if _, c := sink.counts(); c != 5 {
		t.Fatalf("%d effective commits, want 5", c)
	}
	eventually(t, "files deleted", func() bool { return len(walFiles(t, q.l.fs, "/wal")) == 0 })
}

// TestGroupFallbackKeepsSealOrder: after a failed group call, the
// buffers are committed one at a time in seal order: a transient error
// is retried before any later buffer is tried, and a permanent error
// fails only its buffer's acks (taking no offsets), the next buffer being
// committed after it.
func TestGroupFallbackKeepsSealOrder(t *testing.T) {
	bad := errors.New("refused")
	var calls oneCalls
	transient := 2
	sink := &groupSink{fakeSink: newFakeSink()}
	sink.onGroup = func(context.Context) error { return errTransient }
	sink.onOne = func(_ context.Context, b *Sealed) error {
		calls.add(b)
		switch b.Entries[0].TopicPartition.Partition {
		case 2:
			if transient > 0 {
				transient--
				return errTransient
			}
		case 3:
			return Permanent(bad)
		}
		return nil
	}
	q := newQueue(t, sink, 4, nil)
	q.waitUploaded(t, 2, 3, 4)
	close(q.release)

	// Buffer 3 is dropped: 4 takes the shared offsets right after 2's.
	for i, want := range map[int]int64{0: 0, 1: 1, 3: 3} {
		if res := wait(t, q.acks[i]); res[0].BaseOffset != 0 || res[1].BaseOffset != want {
			t.Fatalf("buffer %d: results %+v, want offsets [0 %d]", i+1, res, want)
		}
	}
	if _, err := q.acks[2].Wait(context.Background()); !errors.Is(err, bad) {
		t.Fatalf("buffer 3's ack: %v", err)
	}
	if got, want := sink.commitOrder(), []string{q.ids[0], q.ids[1], q.ids[3]}; !slices.Equal(got, want) {
		t.Fatalf("commit order %v, want %v", got, want)
	}
	if got := calls.get(); !slices.Equal(got, []int32{1, 2, 2, 2, 3, 4}) {
		t.Fatalf("per-buffer commit calls %v, want 1, 2 (three tries), 3, 4", got)
	}
	if n := testutil.ToFloat64(q.l.m.dropped); n != 1 {
		t.Fatalf("%v buffers dropped, want 1", n)
	}
	// The group call and buffer 2's two failed tries.
	if n := testutil.ToFloat64(q.l.m.retries.WithLabelValues("commit")); n != 3 {
		t.Fatalf("commit retries %v, want 3", n)
	}
	if err := q.l.Healthy(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "files deleted", func() bool { return len(walFiles(t, q.l.fs, "/wal")) == 0 })
}

// TestGroupFallbackInterruptedThenReplayed: the group call commits every
// buffer but its reply is lost, and the drain times out while the
// fallback is still committing one by one. The buffers the fallback got
// through are acked with the group's offsets and deleted; the rest fail
// with ErrClosed and stay on disk; after a crash, replay commits them
// again with the offsets the group assigned, not new ones.
func TestGroupFallbackInterruptedThenReplayed(t *testing.T) {
	fs := NewMemFS()
	sink := &groupSink{fakeSink: newFakeSink()}
	sink.afterGroup = func(context.Context) error { return catalog.ErrCommitUnknown }
	stuck := make(chan struct{})
	sink.onOne = func(ctx context.Context, b *Sealed) error {
		if b.Entries[0].TopicPartition.Partition == 3 {
			close(stuck)
			<-ctx.Done() // the catalog is unreachable until the drain times out
			return ctx.Err()
		}
		return nil
	}
	q := newQueue(t, sink, 4, func(c *Config) { c.FS, c.DrainTimeout = fs, 50*time.Millisecond })
	q.waitUploaded(t, 2, 3, 4)
	close(q.release)
	<-stuck
	for i, want := range []int64{0, 1} {
		if res := wait(t, q.acks[i]); res[0].BaseOffset != 0 || res[1].BaseOffset != want {
			t.Fatalf("buffer %d: results %+v, want offsets [0 %d]", i+1, res, want)
		}
	}
	if err := q.l.stop(t); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run: %v", err)
	}
	for i, a := range q.acks[2:] {
		if _, err := a.Wait(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("buffer %d's ack: %v", i+3, err)
		}
	}
	if n := len(walFiles(t, fs, "/wal")); n != 2 {
		t.Fatalf("%d files left, want buffers 3 and 4", n)
	}

	// The catalog (the fake sink's state) survives the crash.
	disk := fs.Crash()
	l2 := start(t, testConfig(disk), &groupSink{fakeSink: sink.fakeSink})
	eventually(t, "replayed buffers committed", func() bool { return len(walFiles(t, disk, "/wal")) == 0 })
	if got := sink.commitOrder(); !slices.Equal(got, q.ids) {
		t.Fatalf("effective commits %v, want each buffer once in seal order %v", got, q.ids)
	}
	sink.mu.Lock()
	for _, id := range q.ids[2:] {
		if !sink.sealed[id].Replayed {
			t.Errorf("buffer %s was not replayed", id)
		}
	}
	sink.mu.Unlock()
	r := wait(t, mustAppend(t, l2.Log, entry(tp(1, 5), 10, 1), entry(tp(9, 0), 10, 1)))
	if r[1].BaseOffset != 10 {
		t.Fatalf("next offset %d, want 10: the replay assigned offsets again", r[1].BaseOffset)
	}
}
