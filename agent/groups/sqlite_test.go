package groups

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/sqlite"
)

func openSQLite(t testing.TB, path string) *sqlite.Catalog {
	t.Helper()
	cat, err := sqlite.Open(context.Background(), path, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	return cat
}

// openSQLiteClocked opens a new embedded catalog whose clock (it notes
// when a group's state is deleted on it) is the real one until useClock
// sets another: a coordinator's, as in production, where both read the
// agent's clock.
func openSQLiteClocked(t testing.TB) (cat *sqlite.Catalog, useClock func(func() time.Time)) {
	t.Helper()
	var clock atomic.Pointer[func() time.Time]
	cat, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "catalog.db"), catalog.Options{Now: func() time.Time {
		if now := clock.Load(); now != nil {
			return (*now)()
		}
		return time.Now()
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	return cat, func(now func() time.Time) { clock.Store(&now) }
}

// TestOffsetsOnSQLite runs the offset APIs on the embedded catalog, and
// checks offsets survive a coordinator restart.
func TestOffsetsOnSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	cat := openSQLite(t, path)
	if _, err := cat.CreateTopic(context.Background(), catalog.TopicSpec{Name: "t", Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	h := newHarnessOn(t, cat)
	ids, gen := h.stableGroup("g", 2)
	codes := commitCodes(h.do(commitReq("g", ids[1], gen, "t", map[int32]int64{0: 10, 3: 30})).(*kmsg.OffsetCommitResponse))
	errIs(t, "member commit", codes["t/0"], nil)
	codes = commitCodes(h.do(commitReq("simple", "", -1, "t", map[int32]int64{1: 5})).(*kmsg.OffsetCommitResponse))
	errIs(t, "simple commit", codes["t/1"], nil)
	codes = commitCodes(h.do(commitReq("simple", "", -1, "nope", map[int32]int64{0: 5})).(*kmsg.OffsetCommitResponse))
	errIs(t, "unknown topic", codes["nope/0"], kerr.UnknownTopicOrPartition)
	codes = commitCodes(h.do(commitReq("g", ids[1], gen-1, "t", map[int32]int64{0: 1})).(*kmsg.OffsetCommitResponse))
	errIs(t, "stale generation", codes["t/0"], kerr.IllegalGeneration)

	fetch := func(h *harness) *kmsg.OffsetFetchResponse {
		f := kmsg.NewPtrOffsetFetchRequest()
		f.Version = 9
		f.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g"}, {Group: "simple"}}
		return h.do(f).(*kmsg.OffsetFetchResponse)
	}
	check := func(r *kmsg.OffsetFetchResponse) {
		t.Helper()
		g, s := r.Groups[0], r.Groups[1]
		if len(g.Topics) != 1 || len(g.Topics[0].Partitions) != 2 || g.Topics[0].Partitions[1].Offset != 30 {
			t.Fatalf("group g: %+v", g.Topics)
		}
		if len(s.Topics) != 1 || s.Topics[0].Partitions[0].Offset != 5 {
			t.Fatalf("group simple: %+v", s.Topics)
		}
	}
	check(fetch(h))

	l := kmsg.NewPtrListGroupsRequest()
	l.Version = 5
	if groups := h.do(l).(*kmsg.ListGroupsResponse).Groups; len(groups) != 2 {
		t.Fatalf("listed %+v", groups)
	}

	// A new coordinator on the same file (an agent restart) has every
	// offset, and the group's members, generation and assignments: they
	// heartbeat on without a rebalance.
	cat2 := openSQLite(t, path)
	h2 := newHarnessOn(t, cat2)
	check(fetch(h2))
	hb := h2.do(hbReq("g", ids[1], gen)).(*kmsg.HeartbeatResponse)
	errIs(t, "heartbeat on the new coordinator", hb.ErrorCode, nil)

	dg := kmsg.NewPtrDeleteGroupsRequest()
	dg.Version, dg.Groups = 2, []string{"simple"}
	errIs(t, "delete", h2.do(dg).(*kmsg.DeleteGroupsResponse).Groups[0].ErrorCode, nil)
	if offs, _ := cat2.FetchOffsets(context.Background(), "simple", nil); len(offs) != 0 {
		t.Fatalf("deleted group kept %v", offs)
	}
}

// TestCommitAfterTopicDeletedElsewhere: a topic deleted by another agent
// (straight in the catalog, so this coordinator's topic cache still holds
// it) takes its offsets with it; a commit for it afterwards is refused
// per partition, the other partitions of the request are stored, and the
// topic created again under the name has no offsets.
func TestCommitAfterTopicDeletedElsewhere(t *testing.T) {
	ctx := context.Background()
	cat := openSQLite(t, filepath.Join(t.TempDir(), "catalog.db"))
	for _, name := range []string{"gone", "kept"} {
		if _, err := cat.CreateTopic(ctx, catalog.TopicSpec{Name: name, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
	}
	h := newHarnessOn(t, cat)
	codes := commitCodes(h.do(commitReq("g", "", -1, "gone", map[int32]int64{0: 5})).(*kmsg.OffsetCommitResponse))
	errIs(t, "commit before the delete", codes["gone/0"], nil)
	if _, err := cat.DeleteTopic(ctx, "gone", catalog.TopicID{}); err != nil {
		t.Fatal(err)
	}

	req := commitReq("g", "", -1, "gone", map[int32]int64{0: 7})
	req.Topics = append(req.Topics, commitReq("g", "", -1, "kept", map[int32]int64{0: 3}).Topics...)
	codes = commitCodes(h.do(req).(*kmsg.OffsetCommitResponse))
	errIs(t, "commit after the delete", codes["gone/0"], kerr.UnknownTopicOrPartition)
	errIs(t, "commit of another topic in the same request", codes["kept/0"], nil)

	if _, err := cat.CreateTopic(ctx, catalog.TopicSpec{Name: "gone", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	offs, err := cat.FetchOffsets(ctx, "g", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(offs) != 1 || offs[0].Topic != "kept" || offs[0].Offset != 3 {
		t.Fatalf("offsets after the re-create: %+v, want only kept/0 at 3", offs)
	}
}

// BenchmarkOffsetCommitSQLite is BenchmarkOffsetCommit on an SQLite file
// (synchronous=FULL: every commit is fsynced), the `floe dev` catalog.
func BenchmarkOffsetCommitSQLite(b *testing.B) {
	cat := openSQLite(b, filepath.Join(b.TempDir(), "catalog.db"))
	if _, err := cat.CreateTopic(context.Background(), catalog.TopicSpec{Name: "t", Partitions: 64}); err != nil {
		b.Fatal(err)
	}
	h := newHarnessOn(b, cat, func(c *Config) { c.Now = time.Now })
	benchCommits(b, h)
}

// TestOffsetsRetention: the offsets of a group without members expire
// OffsetsRetention after its last commit; a stable group's are kept
// however old, as Kafka keeps them (KIP-211).
func TestOffsetsRetention(t *testing.T) {
	cat := openSQLite(t, filepath.Join(t.TempDir(), "catalog.db"))
	if _, err := cat.CreateTopic(context.Background(), catalog.TopicSpec{Name: "t", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	h := newHarnessOn(t, cat, func(c *Config) { c.OffsetsRetention = 2 * time.Second })
	ids, gen := h.stableGroup("members", 1)
	codes := commitCodes(h.do(commitReq("members", ids[0], gen, "t", map[int32]int64{0: 10})).(*kmsg.OffsetCommitResponse))
	errIs(t, "member commit", codes["t/0"], nil)
	codes = commitCodes(h.do(commitReq("simple", "", -1, "t", map[int32]int64{1: 5})).(*kmsg.OffsetCommitResponse))
	errIs(t, "simple commit", codes["t/1"], nil)
	h.advance(3 * time.Second) // past the retention, within the member's session
	offsets := func(group string) int {
		got, err := cat.FetchOffsets(context.Background(), group, nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for offsets("simple") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the offsets of a group without members never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := offsets("members"); n != 1 {
		t.Errorf("a stable group keeps %d offsets past the retention, want 1", n)
	}
}

// TestOrphanGroupAdopted: a group whose coordinator stopped with its
// members, none of which comes back, is loaded by the agent it moved to
// without any request for it; its members' sessions expire, its state is
// deleted and its offsets expire in turn, the retention after that. Before,
// only a request loaded a group, and such state, and its offsets, stayed in
// the catalog forever.
func TestOrphanGroupAdopted(t *testing.T) {
	// The catalog notes when the group's state is deleted on its own
	// clock: the new coordinator's, once it runs.
	cat, useClock := openSQLiteClocked(t)
	if _, err := cat.CreateTopic(context.Background(), catalog.TopicSpec{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	old := newHarnessOn(t, cat)
	ids, gen := old.stableGroup("orphan", 2)
	codes := commitCodes(old.do(commitReq("orphan", ids[0], gen, "t", map[int32]int64{0: 10})).(*kmsg.OffsetCommitResponse))
	errIs(t, "member commit", codes["t/0"], nil)

	// The group's new coordinator, which no member of it ever asks.
	h := newHarnessOn(t, cat, func(c *Config) {
		c.OffsetsRetention = 2 * time.Second
		useClock(c.Now)
	})
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
		}
	}
	waitFor("the new coordinator adopts the group", func() bool { return h.c.numGroups() == 1 })
	h.advance(time.Minute) // past the members' sessions and the retention
	waitFor("the emptied group's state is deleted", func() bool {
		_, version, err := cat.LoadGroupState(context.Background(), "orphan")
		return err == nil && version == 0
	})
	time.Sleep(1500 * time.Millisecond) // a retention check or more (every second here)
	if got, err := cat.FetchOffsets(context.Background(), "orphan", nil); err != nil || len(got) != 1 {
		t.Fatalf("offsets of a group that has just lost its members: %+v, %v", got, err)
	}
	h.advance(3 * time.Second) // past the retention since it lost them
	waitFor("its offsets expire", func() bool {
		got, err := cat.FetchOffsets(context.Background(), "orphan", nil)
		return err == nil && len(got) == 0
	})
}

// TestEmptiedGroupKeepsOffsets: a group whose members committed last
// longer ago than the retention (a quiet topic: nothing new to commit)
// keeps its offsets while it has members, and, once its last member
// leaves, for the retention from then, as Kafka counts an empty group's
// retention from when it emptied (KIP-211). Before, its offsets expired at
// the first check after it emptied: consumers restarted after a pause, or
// even in a rolling restart that emptied the group for a moment, lost
// their position.
func TestEmptiedGroupKeepsOffsets(t *testing.T) {
	ctx := context.Background()
	cat, useClock := openSQLiteClocked(t)
	if _, err := cat.CreateTopic(ctx, catalog.TopicSpec{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	const retention = 2 * time.Second
	h := newHarnessOn(t, cat, func(c *Config) {
		c.OffsetsRetention = retention
		useClock(c.Now)
	})
	ids, gen := h.stableGroup("quiet", 1)
	codes := commitCodes(h.do(commitReq("quiet", ids[0], gen, "t", map[int32]int64{0: 10})).(*kmsg.OffsetCommitResponse))
	errIs(t, "member commit", codes["t/0"], nil)
	h.advance(retention + time.Second) // within the member's session
	errIs(t, "heartbeat", h.do(hbReq("quiet", ids[0], gen)).(*kmsg.HeartbeatResponse).ErrorCode, nil)

	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version, lr.Group = 5, "quiet"
	lr.Members = []kmsg.LeaveGroupRequestMember{{MemberID: ids[0]}}
	errIs(t, "leave", h.do(lr).(*kmsg.LeaveGroupResponse).ErrorCode, nil)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, version, err := cat.LoadGroupState(ctx, "quiet"); err == nil && version == 0 {
			break
		} else if time.Now().After(deadline) {
			t.Fatal("the emptied group's state was never deleted")
		}
	}
	offsets := func() int {
		got, err := cat.FetchOffsets(ctx, "quiet", nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}

	h.c.expireOffsets(ctx)
	if n := offsets(); n != 1 {
		t.Fatalf("the group keeps %d offsets at once after it emptied, want 1", n)
	}
	h.advance(retention - time.Millisecond)
	h.c.expireOffsets(ctx)
	if n := offsets(); n != 1 {
		t.Fatalf("the group keeps %d offsets within the retention after it emptied, want 1", n)
	}
	h.advance(2 * time.Millisecond)
	h.c.expireOffsets(ctx)
	if n := offsets(); n != 0 {
		t.Fatalf("the group keeps %d offsets past the retention after it emptied, want 0", n)
	}
}

// TestOrphanGroupWithoutOffsetsAdopted: TestOrphanGroupAdopted for a group
// that never committed an offset (its application keeps its positions
// elsewhere). Its stored state is found and adopted all the same, and,
// its members gone, deleted. Before, groups were found by their offsets
// only, and such state stayed in the catalog forever, its dead members
// loaded again whenever the group id was used again.
func TestOrphanGroupWithoutOffsetsAdopted(t *testing.T) {
	ctx := context.Background()
	cat := openSQLite(t, filepath.Join(t.TempDir(), "catalog.db"))
	old := newHarnessOn(t, cat)
	old.stableGroup("no-commits", 2)
	if _, version, err := cat.LoadGroupState(ctx, "no-commits"); err != nil || version == 0 {
		t.Fatalf("the group's state is not stored: version %d, %v", version, err)
	}

	h := newHarnessOn(t, cat, func(c *Config) { c.OffsetsRetention = 2 * time.Second })
	for deadline := time.Now().Add(10 * time.Second); h.c.numGroups() != 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the new coordinator never adopted the group")
		}
	}
	h.advance(time.Minute) // past the members' sessions
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, version, err := cat.LoadGroupState(ctx, "no-commits"); err == nil && version == 0 {
			break
		} else if time.Now().After(deadline) {
			t.Fatal("the emptied group's state was never deleted")
		}
	}
}

// countingExpiry counts the catalog's offsets expiry checks.
type countingExpiry struct {
	catalog.Catalog
	n atomic.Int32
}

func (c *countingExpiry) ExpireOffsets(ctx context.Context, before time.Time) (int, error) {
	c.n.Add(1)
	return c.Catalog.ExpireOffsets(ctx, before)
}

// TestOffsetsExpiryOneAgent: the offsets expiry reads every group's
// offsets in the catalog, so one agent at a time runs it, the one holding
// its catalog lease; it used to run on every agent. An agent that stops
// checking loses the lease two check intervals later, and another agent's
// next check takes it over; one that shuts down gives it back at once.
func TestOffsetsExpiryOneAgent(t *testing.T) {
	ctx := context.Background()
	sq, useClock := openSQLiteClocked(t)
	cat := &countingExpiry{Catalog: sq}
	const retention = 20 * time.Second // a check every 10 s, a lease of 20 s
	a := newHarnessOn(t, cat, func(c *Config) {
		c.OffsetsRetention = retention
		useClock(c.Now)
	})
	b := newHarnessOn(t, cat, func(c *Config) { c.OffsetsRetention = retention })
	check := func(h *harness, name string, want int32) {
		t.Helper()
		h.c.expireOffsets(ctx)
		if n := cat.n.Load(); n != want {
			t.Fatalf("after %s's check: %d expiry scans, want %d", name, n, want)
		}
	}
	check(a, "a", 1)
	check(b, "b", 1)
	a.advance(10 * time.Second)
	check(a, "a, a check later", 2)
	check(b, "b, a check later", 2)
	// a stops checking (it died, say).
	a.advance(20*time.Second + time.Millisecond)
	check(b, "b, once a's lease lapsed", 3)
	check(a, "a, back", 3)
	// b shuts down: it gives the lease back, and a checks at once.
	b.stop()
	check(a, "a, after b stopped", 4)
}

// TestLagAfterRestartOnSQLite: a coordinator started on a catalog holding a
// memberless group's offsets exports its lag without any member asking for
// the group (ListGroups and OffsetsOf of the embedded catalog).
func TestLagAfterRestartOnSQLite(t *testing.T) {
	ctx := context.Background()
	cat := openSQLite(t, filepath.Join(t.TempDir(), "catalog.db"))
	if _, err := cat.CreateTopic(ctx, catalog.TopicSpec{Name: "t", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	if refused, err := cat.CommitOffsets(ctx, "idle", []catalog.GroupOffset{{Topic: "t", Partition: 0, Offset: 0}, {Topic: "t", Partition: 1, Offset: 0}}); err != nil || len(refused) != 0 {
		t.Fatal(refused, err)
	}
	c := New(DefaultConfig(), cat, &fakePlacement{}, nil, prometheus.NewRegistry())
	c.updateLag(ctx)
	if n := testutil.CollectAndCount(c.m.lag); n != 1 {
		t.Fatalf("%d lag series, want 1", n)
	}
	if got := testutil.ToFloat64(c.m.lag.WithLabelValues("idle", "t")); got != 0 {
		t.Fatalf("lag %v, want 0", got)
	}
}
