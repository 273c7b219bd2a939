// Package commitplan is the backend-independent half of CommitSegment: given
// the locked partition rows and the idempotent-producer state a backend read
// inside its transaction, it decides each batch's fate (stored, duplicate or
// rejected), assigns offsets, coalesces rows and computes the producer state
// to write back. The backends (catalog/postgres, catalog/sqlite) only move
// data in and out of SQL, so both apply exactly the same Kafka semantics.
//
// Build is a pure function: it must run inside the transaction that holds the
// partition locks, and its output is only valid for that transaction.
package commitplan

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/floebroker/floe/catalog"
)

// MaxEntries is how many recent batches per producer and partition are kept
// for duplicate detection, as Kafka keeps them
// (ProducerStateEntry.NUM_BATCHES_TO_RETAIN).
const MaxEntries = 5

// SeqEntry is one recent batch of a producer on a partition.
type SeqEntry struct {
	FirstSeq   int32
	LastSeq    int32
	BaseOffset int64
}

// ProducerState is one producer's state on one partition.
type ProducerState struct {
	Epoch   int16
	Entries []SeqEntry // oldest first, at most MaxEntries
}

// ProducerKey names a producer's state on one partition.
type ProducerKey struct {
	ProducerID int64
	catalog.TopicPartition
}

// Partition is the locked row of one partition.
type Partition struct {
	NextOffset int64
	LogStart   int64
}

// Input is what the backend read under its locks.
type Input struct {
	Segment catalog.Segment
	// Partitions holds every existing partition the segment touches;
	// absent ones are unknown (deleted topic, partition past the count).
	Partitions map[catalog.TopicPartition]Partition
	// States holds the stored producer states for ProducerKeys(segment).
	States map[ProducerKey]ProducerState
	// Epochs holds the current epoch of every producer id in the segment
	// that the catalog knows (AllocateProducerID / BumpProducerEpoch).
	Epochs map[int64]int16
}

// Row is a new batch-index row: one or more stored batches of one
// partition, contiguous both in offsets and in the object.
type Row struct {
	catalog.TopicPartition
	BaseOffset   int64
	LastOffset   int64
	ByteOffset   int64
	ByteLength   int64
	Records      int32
	MaxTimestamp int64
}

// PartitionUpdate is a partition whose next offset moved.
type PartitionUpdate struct {
	catalog.TopicPartition
	NextOffset int64
}

// StateUpdate is a producer state to upsert.
type StateUpdate struct {
	ProducerKey
	ProducerState
}

// Plan is what the backend writes.
type Plan struct {
	Results    []catalog.BatchResult // one per Segment.Batches, same order
	Rows       []Row                 // in segment order
	Partitions []PartitionUpdate     // sorted by (topic id, partition)
	States     []StateUpdate         // sorted by key, one per key
}

// ValidateSegment rejects segments no correct flusher produces. These are
// programming errors, not Kafka errors, so they fail the whole commit,
// with an error wrapping catalog.ErrInvalidSegment.
func ValidateSegment(seg catalog.Segment) error {
	if err := validateSegment(seg); err != nil {
		return fmt.Errorf("%w: %w", catalog.ErrInvalidSegment, err)
	}
	return nil
}

func validateSegment(seg catalog.Segment) error {
	if seg.Key == "" {
		return fmt.Errorf("segment has no key")
	}
	if seg.Size < 0 {
		return fmt.Errorf("segment size %d is negative", seg.Size)
	}
	for i, b := range seg.Batches {
		switch {
		case b.OffsetSpan < 1:
			return fmt.Errorf("batch %d: offset span %d < 1", i, b.OffsetSpan)
		case b.ByteOffset < 0 || b.ByteLength < 0:
			return fmt.Errorf("batch %d: byte range %d+%d is negative", i, b.ByteOffset, b.ByteLength)
		case seg.Size > 0 && b.ByteOffset+b.ByteLength > seg.Size:
			return fmt.Errorf("batch %d: byte range %d+%d runs past the object size %d", i, b.ByteOffset, b.ByteLength, seg.Size)
		case b.Records < 0:
			return fmt.Errorf("batch %d: record count %d is negative", i, b.Records)
		case b.Partition < 0:
			return fmt.Errorf("batch %d: partition %d is negative", i, b.Partition)
		}
	}
	return nil
}

// ValidateSegments checks a group for CommitSegments: at least one
// segment, each valid, keys distinct. Its errors wrap
// catalog.ErrInvalidSegment.
func ValidateSegments(segs []catalog.Segment) error {
	if err := validateSegments(segs); err != nil {
		return fmt.Errorf("%w: %w", catalog.ErrInvalidSegment, err)
	}
	return nil
}

func validateSegments(segs []catalog.Segment) error {
	if len(segs) == 0 {
		return fmt.Errorf("no segments")
	}
	keys := make(map[string]struct{}, len(segs))
	for i, seg := range segs {
		if err := validateSegment(seg); err != nil {
			return fmt.Errorf("segment %d: %w", i, err)
		}
		if _, dup := keys[seg.Key]; dup {
			return fmt.Errorf("segment %d: key %s appears twice", i, seg.Key)
		}
		keys[seg.Key] = struct{}{}
	}
	return nil
}

// Partitions returns the distinct partitions of seg in lock order
// (topic id, then partition).
func Partitions(seg catalog.Segment) []catalog.TopicPartition {
	tps := make([]catalog.TopicPartition, 0, len(seg.Batches))
	for _, b := range seg.Batches {
		tps = append(tps, b.TopicPartition)
	}
	slices.SortFunc(tps, CompareTP)
	return slices.Compact(tps)
}

// Index finds partitions in a sorted list of distinct partitions (such as
// Partitions' result); looking them up in order costs one comparison each.
type Index = SortedIndex[catalog.TopicPartition]

// NewIndex returns an Index over tps, which must be sorted and distinct.
func NewIndex(tps []catalog.TopicPartition) *Index {
	return &Index{items: tps, cmp: CompareTP}
}

// SortedIndex finds items in a sorted list of distinct items. Lookups in
// list order, a commit's usual pattern, cost one comparison each: the
// next item, or the same one again (a partition's next batch).
type SortedIndex[T comparable] struct {
	items []T
	cmp   func(a, b T) int
	next  int // where the last lookup ended + 1
}

// Of returns the position of v in the list, or -1.
func (x *SortedIndex[T]) Of(v T) int {
	if x.next < len(x.items) && x.items[x.next] == v {
		x.next++
		return x.next - 1
	}
	if x.next > 0 && x.items[x.next-1] == v {
		return x.next - 1
	}
	i, ok := slices.BinarySearchFunc(x.items, v, x.cmp)
	if !ok {
		return -1
	}
	x.next = i + 1
	return i
}

// Positions returns the position of each batch's partition in tps, which
// must hold every partition of seg (Partitions(seg)).
func Positions(seg catalog.Segment, tps []catalog.TopicPartition) []int32 {
	pos := make([]int32, len(seg.Batches))
	x := NewIndex(tps)
	for i, b := range seg.Batches {
		pos[i] = int32(x.Of(b.TopicPartition))
	}
	return pos
}

// ProducerKeys returns the distinct (producer, partition) pairs of seg's
// idempotent batches, sorted.
func ProducerKeys(seg catalog.Segment) []ProducerKey {
	var keys []ProducerKey
	for _, b := range seg.Batches {
		if b.ProducerID >= 0 {
			if keys == nil {
				keys = make([]ProducerKey, 0, len(seg.Batches))
			}
			keys = append(keys, ProducerKey{b.ProducerID, b.TopicPartition})
		}
	}
	slices.SortFunc(keys, CompareKey)
	return slices.Compact(keys)
}

// ProducerIDs returns the distinct producer ids of seg, sorted.
func ProducerIDs(seg catalog.Segment) []int64 {
	var ids []int64
	for _, b := range seg.Batches {
		if b.ProducerID >= 0 {
			ids = append(ids, b.ProducerID)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// CompareTP orders partitions as the catalog locks them: topic id bytes,
// then partition number (PostgreSQL's uuid order is bytewise too).
func CompareTP(a, b catalog.TopicPartition) int {
	if a.TopicID != b.TopicID {
		return bytes.Compare(a.TopicID[:], b.TopicID[:])
	}
	return cmp.Compare(a.Partition, b.Partition)
}

// CompareKey orders producer keys: producer id, then partition.
func CompareKey(a, b ProducerKey) int {
	if c := cmp.Compare(a.ProducerID, b.ProducerID); c != 0 {
		return c
	}
	return CompareTP(a.TopicPartition, b.TopicPartition)
}

// Build decides every batch of in.Segment (BuildLayout, for inputs in
// maps).
func Build(in Input) Plan {
	l := NewLayout(in.Segment)
	li := NewLayoutInput(in.Segment, l)
	for i, tp := range l.TPs {
		li.Partitions[i], li.Exists[i] = in.Partitions[tp]
	}
	for k, key := range l.Keys {
		li.States[k], li.HasState[k] = in.States[key]
	}
	for i, pid := range l.PIDs {
		li.Epochs[i], li.KnownEpoch[i] = in.Epochs[pid]
	}
	lp := BuildLayout(li)
	return lp.Plan(l)
}

// canExtend reports whether b, stored at base, continues row r: same
// partition, next offset, and the next bytes of the object.
func canExtend(r Row, b catalog.BatchRef, base int64) bool {
	return r.TopicPartition == b.TopicPartition &&
		r.LastOffset+1 == base &&
		r.ByteOffset+r.ByteLength == b.ByteOffset &&
		int64(r.Records)+int64(b.Records) <= math.MaxInt32
}

// check applies Kafka's idempotent-producer rules (UnifiedLog /
// ProducerAppendInfo) to one batch: it returns the matching recent entry
// for a duplicate, or an error for a fenced epoch or a sequence gap.
// epoch is the producer's current epoch if the catalog knows it
// (knownEpoch).
func check(b catalog.BatchRef, st ProducerState, hasState bool, epoch int16, knownEpoch bool) (*SeqEntry, error) {
	if knownEpoch && b.ProducerEpoch < epoch {
		return nil, catalog.ErrInvalidProducerEpoch
	}
	if b.BaseSequence < 0 {
		return nil, catalog.ErrOutOfOrderSequence
	}
	if !hasState {
		// No state for this producer on this partition (new producer, or
		// its state is gone): accept any first sequence, as Kafka does
		// since KIP-360.
		return nil, nil
	}
	if b.ProducerEpoch < st.Epoch {
		return nil, catalog.ErrInvalidProducerEpoch
	}
	if b.ProducerEpoch > st.Epoch {
		// A bumped epoch starts its sequences again at 0.
		if b.BaseSequence != 0 {
			return nil, catalog.ErrOutOfOrderSequence
		}
		return nil, nil
	}
	last := LastSequence(b.BaseSequence, b.OffsetSpan)
	for i := range st.Entries {
		if e := &st.Entries[i]; e.FirstSeq == b.BaseSequence && e.LastSeq == last {
			return e, nil
		}
	}
	if len(st.Entries) == 0 {
		return nil, nil
	}
	if !InSequence(st.Entries[len(st.Entries)-1].LastSeq, b.BaseSequence) {
		return nil, catalog.ErrOutOfOrderSequence
	}
	return nil, nil
}

// LastSequence is the sequence of a batch's last record; sequences wrap
// from MaxInt32 to 0.
func LastSequence(first, span int32) int32 {
	inc := span - 1
	if first > math.MaxInt32-inc {
		return inc - (math.MaxInt32 - first) - 1
	}
	return first + inc
}

// InSequence reports whether next directly follows last.
func InSequence(last, next int32) bool {
	return int64(next) == int64(last)+1 || (next == 0 && last == math.MaxInt32)
}
