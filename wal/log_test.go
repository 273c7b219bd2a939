package wal

import (
	"context"
	"errors"
	"flag"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/floebroker/floe/catalog"
)

func TestAppendFlushResults(t *testing.T) {
	fs := NewMemFS()
	sink := newFakeSink()
	reg := prometheus.NewRegistry()
	cfg := testConfig(fs)
	cfg.Registerer = reg
	l := start(t, cfg, sink)

	a1 := mustAppend(t, l.Log, entry(tp(1, 0), 10, 3), entry(tp(2, 0), 10, 1), entry(tp(1, 0), 10, 2))
	a2 := mustAppend(t, l.Log, entry(tp(1, 0), 10, 5))
	r1, r2 := wait(t, a1), wait(t, a2)
	if got := offsets(r1); got != "0 0 3 " {
		t.Fatalf("first append offsets %q", got)
	}
	if got := offsets(r2); got != "5 " {
		t.Fatalf("second append offsets %q", got)
	}
	eventually(t, "files deleted", func() bool { return len(walFiles(t, fs, "/wal")) == 0 })
	if err := l.Healthy(); err != nil {
		t.Fatal(err)
	}
	if err := l.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := testutil.ToFloat64(l.m.flushes); n < 1 {
		t.Fatalf("flushes metric %v", n)
	}
	if n := testutil.ToFloat64(l.m.buffered); n != 0 {
		t.Fatalf("buffered gauge %v after drain", n)
	}
	if _, err := l.Append(context.Background(), []Entry{entry(tp(1, 0), 1, 1)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after Run: %v", err)
	}
	// The sealed buffer carried what was appended.
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, id := range sink.uploads {
		s := sink.sealed[id]
		if s.Replayed || s.Created.IsZero() || s.Bytes != int64(10*len(s.Entries)) {
			t.Fatalf("sealed %+v", s)
		}
	}
}

// TestAppendAfterDeadlineAppendsNothing: a caller whose context is done
// gets its error and nothing of its entries is committed; the next
// append takes the first offset.
func TestAppendAfterDeadlineAppendsNothing(t *testing.T) {
	l := start(t, testConfig(NewMemFS()), newFakeSink())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, []Entry{entry(tp(1, 0), 10, 3)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with a done context: %v", err)
	}
	if got := offsets(wait(t, mustAppend(t, l.Log, entry(tp(1, 0), 10, 2)))); got != "0 " {
		t.Fatalf("next append offsets %q, want 0: the cancelled entries were appended", got)
	}
}

func TestEmptyAppend(t *testing.T) {
	l := start(t, testConfig(NewMemFS()), newFakeSink())
	if res := wait(t, mustAppend(t, l.Log)); len(res) != 0 {
		t.Fatal(res)
	}
}

func TestFlushTriggers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		interval   time.Duration
		flushBytes int64
		batch      int
	}{
		{"by interval", 20 * time.Millisecond, 1 << 20, 10},
		{"by bytes", time.Hour, 100, 150},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newFakeSink()
			cfg := testConfig(NewMemFS())
			cfg.FlushInterval, cfg.FlushBytes = tc.interval, tc.flushBytes
			l := start(t, cfg, sink)
			start := time.Now()
			wait(t, mustAppend(t, l.Log, entry(tp(1, 0), tc.batch, 1)))
			if el := time.Since(start); el < tc.interval && tc.interval < time.Hour {
				t.Fatalf("flushed after %v, before the interval %v", el, tc.interval)
			}
			if up, cm := sink.counts(); up != 1 || cm != 1 {
				t.Fatalf("uploads %d commits %d", up, cm)
			}
		})
	}
}

func TestBelowFlushBytesWaitsForInterval(t *testing.T) {
	sink := newFakeSink()
	cfg := testConfig(NewMemFS())
	cfg.FlushInterval, cfg.FlushBytes = time.Hour, 1000
	l := start(t, cfg, sink)
	ack := mustAppend(t, l.Log, entry(tp(1, 0), 10, 1))
	time.Sleep(30 * time.Millisecond)
	if up, _ := sink.counts(); up != 0 {
		t.Fatalf("%d uploads below flush bytes and before the interval", up)
	}
	// Reaching FlushBytes seals the buffer with both appends.
	ack2 := mustAppend(t, l.Log, entry(tp(1, 0), 995, 1))
	wait(t, ack)
	wait(t, ack2)
	if up, _ := sink.counts(); up != 1 {
		t.Fatalf("%d uploads", up)
	}
}

func TestNoFlushWhenIdle(t *testing.T) {
	sink := newFakeSink()
	cfg := testConfig(NewMemFS())
	cfg.FlushInterval = 2 * time.Millisecond
	l := start(t, cfg, sink)
	time.Sleep(40 * time.Millisecond)
	if up, _ := sink.counts(); up != 0 {
		t.Fatalf("%d uploads while idle", up)
	}
	wait(t, mustAppend(t, l.Log, entry(tp(1, 0), 10, 1)))
	time.Sleep(40 * time.Millisecond)
	if up, cm := sink.counts(); up != 1 || cm != 1 {
		t.Fatalf("uploads %d commits %d after one append", up, cm)
	}
}

func TestPipelinedCommitsInSealOrder(t *testing.T) {
	sink := newFakeSink()
	release := make(chan struct{})
	var first sync.Once
	firstID := make(chan string, 1)
	sink.onUpload = func(ctx context.Context, b *Sealed) error {
		slow := false
		first.Do(func() { slow = true; firstID <- b.ID })
		if slow {
			return waitRelease(ctx, release)
		}
		return nil
	}
	cfg := testConfig(NewMemFS())
	cfg.FlushBytes = 10 // every append seals its own buffer
	l := start(t, cfg, sink)

	a1 := mustAppend(t, l.Log, entry(tp(1, 0), 10, 1))
	id1 := <-firstID // buffer 1 is uploading (slowly)
	a2 := mustAppend(t, l.Log, entry(tp(1, 0), 10, 1))
	id2 := <-sink.uploadedC // buffer 2's upload finished first
	if id2 == id1 {
		t.Fatal("same buffer")
	}
	time.Sleep(20 * time.Millisecond)
	if _, cm := sink.counts(); cm != 0 {
		t.Fatal("buffer 2 committed before buffer 1")
	}
	close(release)
	r1, r2 := wait(t, a1), wait(t, a2)
	if r1[0].BaseOffset != 0 || r2[0].BaseOffset != 1 {
		t.Fatalf("offsets %v %v", r1, r2)
	}
	if got := sink.commitOrder(); len(got) != 2 || got[0] != id1 || got[1] != id2 {
		t.Fatalf("commit order %v, want [%s %s]", got, id1, id2)
	}
}

func TestMaxInflightBoundsUploads(t *testing.T) {
	sink := newFakeSink()
	var mu sync.Mutex
	inflight, peak := 0, 0
	sink.onUpload = func(ctx context.Context, b *Sealed) error {
		mu.Lock()
		inflight++
		peak = max(peak, inflight)
		mu.Unlock()
		time.Sleep(3 * time.Millisecond)
		mu.Lock()
		inflight--
		mu.Unlock()
		return nil
	}
	cfg := testConfig(NewMemFS())
	cfg.FlushBytes, cfg.MaxInflight = 10, 2
	l := start(t, cfg, sink)
	var acks []*Ack
	for range 20 {
		acks = append(acks, mustAppend(t, l.Log, entry(tp(1, 0), 10, 1)))
		time.Sleep(200 * time.Microsecond)
	}
	last := int64(-1)
	for _, a := range acks {
		r := wait(t, a)
		if r[0].BaseOffset <= last {
			t.Fatalf("offsets out of append order: %d after %d", r[0].BaseOffset, last)
		}
		last = r[0].BaseOffset
	}
	if peak > 2 {
		t.Fatalf("%d concurrent uploads with MaxInflight 2", peak)
	}
}

func TestBackpressure(t *testing.T) {
	sink := newFakeSink()
	release := make(chan struct{})
	sink.onUpload = func(ctx context.Context, b *Sealed) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	cfg := testConfig(NewMemFS())
	cfg.FlushBytes, cfg.MaxBufferedBytes, cfg.MaxInflight = 100, 1000, 1
	l := start(t, cfg, sink)

	var acks []*Ack
	for range 4 {
		acks = append(acks, mustAppend(t, l.Log, entry(tp(1, 0), 300, 1))) // 1200 > 1000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := l.Append(ctx, []Entry{entry(tp(1, 0), 300, 1)})
	if !errors.Is(err, ErrBackpressure) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("append over the limit: %v", err)
	}
	l.mu.Lock()
	buffered := l.mu.buffered
	l.mu.Unlock()
	if buffered != 1200 {
		t.Fatalf("buffered %d bytes, want 1200 (the rejected append must not count)", buffered)
	}
	// A blocked appender proceeds once space frees.
	done := make(chan error, 1)
	go func() {
		ack, err := l.Append(context.Background(), []Entry{entry(tp(1, 0), 300, 1)})
		if err == nil {
			_, err = ack.Wait(context.Background())
		}
		done <- err
	}()
	close(release)
	for _, a := range acks {
		wait(t, a)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestTransientSinkErrorsAreRetried(t *testing.T) {
	sink := newFakeSink()
	var mu sync.Mutex
	upFails, cmFails := 2, 2
	sink.onUpload = func(context.Context, *Sealed) error {
		mu.Lock()
		defer mu.Unlock()
		if upFails > 0 {
			upFails--
			return errTransient
		}
		return nil
	}
	sink.onCommit = func(context.Context, *Sealed) error {
		mu.Lock()
		defer mu.Unlock()
		if cmFails > 0 {
			cmFails--
			return catalog.ErrCommitUnknown
		}
		return nil
	}
	cfg := testConfig(NewMemFS())
	cfg.Registerer = prometheus.NewRegistry()
	l := start(t, cfg, sink)
	wait(t, mustAppend(t, l.Log, entry(tp(1, 0), 10, 1)))
	if n := testutil.ToFloat64(l.m.retries.WithLabelValues("upload")); n != 2 {
		t.Fatalf("upload retries %v", n)
	}
	if n := testutil.ToFloat64(l.m.retries.WithLabelValues("commit")); n != 2 {
		t.Fatalf("commit retries %v", n)
	}
}

// A commit whose outcome was lost is retried; the sink's idempotence per
// buffer ID returns the first results.
func TestCommitUnknownAfterCommitIsIdempotent(t *testing.T) {
	sink := newFakeSink()
	var once sync.Once
	lost := false
	sink.afterCmt = func(*Sealed) { once.Do(func() { lost = true }) }
	wrapped := &lossySink{fakeSink: sink, lose: &lost}
	l := start(t, testConfig(NewMemFS()), wrapped)
	a := mustAppend(t, l.Log, entry(tp(1, 0), 10, 4))
	b := mustAppend(t, l.Log, entry(tp(1, 0), 10, 1))
	ra, rb := wait(t, a), wait(t, b)
	if ra[0].BaseOffset != 0 || rb[0].BaseOffset != 4 {
		t.Fatalf("offsets %v %v", ra, rb)
	}
	if _, cm := sink.counts(); cm != 1 {
		t.Fatalf("%d effective commits", cm)
	}
}

// lossySink reports ErrCommitUnknown for a commit that did happen, once.
type lossySink struct {
	*fakeSink
	lose *bool
}

func (s *lossySink) Commit(ctx context.Context, b *Sealed) ([]catalog.BatchResult, error) {
	res, err := s.fakeSink.Commit(ctx, b)
	if *s.lose {
		*s.lose = false
		return nil, catalog.ErrCommitUnknown
	}
	return res, err
}

func TestPermanentSinkErrorFailsOnlyThatBuffer(t *testing.T) {
	for _, op := range []string{"upload", "commit"} {
		t.Run(op, func(t *testing.T) {
			sink := newFakeSink()
			bad := errors.New("object too large")
			var once sync.Once
			hook := func(context.Context, *Sealed) (err error) {
				once.Do(func() { err = Permanent(bad) })
				return err
			}
			if op == "upload" {
				sink.onUpload = hook
			} else {
				sink.onCommit = hook
			}
			cfg := testConfig(NewMemFS())
			cfg.FlushBytes = 10
			l := start(t, cfg, sink)
			a1 := mustAppend(t, l.Log, entry(tp(1, 0), 10, 1))
			if _, err := a1.Wait(context.Background()); !errors.Is(err, bad) {
				t.Fatalf("first ack: %v", err)
			}
			r := wait(t, mustAppend(t, l.Log, entry(tp(1, 0), 10, 1)))
			if r[0].BaseOffset != 0 {
				t.Fatalf("offset %d: the dropped buffer must not take offsets", r[0].BaseOffset)
			}
			if err := l.Healthy(); err != nil {
				t.Fatal(err)
			}
			eventually(t, "files deleted", func() bool { return len(walFiles(t, l.fs, "/wal")) == 0 })
		})
	}
}

func TestDrainFlushesEverything(t *testing.T) {
	sink := newFakeSink()
	cfg := testConfig(NewMemFS())
	cfg.FlushInterval = time.Hour // only the drain seals
	l := start(t, cfg, sink)
	acks := []*Ack{mustAppend(t, l.Log, entry(tp(1, 0), 10, 1)), mustAppend(t, l.Log, entry(tp(1, 1), 10, 1))}
	if err := l.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, a := range acks {
		wait(t, a)
	}
	if len(walFiles(t, l.fs, "/wal")) != 0 {
		t.Fatal("files left after a clean drain")
	}
}

func TestDrainTimeoutLeavesDataForReplay(t *testing.T) {
	fs := NewMemFS()
	sink := newFakeSink()
	sink.onUpload = func(ctx context.Context, b *Sealed) error {
		<-ctx.Done()
		return ctx.Err()
	}
	cfg := testConfig(fs)
	cfg.DrainTimeout = 20 * time.Millisecond
	l := start(t, cfg, sink)
	a := mustAppend(t, l.Log, entry(tp(1, 0), 10, 1))
	err := l.stop(t)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Run: %v", err)
	}
	if _, err := a.Wait(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("ack: %v", err)
	}
	// What was not flushed is durable: a crash now loses nothing.
	sink2 := newFakeSink()
	l2 := start(t, testConfig(fs.Crash()), sink2)
	eventually(t, "replayed commit", func() bool { _, c := sink2.counts(); return c == 1 })
	l2.stop(t)
}

// Sealing a buffer fails: fatal (a write to the open buffer is not; see
// TestWriteErrorDiscardsOnlyTheOpenBuffer).
func TestFatalFileErrors(t *testing.T) {
	for _, op := range []string{"sync", "syncdir", "rename"} {
		t.Run(op, func(t *testing.T) {
			fs := NewMemFS()
			boom := errors.New("EIO")
			l := start(t, testConfig(fs), newFakeSink())
			fs.Inject(func(o, name string) error {
				if o == op {
					return boom
				}
				return nil
			})
			ack := mustAppend(t, l.Log, entry(tp(1, 0), 10, 1))
			if _, err := ack.Wait(context.Background()); !errors.Is(err, ErrFailed) || !errors.Is(err, boom) {
				t.Fatalf("ack: %v", err)
			}
			if err := l.Healthy(); !errors.Is(err, ErrFailed) || !errors.Is(err, boom) {
				t.Fatalf("Healthy: %v", err)
			}
			fs.Inject(nil)
			if _, err := l.Append(context.Background(), []Entry{entry(tp(1, 0), 10, 1)}); !errors.Is(err, ErrFailed) {
				t.Fatalf("append after failure: %v", err)
			}
			select {
			case err := <-l.done:
				close(l.done)
				if !errors.Is(err, ErrFailed) {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return after a fatal error")
			}
		})
	}
}

// Many appenders: every partition's offsets stay gapless and each
// appender's batches to one partition keep their order.
func TestConcurrentAppends(t *testing.T) {
	sink := newFakeSink()
	cfg := testConfig(NewMemFS())
	cfg.FlushBytes = 500
	l := start(t, cfg, sink)
	const workers, appends = 8, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	var mu sync.Mutex
	seen := map[catalog.TopicPartition][]int64{}
	for w := range workers {
		wg.Go(func() {
			last := map[catalog.TopicPartition]int64{}
			for i := range appends {
				p := tp(1, int32((w+i)%3))
				ack, err := l.Append(context.Background(), []Entry{entry(p, 20, 2)})
				if err == nil {
					var res []catalog.BatchResult
					res, err = ack.Wait(context.Background())
					if err == nil {
						off := res[0].BaseOffset
						if prev, ok := last[p]; ok && off <= prev {
							t.Errorf("worker %d: offset %d after %d", w, off, prev)
						}
						last[p] = off
						mu.Lock()
						seen[p] = append(seen[p], off)
						mu.Unlock()
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	for p, offs := range seen {
		set := map[int64]bool{}
		for _, o := range offs {
			set[o] = true
		}
		for i := range int64(len(offs)) {
			if !set[2*i] {
				t.Fatalf("%v: offset %d missing", p, 2*i)
			}
		}
		total += len(offs)
	}
	if total != workers*appends {
		t.Fatalf("%d results", total)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{Dir: "d"}, true},
		{"no dir", Config{}, false},
		{"negative interval", Config{Dir: "d", FlushInterval: -1}, false},
		{"negative min interval", Config{Dir: "d", FlushMinInterval: -1}, false},
		{"min interval above interval", Config{Dir: "d", FlushInterval: time.Second, FlushMinInterval: time.Hour}, true},
		{"buffer below flush", Config{Dir: "d", FlushBytes: 10, MaxBufferedBytes: 5}, false},
		{"negative inflight", Config{Dir: "d", MaxInflight: -1}, false},
		{"backoff inverted", Config{Dir: "d", RetryBackoff: time.Second, MaxRetryBackoff: time.Millisecond}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v", err)
			}
		})
	}
	var c Config
	fl := flag.NewFlagSet("x", flag.ContinueOnError)
	c.RegisterFlags(fl)
	if err := fl.Parse([]string{"-wal.dir", "/x", "-wal.flush-interval", "1s", "-wal.max-inflight", "7"}); err != nil {
		t.Fatal(err)
	}
	if c.Dir != "/x" || c.FlushInterval != time.Second || c.MaxInflight != 7 || c.FlushBytes != DefaultFlushBytes {
		t.Fatalf("%+v", c)
	}
	// The minimum interval follows the interval unless set.
	if c.setDefaults(); c.FlushMinInterval != 200*time.Millisecond {
		t.Fatalf("flush min interval %v for a 1s interval, want 200ms", c.FlushMinInterval)
	}
	c = Config{}
	fl = flag.NewFlagSet("x", flag.ContinueOnError)
	c.RegisterFlags(fl)
	if err := fl.Parse([]string{"-wal.flush-min-interval", "30ms"}); err != nil {
		t.Fatal(err)
	}
	if c.setDefaults(); c.FlushMinInterval != 30*time.Millisecond {
		t.Fatalf("flush min interval %v, want 30ms", c.FlushMinInterval)
	}
}

func TestRunTwice(t *testing.T) {
	l := start(t, testConfig(NewMemFS()), newFakeSink())
	eventually(t, "Run started", l.running.Load)
	if err := l.Run(context.Background()); err == nil {
		t.Fatal("second Run accepted")
	}
}

// TestCommitWaitMetric: a buffer uploaded while the commit of the one
// sealed before it is still running waits for it, and
// floe_wal_commit_wait_seconds says how long.
func TestCommitWaitMetric(t *testing.T) {
	sink := newFakeSink()
	release := make(chan struct{})
	var first sync.Once
	sink.onCommit = func(ctx context.Context, _ *Sealed) error {
		block := false
		first.Do(func() { block = true })
		if block {
			return waitRelease(ctx, release)
		}
		return nil
	}
	cfg := testConfig(NewMemFS())
	cfg.Registerer = prometheus.NewRegistry()
	l := start(t, cfg, sink)
	a1 := mustAppend(t, l.Log, entry(tp(1, 0), 10, 1))
	<-sink.uploadedC
	a2 := mustAppend(t, l.Log, entry(tp(1, 0), 10, 1))
	<-sink.uploadedC // the second buffer is uploaded; its commit waits
	// The wait counts from when the upload goroutine recorded the upload,
	// a moment after the fake sink signalled it: on a loaded machine that
	// moment can take most of held, so hold from the record itself.
	eventually(t, "the second buffer's upload recorded", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.mu.sealed) < 2 {
			return false
		}
		select {
		case <-l.mu.sealed[1].uploaded:
			return true
		default:
			return false
		}
	})
	const held = 30 * time.Millisecond
	time.Sleep(held)
	close(release)
	wait(t, a1)
	wait(t, a2)
	var m dto.Metric
	if err := l.m.commitWait.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n, sum := m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum(); n != 2 || sum < held.Seconds() {
		t.Fatalf("commit wait: %d samples, %.4fs in all; want 2, at least %v", n, sum, held)
	}
}

// waitRelease blocks a fake sink call until release is closed or ctx ends.
func waitRelease(ctx context.Context, release <-chan struct{}) error {
	select {
	case <-release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A commit that returns successfully while Run is shutting down (here
// because a later buffer's fsync failed the WAL) is reported as
// committed: its object is in the bucket and its offsets are taken, and
// failing its ack would make the producer send the records again.
func TestCommitSucceedingDuringShutdownIsAcked(t *testing.T) {
	fs := NewMemFS()
	sink := newFakeSink()
	committing := make(chan struct{})
	var once sync.Once
	sink.onCommit = func(ctx context.Context, b *Sealed) error {
		once.Do(func() {
			close(committing)
			<-ctx.Done() // the catalog commits as the cancellation arrives
		})
		return nil
	}
	l := start(t, testConfig(fs), sink)
	first := mustAppend(t, l.Log, entry(tp(1, 0), 10, 1))
	<-committing
	boom := errors.New("EIO")
	fs.Inject(func(op, name string) error {
		if op == "sync" {
			return boom
		}
		return nil
	})
	second := mustAppend(t, l.Log, entry(tp(1, 0), 10, 1))
	if _, err := second.Wait(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("second ack: %v", err)
	}
	if err := l.stop(t); !errors.Is(err, ErrFailed) {
		t.Fatalf("Run: %v", err)
	}
	if _, c := sink.counts(); c != 1 {
		t.Fatalf("%d commits", c)
	}
	res, err := first.Wait(context.Background())
	if err != nil {
		t.Fatalf("first ack failed although its commit returned: %v", err)
	}
	if len(res) != 1 || res[0].BaseOffset != 0 {
		t.Fatalf("first ack %v", res)
	}
}
