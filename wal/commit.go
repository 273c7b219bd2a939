package wal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/floebroker/floe/catalog"
)

// maxCommitGroup bounds the buffers one CommitGroup call takes. A group
// is one catalog transaction: the bound caps how long it holds its
// partitions and how much is committed again one by one if it fails, and
// past a few buffers each partition's per-commit work is already shared
// out. (Only a MaxInflight above it lets more buffers queue.)
const maxCommitGroup = 8

// committer commits buffers in the order they arrive on q (seal order).
// With a GroupSink, the buffers behind the first one whose uploads have
// already succeeded are committed with it in one call.
func (l *Log) committer(ctx context.Context, q <-chan *buffer) {
	gs, _ := l.sink.(GroupSink)
	// next was taken from q while gathering a group but was not ready
	// yet: it is the next buffer to commit.
	var next *buffer
	for {
		b := next
		next = nil
		if b == nil {
			select {
			case b = <-q:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-b.uploaded:
		case <-ctx.Done():
			return
		}
		if ctx.Err() != nil {
			return // shutting down; Run settles b (and next)
		}
		group := []*buffer{b}
		if gs != nil && b.uploadErr == nil {
			group, next = gatherUploaded(group, q)
		}
		if !l.commit(ctx, gs, group) {
			return
		}
	}
}

// gatherUploaded appends to group, in seal order and up to
// maxCommitGroup, the buffers waiting on q whose uploads have already
// succeeded. It never waits for an upload: the first buffer taken that is
// not ready ends the group and is returned as next.
func gatherUploaded(group []*buffer, q <-chan *buffer) (_ []*buffer, next *buffer) {
	for len(group) < maxCommitGroup {
		select {
		case b := <-q:
			select {
			case <-b.uploaded:
				if b.uploadErr != nil {
					return group, b
				}
				group = append(group, b)
			default:
				return group, b
			}
		default:
			return group, nil
		}
	}
	return group, nil
}

// commit commits group (consecutive buffers in seal order; a group of
// more than one was uploaded successfully and gs is not nil) and settles
// its buffers in order. It reports false when the committer must stop
// (shutting down or failed); Run settles what is left.
func (l *Log) commit(ctx context.Context, gs GroupSink, group []*buffer) bool {
	start := time.Now()
	for _, b := range group {
		if b.uploadErr == nil {
			// Commits run one call at a time in seal order: how long an
			// uploaded buffer waits for those ahead of it shows whether
			// commits queue (each is one catalog transaction).
			l.m.commitWait.Observe(max(start.Sub(b.uploadedAt), 0).Seconds())
		}
	}
	var grouped [][]catalog.BatchResult
	if len(group) > 1 {
		grouped = l.commitGroup(ctx, gs, group)
		if grouped == nil && ctx.Err() != nil {
			// Shutting down: no retry, as for a single buffer (see
			// retry). Run settles the group.
			return false
		}
	}
	for i, b := range group {
		err := b.uploadErr
		var results []catalog.BatchResult
		switch {
		case err != nil:
		case grouped != nil:
			results = grouped[i]
		default:
			// A single buffer, or a group whose call failed: the Sink
			// returns the results of any buffer the group call did commit.
			results, err = l.commitOne(ctx, b)
		}
		if err == nil {
			// From the first call that tried to commit b.
			l.m.commitSeconds.Observe(time.Since(start).Seconds())
		}
		if !l.settle(ctx, b, results, err) {
			return false
		}
	}
	return true
}

// commitGroup commits group with one CommitGroup call and returns each
// buffer's results, or nil if the call failed.
func (l *Log) commitGroup(ctx context.Context, gs GroupSink, group []*buffer) [][]catalog.BatchResult {
	bs := make([]*Sealed, len(group))
	for i, b := range group {
		bs[i] = &b.sealed
	}
	var results [][]catalog.BatchResult
	var err error
	l.sinkCommitCall(func() { results, err = gs.CommitGroup(ctx, bs) })
	if err == nil && len(results) != len(group) {
		err = fmt.Errorf("wal: sink returned results for %d buffers of %d", len(results), len(group))
	}
	for i := 0; err == nil && i < len(group); i++ {
		if n, want := len(results[i]), len(group[i].sealed.Entries); n != want {
			err = fmt.Errorf("wal: sink returned %d results for %d entries of buffer %s", n, want, group[i].sealed.ID)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		// Retried buffer by buffer: counted and logged as a retry.
		l.m.retries.WithLabelValues("commit").Inc()
		l.log.Warn("wal: group commit failed; committing its buffers one by one", "buffers", len(group), "first", group[0].sealed.ID, "err", err)
		return nil
	}
	l.m.commitGroup.Observe(float64(len(group)))
	return results
}

// commitOne commits b with Commit, retrying as the Sink's errors say.
func (l *Log) commitOne(ctx context.Context, b *buffer) (results []catalog.BatchResult, err error) {
	err = l.retry(ctx, "commit", b, func() error {
		var cerr error
		l.sinkCommitCall(func() { results, cerr = l.sink.Commit(ctx, &b.sealed) })
		if cerr == nil && len(results) != len(b.sealed.Entries) {
			return Permanent(fmt.Errorf("wal: sink returned %d results for %d entries", len(results), len(b.sealed.Entries)))
		}
		return cerr
	})
	if err == nil {
		l.m.commitGroup.Observe(1)
	}
	return results, err
}

// sinkCommitCall runs call, one Sink commit call, with Committing
// reporting it.
func (l *Log) sinkCommitCall(call func()) {
	done := make(chan struct{})
	l.committing.Store(&done)
	call()
	l.committing.Store(nil)
	close(done)
}

// settle resolves b's acks with the outcome of its commit, deletes its
// file and takes it out of the pipeline. It reports false, leaving b
// alone, when the committer must stop instead.
func (l *Log) settle(ctx context.Context, b *buffer, results []catalog.BatchResult, err error) bool {
	if err != nil && (ctx.Err() != nil || !IsPermanent(err)) {
		// Shutting down or failed (everything else is retried or
		// permanent); Run settles b. A commit that returned results
		// is settled with them even now: its offsets are taken, and
		// failing its acks would have the records sent again.
		return false
	}
	if err != nil {
		l.log.Error("wal: dropping buffer after permanent sink error", "buffer", b.sealed.ID, "entries", len(b.sealed.Entries), "err", err)
		err = fmt.Errorf("wal: flush buffer %s: %w", b.sealed.ID, err)
		l.m.dropped.Inc()
	} else {
		l.m.flushes.Inc()
		if !b.sealedAt.IsZero() {
			l.m.sealToCommit.Observe(time.Since(b.sealedAt).Seconds())
		}
	}
	b.resolve(results, err)
	// The removal becomes durable with the next directory fsync; if a
	// crash resurrects the file, replay re-commits it idempotently.
	if rerr := l.fs.Remove(b.walPath()); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		l.log.Warn("wal: remove committed buffer", "file", b.walPath(), "err", rerr)
	}
	l.release(b)
	return true
}

// Committing returns a channel that is closed when the Sink's Commit (or
// CommitGroup) call now in progress returns, or nil when none is. A
// catalog commit notification seen while it is non-nil may announce this
// log's own commit, whose Sink hooks have not run yet: the agent's commit
// follower waits for it rather than read the commit back from the catalog.
func (l *Log) Committing() <-chan struct{} {
	if p := l.committing.Load(); p != nil {
		return *p
	}
	return nil
}

// release takes the committed (or dropped) first sealed buffer out of the
// pipeline.
func (l *Log) release(b *buffer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.mu.sealed) == 0 || l.mu.sealed[0] != b {
		panic("wal: release out of seal order")
	}
	l.mu.sealed = l.mu.sealed[1:]
	l.mu.started--
	l.mu.buffered -= b.sealed.Bytes
	l.m.buffered.Set(float64(l.mu.buffered))
	l.wakeSpaceLocked()
	l.wake(l.progress)
}
