package groups

import (
	"context"
	"time"
)

// Offset retention, Kafka's offsets.retention.minutes (KIP-211): the
// committed offsets of a group without members expire OffsetsRetention
// after its last commit, so the catalog does not keep every group ever
// used (console consumers with generated ids, renamed applications)
// forever. A group with members keeps its offsets however old: its
// coordinator stores its state while it has members, and the catalog
// expires only groups without stored state. (A group whose state is too
// large to store is the exception: it keeps its offsets by committing
// within the retention.)
//
// Every agent checks, whichever groups it coordinates: the check is one
// catalog statement over all groups, and checks that overlap delete
// nothing twice. Kafka's coordinator checks its own partitions of
// __consumer_offsets; here there is nothing to divide.

// maxRetentionCheck is the longest gap between checks
// (offsets.retention.check.interval.ms).
const maxRetentionCheck = 10 * time.Minute

func (c *Coordinator) retentionLoop(ctx context.Context) {
	if c.cat == nil {
		return
	}
	tick := time.NewTicker(max(min(c.cfg.OffsetsRetention/2, maxRetentionCheck), time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			c.expireOffsets(ctx)
		}
	}
}

// expireOffsets deletes the offsets of groups without members committed
// last before the retention. A failure waits for the next check.
func (c *Coordinator) expireOffsets(ctx context.Context) {
	before := c.cfg.Now().Add(-c.cfg.OffsetsRetention)
	n, err := c.cat.ExpireOffsets(ctx, before)
	switch {
	case err != nil && ctx.Err() == nil:
		c.log.Warn("groups: expiring old offsets failed; trying again at the next check", "err", err)
	case n > 0:
		c.m.expired.Add(float64(n))
		c.log.Info("groups: expired the offsets of groups without members", "groups", n, "last_commit_before", before)
	}
}
