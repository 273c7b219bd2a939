package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/sqlite"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/file"
	"github.com/floebroker/floe/tests/floetest"
)

// errCatalogDown is what a gatedCatalog answers while it is down.
var errCatalogDown = errors.New("test: catalog unreachable")

// gatedCatalog is a catalog whose membership and commit calls fail while
// down is set: the catalog unreachable from the agents using it. While
// hang is set (when not nil), a heartbeat blocks until its ctx ends, as a
// call on a connection whose peer vanished does until TCP gives up. While
// noView is set (when not nil), reads of the live agents fail.
type gatedCatalog struct {
	catalog.Catalog
	down   *atomic.Bool
	hang   *atomic.Bool
	noView *atomic.Bool
}

func (g gatedCatalog) gate() error {
	if g.down.Load() {
		return errCatalogDown
	}
	return nil
}

func (g gatedCatalog) RegisterAgent(ctx context.Context, a catalog.Agent, ttl time.Duration) (catalog.Agent, error) {
	if err := g.gate(); err != nil {
		return catalog.Agent{}, err
	}
	return g.Catalog.RegisterAgent(ctx, a, ttl)
}

func (g gatedCatalog) HeartbeatAgent(ctx context.Context, nodeID int32, started time.Time) error {
	if err := g.gate(); err != nil {
		return err
	}
	if g.hang != nil && g.hang.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return g.Catalog.HeartbeatAgent(ctx, nodeID, started)
}

func (g gatedCatalog) ListTopics(ctx context.Context) ([]catalog.Topic, error) {
	if err := g.gate(); err != nil {
		return nil, err
	}
	return g.Catalog.ListTopics(ctx)
}

func (g gatedCatalog) LiveAgents(ctx context.Context, ttl time.Duration) ([]catalog.Agent, int64, error) {
	if err := g.gate(); err != nil {
		return nil, 0, err
	}
	if g.noView != nil && g.noView.Load() {
		return nil, 0, errCatalogDown
	}
	return g.Catalog.LiveAgents(ctx, ttl)
}

func (g gatedCatalog) ExpireAgents(ctx context.Context, ttl time.Duration) (int, error) {
	if err := g.gate(); err != nil {
		return 0, err
	}
	return g.Catalog.ExpireAgents(ctx, ttl)
}

func (g gatedCatalog) CommitSegment(ctx context.Context, seg catalog.Segment) (catalog.CommitResult, error) {
	if err := g.gate(); err != nil {
		return catalog.CommitResult{}, err
	}
	return g.Catalog.CommitSegment(ctx, seg)
}

func (g gatedCatalog) CommitSegments(ctx context.Context, segs []catalog.Segment) ([]catalog.CommitResult, error) {
	if err := g.gate(); err != nil {
		return nil, err
	}
	return g.Catalog.CommitSegments(ctx, segs)
}

func (g gatedCatalog) CommitsSince(ctx context.Context, after int64, limit int) ([]catalog.BatchRow, int64, error) {
	if err := g.gate(); err != nil {
		return nil, 0, err
	}
	return g.Catalog.CommitsSince(ctx, after, limit)
}

// sharedStores opens a catalog and a bucket for a fleet of test agents.
func sharedStores(t *testing.T) (catalog.Catalog, objstore.Bucket) {
	dir := t.TempDir()
	base := sharedCatalog(t)
	bkt, err := file.New(filepath.Join(dir, "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bkt.Close() })
	return base, bkt
}

// sharedCatalog opens an SQLite catalog that outlives the agents of a test.
func sharedCatalog(t *testing.T) catalog.Catalog {
	base, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "catalog.db"), catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { base.Close() })
	return base
}

// TestCatalogOutageKeepsFleet takes the catalog away from a fleet of two
// agents for longer than the agent TTL and brings it back. Every agent's
// heartbeat lapsed for the same reason, so none is dead: the first agent
// to reach the catalog again must not expire the others (which would drop
// them from every view until they registered again, moving every group
// coordinator and partition leader of theirs away and back), and the fleet
// must come back as it was.
func TestCatalogOutageKeepsFleet(t *testing.T) {
	ctx := context.Background()
	base, bkt := sharedStores(t)

	var downA, downB atomic.Bool
	const ttl = 600 * time.Millisecond
	start := func(down *atomic.Bool) *floetest.Agent {
		return floetest.Start(t, floetest.Options{
			Dir:     t.TempDir(),
			Catalog: gatedCatalog{Catalog: base, down: down},
			Bucket:  bkt,
			Config: func(c *agent.Config) {
				c.HeartbeatInterval = 50 * time.Millisecond
				c.AgentTTL = ttl
			},
		})
	}
	a, b := start(&downA), start(&downB)
	registered := func(ttl time.Duration) map[int32]string {
		agents, _, err := base.LiveAgents(ctx, ttl)
		if err != nil {
			t.Fatal(err)
		}
		m := make(map[int32]string, len(agents))
		for _, ag := range agents {
			m[ag.NodeID] = ag.ID
		}
		return m
	}
	live := func() map[int32]string { return registered(ttl) }
	generation := func() int64 {
		_, gen, err := base.LiveAgents(ctx, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return gen
	}
	waitFor(t, 5*time.Second, "both agents live", func() bool { return len(live()) == 2 })
	nodeA, nodeB := a.Agent.NodeID(), b.Agent.NodeID()
	gen := generation()

	downA.Store(true)
	downB.Store(true)
	time.Sleep(3 * ttl)
	// The catalog answers A a few heartbeats before B (connections are
	// re-established one agent at a time).
	downA.Store(false)
	time.Sleep(4 * 50 * time.Millisecond)
	downB.Store(false)
	// Wait for both to heartbeat again (several heartbeats on an idle
	// machine; a loaded one may take longer): their registrations, not
	// the wait, are what is checked.
	waitFor(t, 5*time.Second, "both agents live again", func() bool { return len(live()) == 2 })

	if got := a.Agent.NodeID(); got != nodeA {
		t.Errorf("agent A's node id changed from %d to %d across a catalog outage", nodeA, got)
	}
	if got := b.Agent.NodeID(); got != nodeB {
		t.Errorf("agent B's node id changed from %d to %d across a catalog outage", nodeB, got)
	}
	if m := live(); len(m) != 2 || m[nodeA] != a.Agent.ID() || m[nodeB] != b.Agent.ID() {
		t.Errorf("live agents after the outage: %v; want nodes %d and %d", m, nodeA, nodeB)
	}
	// An agent expired and registered again keeps its node id: only the
	// membership generation tells.
	if got := generation(); got != gen {
		t.Errorf("the membership generation moved from %d to %d across the outage: an agent was expired", gen, got)
	}

	// Cut B alone off (a network partition, or B paused): once A has
	// heartbeaten for a whole TTL, B is dead to it and expired, and B
	// registers again when it is back, under its node id.
	time.Sleep(ttl)
	downB.Store(true)
	waitFor(t, 5*time.Second, "A expires B", func() bool {
		m := registered(time.Hour) // B is expired, not only stale
		_, ok := m[nodeB]
		return len(m) == 1 && !ok
	})
	downB.Store(false)
	waitFor(t, 5*time.Second, "B registers again", func() bool {
		m := live()
		return len(m) == 2 && m[nodeB] == b.Agent.ID()
	})
	if got := b.Agent.NodeID(); got != nodeB {
		t.Errorf("agent B registered again after its expiry under node id %d, had %d", got, nodeB)
	}
}

// TestRestartKeepsNodeID: an agent with a fixed agent ID (a StatefulSet's
// pod) that stops gracefully, deregistering, and starts again on the same
// catalog is the same Kafka node, as every pod is after a rolling upgrade:
// clients' cached metadata stays right.
func TestRestartKeepsNodeID(t *testing.T) {
	dir := t.TempDir()
	opts := floetest.Options{Dir: dir, Config: func(c *agent.Config) { c.AgentID = "pod-0" }}
	a := floetest.Start(t, opts)
	node := a.Agent.NodeID()
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	a = floetest.Start(t, opts)
	if got := a.Agent.NodeID(); got != node {
		t.Fatalf("restarted agent has node id %d, had %d", got, node)
	}
}

// TestHungHeartbeatRecovers: a heartbeat stuck on a dead catalog
// connection (the peer vanished without a reset, as in a failover) must not
// stop the agent's heartbeats for good; once the catalog answers again the
// agent is live again without a restart.
func TestHungHeartbeatRecovers(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	base, err := sqlite.Open(ctx, filepath.Join(dir, "catalog.db"), catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { base.Close() })
	var down, hang atomic.Bool
	const ttl = 600 * time.Millisecond
	a := floetest.Start(t, floetest.Options{
		Catalog: gatedCatalog{Catalog: base, down: &down, hang: &hang},
		Config: func(c *agent.Config) {
			c.HeartbeatInterval = 50 * time.Millisecond
			c.AgentTTL = ttl
		},
	})
	live := func() bool {
		agents, _, err := base.LiveAgents(ctx, ttl)
		if err != nil {
			t.Fatal(err)
		}
		for _, ag := range agents {
			if ag.ID == a.Agent.ID() {
				return true
			}
		}
		return false
	}
	waitFor(t, 5*time.Second, "the agent is live", live)
	hang.Store(true)
	waitFor(t, 5*time.Second, "the agent's heartbeat lapses", func() bool { return !live() })
	hang.Store(false) // new calls are answered; a hung one stays hung
	waitFor(t, 10*ttl, "the agent is live again", live)
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDuplicateAgentID runs two agents with one agent ID on one catalog.
// The second cannot register while the first heartbeats, and gives up
// naming the other process. Once the first is cut off past the TTL (a
// partition, a long pause), a third with the same ID takes the ID and
// node id over; the first, back, must not claim the node id beside it:
// it stops coordinating groups and reports not ready until the third
// leaves, then registers again, under the id's node id.
func TestDuplicateAgentID(t *testing.T) {
	ctx := context.Background()
	base, bkt := sharedStores(t)

	const ttl = 400 * time.Millisecond
	const id = "01TWINAGENT0000000000000000"
	opts := func(down *atomic.Bool) floetest.Options {
		return floetest.Options{
			Dir:     t.TempDir(),
			Catalog: gatedCatalog{Catalog: base, down: down},
			Bucket:  bkt,
			Config: func(c *agent.Config) {
				c.AgentID = id
				c.HeartbeatInterval = 50 * time.Millisecond
				c.AgentTTL = ttl
			},
		}
	}
	var downA, downB, downC atomic.Bool
	a := floetest.Start(t, opts(&downA))
	node := a.Agent.NodeID()

	start := time.Now()
	b, err := floetest.TryStart(t, opts(&downB))
	if err == nil {
		b.Stop()
		t.Fatal("a second agent with a live agent's id started")
	}
	if !errors.Is(err, catalog.ErrAgentIDInUse) || !strings.Contains(err.Error(), a.Addr) {
		t.Fatalf("second agent: %v; want ErrAgentIDInUse naming %s", err, a.Addr)
	}
	if waited := time.Since(start); waited < 2*ttl {
		t.Errorf("second agent gave up after %v, before its heartbeat could have lapsed", waited)
	}
	if !a.Agent.Ready() || a.Agent.NodeID() != node {
		t.Fatalf("the first agent lost its registration to a refused one")
	}

	downA.Store(true) // A is cut off; its heartbeat lapses
	c := floetest.Start(t, opts(&downC))
	if c.Agent.NodeID() != node {
		t.Fatalf("the agent taking the id over got node %d, want %d", c.Agent.NodeID(), node)
	}
	downA.Store(false)
	waitFor(t, 5*time.Second, "A steps back", func() bool { return !a.Agent.Ready() })
	if _, _, _, err := a.Agent.Coordinator(ctx, "g"); err == nil {
		t.Error("the displaced agent still coordinates groups")
	}
	// Its Metadata follows the fleet: the node id is the other process's,
	// at its address, not the displaced agent's own.
	conn := floetest.Dial(t, a.Addr)
	defer conn.Close()
	waitFor(t, 5*time.Second, "the displaced agent's metadata names the node at its new holder", func() bool {
		resp, err := conn.Request(kmsg.NewPtrMetadataRequest())
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range resp.(*kmsg.MetadataResponse).Brokers {
			if b.NodeID == node {
				return net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))) == c.Addr
			}
		}
		return false
	})
	// The id's only row stays the one that took it over (listed by a long
	// TTL, so a heartbeat late on a loaded machine does not matter).
	time.Sleep(4 * 50 * time.Millisecond)
	agents, _, err := base.LiveAgents(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(agents) != 1 || agents[0].Addr != c.Addr || !c.Agent.Ready() {
		t.Fatalf("registered agents %+v; want only the one that took the id over, at %s", agents, c.Addr)
	}

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "A registers again", func() bool { return a.Agent.Ready() })
	if got := a.Agent.NodeID(); got != node {
		t.Errorf("A registered again under node id %d, want the id's %d", got, node)
	}
}

// TestMetadataDuringCatalogOutage: while the catalog cannot list topics, a
// Metadata request for all topics is answered from the last list, as a
// Kafka broker answers from its metadata cache. Before v13 the answer was
// an empty list, which tells clients every topic is gone (a regex
// subscriber drops all its partitions until the catalog is back); from
// v13 a KAFKA_STORAGE_ERROR, which fails the client's metadata refresh.
func TestMetadataDuringCatalogOutage(t *testing.T) {
	var down atomic.Bool
	a := floetest.Start(t, floetest.Options{Catalog: gatedCatalog{Catalog: sharedCatalog(t), down: &down}})
	createTopic(t, a, "kept", 2, nil)
	cl := a.Client(t)
	all := func() []string {
		resp, err := kmsg.NewPtrMetadataRequest().RequestWith(t.Context(), cl)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, mt := range resp.Topics {
			if mt.ErrorCode == 0 && mt.Topic != nil {
				names = append(names, *mt.Topic)
			}
		}
		return names
	}
	if got := all(); !slices.Equal(got, []string{"kept"}) {
		t.Fatalf("topics before the outage: %v", got)
	}
	down.Store(true)
	if got := all(); !slices.Equal(got, []string{"kept"}) {
		t.Fatalf("topics during a catalog outage: %v, want the last list", got)
	}
}

// TestMetadataWithoutTopicListDuringOutage: an agent that has not listed
// the topics since it started, asked for all of them while the catalog is
// unreachable, closes the connection (clients retry) instead of answering
// that there are none; once the catalog is back it lists them.
func TestMetadataWithoutTopicListDuringOutage(t *testing.T) {
	var down atomic.Bool
	a := floetest.Start(t, floetest.Options{Catalog: gatedCatalog{Catalog: sharedCatalog(t), down: &down}})
	createTopic(t, a, "listed", 1, nil)
	cl := a.Client(t)
	down.Store(true)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	// franz-go reports a v13 response's top-level error as an error; the
	// Java client would take such a response as a cluster without topics.
	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	var kerrErr *kerr.Error
	if err == nil || errors.As(err, &kerrErr) {
		t.Fatalf("metadata during the outage answered (%v, %d topics), want the connection closed", err, len(resp.Topics))
	}
	down.Store(false)
	resp, err = kmsg.NewPtrMetadataRequest().RequestWith(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || resp.Topics[0].Topic == nil || *resp.Topics[0].Topic != "listed" {
		t.Fatalf("topics after the outage: %+v", resp.Topics)
	}
}

// TestCutOffCoordinatorStopsFirst cuts the coordinator of a group off from
// the catalog while its clients still reach it (a partition between the
// agent and the catalog only). The other agent takes the group over once
// the cut-off one's heartbeat is older than the TTL; the cut-off one must
// have stopped serving the group before that — by its lease's end — or
// the group would have two coordinators, and two consumers the same
// partitions. Back in the catalog, it coordinates the group again, from
// the state stored meanwhile.
func TestCutOffCoordinatorStopsFirst(t *testing.T) {
	ctx := context.Background()
	base, bkt := sharedStores(t)
	const hb, ttl = 100 * time.Millisecond, time.Second
	var downA atomic.Bool
	start := func(cat catalog.Catalog) *floetest.Agent {
		return floetest.Start(t, floetest.Options{
			Dir:     t.TempDir(),
			Catalog: cat,
			Bucket:  bkt,
			Config: func(c *agent.Config) {
				c.HeartbeatInterval = hb
				c.AgentTTL = ttl
				c.Groups.InitialRebalanceDelay = 10 * time.Millisecond
			},
		})
	}
	a, b := start(gatedCatalog{Catalog: base, down: &downA}), start(base)
	coordinator := func(ag *floetest.Agent, group string) int32 {
		n, _, _, err := ag.Agent.Coordinator(ctx, group)
		if err != nil {
			return -1
		}
		return n
	}
	waitFor(t, 5*time.Second, "both agents see each other", func() bool {
		return coordinator(a, "x") == coordinator(b, "x") && coordinator(a, "y") == coordinator(b, "y") &&
			coordinator(a, "x") > 0 && coordinator(b, "z") != -1 && countLive(t, base, ttl) == 2
	})
	group := ""
	for i := 0; group == ""; i++ {
		g := "lease-" + strconv.Itoa(i)
		if n := a.Agent.NodeID(); coordinator(a, g) == n && coordinator(b, g) == n {
			group = g
		}
	}

	// One member, joined and synced through A.
	connA := floetest.Dial(t, a.Addr)
	join, joined := joinAlone(t, connA, group, 30_000)
	heartbeat := func(conn *floetest.Conn) int16 {
		r := kmsg.NewPtrHeartbeatRequest()
		r.Version, r.Group, r.Generation, r.MemberID = 3, group, joined.Generation, joined.MemberID
		resp, err := conn.Request(r)
		if err != nil {
			t.Fatal(err)
		}
		return resp.(*kmsg.HeartbeatResponse).ErrorCode
	}
	if code := heartbeat(connA); code != 0 {
		t.Fatalf("heartbeat through A: %v", kerr.ErrorForCode(code))
	}
	refused := func(code int16) bool {
		return code == kerr.NotCoordinator.Code || code == kerr.CoordinatorNotAvailable.Code
	}

	// Cut A off. A heartbeat that passed the gate before the cut may still
	// succeed, so A's lease ends at the latest ttl-hb after the cut: A must
	// refuse every request sent after that, and every request sent after
	// B took the group over. B is asked first in each round, so that a
	// refusal by A in the same round is no proof of the order.
	nodeA := a.Agent.NodeID()
	cut := time.Now()
	downA.Store(true)
	leaseEnd := cut.Add(ttl - hb)
	var firstRefusal time.Time
	for {
		bServes := coordinator(b, group) == b.Agent.NodeID()
		sent := time.Now()
		code := heartbeat(connA)
		switch {
		case code == 0 && bServes:
			t.Fatalf("A served a heartbeat for the group after B took it over (%v after the cut)", sent.Sub(cut))
		case code == 0 && sent.After(leaseEnd):
			t.Fatalf("A served a heartbeat %v after the cut, past its lease (%v)", sent.Sub(cut), ttl-hb)
		case code != 0 && !refused(code):
			t.Fatalf("A answered a heartbeat with %v", kerr.ErrorForCode(code))
		case code != 0 && firstRefusal.IsZero():
			firstRefusal = sent
		}
		if bServes {
			t.Logf("A refused from %v after the cut, B took over after %v", firstRefusal.Sub(cut), sent.Sub(cut))
			break
		}
		if time.Since(cut) > 10*time.Second {
			t.Fatal("B never took the group over")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if coordinator(a, group) != -1 {
		t.Error("the cut-off agent still names a coordinator")
	}
	if resp, err := connA.Request(join); err != nil || !refused(resp.(*kmsg.JoinGroupResponse).ErrorCode) {
		t.Fatalf("a join through the cut-off agent: %v %+v", err, resp)
	}
	find := kmsg.NewPtrFindCoordinatorRequest()
	find.Version, find.CoordinatorKey = 3, group
	if resp, err := connA.Request(find); err != nil || resp.(*kmsg.FindCoordinatorResponse).ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("FindCoordinator at the cut-off agent: %v %+v", err, resp)
	}
	// B serves the member from the state A stored.
	connB := floetest.Dial(t, b.Addr)
	if code := heartbeat(connB); code != 0 {
		t.Fatalf("heartbeat through B after the takeover: %v", kerr.ErrorForCode(code))
	}

	// A is back: it heartbeats again (registering anew if B expired it)
	// and coordinates the group again, loading the state B holds.
	downA.Store(false)
	waitFor(t, 5*time.Second, "the group is A's again", func() bool {
		n := a.Agent.NodeID()
		return n > 0 && coordinator(a, group) == n && coordinator(b, group) == n
	})
	t.Logf("A's node id %d, then %d", nodeA, a.Agent.NodeID())
	waitFor(t, 5*time.Second, "A serves the member again", func() bool { return heartbeat(connA) == 0 })
	if code := heartbeat(connB); code != kerr.NotCoordinator.Code {
		t.Errorf("B answered a heartbeat with %v after the group went back to A", kerr.ErrorForCode(code))
	}
}

// countLive is the number of agents live by the catalog.
func countLive(t *testing.T, cat catalog.Catalog, ttl time.Duration) int {
	agents, _, err := cat.LiveAgents(context.Background(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	return len(agents)
}

// slowOffsetsCatalog is a catalog whose partition offsets reads time out
// while slow is set, as on a catalog too loaded to answer in time.
type slowOffsetsCatalog struct {
	catalog.Catalog
	slow *atomic.Bool
}

func (c slowOffsetsCatalog) Offsets(ctx context.Context, tp catalog.TopicPartition) (catalog.PartitionOffsets, error) {
	if c.slow.Load() {
		return catalog.PartitionOffsets{}, fmt.Errorf("test: offsets: %w", context.DeadlineExceeded)
	}
	return c.Catalog.Offsets(ctx, tp)
}

func (c slowOffsetsCatalog) OffsetsOf(ctx context.Context, tps []catalog.TopicPartition) (map[catalog.TopicPartition]catalog.PartitionOffsets, error) {
	if c.slow.Load() {
		return nil, fmt.Errorf("test: offsets: %w", context.DeadlineExceeded)
	}
	return c.Catalog.OffsetsOf(ctx, tps)
}

// TestFetchCatalogTimeoutIsStorageError: a fetched partition whose offsets
// the catalog cannot read in time gets KAFKA_STORAGE_ERROR, which clients
// retry, not REQUEST_TIMED_OUT, which Kafka never puts on a fetched
// partition and the Java consumer throws on.
func TestFetchCatalogTimeoutIsStorageError(t *testing.T) {
	var slow atomic.Bool
	a := floetest.Start(t, floetest.Options{Catalog: slowOffsetsCatalog{Catalog: sharedCatalog(t), slow: &slow}})
	createTopic(t, a, "slowcat", 1, nil)
	cl := a.Client(t)
	slow.Store(true)
	if got := fetchPastEnd(t, cl, topicID(t, a, "slowcat")); got != kerr.KafkaStorageError.Code {
		t.Fatalf("error %v, want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(got))
	}
}

// TestFetchTopicDeletedElsewhere: a fetch by topic id (v13+) of a topic
// deleted through another agent, which this one still has cached, gets
// UNKNOWN_TOPIC_ID, as for any id no topic has (Kafka's answer; franz-go
// takes it for a recreated topic), not UNKNOWN_TOPIC_OR_PARTITION.
func TestFetchTopicDeletedElsewhere(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})
	createTopic(t, a, "gone", 1, nil)
	id := topicID(t, a, "gone")
	if _, err := a.Catalog.DeleteTopic(t.Context(), "gone", id); err != nil {
		t.Fatal(err)
	}
	if got := fetchPastEnd(t, a.Client(t), id); got != kerr.UnknownTopicID.Code {
		t.Fatalf("error %v, want UNKNOWN_TOPIC_ID", kerr.ErrorForCode(got))
	}
}

// fetchPastEnd fetches partition 0 of topic id by id at an offset past its
// end, which is never answered from cached offsets (the agent asks the
// catalog), and returns the partition's error code.
func fetchPastEnd(t *testing.T, cl *kgo.Client, id [16]byte) int16 {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.MaxBytes = 1 << 20
	rt := kmsg.NewFetchRequestTopic()
	rt.TopicID = id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset = 5
	rp.PartitionMaxBytes = 1 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("fetch response %+v", resp)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}
