package commitplan

import (
	"slices"

	"github.com/floebroker/floe/catalog"
)

// A commit of an agent leading thousands of partitions has thousands of
// batches, partitions and producer keys, and runs on every produce's path:
// looking each one up in maps, building the plan and then looking them up
// again to write it cost more client CPU than the commit's round trip. A
// Layout numbers the segment's partitions and producer keys once, in the
// orders the backends lock and sort them; LayoutInput and LayoutPlan hold
// everything by those positions, so a backend that reads and writes arrays
// in the same order (catalog/postgres) never hashes a key.

// Layout is a segment's distinct partitions, producer keys and producer
// ids, and each batch's position among them. Read-only once built.
type Layout struct {
	TPs    []catalog.TopicPartition // Partitions(seg): sorted, the lock order
	Pos    []int32                  // each batch's position in TPs (Positions)
	Keys   []ProducerKey            // ProducerKeys(seg): sorted
	KeyPos []int32                  // each batch's position in Keys; -1: not idempotent
	KeyTP  []int32                  // each key's partition's position in TPs
	KeyPID []int32                  // each key's producer's position in PIDs
	PIDs   []int64                  // ProducerIDs(seg): sorted
}

// NewLayout lays out seg.
func NewLayout(seg catalog.Segment) *Layout {
	l := &Layout{}
	if !l.partitionsInOrder(seg) {
		l.TPs = Partitions(seg)
		l.Pos = Positions(seg, l.TPs)
	}
	if !l.keysInOrder(seg) {
		l.Keys = ProducerKeys(seg)
		l.KeyPos = make([]int32, len(seg.Batches))
		l.KeyTP = make([]int32, len(l.Keys))
		x := NewKeyIndex(l.Keys)
		for i, b := range seg.Batches {
			if b.ProducerID < 0 {
				l.KeyPos[i] = -1
				continue
			}
			k := int32(x.Of(ProducerKey{b.ProducerID, b.TopicPartition}))
			l.KeyPos[i] = k
			l.KeyTP[k] = l.Pos[i]
		}
	}
	// ProducerIDs(seg), from the keys: they are sorted by producer id.
	l.KeyPID = make([]int32, len(l.Keys))
	for k, key := range l.Keys {
		if k == 0 || key.ProducerID != l.Keys[k-1].ProducerID {
			l.PIDs = append(l.PIDs, key.ProducerID)
		}
		l.KeyPID[k] = int32(len(l.PIDs) - 1)
	}
	return l
}

// partitionsInOrder sets TPs and Pos in one pass if seg's batches are
// sorted by partition (an agent's segments are: object order), and
// reports whether they were.
func (l *Layout) partitionsInOrder(seg catalog.Segment) bool {
	tps := make([]catalog.TopicPartition, 0, len(seg.Batches))
	pos := make([]int32, len(seg.Batches))
	for i := range seg.Batches {
		tp := seg.Batches[i].TopicPartition
		if n := len(tps); n == 0 || tps[n-1] != tp {
			if n > 0 && CompareTP(tps[n-1], tp) > 0 {
				return false
			}
			tps = append(tps, tp)
		}
		pos[i] = int32(len(tps) - 1)
	}
	l.TPs, l.Pos = tps, pos
	return true
}

// keysInOrder sets Keys, KeyPos and KeyTP in one pass if seg's
// idempotent batches are sorted by producer key (those of an agent with
// one producer are), and reports whether they were.
func (l *Layout) keysInOrder(seg catalog.Segment) bool {
	var keys []ProducerKey
	var keyTP []int32
	keyPos := make([]int32, len(seg.Batches))
	for i := range seg.Batches {
		b := &seg.Batches[i]
		if b.ProducerID < 0 {
			keyPos[i] = -1
			continue
		}
		key := ProducerKey{b.ProducerID, b.TopicPartition}
		if n := len(keys); n == 0 || keys[n-1] != key {
			if n > 0 && CompareKey(keys[n-1], key) > 0 {
				return false
			}
			if keys == nil {
				keys = make([]ProducerKey, 0, len(seg.Batches)-i)
				keyTP = make([]int32, 0, len(seg.Batches)-i)
			}
			keys = append(keys, key)
			keyTP = append(keyTP, l.Pos[i])
		}
		keyPos[i] = int32(len(keys) - 1)
	}
	l.Keys, l.KeyPos, l.KeyTP = keys, keyPos, keyTP
	return true
}

// KeyIndex finds producer keys in a sorted list of distinct keys (such as
// ProducerKeys' result), as Index finds partitions.
type KeyIndex = SortedIndex[ProducerKey]

// NewKeyIndex returns a KeyIndex over keys, which must be sorted and
// distinct.
func NewKeyIndex(keys []ProducerKey) *KeyIndex {
	return &KeyIndex{items: keys, cmp: CompareKey}
}

// LayoutInput is Input by position in a Layout: what the backend read
// under its locks.
type LayoutInput struct {
	Segment catalog.Segment
	*Layout
	// Partitions holds the locked row of each partition of TPs that
	// exists (Exists); the others are unknown (deleted topic, partition
	// past the count).
	Partitions []Partition
	Exists     []bool
	// States holds the stored producer state of each key of Keys that has
	// one (HasState).
	States   []ProducerState
	HasState []bool
	// Epochs holds the current epoch of each producer of PIDs that the
	// catalog knows (KnownEpoch).
	Epochs     []int16
	KnownEpoch []bool
	// Starts is, for a group of segments committed together (Concat), the
	// index in Segment.Batches where each segment begins; nil for one
	// segment. Each segment is its own object, so rows never span two.
	Starts []int
}

// NewLayoutInput returns an input for seg laid out by l, with no
// partition, state or epoch known.
func NewLayoutInput(seg catalog.Segment, l *Layout) LayoutInput {
	np, nk, ni := len(l.TPs), len(l.Keys), len(l.PIDs)
	flags := make([]bool, np+nk+ni)
	return LayoutInput{
		Segment:    seg,
		Layout:     l,
		Partitions: make([]Partition, np),
		Exists:     flags[:np:np],
		States:     make([]ProducerState, nk),
		HasState:   flags[np : np+nk : np+nk],
		Epochs:     make([]int16, ni),
		KnownEpoch: flags[np+nk:],
	}
}

// LayoutPlan is Plan by position in a Layout.
type LayoutPlan struct {
	Results []catalog.BatchResult // one per Segment.Batches, same order
	Rows    []Row                 // in segment order
	RowPos  []int32               // each row's partition's position in TPs
	RowSeg  []int32               // each row's segment in a group (Starts); 0 for one segment
	// Next is each partition's next offset after the commit; Moved marks
	// those that moved.
	Next  []int64
	Moved []bool
	// States is each key's producer state after the commit; Changed marks
	// those the commit writes (with entries of their own, never shared
	// with the input's).
	States  []ProducerState
	Changed []bool
}

// Plan returns the plan as sorted update lists.
func (p *LayoutPlan) Plan(l *Layout) Plan {
	plan := Plan{
		Results:    p.Results,
		Rows:       p.Rows,
		Partitions: make([]PartitionUpdate, 0, count(p.Moved)),
		States:     make([]StateUpdate, 0, count(p.Changed)),
	}
	for i, moved := range p.Moved {
		if moved {
			plan.Partitions = append(plan.Partitions, PartitionUpdate{l.TPs[i], p.Next[i]})
		}
	}
	for k, changed := range p.Changed {
		if changed {
			plan.States = append(plan.States, StateUpdate{l.Keys[k], p.States[k]})
		}
	}
	return plan
}

func count(flags []bool) int {
	n := 0
	for _, f := range flags {
		if f {
			n++
		}
	}
	return n
}

// BuildLayout decides every batch of in.Segment, as Build does.
func BuildLayout(in LayoutInput) LayoutPlan {
	l := in.Layout
	n, np, nk := len(in.Segment.Batches), len(l.TPs), len(l.Keys)
	flags := make([]bool, np+2*nk)
	plan := LayoutPlan{
		Results: make([]catalog.BatchResult, n),
		Rows:    make([]Row, 0, n),
		RowPos:  make([]int32, 0, n),
		RowSeg:  make([]int32, 0, n),
		Next:    make([]int64, np),
		Moved:   flags[:np:np],
		States:  slices.Clone(in.States),
		Changed: flags[np : np+nk : np+nk],
	}
	has := flags[np+nk:] // a stored state exists or this commit wrote one
	copy(has, in.HasState)
	for i, p := range in.Partitions {
		plan.Next[i] = p.NextOffset
	}
	lastStored := -1 // index of the batch that last extended plan.Rows
	seg, nextStart := int32(0), len(in.Segment.Batches)
	if len(in.Starts) > 1 {
		nextStart = in.Starts[1]
	}

	for i, b := range in.Segment.Batches {
		for i == nextStart {
			// The next segment of a group (skipping empty ones): a new
			// object, so a new row.
			seg++
			lastStored = -1
			nextStart = len(in.Segment.Batches)
			if int(seg)+1 < len(in.Starts) {
				nextStart = in.Starts[seg+1]
			}
		}
		res := &plan.Results[i]
		pos := l.Pos[i]
		if !in.Exists[pos] {
			res.Err = catalog.ErrUnknownTopic
			res.BaseOffset = -1
			res.LogStartOffset = -1
			continue
		}
		res.LogStartOffset = in.Partitions[pos].LogStart

		k := int32(-1)
		if b.ProducerID >= 0 {
			k = l.KeyPos[i]
			pid := l.KeyPID[k]
			dup, err := check(b, plan.States[k], has[k], in.Epochs[pid], in.KnownEpoch[pid])
			if err != nil {
				// As Resolve and DecodeResults report errors, so a
				// re-commit of the key returns the same answer.
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

		base := plan.Next[pos]
		res.BaseOffset = base
		plan.Next[pos] += int64(b.OffsetSpan)
		plan.Moved[pos] = true

		if k >= 0 {
			st := &plan.States[k]
			switch {
			case !plan.Changed[k]:
				// The first write of this commit: keep the newest
				// entries of the same epoch in a slice of its own.
				entries := make([]SeqEntry, 0, MaxEntries)
				if has[k] && st.Epoch == b.ProducerEpoch {
					old := st.Entries
					entries = append(entries, old[max(len(old)-(MaxEntries-1), 0):]...)
				}
				st.Epoch, st.Entries = b.ProducerEpoch, entries
				plan.Changed[k] = true
			case st.Epoch != b.ProducerEpoch:
				st.Epoch, st.Entries = b.ProducerEpoch, st.Entries[:0]
			case len(st.Entries) >= MaxEntries:
				st.Entries = st.Entries[:copy(st.Entries, st.Entries[1:])]
			}
			st.Entries = append(st.Entries, SeqEntry{
				FirstSeq:   b.BaseSequence,
				LastSeq:    LastSequence(b.BaseSequence, b.OffsetSpan),
				BaseOffset: base,
			})
			has[k] = true
		}

		if r := len(plan.Rows) - 1; r >= 0 && lastStored == i-1 && plan.RowPos[r] == pos && canExtend(plan.Rows[r], b, base) {
			row := &plan.Rows[r]
			row.LastOffset = base + int64(b.OffsetSpan) - 1
			row.ByteLength += b.ByteLength
			row.Records += b.Records
			row.MaxTimestamp = max(row.MaxTimestamp, b.MaxTimestamp)
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
			plan.RowPos = append(plan.RowPos, pos)
			plan.RowSeg = append(plan.RowSeg, seg)
		}
		lastStored = i
	}
	// Commits never move a log start, so every result's LogStartOffset is
	// already the value after the commit.
	return plan
}

// Concat joins a group of segments into one for a single plan: their
// batches in order, and where each segment begins (LayoutInput.Starts).
// The joined segment's Key is the first segment's and its Size the
// largest; neither names an object of its own.
func Concat(segs []catalog.Segment) (catalog.Segment, []int) {
	if len(segs) == 1 {
		return segs[0], nil
	}
	n := 0
	for _, s := range segs {
		n += len(s.Batches)
	}
	joined := catalog.Segment{Key: segs[0].Key, Batches: make([]catalog.BatchRef, 0, n)}
	starts := make([]int, len(segs))
	for i, s := range segs {
		starts[i] = len(joined.Batches)
		joined.Batches = append(joined.Batches, s.Batches...)
		joined.Size = max(joined.Size, s.Size)
	}
	return joined, starts
}
