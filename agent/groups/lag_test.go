package groups

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/floebroker/floe/catalog"
)

// hwCatalog adds fixed partition offsets to the fake catalog.
type hwCatalog struct {
	*fakeCatalog
	offsets map[catalog.TopicPartition]catalog.PartitionOffsets
	reads   int // OffsetsOf calls
	asked   int // partitions OffsetsOf was asked for, in all
}

func (h *hwCatalog) Offsets(_ context.Context, tp catalog.TopicPartition) (catalog.PartitionOffsets, error) {
	return h.offsets[tp], nil
}

func (h *hwCatalog) OffsetsOf(_ context.Context, tps []catalog.TopicPartition) (map[catalog.TopicPartition]catalog.PartitionOffsets, error) {
	h.reads++
	h.asked += len(tps)
	out := make(map[catalog.TopicPartition]catalog.PartitionOffsets)
	for _, tp := range tps {
		out[tp] = h.offsets[tp]
	}
	return out, nil
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
	if cat.reads != 1 {
		t.Fatalf("%d high watermark reads, want 1 for the pass", cat.reads)
	}
	// A group placed on another agent loses its series at the next pass.
	c.place.(*fakePlacement).move("g", 2)
	c.updateLag(ctx)
	if n := testutil.CollectAndCount(c.m.lag); n != 0 {
		t.Fatalf("%d lag series after the group moved", n)
	}
}

// TestLagReadsEachPartitionOnce: partitions many groups commit to are
// read once per pass, not once per group.
func TestLagReadsEachPartitionOnce(t *testing.T) {
	ctx := context.Background()
	fake := newFakeCatalog()
	top := fake.addTopic("shared", 3)
	cat := &hwCatalog{fakeCatalog: fake, offsets: map[catalog.TopicPartition]catalog.PartitionOffsets{}}
	for p := range int32(3) {
		cat.offsets[catalog.TopicPartition{TopicID: top.ID, Partition: p}] = catalog.PartitionOffsets{HighWatermark: 10}
	}
	c := New(DefaultConfig(), cat, &fakePlacement{}, nil, prometheus.NewRegistry())
	for _, g := range []string{"g1", "g2", "g3"} {
		if refused, err := cat.CommitOffsets(ctx, g, []catalog.GroupOffset{
			{Topic: "shared", Partition: 0, Offset: 1}, {Topic: "shared", Partition: 1, Offset: 2}, {Topic: "shared", Partition: 2, Offset: 3},
		}); err != nil || len(refused) != 0 {
			t.Fatal(refused, err)
		}
		if grp, code := c.lookup(g, true, kindClassic); grp == nil {
			t.Fatalf("lookup %s: code %d", g, code)
		}
	}
	c.updateLag(ctx)
	if got := testutil.ToFloat64(c.m.lag.WithLabelValues("g2", "shared")); got != 9+8+7 {
		t.Fatalf("lag of g2 %v, want 24", got)
	}
	if cat.asked != 3 {
		t.Fatalf("high watermarks of %d partitions read for 3 partitions committed by 3 groups, want 3", cat.asked)
	}
}

// lagCatalog is a catalog with topic "t" of one partition at high
// watermark 10.
func lagCatalog() (*hwCatalog, *Coordinator) {
	fake := newFakeCatalog()
	top := fake.addTopic("t", 1)
	cat := &hwCatalog{fakeCatalog: fake, offsets: map[catalog.TopicPartition]catalog.PartitionOffsets{
		{TopicID: top.ID, Partition: 0}: {LogStart: 0, HighWatermark: 10},
	}}
	return cat, New(DefaultConfig(), cat, &fakePlacement{}, nil, prometheus.NewRegistry())
}

func commitAt(t *testing.T, cat catalog.Catalog, group string, offset int64) {
	t.Helper()
	if refused, err := cat.CommitOffsets(context.Background(), group, []catalog.GroupOffset{{Topic: "t", Partition: 0, Offset: offset}}); err != nil || len(refused) != 0 {
		t.Fatal(refused, err)
	}
}

// A group with committed offsets and no members has lag exported by a
// coordinator that has just started, though no member asked for the group
// (it is not in memory): the lag alert is for when consumers are dead.
func TestLagOfMemberlessGroupAfterStart(t *testing.T) {
	cat, c := lagCatalog()
	commitAt(t, cat, "idle", 8)
	c.updateLag(context.Background())
	if n := c.numGroups(); n != 0 {
		t.Fatalf("%d groups in memory", n)
	}
	if got := testutil.ToFloat64(c.m.lag.WithLabelValues("idle", "t")); got != 2 {
		t.Fatalf("lag %v, want 2", got)
	}
}

// A group id of any length is exported as a bounded label, distinct from
// another sharing its prefix.
func TestLagLabelBounded(t *testing.T) {
	cat, c := lagCatalog()
	long := strings.Repeat("é", 15_000) // 30,000 bytes, cut mid-character at 200
	commitAt(t, cat, long, 1)
	commitAt(t, cat, long+"x", 2)
	c.updateLag(context.Background())
	labels := map[string]float64{}
	for _, m := range collectLag(t, c) {
		labels[m.group] = m.value
	}
	if len(labels) != 2 {
		t.Fatalf("labels: %d, want 2", len(labels))
	}
	for l, v := range labels {
		if len(l) > maxLagLabelBytes || !utf8.ValidString(l) || !strings.HasPrefix(l, long[:lagLabelPrefixBytes-1]) || (v != 9 && v != 8) {
			t.Fatalf("label of %d bytes (valid UTF-8 %v) lag %v: %.40q…", len(l), utf8.ValidString(l), v, l)
		}
	}
}

// The series are capped, keeping those with the most lag: groups named to
// sort first cannot push out a lagging one.
func TestLagSeriesCapped(t *testing.T) {
	cat, c := lagCatalog()
	for i := range maxLagSeries + 50 {
		commitAt(t, cat, fmt.Sprintf("0junk%05d", i), 10)
	}
	commitAt(t, cat, "zreal", 3)
	c.updateLag(context.Background())
	if n := testutil.CollectAndCount(c.m.lag); n != maxLagSeries {
		t.Fatalf("%d series, want %d", n, maxLagSeries)
	}
	if got := testutil.ToFloat64(c.m.lag.WithLabelValues("zreal", "t")); got != 7 {
		t.Fatalf("zreal lag %v, want 7", got)
	}
}

type lagSample struct {
	group string
	value float64
}

func collectLag(t *testing.T, c *Coordinator) []lagSample {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	go func() { c.m.lag.Collect(ch); close(ch) }()
	var out []lagSample
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		for _, lp := range pb.GetLabel() {
			if lp.GetName() == "group" {
				out = append(out, lagSample{lp.GetValue(), pb.GetGauge().GetValue()})
			}
		}
	}
	return out
}
