package commitplan

import "sync"

// StateCache remembers, per (producer, partition), the producer state a
// backend last read or wrote with its version, and each producer's epoch,
// so that a commit whose producers are all known can skip reading them.
//
// Entries are hints, never trusted: a backend using them must verify every
// one in the commit's own transaction, under the partition locks (the
// version of each state row, the epoch of each producer), give up the
// commit when one does not hold, and Forget what it used. Only values
// verified by a commit that reached COMMIT are stored. Safe for concurrent
// use; bounded by evicting arbitrary entries.
//
// A producer id the backend has just allocated (NewProducer) has no state
// on any partition yet, so its keys count as cached without state until a
// commit stores or forgets them: the first commit of a new producer, which
// spans every partition it wrote to (2,000 at once for a client spreading
// records over a wide topic), then skips the read as later ones do. That
// hint is verified like the others: a state row written meanwhile through
// another backend fails the commit's check and the producer is forgotten.
type StateCache struct {
	mu     sync.Mutex
	max    int
	states map[ProducerKey]CachedState
	epochs map[int64]int16 // NoEpoch: the catalog does not know the producer
	// fresh holds the producers allocated by this backend and not
	// forgotten since: keys of theirs not in states have no state row.
	fresh map[int64]struct{}
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
		states: make(map[ProducerKey]CachedState),
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

// Lookup fills in.States, versions and in.Epochs for keys and pids, and
// reports whether every one was cached; when one was not, it leaves them
// empty and the caller must read them all.
func (c *StateCache) Lookup(keys []ProducerKey, pids []int64, in *Input, versions map[ProducerKey]int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, pid := range pids {
		e, ok := c.epochs[pid]
		if !ok {
			clear(in.Epochs)
			return false
		}
		if e != NoEpoch {
			in.Epochs[pid] = e
		}
	}
	for _, k := range keys {
		s, ok := c.states[k]
		if !ok {
			if _, isNew := c.fresh[k.ProducerID]; isNew {
				continue // no state row yet: as if cached with none
			}
			clear(in.Epochs)
			clear(in.States)
			clear(versions)
			return false
		}
		if s.Has {
			in.States[k] = s.State
			versions[k] = s.Version
		}
	}
	return true
}

// Store records the states of keys and the epochs of pids, as a commit
// verified them (states[i] is keys[i]'s, epochs[i] pids[i]'s). A state
// older than the cached one (a slower concurrent commit finishing late) is
// ignored.
func (c *StateCache) Store(keys []ProducerKey, states []CachedState, pids []int64, epochs []int16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, k := range keys {
		if old, ok := c.states[k]; ok && old.Version > states[i].Version {
			continue
		}
		c.states[k] = states[i]
	}
	for i, pid := range pids {
		c.epochs[pid] = epochs[i]
	}
	evict(c.states, c.max)
	evict(c.epochs, c.max)
}

// Forget drops keys and pids, after a commit found one of them stale or
// ended without knowing whether it committed.
func (c *StateCache) Forget(keys []ProducerKey, pids []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		delete(c.states, k)
	}
	for _, pid := range pids {
		delete(c.epochs, pid)
		delete(c.fresh, pid)
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
