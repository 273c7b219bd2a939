package catalog

import (
	"context"
	"errors"
	"time"
)

// ErrSwapConflict reports that SwapRows found the partition's rows changed
// since the caller read them (a commit, retention, DeleteRecords or another
// compactor got there first). Nothing was changed; the caller drops its
// output object and retries later from fresh rows.
var ErrSwapConflict = errors.New("catalog: compaction swap conflict")

// ObjectRef is one row of the objects table, as garbage collection sees it.
type ObjectRef struct {
	ID      int64
	Key     string
	Size    int64
	Created time.Time
}

// CompactionRow is a batch row with what compaction needs to know about its
// object.
type CompactionRow struct {
	BatchRow
	ObjectID      int64
	ObjectSize    int64
	ObjectCreated time.Time
}

// RowSwap replaces rows of one partition by rows of one new object.
type RowSwap struct {
	TopicPartition
	// Old are the rows as the caller read them. Each must still exist with
	// the same offsets, object key and byte range, or the swap fails with
	// ErrSwapConflict.
	Old []BatchRow
	// ObjectKey and ObjectSize name the new object, already in the bucket.
	ObjectKey  string
	ObjectSize int64
	// New are the replacement rows, ascending, inside the offset range of
	// Old and not overlapping; their ObjectKey and CommitID are ignored.
	// A merge covers exactly Old's offsets; log compaction may leave gaps.
	New []BatchRow
}

// CompactionStats sizes what compaction looks after.
type CompactionStats struct {
	Rows    int64 // batch rows
	Objects int64 // object rows (referenced or waiting for GC), tombstones excluded
	// Tombstones are object rows kept after GC deleted their object, so
	// a late re-commit of the same key is still recognised.
	Tombstones int64
	// LiveBytes is the sum of the rows' byte lengths.
	LiveBytes int64
	// OldestFlush is the creation time of the oldest flushed (never
	// compacted) object still referenced; zero when there is none.
	OldestFlush time.Time
}

// Compactor is the catalog's side of background compaction: merge,
// retention, log compaction and garbage collection (package compaction).
// Both backends implement it. The agent's data path never needs it.
//
// Rows written by SwapRows carry a negative CommitID: they are not a
// commit, so CommitsSince never returns them and followers keep the rows
// they had, whose objects stay readable for GC's grace period.
//
// An object left without rows is stamped with the time: when its last row
// goes away (SwapRows, TrimRows, DeleteTopic), or when it is created with
// none (a commit none of whose batches is stored, a swap without new rows).
// UnreferencedObjects lists those once the stamp is older than a bound; it
// goes by the stamp alone, so an object without rows that no path stamped
// would never be collected.
//
// Tombstones: CommitSegment's per-key idempotence finds a retried segment
// key in the objects table (a WAL buffer replayed after its commit). So
// garbage collection never deletes an object row outright: ForgetObject
// turns it into a tombstone (state 'deletable', its stored commit results
// kept, stamped with the time), which CommitSegment still answers from,
// and which every other reader ignores (UnreferencedObjects, KnownObjects,
// CompactionStats.Objects). PruneTombstones deletes tombstones only after
// a long retention (DefaultTombstoneRetention); a WAL buffer older than
// that is refused at replay (agent/flush Config.MaxReplayAge).
//
// Producer expiry: idempotent-producer state would otherwise live as long
// as its topic, and clients take a new producer id at every start, so
// short-lived producers grow it without bound (one row per producer and
// partition written). As Kafka drops a producer's state once it has been
// idle for producer.id.expiration.ms, ExpireProducerStates deletes the
// state of a producer on a partition that no commit has written for that
// long, and ExpireProducers then the producer's epoch once it has none
// left. What the producer sees afterwards is what a Kafka broker gives a
// producer it has no state for (KIP-360): its next batch is accepted at
// any sequence and starts a new state (a retry of a batch from before the
// expiry is stored again, as in Kafka), and InitProducerId naming the
// expired id gets a new one. A commit that read or remembered
// (commitplan.StateCache) a state or epoch that expiry deleted finds it
// gone when it verifies it under its locks, and starts over from what is
// stored; a commit that wrote the state since is newer than the cutoff,
// and the delete, which re-checks the age of each row it deletes, keeps
// it.
type Compactor interface {
	// CompactionRows returns up to limit rows of tp with last offset ≥
	// from, ascending.
	CompactionRows(ctx context.Context, tp TopicPartition, from int64, limit int) ([]CompactionRow, error)
	// SwapRows replaces s.Old by s.New in one transaction, registering the
	// new object, if and only if every old row is unchanged.
	SwapRows(ctx context.Context, s RowSwap) error
	// RetentionOffsetForBytes returns the largest row base offset b at or
	// above the log start such that the rows from b on hold at least
	// maxBytes (Kafka keeps at least retention.bytes), and false when the
	// partition holds less than maxBytes.
	RetentionOffsetForBytes(ctx context.Context, tp TopicPartition, maxBytes int64) (int64, bool, error)
	// TrimRows deletes tp's rows wholly below its log start offset and
	// returns how many it deleted.
	TrimRows(ctx context.Context, tp TopicPartition) (int, error)
	// UnreferencedObjects returns up to limit objects (not tombstones) no
	// row references since before `before`.
	UnreferencedObjects(ctx context.Context, before time.Time, limit int) ([]ObjectRef, error)
	// ForgetObject turns the object row id into a tombstone if no row
	// references it and it is not one already, and reports whether it
	// did. The caller deletes the bucket object after.
	ForgetObject(ctx context.Context, id int64) (bool, error)
	// PruneTombstones deletes up to limit tombstones made before `before`
	// and returns how many it deleted.
	PruneTombstones(ctx context.Context, before time.Time, limit int) (int, error)
	// ExpireProducerStates deletes up to limit producer states (one
	// producer's sequence state on one partition) that no commit has
	// written since before `before`, and returns how many it deleted.
	ExpireProducerStates(ctx context.Context, before time.Time, limit int) (int, error)
	// ExpireProducers deletes up to limit producers (the epochs of
	// AllocateProducerID and BumpProducerEpoch) neither allocated nor
	// bumped since before `before` that have no producer state left, and
	// returns how many it deleted. Run it after ExpireProducerStates.
	ExpireProducers(ctx context.Context, before time.Time, limit int) (int, error)
	// KnownObjects returns the subset of keys the objects table holds as
	// live objects (not tombstones: a tombstone's key found in the bucket
	// is a replay's re-put that nothing references).
	KnownObjects(ctx context.Context, keys []string) (map[string]bool, error)
	// CompactionStats sizes the batch index and objects table.
	CompactionStats(ctx context.Context) (CompactionStats, error)
}

// DefaultTombstoneRetention is how long a tombstone of a garbage-collected
// object is kept. A WAL buffer older than this must never be committed
// (its commit may have happened and its tombstone be gone, so it would
// commit its batches twice): agent/flush refuses it.
const DefaultTombstoneRetention = 7 * 24 * time.Hour

// ValidateSwap checks a RowSwap's shape (not its freshness).
func ValidateSwap(s RowSwap) error {
	switch {
	case len(s.Old) == 0:
		return errors.New("no old rows")
	case s.ObjectKey == "":
		return errors.New("empty object key")
	}
	lo, hi := s.Old[0].BaseOffset, s.Old[len(s.Old)-1].LastOffset
	prev := int64(-1)
	for i, r := range s.Old {
		if r.TopicPartition != s.TopicPartition || r.LastOffset < r.BaseOffset || (i > 0 && r.BaseOffset <= prev) {
			return errors.New("old rows not ascending in one partition")
		}
		prev = r.LastOffset
	}
	prev = lo - 1
	for _, r := range s.New {
		if r.BaseOffset <= prev || r.LastOffset < r.BaseOffset || r.LastOffset > hi ||
			r.ByteOffset < 0 || r.ByteLength <= 0 || r.ByteOffset+r.ByteLength > s.ObjectSize {
			return errors.New("new rows not ascending inside the old range and the object")
		}
		prev = r.LastOffset
	}
	return nil
}
