package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// fakeCommits is a catalog's commit log for the follower: commit id →
// rows, every commit id up to latest (ids without rows stored none).
type fakeCommits struct {
	commits map[int64][]catalog.BatchRow
	latest  int64
	reads   []int64 // the after of each CommitsSince call
	fail    error
	// pageCommits > 0 makes an answer scan at most that many commits,
	// as PostgreSQL's does (rows or not).
	pageCommits int
}

func (f *fakeCommits) CommitsSince(_ context.Context, after int64, limit int) ([]catalog.BatchRow, int64, error) {
	f.reads = append(f.reads, after)
	if f.fail != nil {
		return nil, 0, f.fail
	}
	var ids []int64
	for id := range f.commits {
		if id > after && id <= f.latest {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	if f.pageCommits > 0 && len(ids) > f.pageCommits {
		ids = ids[:f.pageCommits]
		var out []catalog.BatchRow
		for _, id := range ids {
			out = append(out, f.commits[id]...)
		}
		return out, ids[len(ids)-1], nil
	}
	var out []catalog.BatchRow
	for _, id := range ids {
		if len(out) > 0 && len(out)+len(f.commits[id]) > limit {
			return out, out[len(out)-1].CommitID, nil // cut short
		}
		out = append(out, f.commits[id]...)
	}
	return out, f.latest, nil
}

// commit stores a commit of one row for partition p at the next offset.
func (f *fakeCommits) commit(id int64, p int32, base int64) []catalog.BatchRow {
	rows := []catalog.BatchRow{{
		TopicPartition: catalog.TopicPartition{Partition: p},
		BaseOffset:     base, LastOffset: base + 9, ByteLength: 100,
		ObjectKey: fmt.Sprint(id), CommitID: id,
	}}
	f.commits[id] = rows
	f.latest = max(f.latest, id)
	return rows
}

func TestFollowerSkipsOwnCommits(t *testing.T) {
	ctx := context.Background()
	f := &fakeCommits{commits: map[int64][]catalog.BatchRow{}}
	a := &Agent{tail: newTailIndex(time.Now)}
	own := func(id int64, p int32, base int64) { a.tail.addOwn(f.commit(id, p, base)) }
	has := func(p int32, offset int64) bool {
		return a.tail.covers(catalog.TopicPartition{Partition: p}, offset)
	}
	step := func(name string, after, target int64, force bool, wantAfter int64, wantReads ...int64) {
		t.Helper()
		f.reads = nil
		got, err := a.catchUp(ctx, f, after, target, force)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != wantAfter || fmt.Sprint(f.reads) != fmt.Sprint(wantReads) {
			t.Fatalf("%s: after %d with reads after %v, want %d with reads after %v", name, got, f.reads, wantAfter, wantReads)
		}
	}

	// Own commits 1-3: announced, never read.
	own(1, 0, 0)
	own(2, 0, 10)
	own(3, 1, 0)
	step("own only", 0, 3, false, 3)

	// A foreign commit between own ones: read from the catalog once, the
	// own commit after it is stepped over.
	f.commit(4, 2, 0)
	own(5, 0, 20)
	// (A read that is not cut short is confirmed by an empty one.)
	step("foreign then own", 3, 5, false, 5, 3, 5)
	if !has(2, 5) {
		t.Fatal("the foreign commit's row is not in the index")
	}

	// Own commit known before its announcement; then a foreign commit
	// announced while the follower is already past the own one.
	own(6, 1, 10)
	step("own ahead of the announcement", 5, 5, false, 6)
	f.commit(7, 2, 10)
	step("foreign after own", 6, 7, false, 7, 6, 7)

	// Interleaved: own 8, foreign 9 and 10, own 11, foreign 12 (announced
	// as 12 at once, notifications coalesce).
	own(8, 0, 30)
	f.commit(9, 3, 0)
	f.commit(10, 3, 10)
	own(11, 1, 20)
	f.commit(12, 2, 20)
	// 8 is stepped over; the read after 8 returns 9-12 (11 again, which
	// the index already has); the read after 12 finds nothing more.
	step("interleaved", 7, 12, false, 12, 8, 12)
	for _, c := range []struct {
		p   int32
		off int64
	}{{0, 35}, {3, 5}, {3, 15}, {1, 25}, {2, 25}} {
		if !has(c.p, c.off) {
			t.Fatalf("partition %d offset %d missing from the index", c.p, c.off)
		}
	}

	// The backstop (force) reads even when nothing was announced.
	step("backstop", 12, 12, true, 12, 12)

	// Reconnect catch-up: the follower was stuck at 12 (the catalog
	// failed) while own and foreign commits went on; own ids at or below
	// the position are forgotten, the catalog is read from the first
	// foreign commit.
	f.fail = errors.New("down")
	own(13, 0, 40)
	own(14, 0, 50)
	f.commit(15, 4, 0)
	own(16, 1, 30)
	// A failed catch-up still returns the position it stepped to: the
	// own ids it stepped over are forgotten.
	after, err := a.catchUp(ctx, f, 12, 16, true)
	if err == nil || after != 14 {
		t.Fatalf("catch-up with a failing catalog: %d, %v; want 14 and an error", after, err)
	}
	f.fail = nil
	step("reconnect", after, 16, true, 16, 14, 16)
	if !has(4, 5) || !has(1, 35) {
		t.Fatal("rows missing after the reconnect catch-up")
	}
	a.tail.mu.Lock()
	left := len(a.tail.mu.own)
	a.tail.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d own commit ids left after the follower passed them", left)
	}

	// A commit id without rows is not known as own: it is read (and
	// found empty), not assumed; the position then moves past it.
	f.commits[17] = nil
	f.latest = 17
	step("empty commit", 16, 17, false, 17, 16, 17)

	// A run of commits without rows longer than one answer (PostgreSQL
	// pages by commits): the empty page's latest is where the reading
	// goes on, not the old position again.
	f.pageCommits = 3
	for id := int64(18); id <= 25; id++ {
		f.commits[id] = nil
	}
	f.latest = 25
	f.commit(26, 5, 0)
	step("commits without rows", 17, 26, false, 26, 17, 20, 23, 26)
	if !has(5, 5) {
		t.Fatal("the commit after the commits without rows is not in the index")
	}
}

func TestTailIndexOwnCommits(t *testing.T) {
	ti := newTailIndex(time.Now)
	row := func(id int64) []catalog.BatchRow {
		return []catalog.BatchRow{{BaseOffset: id * 10, LastOffset: id*10 + 9, CommitID: id}}
	}
	for _, id := range []int64{5, 3, 4, 4, 7} { // out of order, repeated
		ti.addOwn(row(id))
	}
	for _, c := range []struct{ after, want int64 }{{1, 1}, {2, 5}, {5, 5}, {6, 7}, {7, 7}} {
		if got := ti.skipOwn(c.after); got != c.want {
			t.Fatalf("skipOwn(%d) = %d, want %d", c.after, got, c.want)
		}
	}
	// A follower that never steps over them keeps a bounded number.
	for id := int64(100); id < 100+3*maxOwnCommits; id++ {
		ti.addOwn(row(id))
	}
	ti.mu.Lock()
	n, last := len(ti.mu.own), ti.mu.own[len(ti.mu.own)-1]
	ti.mu.Unlock()
	if n > maxOwnCommits || last != 100+3*maxOwnCommits-1 {
		t.Fatalf("%d own ids kept (max %d), newest %d", n, maxOwnCommits, last)
	}
}

// TestCatchUpPastRowlessPageEnd: PostgreSQL pages the commit log by
// commits; when a page ends on a commit that stored no rows, its latest
// is that commit, beyond the last row returned. Catch-up must move there
// and read on, not stop with announced commits unread until the next
// notification (a long poll on their partitions would wait for it).
func TestCatchUpPastRowlessPageEnd(t *testing.T) {
	f := &fakeCommits{commits: map[int64][]catalog.BatchRow{}, pageCommits: 3}
	a := &Agent{tail: newTailIndex(time.Now)}
	f.commit(1, 0, 0)
	f.commit(2, 0, 10)
	f.commits[3] = nil // rowless (every batch a duplicate, say)
	f.commit(4, 1, 0)
	f.commit(5, 1, 10)
	after, err := a.catchUp(context.Background(), f, 0, 5, false)
	if err != nil {
		t.Fatal(err)
	}
	if after != 5 || !a.tail.covers(catalog.TopicPartition{Partition: 1}, 15) {
		t.Fatalf("catch-up to 5 stopped at %d (reads after %v)", after, f.reads)
	}
}
