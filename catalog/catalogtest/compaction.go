package catalogtest

import (
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// RunCompaction runs the conformance subtests of catalog.Compactor, each
// on its own fresh catalog, which must implement it.
func RunCompaction(t *testing.T, newCatalog Factory) {
	for _, tt := range compactionTests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCatalog(t)
			cc, ok := c.(catalog.Compactor)
			if !ok {
				t.Fatalf("%T does not implement catalog.Compactor", c)
			}
			tt.fn(t, c, cc)
		})
	}
}

var compactionTests = []struct {
	name string
	fn   func(t *testing.T, c catalog.Catalog, cc catalog.Compactor)
}{
	{"SwapRowsReplacesAndStampsOldObjects", testSwapRows},
	{"SwapRowsConflict", testSwapConflict},
	{"TrimAndRetentionBytes", testTrimAndRetentionBytes},
	{"GCLeavesTombstoneThatCommitRecognises", testTombstone},
	{"ForgetObjectRefusesReferenced", testForgetReferenced},
	{"ConcurrentSwapsStampSharedObject", testConcurrentSwapsStamp},
	{"ConcurrentSwapAndTrimStampSharedObject", testConcurrentSwapAndTrimStamp},
	{"DeleteTopicStampsSharedObject", testDeleteTopicStamps},
	{"CommitWithoutRowsIsUnreferenced", testCommitWithoutRows},
	{"ExpireProducerStates", testExpireProducerStates},
	{"ExpireProducers", testExpireProducers},
	{"ProducerAfterExpiry", testProducerAfterExpiry},
	{"ExpiryRacesCommits", testExpiryRacesCommits},
}

// Far enough either side of "now" for both the Go clock and the
// database's.
var (
	longAgo   = func() time.Time { return time.Now().Add(-time.Hour) }
	farFuture = func() time.Time { return time.Now().Add(time.Hour) }
)

func compactionRows(t *testing.T, cc catalog.Compactor, tp catalog.TopicPartition) []catalog.CompactionRow {
	t.Helper()
	rows, err := cc.CompactionRows(ctx(t), tp, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func unreferenced(t *testing.T, cc catalog.Compactor, before time.Time) map[string]int64 {
	t.Helper()
	objs, err := cc.UnreferencedObjects(ctx(t), before, 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, o := range objs {
		out[o.Key] = o.ID
	}
	return out
}

func stats(t *testing.T, cc catalog.Compactor) catalog.CompactionStats {
	t.Helper()
	s, err := cc.CompactionStats(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testSwapRows(t *testing.T, c catalog.Catalog, cc catalog.Compactor) {
	top := createTopic(t, c, "swap", 2, nil)
	tp, other := tpOf(top, 0), tpOf(top, 1)
	var keys []string
	for range 3 {
		seg := segment(batch(tp, 2, 1000), batch(other, 1, 1000), batch(tp, 3, 1001))
		commit(t, c, seg)
		keys = append(keys, seg.Key)
	}
	rows := compactionRows(t, cc, tp)
	if len(rows) != 6 || rows[0].BaseOffset != 0 || rows[5].LastOffset != 14 {
		t.Fatalf("rows before swap: %+v", rows)
	}
	if rows[0].ObjectSize <= 0 || rows[0].ObjectCreated.IsZero() || rows[0].ObjectID == 0 {
		t.Fatalf("row lacks its object: %+v", rows[0])
	}
	old := make([]catalog.BatchRow, len(rows))
	var length int64
	for i, r := range rows {
		old[i] = r.BatchRow
		length += r.ByteLength
	}
	newKey := uniqueKey("merged")
	err := cc.SwapRows(ctx(t), catalog.RowSwap{TopicPartition: tp, Old: old, ObjectKey: newKey, ObjectSize: length + 100,
		New: []catalog.BatchRow{{TopicPartition: tp, BaseOffset: 0, LastOffset: 14, ByteOffset: 50, ByteLength: length, Records: 15, MaxTimestamp: 1001}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Batches(ctx(t), tp, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ObjectKey != newKey || got[0].BaseOffset != 0 || got[0].LastOffset != 14 || got[0].ByteLength != length {
		t.Fatalf("rows after swap: %+v", got)
	}
	if got[0].ObjectSize != length+100 {
		t.Fatalf("row after swap has ObjectSize %d, want the new object's %d", got[0].ObjectSize, length+100)
	}
	// The flushed objects still hold partition 1's rows: not unreferenced.
	if u := unreferenced(t, cc, farFuture()); len(u) != 0 {
		t.Fatalf("objects with rows listed as unreferenced: %v", u)
	}
	if _, err := c.DeleteRecords(ctx(t), other, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.TrimRows(ctx(t), other); err != nil {
		t.Fatal(err)
	}
	u := unreferenced(t, cc, farFuture())
	if len(u) != 3 {
		t.Fatalf("unreferenced after swap and trim: %v, want the 3 flushed objects", u)
	}
	for _, k := range keys {
		if _, ok := u[k]; !ok {
			t.Fatalf("%s not unreferenced: %v", k, u)
		}
	}
	if u := unreferenced(t, cc, longAgo()); len(u) != 0 {
		t.Fatalf("unreferenced before their stamp: %v", u)
	}
	known, err := cc.KnownObjects(ctx(t), append([]string{newKey, "v1/none.seg"}, keys...))
	if err != nil {
		t.Fatal(err)
	}
	if !known[newKey] || known["v1/none.seg"] || !known[keys[0]] {
		t.Fatalf("known objects: %v", known)
	}
	s := stats(t, cc)
	if s.Rows != 1 || s.Objects != 4 || s.Tombstones != 0 || s.LiveBytes != length {
		t.Fatalf("stats %+v", s)
	}
	if !s.OldestFlush.IsZero() {
		t.Fatalf("oldest flush %v with only a merged object referenced", s.OldestFlush)
	}
}

func testSwapConflict(t *testing.T, c catalog.Catalog, cc catalog.Compactor) {
	top := createTopic(t, c, "conflict", 1, nil)
	tp := tpOf(top, 0)
	commit(t, c, segment(batch(tp, 2, 1000)))
	commit(t, c, segment(batch(tp, 2, 1000)))
	rows := compactionRows(t, cc, tp)
	old := []catalog.BatchRow{rows[0].BatchRow, rows[1].BatchRow}
	stale := old[1]
	stale.ByteLength++
	swap := func(old []catalog.BatchRow) error {
		return cc.SwapRows(ctx(t), catalog.RowSwap{TopicPartition: tp, Old: old, ObjectKey: uniqueKey("merged"), ObjectSize: 1000,
			New: []catalog.BatchRow{{TopicPartition: tp, BaseOffset: 0, LastOffset: 3, ByteOffset: 0, ByteLength: 400, Records: 4}}})
	}
	if err := swap([]catalog.BatchRow{old[0], stale}); !errors.Is(err, catalog.ErrSwapConflict) {
		t.Fatalf("swap of a changed row: %v, want ErrSwapConflict", err)
	}
	if got := compactionRows(t, cc, tp); !reflect.DeepEqual(got, rows) {
		t.Fatalf("a failed swap changed rows: %+v", got)
	}
	if err := swap(old); err != nil {
		t.Fatal(err)
	}
	if err := swap(old); !errors.Is(err, catalog.ErrSwapConflict) {
		t.Fatalf("second swap of the same rows: %v, want ErrSwapConflict", err)
	}
	if s := stats(t, cc); s.Objects != 3 { // two flushed, one merged
		t.Fatalf("a failed swap registered its object: %+v", s)
	}
}

func testTrimAndRetentionBytes(t *testing.T, c catalog.Catalog, cc catalog.Compactor) {
	top := createTopic(t, c, "trim", 1, nil)
	tp := tpOf(top, 0)
	for range 5 {
		commit(t, c, segment(batch(tp, 2, 1000))) // 200 bytes per row
	}
	off, ok, err := cc.RetentionOffsetForBytes(ctx(t), tp, 450)
	if err != nil || !ok || off != 4 {
		t.Fatalf("retention offset for 450 bytes: %d %v %v, want 4 (the last 3 rows hold ≥ 450)", off, ok, err)
	}
	if _, ok, err := cc.RetentionOffsetForBytes(ctx(t), tp, 5000); err != nil || ok {
		t.Fatalf("retention offset beyond the partition's size: %v %v", ok, err)
	}
	if n, err := cc.TrimRows(ctx(t), tp); err != nil || n != 0 {
		t.Fatalf("trim at log start 0: %d %v", n, err)
	}
	if _, err := c.DeleteRecords(ctx(t), tp, 5); err != nil {
		t.Fatal(err)
	}
	// Offsets 0-3 are wholly below 5; the row 4-5 stays.
	if n, err := cc.TrimRows(ctx(t), tp); err != nil || n != 2 {
		t.Fatalf("trim below 5: %d %v, want 2", n, err)
	}
	rows := compactionRows(t, cc, tp)
	if len(rows) != 3 || rows[0].BaseOffset != 4 {
		t.Fatalf("rows after trim: %+v", rows)
	}
	if u := unreferenced(t, cc, farFuture()); len(u) != 2 {
		t.Fatalf("unreferenced after trim: %v", u)
	}
}

// GC's ForgetObject keeps the row as a tombstone: a WAL buffer replayed
// after its object was collected re-commits with the same key and must
// get the original results, not a second copy of its batches.
func testTombstone(t *testing.T, c catalog.Catalog, cc catalog.Compactor) {
	top := createTopic(t, c, "tomb", 1, nil)
	tp := tpOf(top, 0)
	seg := segment(batch(tp, 3, 1000), batch(tp, 2, 1000))
	first := commit(t, c, seg)
	if _, err := c.DeleteRecords(ctx(t), tp, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.TrimRows(ctx(t), tp); err != nil {
		t.Fatal(err)
	}
	u := unreferenced(t, cc, farFuture())
	id, ok := u[seg.Key]
	if !ok {
		t.Fatalf("trimmed object not unreferenced: %v", u)
	}
	if done, err := cc.ForgetObject(ctx(t), id); err != nil || !done {
		t.Fatalf("forget: %v %v", done, err)
	}
	if done, err := cc.ForgetObject(ctx(t), id); err != nil || done {
		t.Fatalf("second forget of a tombstone: %v %v, want false", done, err)
	}
	if u := unreferenced(t, cc, farFuture()); len(u) != 0 {
		t.Fatalf("tombstone listed as unreferenced: %v", u)
	}
	known, err := cc.KnownObjects(ctx(t), []string{seg.Key})
	if err != nil || known[seg.Key] {
		t.Fatalf("tombstone known as an object: %v %v", known, err)
	}
	if s := stats(t, cc); s.Objects != 0 || s.Tombstones != 1 || s.Rows != 0 {
		t.Fatalf("stats with one tombstone: %+v", s)
	}

	// The late replay: same key, original results, nothing added.
	again := commit(t, c, seg)
	if !reflect.DeepEqual(again, first) {
		t.Fatalf("re-commit over a tombstone: %+v, want %+v", again, first)
	}
	o, err := c.Offsets(ctx(t), tp)
	if err != nil || o.HighWatermark != 5 || o.LogStart != 5 {
		t.Fatalf("offsets after the re-commit: %+v %v, want 5/5", o, err)
	}
	if s := stats(t, cc); s.Rows != 0 || s.Tombstones != 1 {
		t.Fatalf("re-commit over a tombstone added rows: %+v", s)
	}

	// Pruning honours the stamp.
	if n, err := cc.PruneTombstones(ctx(t), longAgo(), 100); err != nil || n != 0 {
		t.Fatalf("prune of young tombstones: %d %v", n, err)
	}
	if n, err := cc.PruneTombstones(ctx(t), farFuture(), 100); err != nil || n != 1 {
		t.Fatalf("prune: %d %v, want 1", n, err)
	}
	if s := stats(t, cc); s.Tombstones != 0 || s.Objects != 0 {
		t.Fatalf("stats after prune: %+v", s)
	}
	// This is why WAL buffers older than the tombstone retention are
	// refused: with the tombstone gone the key commits anew.
	if late := commit(t, c, seg); late.Results[0].BaseOffset != 5 {
		t.Fatalf("commit after prune: %+v, want new offsets from 5", late)
	}
}

func testForgetReferenced(t *testing.T, c catalog.Catalog, cc catalog.Compactor) {
	top := createTopic(t, c, "ref", 1, nil)
	tp := tpOf(top, 0)
	seg := segment(batch(tp, 1, 1000))
	commit(t, c, seg)
	rows := compactionRows(t, cc, tp)
	if done, err := cc.ForgetObject(ctx(t), rows[0].ObjectID); err != nil || done {
		t.Fatalf("forget of a referenced object: %v %v, want false", done, err)
	}
	if known, err := cc.KnownObjects(ctx(t), []string{seg.Key}); err != nil || !known[seg.Key] {
		t.Fatalf("referenced object not known: %v %v", known, err)
	}
	if n, err := cc.PruneTombstones(ctx(t), farFuture(), 100); err != nil || n != 0 {
		t.Fatalf("prune removed a live object: %d %v", n, err)
	}
}

// testConcurrentSwapsStamp swaps away, at the same time, the two
// partitions' rows of objects that hold both: whichever transaction
// removes an object's last row must stamp it, so GC keeps it for the grace
// period from then, not from its creation (a reader that looked a row up
// before the swap still reads it).
func testConcurrentSwapsStamp(t *testing.T, c catalog.Catalog, cc catalog.Compactor) {
	concurrentRemovalsStamp(t, c, cc, false)
}

// testConcurrentSwapAndTrimStamp is testConcurrentSwapsStamp with one
// partition's rows removed by retention (TrimRows) instead.
func testConcurrentSwapAndTrimStamp(t *testing.T, c catalog.Catalog, cc catalog.Compactor) {
	concurrentRemovalsStamp(t, c, cc, true)
}

func concurrentRemovalsStamp(t *testing.T, c catalog.Catalog, cc catalog.Compactor, trim bool) {
	const objects = 40
	top := createTopic(t, c, "shared", 2*objects, nil)
	var segs []catalog.Segment
	for i := range objects {
		// Each object gets a partition pair of its own, so the removals
		// of one pair conflict with nothing but each other.
		seg := segment(batch(tpOf(top, int32(2*i)), 2, 1000), batch(tpOf(top, int32(2*i+1)), 2, 1000))
		commit(t, c, seg)
		segs = append(segs, seg)
	}
	var created time.Time
	for i := range objects {
		r := compactionRows(t, cc, tpOf(top, int32(2*i)))[0]
		if r.ObjectCreated.After(created) {
			created = r.ObjectCreated
		}
	}
	// Stamps come after this point by either clock (the Go one, or the
	// database's on the same host).
	before := created.Add(100 * time.Millisecond)
	time.Sleep(time.Until(before.Add(100 * time.Millisecond)))
	for i := range objects {
		if trim {
			if _, err := c.DeleteRecords(ctx(t), tpOf(top, int32(2*i+1)), 2); err != nil {
				t.Fatal(err)
			}
		}
	}
	// One pair at a time, both removals released together, so each pair
	// has the connections it needs to overlap.
	for i := range objects {
		var fns [2]func() error
		for k := range 2 {
			tp := tpOf(top, int32(2*i+k))
			r := compactionRows(t, cc, tp)[0]
			fns[k] = func() error {
				return cc.SwapRows(ctx(t), catalog.RowSwap{TopicPartition: tp, Old: []catalog.BatchRow{r.BatchRow},
					ObjectKey: uniqueKey("merged"), ObjectSize: 1000,
					New: []catalog.BatchRow{{TopicPartition: tp, BaseOffset: 0, LastOffset: 1, ByteOffset: 0, ByteLength: 200, Records: 2}}})
			}
			if trim && k == 1 {
				fns[k] = func() error { _, err := cc.TrimRows(ctx(t), tp); return err }
			}
		}
		var wg sync.WaitGroup
		var errs [2]error
		start := make(chan struct{})
		for k := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[k] = fns[k]()
			}()
		}
		close(start)
		wg.Wait()
		if err := errors.Join(errs[:]...); err != nil {
			t.Fatal(err)
		}
	}
	all := unreferenced(t, cc, farFuture())
	early := unreferenced(t, cc, before)
	for _, seg := range segs {
		if _, ok := all[seg.Key]; !ok {
			t.Fatalf("%s has no rows left but is not unreferenced", seg.Key)
		}
		if _, ok := early[seg.Key]; ok {
			t.Fatalf("%s lost its last row to concurrent removals but was not stamped: GC may take it without a grace period", seg.Key)
		}
	}
}

// testDeleteTopicStamps: an object holding two topics' rows loses one
// topic's to a swap, then the other's to DeleteTopic, which must stamp it
// as a swap or trim does: unstamped, GC took it at once (its age being its
// creation's), not GCGrace after its last row went.
func testDeleteTopicStamps(t *testing.T, c catalog.Catalog, cc catalog.Compactor) {
	a := createTopic(t, c, "deleted", 1, nil)
	b := createTopic(t, c, "kept", 1, nil)
	seg := segment(batch(tpOf(a, 0), 2, 1000), batch(tpOf(b, 0), 2, 1000))
	commit(t, c, seg)
	created := compactionRows(t, cc, tpOf(b, 0))[0].ObjectCreated
	before := created.Add(100 * time.Millisecond)
	time.Sleep(time.Until(before.Add(100 * time.Millisecond)))
	r := compactionRows(t, cc, tpOf(b, 0))[0]
	if err := cc.SwapRows(ctx(t), catalog.RowSwap{TopicPartition: tpOf(b, 0), Old: []catalog.BatchRow{r.BatchRow},
		ObjectKey: uniqueKey("merged"), ObjectSize: 1000,
		New: []catalog.BatchRow{{TopicPartition: tpOf(b, 0), BaseOffset: 0, LastOffset: 1, ByteOffset: 0, ByteLength: 200, Records: 2}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteTopic(ctx(t), "deleted", catalog.TopicID{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := unreferenced(t, cc, farFuture())[seg.Key]; !ok {
		t.Fatalf("%s has no rows left but is not unreferenced", seg.Key)
	}
	if _, ok := unreferenced(t, cc, before)[seg.Key]; ok {
		t.Fatalf("%s lost its last row to DeleteTopic but was not stamped: GC may take it without a grace period", seg.Key)
	}
}

// testCommitWithoutRows: an object committed with no rows (every batch a
// duplicate of an earlier commit or refused, or none at all), alone or in
// a group with a segment that has rows, is unreferenced from its creation,
// so GC takes it once its grace has passed since then. GC finds objects by
// their unreferenced stamp alone, so the commit must stamp it: unstamped,
// it was never collected.
func testCommitWithoutRows(t *testing.T, c catalog.Catalog, cc catalog.Compactor) {
	top := createTopic(t, c, "norows", 2, nil)
	tp := tpOf(top, 0)
	pid, epoch, err := c.AllocateProducerID(ctx(t))
	noErr(t, err, "AllocateProducerID")
	stored := segment(idemBatch(tp, 2, pid, epoch, 0), idemBatch(tp, 3, pid, epoch, 2))
	commit(t, c, stored)

	dup := segment(idemBatch(tp, 2, pid, epoch, 0), idemBatch(tp, 3, pid, epoch, 2))
	for i, r := range commit(t, c, dup).Results {
		if r.Err != nil || !r.Duplicate {
			t.Fatalf("retried batch %d: %s, want a duplicate", i, describe(r))
		}
	}
	refused := segment(batch(tpOf(top, 7), 1, 1000)) // past the partition count
	if r := commit(t, c, refused).Results[0]; r.Err == nil {
		t.Fatalf("batch of a partition that does not exist: %s, want an error", describe(r))
	}
	empty := catalog.Segment{Key: uniqueKey("empty"), Size: 128}
	commit(t, c, empty)
	// A group whose first segment gets no rows and whose second does.
	groupDup := segment(idemBatch(tp, 3, pid, epoch, 2))
	groupStored := segment(batch(tpOf(top, 1), 1, 1000))
	res := commitGroup(t, c, groupDup, groupStored)
	if r := res[0].Results[0]; !r.Duplicate {
		t.Fatalf("retried batch in a group: %s, want a duplicate", describe(r))
	}

	objs, err := cc.UnreferencedObjects(ctx(t), farFuture(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]catalog.ObjectRef{}
	for _, o := range objs {
		listed[o.Key] = o
	}
	for _, seg := range []catalog.Segment{stored, groupStored} {
		if _, ok := listed[seg.Key]; ok {
			t.Fatalf("object with rows %s listed as unreferenced", seg.Key)
		}
	}
	for _, seg := range []catalog.Segment{dup, refused, empty, groupDup} {
		o, ok := listed[seg.Key]
		if !ok {
			t.Fatalf("%s was committed without rows but is not unreferenced: GC never collects it (listed: %v)", seg.Key, listed)
		}
		// Unreferenced since its creation: not before, just after.
		if _, ok := unreferenced(t, cc, o.Created)[seg.Key]; ok {
			t.Fatalf("%s listed as unreferenced before its creation at %v", seg.Key, o.Created)
		}
		if _, ok := unreferenced(t, cc, o.Created.Add(time.Microsecond))[seg.Key]; !ok {
			t.Fatalf("%s not unreferenced just after its creation at %v", seg.Key, o.Created)
		}
	}
	if u := unreferenced(t, cc, longAgo()); len(u) != 0 {
		t.Fatalf("unreferenced before any commit: %v", u)
	}
	if done, err := cc.ForgetObject(ctx(t), listed[dup.Key].ID); err != nil || !done {
		t.Fatalf("forget of an object committed without rows: %v %v", done, err)
	}
	if _, ok := unreferenced(t, cc, farFuture())[dup.Key]; ok {
		t.Fatalf("tombstone %s listed as unreferenced", dup.Key)
	}
}
