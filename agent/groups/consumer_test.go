package groups

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

func consumerJoin(group, member string, topics []string) *kmsg.ConsumerGroupHeartbeatRequest {
	r := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	r.Version = 1
	r.Group, r.MemberID = group, member
	r.RebalanceTimeoutMillis = 30_000
	r.SubscribedTopicNames = topics
	r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	return r
}

// cmember plays a KIP-848 client that takes every assignment at once (so it
// acknowledges a revocation with its next heartbeat).
type cmember struct {
	h          *harness
	group, id  string
	instance   *string
	epoch      int32
	names      []string
	regex      *string
	assignor   *string
	rebalance  int32
	owned      tpSet
	lastCode   int16
	assignment bool // the last response carried an assignment
}

func (h *harness) member(group, id string, names ...string) *cmember {
	return &cmember{h: h, group: group, id: id, names: names, rebalance: 30_000, owned: tpSet{}}
}

func (m *cmember) request() *kmsg.ConsumerGroupHeartbeatRequest {
	r := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	r.Version = 1
	r.Group, r.MemberID, r.MemberEpoch = m.group, m.id, m.epoch
	r.InstanceID = m.instance
	r.RebalanceTimeoutMillis = m.rebalance
	r.SubscribedTopicNames = m.names
	if m.names == nil && m.regex == nil {
		r.SubscribedTopicNames = []string{}
	}
	r.SubscribedTopicRegex = m.regex
	r.ServerAssignor = m.assignor
	r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	if m.epoch > 0 {
		ids, parts := m.owned.byTopic()
		for _, id := range ids {
			r.Topics = append(r.Topics, kmsg.ConsumerGroupHeartbeatRequestTopic{TopicID: id, Partitions: parts[id]})
		}
	}
	return r
}

// beat sends one full heartbeat and adopts the answer.
func (m *cmember) beat() *kmsg.ConsumerGroupHeartbeatResponse {
	m.h.t.Helper()
	r := m.h.do(m.request()).(*kmsg.ConsumerGroupHeartbeatResponse)
	m.lastCode = r.ErrorCode
	m.assignment = r.Assignment != nil
	if r.ErrorCode != 0 {
		return r
	}
	if r.MemberID == nil || *r.MemberID != m.id {
		m.h.t.Fatalf("member id %v, want %s", r.MemberID, m.id)
	}
	if r.HeartbeatIntervalMillis != 5000 {
		m.h.t.Fatalf("heartbeat interval %d", r.HeartbeatIntervalMillis)
	}
	m.epoch = r.MemberEpoch
	if r.Assignment != nil {
		m.owned = tpSet{}
		for _, t := range r.Assignment.Topics {
			for _, p := range t.Partitions {
				m.owned[topicPartition{catalog.TopicID(t.TopicID), p}] = struct{}{}
			}
		}
	}
	return r
}

func (m *cmember) ownedOf(topic catalog.Topic) []int32 {
	var out []int32
	for tp := range m.owned {
		if tp.id == topic.ID {
			out = append(out, tp.p)
		}
	}
	slices.Sort(out)
	return out
}

// noOverlap fails if two members own one partition.
func noOverlap(t testing.TB, ms ...*cmember) {
	t.Helper()
	seen := make(map[topicPartition]string)
	for _, m := range ms {
		for tp := range m.owned {
			if o, ok := seen[tp]; ok {
				t.Fatalf("partition %d owned by %s and %s", tp.p, o, m.id)
			}
			seen[tp] = m.id
		}
	}
}

// settle heartbeats every member until a round changes nothing.
func settle(t testing.TB, ms ...*cmember) {
	t.Helper()
	for range 20 {
		changed := false
		for _, m := range ms {
			before := m.epoch
			owned := len(m.owned)
			m.beat()
			errIs(t, "heartbeat "+m.id, m.lastCode, nil)
			noOverlap(t, ms...)
			changed = changed || before != m.epoch || owned != len(m.owned)
		}
		if !changed {
			return
		}
	}
	t.Fatal("the group did not settle")
}

func TestConsumerUniformRevokeBeforeAssign(t *testing.T) {
	h := newHarness(t)
	topic := h.cat.addTopic("t", 6)
	a := h.member("g", "a", "t")
	a.beat()
	errIs(t, "a join", a.lastCode, nil)
	if a.epoch != 1 || len(a.owned) != 6 {
		t.Fatalf("a: epoch %d owns %v", a.epoch, a.ownedOf(topic))
	}
	b := h.member("g", "b", "t")
	b.beat()
	errIs(t, "b join", b.lastCode, nil)
	if b.epoch != 2 || len(b.owned) != 0 {
		t.Fatalf("b must wait for a's revocation: epoch %d owns %v", b.epoch, b.ownedOf(topic))
	}
	a.beat()
	if a.epoch != 1 || len(a.owned) != 3 {
		t.Fatalf("a must revoke keeping its epoch: epoch %d owns %v", a.epoch, a.ownedOf(topic))
	}
	b.beat()
	if len(b.owned) != 0 {
		t.Fatal("b got partitions a still holds")
	}
	a.beat() // acknowledges the revocation
	if a.epoch != 2 || len(a.owned) != 3 {
		t.Fatalf("a: epoch %d owns %v", a.epoch, a.ownedOf(topic))
	}
	b.beat()
	if len(b.owned) != 3 {
		t.Fatalf("b owns %v", b.ownedOf(topic))
	}
	noOverlap(t, a, b)

	d := h.consumerDescribe("g")
	if d.State != "Stable" || d.Epoch != 2 || d.AssignmentEpoch != 2 || d.AssignorName != "uniform" || len(d.Members) != 2 {
		t.Fatalf("describe: %+v", d)
	}
	m := d.Members[0]
	if m.MemberID != "a" || m.MemberEpoch != 2 || m.MemberType != 1 || len(m.Assignment.TopicPartitions) != 1 ||
		m.Assignment.TopicPartitions[0].Topic != "t" || len(m.TargetAssignment.TopicPartitions[0].Partitions) != 3 {
		t.Fatalf("describe member: %+v", m)
	}

	// A keepalive (no owned partitions, no subscription) gets no
	// assignment back when nothing changed.
	r := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	r.Version, r.Group, r.MemberID, r.MemberEpoch, r.RebalanceTimeoutMillis = 1, "g", "a", 2, -1
	resp := h.do(r).(*kmsg.ConsumerGroupHeartbeatResponse)
	errIs(t, "keepalive", resp.ErrorCode, nil)
	if resp.Assignment != nil {
		t.Fatal("keepalive got an assignment")
	}

	// b leaves: a gets everything.
	leave := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	leave.Version, leave.Group, leave.MemberID, leave.MemberEpoch = 1, "g", "b", -1
	lr := h.do(leave).(*kmsg.ConsumerGroupHeartbeatResponse)
	errIs(t, "leave", lr.ErrorCode, nil)
	if lr.MemberEpoch != -1 {
		t.Fatalf("leave epoch %d", lr.MemberEpoch)
	}
	a.beat()
	if len(a.owned) != 6 || a.epoch != 3 {
		t.Fatalf("after leave a: epoch %d owns %v", a.epoch, a.ownedOf(topic))
	}
}

func (h *harness) topicID(name string) [16]byte {
	t, _ := h.cat.Topic(nil, name)
	return t.ID
}

func (h *harness) consumerDescribe(group string) kmsg.ConsumerGroupDescribeResponseGroup {
	h.t.Helper()
	r := kmsg.NewPtrConsumerGroupDescribeRequest()
	r.Version = 1
	r.Groups = []string{group}
	return h.do(r).(*kmsg.ConsumerGroupDescribeResponse).Groups[0]
}

func TestConsumerRangeAssignor(t *testing.T) {
	h := newHarness(t)
	t1, t2 := h.cat.addTopic("t1", 5), h.cat.addTopic("t2", 5)
	rangeName := "range"
	ms := []*cmember{h.member("g", "m1", "t1", "t2"), h.member("g", "m2", "t1", "t2")}
	for _, m := range ms {
		m.assignor = &rangeName
	}
	settle(t, ms...)
	for _, tc := range []struct {
		m     *cmember
		topic catalog.Topic
		want  []int32
	}{
		{ms[0], t1, []int32{0, 1, 2}}, {ms[0], t2, []int32{0, 1, 2}},
		{ms[1], t1, []int32{3, 4}}, {ms[1], t2, []int32{3, 4}},
	} {
		if got := tc.m.ownedOf(tc.topic); !slices.Equal(got, tc.want) {
			t.Fatalf("%s owns %s %v, want %v", tc.m.id, tc.topic.Name, got, tc.want)
		}
	}
	if d := h.consumerDescribe("g"); d.AssignorName != "range" {
		t.Fatalf("assignor %q", d.AssignorName)
	}
}

func TestConsumerRegexSubscription(t *testing.T) {
	h := newHarness(t)
	h.cat.addTopic("foo-1", 2)
	h.cat.addTopic("foo-2", 2)
	h.cat.addTopic("bar", 2)
	h.cat.addTopic("xfoo-1", 2) // the regex matches whole names only
	re := "foo-.*"
	m := h.member("g", "m")
	m.names, m.regex = nil, &re
	settle(t, m)
	if len(m.owned) != 4 {
		t.Fatalf("owns %d partitions, want foo-1 and foo-2's 4", len(m.owned))
	}
	foo3 := h.cat.addTopic("foo-3", 2)
	h.advance(3 * time.Second) // past the topic cache's TTL
	settle(t, m)
	if len(m.owned) != 6 || len(m.ownedOf(foo3)) != 2 {
		t.Fatalf("a new matching topic was not assigned: %d partitions", len(m.owned))
	}
	if d := h.consumerDescribe("g"); d.Members[0].SubscribedTopicRegex == nil || *d.Members[0].SubscribedTopicRegex != re {
		t.Fatalf("describe: %+v", d.Members[0])
	}
	// Added partitions are assigned too.
	h.cat.addTopic("foo-1", 4)
	h.advance(3 * time.Second)
	settle(t, m)
	if len(m.owned) != 8 {
		t.Fatalf("added partitions not assigned: %d", len(m.owned))
	}
}

func TestConsumerHeartbeatErrors(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxMetadataBytes = 256 })
	h.cat.addTopic("t", 2)
	a := h.member("g", "a", "t")
	settle(t, a)
	b := h.member("g", "b", "t")
	settle(t, a, b)
	x := h.member("g", "x", "t")
	settle(t, a, b, x)
	leaveX := x.request()
	leaveX.MemberEpoch = -1
	h.do(leaveX)
	settle(t, a, b)
	if a.epoch < 4 {
		t.Fatalf("a's epoch is only %d", a.epoch)
	}
	h.stableGroup("classic", 1)

	mod := func(f func(r *kmsg.ConsumerGroupHeartbeatRequest)) *kmsg.ConsumerGroupHeartbeatRequest {
		r := a.request()
		f(r)
		return r
	}
	join := func(f func(r *kmsg.ConsumerGroupHeartbeatRequest)) *kmsg.ConsumerGroupHeartbeatRequest {
		r := consumerJoin("g", "new", []string{"t"})
		f(r)
		return r
	}
	for _, tc := range []struct {
		name string
		req  *kmsg.ConsumerGroupHeartbeatRequest
		want *kerr.Error
	}{
		{"epoch ahead", mod(func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberEpoch++ }), kerr.FencedMemberEpoch},
		{"previous epoch owning others' partitions", mod(func(r *kmsg.ConsumerGroupHeartbeatRequest) {
			r.MemberEpoch--
			r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{{TopicID: h.topicID("t"), Partitions: []int32{0, 1}}}
		}), kerr.FencedMemberEpoch},
		{"two epochs behind", mod(func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberEpoch -= 2 }), kerr.FencedMemberEpoch},
		{"unknown member", mod(func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberID = "ghost" }), kerr.UnknownMemberID},
		{"unknown group", mod(func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.Group = "nope" }), kerr.UnknownMemberID},
		{"empty group", mod(func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.Group = "" }), kerr.InvalidRequest},
		{"empty member id", join(func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberID = "" }), kerr.InvalidRequest},
		{"join without rebalance timeout", join(func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.RebalanceTimeoutMillis = -1 }), kerr.InvalidRequest},
		{"join owning partitions", join(func(r *kmsg.ConsumerGroupHeartbeatRequest) {
			r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{{Partitions: []int32{0}}}
		}), kerr.InvalidRequest},
		{"join without subscription", join(func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.SubscribedTopicNames = nil }), kerr.InvalidRequest},
		{"epoch -3", mod(func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberEpoch = -3 }), kerr.InvalidRequest},
		{"static leave without instance", mod(func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberEpoch = -2 }), kerr.InvalidRequest},
		{"empty instance id", join(func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.InstanceID = kmsg.StringPtr("") }), kerr.InvalidRequest},
		{"unknown assignor", join(func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.ServerAssignor = kmsg.StringPtr("sticky") }), kerr.UnsupportedAssignor},
		{"bad regex", join(func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.SubscribedTopicRegex = kmsg.StringPtr("(") }), kerr.InvalidRegularExpression},
		{"regex valid only once anchored", join(func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.SubscribedTopicRegex = kmsg.StringPtr("t)|(x") }), kerr.InvalidRegularExpression},
		{"huge regex", join(func(r *kmsg.ConsumerGroupHeartbeatRequest) {
			r.SubscribedTopicRegex = kmsg.StringPtr(strings.Repeat("a", maxRegexBytes+1))
		}), kerr.InvalidRegularExpression},
		{"oversized subscription", join(func(r *kmsg.ConsumerGroupHeartbeatRequest) {
			r.SubscribedTopicNames = []string{strings.Repeat("t", 300)}
		}), kerr.InvalidRequest},
		{"classic group", join(func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.Group = "classic" }), kerr.GroupIDNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(tc.req).(*kmsg.ConsumerGroupHeartbeatResponse)
			errIs(t, "heartbeat", r.ErrorCode, tc.want)
			if tc.want == kerr.InvalidRequest && r.ErrorMessage == nil {
				t.Fatal("INVALID_REQUEST without a message")
			}
		})
	}
	// Nothing changed: both still hold their partitions at the same epoch.
	epochA, ownedA := a.epoch, len(a.owned)
	settle(t, a, b)
	if a.epoch != epochA || len(a.owned) != ownedA {
		t.Fatalf("bad heartbeats changed the group: epoch %d→%d", epochA, a.epoch)
	}
	// A classic JoinGroup cannot take over a consumer group with members.
	errIs(t, "classic join", h.do(joinReq(9, "g", "", "m")).(*kmsg.JoinGroupResponse).ErrorCode, kerr.InconsistentGroupProtocol)

	// The previous epoch is accepted when the member reports owning only
	// what it still has: it lost our last response.
	g, _ := h.c.lockGroup("g", false, kindConsumer)
	prev := g.cg.members["a"].prevEpoch
	g.mu.Unlock()
	if prev <= 0 {
		t.Fatalf("a's previous epoch is %d", prev)
	}
	lost := a.request()
	lost.MemberEpoch = prev
	errIs(t, "previous epoch", h.do(lost).(*kmsg.ConsumerGroupHeartbeatResponse).ErrorCode, nil)
}

func TestConsumerStaticMember(t *testing.T) {
	h := newHarness(t)
	topic := h.cat.addTopic("t", 4)
	inst := "inst"
	s := h.member("g", "s1", "t")
	s.instance = &inst
	other := h.member("g", "o", "t")
	settle(t, s, other)
	epoch, mine := s.epoch, s.ownedOf(topic)

	dup := h.member("g", "s-dup", "t")
	dup.instance = &inst
	dup.beat()
	errIs(t, "second holder", dup.lastCode, kerr.UnreleasedInstanceID)

	leave := s.request()
	leave.MemberEpoch = -2
	lr := h.do(leave).(*kmsg.ConsumerGroupHeartbeatResponse)
	errIs(t, "static leave", lr.ErrorCode, nil)
	if lr.MemberEpoch != -2 {
		t.Fatalf("static leave epoch %d", lr.MemberEpoch)
	}
	if d := h.consumerDescribe("g"); d.Members[1].MemberEpoch != -2 || d.Epoch != epoch {
		t.Fatalf("after static leave: %+v", d)
	}
	// The restarted process takes over the identity with a new member id:
	// same partitions, same epoch, no rebalance.
	s2 := h.member("g", "s2", "t")
	s2.instance = &inst
	s2.beat()
	errIs(t, "rejoin", s2.lastCode, nil)
	if s2.epoch != epoch || !slices.Equal(s2.ownedOf(topic), mine) {
		t.Fatalf("rejoin: epoch %d owns %v, want %d %v", s2.epoch, s2.ownedOf(topic), epoch, mine)
	}
	s.beat()
	errIs(t, "old id", s.lastCode, kerr.UnknownMemberID)
	settle(t, s2, other)
	if s2.epoch != epoch {
		t.Fatal("the static rejoin rebalanced")
	}
}

// A restarted static member (same instance id, new member id) keeps its
// place in the range assignor's order, as in Kafka: when a dynamic member
// joins, only what the new member takes moves (3 of 6 partitions), not
// every range.
func TestConsumerRangeStaticRestartKeepsRanges(t *testing.T) {
	h := newHarness(t)
	topic := h.cat.addTopic("t", 6)
	rangeName := "range"
	join := func(id, instance string) *cmember {
		m := h.member("g", id, "t")
		m.assignor = &rangeName
		if instance != "" {
			m.instance = &instance
		}
		return m
	}
	a, b := join("m1", "A"), join("m2", "B")
	settle(t, a, b)
	leave := a.request()
	leave.MemberEpoch = -2
	errIs(t, "static leave", h.do(leave).(*kmsg.ConsumerGroupHeartbeatResponse).ErrorCode, nil)
	a = join("m9", "A") // sorts after m2 by member id
	c := join("m5", "") // dynamic, between them by member id
	settle(t, a, b, c)
	for _, tc := range []struct {
		m    *cmember
		want []int32
	}{{a, []int32{0, 1}}, {b, []int32{2, 3}}, {c, []int32{4, 5}}} {
		if got := tc.m.ownedOf(topic); !slices.Equal(got, tc.want) {
			t.Fatalf("%s owns %v, want %v (static members first, by instance id)", tc.m.id, got, tc.want)
		}
	}
}

// A heartbeat reads the topic list before it takes the group's lock, so it
// may hold an older list than a heartbeat that took the lock before it: the
// group must not go back to that list (the target shrank from 8 partitions
// to 4, under a new epoch, until the next heartbeat).
func TestConsumerOlderTopicListIgnored(t *testing.T) {
	h := newHarness(t)
	topic := h.cat.addTopic("t", 4)
	a, b := h.member("g", "a", "t"), h.member("g", "b", "t")
	settle(t, a, b)
	older := h.c.topics.last()
	h.cat.addTopic("t", 8)
	h.advance(3 * time.Second) // past the topic cache's TTL
	settle(t, a, b)
	if n := len(a.ownedOf(topic)) + len(b.ownedOf(topic)); n != 8 {
		t.Fatalf("%d partitions owned after adding partitions, want 8", n)
	}

	g, _ := h.c.lockGroup("g", false, kindConsumer)
	epoch := g.cg.epoch
	p, code, msg := h.c.consumerParams("client", "host", a.request())
	if code != 0 {
		g.mu.Unlock()
		t.Fatal(code, msg)
	}
	res := g.consumerHeartbeat(p, older)
	after, target := g.cg.epoch, len(g.cg.target["a"])+len(g.cg.target["b"])
	g.mu.Unlock()
	if res.code != 0 || after != epoch || target != 8 {
		t.Fatalf("an older topic list: code %d, epoch %d -> %d, target %d partitions (want %d, 8)", res.code, epoch, after, target, epoch)
	}
	settle(t, a, b)
	if a.epoch != epoch || len(a.owned)+len(b.owned) != 8 {
		t.Fatalf("members at epoch %d with %d partitions, want %d with 8", a.epoch, len(a.owned)+len(b.owned), epoch)
	}
}

// Members share their resolved subscriptions: a regex (or a list of names)
// is matched against the topics once per version of the topic list, not
// once per member and membership change (300 members on one regex over
// 5,000 topics held the group's lock ~1 s per join), with the same result.
func TestConsumerSubscriptionsResolvedOnce(t *testing.T) {
	h := newHarness(t)
	for i := range 200 {
		h.cat.addTopic(fmt.Sprintf("orders-%03d", i), 1)
	}
	re := `orders-0\d[1-9]` // 90 topics
	var ms []*cmember
	for i := range 40 {
		m := h.member("g", fmt.Sprintf("m%02d", i), "orders-150", "orders-199")
		if i%4 != 0 {
			m.names, m.regex = nil, &re
		}
		m.beat()
		errIs(t, "join "+m.id, m.lastCode, nil)
		ms = append(ms, m)
	}
	settle(t, ms...)
	check := func(partitions int) {
		t.Helper()
		snap := h.c.topics.last()
		if n := snap.resolved.computed; n != 2 {
			t.Fatalf("%d subscriptions resolved for 2 distinct ones", n)
		}
		g, _ := h.c.lockGroup("g", false, kindConsumer)
		defer g.mu.Unlock()
		owned := 0
		for _, m := range g.cg.members {
			got, want := snap.subscribed(m.subscriptionKey(), m), m.subscribedTopics(snap)
			if !maps.Equal(got, want) {
				t.Fatalf("%s: %d topics shared, %d resolved alone", m.id, len(got), len(want))
			}
			owned += len(m.assigned)
		}
		if owned != partitions {
			t.Fatalf("%d partitions owned, want %d", owned, partitions)
		}
	}
	check(92)
	// A new version of the list (a topic created, partitions added to a
	// matched one) is resolved anew, once.
	h.cat.addTopic("orders-200", 1)
	h.cat.addTopic("orders-091", 3)
	h.advance(3 * time.Second) // past the topic cache's TTL
	settle(t, ms...)
	check(94)
}

func TestConsumerSessionAndRebalanceTimeouts(t *testing.T) {
	h := newHarness(t)
	h.cat.addTopic("t", 4)
	a, b := h.member("g", "a", "t"), h.member("g", "b", "t")
	settle(t, a, b)
	h.advance(30 * time.Second)
	a.beat()
	h.advance(20 * time.Second) // b silent for 50s > 45s
	a.beat()
	if len(a.owned) != 4 {
		t.Fatalf("a owns %d after b expired", len(a.owned))
	}
	b.beat()
	errIs(t, "expired member", b.lastCode, kerr.UnknownMemberID)

	// c joins; a must revoke within its rebalance timeout (5s) or go.
	a.rebalance = 5000
	a.beat()
	c := h.member("g", "c", "t")
	c.beat()
	r := h.do(a.request()).(*kmsg.ConsumerGroupHeartbeatResponse) // told to revoke, does not ack
	errIs(t, "a", r.ErrorCode, nil)
	h.advance(6 * time.Second)
	c.beat()
	if len(c.owned) != 4 {
		t.Fatalf("c owns %d after a timed out revoking", len(c.owned))
	}
}

func TestConsumerOffsetEpochs(t *testing.T) {
	h := newHarness(t)
	topic := h.cat.addTopic("t", 2)
	a, b := h.member("g", "a", "t"), h.member("g", "b", "t")
	settle(t, a, b)
	mine, theirs := a.ownedOf(topic)[0], b.ownedOf(topic)[0]
	for _, tc := range []struct {
		name   string
		member string
		epoch  int32
		part   int32
		want   *kerr.Error
	}{
		{"current epoch", "a", a.epoch, mine, nil},
		{"future epoch", "a", a.epoch + 1, mine, kerr.StaleMemberEpoch},
		{"older epoch, owned", "a", a.epoch - 1, mine, nil},
		{"older epoch, not owned", "a", a.epoch - 1, theirs, kerr.StaleMemberEpoch},
		{"unknown member", "z", a.epoch, mine, kerr.UnknownMemberID},
		{"no member info", "", -1, mine, kerr.UnknownMemberID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := commitReq("g", tc.member, tc.epoch, "t", map[int32]int64{tc.part: 5})
			errIs(t, "commit", commitCodes(h.do(r).(*kmsg.OffsetCommitResponse))[fmt.Sprintf("t/%d", tc.part)], tc.want)
		})
	}
	fetch := func(member string, epoch int32) int16 {
		f := kmsg.NewPtrOffsetFetchRequest()
		f.Version = 9
		f.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g", MemberID: kmsg.StringPtr(member), MemberEpoch: epoch}}
		return h.do(f).(*kmsg.OffsetFetchResponse).Groups[0].ErrorCode
	}
	// Below v9 the field is a generation: a KIP-848 member must not use
	// it (Kafka: UNSUPPORTED_VERSION for its partitions).
	old := commitReq("g", "a", a.epoch, "t", map[int32]int64{mine: 6})
	old.Version = 8
	errIs(t, "v8 commit by a KIP-848 member", commitCodes(h.do(old).(*kmsg.OffsetCommitResponse))[fmt.Sprintf("t/%d", mine)], kerr.UnsupportedVersion)
	errIs(t, "fetch current", fetch("a", a.epoch), nil)
	errIs(t, "fetch stale", fetch("a", a.epoch-1), kerr.StaleMemberEpoch)
	errIs(t, "fetch unknown", fetch("z", 1), kerr.UnknownMemberID)
}

// TestConsumerChurnNeverDoublesOwnership joins, heartbeats and removes
// members at random and checks after every step that no partition has two
// owners, then that the group converges to a balanced full assignment.
func TestConsumerChurnNeverDoublesOwnership(t *testing.T) {
	h := newHarness(t)
	h.cat.addTopic("a", 7)
	h.cat.addTopic("b", 5)
	rng := rand.New(rand.NewPCG(1, 2))
	var live []*cmember
	next := 0
	for step := range 300 {
		switch op := rng.IntN(10); {
		case op < 2 && len(live) < 6:
			next++
			topics := []string{"a", "b"}
			if rng.IntN(3) == 0 {
				topics = []string{"a"}
			}
			live = append(live, h.member("g", fmt.Sprintf("m%d", next), topics...))
		case op < 3 && len(live) > 1:
			i := rng.IntN(len(live))
			r := live[i].request()
			r.MemberEpoch = -1
			h.do(r)
			live = slices.Delete(live, i, i+1)
		default:
			if len(live) == 0 {
				continue
			}
			m := live[rng.IntN(len(live))]
			m.beat()
			if m.lastCode != 0 {
				t.Fatalf("step %d: %s got %s", step, m.id, errName(m.lastCode))
			}
		}
		noOverlap(t, live...)
	}
	settle(t, live...)
	total := 0
	for _, m := range live {
		total += len(m.owned)
	}
	if total != 12 {
		t.Fatalf("%d of 12 partitions assigned after settling", total)
	}
	if d := h.consumerDescribe("g"); d.State != "Stable" {
		t.Fatalf("state %s", d.State)
	}
}

// A member that rejoins in place (epoch 0, same member id) under another
// instance id must move its static entry: a stale entry named a member
// that was later removed, and the next join with that instance id then
// dereferenced nil while holding the group's lock, wedging the group and
// the coordinator's timers.
func TestConsumerRejoinWithNewInstanceID(t *testing.T) {
	h := newHarness(t)
	h.cat.addTopic("t", 4)
	i, j := "i", "j"
	a := h.member("g", "a", "t")
	a.instance = &i
	settle(t, a)
	a.epoch, a.instance = 0, &j
	a.beat()
	errIs(t, "rejoin as j", a.lastCode, nil)
	a.beat()
	errIs(t, "heartbeat as j", a.lastCode, nil)
	leave := a.request()
	leave.MemberEpoch, leave.InstanceID = -1, nil
	errIs(t, "leave", h.do(leave).(*kmsg.ConsumerGroupHeartbeatResponse).ErrorCode, nil)

	b := h.member("g", "b", "t")
	b.instance = &i
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("join as i panicked: %v", r)
			}
		}()
		b.beat()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("join as i hung")
	}
	errIs(t, "join as i", b.lastCode, nil)
	settle(t, b)
	if len(b.owned) != 4 {
		t.Fatalf("b owns %d partitions, want 4", len(b.owned))
	}
}

// A static takeover under the id of another live member replaces that
// member: overwriting it in place left its partitions held by nobody, so
// no member was ever assigned them again.
func TestConsumerStaticTakeoverOverLiveMemberID(t *testing.T) {
	h := newHarness(t)
	h.cat.addTopic("t", 4)
	inst := "inst"
	s := h.member("g", "s", "t")
	s.instance = &inst
	x := h.member("g", "x", "t")
	settle(t, s, x)
	leave := s.request()
	leave.MemberEpoch = -2
	errIs(t, "static leave", h.do(leave).(*kmsg.ConsumerGroupHeartbeatResponse).ErrorCode, nil)

	y := h.member("g", "x", "t") // x's id, s's instance
	y.instance = &inst
	y.beat()
	errIs(t, "takeover", y.lastCode, nil)
	bye := y.request()
	bye.MemberEpoch = -1
	errIs(t, "leave", h.do(bye).(*kmsg.ConsumerGroupHeartbeatResponse).ErrorCode, nil)

	n := h.member("g", "n", "t")
	settle(t, n)
	if len(n.owned) != 4 {
		t.Fatalf("the only member owns %d partitions, want 4", len(n.owned))
	}
	if b := h.c.metaBytes.Load(); b != n.bytes(h) {
		t.Fatalf("accounted metadata %d bytes, want the one member's %d", b, n.bytes(h))
	}
}

// bytes is the metadata accounted for m.
func (m *cmember) bytes(h *harness) int64 {
	g, _ := h.c.lockGroup(m.group, false, kindConsumer)
	defer g.mu.Unlock()
	return g.cg.members[m.id].bytes
}
