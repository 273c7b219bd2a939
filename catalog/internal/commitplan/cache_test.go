package commitplan

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/floebroker/floe/catalog"
)

// lookup runs c.Lookup for keys and pids and returns what it filled in:
// states and versions by key, epochs by producer.
func lookup(c *StateCache, keys []ProducerKey, pids []int64) (states map[ProducerKey]ProducerState, versions map[ProducerKey]int64, epochs map[int64]int16, ok bool) {
	in := NewLayoutInput(catalog.Segment{}, &Layout{Keys: keys, PIDs: pids})
	vs := make([]int64, len(keys))
	ok = c.Lookup(&in, vs)
	states, versions, epochs = map[ProducerKey]ProducerState{}, map[ProducerKey]int64{}, map[int64]int16{}
	for k, key := range keys {
		if in.HasState[k] {
			states[key] = in.States[k]
		}
		if vs[k] != 0 {
			versions[key] = vs[k]
		}
	}
	for i, pid := range pids {
		if in.KnownEpoch[i] {
			epochs[pid] = in.Epochs[i]
		}
	}
	return states, versions, epochs, ok
}

func TestStateCache(t *testing.T) {
	c := NewStateCache(100)
	kA, kB := ProducerKey{7, tpA}, ProducerKey{7, tpB}
	if _, _, _, ok := lookup(c, []ProducerKey{kA}, []int64{7}); ok {
		t.Fatal("empty cache answered")
	}

	st := ProducerState{Epoch: 2, Entries: []SeqEntry{{0, 9, 100}}}
	c.Store([]ProducerKey{kA, kB}, []CachedState{{State: st, Has: true, Version: 5}, {}}, []int64{7, 8}, []int16{2, NoEpoch})
	states, versions, epochs, ok := lookup(c, []ProducerKey{kA, kB}, []int64{7, 8})
	if !ok {
		t.Fatal("cached keys not found")
	}
	if got := states[kA]; got.Epoch != 2 || len(got.Entries) != 1 || versions[kA] != 5 {
		t.Fatalf("state %+v version %d", got, versions[kA])
	}
	if _, ok := states[kB]; ok || versions[kB] != 0 {
		t.Fatal("a key known to have no state got one")
	}
	if e, ok := epochs[8]; ok {
		t.Fatalf("unknown producer got epoch %d", e)
	}

	// A slower commit's older version does not replace a newer one.
	c.Store([]ProducerKey{kA}, []CachedState{{State: ProducerState{Epoch: 1}, Has: true, Version: 4}}, nil, nil)
	_, versions, _, _ = lookup(c, []ProducerKey{kA}, nil)
	if versions[kA] != 5 {
		t.Fatalf("version %d after an older store", versions[kA])
	}

	// One missing key or epoch: nothing is filled in.
	c.Forget([]ProducerKey{kB}, nil)
	if states, versions, epochs, ok := lookup(c, []ProducerKey{kA, kB}, []int64{7}); ok || len(states)+len(versions)+len(epochs) != 0 {
		t.Fatalf("partial lookup: %v %v %v", states, versions, epochs)
	}
	c.Forget(nil, []int64{7})
	if _, _, _, ok := lookup(c, []ProducerKey{kA}, []int64{7}); ok {
		t.Fatal("forgotten epoch answered")
	}
}

func TestStateCacheBounded(t *testing.T) {
	c := NewStateCache(64)
	for i := range int64(1000) {
		k := ProducerKey{i, catalog.TopicPartition{Partition: 1}}
		c.Store([]ProducerKey{k}, []CachedState{{Version: 1}}, []int64{i}, []int16{0})
	}
	if c.n > 64 || len(c.epochs) > 64 {
		t.Fatalf("%d states, %d epochs cached, want at most 64", c.n, len(c.epochs))
	}
	// Many states of one producer on one topic, one commit at a time.
	c = NewStateCache(64)
	for i := range int32(1000) {
		k := ProducerKey{7, catalog.TopicPartition{Partition: i}}
		c.Store([]ProducerKey{k}, []CachedState{{Version: 1}}, nil, nil)
	}
	if c.n > 64 {
		t.Fatalf("%d states cached, want at most 64", c.n)
	}
}

// TestStateCacheModel runs random stores, lookups and forgets, in and out
// of key order, against a map of what the cache may hold: a lookup that
// succeeds returns exactly the model's states (the cache may forget, never
// invent), and without eviction one that fails names a key or producer the
// model lacks.
func TestStateCacheModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	c := NewStateCache(1 << 20) // no eviction
	states := map[ProducerKey]CachedState{}
	epochs := map[int64]int16{}
	fresh := map[int64]bool{}
	topics := []catalog.TopicID{{1}, {2}}
	randKeys := func() ([]ProducerKey, []int64) {
		var keys []ProducerKey
		for range 1 + rng.IntN(12) {
			keys = append(keys, ProducerKey{int64(rng.IntN(3)), catalog.TopicPartition{TopicID: topics[rng.IntN(2)], Partition: int32(rng.IntN(8))}})
		}
		if rng.IntN(4) != 0 {
			slices.SortFunc(keys, CompareKey)
		}
		keys = slices.CompactFunc(keys, func(a, b ProducerKey) bool { return a == b })
		var pids []int64
		for _, k := range keys {
			pids = append(pids, k.ProducerID)
		}
		slices.Sort(pids)
		return keys, slices.Compact(pids)
	}
	answered := 0
	for iter := range 20000 {
		keys, pids := randKeys()
		switch op := rng.IntN(10); {
		case op < 4:
			// Keys may repeat out of order: the last one stored wins
			// unless older, as in the model.
			vs := make([]CachedState, len(keys))
			for i := range vs {
				vs[i] = CachedState{Has: rng.IntN(2) == 0, Version: rng.Int64N(20)}
				vs[i].State.Epoch = int16(vs[i].Version)
			}
			es := make([]int16, len(pids))
			c.Store(keys, vs, pids, es)
			for i, k := range keys {
				if old, ok := states[k]; !ok || old.Version <= vs[i].Version {
					states[k] = vs[i]
				}
			}
			for _, pid := range pids {
				epochs[pid] = 0
			}
		case op < 5:
			forgotten := pids[:rng.IntN(len(pids)+1)]
			c.Forget(keys, forgotten)
			for _, k := range keys {
				delete(states, k)
			}
			for _, pid := range forgotten {
				delete(epochs, pid)
				delete(fresh, pid)
			}
		case op < 6:
			pid := int64(rng.IntN(3))
			c.NewProducer(pid, 0)
			epochs[pid], fresh[pid] = 0, true
		default:
			slices.SortFunc(keys, CompareKey) // Lookup takes a layout's sorted keys
			got, gotVersions, _, ok := lookup(c, keys, pids)
			if !ok {
				continue
			}
			answered++
			for _, k := range keys {
				want, cached := states[k]
				if !cached && !fresh[k.ProducerID] {
					t.Fatalf("iteration %d: %v answered but never stored", iter, k)
				}
				if g, has := got[k]; has != (cached && want.Has) || (has && (g.Epoch != want.State.Epoch || gotVersions[k] != want.Version)) {
					t.Fatalf("iteration %d: %v = %+v v%d, want %+v", iter, k, g, gotVersions[k], want)
				}
			}
		}
	}
	if answered < 1000 {
		t.Fatalf("only %d lookups answered", answered)
	}
	n := 0
	for _, g := range c.groups {
		n += len(g.parts)
		if !slices.IsSorted(g.parts) || len(g.parts) != len(g.states) || len(g.parts) == 0 {
			t.Fatalf("group %+v", g)
		}
	}
	if n != c.n || n != len(states) {
		t.Fatalf("%d states in groups, %d counted, %d in the model", n, c.n, len(states))
	}
}

func TestResolveEntries(t *testing.T) {
	es := []SeqEntry{{0, 9, 40}, {10, 19, RelBase + 3}}
	ResolveEntries(es, 100)
	if es[0].BaseOffset != 40 || es[1].BaseOffset != 103 {
		t.Fatalf("%+v", es)
	}
}

// TestStateCacheNewProducer: a producer the backend allocated has no state
// anywhere until a commit stores one, or something forgets it.
func TestStateCacheNewProducer(t *testing.T) {
	c := NewStateCache(100)
	kA, kB := ProducerKey{7, tpA}, ProducerKey{7, tpB}
	c.NewProducer(7, 0)
	states, versions, epochs, ok := lookup(c, []ProducerKey{kA, kB}, []int64{7})
	if !ok {
		t.Fatal("a new producer's keys were not answered")
	}
	if e, known := epochs[7]; len(states)+len(versions) != 0 || !known || e != 0 {
		t.Fatalf("new producer: states %v versions %v epochs %v", states, versions, epochs)
	}
	// A stored state wins over "none yet".
	st := ProducerState{Epoch: 0, Entries: []SeqEntry{{0, 9, 100}}}
	c.Store([]ProducerKey{kA}, []CachedState{{State: st, Has: true, Version: 5}}, []int64{7}, []int16{0})
	if _, versions, _, ok := lookup(c, []ProducerKey{kA, kB}, []int64{7}); !ok || versions[kA] != 5 || versions[kB] != 0 {
		t.Fatalf("after a store: versions %v", versions)
	}
	// Forgetting the producer (a stale hint) ends "none yet" for every key.
	c.Forget([]ProducerKey{kA}, []int64{7})
	if _, _, _, ok := lookup(c, []ProducerKey{kB}, []int64{7}); ok {
		t.Fatal("a forgotten producer's keys were answered")
	}
	// Another producer is not new.
	c.NewProducer(8, 0)
	if _, _, _, ok := lookup(c, []ProducerKey{{9, tpA}}, []int64{8, 9}); ok {
		t.Fatal("an unknown producer's key was answered")
	}
}
