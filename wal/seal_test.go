package wal

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeClock is Config.Now for tests that move time by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

var clockStart = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = clockStart.Add(d)
}

// stepper plays Run's part by hand on a fake clock: it calls step whenever
// Run would (after an append or SealEarly kicks it, and when its timer for
// the next due time fires), so the sealing rules can be checked to the
// millisecond without sleeping.
type stepper struct {
	t     *testing.T
	l     *Log
	clk   *fakeClock
	now   time.Duration
	wg    sync.WaitGroup
	q     chan *buffer
	seals []string // "<ms>:<reason>:<entries>", in seal order
}

func newStepper(t *testing.T, interval, minInterval time.Duration, flushBytes int64) *stepper {
	t.Helper()
	s := &stepper{t: t, clk: &fakeClock{t: clockStart}, q: make(chan *buffer, 1000)}
	cfg := testConfig(NewMemFS())
	cfg.FlushInterval, cfg.FlushMinInterval, cfg.FlushBytes = interval, minInterval, flushBytes
	cfg.MaxInflight = 1000 // nothing commits here; never wait for a slot
	cfg.Now = s.clk.Now
	l, err := Open(cfg, newFakeSink())
	if err != nil {
		t.Fatal(err)
	}
	s.l = l
	t.Cleanup(func() {
		s.wg.Wait()
		_ = l.shutdown(nil)
	})
	return s
}

// step runs one flusher step at the current time and records a seal.
func (s *stepper) step() (next time.Time) {
	s.l.mu.Lock()
	n := len(s.l.mu.sealed)
	s.l.mu.Unlock()
	before := s.reasons()
	_, next = s.l.step(context.Background(), &s.wg, s.q, false)
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	if len(s.l.mu.sealed) > n {
		b := s.l.mu.sealed[n]
		after := s.reasons()
		reason := "?"
		for r, v := range after {
			if v > before[r] {
				reason = r
			}
		}
		s.seals = append(s.seals, fmt.Sprintf("%d:%s:%d", s.now.Milliseconds(), reason, len(b.sealed.Entries)))
	}
	return next
}

func (s *stepper) reasons() map[string]float64 {
	m := map[string]float64{}
	for _, r := range []string{sealInterval, sealBytes, sealEarly, sealDrain} {
		m[r] = testutil.ToFloat64(s.l.m.seals.WithLabelValues(r))
	}
	return m
}

// run lets time pass until to, stepping at every due time on the way.
func (s *stepper) run(to time.Duration) {
	for {
		next := s.step()
		if next.IsZero() || next.Sub(clockStart) > to {
			break
		}
		if d := next.Sub(clockStart); d > s.now {
			s.now = d
			s.clk.set(d)
		}
	}
	s.now = to
	s.clk.set(to)
	s.step()
}

// append appends n bytes at at ms.
func (s *stepper) append(at, n int) *Ack {
	s.run(time.Duration(at) * time.Millisecond)
	a := mustAppend(s.t, s.l, entry(tp(1, 0), n, 1))
	s.step()
	return a
}

// early asks, at at ms, for a's buffer to be sealed early.
func (s *stepper) early(at int, a *Ack) {
	s.run(time.Duration(at) * time.Millisecond)
	s.l.SealEarly(a.Buffer())
	s.step()
}

// TestSealRules checks when buffers are sealed: the flush interval's
// cadence, flush bytes, and early seals bounded by the minimum interval.
// Times are milliseconds; the interval is 100 ms and the minimum 20 ms.
func TestSealRules(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		name   string
		minInt time.Duration // default 20ms
		script func(s *stepper)
		want   string // seals: "<ms>:<reason>:<entries>" …
	}{
		{
			name:   "idle log: the interval counts from the first append",
			script: func(s *stepper) { s.append(30, 10) },
			want:   "130:interval:1",
		},
		{
			name:   "nothing appended: nothing sealed",
			script: func(s *stepper) {},
			want:   "",
		},
		{
			name: "a buffer opened within the interval is due an interval after the previous seal",
			// The old rule (an interval after the first append) sealed
			// the second buffer at 230.
			script: func(s *stepper) { s.append(0, 10); s.append(130, 10) },
			want:   "100:interval:1 200:interval:1",
		},
		{
			name:   "a buffer opened after a longer pause waits a full interval from its first append",
			script: func(s *stepper) { s.append(0, 10); s.append(250, 10); s.append(260, 10) },
			want:   "100:interval:1 350:interval:2",
		},
		{
			name: "steady trickle: one seal per interval, never two",
			script: func(s *stepper) {
				for at := 0; at < 1000; at += 30 {
					s.append(at, 10)
				}
			},
			want: "100:interval:4 200:interval:3 300:interval:3 400:interval:4 500:interval:3 600:interval:3 " +
				"700:interval:4 800:interval:3 900:interval:3 1000:interval:4",
		},
		{
			name: "sparse trickle: one seal per record, an interval after it, as before",
			script: func(s *stepper) {
				for at := 0; at < 1000; at += 250 {
					s.append(at, 10)
				}
			},
			want: "100:interval:1 350:interval:1 600:interval:1 850:interval:1",
		},
		{
			name:   "flush bytes seal at once, whatever the cadence",
			script: func(s *stepper) { s.append(0, 10); s.append(105, 600); s.append(110, 10) },
			want:   "100:interval:1 105:bytes:1 205:interval:1",
		},
		{
			name:   "an early seal waits for the minimum interval after the previous seal",
			script: func(s *stepper) { s.append(0, 10); s.early(105, s.append(105, 10)) },
			want:   "100:interval:1 120:early:1",
		},
		{
			name:   "an early seal is immediate once the minimum interval has passed",
			script: func(s *stepper) { s.append(0, 10); s.early(150, s.append(150, 10)) },
			want:   "100:interval:1 150:early:1",
		},
		{
			name:   "an early seal on an idle log is immediate",
			script: func(s *stepper) { s.early(40, s.append(40, 10)) },
			want:   "40:early:1",
		},
		{
			name: "appends after the request go with it",
			script: func(s *stepper) {
				s.append(0, 10)
				s.early(105, s.append(105, 10))
				s.append(110, 10)
				s.append(115, 10)
			},
			want: "100:interval:1 120:early:3",
		},
		{
			name: "asking for a buffer sealed already does nothing to the open one",
			script: func(s *stepper) {
				old := s.append(0, 10)
				s.append(130, 10)
				s.early(130, old)
			},
			want: "100:interval:1 200:interval:1",
		},
		{
			name: "early seals stay the minimum interval apart",
			script: func(s *stepper) {
				for at := 0; at <= 100; at += 5 {
					s.early(at, s.append(at, 10))
				}
			},
			want: "0:early:1 20:early:3 40:early:4 60:early:4 80:early:4 100:early:4 120:early:1",
		},
		{
			name:   "a minimum interval equal to the interval disables early seals",
			minInt: 100 * ms,
			script: func(s *stepper) { s.append(0, 10); s.early(105, s.append(105, 10)) },
			want:   "100:interval:1 200:interval:1",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			minInt := tc.minInt
			if minInt == 0 {
				minInt = 20 * ms
			}
			s := newStepper(t, 100*ms, minInt, 500)
			tc.script(s)
			s.run(s.now + 2*time.Second) // then idle: nothing more is sealed
			if got := strings.Join(s.seals, " "); got != tc.want {
				t.Fatalf("seals\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestSealEarlyWakesRun checks the wiring with the real flusher: with an
// hour-long interval, SealEarly gets an append committed at once.
func TestSealEarlyWakesRun(t *testing.T) {
	sink := newFakeSink()
	cfg := testConfig(NewMemFS())
	cfg.FlushInterval, cfg.FlushMinInterval = time.Hour, time.Millisecond
	l := start(t, cfg, sink)
	for i := range 3 {
		a := mustAppend(t, l.Log, entry(tp(1, 0), 10, 1))
		b := mustAppend(t, l.Log, entry(tp(1, 0), 10, 1))
		if a.Buffer() != b.Buffer() {
			t.Fatalf("appends %d landed in buffers %d and %d", i, a.Buffer(), b.Buffer())
		}
		l.SealEarly(a.Buffer())
		wait(t, a)
		wait(t, b)
		if up, _ := sink.counts(); up != i+1 {
			t.Fatalf("%d uploads after %d early seals", up, i+1)
		}
	}
	if got := testutil.ToFloat64(l.m.seals.WithLabelValues(sealEarly)); got != 3 {
		t.Fatalf("early seals metric %v", got)
	}
}
