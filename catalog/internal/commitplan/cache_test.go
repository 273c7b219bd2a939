package commitplan

import (
	"testing"

	"github.com/floebroker/floe/catalog"
)

func newInput() Input {
	return Input{States: map[ProducerKey]ProducerState{}, Epochs: map[int64]int16{}}
}

func TestStateCache(t *testing.T) {
	c := NewStateCache(100)
	kA, kB := ProducerKey{7, tpA}, ProducerKey{7, tpB}
	in, versions := newInput(), map[ProducerKey]int64{}
	if c.Lookup([]ProducerKey{kA}, []int64{7}, &in, versions) {
		t.Fatal("empty cache answered")
	}

	st := ProducerState{Epoch: 2, Entries: []SeqEntry{{0, 9, 100}}}
	c.Store([]ProducerKey{kA, kB}, []CachedState{{State: st, Has: true, Version: 5}, {}}, []int64{7, 8}, []int16{2, NoEpoch})
	in, versions = newInput(), map[ProducerKey]int64{}
	if !c.Lookup([]ProducerKey{kA, kB}, []int64{7, 8}, &in, versions) {
		t.Fatal("cached keys not found")
	}
	if got := in.States[kA]; got.Epoch != 2 || len(got.Entries) != 1 || versions[kA] != 5 {
		t.Fatalf("state %+v version %d", got, versions[kA])
	}
	if _, ok := in.States[kB]; ok || versions[kB] != 0 {
		t.Fatal("a key known to have no state got one")
	}
	if e, ok := in.Epochs[8]; ok {
		t.Fatalf("unknown producer got epoch %d", e)
	}

	// A slower commit's older version does not replace a newer one.
	c.Store([]ProducerKey{kA}, []CachedState{{State: ProducerState{Epoch: 1}, Has: true, Version: 4}}, nil, nil)
	in, versions = newInput(), map[ProducerKey]int64{}
	c.Lookup([]ProducerKey{kA}, nil, &in, versions)
	if versions[kA] != 5 {
		t.Fatalf("version %d after an older store", versions[kA])
	}

	// One missing key or epoch: nothing is filled in.
	c.Forget([]ProducerKey{kB}, nil)
	in, versions = newInput(), map[ProducerKey]int64{}
	if c.Lookup([]ProducerKey{kA, kB}, []int64{7}, &in, versions) || len(in.States)+len(versions)+len(in.Epochs) != 0 {
		t.Fatalf("partial lookup: %v %v %v", in.States, versions, in.Epochs)
	}
	c.Forget(nil, []int64{7})
	if c.Lookup([]ProducerKey{kA}, []int64{7}, &in, versions) {
		t.Fatal("forgotten epoch answered")
	}
}

func TestStateCacheBounded(t *testing.T) {
	c := NewStateCache(64)
	for i := range int64(1000) {
		k := ProducerKey{i, catalog.TopicPartition{Partition: 1}}
		c.Store([]ProducerKey{k}, []CachedState{{Version: 1}}, []int64{i}, []int16{0})
	}
	if len(c.states) > 64 || len(c.epochs) > 64 {
		t.Fatalf("%d states, %d epochs cached, want at most 64", len(c.states), len(c.epochs))
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
	in, versions := newInput(), map[ProducerKey]int64{}
	if !c.Lookup([]ProducerKey{kA, kB}, []int64{7}, &in, versions) {
		t.Fatal("a new producer's keys were not answered")
	}
	if len(in.States)+len(versions) != 0 || in.Epochs[7] != 0 {
		t.Fatalf("new producer: states %v versions %v epochs %v", in.States, versions, in.Epochs)
	}
	// A stored state wins over "none yet".
	st := ProducerState{Epoch: 0, Entries: []SeqEntry{{0, 9, 100}}}
	c.Store([]ProducerKey{kA}, []CachedState{{State: st, Has: true, Version: 5}}, []int64{7}, []int16{0})
	in, versions = newInput(), map[ProducerKey]int64{}
	if !c.Lookup([]ProducerKey{kA, kB}, []int64{7}, &in, versions) || versions[kA] != 5 || versions[kB] != 0 {
		t.Fatalf("after a store: versions %v", versions)
	}
	// Forgetting the producer (a stale hint) ends "none yet" for every key.
	c.Forget([]ProducerKey{kA}, []int64{7})
	in, versions = newInput(), map[ProducerKey]int64{}
	if c.Lookup([]ProducerKey{kB}, []int64{7}, &in, versions) {
		t.Fatal("a forgotten producer's keys were answered")
	}
	// Another producer is not new.
	c.NewProducer(8, 0)
	if c.Lookup([]ProducerKey{{9, tpA}}, []int64{8, 9}, &in, versions) {
		t.Fatal("an unknown producer's key was answered")
	}
}
