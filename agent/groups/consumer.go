package groups

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

// KIP-848 consumer groups: the coordinator computes a target assignment
// (group epoch → assignment epoch) whenever members or their subscriptions
// or the subscribed topics change, and moves each member toward it through
// its heartbeats. A member first gives up (revokes) partitions that are no
// longer its own, keeping its epoch; only once it no longer owns them does
// it move to the new epoch and receive new partitions, and only those no
// other member still holds. So no partition is ever owned by two members.
// Everything here runs with the group's lock held.

// reconcile states of a member.
type memberState int8

const (
	memberStable     memberState = iota // has its target assignment
	memberUnrevoked                     // must give up partitions first
	memberUnreleased                    // waits for partitions others still hold
)

type consumerMember struct {
	id         string
	instanceID *string
	rackID     *string
	clientID   string
	clientHost string
	epoch      int32
	prevEpoch  int32
	state      memberState
	assigned   tpSet
	revoking   tpSet
	names      []string // subscribed topic names, sorted
	regex      string
	re         *regexp.Regexp
	assignor   string
	rebalance  time.Duration
	lastSeen   time.Time
	revokeBy   time.Time
	// left: a static member that left with epoch -2 and may come back
	// under a new member id, taking over its assignment.
	left  bool
	bytes int64
}

type consumerGroup struct {
	epoch           int32
	assignmentEpoch int32
	members         map[string]*consumerMember
	static          map[string]string // instance id → member id
	target          map[string]tpSet
	owners          map[topicPartition]string // who holds a partition (assigned or revoking)
	// The subscribed topics' metadata the current epoch was computed for,
	// and what it was computed from, to notice changes cheaply.
	subsChanged bool
	snapVersion uint64
	subsHash    uint64
	assignor    string
}

func (cg *consumerGroup) init() {
	*cg = consumerGroup{
		members: make(map[string]*consumerMember),
		static:  make(map[string]string),
		target:  make(map[string]tpSet),
		owners:  make(map[topicPartition]string),
	}
}

// state is the group state as ConsumerGroupDescribe and ListGroups name it.
func (cg *consumerGroup) state() string {
	switch {
	case len(cg.members) == 0:
		return "Empty"
	case cg.epoch > cg.assignmentEpoch:
		return "Assigning"
	}
	for _, m := range cg.members {
		if m.epoch != cg.assignmentEpoch || m.state != memberStable {
			return "Reconciling"
		}
	}
	return "Stable"
}

// cgParams is a validated ConsumerGroupHeartbeat.
type cgParams struct {
	memberID   string
	epoch      int32
	instanceID *string
	rackID     *string
	clientID   string
	clientHost string
	rebalance  int32 // -1: unchanged
	names      []string
	regex      *string
	re         *regexp.Regexp
	assignor   *string
	owned      tpSet // nil: unchanged
	full       bool
	now        time.Time
}

type cgResult struct {
	code     int16
	msg      string
	memberID string
	epoch    int32
	assign   tpSet // nil: no assignment in the response
}

func cgFail(code int16, msg string) cgResult { return cgResult{code: code, msg: msg} }

// heartbeat handles a ConsumerGroupHeartbeat.
func (g *group) consumerHeartbeat(p *cgParams, snap *topicSnapshot) cgResult {
	if g.kind == kindClassic {
		if !g.noMembers() {
			return cgFail(kerr.GroupIDNotFound.Code, fmt.Sprintf("Group %s is not a consumer group.", g.id))
		}
		g.kind = kindConsumer
		g.cl.init() // drops pending classic members
		g.cg.init()
	}
	cg := &g.cg
	switch p.epoch {
	case -1, -2:
		return g.consumerLeave(p)
	}
	// snap was read before the group's lock was taken: a heartbeat that
	// read a newer one since may have moved the group to it already, and
	// going back would shrink the target (partitions added, topics
	// created) only for the next heartbeat to grow it again.
	if snap != nil && snap.version < cg.snapVersion {
		snap = g.c.topics.last()
	}
	var m *consumerMember
	if p.epoch == 0 {
		var res cgResult
		if m, res = g.consumerJoin(p); m == nil {
			return res
		}
	} else {
		m = cg.members[p.memberID]
		switch {
		case m == nil:
			return cgFail(kerr.UnknownMemberID.Code, "")
		case p.instanceID != nil && cg.static[*p.instanceID] != m.id:
			return cgFail(kerr.FencedInstanceID.Code, "")
		case m.left || p.epoch > m.epoch:
			return cgFail(kerr.FencedMemberEpoch.Code, "The member epoch is larger than the group's.")
		case p.epoch < m.epoch && !(p.epoch == m.prevEpoch && p.owned != nil && subset(p.owned, m.assigned)):
			return cgFail(kerr.FencedMemberEpoch.Code, "The member epoch is older than the group's.")
		}
	}
	before := m.assigned
	if code := g.updateConsumerMember(m, p); code != 0 {
		return cgFail(code, "the coordinator's memory budget for member metadata is exhausted")
	}
	cg.refreshTarget(g, snap)
	if cg.reconcile(m, p.owned, p.now) {
		g.dirty = true
	}
	res := cgResult{memberID: m.id, epoch: m.epoch}
	if p.full || !before.equal(m.assigned) {
		res.assign = m.assigned
	}
	return res
}

// consumerJoin finds or adds the member of an epoch-0 heartbeat.
func (g *group) consumerJoin(p *cgParams) (*consumerMember, cgResult) {
	cg := &g.cg
	g.dirty = true // a new or returning member is stored
	if p.instanceID != nil {
		if holder, ok := cg.static[*p.instanceID]; ok && holder != p.memberID {
			old := cg.members[holder]
			if !old.left {
				return nil, cgFail(kerr.UnreleasedInstanceID.Code, fmt.Sprintf("Static member %s with instance id %s is still in the group.", holder, *p.instanceID))
			}
			// The static member restarted: it takes over its old identity's
			// epoch and partitions, without a rebalance. Another member
			// already under the new id is replaced: overwriting it would
			// leave its partitions held by nobody, forever.
			if cur := cg.members[p.memberID]; cur != nil {
				g.removeConsumer(cur, "fenced")
			}
			delete(cg.members, holder)
			old.id, old.left = p.memberID, false
			cg.members[old.id] = old
			cg.static[*p.instanceID] = old.id
			if t, ok := cg.target[holder]; ok {
				delete(cg.target, holder)
				cg.target[old.id] = t
			}
			for tp, o := range cg.owners {
				if o == holder {
					cg.owners[tp] = old.id
				}
			}
			g.c.m.removals.WithLabelValues("consumer", "fenced").Inc()
			return old, cgResult{}
		}
	}
	if m := cg.members[p.memberID]; m != nil {
		// The member rejoins in place (it lost a response or was fenced):
		// it keeps what it has and gets it all again. A new instance id
		// moves its static entry, so static and members stay consistent
		// (a stale entry would name a removed member).
		if p.instanceID != nil && (m.instanceID == nil || *m.instanceID != *p.instanceID) {
			if m.instanceID != nil && cg.static[*m.instanceID] == m.id {
				delete(cg.static, *m.instanceID)
			}
			cg.static[*p.instanceID] = m.id
		}
		m.left = false
		return m, cgResult{}
	}
	if len(cg.members) >= g.c.cfg.GroupMaxSize {
		return nil, cgFail(kerr.GroupMaxSizeReached.Code, fmt.Sprintf("The consumer group has reached its maximum capacity of %d members.", g.c.cfg.GroupMaxSize))
	}
	m := &consumerMember{id: p.memberID, assigned: tpSet{}, instanceID: p.instanceID}
	cg.members[m.id] = m
	if p.instanceID != nil {
		cg.static[*p.instanceID] = m.id
	}
	g.c.m.members[kindConsumer].Add(1)
	cg.bump(g)
	return m, cgResult{}
}

// updateConsumerMember applies the fields the heartbeat carries (null ones
// are unchanged).
func (g *group) updateConsumerMember(m *consumerMember, p *cgParams) int16 {
	cg := &g.cg
	names, regex, instance, rack := m.names, m.regex, m.instanceID, m.rackID
	if p.names != nil {
		names = p.names
	}
	if p.regex != nil {
		regex = *p.regex
	}
	if p.instanceID != nil {
		instance = p.instanceID
	}
	if p.rackID != nil {
		rack = p.rackID
	}
	n := memberSize(m.id, p.clientID, p.clientHost, regex, names, instance, rack)
	if !g.c.adjustBytes(&m.bytes, n) {
		return kerr.CoordinatorNotAvailable.Code
	}
	m.lastSeen = p.now
	m.clientID, m.clientHost = p.clientID, p.clientHost
	m.instanceID, m.rackID = instance, rack
	if p.rebalance >= 0 {
		m.rebalance = millis(p.rebalance)
	}
	changed := false
	if !slices.Equal(names, m.names) {
		m.names, changed = names, true
	}
	if regex != m.regex {
		m.regex, m.re, changed = regex, p.re, true
	}
	if p.assignor != nil && *p.assignor != m.assignor {
		m.assignor, changed = *p.assignor, true
	}
	if changed {
		cg.subsChanged = true
		cg.bump(g)
	}
	return 0
}

// memberSize is what the coordinator accounts for a member's metadata.
func memberSize(id, clientID, clientHost, regex string, names []string, instance, rack *string) int64 {
	n := int64(len(id) + len(clientID) + len(clientHost) + len(regex))
	for _, s := range names {
		n += int64(len(s))
	}
	for _, s := range []*string{instance, rack} {
		if s != nil {
			n += int64(len(*s))
		}
	}
	return n
}

func (m *consumerMember) size() int64 {
	return memberSize(m.id, m.clientID, m.clientHost, m.regex, m.names, m.instanceID, m.rackID)
}

// bump starts a new group epoch unless one is already pending: the target
// is computed at the next heartbeat from the state at that time, so one
// new epoch covers every change made before it.
func (cg *consumerGroup) bump(g *group) {
	g.dirty = true
	if cg.epoch > cg.assignmentEpoch {
		return
	}
	cg.epoch++
	g.c.m.rebalances.WithLabelValues("consumer").Inc()
}

// subscriptionKey identifies m's subscription: members with equal keys
// subscribe to the same topics. Each part is length-prefixed, so that no
// two subscriptions share a key.
func (m *consumerMember) subscriptionKey() string {
	var b strings.Builder
	for _, s := range append([]string{m.regex}, m.names...) {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	return b.String()
}

// subscribedTopics resolves m's subscription against snap (uncached: see
// topicSnapshot.subscribed).
func (m *consumerMember) subscribedTopics(snap *topicSnapshot) map[catalog.TopicID]bool {
	out := make(map[catalog.TopicID]bool)
	for _, n := range m.names {
		if t, ok := snap.byName[n]; ok {
			out[t.ID] = true
		}
	}
	if m.re != nil {
		for _, n := range snap.names {
			if m.re.MatchString(n) {
				out[snap.byName[n].ID] = true
			}
		}
	}
	return out
}

// refreshTarget bumps the epoch when the subscribed topics changed (a topic
// matching a regex was created, partitions were added) and recomputes the
// target assignment when the epoch moved past it.
func (cg *consumerGroup) refreshTarget(g *group, snap *topicSnapshot) {
	if snap == nil {
		return
	}
	if cg.subsChanged || snap.version != cg.snapVersion {
		cg.subsChanged, cg.snapVersion = false, snap.version
		if h := cg.subscriptionHash(snap); h != cg.subsHash {
			cg.subsHash = h
			cg.bump(g)
		}
	}
	if cg.epoch <= cg.assignmentEpoch {
		return
	}
	ids := make([]string, 0, len(cg.members))
	for id := range cg.members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	specs := make([]memberSpec, 0, len(ids))
	partitions := make(map[catalog.TopicID]int32)
	done := make(map[string]bool)
	for _, id := range ids {
		m := cg.members[id]
		key := m.subscriptionKey()
		spec := memberSpec{id: id, instance: m.instanceID, topics: snap.subscribed(key, m)}
		if !done[key] {
			done[key] = true
			for t := range spec.topics {
				partitions[t] = snap.byName[snap.byID[t]].Partitions
			}
		}
		specs = append(specs, spec)
	}
	cg.assignor = cg.preferredAssignor(g.c.cfg.ConsumerAssignors)
	cg.target = assign(cg.assignor, specs, partitions, cg.target)
	cg.assignmentEpoch = cg.epoch
	g.dirty = true
}

// subscriptionHash fingerprints every subscribed topic's id and partition
// count.
func (cg *consumerGroup) subscriptionHash(snap *topicSnapshot) uint64 {
	topics := make(map[catalog.TopicID]bool)
	done := make(map[string]bool)
	for _, m := range cg.members {
		key := m.subscriptionKey()
		if done[key] {
			continue
		}
		done[key] = true
		for t := range snap.subscribed(key, m) {
			topics[t] = true
		}
	}
	ids := make([]catalog.TopicID, 0, len(topics))
	for t := range topics {
		ids = append(ids, t)
	}
	slices.SortFunc(ids, func(a, b catalog.TopicID) int { return compareTP(topicPartition{id: a}, topicPartition{id: b}) })
	h := fnv.New64a()
	for _, t := range ids {
		h.Write(t[:])
		n := snap.byName[snap.byID[t]].Partitions
		h.Write([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	}
	return h.Sum64()
}

// preferredAssignor is the assignor most members name, the configured
// order breaking ties, the first configured when none is named.
func (cg *consumerGroup) preferredAssignor(configured []string) string {
	votes := make(map[string]int)
	for _, m := range cg.members {
		if m.assignor != "" {
			votes[m.assignor]++
		}
	}
	best := configured[0]
	for _, a := range configured {
		if votes[a] > votes[best] {
			best = a
		}
	}
	return best
}

// reconcile moves m toward its target assignment. owned is what the member
// reported owning (nil when it did not say). It reports whether m's
// epoch, state or partitions changed (the group's stored state must
// follow).
func (cg *consumerGroup) reconcile(m *consumerMember, owned tpSet, now time.Time) (changed bool) {
	if m.state == memberUnrevoked {
		if owned == nil || intersects(owned, m.revoking) {
			return false // still revoking
		}
		cg.release(m, m.revoking)
		m.revoking = nil
		m.state = memberStable
		changed = true
	}
	if m.epoch == cg.assignmentEpoch && m.state == memberStable {
		return changed
	}
	target := cg.target[m.id]
	keep, revoke := tpSet{}, tpSet{}
	for tp := range m.assigned {
		if target.has(tp) {
			keep[tp] = struct{}{}
		} else {
			revoke[tp] = struct{}{}
		}
	}
	if len(revoke) > 0 {
		m.assigned, m.revoking = keep, revoke
		m.state = memberUnrevoked
		m.revokeBy = now.Add(m.rebalance)
		return true
	}
	before, epoch, state := m.assigned, m.epoch, m.state
	missing := false
	for tp := range target {
		if keep.has(tp) {
			continue
		}
		if o := cg.owners[tp]; o != "" && o != m.id {
			missing = true
			continue
		}
		cg.owners[tp] = m.id
		keep[tp] = struct{}{}
	}
	m.assigned = keep
	if m.epoch != cg.assignmentEpoch {
		m.prevEpoch, m.epoch = m.epoch, cg.assignmentEpoch
	}
	m.state = memberStable
	if missing {
		m.state = memberUnreleased
	}
	return changed || m.epoch != epoch || m.state != state || !keep.equal(before)
}

// release gives up m's hold on parts.
func (cg *consumerGroup) release(m *consumerMember, parts tpSet) {
	for tp := range parts {
		if cg.owners[tp] == m.id {
			delete(cg.owners, tp)
		}
	}
}

// consumerLeave handles epoch -1 (leave) and -2 (a static member leaves
// for now and keeps its partitions until it returns or its session ends).
func (g *group) consumerLeave(p *cgParams) cgResult {
	cg := &g.cg
	m := cg.members[p.memberID]
	if p.instanceID != nil {
		holder, ok := cg.static[*p.instanceID]
		switch {
		case !ok:
			return cgFail(kerr.UnknownMemberID.Code, "")
		case holder != p.memberID:
			return cgFail(kerr.FencedInstanceID.Code, "")
		}
		m = cg.members[holder]
	}
	if m == nil {
		return cgFail(kerr.UnknownMemberID.Code, "")
	}
	if p.epoch == -2 {
		m.left = true
		g.dirty = true
		m.lastSeen = p.now
		return cgResult{memberID: m.id, epoch: -2}
	}
	g.removeConsumer(m, "leave")
	return cgResult{memberID: p.memberID, epoch: -1}
}

// removeConsumer removes m, freeing its partitions, and starts a new epoch.
func (g *group) removeConsumer(m *consumerMember, reason string) {
	cg := &g.cg
	cg.release(m, m.assigned)
	cg.release(m, m.revoking)
	delete(cg.members, m.id)
	delete(cg.target, m.id)
	if m.instanceID != nil && cg.static[*m.instanceID] == m.id {
		delete(cg.static, *m.instanceID)
	}
	g.c.adjustBytes(&m.bytes, 0)
	g.c.m.members[kindConsumer].Add(-1)
	g.c.m.removals.WithLabelValues("consumer", reason).Inc()
	cg.subsChanged = true
	cg.bump(g)
	g.dirty = true
}

// expire removes members whose session ended or that did not revoke in
// time.
func (cg *consumerGroup) expire(g *group, now time.Time) {
	session := g.c.cfg.ConsumerSessionTimeout
	var gone []*consumerMember
	var reasons []string
	for _, m := range cg.members {
		switch {
		case !now.Before(m.lastSeen.Add(session)):
			gone, reasons = append(gone, m), append(reasons, "session")
		case m.state == memberUnrevoked && !now.Before(m.revokeBy):
			gone, reasons = append(gone, m), append(reasons, "rebalance")
		}
	}
	for i, m := range gone {
		g.c.log.Info("groups: consumer group member removed", "group", g.id, "member", m.id, "reason", reasons[i])
		g.removeConsumer(m, reasons[i])
	}
}

func (cg *consumerGroup) nextDeadline(cfg Config) time.Time {
	var next time.Time
	add := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, m := range cg.members {
		add(m.lastSeen.Add(cfg.ConsumerSessionTimeout))
		if m.state == memberUnrevoked {
			add(m.revokeBy)
		}
	}
	return next
}

// validateCommit checks an OffsetCommit from a KIP-848 member. A commit
// with an older epoch is accepted when the member still owns every
// partition it commits (KIP-1251): nobody else can have consumed them.
func (cg *consumerGroup) validateCommit(memberID string, epoch int32, parts []topicPartition, version int16) int16 {
	if epoch < 0 && len(cg.members) == 0 {
		return 0
	}
	m := cg.members[memberID]
	switch {
	case m == nil:
		return kerr.UnknownMemberID.Code
	case version < 9:
		// As Kafka: "OffsetCommit version 9 or above must be used by
		// members using the modern group protocol" (below 9 the field
		// is a generation, not a member epoch).
		return kerr.UnsupportedVersion.Code
	case epoch == m.epoch:
		return 0
	case epoch > m.epoch || epoch < 0:
		return kerr.StaleMemberEpoch.Code
	}
	for _, tp := range parts {
		if !m.assigned.has(tp) && !m.revoking.has(tp) {
			return kerr.StaleMemberEpoch.Code
		}
	}
	return 0
}

// subscribes reports whether any member subscribes to a topic (for
// OffsetDelete).
func (cg *consumerGroup) subscribes(snap *topicSnapshot) func(string) bool {
	names := make(map[string]bool)
	var res []*regexp.Regexp
	for _, m := range cg.members {
		for _, n := range m.names {
			names[n] = true
		}
		if m.re != nil {
			res = append(res, m.re)
		}
	}
	return func(t string) bool {
		if names[t] {
			return true
		}
		for _, re := range res {
			if re.MatchString(t) {
				return true
			}
		}
		return false
	}
}

func subset(a, b tpSet) bool {
	for tp := range a {
		if !b.has(tp) {
			return false
		}
	}
	return true
}

func intersects(a, b tpSet) bool {
	for tp := range a {
		if b.has(tp) {
			return true
		}
	}
	return false
}

// describeAssignment renders s for ConsumerGroupDescribe.
func describeAssignment(s tpSet, snap *topicSnapshot) kmsg.Assignment {
	a := kmsg.NewAssignment()
	ids, parts := s.byTopic()
	for _, id := range ids {
		tp := kmsg.NewAssignmentTopicPartition()
		tp.TopicID, tp.Topic, tp.Partitions = id, snap.name(id), parts[id]
		a.TopicPartitions = append(a.TopicPartitions, tp)
	}
	return a
}

// sortedConsumers returns the members by id.
func (cg *consumerGroup) sortedConsumers() []*consumerMember {
	out := make([]*consumerMember, 0, len(cg.members))
	for _, m := range cg.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *consumerMember) int { return cmp.Compare(a.id, b.id) })
	return out
}
