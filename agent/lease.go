package agent

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// The coordination lease. The other agents take this agent's groups over
// once its stored heartbeat is older than AgentTTL: they drop it from
// their views (LiveAgents) and, once they have heartbeaten a whole TTL
// themselves, expire it. The catalog stamps heartbeats and compares them
// with one clock (PostgreSQL's; with SQLite, the host's), so the agents'
// clocks, and their skew, take no part. This agent may be cut off from the
// catalog while clients still reach it; serving its groups from memory
// then would make two coordinators of one group, and two consumers of the
// same partitions. So it coordinates only while it holds a lease that ends
// before any other agent can count it expired.
//
// The heartbeat time the catalog stores is taken during the HeartbeatAgent
// (or RegisterAgent) call, never before the call started, and the others
// count AgentTTL from it on the same clock, so the lease is the start of
// the last successful call plus AgentTTL, less a margin (leaseMargin). It
// is kept on the monotonic clock: no time read from the catalog, nor
// wall-clock arithmetic, takes part.
//
// The lease has a second half: the view. Placement is computed from the
// last view of the live agents this agent read, and an agent that joined
// since that read is not in it; a joiner serves its groups joinSettle
// after its first view, counting on every other agent to have read a view
// with it by then. An agent whose view reads fail (the catalog cut off
// for a few seconds, a slow LiveAgents) while its heartbeat lease holds
// would otherwise serve the joiner's groups from its old view for as long
// as the lease — beside the joiner. So the lease also ends viewMaxAge
// after the start of the last successful view read, and joinSettle is
// longer than that by a margin.
//
// The trade: a catalog outage longer than the lease — two heartbeat
// intervals, by its view half — stops group coordination on the agents it
// cuts off — on every agent when the catalog itself is down — until their
// heartbeats and view reads succeed again. Group requests
// are answered COORDINATOR_NOT_AVAILABLE meanwhile, which clients retry
// (produce and fetch go on), and the groups are loaded from the catalog by
// whichever agent serves them next, as after any view change.

// errLeaseLapsed is Coordinator's error while the lease has lapsed.
var errLeaseLapsed = errors.New("agent: no recent successful catalog heartbeat or view of the fleet; coordinating no groups")

// leaseOrigin is the monotonic origin of lease times.
var leaseOrigin = time.Now()

// coordLease is this agent's coordination lease.
type coordLease struct {
	// until is when the lease lapses, as time since leaseOrigin; 0 before
	// the first grant. Read without the lock by every group request.
	until atomic.Int64

	mu sync.Mutex
	// heartbeat and view are when each half of the lease ends, as until
	// is (0: never granted); until is the earlier of the two.
	heartbeat, view int64
	// timer fires at the lapse, so the groups stop at once even while a
	// heartbeat call hangs (for up to TTL/2); each renewal re-arms it.
	timer *time.Timer
	// lapsed: the lapse was noted (view changed, logged) and no renewal
	// has followed. stopped: the heartbeat stopped for good (shutdown).
	lapsed, stopped bool

	// rejoin: the agent serves no groups of its own (joinedFrom) until
	// the heartbeat round in progress has read a view and settles the
	// join (settleJoin): it registered again, or its lease came back
	// after a lapse.
	rejoin atomic.Bool
}

// leaseMargin is how long before the other agents could count this one
// expired its lease lapses: a heartbeat interval. Within it, a group
// request that passed the lease check just before the lapse is answered
// (and the state a SyncGroup completes is written) before another agent
// can serve the group; it also absorbs a small step of the catalog's
// clock (the one heartbeats are stamped and compared with) and a timer or
// goroutine delayed on a loaded host. Longer would stop coordination
// sooner in every catalog blip for little gain: the heartbeat interval is
// the scale the fleet already tolerates as noise. At most a quarter of the
// TTL, so that with a TTL of few intervals the lease still outlasts the
// time between two heartbeats.
func (a *Agent) leaseMargin() time.Duration {
	return min(a.cfg.HeartbeatInterval, a.cfg.AgentTTL/4)
}

// holdsLease reports whether the coordination lease is current.
func (a *Agent) holdsLease() bool {
	return time.Since(leaseOrigin) < time.Duration(a.lease.until.Load())
}

// LeaseRemaining is how long the agent still holds its lease (≤ 0: it
// lapsed); the group coordinator bounds its offset writes by it
// (groups.LeaseBounder).
func (a *Agent) LeaseRemaining() time.Duration {
	return time.Duration(a.lease.until.Load()) - time.Since(leaseOrigin)
}

// renewLease extends the heartbeat half of the lease after a successful
// HeartbeatAgent or RegisterAgent call that started at start.
func (a *Agent) renewLease(start time.Time) {
	a.extendLease(start.Sub(leaseOrigin)+a.cfg.AgentTTL-a.leaseMargin(), false)
}

// renewView extends the view half of the lease after a successful read of
// the live agents that started at start.
func (a *Agent) renewView(start time.Time) {
	a.extendLease(start.Sub(leaseOrigin)+a.viewMaxAge(), true)
}

// viewMaxAge is how long after the start of its read a view may place
// groups: two heartbeat intervals, one for the next read and one of
// margin for a slow read or a late ticker. The heartbeat interval is the
// scale the fleet already tolerates as noise (leaseMargin).
func (a *Agent) viewMaxAge() time.Duration { return 2 * a.cfg.HeartbeatInterval }

// extendLease moves the end of one half of the lease (the view's when
// view is set) to end, if later. After a lapse, the view changes again
// (the groups in memory were dropped, or are checked against the catalog
// before they are served) and coordination resumes, after a join settle:
// while this agent's heartbeat was stale the other agents may have left
// it out of their views and served its groups, and those that have not
// read a view since it came back still do.
func (a *Agent) extendLease(end time.Duration, view bool) {
	l := &a.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.until.Load() != 0 && !l.lapsed && !a.holdsLease() {
		// Lapsed, but the timer has not run yet (late on a loaded
		// host): another agent may have served the groups meanwhile,
		// so the lapse counts as one.
		a.lapseLocked()
	}
	half := &l.heartbeat
	if view {
		half = &l.view
	}
	*half = max(*half, int64(end))
	until := min(l.heartbeat, l.view)
	if until == 0 {
		return // the other half was never granted
	}
	regained := l.lapsed && time.Since(leaseOrigin) < time.Duration(max(until, l.until.Load()))
	if regained {
		// Before the lease is published again: a Coordinator call in
		// between would otherwise see the lease held and the join settled
		// from before the lapse, and serve without the settle.
		a.rejoinLocked()
	}
	if until > l.until.Load() {
		l.until.Store(until)
	}
	wait := time.Duration(l.until.Load()) - time.Since(leaseOrigin)
	if l.timer == nil {
		l.timer = time.AfterFunc(wait, a.leaseTimer)
	} else {
		l.timer.Reset(wait)
	}
	if regained {
		l.lapsed = false
		a.viewChanged()
		a.log.Info("catalog heartbeat and view read succeeded again; coordinating groups again once the join settles")
	}
}

// rejoin has the agent serve none of its groups until the current
// heartbeat round settles its join again (settleJoin).
func (a *Agent) rejoin() {
	a.lease.mu.Lock()
	defer a.lease.mu.Unlock()
	a.rejoinLocked()
}

func (a *Agent) rejoinLocked() {
	a.joinedFrom.Store(math.MaxInt64)
	a.lease.rejoin.Store(true)
}

// leaseTimer runs when the lease may have lapsed.
func (a *Agent) leaseTimer() {
	l := &a.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped || l.lapsed || a.holdsLease() {
		return // renewed meanwhile, or already noted
	}
	a.lapseLocked()
}

// lapseLocked notes a lapse: once per lapse, the view changes (the group
// coordinator drops the groups it holds, as Coordinator now fails) and a
// warning is logged. a.lease.mu is held.
func (a *Agent) lapseLocked() {
	a.lease.lapsed = true
	a.viewChanged()
	if now := int64(time.Since(leaseOrigin)); a.lease.heartbeat <= now {
		a.log.Warn("no successful catalog heartbeat within the lease; coordinating no groups until one succeeds, as other agents may take them over",
			"lease", a.cfg.AgentTTL-a.leaseMargin(), "agent_ttl", a.cfg.AgentTTL)
	} else {
		a.log.Warn("no successful read of the live agents within the lease; coordinating no groups until one succeeds, as agents that joined meanwhile may serve them",
			"view_max_age", a.viewMaxAge())
	}
}

// stopLease stops noting lapses once the heartbeat has stopped for good:
// the agent deregisters and leaves.
func (a *Agent) stopLease() {
	l := &a.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	if l.timer != nil {
		l.timer.Stop()
	}
}

// The join settle. The other agents see an agent that joins the fleet (or
// comes back after they expired it) only at their next view refresh, a
// heartbeat interval later or more on a slow catalog, and until then go
// on serving the groups that the joiner's view already places on it. Were
// the joiner to serve them at once, those groups would have two
// coordinators, each answering members and committing offsets with its
// own idea of the generation. So a joiner names itself as those groups'
// coordinator at once (clients that ask it come to it) but serves them
// only joinSettle after its first view (COORDINATOR_LOAD_IN_PROGRESS
// meanwhile, which clients retry), by when every agent has seen it and
// sent the groups' members to it: an agent serves groups only from a view
// read less than viewMaxAge ago (the view half of the lease), and a view
// read before the joiner registered is older than that by then. The groups of the agents it does not
// take over are served throughout.
//
// An agent whose lease comes back after a lapse settles the same way: the
// others may have dropped it from their views meanwhile (its heartbeat
// stale) and serve its groups until they read a view with it again.
//
// An agent whose first view lists no other agent (the first of a fleet,
// `floe dev`, or the first back after a catalog outage) serves at once: no
// agent serves groups it could take — any other agent's heartbeat is
// stale, so its lease has lapsed, and it settles in turn when it is back. Two
// agents that register at the same moment may both see themselves alone;
// they then share groups until their next refreshes, as before this
// settle, and the catalog's compare-and-set on group state fences the
// loser at its next write.

// joinSettle is how long a joining agent waits before serving its groups:
// the longest another agent serves from a view read before the joiner
// registered (viewMaxAge), and a lease margin, within which a request that
// passed the placement check just before that view expired is answered.
func (a *Agent) joinSettle() time.Duration { return a.viewMaxAge() + a.leaseMargin() }

// settleJoin decides when this agent serves its groups, after the first
// view read since it (re-)registered or its lease came back (viewRead
// false: the read failed).
func (a *Agent) settleJoin(viewRead bool) {
	from := time.Since(leaseOrigin)
	if !viewRead || len(a.members.Load().agents) > 1 {
		from += a.joinSettle()
		a.log.Info("joined a fleet; serving this agent's groups once the other agents have seen it", "after", a.joinSettle())
	}
	a.joinedFrom.Store(int64(from))
}

// JoinSettled reports whether this agent's join to the fleet has settled:
// it serves the groups its view places on it.
func (a *Agent) JoinSettled() bool {
	return time.Since(leaseOrigin) >= time.Duration(a.joinedFrom.Load())
}
