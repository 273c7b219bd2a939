package groups

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

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
		now := c.Now
		clock.Store(&now)
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
