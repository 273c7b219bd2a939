package catalogtest

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// groupCommitTests check CommitSegments against its contract: the results
// of committing the segments one after the other with CommitSegment, each
// segment its own object and commit, idempotent per key.
var groupCommitTests = []namedTest{
	{"MatchesOneByOne", testGroupMatchesOneByOne},
	{"Producers", testGroupProducers},
	{"Fencing", testGroupFencing},
	{"AlreadyCommitted", testGroupAlreadyCommitted},
	{"Recommit", testGroupRecommit},
	{"UnknownPartition", testGroupUnknownPartition},
	{"CommitsSince", testGroupCommitsSince},
	{"Watch", testGroupWatch},
	{"Invalid", testGroupInvalid},
}

// testGroupMatchesOneByOne commits three segments as a group and the same
// segments, on a twin topic, one by one: the answers must be the same.
func testGroupMatchesOneByOne(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 4, nil)
	twin := createTopic(t, c, "twin", 4, nil)
	pid, epoch, err := c.AllocateProducerID(ctx(t))
	noErr(t, err, "AllocateProducerID")
	// Both start alike: partition 1 holds offsets 0-3 and starts at 2.
	var before [2]committed
	for i, tt := range []catalog.Topic{topic, twin} {
		seg := segment(batch(tpOf(tt, 1), 4, 1))
		before[i] = committed{seg, commit(t, c, seg)}
		_, err := c.DeleteRecords(ctx(t), tpOf(tt, 1), 2)
		noErr(t, err, "DeleteRecords")
	}
	// Partition 0 is in every segment, 1 in the first only, 2 in the last
	// two, 3 in the last only; 4 does not exist. The producer writes
	// partition 0 in every segment, the third retrying the second's batch.
	layout := func(tt catalog.Topic) []catalog.Segment {
		p := func(n int32) catalog.TopicPartition { return tpOf(tt, n) }
		return []catalog.Segment{
			segment(batch(p(0), 2, 10), batch(p(0), 1, 11), idemBatch(p(0), 2, pid, epoch, 0), batch(p(1), 3, 12), batch(p(1), 1, 13)),
			segment(batch(p(0), 1, 20), idemBatch(p(0), 3, pid, epoch, 2), batch(p(2), 2, 21), batch(p(2), 2, 22), batch(p(4), 1, 23)),
			segment(idemBatch(p(0), 3, pid, epoch, 2), idemBatch(p(0), 1, pid, epoch, 5), batch(p(0), 4, 30),
				batch(p(2), 1, 31), batch(p(3), 2, 32), batch(p(3), 2, 33)),
		}
	}
	segs, twinSegs := layout(topic), layout(twin)
	group := commitGroup(t, c, segs...)
	single := make([]catalog.CommitResult, len(twinSegs))
	for i, seg := range twinSegs {
		single[i] = commit(t, c, seg)
		for j := range seg.Batches {
			if g, s := group[i].Results[j], single[i].Results[j]; !sameResult(g, s) {
				t.Fatalf("segment %d batch %d: group %s, one by one %s", i, j, describe(g), describe(s))
			}
		}
	}
	checkAscending(t, before[1].res.CommitID, group)
	// The twin's answers could be wrong the same way: check some outright.
	checkResults(t, "segment 0", group[0], at(0), at(2), at(3), at(4), at(7))
	checkResults(t, "segment 1", group[1], at(5), at(6), at(0), at(2), failed(catalog.ErrUnknownTopic))
	checkResults(t, "segment 2", group[2], dupAt(6), at(9), at(10), at(4), at(0), at(2))
	if r := group[0].Results[3]; r.LogStartOffset != 2 {
		t.Fatalf("batch of the partition starting at 2: %s", describe(r))
	}
	for i, tt := range []catalog.Topic{topic, twin} {
		commits := []committed{before[i]}
		if tt.ID == topic.ID {
			commits = append(commits, zipCommits(segs, group)...)
		} else {
			commits = append(commits, zipCommits(twinSegs, single)...)
		}
		for p := range int32(4) {
			checkRows(t, c, tpOf(tt, p), commits)
		}
	}
}

// testGroupProducers: an idempotent producer's sequences continue from
// one segment of a group into the next.
func testGroupProducers(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 2, nil)
	a, b := tpOf(topic, 0), tpOf(topic, 1)
	pid, epoch, err := c.AllocateProducerID(ctx(t))
	noErr(t, err, "AllocateProducerID")
	var all []committed
	groupOf := func(segs ...catalog.Segment) []catalog.CommitResult {
		res := commitGroup(t, c, segs...)
		all = append(all, zipCommits(segs, res)...)
		return res
	}

	res := groupOf(
		segment(idemBatch(a, 2, pid, epoch, 0), idemBatch(a, 3, pid, epoch, 2), idemBatch(b, 1, pid, epoch, 0)),
		segment(idemBatch(a, 1, pid, epoch, 5), idemBatch(b, 2, pid, epoch, 1)),
		segment(idemBatch(a, 2, pid, epoch, 6), idemBatch(b, 1, pid, epoch, 3)),
	)
	checkResults(t, "in order 0", res[0], at(0), at(2), at(0))
	checkResults(t, "in order 1", res[1], at(5), at(1))
	checkResults(t, "in order 2", res[2], at(6), at(3))

	// The second segment retries the first's batch.
	res = groupOf(
		segment(idemBatch(a, 2, pid, epoch, 8)),
		segment(idemBatch(a, 2, pid, epoch, 8), idemBatch(b, 1, pid, epoch, 4)),
	)
	checkResults(t, "original", res[0], at(8))
	checkResults(t, "retry", res[1], dupAt(8), at(4))

	// A gap in the third segment rejects that batch only.
	res = groupOf(
		segment(idemBatch(a, 1, pid, epoch, 10)),
		segment(idemBatch(b, 1, pid, epoch, 5)),
		segment(idemBatch(a, 1, pid, epoch, 99), idemBatch(b, 1, pid, epoch, 6), idemBatch(a, 1, pid, epoch, 11)),
	)
	checkResults(t, "before the gap 0", res[0], at(10))
	checkResults(t, "before the gap 1", res[1], at(5))
	checkResults(t, "gap", res[2], failed(catalog.ErrOutOfOrderSequence), at(6), at(11))

	checkRows(t, c, a, all)
	checkRows(t, c, b, all)
}

// testGroupFencing: an epoch a segment fences or bumps holds for the
// segments after it in the group.
func testGroupFencing(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 2, nil)
	a, b := tpOf(topic, 0), tpOf(topic, 1)
	pid, e0, err := c.AllocateProducerID(ctx(t))
	noErr(t, err, "AllocateProducerID")
	seg := segment(idemBatch(a, 1, pid, e0, 0), idemBatch(b, 1, pid, e0, 0))
	all := []committed{{seg, commit(t, c, seg)}}
	e1, err := c.BumpProducerEpoch(ctx(t), pid, e0)
	noErr(t, err, "BumpProducerEpoch")
	segs := []catalog.Segment{
		segment(idemBatch(a, 1, pid, e1, 0)),
		segment(idemBatch(a, 1, pid, e0, 1), idemBatch(b, 1, pid, e1, 0)), // a zombie
		segment(idemBatch(b, 1, pid, e1+1, 0)),                            // a client-side bump (KIP-360)
		segment(idemBatch(b, 1, pid, e1, 1), idemBatch(a, 1, pid, e1, 1)),
	}
	res := commitGroup(t, c, segs...)
	checkResults(t, "new epoch", res[0], at(1))
	checkResults(t, "zombie", res[1], failed(catalog.ErrInvalidProducerEpoch), at(1))
	checkResults(t, "bumped by the client", res[2], at(2))
	checkResults(t, "older than the partition's", res[3], failed(catalog.ErrInvalidProducerEpoch), at(2))
	all = append(all, zipCommits(segs, res)...)
	checkRows(t, c, a, all)
	checkRows(t, c, b, all)
}

// testGroupAlreadyCommitted: keys of a group already committed get their
// original answers while the others commit.
func testGroupAlreadyCommitted(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 2, nil)
	p0, p1 := tpOf(topic, 0), tpOf(topic, 1)
	a := segment(batch(p0, 2, 1), batch(p1, 1, 1))
	aFirst := commit(t, c, a)
	x := segment(batch(p0, 3, 2))
	xFirst := commit(t, c, x)
	// Other traffic: planning a or x again now would give other offsets.
	other := segment(batch(p1, 2, 3))
	otherRes := commit(t, c, other)

	b := segment(batch(p0, 1, 4), batch(p1, 1, 4))
	d := segment(batch(p0, 2, 5))
	res := commitGroup(t, c, a, b, x, d)
	sameCommit(t, "already committed a", res[0], aFirst)
	sameCommit(t, "already committed x", res[2], xFirst)
	checkResults(t, "b", res[1], at(5), at(3))
	checkResults(t, "d", res[3], at(6))
	if res[1].CommitID <= otherRes.CommitID || res[3].CommitID <= res[1].CommitID {
		t.Fatalf("commit ids %d and %d after %d: want ascending", res[1].CommitID, res[3].CommitID, otherRes.CommitID)
	}
	all := append(zipCommits([]catalog.Segment{a, x, other}, []catalog.CommitResult{aFirst, xFirst, otherRes}),
		zipCommits([]catalog.Segment{b, d}, []catalog.CommitResult{res[1], res[3]})...)
	checkRows(t, c, p0, all)
	checkRows(t, c, p1, all)
}

// testGroupRecommit: a group's keys committed again, as a group, in another
// order or one by one, get exactly the group's answers, rejected batches
// included.
func testGroupRecommit(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 2, nil)
	p0, p1 := tpOf(topic, 0), tpOf(topic, 1)
	pid, epoch, err := c.AllocateProducerID(ctx(t))
	noErr(t, err, "AllocateProducerID")
	unknown := catalog.TopicPartition{TopicID: catalog.TopicID{0xee}}
	segs := []catalog.Segment{
		segment(batch(p0, 2, 1), idemBatch(p1, 2, pid, epoch, 0)),
		segment(idemBatch(p1, 2, pid, epoch, 0), batch(unknown, 1, 1), batch(p0, 1, 2)),
		segment(idemBatch(p1, 1, pid, epoch, 7), idemBatch(p1, 1, pid, epoch, 2), batch(p0, 3, 3)),
	}
	first := commitGroup(t, c, segs...)
	checkResults(t, "segment 0", first[0], at(0), at(0))
	checkResults(t, "segment 1", first[1], dupAt(0), failed(catalog.ErrUnknownTopic), at(2))
	checkResults(t, "segment 2", first[2], failed(catalog.ErrOutOfOrderSequence), at(2), at(3))
	// The partitions and the producer move on: a new plan would differ.
	later := segment(batch(p0, 1, 4), idemBatch(p1, 1, pid, epoch, 3))
	laterRes := commit(t, c, later)

	again := commitGroup(t, c, segs...)
	reversed := commitGroup(t, c, segs[2], segs[1], segs[0])
	for i := range segs {
		sameCommit(t, "group again", again[i], first[i])
		sameCommit(t, "group reversed", reversed[len(segs)-1-i], first[i])
		sameCommit(t, "one by one", commit(t, c, segs[i]), first[i])
	}
	all := append(zipCommits(segs, first), committed{later, laterRes})
	checkRows(t, c, p0, all)
	checkRows(t, c, p1, all)
}

// testGroupUnknownPartition: batches of a deleted topic, of a partition past
// the count and of a topic never created fail; the rest of the group
// commits.
func testGroupUnknownPartition(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 2, nil)
	gone := createTopic(t, c, "gone", 1, nil)
	commit(t, c, segment(batch(tpOf(gone, 0), 1, 1)))
	noErr(t, deleteTopic(t, c, "gone"), "DeleteTopic")
	p0, p1 := tpOf(topic, 0), tpOf(topic, 1)
	segs := []catalog.Segment{
		segment(batch(p0, 1, 1), batch(p1, 2, 1)),
		segment(batch(p0, 2, 2), batch(tpOf(gone, 0), 1, 2), batch(tpOf(topic, 2), 1, 2), batch(p1, 1, 2)),
		segment(batch(catalog.TopicPartition{TopicID: catalog.TopicID{0xee}}, 1, 3), batch(p0, 1, 3)),
	}
	res := commitGroup(t, c, segs...)
	checkResults(t, "segment 0", res[0], at(0), at(0))
	checkResults(t, "segment 1", res[1], at(1), failed(catalog.ErrUnknownTopic), failed(catalog.ErrUnknownTopic), at(2))
	checkResults(t, "segment 2", res[2], failed(catalog.ErrUnknownTopic), at(3))
	checkRows(t, c, p0, zipCommits(segs, res))
	checkRows(t, c, p1, zipCommits(segs, res))
}

// testGroupCommitsSince: a follower sees every segment of a group as its
// own commit, rows named by their own object.
func testGroupCommitsSince(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 3, nil)
	p0, p1, p2 := tpOf(topic, 0), tpOf(topic, 1), tpOf(topic, 2)
	commit(t, c, segment(batch(p0, 1, 1)))
	_, before, err := c.CommitsSince(ctx(t), 0, 100)
	noErr(t, err, "CommitsSince")
	segs := []catalog.Segment{
		segment(batch(p0, 2, 1), batch(p0, 1, 1), batch(p1, 1, 1)),
		segment(), // no rows, still a commit
		segment(batch(p0, 1, 2), batch(p2, 2, 2)),
		segment(batch(p0, 3, 3), batch(p1, 1, 3), batch(p2, 1, 3)),
	}
	sizes := map[string]int64{}
	for i := range segs {
		segs[i].Size += int64(i) // each object's own size
		sizes[segs[i].Key] = segs[i].Size
	}
	res := commitGroup(t, c, segs...)
	checkAscending(t, before, res)
	ids := map[string]int64{}
	for i, seg := range segs {
		ids[seg.Key] = res[i].CommitID
	}

	for _, from := range []int{0, 1, 3} {
		after := before
		if from > 0 {
			after = res[from-1].CommitID
		}
		rows, latest, err := c.CommitsSince(ctx(t), after, 100)
		noErr(t, err, "CommitsSince")
		if latest != res[len(res)-1].CommitID {
			t.Fatalf("CommitsSince(%d): latest %d, want the last segment's %d", after, latest, res[len(res)-1].CommitID)
		}
		spans := map[string]int64{}
		for i, r := range rows {
			if id, ok := ids[r.ObjectKey]; !ok || r.CommitID != id {
				t.Fatalf("CommitsSince(%d): row %+v, want commit id %d of its object", after, r, id)
			}
			if i > 0 && r.CommitID < rows[i-1].CommitID {
				t.Fatalf("CommitsSince(%d): commit id %d after %d", after, r.CommitID, rows[i-1].CommitID)
			}
			spans[r.ObjectKey] += r.LastOffset - r.BaseOffset + 1
		}
		checkObjectSizes(t, "CommitsSince", rows, sizes)
		for i, seg := range segs {
			var want int64
			if i >= from {
				for _, b := range seg.Batches {
					want += int64(b.OffsetSpan)
				}
			}
			if spans[seg.Key] != want {
				t.Fatalf("CommitsSince(%d): rows of segment %d cover %d offsets, want %d", after, i, spans[seg.Key], want)
			}
		}
	}
	for _, tp := range []catalog.TopicPartition{p1, p2} {
		checkRows(t, c, tp, zipCommits(segs, res))
	}
}

// testGroupWatch: a watcher sees the group's newest commit, even when the
// group ends with a key committed before.
func testGroupWatch(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 1, nil)
	tp := tpOf(topic, 0)
	old := segment(batch(tp, 1, 1))
	commit(t, c, old)
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	ch, err := c.Watch(wctx)
	noErr(t, err, "Watch")
	time.Sleep(100 * time.Millisecond) // as in testWatch
	res := commitGroup(t, c, segment(batch(tp, 1, 2)), segment(batch(tp, 1, 3)), old)
	want := res[1].CommitID
	deadline := time.After(10 * time.Second)
	for last := int64(0); last < want; {
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
			t.Fatalf("commit %d of the group not delivered (last %d)", want, last)
		}
	}
}

// testGroupInvalid: a group that is not valid as a whole is refused and
// commits nothing, not even its valid segments.
func testGroupInvalid(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 1, nil)
	tp := tpOf(topic, 0)
	ok1, ok2 := segment(batch(tp, 1, 1)), segment(batch(tp, 2, 1))
	sameKey := segment(batch(tp, 3, 1))
	sameKey.Key = ok1.Key
	pastEnd := segment(batch(tp, 1, 1))
	pastEnd.Size = 10
	groups := []struct {
		name string
		segs []catalog.Segment
	}{
		{"nil", nil},
		{"empty", []catalog.Segment{}},
		{"segment twice", []catalog.Segment{ok1, ok1}},
		{"key twice", []catalog.Segment{ok1, ok2, sameKey}},
		{"no key", []catalog.Segment{ok1, {}, ok2}},
		{"zero span", []catalog.Segment{ok1, ok2, {Key: uniqueKey("bad"), Batches: []catalog.BatchRef{{TopicPartition: tp, ProducerID: -1}}}}},
		{"past the object", []catalog.Segment{ok1, pastEnd}},
	}
	for _, g := range groups {
		if res, err := c.CommitSegments(ctx(t), g.segs); !errors.Is(err, catalog.ErrInvalidSegment) {
			t.Fatalf("%s: committed %+v, err %v, want ErrInvalidSegment", g.name, res, err)
		}
		if o := offsets(t, c, tp); o.HighWatermark != 0 {
			t.Fatalf("%s: offsets moved to %+v", g.name, o)
		}
	}
	checkResults(t, "valid segment after the refusals", commit(t, c, ok1), at(0))
	checkResults(t, "valid segment after the refusals", commit(t, c, ok2), at(1))
}

// committed is a segment with the answer its commit got.
type committed struct {
	seg catalog.Segment
	res catalog.CommitResult
}

func zipCommits(segs []catalog.Segment, res []catalog.CommitResult) []committed {
	out := make([]committed, len(segs))
	for i := range segs {
		out[i] = committed{segs[i], res[i]}
	}
	return out
}

// commitGroup commits segs with CommitSegments: one result per segment,
// one per batch.
func commitGroup(t *testing.T, c catalog.Catalog, segs ...catalog.Segment) []catalog.CommitResult {
	t.Helper()
	res, err := c.CommitSegments(ctx(t), segs)
	if err != nil {
		t.Fatalf("CommitSegments(%d segments): %v", len(segs), err)
	}
	if len(res) != len(segs) {
		t.Fatalf("CommitSegments: %d results for %d segments", len(res), len(segs))
	}
	for i, seg := range segs {
		if len(res[i].Results) != len(seg.Batches) {
			t.Fatalf("CommitSegments: segment %d: %d results for %d batches", i, len(res[i].Results), len(seg.Batches))
		}
	}
	return res
}

// checkAscending checks that a group's commit ids follow after and each
// other, strictly ascending.
func checkAscending(t *testing.T, after int64, res []catalog.CommitResult) {
	t.Helper()
	for i, r := range res {
		if r.CommitID <= after {
			t.Fatalf("segment %d: commit id %d after %d", i, r.CommitID, after)
		}
		after = r.CommitID
	}
}

// expect is what one batch's result should be: stored at base, a
// duplicate of the batch stored at base, or rejected with err.
type expect struct {
	base int64
	dup  bool
	err  error
}

func at(base int64) expect    { return expect{base: base} }
func dupAt(base int64) expect { return expect{base: base, dup: true} }
func failed(err error) expect { return expect{err: err} }
func (e expect) String() string {
	return describe(catalog.BatchResult{BaseOffset: e.base, Duplicate: e.dup, Err: e.err})
}

func checkResults(t *testing.T, what string, r catalog.CommitResult, want ...expect) {
	t.Helper()
	if len(r.Results) != len(want) {
		t.Fatalf("%s: %d results, want %d", what, len(r.Results), len(want))
	}
	for i, w := range want {
		got := r.Results[i]
		if w.err != nil {
			if !errors.Is(got.Err, w.err) {
				t.Fatalf("%s: batch %d: %s, want error %v", what, i, describe(got), w.err)
			}
			continue
		}
		if got.Err != nil || got.Duplicate != w.dup || got.BaseOffset != w.base {
			t.Fatalf("%s: batch %d: %s, want %s", what, i, describe(got), w)
		}
	}
}

// sameResult reports whether two results of one batch are the same answer.
func sameResult(a, b catalog.BatchResult) bool {
	return a.BaseOffset == b.BaseOffset && a.Duplicate == b.Duplicate && a.LogStartOffset == b.LogStartOffset &&
		(a.Err == nil) == (b.Err == nil) && errors.Is(a.Err, b.Err)
}

// sameCommit checks that got is exactly the answer want was: a re-commit
// of a key.
func sameCommit(t *testing.T, what string, got, want catalog.CommitResult) {
	t.Helper()
	if got.CommitID != want.CommitID || len(got.Results) != len(want.Results) {
		t.Fatalf("%s: commit %d with %d results, want commit %d with %d", what, got.CommitID, len(got.Results), want.CommitID, len(want.Results))
	}
	for i := range want.Results {
		if !sameResult(got.Results[i], want.Results[i]) {
			t.Fatalf("%s: result %d: %s, first %s", what, i, describe(got.Results[i]), describe(want.Results[i]))
		}
	}
}

// checkRows checks tp's rows against the commits that stored its offsets
// (all of them, in any order): the rows tile the offsets, and every row
// lies in the batches of one segment and says so — object key, size and
// commit id, bytes from its first batch's start to its last's end,
// records and largest timestamp. A row never spans two segments, however
// consecutive their batches are.
func checkRows(t *testing.T, c catalog.Catalog, tp catalog.TopicPartition, commits []committed) {
	t.Helper()
	type placed struct {
		c     *committed
		batch int
		base  int64
	}
	stored := map[int64]placed{}
	var end int64
	for i := range commits {
		cm := &commits[i]
		for j, b := range cm.seg.Batches {
			r := cm.res.Results[j]
			if b.TopicPartition != tp || r.Err != nil || r.Duplicate {
				continue
			}
			for o := r.BaseOffset; o < r.BaseOffset+int64(b.OffsetSpan); o++ {
				if _, ok := stored[o]; ok {
					t.Fatalf("partition %d: offset %d assigned twice", tp.Partition, o)
				}
				stored[o] = placed{cm, j, r.BaseOffset}
			}
			end = max(end, r.BaseOffset+int64(b.OffsetSpan))
		}
	}
	checkTiling(t, c, tp, end)
	for _, r := range allRows(t, c, tp) {
		first, last := stored[r.BaseOffset], stored[r.LastOffset]
		if first.c == nil || last.c == nil || first.base != r.BaseOffset ||
			last.base+int64(last.c.seg.Batches[last.batch].OffsetSpan) != r.LastOffset+1 {
			t.Fatalf("partition %d: row %d-%d does not start and end with a batch", tp.Partition, r.BaseOffset, r.LastOffset)
		}
		var records int32
		maxTS := int64(math.MinInt64)
		for o, prev := r.BaseOffset, -1; o <= r.LastOffset; o++ {
			p := stored[o]
			if p.c != first.c {
				t.Fatalf("partition %d: row %d-%d spans segments %s and %s", tp.Partition, r.BaseOffset, r.LastOffset, first.c.seg.Key, p.c.seg.Key)
			}
			if p.batch != prev {
				b := p.c.seg.Batches[p.batch]
				records += b.Records
				maxTS = max(maxTS, b.MaxTimestamp)
				prev = p.batch
			}
		}
		fb, lb := first.c.seg.Batches[first.batch], last.c.seg.Batches[last.batch]
		want := catalog.BatchRow{
			TopicPartition: tp, BaseOffset: r.BaseOffset, LastOffset: r.LastOffset,
			ObjectKey: first.c.seg.Key, ByteOffset: fb.ByteOffset, ByteLength: lb.ByteOffset + lb.ByteLength - fb.ByteOffset,
			Records: records, MaxTimestamp: maxTS, CommitID: first.c.res.CommitID, ObjectSize: first.c.seg.Size,
		}
		if r != want {
			t.Fatalf("partition %d: row\n %+v, want\n %+v", tp.Partition, r, want)
		}
	}
}
