package fleet

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent"
)

// leaders returns each partition's leader node in a metadata answer.
func leaders(t *testing.T, md *kmsg.MetadataResponse, topic string) map[int32]int32 {
	t.Helper()
	for _, mt := range md.Topics {
		if mt.Topic != nil && *mt.Topic == topic {
			out := map[int32]int32{}
			for _, p := range mt.Partitions {
				out[p.Partition] = p.Leader
			}
			return out
		}
	}
	t.Fatalf("metadata lacks topic %s", topic)
	return nil
}

func nodeIDs(ms ...*member) []int32 {
	var out []int32
	for _, m := range ms {
		out = append(out, m.Agent.Agent.NodeID())
	}
	return out
}

// TestSpreadAndReadBack: three agents in three zones; producers with
// different client ids (zones) write through different agents; every
// agent serves every record, in order, to a consumer that only talks to
// it.
func TestSpreadAndReadBack(t *testing.T) {
	cat, bucket := services(t)
	zones := []string{"a", "b", "c"}
	var ms []*member
	for _, z := range zones {
		ms = append(ms, startMember(t, cat, bucket, z, nil))
	}
	waitFleet(t, ms...)
	createTopic(t, ms[0].Addr, "spread", 6)
	all := ms[0].Addr + "," + ms[1].Addr + "," + ms[2].Addr

	const perProducer = 300
	var wg sync.WaitGroup
	for i, z := range zones {
		cl := client(t, all, kgo.ClientID("producer-"+strconv.Itoa(i)+",floe_az="+z), kgo.ProducerLinger(2*time.Millisecond))
		wg.Go(func() { produceN(t, cl, "spread", i, perProducer) })
	}
	wg.Wait()
	for _, m := range ms {
		if n := requests(t, m, "Produce"); n == 0 {
			t.Errorf("agent in zone %s served no produce: the producers did not spread", m.zone)
		}
	}

	var first map[int32][][]byte
	for _, m := range ms {
		cons := client(t, m.Addr, kgo.ClientID("consumer,floe_az="+m.zone), kgo.ConsumeTopics("spread"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
		got := consumeAll(t, cons, len(zones)*perProducer)
		// Per producer and partition, the records are in produce order.
		for p, vs := range got {
			last := map[int]int{}
			for _, v := range vs {
				prod, seq := parseValue(v)
				if l, ok := last[prod]; ok && seq <= l {
					t.Fatalf("agent %s, partition %d: producer %d's record %d after %d", m.zone, p, prod, seq, l)
				}
				last[prod] = seq
			}
		}
		if first == nil {
			first = got
		} else if fmt.Sprint(got) != fmt.Sprint(first) {
			t.Fatalf("agent in zone %s serves different records than the first", m.zone)
		}
		if n := requests(t, m, "Fetch"); n == 0 {
			t.Errorf("agent in zone %s served no fetch to its zone's consumer", m.zone)
		}
	}
}

// TestZones: a client that names zone a is sent to zone-a agents only, by
// client id, by a per-zone listener and (for fetches) by its rack id; with
// no zone-a agent left it falls back to the others.
func TestZones(t *testing.T) {
	cat, bucket := services(t)
	zl := func(c *agent.Config) {
		c.ZoneListeners = []agent.ZoneListener{{Zone: "a", Listen: "127.0.0.1:0"}, {Zone: "b", Listen: "127.0.0.1:0"}}
	}
	a1, a2, b1 := startMember(t, cat, bucket, "a", zl), startMember(t, cat, bucket, "a", zl), startMember(t, cat, bucket, "b", zl)
	waitFleet(t, a1, a2, b1)
	// 32 partitions: with random agent ids, all landing on one of the two
	// zone-a agents has odds of 2^-31 (8 gave a flaky 1 in 128).
	createTopic(t, b1.Addr, "zones", 32)
	zoneA := nodeIDs(a1, a2)

	// Every agent gives the same zone-a leaders, all in zone a.
	var want map[int32]int32
	for _, m := range []*member{a1, a2, b1} {
		got := leaders(t, metadata(t, m.Addr, "app,floe_az=a", []string{"zones"}), "zones")
		for p, l := range got {
			if !slices.Contains(zoneA, l) {
				t.Fatalf("agent %d: partition %d led by %d, not a zone-a agent", m.Agent.Agent.NodeID(), p, l)
			}
		}
		if want == nil {
			want = got
		} else if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("agents disagree on zone-a leaders: %v vs %v", got, want)
		}
	}
	if n := len(slices.Compact(slices.Sorted(func(yield func(int32) bool) {
		for _, l := range want {
			if !yield(l) {
				return
			}
		}
	}))); n != 2 {
		t.Errorf("32 partitions led by %d zone-a agents, want both", n)
	}

	// A zone-a client seeded with every agent produces and consumes
	// through zone-a agents only.
	all := a1.Addr + "," + a2.Addr + "," + b1.Addr
	prod := client(t, all, kgo.ClientID("producer,floe_az=a"))
	produceN(t, prod, "zones", 0, 200)
	cons := client(t, all, kgo.ClientID("consumer,floe_az=a"), kgo.ConsumeTopics("zones"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	consumeAll(t, cons, 200)
	if p, f := requests(t, b1, "Produce"), requests(t, b1, "Fetch"); p != 0 || f != 0 {
		t.Fatalf("the zone-b agent served %v produces and %v fetches of zone-a clients", p, f)
	}

	// A per-zone listener: a client that cannot set its client id connects
	// to b1's zone-a listener and is told zone-a listeners and leaders.
	md := metadata(t, b1.Agent.Agent.Listeners()["a"], "plain", []string{"zones"})
	listenerA := map[string]bool{}
	for _, m := range []*member{a1, a2, b1} {
		listenerA[m.Agent.Agent.Listeners()["a"]] = true
	}
	for _, br := range md.Brokers {
		if addr := br.Host + ":" + strconv.Itoa(int(br.Port)); !listenerA[addr] {
			t.Fatalf("broker %d at %s: not a zone-a listener", br.NodeID, addr)
		}
	}
	if got := leaders(t, md, "zones"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("zone-a listener leaders %v, want %v", got, want)
	}
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.Version, fc.CoordinatorKeys = 4, []string{"g1", "g2", "g3"}
	for _, co := range rawRequest(t, b1.Agent.Agent.Listeners()["a"], "plain", fc).(*kmsg.FindCoordinatorResponse).Coordinators {
		if addr := co.Host + ":" + strconv.Itoa(int(co.Port)); co.ErrorCode != 0 || !listenerA[addr] {
			t.Fatalf("group %s: coordinator at %s (error %d), not a zone-a listener", co.Key, addr, co.ErrorCode)
		}
	}

	// A consumer that only sets its rack id is steered to zone a
	// (KIP-392), even when every partition's metadata leader is b1's.
	before := counter(t, b1.reg, "floe_agent_fetched_bytes_total", nil)
	// A client id naming zone b wins over the rack id: b1 serves it.
	rack := client(t, b1.Addr, kgo.ClientID("rack-consumer,floe_az=b"), kgo.Rack("a"), kgo.ConsumeTopics("zones"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	consumeAll(t, rack, 200)
	if counter(t, b1.reg, "floe_agent_fetched_bytes_total", nil) == before {
		t.Fatal("a client naming zone b in its client id was steered by its rack id")
	}
	before = counter(t, b1.reg, "floe_agent_fetched_bytes_total", nil)
	steered := client(t, b1.Addr, kgo.ClientID("rack-consumer"), kgo.Rack("a"), kgo.ConsumeTopics("zones"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	consumeAll(t, steered, 200)
	if got := counter(t, b1.reg, "floe_agent_fetched_bytes_total", nil); got != before {
		t.Fatalf("the zone-b agent served %v bytes to a consumer in rack a", got-before)
	}

	// With no zone-a agent left, zone-a clients fall back to zone b.
	if err := a1.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := a2.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFleet(t, b1)
	for p, l := range leaders(t, metadata(t, b1.Addr, "app,floe_az=a", []string{"zones"}), "zones") {
		if l != b1.Agent.Agent.NodeID() {
			t.Fatalf("partition %d led by %d after zone a emptied", p, l)
		}
	}
	prod2 := client(t, b1.Addr, kgo.ClientID("producer,floe_az=a"))
	produceN(t, prod2, "zones", 1, 100)
	cons2 := client(t, b1.Addr, kgo.ClientID("consumer,floe_az=a"), kgo.ConsumeTopics("zones"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	consumeAll(t, cons2, 300)
}

// TestZoneListenerMissingOnSomeAgents: a client on a per-zone listener is
// never told of an agent without a listener for that zone (Kafka leaves
// out a broker without the listener a client connected to). Zone-a agents
// a1 and a2 have a zone-a listener, zone-b agent b1 none; a client seeded
// with a1's zone-a listener only ever connects to zone-a listeners — b1's
// main address, given before, made the client's metadata requests reach
// b1's main listener, whose answers list every agent's main listener: the
// client left the zone's listener, and its zone, for good. A group b1
// coordinates is COORDINATOR_NOT_AVAILABLE on the listener (it cannot
// move: every member must meet at one agent); the others work.
func TestZoneListenerMissingOnSomeAgents(t *testing.T) {
	cat, bucket := services(t)
	zl := func(c *agent.Config) { c.ZoneListeners = []agent.ZoneListener{{Zone: "a", Listen: "127.0.0.1:0"}} }
	a1, a2, b1 := startMember(t, cat, bucket, "a", zl), startMember(t, cat, bucket, "a", zl), startMember(t, cat, bucket, "b", nil)
	waitFleet(t, a1, a2, b1)
	createTopic(t, b1.Addr, "zl", 8)
	listenerA := map[string]bool{a1.Agent.Agent.Listeners()["a"]: true, a2.Agent.Agent.Listeners()["a"]: true}
	zoneA := nodeIDs(a1, a2)
	seed := a1.Agent.Agent.Listeners()["a"]

	// Metadata and DescribeCluster on the listener name the zone-a
	// agents only, at their zone-a listeners, and they lead everything.
	md := metadata(t, seed, "plain", []string{"zl"})
	if len(md.Brokers) != 2 {
		t.Errorf("metadata on the zone-a listener lists %d brokers, want the 2 with the listener", len(md.Brokers))
	}
	for _, br := range md.Brokers {
		if addr := net.JoinHostPort(br.Host, strconv.Itoa(int(br.Port))); !listenerA[addr] {
			t.Errorf("metadata on the zone-a listener: broker %d at %s, not a zone-a listener", br.NodeID, addr)
		}
	}
	for _, mt := range md.Topics {
		for _, p := range mt.Partitions {
			for _, n := range append([]int32{p.Leader}, p.Replicas...) {
				if !slices.Contains(zoneA, n) {
					t.Errorf("partition %d: leader %d, replicas %v: not all with a zone-a listener", p.Partition, p.Leader, p.Replicas)
				}
			}
		}
	}
	if !slices.Contains(zoneA, md.ControllerID) {
		t.Errorf("controller %d lacks the zone-a listener", md.ControllerID)
	}
	dc := rawRequest(t, seed, "plain", kmsg.NewPtrDescribeClusterRequest()).(*kmsg.DescribeClusterResponse)
	for _, br := range dc.Brokers {
		if addr := net.JoinHostPort(br.Host, strconv.Itoa(int(br.Port))); !listenerA[addr] {
			t.Errorf("DescribeCluster on the zone-a listener: broker %d at %s, not a zone-a listener", br.NodeID, addr)
		}
	}
	// The main listener still lists every agent.
	if n := len(metadata(t, a1.Addr, "plain", nil).Brokers); n != 3 {
		t.Errorf("metadata on the main listener lists %d brokers, want 3", n)
	}

	// FindCoordinator: a group on a zone-a agent at its zone-a listener,
	// a group on b1 not available (as the main listener tells).
	var groups []string
	for i := range 40 {
		groups = append(groups, "zl-group-"+strconv.Itoa(i))
	}
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.Version, fc.CoordinatorKeys = 4, groups
	onMain := rawRequest(t, a1.Addr, "plain", fc).(*kmsg.FindCoordinatorResponse).Coordinators
	onListener := rawRequest(t, seed, "plain", fc).(*kmsg.FindCoordinatorResponse).Coordinators
	var reachable string
	onB1 := 0
	for i, co := range onListener {
		switch main := onMain[i]; {
		case main.ErrorCode != 0:
			t.Fatalf("group %s on the main listener: error %d", main.Key, main.ErrorCode)
		case main.NodeID == b1.Agent.Agent.NodeID():
			onB1++
			if co.ErrorCode != kerr.CoordinatorNotAvailable.Code {
				t.Errorf("group %s, coordinated by b1: coordinator %d at %s:%d (error %d) on the zone-a listener, want COORDINATOR_NOT_AVAILABLE",
					co.Key, co.NodeID, co.Host, co.Port, co.ErrorCode)
			}
		case co.ErrorCode != 0 || co.NodeID != main.NodeID || !listenerA[net.JoinHostPort(co.Host, strconv.Itoa(int(co.Port)))]:
			t.Errorf("group %s: coordinator %d at %s:%d (error %d) on the zone-a listener, want %d at its zone-a listener",
				co.Key, co.NodeID, co.Host, co.Port, co.ErrorCode, main.NodeID)
		default:
			reachable = co.Key
		}
	}
	if onB1 == 0 || reachable == "" {
		t.Fatalf("of 40 groups, %d on b1 and none or all on zone a: the test needs both", onB1)
	}

	// A client seeded with the listener: its metadata requests go to every
	// broker it knows, so over 30 of them (odds of never picking one of 3
	// brokers: (2/3)^30) it would have reached b1's main listener before.
	var (
		mu    sync.Mutex
		dials = map[string]int{}
	)
	hook := hookBrokerConnect(func(meta kgo.BrokerMetadata) {
		mu.Lock()
		dials[net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port)))]++
		mu.Unlock()
	})
	prod := client(t, seed, kgo.ClientID("plain"), kgo.WithHooks(hook), kgo.ProducerLinger(time.Millisecond))
	produceN(t, prod, "zl", 0, 150)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 30 {
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr("zl")
		req.Topics = append(req.Topics, rt)
		if _, err := req.RequestWith(ctx, prod); err != nil {
			t.Fatalf("metadata: %v", err)
		}
	}
	produceN(t, prod, "zl", 1, 150)
	cons := client(t, seed, kgo.ClientID("plain"), kgo.WithHooks(hook), kgo.ConsumerGroup(reachable), kgo.ConsumeTopics("zl"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	consumeAll(t, cons, 300)
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for addr, n := range dials {
		if !listenerA[addr] {
			t.Errorf("the zone-a listener's clients connected %d times to %s, not a zone-a listener (all: %v)", n, addr, dials)
		}
	}
}

// hookBrokerConnect is a kgo.HookBrokerConnect calling f for each
// connection attempt, failed or not.
type hookBrokerConnect func(kgo.BrokerMetadata)

func (h hookBrokerConnect) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, _ error) {
	h(meta)
}

// TestLeaveOnShutdown: a stopping agent deregisters first; before its
// connections close, the other agents no longer list it and it no longer
// lists itself, so clients that refresh their metadata move away.
func TestLeaveOnShutdown(t *testing.T) {
	cat, bucket := services(t)
	a := startMember(t, cat, bucket, "", func(c *agent.Config) { c.ShutdownGrace = time.Second })
	b := startMember(t, cat, bucket, "", nil)
	waitFleet(t, a, b)
	createTopic(t, a.Addr, "leave", 4)
	aNode := a.Agent.Agent.NodeID()

	stopped := make(chan error, 1)
	go func() { stopped <- a.Stop() }()
	start := time.Now()
	waitUntil(t, 5*time.Second, "the stopping agent leaves itself out", func() bool {
		md := metadata(t, a.Addr, "", []string{"leave"})
		for _, br := range md.Brokers {
			if br.NodeID == aNode {
				return false
			}
		}
		for _, l := range leaders(t, md, "leave") {
			if l == aNode {
				t.Fatal("the stopping agent still leads a partition")
			}
		}
		return true
	})
	waitUntil(t, 5*time.Second, "the other agent drops the stopping one", func() bool {
		return len(metadata(t, b.Addr, "", nil).Brokers) == 1
	})
	select {
	case err := <-stopped:
		t.Fatalf("the agent stopped (%v) %v after the signal, before the fleet noticed", err, time.Since(start))
	default:
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := client(t, b.Addr, kgo.DefaultProduceTopic("leave"))
	if err := cl.ProduceSync(ctx, kgo.StringRecord("after")).FirstErr(); err != nil {
		t.Fatal(err)
	}
}
