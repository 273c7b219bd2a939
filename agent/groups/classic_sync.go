package groups

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The classic group after the join phase: SyncGroup hands out the leader's
// assignment, Heartbeat keeps members alive and tells them of a new
// rebalance, LeaveGroup removes them, and the timers expire members and
// phases that took too long. Everything here runs with the group's lock
// held.

// syncParams is a validated SyncGroup.
type syncParams struct {
	memberID     string
	instanceID   *string
	generation   int32
	protocolType *string
	protocol     *string
	assignments  []kmsg.SyncGroupRequestGroupAssignment
	now          time.Time
}

// sync handles a SyncGroup, returning a channel to wait on when the member
// waits for the leader's assignment.
func (g *group) sync(p *syncParams) (<-chan syncResult, syncResult) {
	if g.kind != kindClassic {
		return nil, syncResult{code: kerr.UnknownMemberID.Code}
	}
	cl := &g.cl
	if code := cl.validateMember(p.memberID, p.instanceID); code != 0 {
		return nil, syncResult{code: code}
	}
	if p.generation != cl.generation {
		return nil, syncResult{code: kerr.IllegalGeneration.Code}
	}
	if (p.protocolType != nil && *p.protocolType != cl.protocolType) || (p.protocol != nil && *p.protocol != cl.protocol) {
		return nil, syncResult{code: kerr.InconsistentGroupProtocol.Code}
	}
	m := cl.members[p.memberID]
	switch cl.state {
	case statePreparingRebalance:
		return nil, syncResult{code: kerr.RebalanceInProgress.Code}
	case stateStable:
		m.lastHeartbeat = p.now
		m.synced = true
		cl.maybeSynced()
		return nil, syncResult{assignment: m.assignment}
	case stateCompletingRebalance:
	default:
		return nil, syncResult{code: kerr.UnknownMemberID.Code}
	}
	m.lastHeartbeat = p.now
	if m.id != cl.leader || cl.saving {
		if m.syncWait != nil {
			m.syncWait <- syncResult{code: kerr.RebalanceInProgress.Code}
		}
		ch := make(chan syncResult, 1)
		m.syncWait = ch
		return ch, syncResult{}
	}
	if code := g.applyAssignment(p.assignments); code != 0 {
		return nil, syncResult{code: code}
	}
	if g.c.cat != nil {
		// Kafka answers SyncGroup only once the group's new state is
		// stored: the leader waits like the others, and its request
		// stores the state (persist.go) before anyone is answered.
		if m.syncWait != nil {
			m.syncWait <- syncResult{code: kerr.RebalanceInProgress.Code}
		}
		ch := make(chan syncResult, 1)
		m.syncWait = ch
		cl.saving = true
		return ch, syncResult{save: true}
	}
	g.finishSync(p.now)
	return nil, syncResult{assignment: m.assignment}
}

// finishSync makes the group Stable with the assignment it holds and
// answers every waiting SyncGroup.
func (g *group) finishSync(now time.Time) {
	cl := &g.cl
	cl.state = stateStable
	cl.saving = false
	g.c.m.rebalanceSeconds.WithLabelValues("classic").Observe(now.Sub(cl.rebalanceStart).Seconds())
	for _, o := range cl.members {
		if o.syncWait != nil {
			o.syncWait <- syncResult{assignment: o.assignment}
			o.syncWait = nil
			o.synced = true
			o.lastHeartbeat = now
		}
	}
	if l := cl.members[cl.leader]; l != nil {
		l.synced = true
	}
	cl.maybeSynced()
}

// applyAssignment stores the leader's assignment: all or nothing, within
// the per-member and total byte caps. Members it omits get an empty one.
func (g *group) applyAssignment(as []kmsg.SyncGroupRequestGroupAssignment) int16 {
	cl := &g.cl
	byID := make(map[string][]byte, len(as))
	for _, a := range as {
		if len(a.MemberAssignment) > g.c.cfg.MaxMetadataBytes {
			return kerr.MessageTooLarge.Code
		}
		if cl.members[a.MemberID] != nil {
			// Copy: request bytes alias the connection's read buffer.
			byID[a.MemberID] = bytes.Clone(a.MemberAssignment)
		}
	}
	var grow int64
	for id, a := range byID {
		grow += int64(len(a)) - int64(len(cl.members[id].assignment))
	}
	if grow > 0 && g.c.metaBytes.Load()+grow > g.c.cfg.MaxTotalMetadataBytes {
		return kerr.CoordinatorNotAvailable.Code
	}
	for _, m := range cl.members {
		a := byID[m.id]
		if a == nil {
			a = []byte{}
		}
		m.assignment = a
		g.c.adjustBytes(&m.bytes, m.size())
	}
	return 0
}

// maybeSynced ends the sync deadline once every member synced.
func (cl *classicGroup) maybeSynced() {
	for _, m := range cl.members {
		if !m.synced {
			return
		}
	}
	cl.syncDeadline = time.Time{}
}

// heartbeat handles a Heartbeat.
func (g *group) heartbeat(memberID string, instanceID *string, generation int32, now time.Time) int16 {
	if g.kind != kindClassic {
		return kerr.UnknownMemberID.Code
	}
	cl := &g.cl
	if code := cl.validateMember(memberID, instanceID); code != 0 {
		return code
	}
	if generation != cl.generation {
		return kerr.IllegalGeneration.Code
	}
	m := cl.members[memberID]
	switch cl.state {
	case statePreparingRebalance:
		m.lastHeartbeat = now
		return kerr.RebalanceInProgress.Code
	case stateCompletingRebalance, stateStable:
		m.lastHeartbeat = now
		return 0
	}
	return kerr.UnknownMemberID.Code
}

// leave removes one member of a LeaveGroup. A static member may be named by
// its instance id alone (admin tools do).
func (g *group) leave(memberID string, instanceID *string, now time.Time) int16 {
	if g.kind != kindClassic {
		return kerr.UnknownMemberID.Code
	}
	cl := &g.cl
	if instanceID != nil {
		holder, ok := cl.static[*instanceID]
		switch {
		case !ok:
			return kerr.UnknownMemberID.Code
		case memberID != "" && memberID != holder:
			return kerr.FencedInstanceID.Code
		}
		g.removeMember(cl.members[holder], "leave", now)
		return 0
	}
	if _, ok := cl.pending[memberID]; ok {
		delete(cl.pending, memberID)
		g.maybeCompleteJoin(now)
		return 0
	}
	m := cl.members[memberID]
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	g.removeMember(m, "leave", now)
	return 0
}

// expire applies the deadlines that passed by now.
func (cl *classicGroup) expire(g *group, now time.Time) {
	for id, until := range cl.pending {
		if !now.Before(until) {
			delete(cl.pending, id)
		}
	}
	// Collect before removing: a removal starts a rebalance, which ends
	// other members' waits.
	var expired []*classicMember
	for _, m := range cl.members {
		if m.joinWait == nil && m.syncWait == nil && !now.Before(m.lastHeartbeat.Add(m.sessionTimeout)) {
			expired = append(expired, m)
		}
	}
	for _, m := range expired {
		g.c.log.Info("groups: member session expired", "group", g.id, "member", m.id)
		g.removeMember(m, "session", now)
	}
	switch cl.state {
	case statePreparingRebalance:
		if !now.Before(cl.joinDeadline) {
			g.completeJoin(now)
		} else {
			g.maybeCompleteJoin(now)
		}
	case stateCompletingRebalance, stateStable:
		if cl.syncDeadline.IsZero() || now.Before(cl.syncDeadline) {
			return
		}
		cl.syncDeadline = time.Time{}
		var late []*classicMember
		for _, m := range cl.members {
			if !m.synced && m.syncWait == nil {
				late = append(late, m)
			}
		}
		for _, m := range late {
			g.removeMember(m, "rebalance", now)
		}
	}
}

// nextDeadline is the earliest time expire has work.
func (cl *classicGroup) nextDeadline() time.Time {
	var next time.Time
	add := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, until := range cl.pending {
		add(until)
	}
	for _, m := range cl.members {
		if m.joinWait == nil && m.syncWait == nil {
			add(m.lastHeartbeat.Add(m.sessionTimeout))
		}
	}
	if cl.state == statePreparingRebalance {
		add(cl.joinDeadline)
		add(cl.delayUntil)
	}
	add(cl.syncDeadline)
	return next
}

// memberIDFor is Kafka's member id: the client id, a dash and a UUID. The
// client id part is capped so a huge client id cannot bloat every request.
func memberIDFor(clientID string) string {
	const maxPrefix = 128
	if len(clientID) > maxPrefix {
		clientID = clientID[:maxPrefix]
	}
	return clientID + "-" + newUUID()
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
