package agent_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/agent/groups"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/tests/floetest"
)

// TestJoiningAgentWaitsToServe: agent B joins a fleet where A serves
// groups. A sees B only at its next view refresh, up to a heartbeat
// interval later, and serves the groups that move to B until then. B
// names itself for them at once but serves them only once its join has
// settled, so at no time do both answer a member of one group; then B
// serves the member from the state A stored, at its generation. Without
// the settle, B loaded the group and answered while A still did.
func TestJoiningAgentWaitsToServe(t *testing.T) {
	ctx := context.Background()
	cat, bkt := sharedStores(t)
	// A long heartbeat interval makes A's stale view last long enough to
	// be seen: A refreshes it once a second.
	const hb = time.Second
	start := func() *floetest.Agent {
		return floetest.Start(t, floetest.Options{
			Dir: t.TempDir(), Catalog: cat, Bucket: bkt,
			Config: func(c *agent.Config) {
				c.HeartbeatInterval, c.AgentTTL = hb, 10*hb
				c.Groups.InitialRebalanceDelay = 10 * time.Millisecond
			},
		})
	}
	a := start()
	if _, _, _, err := a.Agent.Coordinator(ctx, "g"); err != nil {
		t.Fatalf("the first agent of a fleet does not serve groups at once: %v", err)
	}

	// One member in each of several groups, all served by A.
	type member struct {
		group, id  string
		generation int32
	}
	connA := floetest.Dial(t, a.Addr)
	var members []member
	for i := range 16 {
		group := fmt.Sprintf("join-%d", i)
		_, joined := joinAlone(t, connA, group, 60_000)
		members = append(members, member{group, joined.MemberID, joined.Generation})
	}

	b := start()
	joinedAt := time.Now()
	// A group B's view places on B: B names itself for it, and does not
	// serve it yet.
	var m member
	for _, c := range members {
		node, _, _, err := b.Agent.Coordinator(ctx, c.group)
		if node == b.Agent.NodeID() {
			if !errors.Is(err, groups.ErrJoining) {
				t.Fatalf("the joining agent is placed %s with %v, want groups.ErrJoining", c.group, err)
			}
			m = c
			break
		}
	}
	if m.group == "" {
		t.Fatal("no group moves to the joining agent")
	}
	find := kmsg.NewPtrFindCoordinatorRequest()
	find.Version, find.CoordinatorKey = 3, m.group
	connB := floetest.Dial(t, b.Addr)
	if resp, err := connB.Request(find); err != nil {
		t.Fatal(err)
	} else if r := resp.(*kmsg.FindCoordinatorResponse); r.ErrorCode != 0 || r.NodeID != b.Agent.NodeID() {
		t.Fatalf("FindCoordinator at the joining agent: %v, node %d (want itself, %d)", kerr.ErrorForCode(r.ErrorCode), r.NodeID, b.Agent.NodeID())
	}

	// Whether an agent serves the group, asked with DescribeGroups (a
	// Heartbeat is answered without error while an agent loads, as in
	// Kafka, so it cannot tell).
	serving := func(conn *floetest.Conn) int16 {
		r := kmsg.NewPtrDescribeGroupsRequest()
		r.Version, r.Groups = 5, []string{m.group}
		resp, err := conn.Request(r)
		if err != nil {
			t.Fatal(err)
		}
		return resp.(*kmsg.DescribeGroupsResponse).Groups[0].ErrorCode
	}
	// Ask B, then A, until B serves: A may serve until B first does,
	// never after, and B only once its join settled.
	var aServed, bServed time.Time
	for deadline := time.Now().Add(10 * hb); bServed.IsZero(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the joining agent never served the group")
		}
		sent := time.Now()
		switch code := serving(connB); code {
		case 0:
			bServed = sent
		case kerr.CoordinatorLoadInProgress.Code:
		default:
			t.Fatalf("B answered DescribeGroups with %v before serving the group", kerr.ErrorForCode(code))
		}
		sent = time.Now()
		switch code := serving(connA); code {
		case 0:
			if !bServed.IsZero() {
				t.Fatalf("A served the group %v after B first did", sent.Sub(bServed))
			}
			aServed = sent
		case kerr.NotCoordinator.Code:
		default:
			t.Fatalf("A answered DescribeGroups with %v", kerr.ErrorForCode(code))
		}
	}
	t.Logf("B joined; A served until %v, B from %v", aServed.Sub(joinedAt), bServed.Sub(joinedAt))
	if settle := bServed.Sub(joinedAt); settle < 2*hb-hb/2 {
		t.Errorf("B served %v after it joined, before its join settled (%v)", settle, 2*hb)
	}
	if code := serving(connA); code != kerr.NotCoordinator.Code {
		t.Errorf("A answered %v after B took the group over", kerr.ErrorForCode(code))
	}
}

// joinAlone joins group through conn as its only member, which leads it,
// and syncs it: the group is Stable. It returns the JoinGroup request (to
// send again) and its answer.
func joinAlone(t *testing.T, conn *floetest.Conn, group string, timeoutMs int32) (*kmsg.JoinGroupRequest, *kmsg.JoinGroupResponse) {
	t.Helper()
	join := kmsg.NewPtrJoinGroupRequest()
	join.Version, join.Group, join.ProtocolType = 3, group, "consumer"
	join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = timeoutMs, timeoutMs
	proto := kmsg.NewJoinGroupRequestProtocol()
	proto.Name, proto.Metadata = "range", []byte{0, 0, 0, 0, 0, 0, 0, 0}
	join.Protocols = append(join.Protocols, proto)
	resp, err := conn.Request(join)
	if err != nil {
		t.Fatal(err)
	}
	joined := resp.(*kmsg.JoinGroupResponse)
	if joined.ErrorCode != 0 || joined.LeaderID != joined.MemberID {
		t.Fatalf("join %s: %v, leader %q, member %q", group, kerr.ErrorForCode(joined.ErrorCode), joined.LeaderID, joined.MemberID)
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Version, sync.Group, sync.Generation, sync.MemberID = 3, group, joined.Generation, joined.MemberID
	assign := kmsg.NewSyncGroupRequestGroupAssignment()
	assign.MemberID, assign.MemberAssignment = joined.MemberID, []byte{0, 0, 0, 0, 0, 0, 0, 0}
	sync.GroupAssignment = append(sync.GroupAssignment, assign)
	if resp, err := conn.Request(sync); err != nil || resp.(*kmsg.SyncGroupResponse).ErrorCode != 0 {
		t.Fatalf("sync %s: %v %v", group, err, resp)
	}
	return join, joined
}

// TestStaleViewStopsCoordinating: agent A, cut off from the catalog for
// less than its lease, keeps the view it read before the cut, in which it
// is alone. Agent B joins meanwhile, sees A (whose heartbeat is recent)
// and, its join settled, serves the groups its view places on it. A must
// not go on serving those groups from its old view: that would make two
// coordinators of one group, each accepting members' heartbeats and
// commits (which no state compare-and-set fences). Before the view had to
// be recent, A served every group until its heartbeat lease ended, a TTL
// less an interval after the cut (here a minute), whatever had joined.
func TestStaleViewStopsCoordinating(t *testing.T) {
	ctx := context.Background()
	base, bkt := sharedStores(t)
	const hb = 100 * time.Millisecond
	var downA atomic.Bool
	start := func(cat catalog.Catalog) *floetest.Agent {
		return floetest.Start(t, floetest.Options{
			Dir: t.TempDir(), Catalog: cat, Bucket: bkt,
			// A TTL so long that A's heartbeat lease outlasts the test.
			Config: func(c *agent.Config) { c.HeartbeatInterval, c.AgentTTL = hb, time.Minute },
		})
	}
	a := start(gatedCatalog{Catalog: base, down: &downA})
	t.Cleanup(func() { downA.Store(false) }) // before A stops
	waitFor(t, 10*time.Second, "A coordinates", func() bool {
		n, _, _, err := a.Agent.Coordinator(ctx, "g")
		return err == nil && n == a.Agent.NodeID()
	})

	// Cut A off before B registers: every view A read started before.
	downA.Store(true)
	cut := time.Now()
	b := start(base)
	waitFor(t, 10*time.Second, "B's join settles", b.Agent.JoinSettled)

	moved := 0
	for i := range 64 {
		g := fmt.Sprintf("stale-%d", i)
		if n, _, _, err := b.Agent.Coordinator(ctx, g); err != nil || n != b.Agent.NodeID() {
			continue
		}
		moved++
		if n, _, _, err := a.Agent.Coordinator(ctx, g); err == nil && n == a.Agent.NodeID() {
			t.Fatalf("A and B both coordinate group %s, A from a view read before it was cut off %v ago", g, time.Since(cut))
		}
	}
	if moved == 0 {
		t.Fatal("B serves none of the groups")
	}
}

// TestLapsedAgentWaitsToServe: after a catalog outage longer than the TTL,
// both agents' leases lapsed and each one's stored heartbeat is stale.
// A reaches the catalog first: its view lists only itself, and it serves
// every group. Then B comes back. A still serves B's groups until its
// next view read (here A's reads fail, so until its view half ends), so B,
// back from a lapse, must wait as a joining agent does before it serves
// them. Before, B served them as soon as its heartbeat renewed its lease,
// beside A.
func TestLapsedAgentWaitsToServe(t *testing.T) {
	ctx := context.Background()
	base, bkt := sharedStores(t)
	const hb, ttl = 500 * time.Millisecond, 2 * time.Second
	var downA, downB, noViewA atomic.Bool
	start := func(cat catalog.Catalog) *floetest.Agent {
		return floetest.Start(t, floetest.Options{
			Dir: t.TempDir(), Catalog: cat, Bucket: bkt,
			Config: func(c *agent.Config) { c.HeartbeatInterval, c.AgentTTL = hb, ttl },
		})
	}
	a := start(gatedCatalog{Catalog: base, down: &downA, noView: &noViewA})
	b := start(gatedCatalog{Catalog: base, down: &downB})
	t.Cleanup(func() { downA.Store(false); downB.Store(false); noViewA.Store(false) })
	waitFor(t, 10*time.Second, "B's join settles", b.Agent.JoinSettled)
	group := ""
	for i := 0; group == ""; i++ {
		if g := fmt.Sprintf("lapse-%d", i); servesGroup(ctx, b, g) {
			group = g
		}
	}

	downA.Store(true)
	downB.Store(true)
	waitFor(t, 10*ttl, "both heartbeats are stale", func() bool { return countLive(t, base, ttl) == 0 })
	downA.Store(false)
	waitFor(t, 10*ttl, "A serves B's group", func() bool { return servesGroup(ctx, a, group) })
	noViewA.Store(true)
	downB.Store(false)
	back := time.Now()
	for !servesGroup(ctx, b, group) {
		if time.Since(back) > 10*ttl {
			t.Fatal("B never served its group again")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if servesGroup(ctx, a, group) {
		t.Fatalf("A and B both serve group %s, B %v after it was back", group, time.Since(back))
	}
}

// leavingCatalog holds the first read of the live agents after this
// agent deregistered until release is closed, telling held first.
type leavingCatalog struct {
	catalog.Catalog
	deregistered  *atomic.Bool
	held, release chan struct{}
	heldOnce      *sync.Once
}

func (c leavingCatalog) DeregisterAgent(ctx context.Context, nodeID int32, started time.Time) error {
	err := c.Catalog.DeregisterAgent(ctx, nodeID, started)
	c.deregistered.Store(true)
	return err
}

func (c leavingCatalog) LiveAgents(ctx context.Context, ttl time.Duration) ([]catalog.Agent, int64, error) {
	if c.deregistered.Load() {
		c.heldOnce.Do(func() { close(c.held); <-c.release })
	}
	return c.Catalog.LiveAgents(ctx, ttl)
}

// TestLeavingAgentStopsFirst: an agent that stops deregisters, and the
// other agents take its groups over at their next view read, at once. It
// must have stopped serving them by then, however long its own reads
// take. Before, it stopped only once its read of the live agents after
// the deregistration returned (here held): meanwhile both served.
func TestLeavingAgentStopsFirst(t *testing.T) {
	ctx := context.Background()
	base, bkt := sharedStores(t)
	const hb = 100 * time.Millisecond
	lc := leavingCatalog{Catalog: base, deregistered: new(atomic.Bool),
		held: make(chan struct{}), release: make(chan struct{}), heldOnce: new(sync.Once)}
	start := func(cat catalog.Catalog) *floetest.Agent {
		return floetest.Start(t, floetest.Options{
			Dir: t.TempDir(), Catalog: cat, Bucket: bkt,
			Config: func(c *agent.Config) { c.HeartbeatInterval, c.AgentTTL = hb, 10*time.Second },
		})
	}
	a, b := start(lc), start(base)
	waitFor(t, 10*time.Second, "B's join settles", b.Agent.JoinSettled)
	group := ""
	for i := 0; group == ""; i++ {
		g := fmt.Sprintf("leave-%d", i)
		if n, _, _, err := b.Agent.Coordinator(ctx, g); err == nil && n == a.Agent.NodeID() && servesGroup(ctx, a, g) {
			group = g
		}
	}

	stopped := make(chan error, 1)
	go func() { stopped <- a.Stop() }()
	t.Cleanup(func() {
		select {
		case <-lc.release:
		default:
			close(lc.release)
		}
		if err := <-stopped; err != nil {
			t.Errorf("stopping A: %v", err)
		}
	})
	select {
	case <-lc.held:
	case <-time.After(10 * time.Second):
		t.Fatal("A never read the live agents after it deregistered")
	}
	waitFor(t, 10*time.Second, "B takes the group over", func() bool { return servesGroup(ctx, b, group) })
	if servesGroup(ctx, a, group) {
		t.Fatalf("A, deregistered, still serves group %s, which B serves", group)
	}
}

// servesGroup reports whether ag places group on itself.
func servesGroup(ctx context.Context, ag *floetest.Agent, group string) bool {
	n, _, _, err := ag.Agent.Coordinator(ctx, group)
	return err == nil && n == ag.Agent.NodeID()
}
