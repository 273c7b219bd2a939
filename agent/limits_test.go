package agent_test

import (
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/tests/floetest"
)

// TestRequestBudgetBoundsFrames: clients that claim large frames and then
// stall ("lying lengths") make the agent hold at most
// MaxQueuedRequestBytes for frames, not frames × connections; small
// requests are served meanwhile, and a real large request waits for room
// and then succeeds once the stalled connections are closed.
func TestRequestBudgetBoundsFrames(t *testing.T) {
	const budget = 2 * testMaxRequestBytes
	a, reg := startLimitsAgent(t, func(c *agent.Config) {
		c.MaxRequestBytes = testMaxRequestBytes
		c.MaxQueuedRequestBytes = budget
		c.IdleTimeout = time.Second
	})
	createTopic(t, a, "budget", 1, nil)
	value := func(name string) float64 { return metricValue(t, reg, name) }

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// 40 liars, each claiming a frame of the largest size and sending a
	// few bytes of it. Unbounded, that is 40 MiB of frames.
	lie := func() *floetest.Conn {
		c := floetest.Dial(t, a.Addr)
		if err := c.WriteRaw(binary.BigEndian.AppendUint32(nil, testMaxRequestBytes), []byte{0, 0, 0, 9}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 10s (held %v, waits %v)", what, value("floe_agent_queued_request_bytes"), value("floe_agent_queued_request_waits_total"))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	const liars = 40
	var conns []*floetest.Conn
	for range liars {
		conns = append(conns, lie())
	}
	waitFor("liars beyond the budget wait", func() bool {
		return value("floe_agent_queued_request_waits_total") >= liars-budget/testMaxRequestBytes
	})
	if held := value("floe_agent_queued_request_bytes"); held > budget {
		t.Fatalf("%v bytes of frames held, budget %d", held, budget)
	}
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	if grew := int64(during.HeapAlloc) - int64(before.HeapAlloc); grew > 16<<20 {
		t.Fatalf("heap grew by %d MiB with %d stalled 1 MiB frames and a 2 MiB budget", grew>>20, liars)
	}
	// Small requests do not need the budget.
	witness(t, a)
	// Clients that go away give their place back, waiting or not.
	for _, c := range conns {
		c.Close()
	}
	waitFor("budget freed by closed connections", func() bool { return value("floe_agent_queued_request_bytes") == 0 })

	// Two liars hold the whole budget until the idle timeout closes them.
	lie()
	lie()
	waitFor("the budget held", func() bool { return value("floe_agent_queued_request_bytes") == budget })

	// A real produce of more than 64 KiB waits for room (the liars hold
	// it until the idle timeout closes them), then succeeds.
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	waits := value("floe_agent_queued_request_waits_total")
	start := time.Now()
	req := produceReq("budget", -1, floetest.Batch(floetest.BatchSpec{Records: 4, Value: make([]byte, 40<<10)}))
	resp, err := c.Request(req)
	if err != nil {
		t.Fatalf("produce after the stalled frames: %v", err)
	}
	for _, tr := range resp.(*kmsg.ProduceResponse).Topics {
		for _, pr := range tr.Partitions {
			wantCode(t, "large produce", pr.ErrorCode, nil)
		}
	}
	if value("floe_agent_queued_request_waits_total") == waits {
		t.Fatal("the large produce did not wait for the budget the stalled frames held")
	}
	t.Logf("large produce answered after %v", time.Since(start).Round(time.Millisecond))
	waitFor("budget freed after every request ended", func() bool { return value("floe_agent_queued_request_bytes") == 0 })
}

// TestStalledLargeFrameIsClosed: a client that stops sending inside a
// frame holding a budget reservation is closed after frameStallTimeout,
// not after the (long) idle timeout, and its reservation is released.
func TestStalledLargeFrameIsClosed(t *testing.T) {
	defer agent.SetFrameStallTimeout(300 * time.Millisecond)()
	a, reg := startLimitsAgent(t, func(c *agent.Config) {
		c.MaxRequestBytes = testMaxRequestBytes
		c.MaxQueuedRequestBytes = testMaxRequestBytes
		c.IdleTimeout = time.Minute
	})
	liar := floetest.Dial(t, a.Addr)
	if err := liar.WriteRaw(binary.BigEndian.AppendUint32(nil, testMaxRequestBytes), make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	// A small frame below the reservation threshold, stalled, is left to
	// the idle timeout.
	small := floetest.Dial(t, a.Addr)
	if err := small.WriteRaw(binary.BigEndian.AppendUint32(nil, 1000), []byte{0, 18}); err != nil {
		t.Fatal(err)
	}
	if !liar.WaitClosed(5 * time.Second) {
		t.Fatal("a client stalled inside a large frame was not closed")
	}
	if small.WaitClosed(500 * time.Millisecond) {
		t.Fatal("a client stalled inside a small frame was closed before the idle timeout")
	}
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, reg, "floe_agent_queued_request_bytes") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("bytes still reserved after the stalled client was closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	witness(t, a)
}

// startLimitsAgent starts an agent with config applied and its own
// metrics registry.
func startLimitsAgent(t *testing.T, config func(*agent.Config)) (*floetest.Agent, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	return floetest.Start(t, floetest.Options{Registerer: reg, Config: config}), reg
}

// metricValue is the value of the gauge or counter name in reg: its series
// whose (only) label has the value label, or with label "" its first
// series; 0 if there is none yet.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, label ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(label) > 0 && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != label[0]) {
				continue
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestConnectionLimits: connections over max.connections.per.ip or
// max.connections are closed on accept, counted by limit, and a slot freed
// by a closed connection is taken by the next one.
func TestConnectionLimits(t *testing.T) {
	for _, tc := range []struct {
		limit  string
		config func(*agent.Config)
	}{
		{"max_connections_per_ip", func(c *agent.Config) { c.MaxConnectionsPerIP = 3 }},
		{"max_connections", func(c *agent.Config) { c.MaxConnections = 3 }},
	} {
		t.Run(tc.limit, func(t *testing.T) {
			a, reg := startLimitsAgent(t, tc.config)
			refused := func() float64 { return metricValue(t, reg, "floe_agent_connections_refused_total", tc.limit) }
			var open []*floetest.Conn
			for i := range 3 {
				c := floetest.Dial(t, a.Addr)
				if !answers(c) {
					t.Fatalf("connection %d of 3 refused", i+1)
				}
				open = append(open, c)
			}
			over := floetest.Dial(t, a.Addr)
			if !over.WaitClosed(5 * time.Second) {
				t.Fatal("a fourth connection was not closed")
			}
			if refused() != 1 {
				t.Fatalf("refused %v connections, want 1", refused())
			}
			open[0].Close()
			deadline := time.Now().Add(5 * time.Second)
			for {
				c := floetest.Dial(t, a.Addr)
				if answers(c) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("a closed connection's slot was not given back")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// answers reports whether c gets an answer to ApiVersions.
func answers(c *floetest.Conn) bool {
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "limits", "1"
	_, err := c.Request(req)
	return err == nil
}
