package groups

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/floebroker/floe/catalog"
)

// hwCatalog adds fixed partition offsets to the fake catalog.
type hwCatalog struct {
	*fakeCatalog
	offsets map[catalog.TopicPartition]catalog.PartitionOffsets
}

func (h *hwCatalog) Offsets(_ context.Context, tp catalog.TopicPartition) (catalog.PartitionOffsets, error) {
	return h.offsets[tp], nil
}

func TestLagIsCommittedToHighWatermark(t *testing.T) {
	ctx := context.Background()
	fake := newFakeCatalog()
	top := fake.addTopic("lagged", 3)
	cat := &hwCatalog{fakeCatalog: fake, offsets: map[catalog.TopicPartition]catalog.PartitionOffsets{
		{TopicID: top.ID, Partition: 0}: {LogStart: 0, HighWatermark: 10},
		{TopicID: top.ID, Partition: 1}: {LogStart: 0, HighWatermark: 5},
		// Committed below the log start: lag counts from the log start.
		{TopicID: top.ID, Partition: 2}: {LogStart: 8, HighWatermark: 9},
	}}
	if refused, err := cat.CommitOffsets(ctx, "g", []catalog.GroupOffset{
		{Topic: "lagged", Partition: 0, Offset: 4},
		{Topic: "lagged", Partition: 1, Offset: 5},
		{Topic: "lagged", Partition: 2, Offset: 3},
	}); err != nil || len(refused) != 0 {
		t.Fatal(refused, err)
	}
	reg := prometheus.NewRegistry()
	c := New(DefaultConfig(), cat, &fakePlacement{}, nil, reg)
	if g, code := c.lookup("g", true, kindClassic); g == nil {
		t.Fatalf("lookup: code %d", code)
	}
	c.updateLag(ctx)
	if got := testutil.ToFloat64(c.m.lag.WithLabelValues("g", "lagged")); got != 6+0+1 {
		t.Fatalf("lag %v, want 7", got)
	}
	// A group no longer held loses its series at the next pass.
	c.mu.Lock()
	delete(c.mu.groups, "g")
	c.mu.Unlock()
	c.updateLag(ctx)
	if n := testutil.CollectAndCount(c.m.lag); n != 0 {
		t.Fatalf("%d lag series after the group left", n)
	}
}
