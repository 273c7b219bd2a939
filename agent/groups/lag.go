package groups

import (
	"context"
	"sort"
	"time"

	"github.com/floebroker/floe/catalog"
)

// lagInterval is how often the coordinator recomputes consumer lag. Lag is
// for dashboards and alerts, so a coarse interval keeps its catalog reads
// (one offsets read per group and one per committed partition) small.
const lagInterval = 30 * time.Second

// maxLagGroups bounds the groups whose lag one pass computes, and so the
// label sets of floe_groups_lag_records.
const maxLagGroups = 1000

// lagLoop runs updateLag every lagInterval until ctx ends.
func (c *Coordinator) lagLoop(ctx context.Context) {
	tick := time.NewTicker(lagInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			c.updateLag(ctx)
		}
	}
}

// updateLag recomputes floe_groups_lag_records for the groups this
// coordinator holds: per group and topic, the records between the committed
// offsets and the partitions' high watermarks. Groups without committed
// offsets have no series. Errors skip a group for this pass: lag is
// best-effort, never a reason to fail the coordinator.
func (c *Coordinator) updateLag(ctx context.Context) {
	if c.m.lag == nil {
		return
	}
	c.mu.Lock()
	ids := make([]string, 0, len(c.mu.groups))
	for id := range c.mu.groups {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	sort.Strings(ids)
	if len(ids) > maxLagGroups {
		ids = ids[:maxLagGroups]
	}
	type key struct{ group, topic string }
	lag := make(map[key]float64)
	for _, id := range ids {
		offs, err := c.cat.FetchOffsets(ctx, id, nil)
		if err != nil {
			continue
		}
		for _, o := range offs {
			t, err := c.topics.topic(ctx, o.Topic, false)
			if err != nil || o.Partition < 0 || o.Partition >= t.Partitions {
				continue
			}
			po, err := c.cat.Offsets(ctx, catalog.TopicPartition{TopicID: t.ID, Partition: o.Partition})
			if err != nil {
				continue
			}
			lag[key{id, o.Topic}] += float64(max(po.HighWatermark-max(o.Offset, po.LogStart), 0))
		}
		if ctx.Err() != nil {
			return
		}
	}
	c.m.lag.Reset()
	for k, v := range lag {
		c.m.lag.WithLabelValues(k.group, k.topic).Set(v)
	}
}
