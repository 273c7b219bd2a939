package agent

import (
	"context"
	"math"
	"time"

	"github.com/floebroker/floe/catalog"
)

// The commit follower keeps the tail index current with the whole fleet's
// commits. This agent's own commits reach the index through OnCommitted
// (tailIndex.addOwn) as they happen, with every row; the follower steps over
// them by id (tailIndex.skipOwn) and reads from the catalog only the commits
// of other agents (and of compaction), and the rare own commit OnCommitted
// had no rows for. At 2,000 partitions each own commit is thousands of rows:
// reading them back cost the agent and PostgreSQL CPU per batch for
// nothing.
//
// The catalog announces a commit (catalog.Watch) before CommitSegment
// returns to the flush that made it, so a notification often arrives
// before OnCommitted has run. While the WAL's commit is in flight
// (wal.Log.Committing) the follower waits for it, at most ownCommitWait,
// before it decides what it has to read: a commit of another agent
// announced meanwhile is read at most that much later.

// followBatch is how many rows one CommitsSince call returns.
const followBatch = 1000

// followBackstop is how often the follower reads the catalog without a
// notification: notifications can be lost (a PostgreSQL LISTEN connection
// that dropped), and one cheap read per second per agent is not polling
// by the fetches.
const followBackstop = time.Second

// ownCommitWait bounds how long the follower waits for this agent's
// in-flight commit before reading the catalog (see above).
const ownCommitWait = 10 * time.Millisecond

// commitsSource is the part of the catalog the follower reads.
type commitsSource interface {
	CommitsSince(ctx context.Context, after int64, limit int) ([]catalog.BatchRow, int64, error)
}

// followCommits applies every catalog commit after the agent started to
// the tail index, woken by catalog.Watch, until ctx ends.
func (a *Agent) followCommits(ctx context.Context) {
	after, ok := a.followStart(ctx)
	if !ok {
		return
	}
	a.tail.markStarted()
	var watch <-chan int64
	// target is the newest commit id announced; force makes the next
	// catch-up read the catalog even if target is reached (at start, on
	// the backstop, after a notification gap).
	target, force := after, true
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		if watch == nil {
			w, err := a.cat.Watch(ctx)
			if err != nil {
				a.m.followerErrors.Inc()
				a.log.Warn("watching catalog commits failed", "err", err)
				sleepCtx(ctx, backoff)
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			watch, force = w, true
		}
		var err error
		after, err = a.catchUp(ctx, a.cat, after, target, force)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.m.followerErrors.Inc()
			a.log.Warn("following catalog commits failed", "err", err)
			sleepCtx(ctx, backoff)
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		a.m.followerCommit.Set(float64(after))
		backoff = 50 * time.Millisecond
		force = false
		timer := time.NewTimer(followBackstop)
		select {
		case <-ctx.Done():
		case id, open := <-watch:
			if !open {
				watch = nil
			}
			target = max(target, id)
		case <-timer.C:
			force = true
		}
		timer.Stop()
	}
}

// followStart finds the commit id to follow from: the latest at start. An
// agent does not need history; older rows come from the catalog on demand.
func (a *Agent) followStart(ctx context.Context) (int64, bool) {
	backoff := 50 * time.Millisecond
	for {
		_, latest, err := a.cat.CommitsSince(ctx, math.MaxInt64, 1)
		if err == nil {
			if latest == math.MaxInt64 || latest < 0 {
				latest = 0
			}
			a.m.followerCommit.Set(float64(latest))
			return latest, true
		}
		if ctx.Err() != nil {
			return 0, false
		}
		a.m.followerErrors.Inc()
		a.log.Warn("finding the latest catalog commit failed", "err", err)
		sleepCtx(ctx, backoff)
		backoff = min(2*backoff, 5*time.Second)
	}
}

// catchUp applies every commit after `after` and returns the last applied.
// It first steps over this agent's own commits; if that reaches target
// (the newest announced commit) and force is not set, the catalog is not
// read at all. Otherwise it reads: CommitsSince returns whole commits only,
// and its `latest` is the catalog's newest commit id unless it cut the
// answer short (then it is the last commit returned), so the position
// moves to latest after every answer and the loop ends once an answer is
// empty. An answer without rows
// but with a newer latest stepped over commits that stored none: the
// position moves to latest and the reading goes on, because PostgreSQL
// pages by commits, and a run of rowless commits longer than a page is
// answered by an empty page — a position that stayed put would read that
// page forever.
func (a *Agent) catchUp(ctx context.Context, src commitsSource, after, target int64, force bool) (int64, error) {
	after = a.tail.skipOwn(after)
	if after < target || force {
		if a.waitOwnCommit(ctx) {
			after = a.tail.skipOwn(after)
		}
	}
	if after >= target && !force {
		return after, nil
	}
	for {
		rows, latest, err := src.CommitsSince(ctx, after, followBatch)
		if err != nil {
			return after, err
		}
		a.tail.add(rows)
		for i := range rows {
			after = max(after, rows[i].CommitID)
		}
		if len(rows) == 0 {
			if latest <= after {
				return a.tail.skipOwn(after), nil
			}
			after = a.tail.skipOwn(latest)
			continue
		}
		// Every commit up to latest was returned, so the position moves
		// there even past commits that stored no rows — and the reading
		// goes on: an answer cut short on such a commit has a latest
		// beyond its last row, and stopping there would leave announced
		// commits unread until the next notification. (Own commits may
		// follow the ones just read.)
		after = a.tail.skipOwn(max(after, latest))
	}
}

// waitOwnCommit waits, at most ownCommitWait, for the WAL's in-flight
// commit (if any) to return, so its rows reach the tail index through
// OnCommitted rather than a catalog read. It reports whether it waited.
func (a *Agent) waitOwnCommit(ctx context.Context) bool {
	if a.wal == nil {
		return false
	}
	done := a.wal.Committing()
	if done == nil {
		return false
	}
	t := time.NewTimer(ownCommitWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
