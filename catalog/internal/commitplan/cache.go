package commitplan

import (
	"slices"
	"sync"

	"github.com/floebroker/floe/catalog"
)

// StateCache remembers, per (producer, partition), the producer state a
// backend last read or wrote with its version, and each producer's epoch,
// so that a commit whose producers are all known can skip reading them.
//
// Entries are hints, never trusted: a backend using them must verify every
// one in the commit's own transaction, under the partition locks (the
// version of each state row, the epoch of each producer), give up the
// commit when one does not hold, and Forget what it used. Only values
// verified by a commit that reached COMMIT are stored. Safe for concurrent
// use; bounded by evicting arbitrary entries (a producer's states on a
// topic go together).
//
// A producer id the backend has just allocated (NewProducer) has no state
// on any partition yet, so its keys count as cached without state until a
// commit stores or forgets them: the first commit of a new producer, which
// spans every partition it wrote to (2,000 at once for a client spreading
// records over a wide topic), then skips the read as later ones do. That
// hint is verified like the others: a state row written meanwhile through
// another backend fails the commit's check and the producer is forgotten.
type StateCache struct {
	mu  sync.Mutex
	max int
	// groups holds the states by producer and topic, each group sorted
	// by partition: a commit's keys come sorted the same way, so looking
	// up or storing thousands of them walks a few arrays in order instead
	// of probing a map per key (which cost a 2,000-partition commit most
	// of a millisecond).
	groups map[stateGroup]*groupStates
	n      int             // states held by groups
	epochs map[int64]int16 // NoEpoch: the catalog does not know the producer
	// fresh holds the producers allocated by this backend and not
	// forgotten since: keys of theirs not in states have no state row.
	fresh map[int64]struct{}
}

// stateGroup names one producer's states on one topic.
type stateGroup struct {
	pid   int64
	topic catalog.TopicID
}

func groupOf(k ProducerKey) stateGroup { return stateGroup{k.ProducerID, k.TopicID} }

func (g stateGroup) holds(k ProducerKey) bool { return g.pid == k.ProducerID && g.topic == k.TopicID }

type groupStates struct {
	parts  []int32       // sorted, distinct
	states []CachedState // states[i] is partition parts[i]'s
}

// find returns the position of partition p, or where it would be
// inserted. hint, the position after the previous find, is checked first:
// keys come in order.
func (g *groupStates) find(p int32, hint int) (int, bool) {
	if hint < len(g.parts) && g.parts[hint] == p {
		return hint, true
	}
	return slices.BinarySearch(g.parts, p)
}

// CachedState is a producer's state on one partition as of Version.
type CachedState struct {
	State   ProducerState // offsets absolute
	Has     bool          // false: no state row (Version 0)
	Version int64
}

// NoEpoch marks a producer id the catalog does not know.
const NoEpoch int16 = -1

// NewStateCache returns a cache of at most max states (and as many
// epochs).
func NewStateCache(max int) *StateCache {
	return &StateCache{
		max:    max,
		groups: make(map[stateGroup]*groupStates),
		epochs: make(map[int64]int16),
		fresh:  make(map[int64]struct{}),
	}
}

// NewProducer records that pid was just allocated with epoch, so it has no
// state on any partition.
func (c *StateCache) NewProducer(pid int64, epoch int16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epochs[pid] = epoch
	c.fresh[pid] = struct{}{}
	evict(c.epochs, c.max)
	evict(c.fresh, c.max)
}

// Lookup fills in.States, in.HasState and versions (by position in
// in.Keys) and in.Epochs and in.KnownEpoch (by position in in.PIDs), and
// reports whether every key and producer was cached; when one was not, it
// leaves them empty and the caller must read them all.
func (c *StateCache) Lookup(in *LayoutInput, versions []int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, pid := range in.PIDs {
		e, ok := c.epochs[pid]
		if !ok {
			clearLookup(in, versions)
			return false
		}
		if e != NoEpoch {
			in.Epochs[i], in.KnownEpoch[i] = e, true
		}
	}
	var g *groupStates
	var cur stateGroup
	hint := 0
	for k, key := range in.Keys {
		if k == 0 || !cur.holds(key) {
			cur, hint = groupOf(key), 0
			g = c.groups[cur]
		}
		var s *CachedState
		if g != nil {
			if i, ok := g.find(key.Partition, hint); ok {
				s, hint = &g.states[i], i+1
			}
		}
		if s == nil {
			if _, isNew := c.fresh[key.ProducerID]; isNew {
				continue // no state row yet: as if cached with none
			}
			clearLookup(in, versions)
			return false
		}
		if s.Has {
			in.States[k], in.HasState[k], versions[k] = s.State, true, s.Version
		}
	}
	return true
}

func clearLookup(in *LayoutInput, versions []int64) {
	clear(in.States)
	clear(in.HasState)
	clear(versions)
	clear(in.Epochs)
	clear(in.KnownEpoch)
}

// Store records the states of keys and the epochs of pids, as a commit
// verified them (states[i] is keys[i]'s, epochs[i] pids[i]'s). A state
// older than the cached one (a slower concurrent commit finishing late) is
// ignored.
func (c *StateCache) Store(keys []ProducerKey, states []CachedState, pids []int64, epochs []int16) {
	c.StoreEach(keys, func(i int) CachedState { return states[i] }, pids, epochs)
}

// StoreEach is Store with keys[i]'s state given by state(i), so a caller
// with thousands of keys need not collect them first. state runs with the
// cache locked.
func (c *StateCache) StoreEach(keys []ProducerKey, state func(i int) CachedState, pids []int64, epochs []int16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var g *groupStates
	var cur stateGroup
	hint := 0
	for k, key := range keys {
		if k == 0 || !cur.holds(key) {
			cur, hint = groupOf(key), 0
			if g = c.groups[cur]; g == nil {
				g = &groupStates{}
				c.groups[cur] = g
			}
		}
		s := state(k)
		i, ok := g.find(key.Partition, hint)
		hint = i + 1
		switch {
		case ok && g.states[i].Version > s.Version:
		case ok:
			g.states[i] = s
		default:
			g.parts = slices.Insert(g.parts, i, key.Partition) // appends, for keys in order
			g.states = slices.Insert(g.states, i, s)
			c.n++
		}
	}
	for i, pid := range pids {
		c.epochs[pid] = epochs[i]
	}
	c.evictStates()
	evict(c.epochs, c.max)
}

// Forget drops keys and pids, after a commit found one of them stale or
// ended without knowing whether it committed.
func (c *StateCache) Forget(keys []ProducerKey, pids []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Each run of keys of one group is dropped in one pass over it.
	for len(keys) > 0 {
		cur := groupOf(keys[0])
		run := 1
		for run < len(keys) && groupOf(keys[run]) == cur {
			run++
		}
		if g := c.groups[cur]; g != nil {
			drop := make([]int32, run)
			for i, k := range keys[:run] {
				drop[i] = k.Partition
			}
			slices.Sort(drop)
			w := 0
			for i, p := range g.parts {
				if _, found := slices.BinarySearch(drop, p); !found {
					g.parts[w], g.states[w] = p, g.states[i]
					w++
				}
			}
			c.n -= len(g.parts) - w
			clear(g.states[w:])
			g.parts, g.states = g.parts[:w], g.states[:w]
			if w == 0 {
				delete(c.groups, cur)
			}
		}
		keys = keys[run:]
	}
	for _, pid := range pids {
		delete(c.epochs, pid)
		delete(c.fresh, pid)
	}
}

// evictStates drops arbitrary groups (map order is random) down to 7/8 of
// max states once the cache holds more than max.
func (c *StateCache) evictStates() {
	if c.n <= c.max {
		return
	}
	for key, g := range c.groups {
		if c.n <= c.max-c.max/8 {
			return
		}
		c.n -= len(g.parts)
		delete(c.groups, key)
	}
}

// evict deletes arbitrary entries (map order is random) down to 7/8 of
// max once m outgrows max, so eviction runs once per max/8 insertions.
func evict[K comparable, V any](m map[K]V, max int) {
	if len(m) <= max {
		return
	}
	for k := range m {
		if len(m) <= max-max/8 {
			return
		}
		delete(m, k)
	}
}

// ResolveEntries turns the relative base offsets in entries (those a plan
// built against RelBase) absolute against base, the partition's next
// offset when the commit started, in place.
func ResolveEntries(entries []SeqEntry, base int64) {
	for i := range entries {
		if IsRelative(entries[i].BaseOffset) {
			entries[i].BaseOffset = entries[i].BaseOffset - RelBase + base
		}
	}
}
