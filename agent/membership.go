package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"math"
	"strings"
	"time"

	"github.com/floebroker/floe/catalog"
)

// membership is one immutable view of the fleet: the live agents (always
// including this one) and the membership generation, which is every
// partition's leader epoch.
type membership struct {
	self       catalog.Agent
	registered bool
	agents     []catalog.Agent // by NodeID
	generation int64
}

// leaderEpoch is the generation as Kafka's int32 epoch.
func (m *membership) leaderEpoch() int32 {
	return int32(min(max(m.generation, 0), math.MaxInt32))
}

// leader picks a partition's leader by rendezvous hashing over the live
// agents of the client's zone (all agents when the zone is unknown or has
// none), so every agent gives the same answer for the same view and losing
// an agent moves only its own partitions.
func (m *membership) leader(id catalog.TopicID, partition int32, zone string) int32 {
	candidates := m.agents
	if zone != "" {
		var inZone []catalog.Agent
		for _, ag := range m.agents {
			if ag.Zone == zone {
				inZone = append(inZone, ag)
			}
		}
		if len(inZone) > 0 {
			candidates = inZone
		}
	}
	if len(candidates) == 0 {
		return m.self.NodeID
	}
	var key [20]byte
	copy(key[:], id[:])
	binary.BigEndian.PutUint32(key[16:], uint32(partition))
	return pick(candidates, key[:]).NodeID
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

// rendezvousScore hashes (agent, key) with FNV-1a and a splitmix64
// finalizer: stable across processes and versions, which a placement that
// every agent computes independently needs.
func rendezvousScore(agentID string, key []byte) uint64 {
	h := fnv.New64a()
	h.Write([]byte(agentID))
	h.Write([]byte{0})
	h.Write(key)
	x := h.Sum64()
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

// refreshMembers reads the live agents. The current view stays on error.
func (a *Agent) refreshMembers(ctx context.Context) {
	cur := a.members.Load()
	agents, gen, err := a.cat.LiveAgents(ctx, a.cfg.AgentTTL)
	if err != nil {
		a.log.Warn("reading live agents failed", "err", err)
		return
	}
	// A view without this agent (its heartbeat is late, or the view was
	// read before its registration was visible) would send clients
	// elsewhere while it serves: always include it.
	found := false
	for _, ag := range agents {
		if ag.NodeID == cur.self.NodeID {
			found = true
			break
		}
	}
	if !found {
		agents = insertByNodeID(agents, cur.self)
	}
	a.members.Store(&membership{self: cur.self, registered: cur.registered, agents: agents, generation: max(gen, cur.generation)})
	a.m.liveAgents.Set(float64(len(agents)))
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
// forgot (it was expired while paused) registers again, with a new node id.
func (a *Agent) heartbeat(ctx context.Context) {
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := a.members.Load()
		err := a.cat.HeartbeatAgent(ctx, cur.self.NodeID)
		switch {
		case errors.Is(err, catalog.ErrUnknownAgent):
			a.log.Warn("catalog forgot this agent; registering again", "node", cur.self.NodeID)
			self, rerr := a.cat.RegisterAgent(ctx, catalog.Agent{ID: a.cfg.AgentID, Addr: a.advertise, Zone: a.cfg.Zone})
			if rerr != nil {
				a.log.Warn("re-registration failed", "err", rerr)
				continue
			}
			a.members.Store(&membership{self: self, registered: true, agents: []catalog.Agent{self}, generation: cur.generation})
		case err != nil:
			if ctx.Err() == nil {
				a.log.Warn("heartbeat failed", "err", err)
			}
			continue
		}
		if _, err := a.cat.ExpireAgents(ctx, a.cfg.AgentTTL); err != nil && ctx.Err() == nil {
			a.log.Warn("expiring dead agents failed", "err", err)
		}
		a.refreshMembers(ctx)
	}
}

// Coordinator is the consumer-group placement (agent/groups.Placement): a
// rendezvous hash of the group id over the live agents of every zone, so
// all members of a group meet at one agent whatever their zones. It reads
// only the in-memory view.
func (a *Agent) Coordinator(_ context.Context, key string) (int32, string, int32, error) {
	m := a.members.Load()
	if !m.registered {
		return -1, "", -1, errors.New("agent: not registered yet")
	}
	agents := m.agents
	if len(agents) == 0 {
		agents = []catalog.Agent{m.self}
	}
	ag := pick(agents, []byte(key))
	host, port := hostPort(ag.Addr)
	return ag.NodeID, host, port, nil
}

// Self is this agent's node id (agent/groups.Placement).
func (a *Agent) Self() int32 { return a.NodeID() }
