package commitplan

import (
	"slices"
	"testing"

	"github.com/floebroker/floe/catalog"
)

// TestNewLayout lays out segments in and out of partition and key order
// (the one-pass and the sorting paths) and checks every list against its
// definition.
func TestNewLayout(t *testing.T) {
	unsorted := catalog.Segment{Batches: []catalog.BatchRef{
		idem(ref(tpX, 0, 1, 1), 9, 0, 0),
		ref(tpA, 1, 1, 1),
		idem(ref(tpA, 2, 1, 1), 3, 0, 0),
		idem(ref(tpA, 3, 1, 1), 3, 0, 1),
		idem(ref(tpB, 4, 1, 1), 9, 0, 0),
		idem(ref(tpA, 5, 1, 1), 9, 0, 0),
		idem(ref(tpX, 6, 1, 1), 3, 0, 0),
	}}
	sorted := catalog.Segment{Batches: slices.Clone(unsorted.Batches)}
	slices.SortStableFunc(sorted.Batches, func(a, b catalog.BatchRef) int { return CompareTP(a.TopicPartition, b.TopicPartition) })
	oneProducer := catalog.Segment{Batches: []catalog.BatchRef{
		idem(ref(tpA, 0, 1, 1), 3, 0, 0),
		idem(ref(tpA, 1, 1, 1), 3, 0, 1),
		ref(tpA, 2, 1, 1),
		idem(ref(tpB, 3, 1, 1), 3, 0, 0),
		ref(tpX, 4, 1, 1),
	}}
	plain := catalog.Segment{Batches: []catalog.BatchRef{ref(tpA, 0, 1, 1), ref(tpB, 1, 1, 1)}}
	for name, seg := range map[string]catalog.Segment{"unsorted": unsorted, "sorted": sorted, "one producer": oneProducer, "plain": plain, "empty": {}} {
		l := NewLayout(seg)
		tps, keys, pids := Partitions(seg), ProducerKeys(seg), ProducerIDs(seg)
		var keyPos, keyTP, keyPID []int32
		for _, b := range seg.Batches {
			k := int32(-1)
			if b.ProducerID >= 0 {
				k = int32(slices.Index(keys, ProducerKey{b.ProducerID, b.TopicPartition}))
			}
			keyPos = append(keyPos, k)
		}
		for _, key := range keys {
			keyTP = append(keyTP, int32(slices.Index(tps, key.TopicPartition)))
			keyPID = append(keyPID, int32(slices.Index(pids, key.ProducerID)))
		}
		if !slices.Equal(l.TPs, tps) || !slices.Equal(l.Pos, Positions(seg, tps)) ||
			!slices.Equal(l.Keys, keys) || !slices.Equal(l.PIDs, pids) ||
			!slices.Equal(l.KeyPos, keyPos) || !slices.Equal(l.KeyTP, keyTP) || !slices.Equal(l.KeyPID, keyPID) {
			t.Errorf("%s: NewLayout = %+v\nwant TPs %v Pos %v Keys %v KeyPos %v KeyTP %v KeyPID %v PIDs %v", name, l,
				tps, Positions(seg, tps), keys, keyPos, keyTP, keyPID, pids)
		}
	}
}

func TestKeyIndex(t *testing.T) {
	keys := []ProducerKey{{1, tpA}, {1, tpB}, {2, tpA}}
	x := NewKeyIndex(keys)
	for _, tt := range []struct {
		key  ProducerKey
		want int
	}{
		{keys[0], 0}, {keys[0], 0}, {keys[1], 1}, {keys[2], 2}, // in order, repeated
		{keys[1], 1}, {keys[0], 0}, // out of order
		{ProducerKey{2, tpB}, -1}, // absent
		{keys[2], 2}, {keys[2], 2},
	} {
		if got := x.Of(tt.key); got != tt.want {
			t.Errorf("Of(%v) = %d, want %d", tt.key, got, tt.want)
		}
	}
}
