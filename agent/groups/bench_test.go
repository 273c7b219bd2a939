package groups

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// BenchmarkRebalance measures, with real franz-go clients, the time from
// starting 10 members of a new group over 100 partitions until each member
// owns its 10 partitions.
func BenchmarkRebalance(b *testing.B) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
		opts  []kgo.Opt
	}{
		{"classic-range/delay=0", 0, []kgo.Opt{kgo.Balancers(kgo.RangeBalancer())}},
		{"classic-range/delay=300ms", 300 * time.Millisecond, []kgo.Opt{kgo.Balancers(kgo.RangeBalancer())}},
		{"classic-cooperative/delay=300ms", 300 * time.Millisecond, []kgo.Opt{kgo.Balancers(kgo.CooperativeStickyBalancer())}},
		{"kip848-uniform", 0, []kgo.Opt{kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.ServerSideBalancer()}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var total time.Duration
			for i := range b.N {
				total += rebalanceOnce(b, tc.delay, fmt.Sprintf("g%d", i), tc.opts)
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/rebalance")
		})
	}
}

func rebalanceOnce(b *testing.B, delay time.Duration, group string, opts []kgo.Opt) time.Duration {
	b.StopTimer()
	env := newBenchEnv(b, delay)
	var mu sync.Mutex
	owned := make(map[int]map[int32]bool)
	full := make(chan struct{}, 1)
	// Done when the assignment is the balanced one: every member owns 10
	// partitions, and no partition twice.
	check := func() {
		seen := make(map[int32]int)
		for _, ps := range owned {
			n := 0
			for p, ok := range ps {
				if ok {
					seen[p]++
					n++
				}
			}
			if n != 10 {
				return
			}
		}
		if len(seen) != 100 {
			return
		}
		select {
		case full <- struct{}{}:
		default:
		}
	}
	start := time.Now()
	b.StartTimer()
	var clients []*kgo.Client
	for i := range 10 {
		owned[i] = make(map[int32]bool)
		cl := env.client(append([]kgo.Opt{
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics("t"),
			kgo.HeartbeatInterval(100 * time.Millisecond),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				mu.Lock()
				defer mu.Unlock()
				for _, p := range m["t"] {
					owned[i][p] = true
				}
				check()
			}),
			kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				mu.Lock()
				defer mu.Unlock()
				for _, p := range m["t"] {
					owned[i][p] = false
				}
			}),
			kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				mu.Lock()
				defer mu.Unlock()
				for _, p := range m["t"] {
					owned[i][p] = false
				}
			}),
		}, opts...)...)
		clients = append(clients, cl)
		go func() {
			for {
				if fs := cl.PollFetches(context.Background()); fs.IsClientClosed() {
					return
				}
			}
		}()
	}
	select {
	case <-full:
	case <-time.After(60 * time.Second):
		b.Fatal("the group never assigned every partition")
	}
	took := time.Since(start)
	b.StopTimer()
	for _, cl := range clients {
		cl.Close()
	}
	env.close()
	b.StartTimer()
	return took
}

// newBenchEnv is newKfakeEnv for a benchmark: one broker, 100 partitions.
func newBenchEnv(b *testing.B, delay time.Duration) *benchEnv {
	e := &benchEnv{}
	e.run(b, delay)
	return e
}

type benchEnv struct {
	env     *kfakeEnv
	cleanup []func()
}

func (e *benchEnv) run(b *testing.B, delay time.Duration) {
	// kfakeEnv registers its cleanups on a *testing.T; a sub-benchmark's
	// cleanups would run only at its end, after b.N environments, so run
	// each in a throwaway test runner of our own.
	tb := &cleanupTB{TB: b}
	e.env = newKfakeEnvTB(tb, 1, 100, func(c *Config) { c.InitialRebalanceDelay = delay })
	e.cleanup = append(e.cleanup, tb.run)
}

func (e *benchEnv) client(opts ...kgo.Opt) *kgo.Client { return e.env.client(opts...) }

func (e *benchEnv) close() {
	for _, f := range slices.Backward(e.cleanup) {
		f()
	}
}

// cleanupTB collects Cleanup functions to run on demand.
type cleanupTB struct {
	testing.TB
	fns []func()
}

func (c *cleanupTB) Cleanup(f func()) { c.fns = append(c.fns, f) }

func (c *cleanupTB) run() {
	for _, f := range slices.Backward(c.fns) {
		f()
	}
	c.fns = nil
}

// BenchmarkOffsetCommit measures OffsetCommit through Handle (one
// partition per commit, members of one group committing in parallel) on
// the in-memory catalog: the coordinator's own cost. It reports the p99.
func BenchmarkOffsetCommit(b *testing.B) {
	h := newHarness(b, func(c *Config) { c.Now = time.Now })
	h.cat.addTopic("t", 64)
	benchCommits(b, h)
}

// benchCommits commits one partition per request from parallel goroutines
// and reports commits/s and the p99 latency.
func benchCommits(b *testing.B, h *harness) {
	var mu sync.Mutex
	var lat []time.Duration
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		i := 0
		for pb.Next() {
			r := commitReq("bench", "", -1, "t", map[int32]int64{int32(i % 64): int64(i)})
			start := time.Now()
			resp, err := h.c.Handle(context.Background(), "c", "h", r)
			mine = append(mine, time.Since(start))
			if err != nil || resp.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode != 0 {
				b.Errorf("commit failed: %v", err)
				return
			}
			i++
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
	}
}

// BenchmarkConsumerJoinRegex measures a member joining (and leaving) a
// KIP-848 group of 100 members that subscribe by one regex to 900 of 5,000
// topics: the group's subscriptions are resolved again, under its lock.
func BenchmarkConsumerJoinRegex(b *testing.B) {
	h := newHarness(b)
	re := `orders-0\d{3}[1-9]`
	join := func(id string) *cmember {
		m := h.member("g", id)
		m.names, m.regex = nil, &re
		m.beat()
		if m.lastCode != 0 {
			b.Fatalf("%s: code %d", id, m.lastCode)
		}
		return m
	}
	// The members join before the topics exist, which is quick whatever
	// joins cost.
	first := join("m000")
	for i := 1; i < 100; i++ {
		join(fmt.Sprintf("m%03d", i))
	}
	for i := range 5000 {
		h.cat.addTopic(fmt.Sprintf("orders-%05d", i), 1)
	}
	h.advance(3 * time.Second) // past the topic cache's TTL
	first.beat()
	for b.Loop() {
		m := join("new")
		leave := m.request()
		leave.MemberEpoch = -1
		h.do(leave)
	}
}
