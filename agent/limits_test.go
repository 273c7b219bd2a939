package agent_test

import (
	"context"
	"encoding/binary"
	"net"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
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

// TestTricklingLargeFrameIsClosed: a client sending a large frame a few
// bytes at a time, never quite silent, is closed like a stalled one once
// less than 64 KiB arrived in a frame stall timeout.
func TestTricklingLargeFrameIsClosed(t *testing.T) {
	defer agent.SetFrameStallTimeout(300 * time.Millisecond)()
	a, reg := startLimitsAgent(t, func(c *agent.Config) {
		c.MaxRequestBytes = testMaxRequestBytes
		c.MaxQueuedRequestBytes = testMaxRequestBytes
		c.IdleTimeout = time.Minute
	})
	trickler := floetest.Dial(t, a.Addr)
	if err := trickler.WriteRaw(binary.BigEndian.AppendUint32(nil, testMaxRequestBytes)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for trickler.WriteRaw(make([]byte, 100)) == nil {
		if time.Since(start) > 5*time.Second {
			t.Fatal("a client trickling a large frame was not closed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, reg, "floe_agent_queued_request_bytes") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("bytes still reserved after the trickling client was closed")
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

// TestResponseBudgetBoundsSlowReaders: connections that send fetches and
// never read the responses hold at most MaxQueuedResponseBytes of records
// together, not connections × FetchMaxBytes; the fetches beyond it wait
// for room. Small requests are answered meanwhile, a consumer reads
// everything once the slow readers are gone, and their connections'
// reservations are released when they close.
func TestResponseBudgetBoundsSlowReaders(t *testing.T) {
	const budget = 4 << 20
	a, reg := startLimitsAgent(t, func(c *agent.Config) {
		c.MaxQueuedResponseBytes = budget
		c.FetchMaxBytes = 1 << 20
	})
	records := fillSlowTopic(t, a)
	value := func(name string) float64 { return metricValue(t, reg, name) }
	held := func() float64 { return value("floe_agent_queued_response_bytes") }

	// The gauge is watched throughout.
	var peak atomic.Int64
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			peak.Store(max(peak.Load(), int64(held())))
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	defer func() {
		close(stop)
		<-watched
	}()

	// 30 slow readers with pipelined fetches of 1 MiB responses:
	// unbounded, at least 30 MiB held once their socket buffers are full.
	slow := slowReaders(t, a, 30)
	waitHeld(t, reg, "the slow readers to fill the response budget", func(h float64) bool {
		return h >= budget-(1<<20) && value("floe_agent_queued_response_waits_total") > 0
	})
	t.Logf("budget full: %v bytes held, %v waits", held(), value("floe_agent_queued_response_waits_total"))
	// Requests without records are not held back.
	witness(t, a)

	// A consumer reads everything once the slow readers are gone.
	cons := a.Client(t, kgo.ConsumeTopics("slow"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	time.Sleep(300 * time.Millisecond)
	for _, nc := range slow {
		nc.Close()
	}
	got := 0
	for got < records {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumer read %d of %d records: %v", got, records, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("consume %s/%d: %v", topic, p, err) })
		got += fs.NumRecords()
	}
	waitHeld(t, reg, "the slow readers' reservations to be released", func(h float64) bool { return h == 0 })
	if p := peak.Load(); p > budget {
		t.Fatalf("%d bytes of responses held at once, budget %d", p, budget)
	}
}

// TestResponseBudgetReleasedOnWriteTimeout: a response whose write times
// out gives its reservation back as its connection is closed, while the
// client keeps it open.
func TestResponseBudgetReleasedOnWriteTimeout(t *testing.T) {
	a, reg := startLimitsAgent(t, func(c *agent.Config) {
		c.FetchMaxBytes = 1 << 20
		c.WriteTimeout = 500 * time.Millisecond
	})
	fillSlowTopic(t, a)
	open := metricValue(t, reg, "floe_agent_connections")
	slowReaders(t, a, 4)
	waitHeld(t, reg, "a response to be held", func(h float64) bool { return h > 0 })
	// Held at zero for a while: between a response the socket took whole
	// (its reservation released, as it should be) and the next one built,
	// the gauge can read zero for an instant while the connections live.
	var zeroSince time.Time
	waitHeld(t, reg, "the reservations to be released", func(h float64) bool {
		switch {
		case h != 0:
			zeroSince = time.Time{}
		case zeroSince.IsZero():
			zeroSince = time.Now()
		}
		return !zeroSince.IsZero() && time.Since(zeroSince) >= 200*time.Millisecond
	})
	// Released as the failed writes closed the connections: 32 responses
	// of 1 MiB are not written whole to a client that reads nothing.
	if now := metricValue(t, reg, "floe_agent_connections"); now > open {
		t.Fatalf("%v connections open, %v before the slow readers: their reservations were released while their connections lived", now, open)
	}
}

// fillSlowTopic creates topic "slow" with 4 partitions of about 1 MiB each
// (batches of 120 KiB) and returns its record count.
func fillSlowTopic(t *testing.T, a *floetest.Agent) int {
	const parts, rounds, perBatch = 4, 8, 12
	createTopic(t, a, "slow", parts, nil)
	batch := floetest.Batch(floetest.BatchSpec{Records: perBatch, Value: make([]byte, 10<<10)})
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	for range rounds {
		resp, err := c.Request(produceReq("slow", -1, batch, batch, batch, batch))
		if err != nil {
			t.Fatal(err)
		}
		for _, pr := range resp.(*kmsg.ProduceResponse).Topics[0].Partitions {
			wantCode(t, "produce", pr.ErrorCode, nil)
		}
	}
	return parts * rounds * perBatch
}

// slowReaders opens n connections that each send 32 fetches of topic
// "slow" from its start (up to 1 MiB each) and read nothing.
func slowReaders(t *testing.T, a *floetest.Agent, n int) []net.Conn {
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version = 12
	fetch.ReplicaID, fetch.MaxWaitMillis, fetch.MinBytes, fetch.MaxBytes = -1, 10_000, 1, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "slow"
	for p := range int32(4) {
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.PartitionMaxBytes = p, 1<<20
		ft.Partitions = append(ft.Partitions, fp)
	}
	fetch.Topics = append(fetch.Topics, ft)
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("slow"))
	var frames []byte
	for i := range 32 {
		frames = append(frames, f.AppendRequest(nil, fetch, int32(i))...)
	}
	var conns []net.Conn
	for range n {
		nc, err := net.DialTimeout("tcp", a.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		_ = nc.(*net.TCPConn).SetReadBuffer(4 << 10)
		_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(frames); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, nc)
	}
	return conns
}

// waitHeld waits up to 20 s for the response budget held to satisfy cond.
func waitHeld(t *testing.T, reg *prometheus.Registry, what string, cond func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		h := metricValue(t, reg, "floe_agent_queued_response_bytes")
		if cond(h) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v bytes held, %v waits", what, h, metricValue(t, reg, "floe_agent_queued_response_waits_total"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestResponseBudgetTailingConsumers: consumers tailing a topic at the
// agent that writes it, through long polls that wait for each commit,
// take many times the response budget in total and never wait for it
// (fetches are small: the budget holds three full responses), and parked
// long polls and written responses hold none of it.
func TestResponseBudgetTailingConsumers(t *testing.T) {
	const fetchMax = 64 << 10
	a, reg := startLimitsAgent(t, func(c *agent.Config) {
		c.MaxQueuedResponseBytes = 4 * fetchMax
		c.FetchMaxBytes = fetchMax
	})
	value := func(name string) float64 { return metricValue(t, reg, name) }
	createTopic(t, a, "tail", 4, nil)
	from := map[string]map[int32]kgo.Offset{"tail": {}}
	for p := range int32(4) {
		from["tail"][p] = kgo.NewOffset().At(0)
	}
	var cons []*kgo.Client
	for range 3 {
		cons = append(cons, a.Client(t, kgo.ConsumePartitions(from), kgo.FetchMaxWait(time.Second)))
	}
	prod := a.Client(t, kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const batches, perBatch = 48, 8 // 1.5 MiB: 6 budgets, to each consumer
	got := make([]atomic.Int64, len(cons))
	done := make(chan struct{})
	for i, cl := range cons {
		go func() {
			for ctx.Err() == nil && got[i].Load() < batches*perBatch {
				got[i].Add(int64(cl.PollFetches(ctx).NumRecords()))
			}
			done <- struct{}{}
		}()
	}
	val := make([]byte, 4<<10)
	for range batches {
		rs := make([]*kgo.Record, perBatch)
		for j := range rs {
			rs[j] = &kgo.Record{Topic: "tail", Value: val}
		}
		if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	for range cons {
		<-done
	}
	for i := range got {
		if n := got[i].Load(); n != batches*perBatch {
			t.Fatalf("consumer %d read %d of %d records", i, n, batches*perBatch)
		}
	}
	if w := value("floe_agent_queued_response_waits_total"); w != 0 {
		t.Fatalf("%v fetches waited for a budget of three responses with three consumers", w)
	}
	// The consumers' next fetches are parked long polls: nothing held.
	waitHeld(t, reg, "the written responses' reservations to be released", func(h float64) bool { return h == 0 })
}

// TestManyElementsRefused: a request naming absurdly many elements, each a
// byte or two on the wire that its handler answers one by one (an empty
// group id: 1 byte, a 16-byte string header once decoded and a ~120-byte
// DescribeGroups answer), is refused with a disconnect before it is
// decoded or handled, not answered. One DescribeGroups frame of 8 MiB of
// empty ids took 3 GiB of heap and 63 s to answer (100 MB), while the
// request budget counted its 8 MiB. The agent serves others meanwhile.
func TestManyElementsRefused(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})
	const ids = 4 << 20 // a 4 MiB frame
	groupsOf := func(n int) []kmsg.OffsetFetchRequestGroup {
		gs := make([]kmsg.OffsetFetchRequestGroup, n)
		for i := range gs {
			gs[i] = kmsg.NewOffsetFetchRequestGroup()
		}
		return gs
	}
	for _, tc := range []struct {
		name  string
		req   kmsg.Request
		bound int // heap growth allowed, in frame sizes
	}{
		{"DescribeGroups", &kmsg.DescribeGroupsRequest{Version: 5, Groups: make([]string, ids)}, 10},
		{"DeleteGroups", &kmsg.DeleteGroupsRequest{Version: 2, Groups: make([]string, ids)}, 10},
		// Groups of 2 bytes each (a null member id, no topics), 72
		// bytes decoded, each answered.
		{"OffsetFetch", &kmsg.OffsetFetchRequest{Version: 8, Groups: groupsOf(ids / 4)}, 10},
		// Topics without partitions, 3 bytes each, 48 decoded.
		{"ListOffsets", &kmsg.ListOffsetsRequest{Version: 7, ReplicaID: -1, Topics: make([]kmsg.ListOffsetsRequestTopic, ids/3)}, 10},
		// Nested, so counted once decoded (~22 frame sizes: 48 bytes
		// per 3-byte topic; twice that under the race detector, 174 MiB
		// for a 4 MiB frame in CI), and refused before the handler
		// answers each: the bound is what decoding alone may cost.
		{"OffsetFetchTopics", &kmsg.OffsetFetchRequest{Version: 8, Groups: []kmsg.OffsetFetchRequestGroup{{Group: "g", Topics: make([]kmsg.OffsetFetchRequestGroupTopic, ids/3)}}}, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("many")).AppendRequest(nil, tc.req, 1)
			c := floetest.Dial(t, a.Addr)
			defer c.Close()
			// Sample the heap without forcing collections, so a peak
			// between them is seen; a low GC target keeps garbage from
			// passing for growth.
			defer debug.SetGCPercent(debug.SetGCPercent(10))
			before := heapAlloc()
			var peak atomic.Int64
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				var m runtime.MemStats
				for {
					runtime.ReadMemStats(&m)
					peak.Store(max(peak.Load(), int64(m.HeapAlloc)-before))
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			}()
			bound := int64(tc.bound * len(frame))
			if err := c.WriteRaw(frame); err != nil {
				t.Fatal(err)
			}
			// Refused: the connection closes, and within the bound.
			deadline := time.Now().Add(20 * time.Second)
			closed := false
			for !closed && time.Now().Before(deadline) && peak.Load() <= bound {
				closed = c.WaitClosed(100 * time.Millisecond)
			}
			close(stop)
			<-sampled
			t.Logf("%s: %d MiB frame, heap grew by at most %d MiB", tc.name, len(frame)>>20, peak.Load()>>20)
			if p := peak.Load(); p > bound {
				t.Fatalf("heap grew by %d MiB for a %d MiB %s frame of empty elements (bound %d MiB)", p>>20, len(frame)>>20, tc.name, bound>>20)
			}
			if !closed {
				t.Fatalf("a %d MiB %s frame of empty elements was not refused within 20s", len(frame)>>20, tc.name)
			}
			witness(t, a)
		})
	}
}
