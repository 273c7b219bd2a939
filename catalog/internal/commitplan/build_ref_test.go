package commitplan

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/floebroker/floe/catalog"
)

// TestBuildMatchesReference: Build (BuildLayout) decides random segments
// exactly as the map-based implementation it replaced: several producers
// per partition, epoch bumps and fences, duplicates, sequence gaps, unknown
// partitions, non-idempotent batches, and more batches per producer key
// than MaxEntries in one commit.
func TestBuildMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tally := map[string]int{}
	topics := []catalog.TopicID{{1}, {2}, {0xff}}
	for iter := range 3000 {
		nparts := 1 + rng.IntN(6)
		tps := make([]catalog.TopicPartition, nparts)
		for i := range tps {
			tps[i] = catalog.TopicPartition{TopicID: topics[rng.IntN(len(topics))], Partition: int32(rng.IntN(4))}
		}
		in := Input{
			Partitions: map[catalog.TopicPartition]Partition{},
			States:     map[ProducerKey]ProducerState{},
			Epochs:     map[int64]int16{},
		}
		for _, tp := range tps {
			if rng.IntN(8) != 0 {
				in.Partitions[tp] = Partition{NextOffset: rng.Int64N(1000), LogStart: rng.Int64N(10)}
			}
		}
		pids := []int64{-1, 3, 5, 9}
		for _, pid := range pids[1:] {
			if rng.IntN(3) != 0 {
				in.Epochs[pid] = int16(rng.IntN(3)) - 1 // -1 too: any stored value
			}
			for _, tp := range tps {
				if rng.IntN(2) == 0 {
					continue
				}
				st := ProducerState{Epoch: int16(rng.IntN(3))}
				seq := int32(rng.IntN(40))
				for range rng.IntN(MaxEntries + 2) {
					span := 1 + int32(rng.IntN(5))
					st.Entries = append(st.Entries, SeqEntry{seq, LastSequence(seq, span), rng.Int64N(1000)})
					seq += span
				}
				in.States[ProducerKey{pid, tp}] = st
			}
		}
		var off int64
		for range 1 + rng.IntN(20) {
			b := ref(tps[rng.IntN(len(tps))], off, 10, 1+int32(rng.IntN(5)))
			off += 10 * int64(rng.IntN(2)) // contiguous, or not
			if pid := pids[rng.IntN(len(pids))]; pid >= 0 {
				key := ProducerKey{pid, b.TopicPartition}
				seq := int32(rng.IntN(60)) - 2
				if st, ok := in.States[key]; ok && len(st.Entries) > 0 && rng.IntN(2) == 0 {
					e := st.Entries[rng.IntN(len(st.Entries))]
					seq = e.FirstSeq // a duplicate, if the span matches
					if rng.IntN(2) == 0 {
						seq = e.LastSeq + 1
					}
				}
				b = idem(b, pid, int16(rng.IntN(3))-1, seq)
			}
			in.Segment.Batches = append(in.Segment.Batches, b)
		}
		if rng.IntN(2) == 0 {
			slices.SortStableFunc(in.Segment.Batches, func(a, b catalog.BatchRef) int { return CompareTP(a.TopicPartition, b.TopicPartition) })
		}
		in.Segment.Key, in.Segment.Size = "k", off+10

		want := buildRef(in)
		got := Build(in)
		for _, r := range want.Results {
			switch {
			case r.Err != nil:
				tally[r.Err.Error()]++
			case r.Duplicate:
				tally["duplicate"]++
			default:
				tally["stored"]++
			}
		}
		for _, st := range want.States {
			if len(st.Entries) == MaxEntries {
				tally["full state"]++
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("iteration %d: segment %+v\ninput %+v\ngot  %+v\nwant %+v", iter, in.Segment.Batches, in, got, want)
		}
	}
	t.Logf("results: %v", tally)
}

// buildRef is Build as it was before BuildLayout, with maps: the
// reference BuildLayout must agree with.
func buildRef(in Input) Plan {
	n := len(in.Segment.Batches)
	plan := Plan{Results: make([]catalog.BatchResult, n), Rows: make([]Row, 0, n)}
	// Working copies, made on first use; the output lists are collected in
	// first-use order, already sorted when the segment's batches are
	// (checking costs one pass).
	type partAcc struct {
		tp catalog.TopicPartition
		Partition
		moved bool
	}
	type stateAcc struct {
		key ProducerKey
		ProducerState
		has     bool // a stored state exists or this commit wrote one
		changed bool
	}
	parts := make(map[catalog.TopicPartition]*partAcc, len(in.Partitions))
	states := make(map[ProducerKey]*stateAcc, len(in.States))
	partSlab := make([]partAcc, 0, len(in.Partitions))
	stateSlab := make([]stateAcc, 0, len(in.States))
	var moved []*partAcc
	var changed []*stateAcc
	partOf := func(tp catalog.TopicPartition) *partAcc {
		if p, ok := parts[tp]; ok {
			return p
		}
		stored, ok := in.Partitions[tp]
		if !ok {
			parts[tp] = nil
			return nil
		}
		partSlab = append(partSlab, partAcc{tp: tp, Partition: stored}) // never grows: one per entry of in.Partitions
		p := &partSlab[len(partSlab)-1]
		parts[tp] = p
		return p
	}
	stateOf := func(key ProducerKey) *stateAcc {
		if st, ok := states[key]; ok {
			return st
		}
		stored, has := in.States[key]
		var st *stateAcc
		if len(stateSlab) < cap(stateSlab) {
			stateSlab = append(stateSlab, stateAcc{key: key, ProducerState: stored, has: has})
			st = &stateSlab[len(stateSlab)-1]
		} else {
			st = &stateAcc{key: key, ProducerState: stored, has: has}
		}
		states[key] = st
		return st
	}
	lastStored := -1 // index of the batch that last extended plan.Rows

	for i, b := range in.Segment.Batches {
		res := &plan.Results[i]
		p := partOf(b.TopicPartition)
		if p == nil {
			res.Err = catalog.ErrUnknownTopic
			res.BaseOffset = -1
			res.LogStartOffset = -1
			continue
		}
		res.LogStartOffset = p.LogStart

		var st *stateAcc
		if b.ProducerID >= 0 {
			st = stateOf(ProducerKey{b.ProducerID, b.TopicPartition})
			dup, err := checkRef(b, st.ProducerState, st.has, in.Epochs)
			if err != nil {
				res.Err = err
				res.BaseOffset, res.LogStartOffset = -1, -1
				continue
			}
			if dup != nil {
				res.Duplicate = true
				res.BaseOffset = dup.BaseOffset
				continue
			}
		}

		base := p.NextOffset
		res.BaseOffset = base
		p.NextOffset += int64(b.OffsetSpan)
		if !p.moved {
			p.moved = true
			moved = append(moved, p)
		}

		if st != nil {
			if !st.has || st.Epoch != b.ProducerEpoch {
				st.ProducerState = ProducerState{Epoch: b.ProducerEpoch}
			}
			entries := make([]SeqEntry, 0, MaxEntries)
			if len(st.Entries) >= MaxEntries {
				entries = append(entries, st.Entries[len(st.Entries)-MaxEntries+1:]...)
			} else {
				entries = append(entries, st.Entries...)
			}
			st.Entries = append(entries, SeqEntry{
				FirstSeq:   b.BaseSequence,
				LastSeq:    LastSequence(b.BaseSequence, b.OffsetSpan),
				BaseOffset: base,
			})
			st.has = true
			if !st.changed {
				st.changed = true
				changed = append(changed, st)
			}
		}

		if k := len(plan.Rows) - 1; k >= 0 && lastStored == i-1 && canExtend(plan.Rows[k], b, base) {
			r := &plan.Rows[k]
			r.LastOffset = base + int64(b.OffsetSpan) - 1
			r.ByteLength += b.ByteLength
			r.Records += b.Records
			r.MaxTimestamp = max(r.MaxTimestamp, b.MaxTimestamp)
		} else {
			plan.Rows = append(plan.Rows, Row{
				TopicPartition: b.TopicPartition,
				BaseOffset:     base,
				LastOffset:     base + int64(b.OffsetSpan) - 1,
				ByteOffset:     b.ByteOffset,
				ByteLength:     b.ByteLength,
				Records:        b.Records,
				MaxTimestamp:   b.MaxTimestamp,
			})
		}
		lastStored = i
	}
	// Commits never move a log start, so every result's LogStartOffset is
	// already the value after the commit.
	plan.Partitions = make([]PartitionUpdate, len(moved))
	for i, p := range moved {
		plan.Partitions[i] = PartitionUpdate{p.tp, p.NextOffset}
	}
	if cmp := func(a, b PartitionUpdate) int { return CompareTP(a.TopicPartition, b.TopicPartition) }; !slices.IsSortedFunc(plan.Partitions, cmp) {
		slices.SortFunc(plan.Partitions, cmp)
	}
	plan.States = make([]StateUpdate, len(changed))
	for i, st := range changed {
		plan.States[i] = StateUpdate{st.key, st.ProducerState}
	}
	if cmp := func(a, b StateUpdate) int { return CompareKey(a.ProducerKey, b.ProducerKey) }; !slices.IsSortedFunc(plan.States, cmp) {
		slices.SortFunc(plan.States, cmp)
	}
	return plan
}

// checkRef adapts check, the rule both implementations share, to the
// reference's epoch map.
func checkRef(b catalog.BatchRef, st ProducerState, hasState bool, epochs map[int64]int16) (*SeqEntry, error) {
	cur, known := epochs[b.ProducerID]
	return check(b, st, hasState, cur, known)
}
