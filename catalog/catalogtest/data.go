package catalogtest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

var commitTests = []namedTest{
	{"AssignsOffsets", testAssignsOffsets},
	{"CoalescesRows", testCoalescesRows},
	{"UnknownPartition", testCommitUnknownPartition},
	{"IdempotentByKey", testIdempotentByKey},
	{"ConcurrentSameKey", testConcurrentSameKey},
	{"EmptySegment", testEmptySegment},
	{"InvalidSegment", testInvalidSegment},
	{"Concurrent", testConcurrentCommits},
}

var readTests = []namedTest{
	{"Batches", testBatches},
	{"BatchesMaxBytes", testBatchesMaxBytes},
	{"Timestamps", testTimestamps},
	{"DeleteRecords", testDeleteRecords},
	{"OffsetsOf", testOffsetsOf},
}

var followTests = []namedTest{
	{"CommitsSince", testCommitsSince},
	{"CommitsSincePages", testCommitsSincePages},
	{"Watch", testWatch},
	{"WatchCloses", testWatchCloses},
}

func testAssignsOffsets(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 2, nil)
	a, b := tpOf(topic, 0), tpOf(topic, 1)
	r1 := commit(t, c, segment(batch(a, 3, 10), batch(b, 1, 20)))
	r2 := commit(t, c, segment(batch(b, 4, 30), batch(a, 2, 40)))
	want := [][]int64{{0, 0}, {1, 3}}
	for i, r := range []catalog.CommitResult{r1, r2} {
		for j, res := range r.Results {
			if res.Err != nil || res.Duplicate || res.BaseOffset != want[i][j] || res.LogStartOffset != 0 {
				t.Fatalf("commit %d batch %d: %s, want base %d", i, j, describe(res), want[i][j])
			}
		}
	}
	if r1.CommitID <= 0 || r2.CommitID <= r1.CommitID {
		t.Fatalf("commit ids %d then %d: want positive and increasing", r1.CommitID, r2.CommitID)
	}
	if o := offsets(t, c, a); o.HighWatermark != 5 || o.LogStart != 0 {
		t.Fatalf("offsets of a: %+v", o)
	}
	if o := offsets(t, c, b); o.HighWatermark != 5 {
		t.Fatalf("offsets of b: %+v", o)
	}
	rows := allRows(t, c, a)
	if len(rows) != 2 {
		t.Fatalf("rows of a: %+v", rows)
	}
	seg2 := r2.CommitID
	if r := rows[1]; r.BaseOffset != 3 || r.LastOffset != 4 || r.Records != 2 || r.MaxTimestamp != 40 || r.CommitID != seg2 || r.ByteLength != 200 {
		t.Fatalf("second row of a: %+v", r)
	}
	if rows[0].ObjectKey == "" || rows[0].ObjectKey == rows[1].ObjectKey {
		t.Fatalf("object keys %q and %q", rows[0].ObjectKey, rows[1].ObjectKey)
	}
}

func testCoalescesRows(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 1, nil)
	tp := tpOf(topic, 0)
	seg := segment(batch(tp, 2, 5), batch(tp, 3, 9), batch(tp, 1, 7))
	commit(t, c, seg)
	rows := allRows(t, c, tp)
	// Backends may store one row per batch or coalesce contiguous batches;
	// either way the rows must tile the offsets and the bytes exactly.
	var next, bytes int64
	var records int32
	var maxTS int64
	for _, r := range rows {
		if r.BaseOffset != next || r.ObjectKey != seg.Key {
			t.Fatalf("rows do not tile the offsets: %+v", rows)
		}
		if r.ByteOffset != seg.Batches[0].ByteOffset+bytes {
			t.Fatalf("rows do not tile the bytes: %+v", rows)
		}
		next = r.LastOffset + 1
		bytes += r.ByteLength
		records += r.Records
		maxTS = max(maxTS, r.MaxTimestamp)
	}
	if next != 6 || bytes != 600 || records != 6 || maxTS != 9 {
		t.Fatalf("rows cover offsets to %d, %d bytes, %d records, max ts %d: %+v", next, bytes, records, maxTS, rows)
	}
}

func testCommitUnknownPartition(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 1, nil)
	res := commit(t, c, segment(
		batch(tpOf(topic, 0), 1, 1),
		batch(tpOf(topic, 1), 1, 1), // past the partition count
		batch(catalog.TopicPartition{TopicID: catalog.TopicID{0xee}, Partition: 0}, 1, 1),
		batch(tpOf(topic, 0), 1, 1),
	))
	for i, wantErrV := range []error{nil, catalog.ErrUnknownTopic, catalog.ErrUnknownTopic, nil} {
		if !errors.Is(res.Results[i].Err, wantErrV) || (wantErrV == nil && res.Results[i].Err != nil) {
			t.Fatalf("batch %d: %s, want error %v", i, describe(res.Results[i]), wantErrV)
		}
	}
	if res.Results[3].BaseOffset != 1 {
		t.Fatalf("batch after the failed ones: %s", describe(res.Results[3]))
	}
	if o := offsets(t, c, tpOf(topic, 0)); o.HighWatermark != 2 {
		t.Fatalf("offsets %+v", o)
	}
}

func testIdempotentByKey(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 2, nil)
	pid, epoch, err := c.AllocateProducerID(ctx(t))
	noErr(t, err, "AllocateProducerID")
	seg := segment(
		batch(tpOf(topic, 0), 2, 1),
		idemBatch(tpOf(topic, 1), 3, pid, epoch, 0),
		batch(catalog.TopicPartition{TopicID: catalog.TopicID{0xee}}, 1, 1),
	)
	first := commit(t, c, seg)
	commit(t, c, segment(batch(tpOf(topic, 0), 1, 1))) // something in between
	sameCommit(t, "re-commit", commit(t, c, seg), first)
	if o := offsets(t, c, tpOf(topic, 0)); o.HighWatermark != 3 {
		t.Fatalf("re-commit moved offsets: %+v", o)
	}
	if o := offsets(t, c, tpOf(topic, 1)); o.HighWatermark != 3 {
		t.Fatalf("re-commit moved offsets: %+v", o)
	}
	if n := len(allRows(t, c, tpOf(topic, 1))); n != 1 {
		t.Fatalf("re-commit added rows: %d", n)
	}
}

func testConcurrentSameKey(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 1, nil)
	seg := segment(batch(tpOf(topic, 0), 2, 1))
	const n = 6
	results := make([]catalog.CommitResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = c.CommitSegment(ctx(t), seg)
		}()
	}
	wg.Wait()
	for i := range n {
		noErr(t, errs[i], "concurrent CommitSegment")
		if results[i].CommitID != results[0].CommitID || results[i].Results[0].BaseOffset != 0 {
			t.Fatalf("commit %d: %+v, commit 0: %+v", i, results[i], results[0])
		}
	}
	if o := offsets(t, c, tpOf(topic, 0)); o.HighWatermark != 2 {
		t.Fatalf("same key committed more than once: %+v", o)
	}
}

func testEmptySegment(t *testing.T, c catalog.Catalog) {
	seg := catalog.Segment{Key: uniqueKey("empty"), Size: 128}
	r1 := commit(t, c, seg)
	r2 := commit(t, c, seg)
	if r1.CommitID != r2.CommitID || len(r1.Results) != 0 {
		t.Fatalf("empty segment: %+v then %+v", r1, r2)
	}
}

func testInvalidSegment(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 1, nil)
	bad := []catalog.Segment{
		{Key: ""},
		{Key: uniqueKey("bad"), Batches: []catalog.BatchRef{{TopicPartition: tpOf(topic, 0), OffsetSpan: 0, ProducerID: -1}}},
	}
	for i, seg := range bad {
		if _, err := c.CommitSegment(ctx(t), seg); !errors.Is(err, catalog.ErrInvalidSegment) {
			t.Fatalf("invalid segment %d: err %v, want ErrInvalidSegment", i, err)
		}
	}
	if o := offsets(t, c, tpOf(topic, 0)); o.HighWatermark != 0 {
		t.Fatalf("invalid segments moved offsets: %+v", o)
	}
}

// testConcurrentCommits is a small in-suite version of Stress: several
// goroutines on one catalog.
func testConcurrentCommits(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 4, nil)
	const workers, each = 4, 25
	var wg sync.WaitGroup
	var mu sync.Mutex
	spans := map[catalog.TopicPartition]int64{}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				p1, p2 := int32((w+i)%4), int32((w+i+1)%4)
				seg := segment(batch(tpOf(topic, p2), 2, 1), batch(tpOf(topic, p1), 1, 1))
				res, err := c.CommitSegment(ctx(t), seg)
				if err != nil {
					t.Errorf("CommitSegment: %v", err)
					return
				}
				mu.Lock()
				for j, r := range res.Results {
					if r.Err != nil {
						t.Errorf("result: %s", describe(r))
					}
					spans[seg.Batches[j].TopicPartition] += int64(seg.Batches[j].OffsetSpan)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for tp, n := range spans {
		checkTiling(t, c, tp, n)
	}
}

// checkTiling checks that tp's rows tile [0, n) without gaps or overlaps.
func checkTiling(t *testing.T, c catalog.Catalog, tp catalog.TopicPartition, n int64) {
	t.Helper()
	if o := offsets(t, c, tp); o.HighWatermark != n {
		t.Fatalf("partition %d: high watermark %d, want %d", tp.Partition, o.HighWatermark, n)
	}
	var next int64
	for _, r := range allRows(t, c, tp) {
		if r.BaseOffset != next || r.LastOffset < r.BaseOffset {
			t.Fatalf("partition %d: row %d-%d after offset %d", tp.Partition, r.BaseOffset, r.LastOffset, next-1)
		}
		next = r.LastOffset + 1
	}
	if next != n {
		t.Fatalf("partition %d: rows end at %d, want %d", tp.Partition, next, n)
	}
}

func testBatches(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 1, nil)
	tp := tpOf(topic, 0)
	sizes := map[string]int64{}
	for range 5 {
		seg := segment(batch(tp, 10, 1)) // rows 0-9, 10-19, …
		seg.Size += int64(len(sizes))    // each object's own size
		commit(t, c, seg)
		sizes[seg.Key] = seg.Size
	}
	tests := []struct {
		from      int64
		wantFirst int64 // base of the first row, -1: no rows
		wantErr   error
	}{
		{0, 0, nil},
		{9, 0, nil},
		{10, 10, nil},
		{25, 20, nil},
		{49, 40, nil},
		{50, -1, nil},
		{51, 0, catalog.ErrOffsetOutOfRange},
		{-1, 0, catalog.ErrOffsetOutOfRange},
	}
	for _, tt := range tests {
		rows, err := c.Batches(ctx(t), tp, tt.from, 1<<20)
		if tt.wantErr != nil {
			wantErr(t, err, tt.wantErr, "Batches")
			continue
		}
		noErr(t, err, "Batches")
		if tt.wantFirst < 0 {
			if len(rows) != 0 {
				t.Fatalf("Batches(%d) = %+v, want none", tt.from, rows)
			}
			continue
		}
		if len(rows) == 0 || rows[0].BaseOffset != tt.wantFirst || rows[len(rows)-1].LastOffset != 49 {
			t.Fatalf("Batches(%d) = %+v, want rows from %d to the end", tt.from, rows, tt.wantFirst)
		}
		checkObjectSizes(t, "Batches", rows, sizes)
	}
	if _, err := c.DeleteRecords(ctx(t), tp, 15); err != nil {
		t.Fatal(err)
	}
	_, err := c.Batches(ctx(t), tp, 14, 100)
	wantErr(t, err, catalog.ErrOffsetOutOfRange, "Batches below the log start")
	rows, err := c.Batches(ctx(t), tp, 15, 100)
	noErr(t, err, "Batches at the log start")
	if len(rows) == 0 || rows[0].BaseOffset != 10 {
		t.Fatalf("Batches at the log start = %+v, want the row holding 15", rows)
	}
}

func testBatchesMaxBytes(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 1, nil)
	tp := tpOf(topic, 0)
	for range 10 {
		commit(t, c, segment(batch(tp, 1, 1))) // 100-byte rows
	}
	tests := []struct {
		maxBytes int64
		want     int
	}{
		{1, 1}, // always at least one row
		{0, 1},
		{100, 1},
		{101, 2},
		{250, 3},
		{1000, 10},
		{1 << 40, 10},
	}
	for _, tt := range tests {
		rows, err := c.Batches(ctx(t), tp, 0, tt.maxBytes)
		noErr(t, err, "Batches")
		if len(rows) != tt.want {
			t.Fatalf("Batches(maxBytes %d) returned %d rows, want %d", tt.maxBytes, len(rows), tt.want)
		}
	}
}

func testTimestamps(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 2, nil)
	tp := tpOf(topic, 0)
	sizes := map[string]int64{}
	// Timestamps are not monotonic across batches.
	for i, ts := range []int64{100, 300, 200, 300, 50} {
		seg := segment(batch(tp, 2, ts))
		seg.Size += int64(i)
		commit(t, c, seg)
		sizes[seg.Key] = seg.Size
	}
	tests := []struct {
		ts       int64
		wantBase int64 // -1: none
	}{
		{0, 0},
		{100, 0},
		{101, 2},
		{250, 2},
		{300, 2},
		{301, -1},
	}
	for _, tt := range tests {
		row, ls, ok, err := c.BatchForTimestamp(ctx(t), tp, tt.ts, 0)
		noErr(t, err, "BatchForTimestamp")
		if (tt.wantBase < 0) == ok || (ok && row.BaseOffset != tt.wantBase) || ls != 0 {
			t.Fatalf("BatchForTimestamp(%d) = %+v, log start %d, %v; want base %d, log start 0", tt.ts, row, ls, ok, tt.wantBase)
		}
		if ok {
			checkObjectSizes(t, "BatchForTimestamp", []catalog.BatchRow{row}, sizes)
		}
	}
	row, ls, ok, err := c.MaxTimestampBatch(ctx(t), tp, 0)
	noErr(t, err, "MaxTimestampBatch")
	if !ok || row.MaxTimestamp != 300 || row.BaseOffset != 2 || ls != 0 {
		t.Fatalf("MaxTimestampBatch = %+v, log start %d, %v; want the first 300 at offset 2, log start 0", row, ls, ok)
	}
	checkObjectSizes(t, "MaxTimestampBatch", []catalog.BatchRow{row}, sizes)
	// From an offset: the rows holding offsets at or after it only (a
	// search going on past a row without a matching record).
	for _, tt := range []struct {
		ts, from int64
		wantBase int64 // -1: none
	}{
		{250, 0, 2},
		{250, 3, 2}, // the row 2-3 holds 3
		{250, 4, 6},
		{250, 8, -1},
		{0, 9, 8},
		{0, 10, -1}, // the high watermark
	} {
		row, _, ok, err := c.BatchForTimestamp(ctx(t), tp, tt.ts, tt.from)
		noErr(t, err, "BatchForTimestamp from")
		if (tt.wantBase < 0) == ok || (ok && row.BaseOffset != tt.wantBase) {
			t.Fatalf("BatchForTimestamp(%d, from %d) = %+v %v, want base %d", tt.ts, tt.from, row, ok, tt.wantBase)
		}
	}
	for _, tt := range []struct {
		from     int64
		wantBase int64 // -1: none
	}{
		{3, 2},
		{4, 6}, // the later 300
		{7, 6},
		{8, 8},
		{10, -1},
	} {
		row, _, ok, err := c.MaxTimestampBatch(ctx(t), tp, tt.from)
		noErr(t, err, "MaxTimestampBatch from")
		if (tt.wantBase < 0) == ok || (ok && row.BaseOffset != tt.wantBase) {
			t.Fatalf("MaxTimestampBatch(from %d) = %+v %v, want base %d", tt.from, row, ok, tt.wantBase)
		}
	}
	_, err = c.DeleteRecords(ctx(t), tp, 4)
	noErr(t, err, "DeleteRecords")
	// Each answers the log start it chose the row by, which a caller
	// searches the row's records from.
	row, ls, ok, err = c.BatchForTimestamp(ctx(t), tp, 0, 0)
	noErr(t, err, "BatchForTimestamp")
	if !ok || row.BaseOffset != 4 || ls != 4 {
		t.Fatalf("BatchForTimestamp after DeleteRecords = %+v, log start %d, %v; want the row at the log start 4", row, ls, ok)
	}
	row, ls, ok, err = c.MaxTimestampBatch(ctx(t), tp, 0)
	noErr(t, err, "MaxTimestampBatch")
	if !ok || row.BaseOffset != 6 || ls != 4 {
		t.Fatalf("MaxTimestampBatch after DeleteRecords = %+v, log start %d, %v; want offset 6, log start 4", row, ls, ok)
	}
	// The log start bounds a search from below it.
	row, ls, ok, err = c.BatchForTimestamp(ctx(t), tp, 0, 1)
	noErr(t, err, "BatchForTimestamp")
	if !ok || row.BaseOffset != 4 || ls != 4 {
		t.Fatalf("BatchForTimestamp from 1 after DeleteRecords = %+v, log start %d, %v; want the row at the log start 4", row, ls, ok)
	}
	// Found nothing: the log start all the same.
	_, ls, ok, err = c.BatchForTimestamp(ctx(t), tp, 1000, 0)
	noErr(t, err, "BatchForTimestamp")
	if ok || ls != 4 {
		t.Fatalf("BatchForTimestamp(1000) after DeleteRecords: log start %d, %v; want none, log start 4", ls, ok)
	}
	_, _, ok, err = c.MaxTimestampBatch(ctx(t), tpOf(topic, 1), 0)
	noErr(t, err, "MaxTimestampBatch empty")
	if ok {
		t.Fatal("MaxTimestampBatch of an empty partition found a row")
	}
	_, _, ok, err = c.BatchForTimestamp(ctx(t), tpOf(topic, 1), 0, 0)
	noErr(t, err, "BatchForTimestamp empty")
	if ok {
		t.Fatal("BatchForTimestamp of an empty partition found a row")
	}
}

func testDeleteRecords(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 1, nil)
	tp := tpOf(topic, 0)
	commit(t, c, segment(batch(tp, 10, 1)))
	steps := []struct {
		offset  int64
		want    int64
		wantErr error
	}{
		{3, 3, nil},
		{2, 3, nil}, // never back
		{7, 7, nil},
		{100, 10, nil}, // clamped to the high watermark
		{-2, 0, catalog.ErrOffsetOutOfRange},
	}
	for _, s := range steps {
		got, err := c.DeleteRecords(ctx(t), tp, s.offset)
		if s.wantErr != nil {
			wantErr(t, err, s.wantErr, "DeleteRecords")
			continue
		}
		noErr(t, err, "DeleteRecords")
		if got != s.want {
			t.Fatalf("DeleteRecords(%d) = %d, want %d", s.offset, got, s.want)
		}
		if o := offsets(t, c, tp); o.LogStart != s.want || o.HighWatermark != 10 {
			t.Fatalf("offsets after DeleteRecords(%d): %+v", s.offset, o)
		}
	}
	res := commit(t, c, segment(batch(tp, 5, 1)))
	if res.Results[0].BaseOffset != 10 || res.Results[0].LogStartOffset != 10 {
		t.Fatalf("commit after DeleteRecords: %s", describe(res.Results[0]))
	}
	got, err := c.DeleteRecords(ctx(t), tp, -1) // -1: up to the high watermark
	noErr(t, err, "DeleteRecords(-1)")
	if got != 15 {
		t.Fatalf("DeleteRecords(-1) = %d, want 15", got)
	}
}

// testOffsetsOf: OffsetsOf answers as Offsets does for each partition,
// leaves out the partitions of a deleted topic and those that never
// existed, and answers a repeated partition once.
func testOffsetsOf(t *testing.T, c catalog.Catalog) {
	a := createTopic(t, c, "a", 3, nil)
	b := createTopic(t, c, "b", 2, nil)
	gone := createTopic(t, c, "gone", 2, nil)
	commit(t, c, segment(batch(tpOf(a, 0), 10, 1), batch(tpOf(a, 2), 4, 1), batch(tpOf(b, 1), 7, 1), batch(tpOf(gone, 0), 3, 1)))
	_, err := c.DeleteRecords(ctx(t), tpOf(a, 0), 6)
	noErr(t, err, "DeleteRecords")
	_, err = c.DeleteTopic(ctx(t), "gone", gone.ID)
	noErr(t, err, "DeleteTopic")

	got, err := c.OffsetsOf(ctx(t), nil)
	noErr(t, err, "OffsetsOf(nil)")
	if len(got) != 0 {
		t.Fatalf("OffsetsOf(nil) = %v, want none", got)
	}
	tps := []catalog.TopicPartition{
		tpOf(a, 0), tpOf(a, 1), tpOf(a, 2), tpOf(b, 0), tpOf(b, 1),
		tpOf(gone, 0), tpOf(gone, 1), // deleted
		tpOf(a, 3), {Partition: 0}, // never existed
		tpOf(b, 1), // repeated
	}
	got, err = c.OffsetsOf(ctx(t), tps)
	noErr(t, err, "OffsetsOf")
	want := map[catalog.TopicPartition]catalog.PartitionOffsets{
		tpOf(a, 0): {LogStart: 6, HighWatermark: 10},
		tpOf(a, 1): {LogStart: 0, HighWatermark: 0},
		tpOf(a, 2): {LogStart: 0, HighWatermark: 4},
		tpOf(b, 0): {LogStart: 0, HighWatermark: 0},
		tpOf(b, 1): {LogStart: 0, HighWatermark: 7},
	}
	if len(got) != len(want) {
		t.Errorf("OffsetsOf = %v, want %v", got, want)
	}
	for tp, w := range want {
		if g, ok := got[tp]; !ok || g != w {
			t.Errorf("OffsetsOf[%v] = %+v (present %v), want %+v", tp, g, ok, w)
		}
		if o := offsets(t, c, tp); o != w {
			t.Errorf("Offsets(%v) = %+v, OffsetsOf %+v", tp, o, w)
		}
	}

	// Many partitions in one call, as an agent refreshing its tail asks.
	many := createTopic(t, c, "many", 1500, nil)
	tps = tps[:0]
	for p := range many.Partitions {
		tps = append(tps, tpOf(many, p))
	}
	got, err = c.OffsetsOf(ctx(t), tps)
	noErr(t, err, "OffsetsOf(1500 partitions)")
	if len(got) != len(tps) {
		t.Fatalf("OffsetsOf of %d partitions answered %d", len(tps), len(got))
	}
}

func testCommitsSince(t *testing.T, c catalog.Catalog) {
	rows, latest, err := c.CommitsSince(ctx(t), 0, 10)
	noErr(t, err, "CommitsSince on empty")
	if len(rows) != 0 || latest != 0 {
		t.Fatalf("empty catalog: %d rows, latest %d", len(rows), latest)
	}
	topic := createTopic(t, c, "t", 3, nil)
	var ids []int64
	sizes := map[string]int64{}
	for i := range 4 {
		seg := segment(batch(tpOf(topic, int32(i%2)), 1, 1), batch(tpOf(topic, 2), 1, 1))
		seg.Size += int64(i)
		r := commit(t, c, seg)
		ids = append(ids, r.CommitID)
		sizes[seg.Key] = seg.Size
	}
	dup := commit(t, c, segment()) // a commit without rows still advances the id
	rows, latest, err = c.CommitsSince(ctx(t), 0, 100)
	noErr(t, err, "CommitsSince")
	if latest != dup.CommitID || len(rows) != 8 {
		t.Fatalf("CommitsSince(0): %d rows, latest %d; want 8 rows, latest %d", len(rows), latest, dup.CommitID)
	}
	for i, r := range rows {
		if r.CommitID != ids[i/2] || (i > 0 && r.CommitID < rows[i-1].CommitID) {
			t.Fatalf("row %d has commit id %d; ids %v", i, r.CommitID, ids)
		}
	}
	checkObjectSizes(t, "CommitsSince", rows, sizes)
	rows, latest, err = c.CommitsSince(ctx(t), ids[2], 100)
	noErr(t, err, "CommitsSince(mid)")
	if len(rows) != 2 || rows[0].CommitID != ids[3] || latest != dup.CommitID {
		t.Fatalf("CommitsSince(%d) = %+v, latest %d", ids[2], rows, latest)
	}
	rows, latest, err = c.CommitsSince(ctx(t), latest, 100)
	noErr(t, err, "CommitsSince(latest)")
	if len(rows) != 0 || latest != dup.CommitID {
		t.Fatalf("CommitsSince(latest) = %+v, %d", rows, latest)
	}
}

func testCommitsSincePages(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 8, nil)
	want := 0
	for i := range 12 {
		var bs []catalog.BatchRef
		n := 1 + i%5
		if i == 5 {
			n = 8 // one commit larger than the page size
		}
		for p := range n {
			bs = append(bs, batch(tpOf(topic, int32(p)), 1, 1))
		}
		commit(t, c, segment(bs...))
		want += n
	}
	seen := map[[2]int64]bool{}
	var after int64
	for page := 0; ; page++ {
		if page > 50 {
			t.Fatal("paging does not end")
		}
		rows, latest, err := c.CommitsSince(ctx(t), after, 5)
		noErr(t, err, "CommitsSince")
		if len(rows) == 0 {
			if latest != after {
				t.Fatalf("no rows but latest %d != after %d", latest, after)
			}
			break
		}
		if len(rows) > 5 && rows[0].CommitID != rows[len(rows)-1].CommitID {
			t.Fatalf("page of %d rows spans several commits", len(rows))
		}
		for _, r := range rows {
			if r.CommitID <= after || r.CommitID > latest {
				t.Fatalf("row of commit %d outside (%d, %d]", r.CommitID, after, latest)
			}
			k := [2]int64{int64(r.Partition), r.BaseOffset}
			if seen[k] {
				t.Fatalf("row %v returned twice", k)
			}
			seen[k] = true
		}
		after = latest
	}
	if len(seen) != want {
		t.Fatalf("paged through %d rows, want %d", len(seen), want)
	}
}

func testWatch(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 1, nil)
	wctx, cancel := context.WithCancel(ctx(t))
	ch, err := c.Watch(wctx)
	noErr(t, err, "Watch")
	// Let a backend with a separate listener connection get ready; commits
	// before that are caught by the id published on (re)connect.
	time.Sleep(100 * time.Millisecond)
	var last int64
	for range 3 {
		r := commit(t, c, segment(batch(tpOf(topic, 0), 1, 1)))
		deadline := time.After(10 * time.Second)
		for last < r.CommitID {
			select {
			case id, ok := <-ch:
				if !ok {
					t.Fatal("watch channel closed early")
				}
				if id < last {
					t.Fatalf("watch went back from %d to %d", last, id)
				}
				last = id
			case <-deadline:
				t.Fatalf("commit %d not delivered (last %d)", r.CommitID, last)
			}
		}
	}
	cancel()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("watch channel not closed after cancel")
		}
	}
}

func testWatchCloses(t *testing.T, c catalog.Catalog) {
	ch, err := c.Watch(ctx(t))
	noErr(t, err, "Watch")
	noErr(t, c.Close(), "Close")
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				if _, err := c.Watch(ctx(t)); err == nil {
					t.Fatal("Watch after Close succeeded")
				}
				return
			}
		case <-timeout:
			t.Fatal("watch channel not closed by Close")
		}
	}
}

// checkObjectSizes checks that every row carries the size of the object it
// names, as committed (sizes by object key).
func checkObjectSizes(t *testing.T, op string, rows []catalog.BatchRow, sizes map[string]int64) {
	t.Helper()
	for _, r := range rows {
		if want, ok := sizes[r.ObjectKey]; !ok || r.ObjectSize != want {
			t.Fatalf("%s: row %d-%d of object %s has ObjectSize %d, want %d", op, r.BaseOffset, r.LastOffset, r.ObjectKey, r.ObjectSize, want)
		}
	}
}
