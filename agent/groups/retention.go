package groups

import (
	"context"
	"time"
)

// Offset retention, Kafka's offsets.retention.minutes (KIP-211): the
// committed offsets of a group without members expire OffsetsRetention
// after its last commit or after its last member left, whichever is later
// (the catalog notes when the coordinator deletes the group's state), so
// the catalog does not keep every group ever used (console consumers with
// generated ids, renamed applications) forever, while a group whose
// members commit nothing for longer than that (librdkafka and franz-go
// commit only offsets that moved) keeps them through a restart. A group
// with members keeps its offsets however old: its coordinator stores its
// state while it has members, and the catalog expires only groups without
// stored state. (A group whose state is too large to store is the
// exception: it keeps its offsets by committing within the retention.)
//
// The check reads every group's offsets in the catalog, whichever agent
// coordinates them (Kafka's coordinator checks its own partitions of
// __consumer_offsets; here there is nothing to divide), so one agent at a
// time runs it: the holder of the offsetsExpiryLease catalog lease, which
// renews it at each check. If it stops, another agent takes the lease over
// two check intervals later. (Checks that overlap all the same delete
// nothing twice.)

// maxRetentionCheck is the longest gap between checks
// (offsets.retention.check.interval.ms).
const maxRetentionCheck = 10 * time.Minute

// offsetsExpiryLease names the catalog lease of the offsets expiry.
const offsetsExpiryLease = "groups/offsets-expiry"

// retentionCheck is the gap between checks.
func (c *Coordinator) retentionCheck() time.Duration {
	return max(min(c.cfg.OffsetsRetention/2, maxRetentionCheck), time.Second)
}

func (c *Coordinator) retentionLoop(ctx context.Context) {
	if c.cat == nil {
		return
	}
	tick := time.NewTicker(c.retentionCheck())
	defer tick.Stop()
	defer c.releaseExpiry()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			c.adoptGroups(ctx)
			c.expireOffsets(ctx)
		}
	}
}

// expireOffsets deletes the offsets of groups without members committed
// last before the retention. A failure waits for the next check.
func (c *Coordinator) expireOffsets(ctx context.Context) {
	held, err := c.cat.AcquireLease(ctx, offsetsExpiryLease, c.holder, 2*c.retentionCheck())
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("groups: taking the offsets expiry lease failed; trying again at the next check", "err", err)
		}
		return
	}
	c.expiryHeld.Store(held)
	if !held {
		return // another agent checks
	}
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

// releaseExpiry gives the offsets expiry lease back when this Coordinator
// stops holding it, so that the agent that restarts in its place (with
// another holder name) or another agent checks at its next check rather
// than after the lease lapses: an agent restarted more often than the
// lease lasts would otherwise never check.
func (c *Coordinator) releaseExpiry() {
	if !c.expiryHeld.Swap(false) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.cat.ReleaseLease(ctx, offsetsExpiryLease, c.holder); err != nil {
		c.log.Warn("groups: releasing the offsets expiry lease failed; another agent takes it once it lapses", "err", err)
	}
}

// maxAdoptLoads bounds the catalog loads of one adoption pass.
const maxAdoptLoads = 10_000

// adoptGroups loads the groups placed on this agent that it does not hold
// and has not seen absent from the catalog: stored state whose members
// have not asked for it since the group moved here (their coordinator
// died with the whole application, say). Loaded, their members get a
// fresh session; those that never come back expire, the group empties and
// its state is deleted, so that its offsets expire in turn. A group is
// otherwise loaded only by a request for it, and such state would stay in
// the catalog, and keep its offsets, forever. Kafka's coordinator loads
// every group of its __consumer_offsets partitions when it takes them
// over, for the same reason. Groups are found by their committed offsets
// or their stored state (ListGroups), so that a group whose members never
// committed is adopted too.
func (c *Coordinator) adoptGroups(ctx context.Context) {
	ids, err := c.cat.ListGroups(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("groups: listing groups to adopt failed; trying again at the next check", "err", err)
		}
		return
	}
	self := c.place.Self()
	loads := 0
	for _, id := range ids {
		if ctx.Err() != nil || loads >= maxAdoptLoads {
			return
		}
		if node, _, _, err := c.place.Coordinator(ctx, id); err != nil || node != self || c.known(id) {
			continue
		}
		loads++
		c.gate(ctx, id)
	}
}
