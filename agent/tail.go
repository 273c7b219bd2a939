package agent

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/floebroker/floe/catalog"
)

// tailIndex is the agent's memory of the newest catalog rows of each
// partition, fed by OnCommitted (this agent's commits) and by the commit
// follower (every other commit of the fleet; see follow.go). It answers fetches
// at the tail without reading the catalog, tracks each partition's high
// watermark, and wakes long-polling fetches when anything is committed.
//
// Per partition it keeps a contiguous run of rows: a row that does not
// extend the run (a gap, after the follower fell behind or started late)
// starts a new run, so a lookup never skips offsets. Offsets below the run
// are read from the catalog.
type tailIndex struct {
	now func() time.Time

	mu struct {
		sync.Mutex
		parts map[catalog.TopicPartition]*tailPart
		// byTopic holds parts again by topic, indexed by partition number
		// (nil: none), so that adding a commit's rows — thousands of
		// partitions at once — hashes once per topic, not once per row.
		byTopic map[catalog.TopicID][]*tailPart
		// known holds, by topic, the mark (see mark) at which the
		// topic's first partition was added; seq counts the topics
		// added.
		known map[catalog.TopicID]uint64
		seq   uint64
		// waiters are the long-polling fetches waiting for rows of each
		// topic (see watch).
		waiters map[catalog.TopicID]map[*tailWaiter]struct{}
		woken   int64 // waiters woken so far (tests)
		// started is closed once the follower knows where to start.
		started chan struct{}
		startOK bool
		// own holds, ascending, the ids of this agent's commits whose rows
		// addOwn added and the follower has not yet stepped over.
		own []int64
		// due holds the partitions whose offsets the log start
		// refresher is to read (see logstart.go), each marked
		// refreshing.
		due []catalog.TopicPartition
	}
	// dueCh is signalled when due becomes non-empty.
	dueCh chan struct{}
}

type tailPart struct {
	rows []catalog.BatchRow // contiguous, ascending
	// added is when each row was added (Unix nanoseconds, nondecreasing
	// but for a wall clock stepped back), for lookup's maxAge.
	added []int64
	// end is the last row's LastOffset, kept here so that adding a row
	// reads none: an agent adds thousands per commit, each to another
	// partition's array, and reading the last row cost a cache miss each.
	end int64
	// hw is the highest LastOffset+1 seen from commits or the catalog.
	hw int64
	// logStart caches the catalog's log start; offsetsAt is when the
	// read that gave the newest value started (the catalog's answer is
	// at least that recent, so the log start is at most that old).
	logStart  int64
	offsetsAt time.Time
	// refreshing is set from when the partition is queued for the log
	// start refresher until its read returns.
	refreshing bool
}

// The tail index keeps, per partition, the newest rows: enough to serve
// consumers a few seconds behind the tail from memory. A partition keeps
// at most maxTailRows, and all partitions together about tailRowBudget (a
// row is ≈100 bytes and holds a pointer the collector scans): with many
// partitions each keeps fewer, never fewer than minTailRows. At 2,000
// partitions that is 65 rows each, several seconds of commits, where a
// fixed 512 would hold a million rows (≈100 MiB) and grow with every
// partition added.
const (
	maxTailRows   = 512
	minTailRows   = 32
	tailRowBudget = 1 << 17
)

// tailRowLimit is how many rows each of parts partitions keeps.
func tailRowLimit(parts int) int {
	return min(maxTailRows, max(minTailRows, tailRowBudget/max(parts, 1)))
}

// offsetsTTL bounds how long a partition's log start offset is reused
// without being re-read (in the background while fetches may still use it,
// up to maxLogStartAge: see offsets). Answers that would declare an offset
// out of range always re-read the catalog, so a stale value never fails a
// valid fetch.
const offsetsTTL = time.Second

func newTailIndex(now func() time.Time) *tailIndex {
	t := &tailIndex{now: now, dueCh: make(chan struct{}, 1)}
	t.mu.parts = make(map[catalog.TopicPartition]*tailPart)
	t.mu.byTopic = make(map[catalog.TopicID][]*tailPart)
	t.mu.known = make(map[catalog.TopicID]uint64)
	t.mu.waiters = make(map[catalog.TopicID]map[*tailWaiter]struct{})
	t.mu.started = make(chan struct{})
	return t
}

// tailWaiter is one long-polling fetch waiting for rows of its topics.
type tailWaiter struct {
	ch     chan struct{} // closed at the first rows added for a topic
	topics []catalog.TopicID
}

// watch returns a waiter whose channel is closed when rows of any of the
// topics are next added. Take it before looking at the index, then wait
// on it: no wake-up is lost. Waiters are per topic so that a commit wakes
// only the fetches of its topics: with one channel for every addition,
// each commit anywhere in the fleet made every long poll rebuild its
// response, thousands of partitions each for the fetches of quiet topics.
// Call unwatch when done waiting.
func (t *tailIndex) watch(topics []catalog.TopicID) *tailWaiter {
	w := &tailWaiter{ch: make(chan struct{})}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range topics {
		ws := t.mu.waiters[id]
		if ws == nil {
			ws = make(map[*tailWaiter]struct{})
			t.mu.waiters[id] = ws
		}
		if _, dup := ws[w]; !dup {
			ws[w] = struct{}{}
			w.topics = append(w.topics, id)
		}
	}
	return w
}

// unwatch drops a waiter that has not been woken; again, it does nothing.
func (t *tailIndex) unwatch(w *tailWaiter) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropWaiterLocked(w)
}

func (t *tailIndex) dropWaiterLocked(w *tailWaiter) {
	for _, id := range w.topics {
		ws := t.mu.waiters[id]
		delete(ws, w)
		if len(ws) == 0 {
			delete(t.mu.waiters, id)
		}
	}
	w.topics = nil
}

func (t *tailIndex) partLocked(tp catalog.TopicPartition) *tailPart {
	p, ok := t.mu.parts[tp]
	if !ok {
		p = &tailPart{hw: -1, logStart: -1}
		t.mu.parts[tp] = p
		t.indexLocked(tp, p)
		if _, ok := t.mu.known[tp.TopicID]; !ok {
			t.mu.seq++
			t.mu.known[tp.TopicID] = t.mu.seq
		}
	}
	return p
}

// maxIndexedPartition bounds byTopic's slices. Partitions are numbered
// densely from 0, so a slice is as long as the topic has partitions; a
// partition number above the bound (no real topic has one) is found in
// parts only.
const maxIndexedPartition = 1 << 16

// indexLocked records p as tp's in byTopic (nil: tp was forgotten).
func (t *tailIndex) indexLocked(tp catalog.TopicPartition, p *tailPart) {
	if tp.Partition < 0 || tp.Partition > maxIndexedPartition {
		return
	}
	ps := t.mu.byTopic[tp.TopicID]
	i := int(tp.Partition)
	if i >= len(ps) {
		if p == nil {
			return
		}
		ps = append(ps, make([]*tailPart, i+1-len(ps))...)
	}
	ps[i] = p
	t.mu.byTopic[tp.TopicID] = ps
}

// add records committed rows (ascending commit order per partition).
func (t *tailIndex) add(rows []catalog.BatchRow) {
	if len(rows) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addLocked(rows)
	t.wakeLocked(rows)
}

// maxOwnCommits bounds the own commit ids remembered for a follower that
// is not stepping over them (it is failing or far behind): forgetting one
// only means reading that commit back from the catalog.
const maxOwnCommits = 4096

// addOwn records the rows of this agent's own commits (OnCommitted, which
// has every row its commit stored) and remembers their commit ids, so the
// commit follower steps over those commits instead of reading their rows
// back from the catalog (see skipOwn). A commit without rows is not
// remembered; the follower reads it, finding nothing.
func (t *tailIndex) addOwn(rows []catalog.BatchRow) {
	if len(rows) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addLocked(rows)
	last := int64(-1)
	for i := range rows {
		if id := rows[i].CommitID; id != last {
			t.markOwnLocked(id)
			last = id
		}
	}
	t.wakeLocked(rows)
}

func (t *tailIndex) markOwnLocked(id int64) {
	own := t.mu.own
	n := len(own)
	switch {
	case n == 0 || own[n-1] < id:
		// The usual case: the WAL commits in seal order, one call
		// (a buffer or a group) at a time.
		own = append(own, id)
	default:
		i, found := slices.BinarySearch(own, id)
		if found {
			return
		}
		own = slices.Insert(own, i, id)
	}
	if len(own) > maxOwnCommits {
		own = own[:copy(own, own[len(own)-maxOwnCommits/2:])]
	}
	t.mu.own = own
}

// skipOwn returns after advanced over the own commits that directly follow
// it (ids after+1, after+2, …, all added by addOwn), and forgets own ids at
// or below the result. Commit ids are unique, so an id known to be this
// agent's own commit is no other commit: stepping over a contiguous run of
// them skips nothing, whatever the catalog's numbering.
func (t *tailIndex) skipOwn(after int64) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	own := t.mu.own
	i := 0
	for ; i < len(own) && own[i] <= after+1; i++ {
		if own[i] == after+1 {
			after++
		}
	}
	if i > 0 {
		t.mu.own = own[:copy(own, own[i:])]
	}
	return after
}

func (t *tailIndex) addLocked(rows []catalog.BatchRow) {
	// Rows come grouped by partition (object order, or the catalog's
	// order): look each partition up once per run of rows, and its topic
	// once per run of the topic's rows.
	now := t.now().UnixNano()
	var p *tailPart
	var ptp catalog.TopicPartition
	var ps []*tailPart // ptp's topic's partitions
	limit := tailRowLimit(len(t.mu.parts))
	for i := range rows {
		r := &rows[i]
		if p == nil || r.TopicPartition != ptp {
			if p == nil || r.TopicID != ptp.TopicID {
				ps = t.mu.byTopic[r.TopicID]
			}
			ptp, p = r.TopicPartition, nil
			if j := int(r.Partition); j >= 0 && j < len(ps) {
				p = ps[j]
			}
			if p == nil {
				p = t.partLocked(r.TopicPartition)
				ps = t.mu.byTopic[r.TopicID]
			}
		}
		n := len(p.rows)
		switch {
		case n > 0 && r.BaseOffset <= p.end:
			// Already known (the follower read a commit OnCommitted
			// already delivered).
		case n > 0 && r.BaseOffset == p.end+1:
			if n >= limit {
				// Keep the newest half. Lookup copies what it returns,
				// so no caller holds p.rows: trim in place, or into a
				// smaller array once the limit has fallen (more
				// partitions) so the memory is given back.
				keep := limit / 2
				if cap(p.rows) > 2*limit {
					p.rows = append(make([]catalog.BatchRow, 0, limit), p.rows[n-keep:]...)
					p.added = append(make([]int64, 0, limit), p.added[n-keep:]...)
				} else {
					m := copy(p.rows, p.rows[n-keep:])
					clear(p.rows[m:])
					p.rows = p.rows[:m]
					p.added = p.added[:copy(p.added, p.added[n-keep:])]
				}
			}
			p.rows = append(p.rows, *r)
			p.added = append(p.added, now)
			p.end = r.LastOffset
		default:
			p.rows = append(p.rows[:0:0], *r)
			p.added = append(p.added[:0:0], now)
			p.end = r.LastOffset
		}
		p.hw = max(p.hw, r.LastOffset+1)
	}
}

// wakeLocked wakes the waiters of the rows' topics.
func (t *tailIndex) wakeLocked(rows []catalog.BatchRow) {
	if len(t.mu.waiters) == 0 {
		return
	}
	var last catalog.TopicID
	for i := range rows {
		id := rows[i].TopicID
		if i > 0 && id == last {
			continue // rows come grouped by topic
		}
		last = id
		t.wakeTopicLocked(id)
	}
}

func (t *tailIndex) wakeTopicLocked(id catalog.TopicID) {
	for w := range t.mu.waiters[id] {
		close(w.ch)
		t.dropWaiterLocked(w)
		t.mu.woken++
	}
}

// forget drops what is known about a partition (its topic was deleted or
// records were deleted).
func (t *tailIndex) forget(tp catalog.TopicPartition) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.mu.parts, tp)
	t.indexLocked(tp, nil)
}

// forgetTopic drops what is known about a deleted topic's partitions.
// Nothing adds rows for its id again (a topic created under its name gets
// a new id), so they would be kept, and counted against every other
// partition's share of tailRowBudget, for the agent's life. Fetches
// waiting for its rows are woken: they answer at once that it is gone.
func (t *tailIndex) forgetTopic(id catalog.TopicID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.wakeTopicLocked(id)
	for tp := range t.mu.parts {
		if tp.TopicID == id {
			delete(t.mu.parts, tp)
		}
	}
	delete(t.mu.byTopic, id)
	delete(t.mu.known, id)
}

// mark returns a mark that the topics added since are after (see
// forgetUnlisted).
func (t *tailIndex) mark() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mu.seq
}

// forgetUnlisted is forgetTopic for every topic added before mark whose
// id listed lacks, in one pass over the partitions. A topic added since
// may have been created after the listing was read.
func (t *tailIndex) forgetUnlisted(mark uint64, listed map[catalog.TopicID]struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var gone map[catalog.TopicID]struct{}
	for id, seq := range t.mu.known {
		if _, ok := listed[id]; ok || seq > mark {
			continue
		}
		if gone == nil {
			gone = make(map[catalog.TopicID]struct{})
		}
		gone[id] = struct{}{}
		t.wakeTopicLocked(id)
		delete(t.mu.byTopic, id)
		delete(t.mu.known, id)
	}
	if gone == nil {
		return
	}
	for tp := range t.mu.parts {
		if _, ok := gone[tp.TopicID]; ok {
			delete(t.mu.parts, tp)
		}
	}
}

// lookup returns the rows holding offsets from `from`, if the index covers
// from, stopping once maxBytes are covered (at least one row).
func (t *tailIndex) lookup(tp catalog.TopicPartition, from int64, maxBytes int64, maxAge time.Duration) ([]catalog.BatchRow, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.mu.parts[tp]
	if !ok {
		return nil, false
	}
	f := t.freshLocked(p, maxAge)
	if f == len(p.rows) || from < p.rows[f].BaseOffset || from > p.rows[len(p.rows)-1].LastOffset {
		return nil, false
	}
	i := f + sort.Search(len(p.rows)-f, func(i int) bool { return p.rows[f+i].LastOffset >= from })
	var out []catalog.BatchRow
	var covered int64
	for ; i < len(p.rows) && (len(out) == 0 || covered < maxBytes); i++ {
		out = append(out, p.rows[i])
		covered += p.rows[i].ByteLength
	}
	return out, true
}

// tailNearRows is how many of a partition's newest rows count as its
// tail for reads: a consumer at the tail is a fetch or two behind, the
// rows committed since its last fetch. The index keeps many more rows (up
// to maxTailRows: minutes of commits at a long flush interval), and a
// consumer reading from the older ones while the tail cache no longer
// holds them is catching up.
const tailNearRows = 16

// near reports whether row is among the newest tailNearRows rows its
// partition's run holds (or the run does not hold it).
func (t *tailIndex) near(row catalog.BatchRow) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.mu.parts[row.TopicPartition]
	if !ok || len(p.rows) <= tailNearRows {
		return true
	}
	return row.LastOffset >= p.rows[len(p.rows)-tailNearRows].BaseOffset
}

// cachedOffsets returns the partition's known log start and high
// watermark, and how old the log start is (logStart < 0: none known).
func (t *tailIndex) cachedOffsets(tp catalog.TopicPartition) (logStart, hw int64, age time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.mu.parts[tp]
	if !ok || p.logStart < 0 {
		return -1, -1, 0
	}
	return p.logStart, p.hw, t.now().Sub(p.offsetsAt)
}

// storeOffsets records offsets read from the catalog by a read that
// started at readAt, and returns the high watermark to serve: the larger
// of the catalog's and the followed one.
func (t *tailIndex) storeOffsets(tp catalog.TopicPartition, o catalog.PartitionOffsets, readAt time.Time) (logStart, hw int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.partLocked(tp)
	t.storeOffsetsLocked(p, o, readAt)
	return p.logStart, p.hw
}

func (t *tailIndex) storeOffsetsLocked(p *tailPart, o catalog.PartitionOffsets, readAt time.Time) {
	if len(p.rows) > 0 && o.LogStart > p.rows[0].BaseOffset {
		// Records were deleted below: drop rows that are gone.
		i := sort.Search(len(p.rows), func(i int) bool { return p.rows[i].LastOffset >= o.LogStart })
		p.rows = append(p.rows[:0:0], p.rows[i:]...)
		p.added = append(p.added[:0:0], p.added[i:]...)
	}
	// The log start only grows: a read that started before a
	// DeleteRecords and lands after it must not bring deleted records back.
	p.logStart = max(p.logStart, o.LogStart)
	p.hw = max(p.hw, o.HighWatermark)
	// Its age counts from the read's start, not its end: a slow read
	// that started before a DeleteRecords may answer the log start from
	// before it, and maxLogStartAge must bound how long that is served.
	if readAt.After(p.offsetsAt) {
		p.offsetsAt = readAt
	}
}

// raiseHW records a high watermark learned from rows read from the catalog.
func (t *tailIndex) raiseHW(tp catalog.TopicPartition, hw int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.partLocked(tp)
	p.hw = max(p.hw, hw)
}

// covers reports whether the index holds the row of offset.
func (t *tailIndex) covers(tp catalog.TopicPartition, offset int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.mu.parts[tp]
	return ok && len(p.rows) > 0 && offset >= p.rows[0].BaseOffset && offset <= p.rows[len(p.rows)-1].LastOffset
}

// freshLocked is the index of p's first row added less than maxAge ago
// (len(p.rows) if none is; 0 if maxAge is 0).
//
// Fetches of compacted topics pass Config.TailMaxAge: log compaction's
// swaps are not commits, so followers never learn of them, and a quiet
// partition's rows would otherwise be served from the index (and the
// read cache behind it) indefinitely — records compaction removed, and so
// a consumer could read a key's value from the index and then, once the
// index no longer held the rows, miss its tombstone in the catalog's rows.
// Compaction leaves alone rows in objects younger than its merge age, and
// TailMaxAge is half of it: older rows are read through the catalog, as a
// consumer catching up reads them. (Other topics' rows only move when
// merged, into objects holding the same bytes; a row whose object is gone
// makes the fetch read the catalog's rows instead.)
func (t *tailIndex) freshLocked(p *tailPart, maxAge time.Duration) int {
	if maxAge <= 0 || len(p.added) == 0 {
		return 0
	}
	cutoff := t.now().Add(-maxAge).UnixNano()
	if p.added[0] >= cutoff {
		return 0
	}
	return sort.Search(len(p.added), func(i int) bool { return p.added[i] >= cutoff })
}

// waitStarted waits until the follower has found its starting commit.
func (t *tailIndex) waitStarted(ctx context.Context) error {
	t.mu.Lock()
	ch := t.mu.started
	t.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *tailIndex) markStarted() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.mu.startOK {
		t.mu.startOK = true
		close(t.mu.started)
	}
}
