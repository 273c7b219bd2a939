package catalogtest

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// commitOffsets commits offsets of existing partitions: none is refused.
func commitOffsets(t *testing.T, c catalog.Catalog, group string, offsets []catalog.GroupOffset) {
	t.Helper()
	refused, err := c.CommitOffsets(ctx(t), group, offsets)
	noErr(t, err, "CommitOffsets "+group)
	if len(refused) != 0 {
		t.Fatalf("CommitOffsets %s refused %+v", group, refused)
	}
}

// testCommitUnknownPartitions: offsets of a topic that does not exist
// (never did, or was deleted) or of a partition out of its range are
// refused and reported, once each in the order given; the rest of the
// commit is stored.
func testCommitUnknownPartitions(t *testing.T, c catalog.Catalog) {
	createTopic(t, c, "a", 2, nil)
	refused, err := c.CommitOffsets(ctx(t), "g", []catalog.GroupOffset{
		{Topic: "a", Partition: 0, Offset: 1, LeaderEpoch: -1},
		{Topic: "nope", Partition: 0, Offset: 2, LeaderEpoch: -1},
		{Topic: "a", Partition: 2, Offset: 3, LeaderEpoch: -1},
		{Topic: "a", Partition: -1, Offset: 4, LeaderEpoch: -1},
		{Topic: "bad\x00name", Partition: 0, Offset: 5, LeaderEpoch: -1},
		{Topic: "a", Partition: 1, Offset: 6, LeaderEpoch: -1},
		{Topic: "nope", Partition: 0, Offset: 7, LeaderEpoch: -1},
	})
	noErr(t, err, "CommitOffsets")
	want := []catalog.GroupPartition{{Topic: "nope", Partition: 0}, {Topic: "a", Partition: 2}, {Topic: "a", Partition: -1}, {Topic: "bad\x00name", Partition: 0}}
	if !slices.Equal(refused, want) {
		t.Fatalf("refused %+v, want %+v", refused, want)
	}
	all, err := c.FetchOffsets(ctx(t), "g", nil)
	noErr(t, err, "FetchOffsets")
	if len(all) != 2 || all[0].Topic != "a" || all[0].Offset != 1 || all[1].Partition != 1 || all[1].Offset != 6 {
		t.Fatalf("stored %+v, want a/0 at 1 and a/1 at 6", all)
	}

	// Only unknown partitions: nothing is stored, no group appears.
	refused, err = c.CommitOffsets(ctx(t), "ghost", []catalog.GroupOffset{{Topic: "nope", Partition: 0, Offset: 1}})
	noErr(t, err, "CommitOffsets ghost")
	if len(refused) != 1 {
		t.Fatalf("refused %+v, want nope/0", refused)
	}
	groups, err := c.ListGroups(ctx(t))
	noErr(t, err, "ListGroups")
	if slices.Contains(groups, "ghost") {
		t.Fatalf("a group with only refused offsets is listed: %v", groups)
	}

	// After DeleteTopic the topic's offsets are gone and stay gone: a
	// commit from a caller that still believes in the topic is refused,
	// and the topic created again under the name starts with none.
	noErr(t, deleteTopic(t, c, "a"), "DeleteTopic")
	refused, err = c.CommitOffsets(ctx(t), "g", []catalog.GroupOffset{{Topic: "a", Partition: 0, Offset: 7, LeaderEpoch: -1}})
	noErr(t, err, "CommitOffsets after delete")
	if !slices.Equal(refused, []catalog.GroupPartition{{Topic: "a", Partition: 0}}) {
		t.Fatalf("commit after delete refused %+v, want a/0", refused)
	}
	createTopic(t, c, "a", 1, nil)
	all, err = c.FetchOffsets(ctx(t), "g", nil)
	noErr(t, err, "FetchOffsets after re-create")
	if len(all) != 0 {
		t.Fatalf("re-created topic has offsets %+v", all)
	}
}

// testCommitRacesDeleteTopic: commits running while the topic is deleted
// either precede the delete (which removes their offsets) or are
// refused: once the delete returned and the commits ended, the group has
// no offset for the topic, which a topic created again under the name
// would start from.
func testCommitRacesDeleteTopic(t *testing.T, c catalog.Catalog) {
	const rounds, committers = 8, 4
	var stored, refused atomic.Int64
	for round := range rounds {
		createTopic(t, c, "race", 2, nil)
		createTopic(t, c, fmt.Sprint("kept-", round), 1, nil)
		cctx := ctx(t)
		stop := make(chan struct{})
		started := make(chan struct{}, committers)
		var wg sync.WaitGroup
		errs := make([]error, committers)
		for i := range committers {
			wg.Go(func() {
				group := fmt.Sprint("g", round, "-", i)
				last := false
				for n := int64(0); ; n++ {
					r, err := c.CommitOffsets(cctx, group, []catalog.GroupOffset{
						{Topic: fmt.Sprint("kept-", round), Partition: 0, Offset: n, LeaderEpoch: -1},
						{Topic: "race", Partition: 0, Offset: n, LeaderEpoch: -1},
						{Topic: "race", Partition: 1, Offset: n, LeaderEpoch: -1},
					})
					if err != nil {
						errs[i] = err
						return
					}
					stored.Add(int64(3 - len(r)))
					refused.Add(int64(len(r)))
					for _, gp := range r {
						if gp.Topic != "race" {
							errs[i] = fmt.Errorf("refused %+v of a topic that exists", gp)
							return
						}
					}
					if n == 0 {
						started <- struct{}{}
					}
					if last {
						return
					}
					select {
					case <-stop:
						last = true // one more, after the delete returned
					default:
					}
				}
			})
		}
		for range committers {
			<-started
		}
		noErr(t, deleteTopic(t, c, "race"), "DeleteTopic")
		close(stop)
		wg.Wait()
		for _, err := range errs {
			noErr(t, err, "CommitOffsets racing DeleteTopic")
		}
		for i := range committers {
			offs, err := c.FetchOffsets(ctx(t), fmt.Sprint("g", round, "-", i), nil)
			noErr(t, err, "FetchOffsets")
			for _, o := range offs {
				if o.Topic == "race" {
					t.Fatalf("round %d: committer %d kept offset %d of %s/%d after the delete", round, i, o.Offset, o.Topic, o.Partition)
				}
			}
			if len(offs) != 1 {
				t.Fatalf("round %d: committer %d has %+v, want kept-%d's offset", round, i, offs, round)
			}
		}
	}
	t.Logf("%d offsets stored, %d refused", stored.Load(), refused.Load())
}

// testExpireOffsets: the offsets of a group without members whose latest
// commit is older than the cut-off are deleted; a group with stored
// coordinator state (members), or with any commit since the cut-off,
// keeps its offsets. A partition committed after the cut-off is kept even
// in a group expired otherwise.
func testExpireOffsets(t *testing.T, c catalog.Catalog) {
	createTopic(t, c, "t", 2, nil)
	now := time.Now().UTC().Truncate(time.Millisecond)
	old, cut := now.Add(-8*24*time.Hour), now.Add(-7*24*time.Hour)
	at := func(p int32, off int64, when time.Time) catalog.GroupOffset {
		return catalog.GroupOffset{Topic: "t", Partition: p, Offset: off, LeaderEpoch: -1, CommitTime: when}
	}
	commitOffsets(t, c, "abandoned", []catalog.GroupOffset{at(0, 1, old), at(1, 2, old)})
	commitOffsets(t, c, "recent", []catalog.GroupOffset{at(0, 3, old), at(1, 4, now)})
	commitOffsets(t, c, "members", []catalog.GroupOffset{at(0, 5, old)})
	_, err := c.SaveGroupState(ctx(t), "members", 0, []byte("state"))
	noErr(t, err, "SaveGroupState")

	n, err := c.ExpireOffsets(ctx(t), cut)
	noErr(t, err, "ExpireOffsets")
	if n != 1 {
		t.Errorf("ExpireOffsets expired %d groups, want 1", n)
	}
	for group, want := range map[string]int{"abandoned": 0, "recent": 2, "members": 1} {
		got, err := c.FetchOffsets(ctx(t), group, nil)
		noErr(t, err, "FetchOffsets "+group)
		if len(got) != want {
			t.Errorf("group %s keeps %d offsets after the expiry, want %d: %+v", group, len(got), want, got)
		}
	}
	groups, err := c.ListGroups(ctx(t))
	noErr(t, err, "ListGroups")
	if slices.Contains(groups, "abandoned") {
		t.Errorf("an expired group is still listed: %v", groups)
	}
	if n, err := c.ExpireOffsets(ctx(t), cut); err != nil || n != 0 {
		t.Errorf("a second expiry: %d groups, %v; want none", n, err)
	}
}

// testExpireAfterLastMember: a group's offsets age from its latest commit
// or from when it lost its last member (its coordinator state was
// deleted), whichever is later, as Kafka's age from when the group became
// empty (KIP-211). A group whose members commit nothing for longer than
// the retention (nothing new to consume: librdkafka and franz-go commit
// only offsets that moved) keeps its offsets through a restart of its
// members.
func testExpireAfterLastMember(t *testing.T, c catalog.Catalog) {
	createTopic(t, c, "t", 1, nil)
	now := time.Now().UTC().Truncate(time.Millisecond)
	old, cut := now.Add(-8*24*time.Hour), now.Add(-7*24*time.Hour)
	commitOffsets(t, c, "quiet", []catalog.GroupOffset{{Topic: "t", Partition: 0, Offset: 7, LeaderEpoch: -1, CommitTime: old}})
	v, err := c.SaveGroupState(ctx(t), "quiet", 0, []byte("members"))
	noErr(t, err, "SaveGroupState")
	// The members leave to restart: the group is empty from now on.
	noErr(t, c.DeleteGroupState(ctx(t), "quiet", v), "DeleteGroupState")

	n, err := c.ExpireOffsets(ctx(t), cut)
	noErr(t, err, "ExpireOffsets")
	got, err := c.FetchOffsets(ctx(t), "quiet", nil)
	noErr(t, err, "FetchOffsets")
	if n != 0 || len(got) != 1 {
		t.Fatalf("a group empty for a moment lost its offsets: %d groups expired, %+v kept", n, got)
	}
	// Empty for longer than the retention: they expire.
	n, err = c.ExpireOffsets(ctx(t), time.Now().Add(time.Minute))
	noErr(t, err, "ExpireOffsets")
	got, err = c.FetchOffsets(ctx(t), "quiet", nil)
	noErr(t, err, "FetchOffsets")
	if n != 1 || len(got) != 0 {
		t.Fatalf("a group empty past the retention: %d groups expired, %+v kept", n, got)
	}
}
