package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/floebroker/floe/agent/groups"
	"github.com/floebroker/floe/catalog"
)

// membership is one immutable view of the fleet: the live agents (always
// including this one, except while it leaves) and the membership
// generation, which is every partition's leader epoch.
type membership struct {
	self       catalog.Agent
	registered bool
	// leaving is set once the agent deregistered during shutdown: agents
	// then lists the others only, so Metadata, FindCoordinator and
	// placement send clients away from it.
	leaving    bool
	agents     []catalog.Agent // by NodeID
	generation int64

	// rv is built from agents at its first use (see candidates).
	rvOnce sync.Once
	rv     *rendezvousView

	// listenerMu guards byListener: the views of the clients of each
	// per-zone listener, built at their first use (see onListener).
	listenerMu sync.Mutex
	byListener map[string]*membership
}

// onListener is the view served to a client of this agent's per-zone
// listener for zone ("": the main listener, the whole view): the agents
// with a listener for that zone only, as Kafka answers a client with the
// brokers that have the listener it connected to. Any other agent could
// only be named at its main listener, where the client would be answered
// as a client of the main listener from then on, its zone's listener (and
// in docker/compose.yaml its network's addresses) lost for good. Leaders,
// replicas and the controller are then picked among these agents (any
// agent serves any partition); every agent filters the same registered
// addresses, so all give the same answer for the same view. Should no
// agent have the listener — only while this agent leaves, the others
// lacking it — the client is kept here rather than sent away from it.
func (m *membership) onListener(zone string) *membership {
	if zone == "" || len(m.agents) == 0 {
		return m
	}
	m.listenerMu.Lock()
	defer m.listenerMu.Unlock()
	if v, ok := m.byListener[zone]; ok {
		return v
	}
	var agents []catalog.Agent
	for _, ag := range m.agents {
		if _, ok := listenerAddr(ag, zone); ok {
			agents = append(agents, ag)
		}
	}
	v := m
	switch {
	case len(agents) == 0:
		v = &membership{self: m.self, registered: m.registered, agents: []catalog.Agent{m.self}, generation: m.generation}
	case len(agents) < len(m.agents):
		v = &membership{self: m.self, registered: m.registered, leaving: m.leaving, agents: agents, generation: m.generation}
	}
	if m.byListener == nil {
		m.byListener = make(map[string]*membership)
	}
	m.byListener[zone] = v
	return v
}

// leaderEpoch is the generation as Kafka's int32 epoch.
func (m *membership) leaderEpoch() int32 {
	return int32(min(max(m.generation, 0), math.MaxInt32))
}

// controller is the node served as controller: this agent, or while it
// leaves the first other live agent.
func (m *membership) controller() int32 {
	if m.leaving && len(m.agents) > 0 {
		return m.agents[0].NodeID
	}
	return m.self.NodeID
}

// hasZone reports whether a live agent is in zone.
func (m *membership) hasZone(zone string) bool {
	for _, ag := range m.agents {
		if ag.Zone == zone {
			return true
		}
	}
	return false
}

// leader picks a partition's leader by rendezvous hashing over the live
// agents of the client's zone (all agents when the zone is unknown or has
// none), so every agent gives the same answer for the same view and losing
// an agent moves only its own partitions.
func (m *membership) leader(id catalog.TopicID, partition int32, zone string) int32 {
	var buf [32]uint64
	l := m.leaders(id, zone, buf[:0])
	return l.leader(partition)
}

// rendezvousView is a view's leader candidates, all of them and by zone,
// with the hash state of each after its agent id: an all-topics Metadata
// answer picks the leader of every partition of the cluster, and
// filtering the zone's agents and hashing their ids again for each
// partition made it cost hundreds of milliseconds and allocations per
// partition at 100,000 partitions.
type rendezvousView struct {
	all    rendezvousSet
	byZone map[string]*rendezvousSet
	// byZones is all's candidates again, zone by zone (zones, sorted),
	// then those of no zone; zoneEnd is where each zone's candidates end in it (see
	// partitionReplicas).
	zones   []string
	byZones rendezvousSet
	zoneEnd []int
}

// rendezvousSet is the candidates of one zone, by node id: their node ids
// and their hash states after the agent id and the 0 byte (see
// rendezvousScore).
type rendezvousSet struct {
	nodes []int32
	seeds []uint64
}

func (rs *rendezvousSet) add(ag catalog.Agent) {
	rs.nodes = append(rs.nodes, ag.NodeID)
	h := fnvString(fnvOffset, ag.ID)
	rs.seeds = append(rs.seeds, fnvByte(h, 0))
}

// candidates returns the leader candidates for a client of zone, built
// once per view.
func (m *membership) candidates(zone string) *rendezvousSet {
	m.rvOnce.Do(func() {
		rv := &rendezvousView{byZone: make(map[string]*rendezvousSet)}
		for _, ag := range m.agents {
			rv.all.add(ag)
			if ag.Zone != "" {
				rs := rv.byZone[ag.Zone]
				if rs == nil {
					rs = &rendezvousSet{}
					rv.byZone[ag.Zone] = rs
				}
				rs.add(ag)
			}
		}
		rv.zones = slices.Sorted(maps.Keys(rv.byZone))
		for _, z := range rv.zones {
			rs := rv.byZone[z]
			rv.byZones.nodes = append(rv.byZones.nodes, rs.nodes...)
			rv.byZones.seeds = append(rv.byZones.seeds, rs.seeds...)
			rv.zoneEnd = append(rv.zoneEnd, len(rv.byZones.nodes))
		}
		for _, ag := range m.agents {
			if ag.Zone == "" {
				rv.byZones.add(ag)
			}
		}
		m.rv = rv
	})
	if zone != "" {
		if rs := m.rv.byZone[zone]; rs != nil {
			return rs
		}
	}
	return &m.rv.all
}

// partitionLeaders picks the leaders of one topic's partitions for a
// client of one zone (see leader).
type partitionLeaders struct {
	nodes []int32
	// states are the candidates' hash states after the topic id.
	states []uint64
	self   int32
}

// leaders returns the leader picker of topic id for a client of zone;
// buf (when large enough) holds its state, so that it allocates nothing.
func (m *membership) leaders(id catalog.TopicID, zone string, buf []uint64) partitionLeaders {
	rs := m.candidates(zone)
	states := buf[:0]
	for _, h := range rs.seeds {
		for _, c := range id {
			h = fnvByte(h, c)
		}
		states = append(states, h)
	}
	return partitionLeaders{nodes: rs.nodes, states: states, self: m.self.NodeID}
}

// leader is pick's answer for the partition's key (the topic id, then the
// partition big-endian), or this agent for an empty view.
func (l *partitionLeaders) leader(partition int32) int32 {
	if len(l.nodes) == 0 {
		return l.self
	}
	best, _ := bestOf(l.nodes, l.states, partition)
	return best
}

// partitionScore is rendezvousScore for the partition's key continued from
// a candidate's hash state after the topic id.
func partitionScore(h uint64, partition int32) uint64 {
	h = fnvByte(h, byte(partition>>24))
	h = fnvByte(h, byte(partition>>16))
	h = fnvByte(h, byte(partition>>8))
	return splitmix(fnvByte(h, byte(partition)))
}

// partitionReplicas picks, for each partition of one topic, the replicas
// Metadata lists: the leader for a client of one zone (see leader), then
// the leader of every other zone of the view. Those are every agent that
// rack-aware Fetch may name as the preferred read replica (KIP-392; see
// steerToZone), and the Java consumer (since Kafka 3.4, KAFKA-14379)
// ignores a preferred replica its metadata does not list among the
// partition's replicas: it refreshes its metadata, fetches from the leader
// again, is steered again, and never consumes.
type partitionReplicas struct {
	// nodes and states are the candidates zone by zone (see
	// rendezvousView.byZones) and their hash states after the topic id.
	nodes   []int32
	states  []uint64
	zoneEnd []int
	// zone is the client's zone as an index into zoneEnd, -1 for all
	// agents.
	zone int
	self int32
}

// zoneCount is how many zones the view's agents are in: a partition has at
// most one replica more than that (see partitionReplicas).
func (m *membership) zoneCount() int {
	m.candidates("")
	return len(m.rv.zones)
}

// replicas returns the replica picker of topic id for a client of zone;
// buf (when large enough) holds its state, so that it allocates nothing.
func (m *membership) replicas(id catalog.TopicID, zone string, buf []uint64) partitionReplicas {
	m.candidates("")
	rv := m.rv
	states := buf[:0]
	for _, h := range rv.byZones.seeds {
		for _, c := range id {
			h = fnvByte(h, c)
		}
		states = append(states, h)
	}
	z := -1
	if zone != "" {
		z = slices.Index(rv.zones, zone)
	}
	return partitionReplicas{nodes: rv.byZones.nodes, states: states, zoneEnd: rv.zoneEnd, zone: z, self: m.self.NodeID}
}

// replicas appends the partition's replicas to out, its leader first: the
// leader leader picks for the client's zone, since a candidate's score is
// the same in every set it is in, and the best of a zone's candidates is
// that zone's leader.
func (r *partitionReplicas) replicas(partition int32, out []int32) []int32 {
	if len(r.nodes) == 0 {
		return append(out, r.self)
	}
	first := len(out)
	out = append(out, -1) // the leader's place
	top, topScore := int32(-1), uint64(0)
	lo := 0
	for _, hi := range r.zoneEnd {
		n, s := bestOf(r.nodes[lo:hi], r.states[lo:hi], partition)
		out = append(out, n)
		if top < 0 || s > topScore || (s == topScore && n < top) {
			top, topScore = n, s
		}
		lo = hi
	}
	if lo < len(r.nodes) {
		// The candidates of no zone lead only clients of no zone the
		// view has.
		if n, s := bestOf(r.nodes[lo:], r.states[lo:], partition); top < 0 || s > topScore || (s == topScore && n < top) {
			top = n
		}
	}
	zones := out[first+1:]
	leader := top
	if r.zone >= 0 {
		leader = zones[r.zone]
	}
	out[first] = leader
	if i := slices.Index(zones, leader); i >= 0 {
		copy(zones[i:], zones[i+1:])
		out = out[:len(out)-1]
	}
	return out
}

// bestOf is the candidate of nodes with the highest score for the
// partition, ties to the lower node id, and its score; nodes must not be
// empty.
func bestOf(nodes []int32, states []uint64, partition int32) (int32, uint64) {
	best, bestScore := nodes[0], partitionScore(states[0], partition)
	for i := 1; i < len(nodes) && i < len(states); i++ {
		s := partitionScore(states[i], partition)
		if s > bestScore || (s == bestScore && nodes[i] < best) {
			best, bestScore = nodes[i], s
		}
	}
	return best, bestScore
}

// pick is rendezvous hashing: the agent with the highest score for key,
// ties to the lower node id. candidates must not be empty.
func pick(candidates []catalog.Agent, key []byte) catalog.Agent {
	best, bestScore := candidates[0], rendezvousScore(candidates[0].ID, key)
	for _, ag := range candidates[1:] {
		s := rendezvousScore(ag.ID, key)
		if s > bestScore || (s == bestScore && ag.NodeID < best.NodeID) {
			best, bestScore = ag, s
		}
	}
	return best
}

// rendezvousScore hashes (agent, key) with FNV-1a (of the agent id, a 0
// byte and the key) and a splitmix64 finalizer: stable across processes
// and versions, which a placement that every agent computes independently
// needs. Never change it: agents of two versions would place differently.
func rendezvousScore(agentID string, key []byte) uint64 {
	h := fnvByte(fnvString(fnvOffset, agentID), 0)
	for _, c := range key {
		h = fnvByte(h, c)
	}
	return splitmix(h)
}

// FNV-1a, 64-bit, as hash/fnv's New64a, inline so that a partition's
// score continues from states computed once per agent and per topic.
const (
	fnvOffset uint64 = 14695981039346656037
	fnvPrime  uint64 = 1099511628211
)

func fnvByte(h uint64, c byte) uint64 { return (h ^ uint64(c)) * fnvPrime }

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = fnvByte(h, s[i])
	}
	return h
}

// splitmix is splitmix64's finalizer.
func splitmix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// clientZone extracts the zone a client names in its client id as
// "floe_az=<zone>", anywhere in the id, ended by ',', ';', ' ' or the end.
func clientZone(clientID string) string {
	const tag = "floe_az="
	i := strings.Index(clientID, tag)
	if i < 0 {
		return ""
	}
	z := clientID[i+len(tag):]
	if j := strings.IndexAny(z, ",; "); j >= 0 {
		z = z[:j]
	}
	return z
}

// broker returns the agent with the node id, if live.
func (m *membership) broker(nodeID int32) (catalog.Agent, bool) {
	for _, ag := range m.agents {
		if ag.NodeID == nodeID {
			return ag, true
		}
	}
	return catalog.Agent{}, false
}

// refreshMembers reads the live agents and reports whether it did. The
// current view stays on error.
func (a *Agent) refreshMembers(ctx context.Context) bool {
	cur := a.members.Load()
	start := time.Now()
	agents, gen, err := a.cat.LiveAgents(ctx, a.cfg.AgentTTL)
	if err != nil {
		a.log.Warn("reading live agents failed", "err", err)
		return false
	}
	// A view without this agent (its heartbeat is late, or the view was
	// read before its registration was visible) would send clients
	// elsewhere while it serves: always include it.
	a.storeView(cur, agents, gen)
	a.renewView(start)
	return true
}

// storeView stores a new view built from the catalog's live agents: this
// agent is added when missing (a view without it would send clients
// elsewhere while it serves) and removed while it leaves; the generation
// never goes back.
func (a *Agent) storeView(cur *membership, agents []catalog.Agent, gen int64) {
	found := -1
	for i, ag := range agents {
		if ag.NodeID == cur.self.NodeID {
			found = i
			break
		}
	}
	switch {
	case cur.leaving && found >= 0:
		agents = append(agents[:found:found], agents[found+1:]...)
	case !cur.leaving && found < 0:
		agents = insertByNodeID(agents, cur.self)
	}
	a.members.Store(&membership{self: cur.self, registered: cur.registered, leaving: cur.leaving, agents: agents, generation: max(gen, cur.generation)})
	if !sameNodes(cur.agents, agents) {
		a.viewChanged()
	}
	a.m.liveAgents.Set(float64(len(agents)))
}

// sameNodes reports whether two views (by NodeID) list the same agents at
// the same addresses.
func sameNodes(x, y []catalog.Agent) bool {
	return slices.EqualFunc(x, y, func(a, b catalog.Agent) bool {
		return a.NodeID == b.NodeID && a.Addr == b.Addr && a.Started.Equal(b.Started)
	})
}

// leave deregisters the agent and switches to a view without it, so that
// from now on its answers send clients to the other agents. It reports
// whether any other agent is live (then clients have somewhere to go and
// the caller waits for the other agents to notice). The heartbeat must
// have stopped: it would register the agent again.
func (a *Agent) leave(ctx context.Context) bool {
	cur := a.members.Load()
	// Once the deregistration commits, an agent that reads the view takes
	// this one's groups over at once: leave the view this agent serves
	// from first, if that leaves anyone in it. (An agent it does not list
	// joined too recently to take groups over before this view's lease
	// ends.)
	if slices.ContainsFunc(cur.agents, func(ag catalog.Agent) bool { return ag.NodeID != cur.self.NodeID }) {
		a.storeView(&membership{self: cur.self, registered: cur.registered, leaving: true, generation: cur.generation}, slices.Clone(cur.agents), cur.generation)
	}
	if err := a.cat.DeregisterAgent(ctx, cur.self.NodeID, cur.self.Started); err != nil && !errors.Is(err, catalog.ErrUnknownAgent) {
		a.log.Warn("deregister failed", "err", err)
	}
	agents, gen, err := a.cat.LiveAgents(ctx, a.cfg.AgentTTL)
	if err != nil {
		// Leave with the last view: it is at most one heartbeat old.
		a.log.Warn("reading live agents failed", "err", err)
		agents, gen = slices.Clone(cur.agents), cur.generation
	}
	others := 0
	for _, ag := range agents {
		if ag.NodeID != cur.self.NodeID {
			others++
		}
	}
	if others == 0 {
		// Keep serving as the only agent until the drain: no agent can
		// have taken its groups over.
		a.storeView(cur, agents, gen)
		return false
	}
	a.storeView(&membership{self: cur.self, registered: cur.registered, leaving: true, generation: cur.generation}, agents, gen)
	return true
}

func insertByNodeID(agents []catalog.Agent, ag catalog.Agent) []catalog.Agent {
	out := make([]catalog.Agent, 0, len(agents)+1)
	done := false
	for _, x := range agents {
		if !done && ag.NodeID < x.NodeID {
			out = append(out, ag)
			done = true
		}
		out = append(out, x)
	}
	if !done {
		out = append(out, ag)
	}
	return out
}

// heartbeat renews the registration, expires dead agents and refreshes the
// fleet view every HeartbeatInterval until ctx ends. An agent the catalog
// forgot (it was expired while paused) registers again, under its node id.
//
// Only an agent that has itself heartbeaten without a gap for a whole
// AgentTTL judges the others: after the catalog was unreachable for longer
// than the TTL, every agent's heartbeat is stale, and the first to reach
// the catalog again would otherwise expire the rest just before they
// heartbeat too: they would drop out of every view until they registered
// again, their groups and partitions moving away and back (a coordinator
// change for each of their groups, every client's metadata changing).
// Until then it expires nobody.
//
// Each success renews the coordination lease (lease.go); a call is cut
// off at TTL/2, and the lease's own timer stops group coordination at the
// lapse even while a call hangs.
func (a *Agent) heartbeat(ctx context.Context) {
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	var hb heartbeatRun
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A call stuck on a dead connection (the catalog's host vanished
		// without a reset) would otherwise stall the heartbeat until TCP
		// gives up, many minutes after the agent was expired.
		rctx, cancel := context.WithTimeout(ctx, a.cfg.AgentTTL/2)
		a.heartbeatOnce(rctx, &hb)
		cancel()
	}
}

// registration is what this agent registers in the catalog.
func (a *Agent) registration() catalog.Agent {
	return catalog.Agent{ID: a.cfg.AgentID, Addr: a.advertise, Zone: a.cfg.Zone, Started: a.incarnation}
}

// register registers the agent at start. A live registration of another
// incarnation of its ID — the previous run of this process, killed before
// its heartbeat lapsed, or another process given the same agent ID —
// makes it wait, retrying every heartbeat interval, for up to twice the
// TTL: a dead run's heartbeat lapses within one TTL, while a process
// still heartbeating after two is a duplicate, and taking its row would
// give two agents one node id.
func (a *Agent) register(ctx context.Context) (catalog.Agent, error) {
	wait := 2 * a.cfg.AgentTTL
	deadline := time.Now().Add(wait)
	for logged := false; ; logged = true {
		start := time.Now()
		self, err := a.cat.RegisterAgent(ctx, a.registration(), a.cfg.AgentTTL)
		if err == nil {
			a.renewLease(start)
		}
		if !errors.Is(err, catalog.ErrAgentIDInUse) {
			return self, err
		}
		if time.Now().After(deadline) {
			return self, fmt.Errorf("%w (still live after %v: is another process running with --agent-id %s?)", err, wait, a.cfg.AgentID)
		}
		if !logged {
			a.log.Warn("agent id registered by a live process; waiting for its heartbeat to lapse", "err", err, "up_to", wait)
		}
		t := time.NewTimer(a.cfg.HeartbeatInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return self, ctx.Err()
		case <-t.C:
		}
	}
}

// heartbeatRun is this agent's run of successful heartbeats: the last one
// and when the current run without a gap began (zero after a failure). The
// heartbeat ticker runs on real time, so these do too.
type heartbeatRun struct {
	lastOK, since time.Time
}

// heartbeatOnce is one round of heartbeat.
func (a *Agent) heartbeatOnce(ctx context.Context, hb *heartbeatRun) {
	cur := a.members.Load()
	// The catalog stores a heartbeat time read after this (lease.go).
	start := time.Now()
	err := a.cat.HeartbeatAgent(ctx, cur.self.NodeID, cur.self.Started)
	switch {
	case errors.Is(err, catalog.ErrUnknownAgent):
		hb.since = time.Time{} // it was paused or cut off
		if cur.registered {
			a.log.Warn("catalog forgot this agent; registering again", "node", cur.self.NodeID)
		}
		start = time.Now()
		self, rerr := a.cat.RegisterAgent(ctx, a.registration(), a.cfg.AgentTTL)
		switch {
		case errors.Is(rerr, catalog.ErrAgentIDInUse):
			// Another process took this agent ID over while this one was
			// cut off or paused past the TTL. Both would be one node id:
			// stop claiming it (no group coordination, not ready) and
			// retry every round in case the other goes away. The view
			// still follows the fleet, so that this agent's answers name
			// the node id at the other process's address and no agent
			// that has since left.
			if cur.registered {
				a.log.Error("another process registered this agent id; serving no groups and not ready until it leaves", "err", rerr)
				a.members.Store(&membership{self: cur.self, agents: cur.agents, generation: cur.generation})
				a.viewChanged()
			}
			a.refreshMembers(ctx)
			return
		case rerr != nil:
			a.log.Warn("re-registration failed", "err", rerr)
			return
		}
		// Other agents took this one's groups over when they expired it;
		// it serves them again only once they have seen it back.
		a.rejoin()
		a.renewLease(start)
		a.members.Store(&membership{self: self, registered: true, agents: []catalog.Agent{self}, generation: cur.generation})
		a.viewChanged()
	case err != nil:
		hb.since = time.Time{}
		if ctx.Err() == nil || errors.Is(err, context.DeadlineExceeded) {
			a.log.Warn("heartbeat failed", "err", err)
		}
		return
	default:
		a.renewLease(start)
	}
	now := time.Now()
	if hb.since.IsZero() || now.Sub(hb.lastOK) >= a.cfg.AgentTTL/2 {
		hb.since = now
	}
	hb.lastOK = now
	if now.Sub(hb.since) >= a.cfg.AgentTTL {
		if _, err := a.cat.ExpireAgents(ctx, a.cfg.AgentTTL); err != nil && ctx.Err() == nil {
			a.log.Warn("expiring dead agents failed", "err", err)
		}
	}
	refreshed := a.refreshMembers(ctx)
	if a.lease.rejoin.Swap(false) {
		a.settleJoin(refreshed)
	}
}

// Coordinator is the consumer-group placement (agent/groups.Placement): a
// rendezvous hash of the group id over the live agents of every zone, so
// all members of a group meet at one agent whatever their zones. It reads
// only the in-memory view. A client on a per-zone listener is given the
// coordinator's listener for that zone; a coordinator without one fails
// (FindCoordinator: COORDINATOR_NOT_AVAILABLE, as Kafka answers when the
// coordinator lacks the client's listener): the group cannot move to an
// agent that has it, its members on other listeners must meet it where it
// is, and its main listener would take the client off its own for good
// (see membership.onListener). It fails while the agent is not
// registered (before start, or while another process holds its id) and
// while its coordination lease has lapsed (lease.go): the agent then
// coordinates no group, and names no coordinator. For a group placed on
// this agent before its join has settled (lease.go) it names this agent
// with groups.ErrJoining.
func (a *Agent) Coordinator(ctx context.Context, key string) (int32, string, int32, error) {
	m := a.members.Load()
	if !m.registered {
		return -1, "", -1, errors.New("agent: not registered yet")
	}
	if !a.holdsLease() {
		return -1, "", -1, errLeaseLapsed
	}
	agents := m.agents
	if len(agents) == 0 {
		agents = []catalog.Agent{m.self}
	}
	ag := pick(agents, []byte(key))
	zone, _ := ctx.Value(listenerZoneKey{}).(string)
	if _, ok := listenerAddr(ag, zone); !ok {
		return -1, "", -1, fmt.Errorf("agent: the coordinator, node %d, has no listener for zone %s (--zone-listeners): give every agent one", ag.NodeID, zone)
	}
	host, port := agentAddr(ag, zone)
	if ag.NodeID == m.self.NodeID && !a.JoinSettled() {
		return ag.NodeID, host, port, groups.ErrJoining
	}
	return ag.NodeID, host, port, nil
}

// Self is this agent's node id (agent/groups.Placement).
func (a *Agent) Self() int32 { return a.NodeID() }

// ViewEpoch changes whenever placement may have changed
// (agent/groups.ViewEpocher).
func (a *Agent) ViewEpoch() uint64 { return a.viewEpoch.Load() }

// viewChanged notes that placement may have changed (after the new view
// or lease state is stored): the view epoch moves on, and the group
// coordinator checks at once which groups in memory are still this
// agent's.
func (a *Agent) viewChanged() {
	a.viewEpoch.Add(1)
	if a.groups != nil {
		a.groups.ViewChanged()
	}
}
