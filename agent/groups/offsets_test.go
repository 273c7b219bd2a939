package groups

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

func TestSimpleGroupCommitAndFetch(t *testing.T) {
	h := newHarness(t)
	h.cat.addTopic("t", 3)
	for _, v := range []int16{2, 5, 6, 7, 8, 9} {
		r := commitReq("simple", "", -1, "t", map[int32]int64{0: int64(v) * 10, 2: 7})
		r.Version = v
		r.Topics[0].Partitions[0].Metadata = kmsg.StringPtr("meta")
		r.Topics[0].Partitions[0].LeaderEpoch = 4
		for code, c := range commitCodes(h.do(r).(*kmsg.OffsetCommitResponse)) {
			errIs(t, code, c, nil)
		}
		o, ok := h.cat.stored("simple", "t", 0)
		if !ok || o.Offset != int64(v)*10 || o.Metadata != "meta" {
			t.Fatalf("v%d: stored %+v %v", v, o, ok)
		}
		if wantEpoch := int32(-1); v >= 6 && o.LeaderEpoch != 4 || v < 6 && o.LeaderEpoch != wantEpoch {
			t.Fatalf("v%d: leader epoch %d", v, o.LeaderEpoch)
		}
	}
	for v := int16(1); v <= 7; v++ {
		f := kmsg.NewPtrOffsetFetchRequest()
		f.Version, f.Group = v, "simple"
		f.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0, 1, 2}}}
		r := h.do(f).(*kmsg.OffsetFetchResponse)
		errIs(t, "fetch", r.ErrorCode, nil)
		got := r.Topics[0].Partitions
		if got[0].Offset != 90 || got[1].Offset != -1 || got[2].Offset != 7 || *got[0].Metadata != "meta" {
			t.Fatalf("v%d fetch: %+v", v, got)
		}
	}
	all := kmsg.NewPtrOffsetFetchRequest()
	all.Version, all.Group = 7, "simple"
	if r := h.do(all).(*kmsg.OffsetFetchResponse); len(r.Topics) != 1 || len(r.Topics[0].Partitions) != 2 {
		t.Fatalf("fetch all: %+v", r.Topics)
	}
}

// TestOffsetMetadataLengthInJavaUnits: the metadata limit counts UTF-16
// code units, as Kafka (Java's String.length) does, not bytes: ten
// two-byte characters fit a limit of 10, five emoji (two units each) do
// too, six do not.
func TestOffsetMetadataLengthInJavaUnits(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxOffsetMetadataBytes = 10 })
	h.cat.addTopic("t", 3)
	r := kmsg.NewPtrOffsetCommitRequest()
	r.Version, r.Group, r.Generation = 9, "g", -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = "t"
	for p, meta := range []string{strings.Repeat("é", 10), strings.Repeat("😀", 5), strings.Repeat("😀", 6)} {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.Metadata = int32(p), 5, kmsg.StringPtr(meta)
		rt.Partitions = append(rt.Partitions, rp)
	}
	r.Topics = append(r.Topics, rt)
	codes := commitCodes(h.do(r).(*kmsg.OffsetCommitResponse))
	for key, want := range map[string]*kerr.Error{"t/0": nil, "t/1": nil, "t/2": kerr.OffsetMetadataTooLarge} {
		errIs(t, key, codes[key], want)
	}
}

func TestOffsetCommitBadInput(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxOffsetMetadataBytes = 10 })
	h.cat.addTopic("t", 2)
	r := kmsg.NewPtrOffsetCommitRequest()
	r.Version, r.Group, r.Generation = 9, "g", -1
	add := func(topic string, p int32, meta string) {
		t := kmsg.NewOffsetCommitRequestTopic()
		t.Topic = topic
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.Metadata = p, 5, kmsg.StringPtr(meta)
		t.Partitions = append(t.Partitions, rp)
		r.Topics = append(r.Topics, t)
	}
	add("t", 0, "ok")
	add("nope", 0, "")
	add("t", 2, "")
	add("t", -1, "")
	add("t", 1, strings.Repeat("m", 11))
	codes := commitCodes(h.do(r).(*kmsg.OffsetCommitResponse))
	for key, want := range map[string]*kerr.Error{
		"t/0":    nil,
		"nope/0": kerr.UnknownTopicOrPartition,
		"t/2":    kerr.UnknownTopicOrPartition,
		"t/-1":   kerr.UnknownTopicOrPartition,
		"t/1":    kerr.OffsetMetadataTooLarge,
	} {
		errIs(t, key, codes[key], want)
	}
	if _, ok := h.cat.stored("g", "nope", 0); ok {
		t.Fatal("an offset of an unknown topic was stored")
	}
	if _, ok := h.cat.stored("g", "t", 1); ok {
		t.Fatal("an offset with oversized metadata was stored")
	}
	if _, ok := h.cat.stored("g", "t", 0); !ok {
		t.Fatal("the valid offset was not stored")
	}

	// A partition added since the cache was filled is seen.
	h.cat.addTopic("t", 3)
	codes = commitCodes(h.do(commitReq("g", "", -1, "t", map[int32]int64{2: 1})).(*kmsg.OffsetCommitResponse))
	errIs(t, "new partition", codes["t/2"], nil)

	// A catalog failure acknowledges nothing.
	h.cat.mu.Lock()
	h.cat.commitErr = errBoom
	h.cat.mu.Unlock()
	codes = commitCodes(h.do(commitReq("g", "", -1, "t", map[int32]int64{0: 99})).(*kmsg.OffsetCommitResponse))
	errIs(t, "catalog down", codes["t/0"], kerr.CoordinatorNotAvailable)
	if o, _ := h.cat.stored("g", "t", 0); o.Offset == 99 {
		t.Fatal("stored despite the failure")
	}
}

func TestOffsetCommitFencing(t *testing.T) {
	h := newHarness(t)
	h.cat.addTopic("t", 1)
	ids, gen := h.stableGroup("g", 2)
	join := joinReq(9, "static", "", "m")
	join.InstanceID = kmsg.StringPtr("inst")
	static := h.do(join).(*kmsg.JoinGroupResponse).MemberID
	h.do(syncReq("static", static, 1, nil))
	withInstance := commitReq("static", static, 1, "t", map[int32]int64{0: 1})
	withInstance.InstanceID = kmsg.StringPtr("other-inst")

	for _, tc := range []struct {
		name string
		req  *kmsg.OffsetCommitRequest
		want *kerr.Error
	}{
		{"member of current generation", commitReq("g", ids[1], gen, "t", map[int32]int64{0: 1}), nil},
		{"stale generation", commitReq("g", ids[1], gen-1, "t", map[int32]int64{0: 2}), kerr.IllegalGeneration},
		{"unknown member", commitReq("g", "ghost", gen, "t", map[int32]int64{0: 2}), kerr.UnknownMemberID},
		{"no member info in an active group", commitReq("g", "", -1, "t", map[int32]int64{0: 2}), kerr.UnknownMemberID},
		{"generation of a group never seen", commitReq("unseen", "m", 3, "t", map[int32]int64{0: 2}), kerr.IllegalGeneration},
		{"simple commit to an unseen group", commitReq("unseen", "", -1, "t", map[int32]int64{0: 2}), nil},
		{"wrong instance id", withInstance, kerr.UnknownMemberID},
		{"not coordinator", commitReq("elsewhere", "", -1, "t", map[int32]int64{0: 2}), kerr.NotCoordinator},
		{"empty group id", commitReq("", "", -1, "t", map[int32]int64{0: 2}), kerr.InvalidGroupID},
		// Text the catalog cannot store (PostgreSQL) gets codes clients
		// do not retry forever.
		{"group id with NUL", commitReq("g\x00", "", -1, "t", map[int32]int64{0: 2}), kerr.InvalidGroupID},
		{"group id not UTF-8", commitReq("g\xff", "", -1, "t", map[int32]int64{0: 2}), kerr.InvalidGroupID},
		{"metadata not UTF-8", func() *kmsg.OffsetCommitRequest {
			r := commitReq("unseen", "", -1, "t", map[int32]int64{0: 2})
			r.Topics[0].Partitions[0].Metadata = kmsg.StringPtr("\xff")
			return r
		}(), kerr.OffsetMetadataTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.req.Group == "elsewhere" {
				h.place.move("elsewhere", 2)
			}
			errIs(t, "commit", commitCodes(h.do(tc.req).(*kmsg.OffsetCommitResponse))["t/0"], tc.want)
		})
	}
	// A partition the topic checks refused keeps its own error beside the
	// member's, as in Kafka.
	mixed := commitReq("g", "ghost", gen, "t", map[int32]int64{0: 2})
	mixed.Topics[0].Partitions = append(mixed.Topics[0].Partitions, kmsg.OffsetCommitRequestTopicPartition{Partition: 7, Offset: 2})
	mixedCodes := commitCodes(h.do(mixed).(*kmsg.OffsetCommitResponse))
	errIs(t, "unknown member's t/0", mixedCodes["t/0"], kerr.UnknownMemberID)
	errIs(t, "unknown member's t/7", mixedCodes["t/7"], kerr.UnknownTopicOrPartition)
	if o, _ := h.cat.stored("g", "t", 0); o.Offset != 1 {
		t.Fatalf("a fenced commit changed the offset to %d", o.Offset)
	}

	// While the group completes a rebalance, members must wait.
	a := h.async(joinReq(9, "g", ids[0], "meta"))
	b := h.async(joinReq(9, "g", ids[1], "meta"))
	wait[*kmsg.JoinGroupResponse](t, a)
	wait[*kmsg.JoinGroupResponse](t, b)
	codes := commitCodes(h.do(commitReq("g", ids[1], gen+1, "t", map[int32]int64{0: 3})).(*kmsg.OffsetCommitResponse))
	errIs(t, "completing rebalance", codes["t/0"], kerr.RebalanceInProgress)
}

func TestOffsetFetchBatched(t *testing.T) {
	h := newHarness(t)
	h.cat.addTopic("t", 2)
	h.cat.addTopic("u", 1)
	h.do(commitReq("a", "", -1, "t", map[int32]int64{0: 10, 1: 11}))
	h.do(commitReq("b", "", -1, "u", map[int32]int64{0: 20}))
	h.place.move("c", 2)
	for _, v := range []int16{8, 9} {
		f := kmsg.NewPtrOffsetFetchRequest()
		f.Version, f.RequireStable = v, true
		f.Groups = []kmsg.OffsetFetchRequestGroup{
			{Group: "a", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "t", Partitions: []int32{1}}}},
			{Group: "b"}, // all topics
			{Group: "c"},
			{Group: "empty", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "t", Partitions: []int32{0}}}},
		}
		r := h.do(f).(*kmsg.OffsetFetchResponse)
		if len(r.Groups) != 4 {
			t.Fatalf("v%d: %d groups", v, len(r.Groups))
		}
		a, b, c, e := r.Groups[0], r.Groups[1], r.Groups[2], r.Groups[3]
		errIs(t, "a", a.ErrorCode, nil)
		if len(a.Topics) != 1 || len(a.Topics[0].Partitions) != 1 || a.Topics[0].Partitions[0].Offset != 11 {
			t.Fatalf("v%d a: %+v", v, a.Topics)
		}
		if len(b.Topics) != 1 || b.Topics[0].Topic != "u" || b.Topics[0].Partitions[0].Offset != 20 {
			t.Fatalf("v%d b: %+v", v, b.Topics)
		}
		errIs(t, "c", c.ErrorCode, kerr.NotCoordinator)
		if e.Topics[0].Partitions[0].Offset != -1 {
			t.Fatalf("v%d: a group without offsets: %+v", v, e.Topics)
		}
	}
}

func TestOffsetDeleteAndDeleteGroups(t *testing.T) {
	h := newHarness(t)
	h.cat.addTopic("t", 1)
	h.cat.addTopic("u", 1)
	for _, g := range []string{"simple", "active"} {
		h.do(commitReq(g, "", -1, "t", map[int32]int64{0: 1}))
		h.do(commitReq(g, "", -1, "u", map[int32]int64{0: 1}))
	}
	sub := kmsg.NewConsumerMemberMetadata()
	sub.Topics = []string{"t"}
	join := joinReq(3, "active", "", "")
	join.Protocols[0].Metadata = sub.AppendTo(nil)
	errIs(t, "join", h.do(join).(*kmsg.JoinGroupResponse).ErrorCode, nil)
	h.place.move("elsewhere", 2)

	del := func(group string, topics ...string) *kmsg.OffsetDeleteResponse {
		r := kmsg.NewPtrOffsetDeleteRequest()
		r.Group = group
		for _, t := range topics {
			r.Topics = append(r.Topics, kmsg.OffsetDeleteRequestTopic{Topic: t, Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}})
		}
		return h.do(r).(*kmsg.OffsetDeleteResponse)
	}
	r := del("simple", "t")
	errIs(t, "simple", r.ErrorCode, nil)
	errIs(t, "simple t/0", r.Topics[0].Partitions[0].ErrorCode, nil)
	if _, ok := h.cat.stored("simple", "t", 0); ok {
		t.Fatal("offset not deleted")
	}
	r = del("active", "t", "u")
	errIs(t, "active t/0", r.Topics[0].Partitions[0].ErrorCode, kerr.GroupSubscribedToTopic)
	errIs(t, "active u/0", r.Topics[1].Partitions[0].ErrorCode, nil)
	if _, ok := h.cat.stored("active", "t", 0); !ok {
		t.Fatal("a subscribed topic's offset was deleted")
	}
	errIs(t, "unknown group", del("nope", "t").ErrorCode, kerr.GroupIDNotFound)
	// A topic or partition that does not exist is not reported deleted
	// (Kafka: UNKNOWN_TOPIC_OR_PARTITION); the other partitions are.
	h.do(commitReq("simple", "", -1, "t", map[int32]int64{0: 2}))
	ur := kmsg.NewPtrOffsetDeleteRequest()
	ur.Group = "simple"
	ur.Topics = []kmsg.OffsetDeleteRequestTopic{
		{Topic: "no-such-topic", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}},
		{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 5}, {Partition: 0}}},
	}
	r = h.do(ur).(*kmsg.OffsetDeleteResponse)
	errIs(t, "unknown topic", r.Topics[0].Partitions[0].ErrorCode, kerr.UnknownTopicOrPartition)
	errIs(t, "unknown partition", r.Topics[1].Partitions[0].ErrorCode, kerr.UnknownTopicOrPartition)
	errIs(t, "known partition beside them", r.Topics[1].Partitions[1].ErrorCode, nil)
	if _, ok := h.cat.stored("simple", "t", 0); ok {
		t.Fatal("offset not deleted beside unknown partitions")
	}

	resp := h.deleteGroups("simple", "active", "nope", "elsewhere")
	for i, want := range []*kerr.Error{nil, kerr.NonEmptyGroup, kerr.GroupIDNotFound, kerr.NotCoordinator} {
		errIs(t, resp.Groups[i].Group, resp.Groups[i].ErrorCode, want)
	}
	if _, ok := h.cat.stored("simple", "u", 0); ok {
		t.Fatal("deleted group kept offsets")
	}
}

// deleteGroups sends DeleteGroups (v2) for ids.
func (h *harness) deleteGroups(ids ...string) *kmsg.DeleteGroupsResponse {
	dg := kmsg.NewPtrDeleteGroupsRequest()
	dg.Version, dg.Groups = 2, ids
	return h.do(dg).(*kmsg.DeleteGroupsResponse)
}

// TestDeleteGroupWithOnlyPendingMembers: a classic group whose only
// members are pending (told MEMBER_ID_REQUIRED, never back) is empty to
// DeleteGroups, as in Kafka, whose group stays in its Empty state: a
// client that crashed mid-join does not make the group undeletable for a
// session timeout.
func TestDeleteGroupWithOnlyPendingMembers(t *testing.T) {
	h := newHarness(t)
	h.cat.addTopic("t", 1)
	h.do(commitReq("p", "", -1, "t", map[int32]int64{0: 1}))
	errIs(t, "first join", h.do(joinReq(9, "p", "", "")).(*kmsg.JoinGroupResponse).ErrorCode, kerr.MemberIDRequired)
	h.do(commitReq("p", "", -1, "t", map[int32]int64{0: 1}))
	od := kmsg.NewPtrOffsetDeleteRequest()
	od.Group = "p"
	od.Topics = []kmsg.OffsetDeleteRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}
	odr := h.do(od).(*kmsg.OffsetDeleteResponse)
	errIs(t, "offset delete", odr.ErrorCode, nil)
	errIs(t, "offset delete t/0", odr.Topics[0].Partitions[0].ErrorCode, nil)
	h.do(commitReq("p", "", -1, "t", map[int32]int64{0: 1}))
	errIs(t, "delete", h.deleteGroups("p").Groups[0].ErrorCode, nil)
	if _, ok := h.cat.stored("p", "t", 0); ok {
		t.Fatal("deleted group kept offsets")
	}
}

// TestListGroupsWhileJoining: while this agent's join settles, groups
// moving to it are listed by no agent; the list is refused with
// COORDINATOR_LOAD_IN_PROGRESS, which clients retry, as Kafka refuses it
// while it loads.
func TestListGroupsWhileJoining(t *testing.T) {
	h := newHarness(t)
	h.cat.addTopic("t", 1)
	h.do(commitReq("simple", "", -1, "t", map[int32]int64{0: 1}))
	h.place.mu.Lock()
	h.place.err = ErrJoining
	h.place.mu.Unlock()
	r := kmsg.NewPtrListGroupsRequest()
	r.Version = 5
	resp := h.do(r).(*kmsg.ListGroupsResponse)
	errIs(t, "list while joining", resp.ErrorCode, kerr.CoordinatorLoadInProgress)
	h.place.mu.Lock()
	h.place.err = nil
	h.place.mu.Unlock()
	resp = h.do(r).(*kmsg.ListGroupsResponse)
	if resp.ErrorCode != 0 || len(resp.Groups) != 1 || resp.Groups[0].Group != "simple" {
		t.Fatalf("list after the join: %+v", resp)
	}
}

func TestListAndDescribeGroups(t *testing.T) {
	h := newHarness(t)
	h.cat.addTopic("t", 1)
	h.stableGroup("active", 1)
	h.do(commitReq("simple", "", -1, "t", map[int32]int64{0: 1}))
	h.do(commitReq("moved", "", -1, "t", map[int32]int64{0: 1}))
	h.place.move("moved", 2)
	cr := consumerJoin("k", "member-k", []string{"t"})
	errIs(t, "consumer join", h.do(cr).(*kmsg.ConsumerGroupHeartbeatResponse).ErrorCode, nil)

	list := func(v int16, states, types []string) []string {
		r := kmsg.NewPtrListGroupsRequest()
		r.Version, r.StatesFilter, r.TypesFilter = v, states, types
		resp := h.do(r).(*kmsg.ListGroupsResponse)
		errIs(t, "list", resp.ErrorCode, nil)
		var out []string
		for _, g := range resp.Groups {
			out = append(out, g.Group+":"+g.GroupState+":"+g.GroupType+":"+g.ProtocolType)
		}
		return out
	}
	for _, tc := range []struct {
		name          string
		v             int16
		states, types []string
		want          string
	}{
		{"all", 5, nil, nil, "active:Stable:classic:consumer k:Stable:consumer:consumer simple:Empty:classic:"},
		{"v0", 0, nil, nil, "active:Stable:classic:consumer k:Stable:consumer:consumer simple:Empty:classic:"},
		{"states", 4, []string{"empty"}, nil, "simple:Empty:classic:"},
		{"types", 5, nil, []string{"Consumer"}, "k:Stable:consumer:consumer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(list(tc.v, tc.states, tc.types), " "); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}

	d := kmsg.NewPtrDescribeGroupsRequest()
	d.Version, d.IncludeAuthorizedOperations = 6, true
	d.Groups = []string{"active", "simple", "nope", "k", "moved"}
	groups := h.do(d).(*kmsg.DescribeGroupsResponse).Groups
	for i, want := range []struct {
		state string
		err   *kerr.Error
	}{{"Stable", nil}, {"Empty", nil}, {"Dead", kerr.GroupIDNotFound}, {"Dead", kerr.GroupIDNotFound}, {"", kerr.NotCoordinator}} {
		g := groups[i]
		errIs(t, g.Group, g.ErrorCode, want.err)
		if g.State != want.state {
			t.Fatalf("%s: state %q, want %q", g.Group, g.State, want.state)
		}
	}
	if groups[0].AuthorizedOperations != authorizedGroupOps {
		t.Fatalf("authorized operations %d", groups[0].AuthorizedOperations)
	}
	d.Version, d.IncludeAuthorizedOperations = 5, false
	d.Groups = []string{"nope"}
	g := h.do(d).(*kmsg.DescribeGroupsResponse).Groups[0]
	if g.ErrorCode != 0 || g.State != "Dead" || g.AuthorizedOperations != -2147483648 {
		t.Fatalf("v5 unknown group: %+v", g)
	}
}

func TestFindCoordinator(t *testing.T) {
	h := newHarness(t)
	h.place.move("g2", 2)
	for v := int16(0); v <= 6; v++ {
		r := kmsg.NewPtrFindCoordinatorRequest()
		r.Version = v
		if v < 4 {
			r.CoordinatorKey = "g2"
		} else {
			r.CoordinatorKeys = []string{"g1", "g2", ""}
		}
		resp := h.do(r).(*kmsg.FindCoordinatorResponse)
		if v < 4 {
			if resp.ErrorCode != 0 || resp.NodeID != 2 || resp.Host != "agent2" || resp.Port != 9092 {
				t.Fatalf("v%d: %+v", v, resp)
			}
			continue
		}
		cs := resp.Coordinators
		if len(cs) != 3 || cs[0].NodeID != 1 || cs[1].NodeID != 2 || cs[2].ErrorCode != kerr.InvalidRequest.Code {
			t.Fatalf("v%d: %+v", v, cs)
		}
	}
	for _, tc := range []struct {
		name    string
		keyType int8
		want    *kerr.Error
	}{
		{"transaction", keyTypeTransaction, kerr.TransactionalIDAuthorizationFailed},
		{"share", keyTypeShare, kerr.InvalidRequest},
		{"unknown", 9, kerr.InvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := kmsg.NewPtrFindCoordinatorRequest()
			r.Version, r.CoordinatorKey, r.CoordinatorType = 3, "x", tc.keyType
			resp := h.do(r).(*kmsg.FindCoordinatorResponse)
			errIs(t, "find", resp.ErrorCode, tc.want)
			if resp.NodeID != -1 || resp.ErrorMessage == nil {
				t.Fatalf("%+v", resp)
			}
		})
	}
	h.place.mu.Lock()
	h.place.err = errBoom
	h.place.mu.Unlock()
	r := kmsg.NewPtrFindCoordinatorRequest()
	r.Version, r.CoordinatorKey = 3, "g"
	errIs(t, "placement down", h.do(r).(*kmsg.FindCoordinatorResponse).ErrorCode, kerr.CoordinatorNotAvailable)
	errIs(t, "placement down join", h.do(joinReq(9, "g", "", "m")).(*kmsg.JoinGroupResponse).ErrorCode, kerr.CoordinatorNotAvailable)
}

// leasedPlacement is fakePlacement with a lease that ends at until.
type leasedPlacement struct {
	*fakePlacement
	until time.Time
}

func (p leasedPlacement) LeaseRemaining() time.Duration { return time.Until(p.until) }

// stallingCatalog holds offset writes until their context ends, as a
// catalog cut off from this agent does (the write may land much later).
type stallingCatalog struct{ *fakeCatalog }

func (s stallingCatalog) CommitOffsets(ctx context.Context, _ string, _ []catalog.GroupOffset) ([]catalog.GroupPartition, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestOffsetWriteBoundedByLease: an offset write is given up when the
// agent's lease to coordinate ends, not left to land after another agent
// took the group over and accepted newer commits (offsets would go
// backwards); the client is told NOT_COORDINATOR and commits at the new
// coordinator.
func TestOffsetWriteBoundedByLease(t *testing.T) {
	cat := newFakeCatalog()
	cat.addTopic("t", 1)
	place := leasedPlacement{fakePlacement: &fakePlacement{}, until: time.Now().Add(200 * time.Millisecond)}
	cfg := DefaultConfig()
	cfg.InitialRebalanceDelay = 0
	c := New(cfg, stallingCatalog{cat}, place, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(runCtx) }()
	defer func() { stop(); <-done }()
	for c.running.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	resp := c.offsetCommit(ctx, commitReq("g", "", -1, "t", map[int32]int64{0: 5}))
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the write took %v, past the lease", d)
	}
	for code, c := range commitCodes(resp.(*kmsg.OffsetCommitResponse)) {
		errIs(t, code, c, kerr.NotCoordinator)
	}
}

// TestJoinDuringDeleteGroups: between DeleteGroups' emptiness check and
// the catalog's delete of the group's offsets and state, a member that
// joined (and committed) would lose everything. While the delete is in
// flight the group's requests are COORDINATOR_LOAD_IN_PROGRESS, which
// clients retry; after it, the group starts afresh.
func TestJoinDuringDeleteGroups(t *testing.T) {
	h := newHarness(t)
	h.cat.addTopic("t", 1)
	codes := commitCodes(h.do(commitReq("g", "", -1, "t", map[int32]int64{0: 7})).(*kmsg.OffsetCommitResponse))
	for code, c := range codes {
		errIs(t, code, c, nil)
	}
	h.cat.deleting, h.cat.deleteGate = make(chan struct{}), make(chan struct{})
	done := make(chan *kmsg.DeleteGroupsResponse)
	go func() { done <- h.deleteGroups("g") }()
	<-h.cat.deleting // the delete is in the catalog now
	join := h.do(joinReq(9, "g", "", "m")).(*kmsg.JoinGroupResponse)
	errIs(t, "join during the delete", join.ErrorCode, kerr.CoordinatorLoadInProgress)
	codes = commitCodes(h.do(commitReq("g", "", -1, "t", map[int32]int64{0: 9})).(*kmsg.OffsetCommitResponse))
	for code, c := range codes {
		errIs(t, "commit during the delete: "+code, c, kerr.CoordinatorLoadInProgress)
	}
	close(h.cat.deleteGate)
	errIs(t, "delete", (<-done).Groups[0].ErrorCode, nil)
	h.cat.deleting = nil
	join = h.do(joinReq(9, "g", "", "m")).(*kmsg.JoinGroupResponse)
	if join.ErrorCode == kerr.CoordinatorLoadInProgress.Code {
		t.Fatal("the group is still refused after its delete")
	}
}
