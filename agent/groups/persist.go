package groups

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/floebroker/floe/catalog"
)

// Persistence of groups' state, so a group survives a coordinator move
// without a rebalance (Kafka writes the same metadata to
// __consumer_offsets). The coordinator writes a classic group's state to
// the catalog when a rebalance completes (the leader's SyncGroup, answered
// only after the write) and when a static member is replaced without a
// rebalance; a KIP-848 group's whenever a ConsumerGroupHeartbeat changed
// it (before the answer) or a timer removed a member; and deletes it when
// the group becomes empty. Never on a heartbeat that changes nothing. A
// coordinator that starts serving a group it holds nothing for loads the
// state once (single flight) before answering any request for it.
//
// Writes are compare-and-set on the catalog's version: an agent whose view
// of a group is stale (another agent wrote it meanwhile) gets
// ErrGroupStateConflict and drops the group; its members get
// NOT_COORDINATOR and come back to whichever agent Placement names, which
// loads the latest state. No lock is held across a catalog call: a group's
// saves are serialized by saveSem (taken before the group's mutex, never
// while holding it), and a load runs before the group is in the map.

// stateTimeout bounds one catalog call of the state (load, save, delete).
const stateTimeout = 15 * time.Second

// shutdownFlush bounds how long Run's end waits for background saves.
const shutdownFlush = 3 * time.Second

// loadCall is one in-flight load of a group's state; requests for the
// group wait for it instead of loading again.
type loadCall struct {
	done chan struct{}
	code int16 // Kafka error for the waiting requests; 0 once loaded
}

// ensure makes sure id's state is in memory before a request for it is
// served: if this node holds nothing for id and has not seen that the
// catalog holds nothing either, it loads the state once, while concurrent
// requests for id wait. A failed load answers COORDINATOR_NOT_AVAILABLE
// (every client retries it, re-finding the coordinator) rather than
// serving the group empty.
//
// After Placement's view changed (ViewEpocher), a group in memory is
// checked once against the catalog: if another coordinator wrote it
// meanwhile (this node lost the group and got it back without noticing),
// the stale memory is dropped and the group loaded again.
func (c *Coordinator) ensure(ctx context.Context, id string) int16 {
	if c.cat == nil {
		return 0
	}
	epoch := c.viewEpoch()
	for {
		c.mu.Lock()
		if c.mu.deleting[id] > 0 {
			// A DeleteGroups of id is in flight (markDeleting).
			c.mu.Unlock()
			return kerr.CoordinatorLoadInProgress.Code
		}
		if epoch != c.mu.absentEpoch {
			clear(c.mu.absent)
			c.mu.absentEpoch = epoch
		}
		g := c.mu.groups[id]
		if g != nil && g.epoch.Load() == epoch {
			c.mu.Unlock()
			return 0
		}
		if _, ok := c.mu.absent[id]; ok && g == nil {
			c.mu.Unlock()
			return 0
		}
		if l := c.mu.loading[id]; l != nil {
			c.mu.Unlock()
			select {
			case <-l.done:
				if l.code != 0 {
					return l.code
				}
				continue // loaded: look again (it may have been dropped since)
			case <-ctx.Done():
				return kerr.CoordinatorNotAvailable.Code
			}
		}
		l := &loadCall{done: make(chan struct{})}
		c.mu.loading[id] = l
		c.mu.Unlock()
		if g != nil {
			l.code = c.recheck(g, epoch)
		} else {
			l.code = c.load(id, epoch)
		}
		c.mu.Lock()
		delete(c.mu.loading, id)
		c.mu.Unlock()
		close(l.done)
		if l.code != 0 {
			return l.code
		}
		// Look again: the group is in memory (or known absent), or the
		// recheck dropped it and it is loaded now.
	}
}

// ViewEpocher is implemented by a Placement whose view of the fleet
// changes (the agent's): ViewEpoch changes whenever the view may have
// (agents joined, left or lapsed). A group that moves away and back
// between two of this node's ownership checks would otherwise be served
// from memory that another coordinator has since made stale.
type ViewEpocher interface {
	ViewEpoch() uint64
}

func (c *Coordinator) viewEpoch() uint64 {
	if v, ok := c.place.(ViewEpocher); ok {
		return v.ViewEpoch()
	}
	return 0
}

// recheck compares g's memory with the catalog's stored version after a
// view change: equal, g is current (nobody else wrote it); different, g
// is dropped so that ensure loads it again.
func (c *Coordinator) recheck(g *group, epoch uint64) int16 {
	select {
	case g.saveSem <- struct{}{}:
		defer func() { <-g.saveSem }()
	default:
		// A save is in flight: its compare-and-set checks the same, and
		// drops g if it is stale.
		g.epoch.Store(epoch)
		return 0
	}
	ctx, cancel := context.WithTimeout(c.bg, stateTimeout)
	defer cancel()
	_, version, err := c.cat.LoadGroupState(ctx, g.id)
	if err != nil {
		c.log.Warn("groups: checking group state failed", "group", g.id, "err", err)
		c.m.stateOps.WithLabelValues("load", "error").Inc()
		return kerr.CoordinatorNotAvailable.Code
	}
	g.mu.Lock()
	current := g.version == version
	if current {
		g.epoch.Store(epoch)
	}
	g.mu.Unlock()
	if !current {
		c.log.Info("groups: group changed under another coordinator since this node held it; loading it again", "group", g.id, "held", g.version, "stored", version)
		c.m.stateOps.WithLabelValues("load", "stale").Inc()
		c.drop(g.id)
	}
	return 0
}

// load reads id's state from the catalog and puts the group in memory, or
// records that there is none. Called by ensure only, without locks.
func (c *Coordinator) load(id string, epoch uint64) int16 {
	ctx, cancel := context.WithTimeout(c.bg, stateTimeout)
	defer cancel()
	blob, version, err := c.cat.LoadGroupState(ctx, id)
	if err != nil {
		c.log.Warn("groups: loading group state failed", "group", id, "err", err)
		c.m.stateOps.WithLabelValues("load", "error").Inc()
		return kerr.CoordinatorNotAvailable.Code
	}
	if version == 0 {
		c.m.stateOps.WithLabelValues("load", "none").Inc()
		c.markAbsent(id, epoch)
		return 0
	}
	// Claim the state: store it again under a new version, so that a
	// coordinator still holding the group from before (it lost the group
	// without noticing: paused past its TTL, its view not refreshed yet)
	// gets a conflict at its next write — its timers expiring the members
	// that moved here would otherwise delete or overwrite the state this
	// node serves — and a node the group comes back to reloads it.
	claimed, err := c.cat.SaveGroupState(ctx, id, version, blob)
	c.countStateOp("claim", err)
	if err != nil {
		c.log.Warn("groups: claiming group state failed", "group", id, "err", err)
		return kerr.CoordinatorNotAvailable.Code
	}
	version = claimed
	kind, s, cs, err := decodeState(blob)
	if err != nil {
		// From another Floe version, or damaged: start the group empty
		// (members rejoin, as before persistence existed), keeping the
		// version so the next write replaces the blob.
		c.log.Warn("groups: stored group state is undecodable; the group starts empty", "group", id, "version", version, "bytes", len(blob), "err", err)
		c.m.stateOps.WithLabelValues("load", "corrupt").Inc()
		kind, s = kindClassic, &storedClassic{}
	} else {
		c.m.stateOps.WithLabelValues("load", "ok").Inc()
	}
	if kind == kindConsumer {
		return c.installConsumer(id, cs, version, epoch)
	}
	return c.install(id, s, version, epoch)
}

// known reports whether this node holds id, or knows the catalog holds no
// state for it in the current view: serving it reads nothing from the
// catalog.
func (c *Coordinator) known(id string) bool {
	epoch := c.viewEpoch()
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.mu.groups[id]; g != nil {
		return g.epoch.Load() == epoch
	}
	_, absent := c.mu.absent[id]
	return absent && c.mu.absentEpoch == epoch
}

// markAbsent records that the catalog holds no state for id, so requests
// for a group without members (simple consumers' commits) do not read the
// catalog every time. Bounded like the groups: when full it starts over.
func (c *Coordinator) markAbsent(id string, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.mu.groups[id]; ok || epoch != c.mu.absentEpoch {
		return
	}
	if len(c.mu.absent) >= c.cfg.MaxGroups {
		clear(c.mu.absent)
	}
	c.mu.absent[id] = struct{}{}
}

// install puts a loaded classic group in memory: Stable with its
// generation, leader and assignments if it has members, each with a fresh
// session (now + its session timeout, as Kafka does on load) so members
// that died meanwhile expire normally.
func (c *Coordinator) install(id string, s *storedClassic, version int64, epoch uint64) int16 {
	now := c.cfg.Now()
	g := c.newGroup(id, kindClassic)
	g.version = version
	g.epoch.Store(epoch)
	cl := &g.cl
	cl.generation, cl.protocolType, cl.protocol, cl.leader, cl.seq = s.generation, s.protocolType, s.protocol, s.leader, s.seq
	for _, sm := range s.members {
		m := &classicMember{
			id: sm.id, instanceID: sm.instanceID, clientID: sm.clientID, clientHost: sm.clientHost,
			sessionTimeout: sm.sessionTimeout, rebalanceTimeout: sm.rebalanceTimeout, seq: sm.seq,
			protocols: sm.protocols, assignment: sm.assignment, lastHeartbeat: now, synced: true,
		}
		if !c.adjustBytes(&m.bytes, m.size()) {
			g.releaseAll()
			c.log.Warn("groups: member metadata budget exhausted loading a group", "group", id, "budget", c.cfg.MaxTotalMetadataBytes)
			return kerr.CoordinatorNotAvailable.Code
		}
		cl.members[m.id] = m
		c.m.members[kindClassic].Add(1)
		if m.instanceID != nil {
			cl.static[*m.instanceID] = m.id
		}
		cl.seq = max(cl.seq, m.seq)
	}
	if len(cl.members) > 0 {
		cl.state = stateStable
	} else {
		cl.protocol, cl.leader = "", ""
	}
	return c.insert(g)
}

// installConsumer puts a loaded KIP-848 group in memory: its epochs,
// target assignment and members with their epochs and partitions, each
// member with a fresh session (and a fresh revocation deadline when it
// was revoking).
func (c *Coordinator) installConsumer(id string, s *storedConsumer, version int64, epoch uint64) int16 {
	now := c.cfg.Now()
	g := c.newGroup(id, kindConsumer)
	g.version = version
	g.epoch.Store(epoch)
	cg := &g.cg
	cg.epoch, cg.assignmentEpoch, cg.assignor, cg.subsHash = s.epoch, s.assignmentEpoch, s.assignor, s.subsHash
	cg.target = s.target
	// The subscribed topics are fingerprinted again at the next
	// heartbeat; unchanged topics give the stored hash, and no new epoch.
	cg.subsChanged = true
	for _, m := range s.members {
		m.lastSeen = now
		if m.state == memberUnrevoked {
			m.revokeBy = now.Add(m.rebalance)
		}
		if !c.adjustBytes(&m.bytes, m.size()) {
			g.releaseAll()
			c.log.Warn("groups: member metadata budget exhausted loading a group", "group", id, "budget", c.cfg.MaxTotalMetadataBytes)
			return kerr.CoordinatorNotAvailable.Code
		}
		cg.members[m.id] = m
		c.m.members[kindConsumer].Add(1)
		if m.instanceID != nil {
			cg.static[*m.instanceID] = m.id
		}
		for tp := range m.assigned {
			cg.owners[tp] = m.id
		}
		for tp := range m.revoking {
			cg.owners[tp] = m.id
		}
	}
	return c.insert(g)
}

// insert puts a loaded group in the map, within MaxGroups.
func (c *Coordinator) insert(g *group) int16 {
	id := g.id
	next := g.nextDeadline()
	c.mu.Lock()
	code := int16(0)
	switch {
	case c.running.Load() != 1:
		code = kerr.NotCoordinator.Code
	case c.mu.groups[id] != nil:
		// Created meanwhile (cannot happen while requests wait for the
		// load; kept for safety): the live one wins.
		code = -1
	case len(c.mu.groups) >= c.cfg.MaxGroups && !c.evictOneLocked():
		c.log.Warn("groups: too many groups in memory", "max", c.cfg.MaxGroups)
		code = kerr.CoordinatorNotAvailable.Code
	default:
		c.mu.groups[id] = g
		delete(c.mu.absent, id)
	}
	c.mu.Unlock()
	if code != 0 {
		g.releaseAll()
		return max(code, 0)
	}
	c.timers.schedule(g, next)
	return 0
}

// stateOp is what a save does with the catalog.
type stateOp int8

const (
	opNone stateOp = iota
	opSave
	opDelete
)

// snapshot is the write g's current state calls for; the caller holds g's
// lock. A group in the middle of a rebalance writes nothing: the last
// stable state stays stored (its members, rejoining at a new coordinator,
// get that generation and assignment back, as from Kafka).
func (g *group) snapshot() (stateOp, []byte) {
	if g.kind == kindConsumer && len(g.cg.members) > 0 {
		return opSave, encodeConsumer(&g.cg)
	}
	if g.kind == kindClassic {
		cl := &g.cl
		switch {
		case cl.state == stateStable || (cl.state == stateCompletingRebalance && cl.saving):
			return opSave, encodeClassic(cl)
		case !g.empty():
			return opNone, nil
		}
	}
	// Empty: nothing may stay stored.
	if g.version == 0 {
		return opNone, nil
	}
	return opDelete, nil
}

// save writes g's current state to the catalog (snapshot), then ends the
// leader's SyncGroup if it waited for this write. Saves of one group run
// one at a time, each writing the latest state, so the last write is the
// newest state; no lock is held during the catalog call. It reports
// whether another agent had written the group (g is dropped then).
func (c *Coordinator) save(g *group) (conflict bool) {
	g.saveSem <- struct{}{}
	defer func() { <-g.saveSem }()
	g.mu.Lock()
	g.dirty, g.saveQueued = false, false
	if g.dead && !g.evicted {
		g.mu.Unlock()
		return false
	}
	op, blob := g.snapshot()
	expect, gen, syncing := g.version, g.cl.generation, g.cl.saving
	if op == opSave && len(blob) > catalog.MaxGroupStateBytes {
		// Too large to store: remove the stored one, which would be
		// stale; a move then restarts the group as before persistence.
		c.log.Warn("groups: group state too large to store; a coordinator move will rebalance it", "group", g.id, "bytes", len(blob), "max", catalog.MaxGroupStateBytes)
		c.m.stateOps.WithLabelValues("save", "too_large").Inc()
		op = opDelete
		if expect == 0 {
			op = opNone
		}
	}
	g.mu.Unlock()

	var (
		version int64
		err     error
	)
	ctx, cancel := context.WithTimeout(c.bg, stateTimeout)
	switch op {
	case opSave:
		version, err = c.cat.SaveGroupState(ctx, g.id, expect, blob)
		c.countStateOp("save", err)
	case opDelete:
		err = c.cat.DeleteGroupState(ctx, g.id, expect)
		c.countStateOp("delete", err)
	}
	cancel()

	g.mu.Lock()
	defer c.settle(g)
	if err == nil && op != opNone {
		// Also when dead: an evicted group's queued save follows.
		g.version = version
	}
	if g.dead {
		// Dropped meanwhile: a conflict still voids the change this
		// write was to store (a KIP-848 heartbeat must not announce it).
		// A failed write is not tried again: nothing of a dropped group
		// would wait before the next try, which would follow at once
		// and keep the catalog busy for as long as it fails.
		g.retryAt = time.Time{}
		return errors.Is(err, catalog.ErrGroupStateConflict)
	}
	switch {
	case op == opNone:
		// Nothing to store now (a rebalance that is not complete writes
		// when it completes): no retry is due.
		g.retryAt = time.Time{}
	case errors.Is(err, catalog.ErrGroupStateConflict):
		// Another agent wrote the group since this one loaded it: this
		// view is stale. Drop it; members find the coordinator again.
		c.log.Warn("groups: group state changed by another coordinator; dropping this node's view", "group", g.id, "version", expect)
		g.kill(kerr.NotCoordinator.Code)
		return true
	case err != nil:
		c.log.Warn("groups: storing group state failed", "group", g.id, "err", err)
		g.retryAt = c.cfg.Now().Add(c.cfg.ConsumerHeartbeatInterval)
	default:
		g.retryAt = time.Time{}
	}
	cl := &g.cl
	if !syncing || g.kind != kindClassic || !cl.saving || cl.generation != gen || cl.state != stateCompletingRebalance {
		return false // no SyncGroup waits for this write, or a new rebalance superseded it
	}
	now := c.cfg.Now()
	if err != nil {
		// As Kafka does when it cannot store the assignment: the
		// members' SyncGroup fails and they rejoin.
		g.prepareRebalance(now)
		g.maybeCompleteJoin(now)
		return false
	}
	g.finishSync(now)
	return false
}

func (c *Coordinator) countStateOp(op string, err error) {
	result := "ok"
	switch {
	case errors.Is(err, catalog.ErrGroupStateConflict):
		result = "conflict"
	case err != nil:
		result = "error"
	}
	c.m.stateOps.WithLabelValues(op, result).Inc()
}

// queueSave starts a background save of g if a change wants one (or a
// failed write is due to be tried again) and none is queued; called by
// unlock with g's lock held.
func (c *Coordinator) queueSave(g *group) {
	if !g.dirty && (g.retryAt.IsZero() || c.cfg.Now().Before(g.retryAt)) {
		return
	}
	if g.saveQueued || (g.dead && !g.evicted) || c.cat == nil || c.running.Load() != 1 {
		return
	}
	g.saveQueued = true
	c.saves.Add(1)
	go func() {
		defer c.saves.Done()
		defer func() { _ = recover() }() // settle logged it and reset g
		c.save(g)
	}()
}
