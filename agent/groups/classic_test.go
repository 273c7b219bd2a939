package groups

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestClassicSingleMemberLifecycle(t *testing.T) {
	h := newHarness(t)
	id, ch := h.joinNew("g", "meta")
	jr := wait[*kmsg.JoinGroupResponse](t, ch)
	errIs(t, "join", jr.ErrorCode, nil)
	if jr.Generation != 1 || jr.LeaderID != id || jr.MemberID != id || len(jr.Members) != 1 ||
		string(jr.Members[0].ProtocolMetadata) != "meta" || *jr.Protocol != "range" || *jr.ProtocolType != "consumer" {
		t.Fatalf("join response: %+v", jr)
	}
	sr := h.do(syncReq("g", id, 1, map[string]string{id: "mine"})).(*kmsg.SyncGroupResponse)
	errIs(t, "sync", sr.ErrorCode, nil)
	if string(sr.MemberAssignment) != "mine" || *sr.Protocol != "range" {
		t.Fatalf("sync response: %+v", sr)
	}

	for _, tc := range []struct {
		name   string
		member string
		gen    int32
		want   *kerr.Error
	}{
		{"current", id, 1, nil},
		{"stale generation", id, 0, kerr.IllegalGeneration},
		{"future generation", id, 2, kerr.IllegalGeneration},
		{"unknown member", "nobody", 1, kerr.UnknownMemberID},
	} {
		t.Run("heartbeat "+tc.name, func(t *testing.T) {
			r := h.do(hbReq("g", tc.member, tc.gen)).(*kmsg.HeartbeatResponse)
			errIs(t, "heartbeat", r.ErrorCode, tc.want)
		})
	}

	d := h.describe("g")
	if d.State != "Stable" || d.Protocol != "range" || len(d.Members) != 1 || string(d.Members[0].MemberAssignment) != "mine" {
		t.Fatalf("describe: %+v", d)
	}

	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version, lr.Group = 5, "g"
	lr.Members = []kmsg.LeaveGroupRequestMember{{MemberID: id}}
	resp := h.do(lr).(*kmsg.LeaveGroupResponse)
	errIs(t, "leave", resp.ErrorCode, nil)
	errIs(t, "leave member", resp.Members[0].ErrorCode, nil)
	if d := h.describe("g"); d.State != "Empty" || len(d.Members) != 0 || d.ProtocolType != "consumer" {
		t.Fatalf("describe after leave: %+v", d)
	}
	r := h.do(hbReq("g", id, 1)).(*kmsg.HeartbeatResponse)
	errIs(t, "heartbeat after leave", r.ErrorCode, kerr.UnknownMemberID)
}

func (h *harness) describe(group string) kmsg.DescribeGroupsResponseGroup {
	h.t.Helper()
	r := kmsg.NewPtrDescribeGroupsRequest()
	r.Version = 6
	r.Groups = []string{group}
	return h.do(r).(*kmsg.DescribeGroupsResponse).Groups[0]
}

// TestClassicJoinVersions joins at every version, checking that versions
// before 4 join at once and that each response encodes at its version.
func TestClassicJoinVersions(t *testing.T) {
	h := newHarness(t)
	for v := int16(0); v <= 9; v++ {
		group := "g" + string(rune('0'+v))
		r := h.do(joinReq(v, group, "", "m")).(*kmsg.JoinGroupResponse)
		if v >= 4 {
			errIs(t, "first join", r.ErrorCode, kerr.MemberIDRequired)
			r = h.do(joinReq(v, group, r.MemberID, "m")).(*kmsg.JoinGroupResponse)
		}
		errIs(t, "join", r.ErrorCode, nil)
		if r.Generation != 1 || r.LeaderID != r.MemberID {
			t.Fatalf("v%d: %+v", v, r)
		}
		var back kmsg.JoinGroupResponse
		back.Version = v
		if err := back.ReadFrom(r.AppendTo(nil)); err != nil || back.MemberID != r.MemberID {
			t.Fatalf("v%d: response does not round trip: %v", v, err)
		}
	}
}

func TestClassicRebalanceThreeMembers(t *testing.T) {
	h := newHarness(t)
	ids, gen := h.stableGroup("g", 3)
	d := h.describe("g")
	if d.State != "Stable" || len(d.Members) != 3 {
		t.Fatalf("describe: %+v", d)
	}
	for _, m := range d.Members {
		if string(m.MemberAssignment) != "assignment-of-"+m.MemberID {
			t.Fatalf("member %s has assignment %q", m.MemberID, m.MemberAssignment)
		}
	}

	// A fourth member: the others learn from their heartbeats and rejoin.
	newID, newJoin := h.joinNew("g", "meta3")
	if !pending(newJoin) {
		t.Fatal("the new member's join did not wait for the others")
	}
	var joins []<-chan kmsg.Response
	for _, id := range ids {
		r := h.do(hbReq("g", id, gen)).(*kmsg.HeartbeatResponse)
		errIs(t, "heartbeat", r.ErrorCode, kerr.RebalanceInProgress)
		joins = append(joins, h.async(joinReq(9, "g", id, "meta")))
	}
	joins = append(joins, newJoin)
	var leaders int
	for _, ch := range joins {
		r := wait[*kmsg.JoinGroupResponse](t, ch)
		errIs(t, "rejoin", r.ErrorCode, nil)
		if r.Generation != gen+1 {
			t.Fatalf("generation %d, want %d", r.Generation, gen+1)
		}
		if r.LeaderID != ids[0] {
			t.Fatalf("leader changed to %s, want %s", r.LeaderID, ids[0])
		}
		if r.MemberID == r.LeaderID {
			leaders++
			if len(r.Members) != 4 {
				t.Fatalf("leader got %d members", len(r.Members))
			}
		} else if len(r.Members) != 0 {
			t.Fatalf("follower got the member list")
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders", leaders)
	}
	// Followers wait for the leader's assignment.
	follower := h.async(syncReq("g", newID, gen+1, nil))
	if !pending(follower) {
		t.Fatal("follower sync did not wait for the leader")
	}
	lr := h.do(syncReq("g", ids[0], gen+1, map[string]string{newID: "yours"})).(*kmsg.SyncGroupResponse)
	errIs(t, "leader sync", lr.ErrorCode, nil)
	if fr := wait[*kmsg.SyncGroupResponse](t, follower); string(fr.MemberAssignment) != "yours" {
		t.Fatalf("follower assignment %q", fr.MemberAssignment)
	}
	// A member the leader left out gets an empty assignment.
	sr := h.do(syncReq("g", ids[1], gen+1, nil)).(*kmsg.SyncGroupResponse)
	errIs(t, "late sync", sr.ErrorCode, nil)
	if len(sr.MemberAssignment) != 0 {
		t.Fatalf("omitted member got %q", sr.MemberAssignment)
	}
}

func TestClassicStaticMemberRejoin(t *testing.T) {
	for _, v := range []int16{5, 9} {
		t.Run("v"+string(rune('0'+v)), func(t *testing.T) {
			h := newHarness(t)
			join := joinReq(v, "g", "", "meta")
			join.InstanceID = kmsg.StringPtr("inst-a")
			r := h.do(join).(*kmsg.JoinGroupResponse)
			errIs(t, "static join", r.ErrorCode, nil) // static members skip MEMBER_ID_REQUIRED
			old := r.MemberID
			if !strings.HasPrefix(old, "inst-a-") || r.LeaderID != old {
				t.Fatalf("join: %+v", r)
			}
			errIs(t, "sync", h.do(syncReq("g", old, 1, map[string]string{old: "a's"})).(*kmsg.SyncGroupResponse).ErrorCode, nil)

			// The process restarts: same instance id, no member id.
			r = h.do(join).(*kmsg.JoinGroupResponse)
			errIs(t, "rejoin", r.ErrorCode, nil)
			if r.Generation != 1 || r.MemberID == old || !strings.HasPrefix(r.MemberID, "inst-a-") {
				t.Fatalf("rejoin: %+v", r)
			}
			if v >= 9 && (r.LeaderID != r.MemberID || !r.SkipAssignment || len(r.Members) != 1) {
				t.Fatalf("v9 leader rejoin must lead without assigning: %+v", r)
			}
			if v < 9 && r.LeaderID != old {
				t.Fatalf("pre-v9 leader rejoin must be told the old leader: %+v", r)
			}
			newID := r.MemberID
			if d := h.describe("g"); d.State != "Stable" {
				t.Fatalf("static rejoin rebalanced: %+v", d)
			}
			hb := hbReq("g", old, 1)
			hb.InstanceID = kmsg.StringPtr("inst-a")
			errIs(t, "old id heartbeat", h.do(hb).(*kmsg.HeartbeatResponse).ErrorCode, kerr.FencedInstanceID)
			errIs(t, "old id heartbeat without instance", h.do(hbReq("g", old, 1)).(*kmsg.HeartbeatResponse).ErrorCode, kerr.UnknownMemberID)
			sr := h.do(syncReq("g", newID, 1, nil)).(*kmsg.SyncGroupResponse)
			errIs(t, "new id sync", sr.ErrorCode, nil)
			if string(sr.MemberAssignment) != "a's" {
				t.Fatalf("the new id did not inherit the assignment: %q", sr.MemberAssignment)
			}
		})
	}
}

// TestClassicCommitRefreshesSession: a member's offset commit counts as its
// heartbeat, as in Kafka.
func TestClassicCommitRefreshesSession(t *testing.T) {
	h := newHarness(t)
	h.cat.addTopic("t", 1)
	ids, gen := h.stableGroup("g", 1)
	h.advance(6 * time.Second)
	r := h.do(commitReq("g", ids[0], gen, "t", map[int32]int64{0: 1})).(*kmsg.OffsetCommitResponse)
	errIs(t, "commit", r.Topics[0].Partitions[0].ErrorCode, nil)
	h.advance(6 * time.Second) // 12 s since the last heartbeat, 6 s since the commit; session 10 s
	if d := h.describe("g"); len(d.Members) != 1 {
		t.Fatalf("the committing member expired: %+v", d)
	}
	errIs(t, "heartbeat", h.do(hbReq("g", ids[0], gen)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
}

// TestHeartbeatWhileJoining: while this agent's join settles, a heartbeat
// for a group placed here is answered without error, as Kafka's
// coordinator answers while it loads a group; other requests get
// COORDINATOR_LOAD_IN_PROGRESS.
func TestHeartbeatWhileJoining(t *testing.T) {
	h := newHarness(t)
	ids, gen := h.stableGroup("g", 1)
	h.place.mu.Lock()
	h.place.err = ErrJoining
	h.place.mu.Unlock()
	errIs(t, "heartbeat", h.do(hbReq("g", ids[0], gen)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
	errIs(t, "join", h.do(joinReq(9, "g", ids[0], "meta")).(*kmsg.JoinGroupResponse).ErrorCode, kerr.CoordinatorLoadInProgress)
}

// TestSyncWhileJoining: a SyncGroup that finds the group's coordinator
// settling its join, or the group being deleted, gets
// REBALANCE_IN_PROGRESS, as Kafka answers while it loads a group: the
// member rejoins. The Java consumer's SyncGroup handler takes
// COORDINATOR_LOAD_IN_PROGRESS for a fatal error.
func TestSyncWhileJoining(t *testing.T) {
	h := newHarness(t)
	id, join := h.joinNew("g", "meta")
	r := wait[*kmsg.JoinGroupResponse](t, join)
	errIs(t, "join", r.ErrorCode, nil)
	sync := syncReq("g", id, r.Generation, map[string]string{id: "a"})
	h.place.mu.Lock()
	h.place.err = ErrJoining
	h.place.mu.Unlock()
	errIs(t, "sync while the join settles", h.do(sync).(*kmsg.SyncGroupResponse).ErrorCode, kerr.RebalanceInProgress)
	h.place.mu.Lock()
	h.place.err = nil
	h.place.mu.Unlock()
	done := h.c.markDeleting("g")
	errIs(t, "sync during DeleteGroups", h.do(sync).(*kmsg.SyncGroupResponse).ErrorCode, kerr.RebalanceInProgress)
	done()
	errIs(t, "sync", h.do(sync).(*kmsg.SyncGroupResponse).ErrorCode, nil)
}

func TestClassicSessionExpiry(t *testing.T) {
	h := newHarness(t)
	ids, gen := h.stableGroup("g", 2)
	h.advance(6 * time.Second)
	errIs(t, "heartbeat", h.do(hbReq("g", ids[0], gen)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
	h.advance(5 * time.Second) // ids[1] last heard of 11s ago, session 10s
	if d := h.describe("g"); len(d.Members) != 1 || d.Members[0].MemberID != ids[0] {
		t.Fatalf("expired member still there: %+v", d)
	}
	errIs(t, "heartbeat", h.do(hbReq("g", ids[0], gen)).(*kmsg.HeartbeatResponse).ErrorCode, kerr.RebalanceInProgress)
	errIs(t, "expired heartbeat", h.do(hbReq("g", ids[1], gen)).(*kmsg.HeartbeatResponse).ErrorCode, kerr.UnknownMemberID)
	r := h.do(joinReq(9, "g", ids[0], "meta")).(*kmsg.JoinGroupResponse)
	errIs(t, "rejoin", r.ErrorCode, nil)
	if r.Generation != gen+1 || len(r.Members) != 1 {
		t.Fatalf("rejoin: %+v", r)
	}
}

func TestClassicRebalanceTimeoutRemovesLaggards(t *testing.T) {
	h := newHarness(t)
	ids, gen := h.stableGroup("g", 2)
	_, newJoin := h.joinNew("g", "meta2")
	h.waitFor("rebalance", func(g *group) bool { return g.cl.state == statePreparingRebalance }, "g")
	first := h.async(joinReq(9, "g", ids[0], "meta"))
	h.waitFor("rejoin", func(g *group) bool { return g.cl.members[ids[0]].joinWait != nil }, "g")
	// ids[1] never rejoins; its session (10s) ends before the rebalance
	// timeout (20s) and the join completes without it.
	h.advance(11 * time.Second)
	for _, ch := range []<-chan kmsg.Response{first, newJoin} {
		r := wait[*kmsg.JoinGroupResponse](t, ch)
		errIs(t, "join", r.ErrorCode, nil)
		if r.Generation != gen+1 {
			t.Fatalf("generation %d", r.Generation)
		}
	}
	if d := h.describe("g"); len(d.Members) != 2 || d.State != "CompletingRebalance" {
		t.Fatalf("describe: %+v", d)
	}
}

func TestClassicSyncTimeout(t *testing.T) {
	h := newHarness(t)
	ids, gen := h.stableGroup("g", 2)
	errIs(t, "heartbeat", h.do(hbReq("g", ids[1], gen)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
	// Leave-and-rejoin by the follower starts a rebalance both complete.
	a := h.async(joinReq(9, "g", ids[0], "meta"))
	b := h.async(joinReq(9, "g", ids[1], "other"))
	ra, rb := wait[*kmsg.JoinGroupResponse](t, a), wait[*kmsg.JoinGroupResponse](t, b)
	errIs(t, "join a", ra.ErrorCode, nil)
	errIs(t, "join b", rb.ErrorCode, nil)
	follower := h.async(syncReq("g", ids[1], gen+1, nil))
	h.waitFor("follower sync", func(g *group) bool { return g.cl.members[ids[1]].syncWait != nil }, "g")
	// The leader never syncs: after the rebalance timeout it is removed
	// and the waiting follower is told to rejoin.
	h.advance(21 * time.Second)
	fr := wait[*kmsg.SyncGroupResponse](t, follower)
	errIs(t, "follower sync", fr.ErrorCode, kerr.RebalanceInProgress)
	if d := h.describe("g"); len(d.Members) != 1 || d.Members[0].MemberID != ids[1] {
		t.Fatalf("describe: %+v", d)
	}
}

func TestClassicInitialRebalanceDelay(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.InitialRebalanceDelay = 3 * time.Second })
	a := h.async(joinReq(3, "g", "", "a"))
	h.waitFor("first member", func(g *group) bool { return len(g.cl.members) == 1 }, "g")
	b := h.async(joinReq(3, "g", "", "b"))
	h.waitFor("second member", func(g *group) bool { return len(g.cl.members) == 2 }, "g")
	if !pending(a) || !pending(b) {
		t.Fatal("joins completed before the initial delay")
	}
	h.advance(3 * time.Second)
	ra, rb := wait[*kmsg.JoinGroupResponse](t, a), wait[*kmsg.JoinGroupResponse](t, b)
	if ra.Generation != 1 || rb.Generation != 1 || ra.LeaderID != rb.LeaderID {
		t.Fatalf("joins: %+v %+v", ra, rb)
	}
}

// TestClassicInitialDelayPassesWithPendingMember: an empty group's first
// join phase still waits, after its initial rebalance delay, for a member
// told MEMBER_ID_REQUIRED: it ends when that member rejoins, or when its
// time to rejoin runs out. Meanwhile the delay, passed, must not stay the
// group's next deadline: the timer loop would wake for it again at once,
// spinning, until the join phase ended.
func TestClassicInitialDelayPassesWithPendingMember(t *testing.T) {
	for _, rejoins := range []bool{true, false} {
		t.Run(fmt.Sprintf("rejoins=%v", rejoins), func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.InitialRebalanceDelay = 3 * time.Second })
			_, a := h.joinNew("g", "a")
			h.waitFor("first member", func(g *group) bool { return len(g.cl.members) == 1 }, "g")
			r := h.do(joinReq(9, "g", "", "b")).(*kmsg.JoinGroupResponse)
			errIs(t, "second member's first join", r.ErrorCode, kerr.MemberIDRequired)
			h.advance(3 * time.Second)
			g, _ := h.c.lockGroup("g", false, kindClassic)
			next := g.nextDeadline()
			g.mu.Unlock()
			if now := h.clock.Now(); !next.After(now) {
				t.Fatalf("after the initial delay, the next deadline is %v, not after now (%v)", next, now)
			}
			if !pending(a) {
				t.Fatal("the join completed without the pending member")
			}
			want := 1
			if rejoins {
				b := h.async(joinReq(9, "g", r.MemberID, "b"))
				errIs(t, "second member's join", wait[*kmsg.JoinGroupResponse](t, b).ErrorCode, nil)
				want = 2
			} else {
				h.advance(7 * time.Second) // the pending member's session
			}
			ra := wait[*kmsg.JoinGroupResponse](t, a)
			errIs(t, "first member's join", ra.ErrorCode, nil)
			if ra.Generation != 1 || len(ra.Members) != want {
				t.Fatalf("join: generation %d, %d members, want 1 and %d", ra.Generation, len(ra.Members), want)
			}
		})
	}
}

func TestClassicJoinErrors(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.MaxMetadataBytes = 1024
		c.GroupMaxSize = 2
	})
	h.stableGroup("full", 2)
	h.stableGroup("existing", 1)
	h.place.move("elsewhere", 2)
	for _, tc := range []struct {
		name string
		req  func() *kmsg.JoinGroupRequest
		want *kerr.Error
	}{
		{"empty group id", func() *kmsg.JoinGroupRequest { return joinReq(9, "", "", "m") }, kerr.InvalidGroupID},
		{"session too short", func() *kmsg.JoinGroupRequest {
			r := joinReq(9, "x", "", "m")
			r.SessionTimeoutMillis = 1
			return r
		}, kerr.InvalidSessionTimeout},
		{"no protocol type", func() *kmsg.JoinGroupRequest {
			r := joinReq(9, "x", "", "m")
			r.ProtocolType = ""
			return r
		}, kerr.InconsistentGroupProtocol},
		{"no protocols", func() *kmsg.JoinGroupRequest {
			r := joinReq(9, "x", "", "m")
			r.Protocols = nil
			return r
		}, kerr.InconsistentGroupProtocol},
		{"oversized metadata", func() *kmsg.JoinGroupRequest { return joinReq(9, "big", "", strings.Repeat("x", 2000)) }, kerr.MessageTooLarge},
		{"unknown member of unknown group", func() *kmsg.JoinGroupRequest { return joinReq(9, "nope", "ghost", "m") }, kerr.UnknownMemberID},
		{"other protocol type", func() *kmsg.JoinGroupRequest {
			r := joinReq(9, "existing", "", "m")
			r.ProtocolType = "connect"
			return r
		}, kerr.InconsistentGroupProtocol},
		{"no common protocol", func() *kmsg.JoinGroupRequest {
			r := joinReq(9, "existing", "", "m")
			r.Protocols[0].Name = "roundrobin"
			return r
		}, kerr.InconsistentGroupProtocol},
		{"group full", func() *kmsg.JoinGroupRequest { return joinReq(9, "full", "", "m") }, kerr.GroupMaxSizeReached},
		{"not coordinator", func() *kmsg.JoinGroupRequest { return joinReq(9, "elsewhere", "", "m") }, kerr.NotCoordinator},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(tc.req()).(*kmsg.JoinGroupResponse)
			errIs(t, "join", r.ErrorCode, tc.want)
			if r.Generation != -1 {
				t.Fatalf("generation %d on error", r.Generation)
			}
		})
	}
	if d := h.describe("big"); d.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("an oversized join created a group: %+v", d)
	}
	if d := h.describe("existing"); d.State != "Stable" || len(d.Members) != 1 {
		t.Fatalf("bad joins changed the group: %+v", d)
	}
}

func TestClassicSyncErrors(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxMetadataBytes = 1024 })
	ids, gen := h.stableGroup("g", 1)
	join := h.async(joinReq(9, "g", ids[0], "meta")) // leader rejoin: new generation
	errIs(t, "rejoin", wait[*kmsg.JoinGroupResponse](t, join).ErrorCode, nil)
	gen++
	wrongProto := syncReq("g", ids[0], gen, nil)
	wrongProto.Protocol = kmsg.StringPtr("roundrobin")
	for _, tc := range []struct {
		name string
		req  *kmsg.SyncGroupRequest
		want *kerr.Error
	}{
		{"stale generation", syncReq("g", ids[0], gen-1, nil), kerr.IllegalGeneration},
		{"unknown member", syncReq("g", "ghost", gen, nil), kerr.UnknownMemberID},
		{"unknown group", syncReq("nope", ids[0], gen, nil), kerr.UnknownMemberID},
		{"other protocol", wrongProto, kerr.InconsistentGroupProtocol},
		{"oversized assignment", syncReq("g", ids[0], gen, map[string]string{ids[0]: strings.Repeat("x", 2000)}), kerr.MessageTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errIs(t, "sync", h.do(tc.req).(*kmsg.SyncGroupResponse).ErrorCode, tc.want)
		})
	}
	if d := h.describe("g"); d.State != "CompletingRebalance" {
		t.Fatalf("bad syncs changed the group: %+v", d)
	}
	errIs(t, "good sync", h.do(syncReq("g", ids[0], gen, map[string]string{ids[0]: "ok"})).(*kmsg.SyncGroupResponse).ErrorCode, nil)
}

// TestClassicAssignmentIsCopied: the stored assignment must not alias the
// request, whose bytes belong to the connection's read buffer.
func TestClassicAssignmentIsCopied(t *testing.T) {
	h := newHarness(t)
	id, ch := h.joinNew("g", "m")
	wait[*kmsg.JoinGroupResponse](t, ch)
	req := syncReq("g", id, 1, map[string]string{id: "abc"})
	errIs(t, "sync", h.do(req).(*kmsg.SyncGroupResponse).ErrorCode, nil)
	copy(req.GroupAssignment[0].MemberAssignment, "xyz")
	if got := string(h.describe("g").Members[0].MemberAssignment); got != "abc" {
		t.Fatalf("stored assignment changed with the request buffer: %q", got)
	}
}

func TestClassicLeaveBatch(t *testing.T) {
	h := newHarness(t)
	join := joinReq(9, "g", "", "m")
	join.InstanceID = kmsg.StringPtr("inst")
	static := h.do(join).(*kmsg.JoinGroupResponse).MemberID
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version, lr.Group = 5, "g"
	lr.Members = []kmsg.LeaveGroupRequestMember{
		{MemberID: "ghost"},
		{MemberID: "other", InstanceID: kmsg.StringPtr("inst")},
		{InstanceID: kmsg.StringPtr("unknown-inst")},
		{MemberID: "", InstanceID: kmsg.StringPtr("inst")}, // admin removal by instance id
	}
	r := h.do(lr).(*kmsg.LeaveGroupResponse)
	want := []*kerr.Error{kerr.UnknownMemberID, kerr.FencedInstanceID, kerr.UnknownMemberID, nil}
	for i, m := range r.Members {
		errIs(t, "member "+m.MemberID, m.ErrorCode, want[i])
	}
	if d := h.describe("g"); d.State != "Empty" {
		t.Fatalf("static member %s not removed: %+v", static, d)
	}
	old := kmsg.NewPtrLeaveGroupRequest()
	old.Version, old.Group, old.MemberID = 2, "g", "ghost"
	errIs(t, "v2 leave", h.do(old).(*kmsg.LeaveGroupResponse).ErrorCode, kerr.UnknownMemberID)
}

func TestClassicGroupMoved(t *testing.T) {
	h := newHarness(t)
	ids, gen := h.stableGroup("g", 2)
	waiting := h.async(joinReq(9, "g", ids[0], "meta"))
	h.waitFor("rebalance", func(g *group) bool { return g.cl.state == statePreparingRebalance }, "g")
	h.place.move("g", 2)
	errIs(t, "heartbeat", h.do(hbReq("g", ids[1], gen)).(*kmsg.HeartbeatResponse).ErrorCode, kerr.NotCoordinator)
	errIs(t, "waiting join", wait[*kmsg.JoinGroupResponse](t, waiting).ErrorCode, kerr.NotCoordinator)
	if h.c.numGroups() != 0 {
		t.Fatal("the moved group's state was kept")
	}
}

func TestCoordinatorLifecycle(t *testing.T) {
	cat, place := newFakeCatalog(), &fakePlacement{}
	c := New(Config{InitialRebalanceDelay: 0}, cat, place, nil, nil)
	resp, err := c.Handle(context.Background(), "client", "host", joinReq(9, "g", "", "m"))
	if err != nil {
		t.Fatal(err)
	}
	errIs(t, "before Run", resp.(*kmsg.JoinGroupResponse).ErrorCode, kerr.CoordinatorLoadInProgress)
	resp, err = c.Handle(context.Background(), "client", "host", hbReq("g", "m", 1))
	if err != nil {
		t.Fatal(err)
	}
	errIs(t, "heartbeat before Run", resp.(*kmsg.HeartbeatResponse).ErrorCode, kerr.CoordinatorLoadInProgress)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	for c.running.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	if err := c.Run(ctx); err == nil {
		t.Fatal("a second Run did not fail")
	}
	r := kmsg.NewPtrJoinGroupRequest()
	*r = *joinReq(3, "g", "", "m")
	first, _ := c.Handle(ctx, "client", "host", r)
	id := first.(*kmsg.JoinGroupResponse).MemberID
	// A second member's join waits for the first to rejoin...
	other := make(chan kmsg.Response, 1)
	go func() {
		resp, _ := c.Handle(context.Background(), "client", "host", joinReq(3, "g", "", "m"))
		other <- resp
	}()
	for {
		g, _ := c.lockGroup("g", false, kindClassic)
		n := len(g.cl.members)
		g.mu.Unlock()
		if n == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// ...until shutdown answers it.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	errIs(t, "waiting join at shutdown", (<-other).(*kmsg.JoinGroupResponse).ErrorCode, kerr.NotCoordinator)
	resp, _ = c.Handle(context.Background(), "client", "host", hbReq("g", id, 1))
	errIs(t, "after Run", resp.(*kmsg.HeartbeatResponse).ErrorCode, kerr.NotCoordinator)
	if _, err := c.Handle(context.Background(), "c", "h", kmsg.NewPtrProduceRequest()); err == nil {
		t.Fatal("an unserved key did not fail")
	}
}

func TestMemoryBounds(t *testing.T) {
	t.Run("total metadata", func(t *testing.T) {
		h := newHarness(t, func(c *Config) {
			c.MaxMetadataBytes = 100
			c.MaxTotalMetadataBytes = 150
		})
		r := h.do(joinReq(3, "a", "", strings.Repeat("x", 80))).(*kmsg.JoinGroupResponse)
		errIs(t, "first", r.ErrorCode, nil)
		r = h.do(joinReq(3, "b", "", strings.Repeat("x", 80))).(*kmsg.JoinGroupResponse)
		errIs(t, "over budget", r.ErrorCode, kerr.CoordinatorNotAvailable)
		lr := kmsg.NewPtrLeaveGroupRequest()
		lr.Version, lr.Group, lr.MemberID = 2, "a", h.describe("a").Members[0].MemberID
		errIs(t, "leave", h.do(lr).(*kmsg.LeaveGroupResponse).ErrorCode, nil)
		if n := h.c.metaBytes.Load(); n != 0 {
			t.Fatalf("%d bytes still accounted after the only member left", n)
		}
		r = h.do(joinReq(3, "b", "", strings.Repeat("x", 80))).(*kmsg.JoinGroupResponse)
		errIs(t, "after leave", r.ErrorCode, nil)
	})
	t.Run("groups", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.MaxGroups = 2 })
		h.stableGroup("a", 1)
		h.stableGroup("b", 1)
		r := h.do(joinReq(3, "c", "", "m")).(*kmsg.JoinGroupResponse)
		errIs(t, "third group", r.ErrorCode, kerr.CoordinatorNotAvailable)
		lr := kmsg.NewPtrLeaveGroupRequest()
		lr.Version, lr.Group, lr.MemberID = 2, "a", h.describe("a").Members[0].MemberID
		h.do(lr)
		// a is evictable once empty, but eviction only tries group locks
		// (the save of a's departure may hold it for a moment): the client
		// retries COORDINATOR_NOT_AVAILABLE, and so does this.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			r = h.do(joinReq(3, "c", "", "m")).(*kmsg.JoinGroupResponse)
			if r.ErrorCode != kerr.CoordinatorNotAvailable.Code || time.Now().After(deadline) {
				break
			}
		}
		errIs(t, "after a emptied", r.ErrorCode, nil)
		if h.c.numGroups() != 2 {
			t.Fatalf("%d groups in memory", h.c.numGroups())
		}
	})
}

// A static member's instance id is chosen by the client and kept twice
// (it is also the prefix of the member id): it counts against the metadata
// caps like the protocol metadata, instead of letting many members hold
// unbounded memory outside the budget.
func TestClassicInstanceIDIsBounded(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.MaxMetadataBytes = 1000
		c.MaxTotalMetadataBytes = 3000
	})
	static := func(group, instance string) *kmsg.JoinGroupResponse {
		r := joinReq(9, group, "", "m")
		r.InstanceID = &instance
		return h.do(r).(*kmsg.JoinGroupResponse)
	}
	errIs(t, "huge instance id", static("a", strings.Repeat("i", 2000)).ErrorCode, kerr.MessageTooLarge)
	r := static("a", strings.Repeat("i", 900))
	errIs(t, "large instance id", r.ErrorCode, nil)
	if n := h.c.metaBytes.Load(); n < 2*900 {
		t.Fatalf("%d bytes accounted for a member holding an instance id of 900 bytes twice", n)
	}
	errIs(t, "over the total", static("b", strings.Repeat("j", 900)).ErrorCode, kerr.CoordinatorNotAvailable)
}

// A panic in a group's state machine resets that group instead of leaving
// its lock held: the panic reaches the caller (the agent fails that one
// request), the group's members are told to rejoin, its timers and the
// other groups go on, and the group can be formed again.
func TestPanicResetsGroup(t *testing.T) {
	h := newHarness(t)
	ids, gen := h.stableGroup("g", 2)
	other, otherGen := h.stableGroup("other", 1)
	g, _ := h.c.lockGroup("g", false, kindClassic)
	// A state no request can make: an instance id held by a member that
	// is gone. A heartbeat naming both dereferences the missing member.
	delete(g.cl.members, ids[0])
	g.cl.static["i"] = ids[0]
	g.mu.Unlock()
	hb := hbReq("g", ids[0], gen)
	hb.InstanceID = kmsg.StringPtr("i")
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		h.c.Handle(context.Background(), "client", "127.0.0.1", hb)
	}()
	select {
	case v := <-done:
		if v == nil {
			t.Fatal("the broken heartbeat did not panic")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the broken heartbeat hung")
	}
	// The reset group is loaded again from its last stored stable state,
	// as after a coordinator move: the member goes on.
	errIs(t, "heartbeat after the reset", h.do(hbReq("g", ids[1], gen)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
	h.advance(time.Second) // timers still run
	errIs(t, "other group", h.do(hbReq("other", other[0], otherGen)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
	h.advance(11 * time.Second) // the reloaded members' sessions end
	h.stableGroup("g", 1)
}

// TestClassicStaticMemberAwayThroughRebalance: a static member that does
// not rejoin a rebalance stays in the group, as in Kafka (KIP-345): the
// join completes at the rebalance timeout with a leader that rejoined, the
// leader assigns to the absent member, and the member, back within its
// session under its instance id, takes its assignment without another
// rebalance.
func TestClassicStaticMemberAwayThroughRebalance(t *testing.T) {
	h := newHarness(t)
	static := joinReq(9, "g", "", "meta")
	static.InstanceID = kmsg.StringPtr("inst-s")
	static.SessionTimeoutMillis = 30_000 // restarted when the join completes, else over before it returns
	r := h.do(static).(*kmsg.JoinGroupResponse)
	errIs(t, "static join", r.ErrorCode, nil)
	s := r.MemberID
	errIs(t, "static sync", h.do(syncReq("g", s, 1, map[string]string{s: "s1"})).(*kmsg.SyncGroupResponse).ErrorCode, nil)

	// A dynamic member joins; the static one is away (restarting) and
	// does not rejoin within the rebalance timeout (20 s).
	d, dj := h.joinNew("g", "meta")
	h.waitFor("rebalance", func(g *group) bool { return g.cl.state == statePreparingRebalance }, "g")
	h.advance(21 * time.Second)
	jr := wait[*kmsg.JoinGroupResponse](t, dj)
	errIs(t, "dynamic join", jr.ErrorCode, nil)
	if jr.Generation != 2 || jr.LeaderID != d || len(jr.Members) != 2 {
		t.Fatalf("join: generation %d leader %s members %d; want 2, the member that rejoined, both members", jr.Generation, jr.LeaderID, len(jr.Members))
	}
	errIs(t, "leader sync", h.do(syncReq("g", d, 2, map[string]string{d: "d2", s: "s2"})).(*kmsg.SyncGroupResponse).ErrorCode, nil)
	if desc := h.describe("g"); desc.State != "Stable" || len(desc.Members) != 2 {
		t.Fatalf("after the rebalance: %+v", desc)
	}

	// Back before the sync deadline (the rebalance timeout, 20 s after
	// the join completed): its new member id takes the assignment the
	// leader gave the old one, and nothing rebalances.
	h.advance(8 * time.Second)
	errIs(t, "dynamic heartbeat while the static member is away", h.do(hbReq("g", d, 2)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
	h.advance(7 * time.Second)
	r = h.do(static).(*kmsg.JoinGroupResponse)
	errIs(t, "static rejoin", r.ErrorCode, nil)
	if r.Generation != 2 {
		t.Fatalf("static rejoin: generation %d, want 2", r.Generation)
	}
	sr := h.do(syncReq("g", r.MemberID, 2, nil)).(*kmsg.SyncGroupResponse)
	errIs(t, "static sync after return", sr.ErrorCode, nil)
	if string(sr.MemberAssignment) != "s2" {
		t.Fatalf("returned static member's assignment %q, want s2", sr.MemberAssignment)
	}
	if desc := h.describe("g"); desc.State != "Stable" || len(desc.Members) != 2 {
		t.Fatalf("after the return: %+v", desc)
	}
	errIs(t, "dynamic heartbeat", h.do(hbReq("g", d, 2)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
}

// TestClassicRebalanceWithOnlyAbsentStaticMembers: when the join phase
// ends with no member rejoined but static ones still in their sessions,
// it waits on instead of completing without a leader; a static member's
// return completes it, and one whose session ends is removed.
func TestClassicRebalanceWithOnlyAbsentStaticMembers(t *testing.T) {
	h := newHarness(t)
	static := joinReq(9, "g", "", "meta")
	static.InstanceID = kmsg.StringPtr("inst-s")
	static.SessionTimeoutMillis = 60_000
	s := h.do(static).(*kmsg.JoinGroupResponse).MemberID
	errIs(t, "static sync", h.do(syncReq("g", s, 1, map[string]string{s: "s1"})).(*kmsg.SyncGroupResponse).ErrorCode, nil)
	// A dynamic member starts a rebalance and leaves before it completes.
	d, dj := h.joinNew("g", "meta")
	h.waitFor("rebalance", func(g *group) bool { return g.cl.state == statePreparingRebalance }, "g")
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version = 3
	lr.Group = "g"
	lr.Members = []kmsg.LeaveGroupRequestMember{{MemberID: d}}
	errIs(t, "leave", h.do(lr).(*kmsg.LeaveGroupResponse).ErrorCode, nil)
	wait[*kmsg.JoinGroupResponse](t, dj)
	h.advance(21 * time.Second)
	if desc := h.describe("g"); desc.State != "PreparingRebalance" || len(desc.Members) != 1 {
		t.Fatalf("with only an absent static member left: %+v", desc)
	}
	r := h.do(static).(*kmsg.JoinGroupResponse)
	errIs(t, "static return", r.ErrorCode, nil)
	if r.Generation != 2 || r.LeaderID != r.MemberID || len(r.Members) != 1 {
		t.Fatalf("static return: %+v", r)
	}

	// Away again through a rebalance, now past its session: removed.
	d2, dj2 := h.joinNew("g", "meta")
	h.waitFor("rebalance", func(g *group) bool { return g.cl.state == statePreparingRebalance }, "g")
	h.advance(61 * time.Second)
	jr := wait[*kmsg.JoinGroupResponse](t, dj2)
	errIs(t, "join", jr.ErrorCode, nil)
	if jr.LeaderID != d2 || len(jr.Members) != 1 {
		t.Fatalf("join after the static member's session ended: %+v", jr)
	}
}
