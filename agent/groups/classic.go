package groups

import (
	"bytes"
	"cmp"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The classic group state machine, as Kafka's: members join (JoinGroup), the
// coordinator waits until every known member has rejoined or the rebalance
// timeout passes, picks a protocol and a leader and answers every join; the
// leader sends the assignment (SyncGroup), which the coordinator hands to
// every member. Heartbeats keep members alive and tell them when a new
// rebalance starts. Everything here runs with the group's lock held.

// classicState is a classic group's state; String is the name Kafka uses in
// DescribeGroups and ListGroups.
type classicState int8

const (
	stateEmpty classicState = iota
	statePreparingRebalance
	stateCompletingRebalance
	stateStable
)

func (s classicState) String() string {
	switch s {
	case statePreparingRebalance:
		return "PreparingRebalance"
	case stateCompletingRebalance:
		return "CompletingRebalance"
	case stateStable:
		return "Stable"
	default:
		return "Empty"
	}
}

type protocol struct {
	name     string
	metadata []byte
}

type classicMember struct {
	id               string
	instanceID       *string
	clientID         string
	clientHost       string
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	protocols        []protocol
	assignment       []byte
	bytes            int64  // accounted in Coordinator.metaBytes
	seq              uint64 // join order; the first member leads
	lastHeartbeat    time.Time
	// joinWait and syncWait are set while the member's JoinGroup or
	// SyncGroup waits for the rebalance; a waiting member is alive.
	joinWait chan joinResult
	syncWait chan syncResult
	// synced: the member sent SyncGroup for the current generation.
	synced bool
}

type joinResult struct {
	code           int16
	generation     int32
	protocolType   string
	protocol       string
	leader         string
	memberID       string
	members        []kmsg.JoinGroupResponseMember
	skipAssignment bool
}

type syncResult struct {
	code       int16
	assignment []byte
	// save: the caller (the leader's SyncGroup) must store the group's
	// state (Coordinator.save), which answers the waiting SyncGroups.
	save bool
}

// failWaits answers the member's waiting requests with code.
func (m *classicMember) failWaits(code int16) {
	if m.joinWait != nil {
		m.joinWait <- joinResult{code: code, generation: -1, memberID: m.id}
		m.joinWait = nil
	}
	if m.syncWait != nil {
		m.syncWait <- syncResult{code: code}
		m.syncWait = nil
	}
}

func (m *classicMember) metadataFor(name string) []byte {
	for _, p := range m.protocols {
		if p.name == name {
			return p.metadata
		}
	}
	return nil
}

func (m *classicMember) sameProtocols(ps []protocol) bool {
	if len(ps) != len(m.protocols) {
		return false
	}
	for i := range ps {
		if ps[i].name != m.protocols[i].name || !bytes.Equal(ps[i].metadata, m.protocols[i].metadata) {
			return false
		}
	}
	return true
}

func (m *classicMember) size() int64 {
	return m.idSize() + protocolsSize(m.protocols) + int64(len(m.assignment))
}

// idSize is what the member's ids hold: a static member's id embeds its
// instance id, which the client chooses and which is otherwise unbounded.
func (m *classicMember) idSize() int64 {
	n := int64(len(m.id))
	if m.instanceID != nil {
		n += int64(len(*m.instanceID))
	}
	return n
}

func protocolsSize(ps []protocol) int64 {
	var n int64
	for _, p := range ps {
		n += int64(len(p.name) + len(p.metadata))
	}
	return n
}

type classicGroup struct {
	state        classicState
	generation   int32
	protocolType string
	protocol     string // selected for the current generation
	leader       string
	members      map[string]*classicMember
	static       map[string]string    // instance id → member id
	pending      map[string]time.Time // MEMBER_ID_REQUIRED sent → until when
	seq          uint64
	// Rebalance timing: the join phase ends at joinDeadline (members that
	// did not rejoin are removed) or once all rejoined, but not before
	// delayUntil during an empty group's first rebalance (zero once it
	// passed); the sync phase removes members that did not sync by
	// syncDeadline.
	rebalanceStart time.Time
	joinDeadline   time.Time
	delayUntil     time.Time
	delayMax       time.Time
	syncDeadline   time.Time
	// saving: the leader's assignment for this generation is being
	// stored (persist.go); SyncGroups wait for the write.
	saving bool
}

func (cl *classicGroup) init() {
	*cl = classicGroup{
		members: make(map[string]*classicMember),
		static:  make(map[string]string),
		pending: make(map[string]time.Time),
	}
}

// joinParams is a validated JoinGroup.
type joinParams struct {
	version          int16
	memberID         string
	instanceID       *string
	clientID         string
	clientHost       string
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	protocolType     string
	protocols        []protocol
	now              time.Time
}

func joinFail(code int16, memberID string) joinResult {
	return joinResult{code: code, generation: -1, memberID: memberID}
}

// join handles a JoinGroup. It returns a channel to wait on when the member
// waits for the rebalance, else the result.
func (g *group) join(p *joinParams) (<-chan joinResult, joinResult) {
	if g.kind == kindConsumer {
		if !g.empty() {
			return nil, joinFail(kerr.InconsistentGroupProtocol.Code, p.memberID)
		}
		g.kind = kindClassic
		g.cl.init()
	}
	cl := &g.cl
	if !cl.supports(p.protocolType, p.protocols) {
		return nil, joinFail(kerr.InconsistentGroupProtocol.Code, p.memberID)
	}
	if p.memberID == "" {
		return g.joinUnknown(p)
	}
	return g.joinKnown(p)
}

// supports reports whether a member with these protocols may join: an
// empty group takes any, otherwise the type must match and one protocol
// must be one every member supports.
func (cl *classicGroup) supports(protocolType string, ps []protocol) bool {
	if len(cl.members) == 0 {
		return true
	}
	if protocolType != cl.protocolType {
		return false
	}
	for _, p := range ps {
		if cl.allSupport(p.name) {
			return true
		}
	}
	return false
}

func (cl *classicGroup) allSupport(name string) bool {
	for _, m := range cl.members {
		if !m.hasProtocol(name) {
			return false
		}
	}
	return true
}

func (m *classicMember) hasProtocol(name string) bool {
	for _, p := range m.protocols {
		if p.name == name {
			return true
		}
	}
	return false
}

func (cl *classicGroup) full(max int) bool {
	return len(cl.members)+len(cl.pending) >= max
}

func (g *group) joinUnknown(p *joinParams) (<-chan joinResult, joinResult) {
	cl := &g.cl
	if p.instanceID != nil {
		newID := *p.instanceID + "-" + newUUID()
		if oldID, ok := cl.static[*p.instanceID]; ok {
			return g.replaceStatic(oldID, newID, p)
		}
		if cl.full(g.c.cfg.GroupMaxSize) {
			return nil, joinFail(kerr.GroupMaxSizeReached.Code, "")
		}
		return g.addMember(newID, p)
	}
	if cl.full(g.c.cfg.GroupMaxSize) {
		return nil, joinFail(kerr.GroupMaxSizeReached.Code, "")
	}
	newID := memberIDFor(p.clientID)
	if p.version >= 4 {
		// KIP-394: the member must come back with this id, so a client that
		// times out before the answer does not leave a ghost member behind.
		cl.pending[newID] = p.now.Add(p.sessionTimeout)
		return nil, joinFail(kerr.MemberIDRequired.Code, newID)
	}
	return g.addMember(newID, p)
}

func (g *group) joinKnown(p *joinParams) (<-chan joinResult, joinResult) {
	cl := &g.cl
	if _, ok := cl.pending[p.memberID]; ok && p.instanceID == nil {
		delete(cl.pending, p.memberID)
		return g.addMember(p.memberID, p)
	}
	if code := cl.validateMember(p.memberID, p.instanceID); code != 0 {
		return nil, joinFail(code, p.memberID)
	}
	m := cl.members[p.memberID]
	switch cl.state {
	case statePreparingRebalance:
		if code := g.updateMember(m, p); code != 0 {
			return nil, joinFail(code, p.memberID)
		}
		ch := m.parkJoin()
		g.maybeCompleteJoin(p.now)
		return ch, joinResult{}
	case stateCompletingRebalance:
		if m.sameProtocols(p.protocols) {
			// The member lost our answer: give it again.
			m.lastHeartbeat = p.now
			return nil, cl.resultFor(m, true)
		}
	case stateStable:
		if m.id != cl.leader && m.sameProtocols(p.protocols) {
			m.lastHeartbeat = p.now
			return nil, cl.resultFor(m, false)
		}
	default:
		return nil, joinFail(kerr.UnknownMemberID.Code, p.memberID)
	}
	// A changed member, or the leader rejoining a stable group: rebalance.
	if code := g.updateMember(m, p); code != 0 {
		return nil, joinFail(code, p.memberID)
	}
	ch := m.parkJoin()
	g.prepareRebalance(p.now)
	g.maybeCompleteJoin(p.now)
	return ch, joinResult{}
}

// validateMember is Kafka's check of a member's identity: a static member
// must be the current holder of its instance id.
func (cl *classicGroup) validateMember(memberID string, instanceID *string) int16 {
	if instanceID != nil {
		holder, ok := cl.static[*instanceID]
		switch {
		case !ok:
			return kerr.UnknownMemberID.Code
		case holder != memberID:
			return kerr.FencedInstanceID.Code
		}
		return 0
	}
	if cl.members[memberID] == nil {
		return kerr.UnknownMemberID.Code
	}
	return 0
}

func (m *classicMember) parkJoin() <-chan joinResult {
	if m.joinWait != nil {
		// The member joined again (a retry on a new connection): the old
		// request's client is gone or will retry.
		m.joinWait <- joinFail(kerr.RebalanceInProgress.Code, m.id)
	}
	ch := make(chan joinResult, 1)
	m.joinWait = ch
	return ch
}

// addMember adds a new member from p and starts or joins the rebalance.
func (g *group) addMember(id string, p *joinParams) (<-chan joinResult, joinResult) {
	cl := &g.cl
	cl.seq++
	m := &classicMember{id: id, instanceID: p.instanceID, seq: cl.seq}
	if code := g.updateMember(m, p); code != 0 {
		return nil, joinFail(code, "")
	}
	cl.members[id] = m
	g.c.m.members[kindClassic].Add(1)
	if p.instanceID != nil {
		cl.static[*p.instanceID] = id
	}
	if len(cl.members) == 1 {
		cl.protocolType = p.protocolType
	}
	ch := m.parkJoin()
	switch cl.state {
	case statePreparingRebalance:
		if !cl.delayUntil.IsZero() && p.now.Before(cl.delayUntil) {
			cl.delayUntil = minTime(p.now.Add(g.c.cfg.InitialRebalanceDelay), cl.delayMax)
		}
	default:
		g.prepareRebalance(p.now)
	}
	g.maybeCompleteJoin(p.now)
	return ch, joinResult{}
}

// updateMember takes p's protocols and timeouts, within the memory budget.
func (g *group) updateMember(m *classicMember, p *joinParams) int16 {
	n := m.idSize() + protocolsSize(p.protocols) + int64(len(m.assignment))
	if !g.c.adjustBytes(&m.bytes, n) {
		g.c.log.Warn("groups: member metadata budget exhausted", "group", g.id, "budget", g.c.cfg.MaxTotalMetadataBytes)
		return kerr.CoordinatorNotAvailable.Code
	}
	m.protocols = p.protocols
	m.clientID = p.clientID
	m.clientHost = p.clientHost
	m.sessionTimeout = p.sessionTimeout
	m.rebalanceTimeout = p.rebalanceTimeout
	m.lastHeartbeat = p.now
	return 0
}

// replaceStatic gives a known instance id to a new member id (the old one
// restarted), fencing the old id, as KIP-345 does.
func (g *group) replaceStatic(oldID, newID string, p *joinParams) (<-chan joinResult, joinResult) {
	cl := &g.cl
	old := cl.members[oldID]
	prevLeader := cl.leader
	old.failWaits(kerr.FencedInstanceID.Code)
	delete(cl.members, oldID)
	m := &classicMember{
		id:         newID,
		instanceID: p.instanceID,
		seq:        old.seq,
		assignment: old.assignment,
		bytes:      old.bytes,
		synced:     old.synced,
		protocols:  old.protocols,
	}
	cl.members[newID] = m
	cl.static[*p.instanceID] = newID
	if cl.leader == oldID {
		cl.leader = newID
	}
	g.c.m.removals.WithLabelValues("classic", "fenced").Inc()
	if code := g.updateMember(m, p); code != 0 {
		return nil, joinFail(code, "")
	}
	switch cl.state {
	case stateStable:
		if cl.selectProtocol() == cl.protocol {
			// Nothing the assignment depends on changed: no rebalance. The
			// leader only learns it leads (and must not reassign) from v9's
			// SkipAssignment; older versions are told the old leader id so
			// they do not assign at all. The new member id is stored:
			// after a coordinator move the member would be fenced.
			g.dirty = true
			res := cl.resultFor(m, false)
			if p.version >= 9 && m.id == cl.leader {
				res = cl.resultFor(m, true)
				res.skipAssignment = true
			} else if p.version < 9 {
				res.leader = prevLeader
			}
			return nil, res
		}
		ch := m.parkJoin()
		g.prepareRebalance(p.now)
		g.maybeCompleteJoin(p.now)
		return ch, joinResult{}
	case stateCompletingRebalance:
		// The leader may have been given the old id to assign to: redo.
		ch := m.parkJoin()
		g.prepareRebalance(p.now)
		g.maybeCompleteJoin(p.now)
		return ch, joinResult{}
	default:
		ch := m.parkJoin()
		g.maybeCompleteJoin(p.now)
		return ch, joinResult{}
	}
}

// resultFor is the current generation as member m is told it; withMembers
// lists the members (with their metadata) when m leads.
func (cl *classicGroup) resultFor(m *classicMember, withMembers bool) joinResult {
	res := joinResult{
		generation:   cl.generation,
		protocolType: cl.protocolType,
		protocol:     cl.protocol,
		leader:       cl.leader,
		memberID:     m.id,
	}
	if withMembers && m.id == cl.leader {
		res.members = make([]kmsg.JoinGroupResponseMember, 0, len(cl.members))
		for _, o := range cl.sortedMembers() {
			jm := kmsg.NewJoinGroupResponseMember()
			jm.MemberID = o.id
			jm.InstanceID = o.instanceID
			jm.ProtocolMetadata = o.metadataFor(cl.protocol)
			res.members = append(res.members, jm)
		}
	}
	return res
}

func (cl *classicGroup) sortedMembers() []*classicMember {
	out := make([]*classicMember, 0, len(cl.members))
	for _, m := range cl.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *classicMember) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

func (cl *classicGroup) maxRebalanceTimeout() time.Duration {
	var d time.Duration
	for _, m := range cl.members {
		d = max(d, m.rebalanceTimeout)
	}
	return d
}

// prepareRebalance starts a join phase.
func (g *group) prepareRebalance(now time.Time) {
	cl := &g.cl
	if cl.state == stateCompletingRebalance {
		for _, m := range cl.members {
			if m.syncWait != nil {
				m.syncWait <- syncResult{code: kerr.RebalanceInProgress.Code}
				m.syncWait = nil
				m.lastHeartbeat = now
			}
		}
	}
	cl.saving = false
	if cl.state == statePreparingRebalance {
		return
	}
	rt := cl.maxRebalanceTimeout()
	cl.joinDeadline = now.Add(rt)
	cl.delayUntil, cl.delayMax = time.Time{}, time.Time{}
	if cl.state == stateEmpty && g.c.cfg.InitialRebalanceDelay > 0 {
		cl.delayUntil = now.Add(min(g.c.cfg.InitialRebalanceDelay, rt))
		cl.delayMax = cl.joinDeadline
	}
	cl.state = statePreparingRebalance
	cl.rebalanceStart = now
	cl.syncDeadline = time.Time{}
	g.c.m.rebalances.WithLabelValues("classic").Inc()
}

// maybeCompleteJoin ends the join phase once every member rejoined.
func (g *group) maybeCompleteJoin(now time.Time) {
	cl := &g.cl
	if cl.state != statePreparingRebalance {
		return
	}
	if !cl.delayUntil.IsZero() {
		if now.Before(cl.delayUntil) {
			return
		}
		// The initial delay is over. Cleared, it is no longer a deadline:
		// left in the past while a pending member holds the join, it
		// would have the timer loop wake for it again at once, until the
		// join phase ended.
		cl.delayUntil, cl.delayMax = time.Time{}, time.Time{}
	}
	if len(cl.pending) > 0 {
		return
	}
	for _, m := range cl.members {
		if m.joinWait == nil {
			return
		}
	}
	g.completeJoin(now)
}

// completeJoin ends the join phase: dynamic members that did not rejoin
// are removed, the generation advances, and every waiting join is
// answered. As in Kafka (KIP-345), a static member that did not rejoin
// stays, listed to the leader, which assigns to it: it may be restarting
// and come back within its session with its instance id, without another
// rebalance. It is removed like any member if its session ends, or if it
// has not synced by the sync deadline. Such a member cannot lead: the
// leader is then one that rejoined, and while none has, the join phase
// waits on (another rebalance timeout) for a member to rejoin or for the
// absent ones' sessions to end.
func (g *group) completeJoin(now time.Time) {
	cl := &g.cl
	joined := 0
	for _, m := range cl.members {
		switch {
		case m.joinWait != nil:
			joined++
		case m.instanceID == nil:
			g.removeRaw(m, "rebalance")
		}
	}
	if joined == 0 && len(cl.members) > 0 {
		cl.joinDeadline = now.Add(cl.maxRebalanceTimeout())
		cl.delayUntil, cl.delayMax = time.Time{}, time.Time{}
		return
	}
	cl.generation++
	cl.joinDeadline, cl.delayUntil, cl.delayMax = time.Time{}, time.Time{}, time.Time{}
	cl.saving = false
	if len(cl.members) == 0 {
		cl.state = stateEmpty
		cl.protocol = ""
		cl.leader = ""
		g.dirty = true // the stored state goes
		return
	}
	cl.protocol = cl.selectProtocol()
	if l := cl.members[cl.leader]; l == nil || l.joinWait == nil {
		for _, m := range cl.sortedMembers() {
			if m.joinWait != nil {
				cl.leader = m.id
				break
			}
		}
	}
	cl.state = stateCompletingRebalance
	cl.syncDeadline = now.Add(cl.maxRebalanceTimeout())
	for _, m := range cl.members {
		m.synced = false
		m.assignment = nil
		g.c.adjustBytes(&m.bytes, m.idSize()+protocolsSize(m.protocols))
		// Every member's session restarts, a static member's that is
		// away too (as Kafka reschedules every member's heartbeat): it
		// then has until the sync deadline to come back.
		m.lastHeartbeat = now
		if m.joinWait == nil {
			continue
		}
		m.joinWait <- cl.resultFor(m, true)
		m.joinWait = nil
	}
}

// selectProtocol picks the protocol most members prefer among those all
// members support; ties go to the leader's (or first member's) preference.
// Every voted protocol is one the first member supports, so its list is the
// list of candidates.
func (cl *classicGroup) selectProtocol() string {
	ms := cl.sortedMembers()
	if len(ms) == 0 {
		return ""
	}
	first := ms[0]
	if l := cl.members[cl.leader]; l != nil {
		first = l
	}
	votes := make(map[string]int)
	for _, m := range ms {
		for _, p := range m.protocols {
			if cl.allSupport(p.name) {
				votes[p.name]++
				break
			}
		}
	}
	best, bestVotes := "", 0
	for _, p := range first.protocols {
		if v := votes[p.name]; v > bestVotes {
			best, bestVotes = p.name, v
		}
	}
	return best
}

// removeRaw removes m without any state transition.
func (g *group) removeRaw(m *classicMember, reason string) {
	cl := &g.cl
	m.failWaits(kerr.UnknownMemberID.Code)
	delete(cl.members, m.id)
	if m.instanceID != nil && cl.static[*m.instanceID] == m.id {
		delete(cl.static, *m.instanceID)
	}
	if cl.leader == m.id {
		cl.leader = ""
	}
	g.c.adjustBytes(&m.bytes, 0)
	g.c.m.members[kindClassic].Add(-1)
	g.c.m.removals.WithLabelValues("classic", reason).Inc()
}

// removeMember removes m and rebalances the rest.
func (g *group) removeMember(m *classicMember, reason string, now time.Time) {
	g.removeRaw(m, reason)
	switch g.cl.state {
	case stateStable, stateCompletingRebalance:
		g.prepareRebalance(now)
	}
	g.maybeCompleteJoin(now)
}
