package agent

import (
	"context"
	"time"

	"github.com/floebroker/floe/catalog"
)

// The log start refresher re-reads, in the background, the offsets of the
// partitions fetches served from memory with a log start older than
// offsetsTTL. It reads them together: one catalog read per tick for every
// partition due, at most maxLogStartBatch at a time. A read per partition
// would cost the catalog a query per consumed partition per second,
// 10,000 queries a second for an agent whose consumers follow 10,000
// partitions, only to notice the rare log start move (DeleteRecords,
// retention).
//
// A log start older than maxLogStartAge is never served from memory: the
// fetch reads it from the catalog. That bounds how long after a log start
// moves in the catalog any agent may still serve records below it, the
// bound a DeleteRecords answer waits out (delete_records.go).

// offsetsRefreshTimeout bounds a background catalog read.
const offsetsRefreshTimeout = 10 * time.Second

// logStartTick is the least time between the starts of two of the
// refresher's reads, unless partitions are still waiting after a read
// (more than maxLogStartBatch were due). A read of a partition queued by a
// fetch once its log start was offsetsTTL old then starts within a tick.
const logStartTick = offsetsTTL / 2

// maxLogStartAge is how old a cached log start may be for a fetch to be
// served on it (its age counts from the start of the read that gave it).
// A partition fetched steadily has its log start queued once offsetsTTL
// old and read within logStartTick; the second tick leaves room for the
// fetch that finds it due to come (a consumer long-polls up to 500 ms by
// default) and for the read itself, so such fetches never wait for the
// catalog. A partition fetched again after a pause has its log start
// read by the fetch.
const maxLogStartAge = offsetsTTL + 2*logStartTick

// maxLogStartBatch caps the partitions of one read, so that a read stays
// one short statement however many partitions the agent serves.
const maxLogStartBatch = 2000

// offsets returns a partition's log start and high watermark: from memory
// when fresh, from the catalog otherwise or when force is set. A fetch at
// the tail is answered from memory on a log start up to maxLogStartAge
// old, so consumers at the tail do not wait for the catalog: at the known
// high watermark (a long poll, which serves no record whatever the log
// start), or inside the tail index's rows, while the log start — which
// only DeleteRecords and retention move — is re-read in the background.
// A long poll queues the read too, so that the log start is current when
// records come.
func (a *Agent) offsets(ctx context.Context, tp catalog.TopicPartition, fetchOffset int64, force bool) (logStart, hw int64, err error) {
	if !force {
		ls, hw, age := a.tail.cachedOffsets(tp)
		switch {
		case ls < 0:
		case age < offsetsTTL:
			return ls, hw, nil
		case fetchOffset == hw,
			age < maxLogStartAge && fetchOffset >= ls && fetchOffset < hw && a.tail.covers(tp, fetchOffset):
			a.tail.queueRefresh(tp)
			return ls, hw, nil
		}
	}
	readAt := a.tail.now()
	o, err := a.cat.Offsets(ctx, tp)
	if err != nil {
		return 0, 0, err
	}
	ls, hw := a.tail.storeOffsets(tp, o, readAt)
	return ls, hw, nil
}

// refreshLogStarts runs the log start refresher until ctx ends.
func (a *Agent) refreshLogStarts(ctx context.Context) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.tail.dueCh:
		}
		sleepCtx(ctx, logStartTick-time.Since(last))
		for more := true; more && ctx.Err() == nil; {
			var tps []catalog.TopicPartition
			tps, more = a.tail.takeDue(maxLogStartBatch)
			if len(tps) == 0 {
				break
			}
			last = time.Now()
			a.readLogStarts(ctx, tps)
		}
	}
}

// readLogStarts reads the offsets of tps and ends their refresh. A
// partition the catalog no longer has is of a deleted topic: the agent
// forgets the topic, as when a fetch finds it gone. After a failed read
// each partition is queued again when a fetch next finds it stale.
func (a *Agent) readLogStarts(ctx context.Context, tps []catalog.TopicPartition) {
	ctx, cancel := context.WithTimeout(ctx, offsetsRefreshTimeout)
	defer cancel()
	readAt := a.tail.now()
	got, err := a.cat.OffsetsOf(ctx, tps)
	if err != nil {
		a.log.Debug("background offsets read failed", "partitions", len(tps), "err", err)
	}
	for _, id := range a.tail.endRefresh(tps, got, readAt, err == nil) {
		a.topicGone(id)
	}
}

// queueRefresh queues tp for the log start refresher, unless it is queued
// or being read already. It never waits.
func (t *tailIndex) queueRefresh(tp catalog.TopicPartition) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.partLocked(tp)
	if p.refreshing {
		return
	}
	p.refreshing = true
	t.mu.due = append(t.mu.due, tp)
	if len(t.mu.due) == 1 {
		select {
		case t.dueCh <- struct{}{}:
		default:
		}
	}
}

// takeDue removes up to n queued partitions and returns them, and whether
// others remain queued.
func (t *tailIndex) takeDue(n int) ([]catalog.TopicPartition, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	due := t.mu.due
	if len(due) <= n {
		t.mu.due = nil
		return due, false
	}
	tps := append([]catalog.TopicPartition(nil), due[:n]...)
	t.mu.due = due[:copy(due, due[n:])]
	return tps, true
}

// endRefresh ends the refresh of tps and, when ok (the read, started at
// readAt, succeeded), stores the offsets read, got. It returns the topics
// of the partitions got lacks: topics the catalog no longer has.
func (t *tailIndex) endRefresh(tps []catalog.TopicPartition, got map[catalog.TopicPartition]catalog.PartitionOffsets, readAt time.Time, ok bool) (gone []catalog.TopicID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tp := range tps {
		o, read := got[tp]
		switch {
		case read:
			p := t.partLocked(tp)
			t.storeOffsetsLocked(p, o, readAt)
			p.refreshing = false
		case ok:
			if len(gone) == 0 || gone[len(gone)-1] != tp.TopicID {
				gone = append(gone, tp.TopicID) // topicGone twice does no harm
			}
			fallthrough
		default:
			if p, found := t.mu.parts[tp]; found {
				p.refreshing = false
			}
		}
	}
	return gone
}
