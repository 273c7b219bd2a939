package groups

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

// second is another coordinator on h's catalog (the agent a group moves
// to), with its clock at h's.
func (h *harness) second(tweak ...func(*Config)) *harness {
	h.t.Helper()
	b := newHarnessOn(h.t, h.cat, tweak...)
	b.cat = h.cat
	now := h.clock.Now()
	b.clock.mu.Lock()
	b.clock.t = now
	b.clock.mu.Unlock()
	return b
}

func leaveReq(group, member string) *kmsg.LeaveGroupRequest {
	r := kmsg.NewPtrLeaveGroupRequest()
	r.Version = 2
	r.Group, r.MemberID = group, member
	return r
}

// A group rebalanced on coordinator A moves to B (same catalog): its
// members heartbeat to B and keep their generation and assignments — no
// rebalance —, B accepts their commits with the generation A gave, and A,
// told the group moved, answers NOT_COORDINATOR. A member that never comes
// back is expired by B after its session timeout and a rebalance follows.
func TestGroupSurvivesCoordinatorMove(t *testing.T) {
	a := newHarness(t)
	a.cat.addTopic("t", 4)
	ids, gen := a.stableGroup("g", 2)
	if s := a.cat.state("g"); s.version == 0 {
		t.Fatal("the completed rebalance stored no state")
	}

	a.place.move("g", 2)
	errIs(t, "heartbeat on the old coordinator", a.do(hbReq("g", ids[0], gen)).(*kmsg.HeartbeatResponse).ErrorCode, kerr.NotCoordinator)
	if a.c.numGroups() != 0 {
		t.Fatal("the old coordinator kept the moved group")
	}

	b := a.second()
	for _, id := range ids {
		errIs(t, "heartbeat on the new coordinator", b.do(hbReq("g", id, gen)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
	}
	codes := commitCodes(b.do(commitReq("g", ids[1], gen, "t", map[int32]int64{0: 7})).(*kmsg.OffsetCommitResponse))
	errIs(t, "commit with the generation of the old coordinator", codes["t/0"], nil)
	d := b.describe("g")
	if d.State != "Stable" || len(d.Members) != 2 {
		t.Fatalf("described on the new coordinator: state %s, %d members", d.State, len(d.Members))
	}
	for _, m := range d.Members {
		if want := "assignment-of-" + m.MemberID; string(m.MemberAssignment) != want {
			t.Fatalf("member %s: assignment %q, want %q", m.MemberID, m.MemberAssignment, want)
		}
	}
	// A member that lost its SyncGroup answer gets its assignment again.
	sr := b.do(syncReq("g", ids[1], gen, nil)).(*kmsg.SyncGroupResponse)
	errIs(t, "sync on the new coordinator", sr.ErrorCode, nil)
	if string(sr.MemberAssignment) != "assignment-of-"+ids[1] {
		t.Fatalf("assignment from the new coordinator %q", sr.MemberAssignment)
	}
	// Only ids[1] keeps heartbeating; ids[0] died with the move.
	for range 3 {
		b.advance(4 * time.Second)
		code := b.do(hbReq("g", ids[1], gen)).(*kmsg.HeartbeatResponse).ErrorCode
		if code == kerr.RebalanceInProgress.Code {
			break
		}
		errIs(t, "heartbeat while the other member's session runs", code, nil)
	}
	b.waitFor("the silent member is expired and a rebalance starts", func(g *group) bool {
		return g.cl.members[ids[0]] == nil && g.cl.state != stateStable
	}, "g")
	errIs(t, "heartbeat after the expiry", b.do(hbReq("g", ids[1], gen)).(*kmsg.HeartbeatResponse).ErrorCode, kerr.RebalanceInProgress)
}

// Loading is done once however many requests for the group arrive
// together, and a failed load answers a retriable error instead of
// starting the group empty.
func TestGroupStateLoad(t *testing.T) {
	a := newHarness(t)
	ids, gen := a.stableGroup("g", 1)
	a.place.move("g", 2)
	a.do(hbReq("g", ids[0], gen))

	b := a.second()
	a.cat.mu.Lock()
	a.cat.stateErr = errBoom
	a.cat.mu.Unlock()
	errIs(t, "heartbeat while the catalog fails", b.do(hbReq("g", ids[0], gen)).(*kmsg.HeartbeatResponse).ErrorCode, kerr.CoordinatorNotAvailable)
	if b.c.numGroups() != 0 {
		t.Fatal("a failed load left a group in memory")
	}

	gate := make(chan struct{})
	a.cat.mu.Lock()
	a.cat.stateErr, a.cat.loadGate, a.cat.loads = nil, gate, 0
	a.cat.mu.Unlock()
	var chans []<-chan kmsg.Response
	for range 8 {
		chans = append(chans, b.async(hbReq("g", ids[0], gen)))
	}
	if !pending(chans[0]) {
		t.Fatal("a heartbeat was answered before the group was loaded")
	}
	close(gate)
	for _, ch := range chans {
		errIs(t, "heartbeat after the load", wait[*kmsg.HeartbeatResponse](t, ch).ErrorCode, nil)
	}
	a.cat.mu.Lock()
	loads := a.cat.loads
	a.cat.mu.Unlock()
	if loads != 1 {
		t.Fatalf("%d loads for concurrent requests, want 1", loads)
	}

	// A group without stored state is looked up once, not per request.
	for range 3 {
		commitCodes(b.do(commitReq("simple", "", -1, "t", map[int32]int64{0: 1})).(*kmsg.OffsetCommitResponse))
	}
	a.cat.mu.Lock()
	loads = a.cat.loads
	a.cat.mu.Unlock()
	if loads != 2 {
		t.Fatalf("%d loads after three requests for a group without state, want 2", loads)
	}
}

// The leader's SyncGroup is answered, and the others' too, only once the
// new state is stored; a failed write fails the SyncGroups into a new
// rebalance, as in Kafka.
func TestSyncWaitsForStateWrite(t *testing.T) {
	h := newHarness(t)
	ids, gen := h.stableGroup("g", 2)
	gate, _ := h.cat.holdSaves()
	// The leader rejoins: a rebalance to gen+1.
	rebalance := func() (<-chan kmsg.Response, <-chan kmsg.Response) {
		j0 := h.async(joinReq(9, "g", ids[0], "meta0"))
		h.waitFor("the leader's join starts a rebalance", func(g *group) bool { return g.cl.state == statePreparingRebalance }, "g")
		return j0, h.async(joinReq(9, "g", ids[1], "meta1"))
	}
	j0, j1 := rebalance()
	r0 := wait[*kmsg.JoinGroupResponse](t, j0)
	wait[*kmsg.JoinGroupResponse](t, j1)
	if r0.Generation != gen+1 {
		t.Fatalf("generation %d after the rebalance, want %d", r0.Generation, gen+1)
	}
	s1 := h.async(syncReq("g", ids[1], gen+1, nil))
	s0 := h.async(syncReq("g", r0.LeaderID, gen+1, map[string]string{ids[0]: "a0", ids[1]: "a1"}))
	if !pending(s0) || !pending(s1) {
		t.Fatal("a SyncGroup was answered before the state was stored")
	}
	close(gate)
	errIs(t, "leader sync", wait[*kmsg.SyncGroupResponse](t, s0).ErrorCode, nil)
	if r := wait[*kmsg.SyncGroupResponse](t, s1); r.ErrorCode != 0 || string(r.MemberAssignment) != "a1" {
		t.Fatalf("follower sync: %s %q", errName(r.ErrorCode), r.MemberAssignment)
	}
	s, _ := decodeClassic(h.cat.state("g").blob)
	if s == nil || s.generation != gen+1 || len(s.members) != 2 {
		t.Fatalf("stored state %+v, want generation %d with 2 members", s, gen+1)
	}

	// Now the write fails.
	h.cat.mu.Lock()
	h.cat.stateErr, h.cat.saveGate = errBoom, nil
	h.cat.mu.Unlock()
	j0, j1 = rebalance()
	r0 = wait[*kmsg.JoinGroupResponse](t, j0)
	wait[*kmsg.JoinGroupResponse](t, j1)
	s1 = h.async(syncReq("g", ids[1], gen+2, nil))
	lr := h.do(syncReq("g", r0.LeaderID, gen+2, map[string]string{ids[0]: "b0", ids[1]: "b1"})).(*kmsg.SyncGroupResponse)
	errIs(t, "leader sync when the write fails", lr.ErrorCode, kerr.RebalanceInProgress)
	errIs(t, "follower sync when the write fails", wait[*kmsg.SyncGroupResponse](t, s1).ErrorCode, kerr.RebalanceInProgress)
}

// Two coordinators that both believe they hold a group cannot overwrite
// each other: the one with the stale view gets a conflict at its next
// write and drops the group, answering NOT_COORDINATOR.
func TestGroupStateConflictDropsGroup(t *testing.T) {
	a := newHarness(t)
	ids, gen := a.stableGroup("g", 1)
	b := a.second()
	errIs(t, "heartbeat on B", b.do(hbReq("g", ids[0], gen)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
	// B completes a rebalance and stores it.
	r := b.do(joinReq(9, "g", ids[0], "changed")).(*kmsg.JoinGroupResponse)
	errIs(t, "rejoin on B", r.ErrorCode, nil)
	errIs(t, "sync on B", b.do(syncReq("g", ids[0], r.Generation, map[string]string{ids[0]: "x"})).(*kmsg.SyncGroupResponse).ErrorCode, nil)
	// A, which was never told, rebalances too: its write conflicts.
	r = a.do(joinReq(9, "g", ids[0], "changed-on-a")).(*kmsg.JoinGroupResponse)
	errIs(t, "rejoin on A", r.ErrorCode, nil)
	sr := a.do(syncReq("g", ids[0], r.Generation, map[string]string{ids[0]: "y"})).(*kmsg.SyncGroupResponse)
	errIs(t, "sync on A after B wrote", sr.ErrorCode, kerr.NotCoordinator)
	if a.c.numGroups() != 0 {
		t.Fatal("A kept its stale view of the group")
	}
	s, _ := decodeClassic(a.cat.state("g").blob)
	if s == nil || string(s.members[0].assignment) != "x" {
		t.Fatalf("A's write replaced B's: %+v", s)
	}
}

// A node that lost a group and got it back without noticing (the fleet
// view changed twice between its ownership checks) must not serve its old
// memory: after a view change it checks the stored version once and loads
// the group again when another coordinator wrote it meanwhile.
func TestRegainedGroupReloaded(t *testing.T) {
	a := newHarness(t)
	ids, gen := a.stableGroup("g", 2)
	b := a.second()
	// On B, a rebalance to gen+1 completes and is stored.
	j0 := b.async(joinReq(9, "g", ids[0], "changed"))
	b.waitFor("a rebalance on B", func(g *group) bool { return g.cl.state == statePreparingRebalance }, "g")
	j1 := b.async(joinReq(9, "g", ids[1], "meta1"))
	r0 := wait[*kmsg.JoinGroupResponse](t, j0)
	wait[*kmsg.JoinGroupResponse](t, j1)
	s1 := b.async(syncReq("g", ids[1], gen+1, nil))
	errIs(t, "leader sync on B", b.do(syncReq("g", r0.LeaderID, gen+1, map[string]string{ids[0]: "n0", ids[1]: "n1"})).(*kmsg.SyncGroupResponse).ErrorCode, nil)
	errIs(t, "follower sync on B", wait[*kmsg.SyncGroupResponse](t, s1).ErrorCode, nil)

	// The group is back on A, whose memory still says gen.
	a.place.viewChanged()
	errIs(t, "heartbeat of gen+1 on A", a.do(hbReq("g", ids[1], gen+1)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
	sr := a.do(syncReq("g", ids[1], gen+1, nil)).(*kmsg.SyncGroupResponse)
	if sr.ErrorCode != 0 || string(sr.MemberAssignment) != "n1" {
		t.Fatalf("sync on A after the regain: %s %q, want B's assignment", errName(sr.ErrorCode), sr.MemberAssignment)
	}
}

// While Placement fails (the agent's lease lapsed), a node coordinates
// nothing: told of the change, Run drops the groups in memory at once
// (waiting joins get NOT_COORDINATOR, and no session timer expires members
// whose heartbeats are refused), requests are refused, and the stored
// state is left as it was; when placement is back, the group is loaded
// from it.
func TestPlacementFailureDropsGroups(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.OwnershipCheckInterval = time.Hour })
	ids, gen := h.stableGroup("g", 2)
	j0 := h.async(joinReq(9, "g", ids[0], "changed"))
	h.waitFor("a rebalance", func(g *group) bool { return g.cl.state == statePreparingRebalance }, "g")

	h.place.mu.Lock()
	h.place.err = errBoom
	h.place.mu.Unlock()
	h.c.ViewChanged()
	errIs(t, "waiting join", wait[*kmsg.JoinGroupResponse](t, j0).ErrorCode, kerr.NotCoordinator)
	// The drop answers the group's waiters (kill) and then removes it
	// from memory: the join's answer can come first.
	for deadline := time.Now().Add(5 * time.Second); h.c.numGroups() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d groups in memory while placement fails", h.c.numGroups())
		}
	}
	errIs(t, "heartbeat", h.do(hbReq("g", ids[1], gen)).(*kmsg.HeartbeatResponse).ErrorCode, kerr.CoordinatorNotAvailable)
	errIs(t, "join", h.do(joinReq(9, "g", ids[1], "meta1")).(*kmsg.JoinGroupResponse).ErrorCode, kerr.CoordinatorNotAvailable)
	errIs(t, "sync", h.do(syncReq("g", ids[1], gen, nil)).(*kmsg.SyncGroupResponse).ErrorCode, kerr.CoordinatorNotAvailable)
	h.advance(time.Minute) // past every session timeout
	if s, err := decodeClassic(h.cat.state("g").blob); err != nil || len(s.members) != 2 || s.generation != gen {
		t.Fatalf("stored state after the failure: %+v %v", s, err)
	}

	h.place.mu.Lock()
	h.place.err = nil
	h.place.mu.Unlock()
	h.place.viewChanged()
	h.c.ViewChanged()
	for _, id := range ids {
		errIs(t, "heartbeat after placement is back", h.do(hbReq("g", id, gen)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
	}
}

// A group whose members all left has no stored state; an undecodable
// stored state (another Floe version, damage) starts the group empty with
// a warning, and the next write replaces it.
func TestGroupStateEmptyAndCorrupt(t *testing.T) {
	h := newHarness(t)
	ids, _ := h.stableGroup("g", 1)
	errIs(t, "leave", h.do(leaveReq("g", ids[0])).(*kmsg.LeaveGroupResponse).ErrorCode, nil)
	deadline := time.Now().Add(5 * time.Second)
	for h.cat.state("g").version != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the emptied group's state is still stored")
		}
		time.Sleep(time.Millisecond)
	}

	h.cat.mu.Lock()
	h.cat.lastVersion++
	h.cat.states["bad"] = fakeState{blob: []byte{9, 9, 9}, version: h.cat.lastVersion}
	h.cat.mu.Unlock()
	errIs(t, "heartbeat for a corrupt state", h.do(hbReq("bad", "m", 3)).(*kmsg.HeartbeatResponse).ErrorCode, kerr.UnknownMemberID)
	ids, gen := h.stableGroup("bad", 1)
	s, err := decodeClassic(h.cat.state("bad").blob)
	if err != nil || s.generation != gen || s.members[0].id != ids[0] {
		t.Fatalf("the corrupt state was not replaced: %+v, %v", s, err)
	}
}

// A static member replaced without a rebalance (KIP-345) is stored, so a
// coordinator move does not fence the new member id.
func TestStaticReplacementStored(t *testing.T) {
	h := newHarness(t)
	r := h.do(staticJoin("")).(*kmsg.JoinGroupResponse)
	errIs(t, "join", r.ErrorCode, nil)
	errIs(t, "sync", h.do(syncReq("g", r.MemberID, r.Generation, map[string]string{r.MemberID: "a"})).(*kmsg.SyncGroupResponse).ErrorCode, nil)
	r2 := h.do(staticJoin("")).(*kmsg.JoinGroupResponse) // the instance restarted
	errIs(t, "rejoin", r2.ErrorCode, nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, _ := decodeClassic(h.cat.state("g").blob)
		if s != nil && len(s.members) == 1 && s.members[0].id == r2.MemberID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replaced static member is not stored: %+v", s)
		}
		time.Sleep(time.Millisecond)
	}
	h.place.move("g", 2)
	h.do(hbReq("g", r2.MemberID, r2.Generation))
	b := h.second()
	hb := hbReq("g", r2.MemberID, r2.Generation)
	hb.InstanceID = kmsg.StringPtr("inst")
	errIs(t, "heartbeat of the new static member on the new coordinator", b.do(hb).(*kmsg.HeartbeatResponse).ErrorCode, nil)
}

// TestStateRoundTrip: what is encoded decodes to the same group.
func TestStateRoundTrip(t *testing.T) {
	h := newHarness(t)
	ids, _ := h.stableGroup("g", 3)
	g, _ := h.c.lockGroup("g", false, kindClassic)
	blob := encodeClassic(&g.cl)
	want := g.cl
	g.mu.Unlock()
	s, err := decodeClassic(blob)
	if err != nil {
		t.Fatal(err)
	}
	if s.generation != want.generation || s.leader != want.leader || s.protocol != want.protocol || len(s.members) != len(ids) {
		t.Fatalf("decoded %+v", s)
	}
	for _, m := range s.members {
		w := want.members[m.id]
		if w == nil || !bytes.Equal(m.assignment, w.assignment) || m.sessionTimeout != w.sessionTimeout || m.seq != w.seq || !w.sameProtocols(m.protocols) {
			t.Fatalf("member %s decoded as %+v", m.id, m)
		}
	}
	for i := range blob {
		if _, err := decodeClassic(blob[:i]); err == nil {
			t.Fatalf("a blob cut at %d of %d bytes decoded", i, len(blob))
		}
	}
}

// FuzzDecodeState: a stored state read back from the catalog may be
// anything; decoding never panics, and what decodes encodes back to a
// state that decodes the same.
func FuzzDecodeState(f *testing.F) {
	cl := classicGroup{}
	cl.init()
	cl.generation, cl.protocolType, cl.protocol, cl.leader, cl.seq = 3, "consumer", "range", "m1", 2
	cl.members["m1"] = &classicMember{id: "m1", sessionTimeout: time.Second, rebalanceTimeout: time.Second, seq: 1,
		protocols: []protocol{{"range", []byte("x")}}, assignment: []byte("a")}
	cl.members["m2"] = &classicMember{id: "m2", instanceID: kmsg.StringPtr("i"), sessionTimeout: time.Second, rebalanceTimeout: time.Second, seq: 2,
		protocols: []protocol{{"range", nil}, {"rr", []byte("y")}}}
	f.Add(encodeClassic(&cl))
	cg := consumerGroup{}
	cg.init()
	cg.epoch, cg.assignmentEpoch, cg.assignor, cg.subsHash = 4, 3, "uniform", 77
	tp := func(p int32) topicPartition { return topicPartition{id: catalog.TopicID{1, 2}, p: p} }
	cg.members["a"] = &consumerMember{id: "a", epoch: 3, prevEpoch: 2, names: []string{"t"}, assigned: tpSet{tp(0): {}}, revoking: tpSet{tp(1): {}}, state: memberUnrevoked, rebalance: time.Second}
	cg.members["b"] = &consumerMember{id: "b", instanceID: kmsg.StringPtr("i"), rackID: kmsg.StringPtr("r"), epoch: 3, regex: "t.*", assigned: tpSet{}, left: true}
	cg.target["a"] = tpSet{tp(0): {}}
	cg.target["b"] = tpSet{tp(1): {}}
	f.Add(encodeConsumer(&cg))
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, blob []byte) {
		kind, s, cs, err := decodeState(blob)
		if err != nil {
			return
		}
		if kind == kindConsumer {
			back := consumerGroup{}
			back.init()
			back.epoch, back.assignmentEpoch, back.assignor, back.subsHash, back.target = cs.epoch, cs.assignmentEpoch, cs.assignor, cs.subsHash, cs.target
			for _, m := range cs.members {
				back.members[m.id] = m
			}
			enc := encodeConsumer(&back)
			cs2, err := decodeConsumer(enc)
			if err != nil {
				t.Fatalf("re-encoded state does not decode: %v", err)
			}
			if !bytes.Equal(encodeConsumer(&back), enc) || len(cs2.members) != len(cs.members) {
				t.Fatalf("round trip changed the state")
			}
			return
		}
		back := classicGroup{}
		back.init()
		back.generation, back.protocolType, back.protocol, back.leader, back.seq = s.generation, s.protocolType, s.protocol, s.leader, s.seq
		for _, m := range s.members {
			back.members[m.id] = &classicMember{id: m.id, instanceID: m.instanceID, clientID: m.clientID, clientHost: m.clientHost,
				sessionTimeout: m.sessionTimeout, rebalanceTimeout: m.rebalanceTimeout, seq: m.seq, protocols: m.protocols, assignment: m.assignment}
		}
		s2, err := decodeClassic(encodeClassic(&back))
		if err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
		if fmt.Sprint(len(s2.members), s2.generation, s2.leader) != fmt.Sprint(len(s.members), s.generation, s.leader) {
			t.Fatalf("round trip changed the state")
		}
	})
}

// A KIP-848 group moves the same way: its members heartbeat to the new
// coordinator with their epochs and keep their partitions; a move in the
// middle of a revocation finishes it there without a partition ever owned
// twice; a member that never comes back is removed after its session and
// its partitions go to the others.
func TestConsumerGroupSurvivesCoordinatorMove(t *testing.T) {
	a := newHarness(t)
	topic := a.cat.addTopic("t", 6)
	m1, m2 := a.member("g", "m1", "t"), a.member("g", "m2", "t")
	settle(t, m1, m2)
	if a.cat.state("g").version == 0 {
		t.Fatal("the settled group stored no state")
	}
	epoch, owned1, owned2 := m1.epoch, m1.ownedOf(topic), m2.ownedOf(topic)

	a.place.move("g", 2)
	m1.beat()
	errIs(t, "heartbeat on the old coordinator", m1.lastCode, kerr.NotCoordinator)
	b := a.second()
	m1.h, m2.h = b, b
	for _, m := range []*cmember{m1, m2} {
		m.beat()
		errIs(t, "heartbeat on the new coordinator", m.lastCode, nil)
	}
	if m1.epoch != epoch || !slices.Equal(m1.ownedOf(topic), owned1) || !slices.Equal(m2.ownedOf(topic), owned2) {
		t.Fatalf("after the move: epoch %d (was %d), owned %v/%v (were %v/%v)", m1.epoch, epoch, m1.ownedOf(topic), m2.ownedOf(topic), owned1, owned2)
	}
	if d := b.consumerDescribe("g"); d.State != "Stable" || d.Epoch != epoch {
		t.Fatalf("described on the new coordinator: %s epoch %d", d.State, d.Epoch)
	}
	r := commitReq("g", "m1", epoch, "t", map[int32]int64{owned1[0]: 9})
	errIs(t, "commit with the epoch of the old coordinator", commitCodes(b.do(r).(*kmsg.OffsetCommitResponse))[fmt.Sprintf("t/%d", owned1[0])], nil)

	// A third member joins; m1 is told to revoke, then the group moves
	// again before m2 even heard of the new epoch.
	m3 := b.member("g", "m3", "t")
	m3.beat()
	m1.beat()
	b.place.move("g", 2)
	m2.beat()
	c := b.second()
	m1.h, m2.h, m3.h = c, c, c
	settle(t, m1, m2, m3)
	noOverlap(t, m1, m2, m3)
	if n := len(m1.owned) + len(m2.owned) + len(m3.owned); n != 6 || len(m3.owned) == 0 {
		t.Fatalf("after the second move: %d partitions owned, m3 owns %d", n, len(m3.owned))
	}

	// m3 goes silent: removed after its session; the others take over.
	for range 6 {
		c.advance(10 * time.Second)
		m1.beat()
		m2.beat()
	}
	settle(t, m1, m2)
	if n := len(m1.owned) + len(m2.owned); n != 6 {
		t.Fatalf("after m3's session ended: %d partitions owned, want 6", n)
	}
}

// TestConsumerRegexSurvivesCoordinatorMove: a member subscribed by regex
// keeps its subscription on the coordinator that loads the group: the
// regex still matches whole topic names only (the stored one was compiled
// unanchored, so "foo-.*" took xfoo-1 too).
func TestConsumerRegexSurvivesCoordinatorMove(t *testing.T) {
	a := newHarness(t)
	a.cat.addTopic("foo-1", 2)
	a.cat.addTopic("xfoo-1", 2)
	re := "foo-.*"
	m := a.member("g", "m")
	m.names, m.regex = nil, &re
	settle(t, m)
	if len(m.owned) != 2 {
		t.Fatalf("before the move: owns %d partitions, want foo-1's 2", len(m.owned))
	}
	a.place.move("g", 2)
	m.h = a.second()
	settle(t, m)
	if len(m.owned) != 2 {
		t.Fatalf("after the move: owns %d partitions, want foo-1's 2", len(m.owned))
	}
}

// TestGroupStateConcurrency runs members' requests, view changes and
// moves between two coordinators at once (for -race and for deadlocks):
// every request is answered, and the group ends up consistent on the
// coordinator that holds it.
func TestGroupStateConcurrency(t *testing.T) {
	a := newHarness(t)
	a.cat.addTopic("t", 4)
	ids, gen := a.stableGroup("g", 3)
	b := a.second()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, h := range []*harness{a, b} {
		for _, id := range ids {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					h.c.Handle(context.Background(), "client", "h", hbReq("g", id, gen))
					h.c.Handle(context.Background(), "client", "h", commitReq("g", id, gen, "t", map[int32]int64{0: 1}))
				}
			})
		}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				h.place.viewChanged()
				time.Sleep(time.Millisecond)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	a.place.move("g", 2)
	for _, id := range ids {
		errIs(t, "heartbeat after the churn", b.do(hbReq("g", id, gen)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
	}
}

// A coordinator that does not know it lost a group (paused past its TTL,
// its view not refreshed yet) must not change the stored state of the
// group once another coordinator loaded it, even if that one has not
// written since: its timers expire the members that moved away, and the
// emptied group's delete would otherwise remove the state the new
// coordinator serves (the next move would start the group empty).
func TestStaleCoordinatorFencedByLoad(t *testing.T) {
	a := newHarness(t)
	ids, gen := a.stableGroup("g", 2)
	b := a.second()
	for _, id := range ids {
		errIs(t, "heartbeat on B", b.do(hbReq("g", id, gen)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
	}
	// A's clock passes every session: its members are expired, the group
	// empties and A stores that.
	a.advance(time.Hour)
	a.c.saves.Wait()
	if a.cat.state("g").version == 0 {
		t.Fatal("the stale coordinator deleted the state of the group another coordinator serves")
	}
	// The group moves on from B: its members keep their generation.
	c := a.second()
	for _, id := range ids {
		errIs(t, "heartbeat on the next coordinator", c.do(hbReq("g", id, gen)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
	}
}

// A KIP-848 change answered while the catalog failed is stored once the
// catalog is back, even if the group then changes no more: otherwise the
// stored state stays behind what members were told, and after a move the
// new coordinator fences every member (their epochs are newer than the
// stored ones) and they lose their partitions.
func TestConsumerStateStoredAfterFailedWrite(t *testing.T) {
	a := newHarness(t)
	topic := a.cat.addTopic("t", 6)
	m1 := a.member("g", "m1", "t")
	settle(t, m1)
	a.cat.mu.Lock()
	a.cat.stateErr = errBoom
	a.cat.mu.Unlock()
	m2 := a.member("g", "m2", "t")
	settle(t, m1, m2)
	a.cat.mu.Lock()
	a.cat.stateErr = nil
	a.cat.mu.Unlock()
	// The catalog is back; the members heartbeat on, nothing changes.
	for range 2 {
		a.advance(5 * time.Second)
		settle(t, m1, m2)
	}
	epoch, owned1, owned2 := m1.epoch, m1.ownedOf(topic), m2.ownedOf(topic)

	a.place.move("g", 2)
	m1.beat()
	b := a.second()
	m1.h, m2.h = b, b
	for _, m := range []*cmember{m1, m2} {
		m.beat()
		errIs(t, "heartbeat of "+m.id+" on the new coordinator", m.lastCode, nil)
	}
	if m1.epoch != epoch || !slices.Equal(m1.ownedOf(topic), owned1) || !slices.Equal(m2.ownedOf(topic), owned2) {
		t.Fatalf("after the move: epoch %d (was %d), owned %v/%v (were %v/%v)", m1.epoch, epoch, m1.ownedOf(topic), m2.ownedOf(topic), owned1, owned2)
	}
}

// A KIP-848 heartbeat whose write conflicts is answered NOT_COORDINATOR
// even when the group was dropped meanwhile (it moved): the change it
// made is not stored, and a member told of it would be fenced by the new
// coordinator for an epoch it never stored.
func TestConsumerConflictAfterDropNotAnswered(t *testing.T) {
	a := newHarness(t)
	a.cat.addTopic("t", 6)
	m1 := a.member("g", "m1", "t")
	settle(t, m1)
	gate := make(chan struct{})
	a.cat.mu.Lock()
	a.cat.saveGate, a.cat.saves = gate, 0
	a.cat.mu.Unlock()
	m2 := a.member("g", "m2", "t")
	ch := a.async(m2.request())
	for {
		a.cat.mu.Lock()
		n := a.cat.saves
		a.cat.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// Another coordinator writes the group, and it moves there.
	a.cat.mu.Lock()
	a.cat.lastVersion++
	s := a.cat.states["g"]
	s.version = a.cat.lastVersion
	a.cat.states["g"] = s
	a.cat.saveGate = nil
	a.cat.mu.Unlock()
	a.place.move("g", 2)
	m1.beat()
	errIs(t, "heartbeat after the move", m1.lastCode, kerr.NotCoordinator)
	close(gate)
	errIs(t, "the joining member's heartbeat", wait[*kmsg.ConsumerGroupHeartbeatResponse](t, ch).ErrorCode, kerr.NotCoordinator)
}

// A static member replaced without a rebalance (KIP-345) while the
// catalog failed is stored once it is back: the JoinGroup was answered
// before the write, and a stored state naming the old member id would
// have the new coordinator fence the instance after a move
// (FENCED_INSTANCE_ID, which clients treat as fatal).
func TestStaticReplacementStoredAfterFailedWrite(t *testing.T) {
	h := newHarness(t)
	r := h.do(staticJoin("")).(*kmsg.JoinGroupResponse)
	errIs(t, "join", r.ErrorCode, nil)
	errIs(t, "sync", h.do(syncReq("g", r.MemberID, r.Generation, map[string]string{r.MemberID: "a"})).(*kmsg.SyncGroupResponse).ErrorCode, nil)
	h.cat.mu.Lock()
	h.cat.stateErr = errBoom
	h.cat.mu.Unlock()
	r2 := h.do(staticJoin("")).(*kmsg.JoinGroupResponse) // the instance restarted
	errIs(t, "rejoin", r2.ErrorCode, nil)
	h.c.saves.Wait()
	h.cat.mu.Lock()
	h.cat.stateErr = nil
	h.cat.mu.Unlock()
	hb := hbReq("g", r2.MemberID, r2.Generation)
	hb.InstanceID = kmsg.StringPtr("inst")
	// The member heartbeats on for a while; nothing else happens.
	for range 6 {
		h.advance(5 * time.Second)
		errIs(t, "heartbeat", h.do(hb).(*kmsg.HeartbeatResponse).ErrorCode, nil)
		h.c.saves.Wait()
	}
	h.place.move("g", 2)
	h.do(hb)
	b := h.second()
	errIs(t, "heartbeat of the new static member on the new coordinator", b.do(hb).(*kmsg.HeartbeatResponse).ErrorCode, nil)
}

// staticJoin is a JoinGroup to group g of the static member "inst".
func staticJoin(member string) *kmsg.JoinGroupRequest {
	r := joinReq(9, "g", member, "m")
	r.InstanceID = kmsg.StringPtr("inst")
	return r
}

// A group whose last member leaves while an earlier state write is still
// in flight queues the write that deletes its stored state behind it. If
// the group moves to another coordinator before that write runs, the
// write still runs: skipped, the stored state kept the member that left,
// and the next coordinator waited a session timeout for it before the
// group could form again.
func TestEmptiedGroupStoredAfterMove(t *testing.T) {
	h := newHarness(t)
	ids, _ := h.stableGroup("g", 1)
	gate, saves := h.cat.holdSaves()
	// A rejoin forms a new generation, whose write waits at the gate.
	r := h.do(joinReq(9, "g", ids[0], "changed")).(*kmsg.JoinGroupResponse)
	errIs(t, "rejoin", r.ErrorCode, nil)
	sync := h.async(syncReq("g", ids[0], r.Generation, map[string]string{ids[0]: "a"}))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		h.cat.mu.Lock()
		n := h.cat.saves
		h.cat.mu.Unlock()
		if n > saves {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new generation's write never started")
		}
	}
	// The member leaves: the group is empty, its deletion queued.
	errIs(t, "leave", h.do(leaveReq("g", ids[0])).(*kmsg.LeaveGroupResponse).ErrorCode, nil)
	// The fleet changes and the group moves before either write ends.
	h.place.move("g", 2)
	h.c.dropMovedGroups(context.Background())
	close(gate)
	<-sync
	for deadline := time.Now().Add(10 * time.Second); h.cat.state("g").blob != nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			s, _ := decodeClassic(h.cat.state("g").blob)
			t.Fatalf("stored state after the group emptied and moved: %+v, want none", s)
		}
	}
}

// A dropped group's failed write is not tried again at once: nothing of
// a dropped group waits before the next try, so a failing catalog got the
// same write again and again, as fast as it answered, for as long as it
// failed (tens of thousands of deletes in 200 ms on the fake).
func TestDroppedGroupWriteNotRetriedAtOnce(t *testing.T) {
	h := newHarness(t)
	ids, _ := h.stableGroup("g", 1)
	g, _ := h.c.lockGroup("g", false, kindClassic)
	g.mu.Unlock()
	h.cat.mu.Lock()
	h.cat.stateErr = errBoom
	h.cat.mu.Unlock()
	errIs(t, "leave", h.do(leaveReq("g", ids[0])).(*kmsg.LeaveGroupResponse).ErrorCode, nil)
	h.place.move("g", 2)
	h.c.dropMovedGroups(context.Background())
	// The emptied group's write is due again (an earlier one failed) as
	// the group is dropped.
	g.mu.Lock()
	g.retryAt = h.clock.Now().Add(-time.Second)
	h.c.queueSave(g)
	g.mu.Unlock()
	time.Sleep(200 * time.Millisecond)
	h.cat.mu.Lock()
	n := h.cat.deletes
	h.cat.mu.Unlock()
	if n > 3 {
		t.Fatalf("%d deletes of a dropped group's state against a failing catalog, want a few", n)
	}
}
