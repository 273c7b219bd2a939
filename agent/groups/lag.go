package groups

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/floebroker/floe/catalog"
)

// lagInterval is how often the coordinator recomputes consumer lag. Lag is
// for dashboards and alerts, so a coarse interval keeps its catalog reads
// (one group list, one offsets read per group and one high watermark read
// for all their partitions) small.
const lagInterval = 30 * time.Second

// maxLagGroups bounds the groups whose committed offsets one pass reads.
const maxLagGroups = 10_000

// maxLagSeries bounds the series of floe_groups_lag_records: when the
// groups' (group, topic) pairs are more, those with the most lag are kept,
// so that groups committing at the high watermark, junk or not, cannot
// push out the groups an alert is about.
const maxLagSeries = 2000

// lagReadChunk caps the partitions of one high watermark read of a lag
// pass, as the agent's log start refresher caps its reads.
const lagReadChunk = 2000

// maxLagLabelBytes bounds the group label: a group id can be as long as a
// request allows (Kafka sets no limit), and each byte is exported on every
// scrape. A longer id is exported as its first lagLabelPrefixBytes bytes,
// "…" and 16 hex digits of its SHA-256, distinct and recognizable.
const (
	maxLagLabelBytes    = 255
	lagLabelPrefixBytes = 200
)

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
// coordinator coordinates: per group and topic, the records between the
// committed offsets and the partitions' high watermarks. The groups are
// those the catalog lists that placement puts here, not only those held in
// memory: a group is loaded only when a member asks for it, so after a
// restart or a coordinator move a group whose consumers are dead (the
// lag alert's case) would have no series. Groups without committed
// offsets have no series. Errors skip a group, or the pass: lag is
// best-effort, never a reason to fail the coordinator.
func (c *Coordinator) updateLag(ctx context.Context) {
	if c.m.lag == nil {
		return
	}
	listed, err := c.cat.ListGroups(ctx)
	if err != nil {
		return
	}
	ids := c.groupIDs()
	ids = append(ids, listed...)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	self := c.place.Self()
	type committed struct {
		group, topic string
		tp           catalog.TopicPartition
		offset       int64
	}
	var (
		comm  []committed
		tps   []catalog.TopicPartition
		reads int
	)
	for _, id := range ids {
		if reads >= maxLagGroups || ctx.Err() != nil {
			break
		}
		if node, _, _, err := c.place.Coordinator(ctx, id); err != nil || node != self {
			continue
		}
		reads++
		offs, err := c.cat.FetchOffsets(ctx, id, nil)
		if err != nil {
			continue
		}
		for _, o := range offs {
			t, err := c.topics.topic(ctx, o.Topic, false)
			if err != nil || o.Partition < 0 || o.Partition >= t.Partitions {
				continue
			}
			tp := catalog.TopicPartition{TopicID: t.ID, Partition: o.Partition}
			comm = append(comm, committed{id, o.Topic, tp, o.Offset})
			tps = append(tps, tp)
		}
	}
	if ctx.Err() != nil {
		return
	}
	// One read of every partition's high watermark, however many groups
	// commit to it (tps holds a partition once per group), in chunks that
	// keep each statement short.
	slices.SortFunc(tps, func(a, b catalog.TopicPartition) int {
		if c := bytes.Compare(a.TopicID[:], b.TopicID[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.Partition, b.Partition)
	})
	tps = slices.Compact(tps)
	hw := make(map[catalog.TopicPartition]catalog.PartitionOffsets, len(tps))
	for chunk := range slices.Chunk(tps, lagReadChunk) {
		got, err := c.cat.OffsetsOf(ctx, chunk)
		if err != nil {
			return
		}
		maps.Copy(hw, got)
	}
	type key struct{ group, topic string }
	lag := make(map[key]float64)
	for _, o := range comm {
		po, ok := hw[o.tp]
		if !ok {
			continue // deleted meanwhile
		}
		lag[key{o.group, o.topic}] += float64(max(po.HighWatermark-max(o.offset, po.LogStart), 0))
	}
	keys := make([]key, 0, len(lag))
	for k := range lag {
		keys = append(keys, k)
	}
	if len(keys) > maxLagSeries {
		slices.SortFunc(keys, func(a, b key) int {
			return cmp.Or(cmp.Compare(lag[b], lag[a]), cmp.Compare(a.group, b.group), cmp.Compare(a.topic, b.topic))
		})
		keys = keys[:maxLagSeries]
	}
	c.m.lag.Reset()
	for _, k := range keys {
		c.m.lag.WithLabelValues(lagLabel(k.group), k.topic).Set(lag[k])
	}
}

// lagLabel is group id's group label, bounded at maxLagLabelBytes.
func lagLabel(id string) string {
	if len(id) <= maxLagLabelBytes {
		return id
	}
	n := lagLabelPrefixBytes
	for n > 0 && !utf8.RuneStart(id[n]) {
		n-- // cut at a character boundary: label values must be UTF-8
	}
	sum := sha256.Sum256([]byte(id))
	return id[:n] + "…" + hex.EncodeToString(sum[:8])
}
