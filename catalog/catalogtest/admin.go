package catalogtest

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

var producerTests = []namedTest{
	{"AllocateIDs", testAllocateIDs},
	{"Duplicates", testDuplicates},
	{"OutOfOrder", testOutOfOrder},
	{"SequenceWrap", testSequenceWrap},
	{"RejectedByKey", testRejectedByKey},
	{"Fencing", testFencing},
	{"BumpEpoch", testBumpEpoch},
}

var groupTests = []namedTest{
	{"Offsets", testGroupOffsets},
	{"OffsetsOfUnknownPartitions", testCommitUnknownPartitions},
	{"ExpireOffsets", testExpireOffsets},
	{"ExpireAfterLastMember", testExpireAfterLastMember},
	{"OffsetsRaceDeleteTopic", testCommitRacesDeleteTopic},
	{"StateCAS", testGroupStateCAS},
	{"StateSize", testGroupStateSize},
	{"StateRace", testGroupStateRace},
}

var agentTests = []namedTest{
	{"Membership", testMembership},
	{"Expiry", testAgentExpiry},
	{"Incarnations", testAgentIncarnations},
	{"NodeIDKept", testAgentNodeIDKept},
}

var leaseTests = []namedTest{
	{"Ownership", testLeaseOwnership},
	{"Expiry", testLeaseExpiry},
}

func testAllocateIDs(t *testing.T, c catalog.Catalog) {
	seen := map[int64]bool{}
	for range 20 {
		id, epoch, err := c.AllocateProducerID(ctx(t))
		noErr(t, err, "AllocateProducerID")
		if id < 0 || epoch != 0 || seen[id] {
			t.Fatalf("AllocateProducerID = %d, %d (seen %v)", id, epoch, seen[id])
		}
		seen[id] = true
	}
}

func testDuplicates(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 2, nil)
	tp := tpOf(topic, 0)
	pid, epoch, err := c.AllocateProducerID(ctx(t))
	noErr(t, err, "AllocateProducerID")
	commit(t, c, segment(batch(tp, 1, 1))) // offset 0 taken by someone else
	var bases []int64
	for seq := int32(0); seq < 30; seq += 5 {
		r := commit(t, c, segment(idemBatch(tp, 5, pid, epoch, seq)))
		if r.Results[0].Err != nil || r.Results[0].Duplicate {
			t.Fatalf("seq %d: %s", seq, describe(r.Results[0]))
		}
		bases = append(bases, r.Results[0].BaseOffset)
	}
	// Retries of each of the last five batches, in a new segment and mixed
	// with other traffic, are duplicates carrying the original offsets.
	var retry []catalog.BatchRef
	for i := 1; i < 6; i++ {
		retry = append(retry, idemBatch(tp, 5, pid, epoch, int32(i*5)), batch(tpOf(topic, 1), 1, 1))
	}
	r := commit(t, c, segment(retry...))
	for i := 0; i < 5; i++ {
		got := r.Results[2*i]
		if got.Err != nil || !got.Duplicate || got.BaseOffset != bases[i+1] {
			t.Fatalf("retry of seq %d: %s, want duplicate at %d", (i+1)*5, describe(got), bases[i+1])
		}
		if r.Results[2*i+1].Err != nil || r.Results[2*i+1].Duplicate {
			t.Fatalf("other traffic: %s", describe(r.Results[2*i+1]))
		}
	}
	if o := offsets(t, c, tp); o.HighWatermark != 31 {
		t.Fatalf("duplicates were stored: %+v", o)
	}
	// The oldest batch is no longer retained: its retry is out of order.
	r = commit(t, c, segment(idemBatch(tp, 5, pid, epoch, 0)))
	wantErr(t, r.Results[0].Err, catalog.ErrOutOfOrderSequence, "retry beyond the last five")
	// The same producer on another partition has its own sequence.
	r = commit(t, c, segment(idemBatch(tpOf(topic, 1), 2, pid, epoch, 0)))
	if r.Results[0].Err != nil || r.Results[0].Duplicate {
		t.Fatalf("other partition: %s", describe(r.Results[0]))
	}
	// A retry inside one segment is caught too.
	b := idemBatch(tp, 2, pid, epoch, 30)
	r = commit(t, c, segment(b, b))
	if r.Results[0].Err != nil || r.Results[0].Duplicate || !r.Results[1].Duplicate || r.Results[1].BaseOffset != r.Results[0].BaseOffset {
		t.Fatalf("retry in one segment: %s %s", describe(r.Results[0]), describe(r.Results[1]))
	}
}

func testOutOfOrder(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 1, nil)
	tp := tpOf(topic, 0)
	pid, epoch, err := c.AllocateProducerID(ctx(t))
	noErr(t, err, "AllocateProducerID")
	// A producer new to a partition may start at any sequence (KIP-360).
	r := commit(t, c, segment(idemBatch(tp, 3, pid, epoch, 7)))
	if r.Results[0].Err != nil {
		t.Fatalf("first batch: %s", describe(r.Results[0]))
	}
	r = commit(t, c, segment(idemBatch(tp, 1, pid, epoch, 11), idemBatch(tp, 1, pid, epoch, 10)))
	wantErr(t, r.Results[0].Err, catalog.ErrOutOfOrderSequence, "gap")
	if r.Results[1].Err != nil || r.Results[1].BaseOffset != 3 {
		t.Fatalf("in-order batch after a rejected one: %s", describe(r.Results[1]))
	}
	if o := offsets(t, c, tp); o.HighWatermark != 4 {
		t.Fatalf("rejected batch stored: %+v", o)
	}
}

// testSequenceWrap: sequences wrap from MaxInt32 to 0 (Kafka's
// DefaultRecordBatch.incrementSequence), a batch spanning the wrap is
// deduplicated like any other, and the largest epochs are accepted.
func testSequenceWrap(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 1, nil)
	tp := tpOf(topic, 0)
	pid, epoch, err := c.AllocateProducerID(ctx(t))
	noErr(t, err, "AllocateProducerID")
	r := commit(t, c, segment(idemBatch(tp, 2, pid, epoch, math.MaxInt32-3)))
	if r.Results[0].Err != nil || r.Results[0].BaseOffset != 0 {
		t.Fatalf("first batch: %s", describe(r.Results[0]))
	}
	wrap := idemBatch(tp, 4, pid, epoch, math.MaxInt32-1) // MaxInt32-1 … 1
	r = commit(t, c, segment(wrap))
	if r.Results[0].Err != nil || r.Results[0].Duplicate || r.Results[0].BaseOffset != 2 {
		t.Fatalf("batch across the wrap: %s", describe(r.Results[0]))
	}
	r = commit(t, c, segment(wrap, idemBatch(tp, 1, pid, epoch, 2)))
	if r.Results[0].Err != nil || !r.Results[0].Duplicate || r.Results[0].BaseOffset != 2 {
		t.Fatalf("retry of the batch across the wrap: %s", describe(r.Results[0]))
	}
	if r.Results[1].Err != nil || r.Results[1].BaseOffset != 6 {
		t.Fatalf("batch after the wrap: %s", describe(r.Results[1]))
	}
	r = commit(t, c, segment(idemBatch(tp, 1, pid, epoch, 0)))
	wantErr(t, r.Results[0].Err, catalog.ErrOutOfOrderSequence, "partial overlap with the wrapped batch")
	r = commit(t, c, segment(idemBatch(tp, 1, pid, math.MaxInt16, 0)))
	if r.Results[0].Err != nil || r.Results[0].BaseOffset != 7 {
		t.Fatalf("epoch MaxInt16: %s", describe(r.Results[0]))
	}
	if o := offsets(t, c, tp); o.HighWatermark != 8 {
		t.Fatalf("offsets %+v, want high watermark 8", o)
	}
}

// testRejectedByKey: a re-commit of a key returns exactly the first
// answer, rejected batches included (their log start offset is -1, as
// Kafka answers errors, not the partition's).
func testRejectedByKey(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 1, nil)
	tp := tpOf(topic, 0)
	pid, epoch, err := c.AllocateProducerID(ctx(t))
	noErr(t, err, "AllocateProducerID")
	commit(t, c, segment(idemBatch(tp, 3, pid, epoch, 0)))
	_, err = c.DeleteRecords(ctx(t), tp, 2)
	noErr(t, err, "DeleteRecords")
	seg := segment(idemBatch(tp, 1, pid, epoch, 9), idemBatch(tp, 1, pid, epoch, 3))
	first := commit(t, c, seg)
	wantErr(t, first.Results[0].Err, catalog.ErrOutOfOrderSequence, "gap")
	if r := first.Results[1]; r.Err != nil || r.BaseOffset != 3 || r.LogStartOffset != 2 {
		t.Fatalf("in-order batch: %s", describe(r))
	}
	if r := first.Results[0]; r.BaseOffset != -1 || r.LogStartOffset != -1 {
		t.Fatalf("rejected batch: %s, want base offset and log start -1", describe(r))
	}
	sameCommit(t, "re-commit", commit(t, c, seg), first)
}

func testFencing(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "t", 1, nil)
	tp := tpOf(topic, 0)
	pid, epoch, err := c.AllocateProducerID(ctx(t))
	noErr(t, err, "AllocateProducerID")
	commit(t, c, segment(idemBatch(tp, 1, pid, epoch, 0)))
	next, err := c.BumpProducerEpoch(ctx(t), pid, epoch)
	noErr(t, err, "BumpProducerEpoch")
	if next != epoch+1 {
		t.Fatalf("bumped epoch %d, want %d", next, epoch+1)
	}
	// The zombie with the old epoch is fenced, even continuing in order.
	r := commit(t, c, segment(idemBatch(tp, 1, pid, epoch, 1)))
	wantErr(t, r.Results[0].Err, catalog.ErrInvalidProducerEpoch, "old epoch after bump")
	// The new epoch restarts sequences at 0; anything else is out of order.
	r = commit(t, c, segment(idemBatch(tp, 1, pid, next, 5)))
	wantErr(t, r.Results[0].Err, catalog.ErrOutOfOrderSequence, "new epoch not at 0")
	r = commit(t, c, segment(idemBatch(tp, 1, pid, next, 0)))
	if r.Results[0].Err != nil || r.Results[0].BaseOffset != 1 {
		t.Fatalf("new epoch at 0: %s", describe(r.Results[0]))
	}
	// A client-side bump (KIP-360) is accepted and then fences the older one.
	r = commit(t, c, segment(idemBatch(tp, 1, pid, next+1, 0)))
	if r.Results[0].Err != nil {
		t.Fatalf("locally bumped epoch: %s", describe(r.Results[0]))
	}
	r = commit(t, c, segment(idemBatch(tp, 1, pid, next, 1)))
	wantErr(t, r.Results[0].Err, catalog.ErrInvalidProducerEpoch, "epoch older than the partition's")
}

func testBumpEpoch(t *testing.T, c catalog.Catalog) {
	_, err := c.BumpProducerEpoch(ctx(t), 1<<40, 0)
	wantErr(t, err, catalog.ErrUnknownProducerID, "BumpProducerEpoch of an unknown id")
	pid, epoch, err := c.AllocateProducerID(ctx(t))
	noErr(t, err, "AllocateProducerID")
	e1, err := c.BumpProducerEpoch(ctx(t), pid, epoch)
	noErr(t, err, "bump")
	again, err := c.BumpProducerEpoch(ctx(t), pid, epoch) // the answer was lost: retry
	noErr(t, err, "retried bump")
	if again != e1 {
		t.Fatalf("retried bump = %d, want %d", again, e1)
	}
	e2, err := c.BumpProducerEpoch(ctx(t), pid, e1)
	noErr(t, err, "second bump")
	if e2 != e1+1 {
		t.Fatalf("second bump = %d, want %d", e2, e1+1)
	}
	_, err = c.BumpProducerEpoch(ctx(t), pid, epoch)
	wantErr(t, err, catalog.ErrInvalidProducerEpoch, "bump of a fenced epoch")
	_, err = c.BumpProducerEpoch(ctx(t), pid, 32766)
	wantErr(t, err, catalog.ErrInvalidProducerEpoch, "bump at the end of the epoch space")
}

func testGroupOffsets(t *testing.T, c catalog.Catalog) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	createTopic(t, c, "a", 2, nil)
	createTopic(t, c, "b", 1, nil)
	commitOffsets(t, c, "g1", []catalog.GroupOffset{
		{Topic: "a", Partition: 1, Offset: 10, LeaderEpoch: 3, Metadata: "m", CommitTime: at},
		{Topic: "a", Partition: 0, Offset: 5, LeaderEpoch: -1},
		{Topic: "b", Partition: 0, Offset: 7, LeaderEpoch: -1},
		{Topic: "b", Partition: 0, Offset: 8, LeaderEpoch: -1}, // later entry wins
	})
	commitOffsets(t, c, "g0", []catalog.GroupOffset{{Topic: "a", Partition: 0, Offset: 1}})
	commitOffsets(t, c, "g2", nil)

	all, err := c.FetchOffsets(ctx(t), "g1", nil)
	noErr(t, err, "FetchOffsets all")
	if len(all) != 3 || all[0].Topic != "a" || all[0].Partition != 0 || all[1].Partition != 1 || all[2].Offset != 8 {
		t.Fatalf("FetchOffsets(nil) = %+v", all)
	}
	if a1 := all[1]; a1.Offset != 10 || a1.LeaderEpoch != 3 || a1.Metadata != "m" || !a1.CommitTime.Equal(at) {
		t.Fatalf("a/1 = %+v", a1)
	}
	if all[0].CommitTime.IsZero() || time.Since(all[0].CommitTime) > time.Hour {
		t.Fatalf("zero commit time not set to now: %v", all[0].CommitTime)
	}
	some, err := c.FetchOffsets(ctx(t), "g1", []catalog.GroupPartition{{Topic: "a", Partition: 1}, {Topic: "zzz", Partition: 0}})
	noErr(t, err, "FetchOffsets some")
	if len(some) != 1 || some[0].Offset != 10 {
		t.Fatalf("FetchOffsets(some) = %+v", some)
	}
	none, err := c.FetchOffsets(ctx(t), "nobody", nil)
	noErr(t, err, "FetchOffsets unknown group")
	if len(none) != 0 {
		t.Fatalf("unknown group has offsets %+v", none)
	}

	commitOffsets(t, c, "g1", []catalog.GroupOffset{{Topic: "a", Partition: 1, Offset: 11}})
	some, err = c.FetchOffsets(ctx(t), "g1", []catalog.GroupPartition{{Topic: "a", Partition: 1}})
	noErr(t, err, "FetchOffsets")
	if len(some) != 1 || some[0].Offset != 11 || some[0].Metadata != "" {
		t.Fatalf("after overwrite: %+v", some)
	}

	groups, err := c.ListGroups(ctx(t))
	noErr(t, err, "ListGroups")
	if !slices.Equal(groups, []string{"g0", "g1"}) {
		t.Fatalf("ListGroups = %v", groups)
	}
	noErr(t, c.DeleteOffsets(ctx(t), "g1", []catalog.GroupPartition{{Topic: "a", Partition: 0}, {Topic: "b", Partition: 9}}), "DeleteOffsets")
	all, err = c.FetchOffsets(ctx(t), "g1", nil)
	noErr(t, err, "FetchOffsets")
	if len(all) != 2 {
		t.Fatalf("after DeleteOffsets: %+v", all)
	}
	noErr(t, c.DeleteGroup(ctx(t), "g1"), "DeleteGroup")
	noErr(t, c.DeleteGroup(ctx(t), "never"), "DeleteGroup unknown")
	groups, err = c.ListGroups(ctx(t))
	noErr(t, err, "ListGroups")
	if !slices.Equal(groups, []string{"g0"}) {
		t.Fatalf("ListGroups after delete = %v", groups)
	}

	// A group with stored state and no offsets is listed too, once.
	v, err := c.SaveGroupState(ctx(t), "s", 0, []byte("state"))
	noErr(t, err, "SaveGroupState")
	_, err = c.SaveGroupState(ctx(t), "g0", 0, []byte("state"))
	noErr(t, err, "SaveGroupState")
	groups, err = c.ListGroups(ctx(t))
	noErr(t, err, "ListGroups")
	if !slices.Equal(groups, []string{"g0", "s"}) {
		t.Fatalf("ListGroups with stored states = %v", groups)
	}
	noErr(t, c.DeleteGroupState(ctx(t), "s", v), "DeleteGroupState")
	groups, err = c.ListGroups(ctx(t))
	noErr(t, err, "ListGroups")
	if !slices.Equal(groups, []string{"g0"}) {
		t.Fatalf("ListGroups after the state's delete = %v", groups)
	}
}

func testMembership(t *testing.T, c catalog.Catalog) {
	_, gen0, err := c.LiveAgents(ctx(t), time.Minute)
	noErr(t, err, "LiveAgents")
	a, err := c.RegisterAgent(ctx(t), catalog.Agent{ID: "agent-a", Addr: "10.0.0.1:9092", Zone: "z1"}, time.Minute)
	noErr(t, err, "RegisterAgent a")
	b, err := c.RegisterAgent(ctx(t), catalog.Agent{ID: "agent-b", Addr: "10.0.0.2:9092", Zone: "z2"}, time.Minute)
	noErr(t, err, "RegisterAgent b")
	if a.NodeID == b.NodeID || a.NodeID < 0 || b.NodeID < 0 {
		t.Fatalf("node ids %d and %d", a.NodeID, b.NodeID)
	}
	if a.Started.IsZero() || a.Heartbeat.IsZero() {
		t.Fatalf("registered agent %+v lacks times", a)
	}
	live, gen1, err := c.LiveAgents(ctx(t), time.Minute)
	noErr(t, err, "LiveAgents")
	if gen1 < gen0+2 {
		t.Fatalf("generation %d after two joins from %d", gen1, gen0)
	}
	if len(live) != 2 || live[0].NodeID > live[1].NodeID || live[0].Addr == "" || live[0].Zone == "" {
		t.Fatalf("LiveAgents = %+v", live)
	}
	noErr(t, c.HeartbeatAgent(ctx(t), a.NodeID, a.Started), "HeartbeatAgent")
	// Registering again with a new address keeps the node id (after it
	// left too: NodeIDKept).
	a2, err := c.RegisterAgent(ctx(t), catalog.Agent{ID: "agent-a", Addr: "10.0.0.9:9092", Zone: "z1", Started: a.Started}, time.Minute)
	noErr(t, err, "re-register")
	if a2.NodeID != a.NodeID {
		t.Fatalf("re-registered agent got node id %d, had %d", a2.NodeID, a.NodeID)
	}
	noErr(t, c.DeregisterAgent(ctx(t), b.NodeID, b.Started), "DeregisterAgent")
	noErr(t, c.DeregisterAgent(ctx(t), b.NodeID, b.Started), "DeregisterAgent twice")
	live, gen2, err := c.LiveAgents(ctx(t), time.Minute)
	noErr(t, err, "LiveAgents")
	if gen2 <= gen1 || len(live) != 1 || live[0].Addr != "10.0.0.9:9092" {
		t.Fatalf("after deregister: gen %d (was %d), %+v", gen2, gen1, live)
	}
	err = c.HeartbeatAgent(ctx(t), b.NodeID, b.Started)
	wantErr(t, err, catalog.ErrUnknownAgent, "heartbeat of a deregistered agent")
	if _, err := c.RegisterAgent(ctx(t), catalog.Agent{}, time.Minute); err == nil {
		t.Fatal("RegisterAgent without an id succeeded")
	}
}

func testAgentExpiry(t *testing.T, c catalog.Catalog) {
	a, err := c.RegisterAgent(ctx(t), catalog.Agent{ID: "old", Addr: "h:1"}, time.Minute)
	noErr(t, err, "RegisterAgent")
	// Generous margins: a loaded machine may take a while between calls.
	const ttl = time.Second
	time.Sleep(ttl + 300*time.Millisecond)
	b, err := c.RegisterAgent(ctx(t), catalog.Agent{ID: "new", Addr: "h:2"}, time.Minute)
	noErr(t, err, "RegisterAgent")
	live, gen, err := c.LiveAgents(ctx(t), ttl)
	noErr(t, err, "LiveAgents")
	if len(live) != 1 || live[0].NodeID != b.NodeID {
		t.Fatalf("LiveAgents(%v) = %+v, want only the new agent", ttl, live)
	}
	n, err := c.ExpireAgents(ctx(t), ttl)
	noErr(t, err, "ExpireAgents")
	if n != 1 {
		t.Fatalf("ExpireAgents removed %d, want 1", n)
	}
	_, gen2, err := c.LiveAgents(ctx(t), time.Minute)
	noErr(t, err, "LiveAgents")
	if gen2 <= gen {
		t.Fatalf("expiry did not bump the generation: %d then %d", gen, gen2)
	}
	wantErr(t, c.HeartbeatAgent(ctx(t), a.NodeID, a.Started), catalog.ErrUnknownAgent, "heartbeat after expiry")
	n, err = c.ExpireAgents(ctx(t), time.Minute)
	noErr(t, err, "ExpireAgents")
	_, gen3, err := c.LiveAgents(ctx(t), time.Minute)
	noErr(t, err, "LiveAgents")
	if n != 0 || gen3 != gen2 {
		t.Fatalf("an expiry removing nothing: n %d, generation %d then %d", n, gen2, gen3)
	}
}

// testAgentIncarnations: two processes given one agent id. The second is
// refused while the first's heartbeat is live, and once it lapses takes
// the id (and node id) over; the first can then neither heartbeat nor
// deregister the second's row.
func testAgentIncarnations(t *testing.T, c catalog.Catalog) {
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	t2 := t1.Add(time.Second)
	a, err := c.RegisterAgent(ctx(t), catalog.Agent{ID: "twin", Addr: "h:1", Started: t1}, time.Minute)
	noErr(t, err, "RegisterAgent")
	if !a.Started.Equal(t1) {
		t.Fatalf("registered incarnation %v, want %v", a.Started, t1)
	}
	_, gen0, err := c.LiveAgents(ctx(t), time.Minute)
	noErr(t, err, "LiveAgents")
	_, err = c.RegisterAgent(ctx(t), catalog.Agent{ID: "twin", Addr: "h:2", Started: t2}, time.Minute)
	wantErr(t, err, catalog.ErrAgentIDInUse, "a second incarnation while the first is live")
	if !strings.Contains(err.Error(), "h:1") {
		t.Errorf("the refusal %q does not name the holder's address", err)
	}
	live, gen, err := c.LiveAgents(ctx(t), time.Minute)
	noErr(t, err, "LiveAgents")
	if gen != gen0 || len(live) != 1 || live[0].Addr != "h:1" || !live[0].Started.Equal(t1) {
		t.Fatalf("after a refused registration: generation %d (was %d), %+v", gen, gen0, live)
	}
	noErr(t, c.HeartbeatAgent(ctx(t), a.NodeID, t1), "HeartbeatAgent")
	wantErr(t, c.HeartbeatAgent(ctx(t), a.NodeID, t2), catalog.ErrUnknownAgent, "heartbeat of another incarnation")

	// The first incarnation's heartbeat is older than a nanosecond: lapsed.
	time.Sleep(time.Millisecond)
	b, err := c.RegisterAgent(ctx(t), catalog.Agent{ID: "twin", Addr: "h:2", Started: t2}, time.Nanosecond)
	noErr(t, err, "RegisterAgent over a lapsed incarnation")
	if b.NodeID != a.NodeID || !b.Started.Equal(t2) {
		t.Fatalf("takeover registered %+v, want node %d started %v", b, a.NodeID, t2)
	}
	wantErr(t, c.HeartbeatAgent(ctx(t), a.NodeID, t1), catalog.ErrUnknownAgent, "heartbeat of the displaced incarnation")
	noErr(t, c.DeregisterAgent(ctx(t), a.NodeID, t1), "DeregisterAgent of the displaced incarnation")
	noErr(t, c.HeartbeatAgent(ctx(t), b.NodeID, t2), "HeartbeatAgent after the displaced one deregistered")
	live, _, err = c.LiveAgents(ctx(t), time.Minute)
	noErr(t, err, "LiveAgents")
	if len(live) != 1 || live[0].Addr != "h:2" {
		t.Fatalf("after takeover: %+v", live)
	}
	noErr(t, c.DeregisterAgent(ctx(t), b.NodeID, t2), "DeregisterAgent")
	live, _, err = c.LiveAgents(ctx(t), time.Minute)
	noErr(t, err, "LiveAgents")
	if len(live) != 0 {
		t.Fatalf("after deregistration: %+v", live)
	}
}

// testAgentNodeIDKept: an agent ID that left the fleet, by deregistering or
// by expiry, gets its node id back when it registers again, under a new
// incarnation or the same one, so that a restart with a fixed agent ID (a
// StatefulSet's pod, restarted by every rolling upgrade) is the same Kafka
// node. Meanwhile it is not live and its incarnation cannot heartbeat.
func testAgentNodeIDKept(t *testing.T, c catalog.Catalog) {
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	t2 := t1.Add(time.Second)
	a, err := c.RegisterAgent(ctx(t), catalog.Agent{ID: "pod-0", Addr: "h:1", Started: t1}, time.Minute)
	noErr(t, err, "RegisterAgent")
	noErr(t, c.DeregisterAgent(ctx(t), a.NodeID, t1), "DeregisterAgent")
	live, gen0, err := c.LiveAgents(ctx(t), time.Hour)
	noErr(t, err, "LiveAgents")
	if len(live) != 0 {
		t.Fatalf("after deregistration: %+v", live)
	}
	wantErr(t, c.HeartbeatAgent(ctx(t), a.NodeID, t1), catalog.ErrUnknownAgent, "heartbeat of a deregistered agent")
	noErr(t, c.DeregisterAgent(ctx(t), a.NodeID, t1), "DeregisterAgent twice")
	_, gen, err := c.LiveAgents(ctx(t), time.Hour)
	noErr(t, err, "LiveAgents")
	if gen != gen0 {
		t.Fatalf("deregistering a departed agent moved the generation from %d to %d", gen0, gen)
	}
	other, err := c.RegisterAgent(ctx(t), catalog.Agent{ID: "pod-1", Addr: "h:2"}, time.Minute)
	noErr(t, err, "RegisterAgent of another id")
	if other.NodeID == a.NodeID {
		t.Fatalf("another id was given the departed agent's node id %d", a.NodeID)
	}
	noErr(t, c.DeregisterAgent(ctx(t), other.NodeID, other.Started), "DeregisterAgent of another id")

	// A graceful restart: a new incarnation of the id.
	b, err := c.RegisterAgent(ctx(t), catalog.Agent{ID: "pod-0", Addr: "h:3", Started: t2}, time.Minute)
	noErr(t, err, "RegisterAgent after deregistration")
	if b.NodeID != a.NodeID {
		t.Fatalf("registered again after deregistering: node id %d, had %d", b.NodeID, a.NodeID)
	}
	live, gen1, err := c.LiveAgents(ctx(t), time.Hour)
	noErr(t, err, "LiveAgents")
	if gen1 <= gen0 || len(live) != 1 || live[0].NodeID != a.NodeID || live[0].Addr != "h:3" || !live[0].Started.Equal(t2) {
		t.Fatalf("after registering again: generation %d (was %d), %+v", gen1, gen0, live)
	}
	wantErr(t, c.HeartbeatAgent(ctx(t), a.NodeID, t1), catalog.ErrUnknownAgent, "heartbeat of the departed incarnation")
	noErr(t, c.HeartbeatAgent(ctx(t), b.NodeID, t2), "HeartbeatAgent")

	// Expired (paused past the TTL), then back: the same incarnation.
	const ttl = 100 * time.Millisecond
	time.Sleep(ttl + 50*time.Millisecond)
	n, err := c.ExpireAgents(ctx(t), ttl)
	noErr(t, err, "ExpireAgents")
	live, _, err = c.LiveAgents(ctx(t), time.Hour)
	noErr(t, err, "LiveAgents")
	if n != 1 || len(live) != 0 {
		t.Fatalf("ExpireAgents removed %d, want 1; live after it: %+v", n, live)
	}
	wantErr(t, c.HeartbeatAgent(ctx(t), b.NodeID, t2), catalog.ErrUnknownAgent, "heartbeat after expiry")
	b2, err := c.RegisterAgent(ctx(t), catalog.Agent{ID: "pod-0", Addr: "h:3", Started: t2}, time.Minute)
	noErr(t, err, "RegisterAgent after expiry")
	if b2.NodeID != a.NodeID {
		t.Fatalf("registered again after expiry: node id %d, had %d", b2.NodeID, a.NodeID)
	}
	noErr(t, c.HeartbeatAgent(ctx(t), b2.NodeID, t2), "HeartbeatAgent after registering again")
	live, _, err = c.LiveAgents(ctx(t), time.Hour)
	noErr(t, err, "LiveAgents")
	if len(live) != 1 || live[0].NodeID != a.NodeID {
		t.Fatalf("after registering again: %+v", live)
	}
}

func testLeaseOwnership(t *testing.T, c catalog.Catalog) {
	got := func(ok bool, err error) bool {
		t.Helper()
		noErr(t, err, "lease call")
		return ok
	}
	if !got(c.AcquireLease(ctx(t), "gc", "a", time.Minute)) {
		t.Fatal("a could not acquire a free lease")
	}
	if got(c.AcquireLease(ctx(t), "gc", "b", time.Minute)) {
		t.Fatal("b acquired a's lease")
	}
	if !got(c.AcquireLease(ctx(t), "gc", "a", time.Minute)) {
		t.Fatal("a could not re-acquire its own lease")
	}
	if !got(c.RenewLease(ctx(t), "gc", "a", time.Minute)) {
		t.Fatal("a could not renew")
	}
	if got(c.RenewLease(ctx(t), "gc", "b", time.Minute)) {
		t.Fatal("b renewed a's lease")
	}
	if !got(c.AcquireLease(ctx(t), "other", "b", time.Minute)) {
		t.Fatal("leases are not independent by name")
	}
	noErr(t, c.ReleaseLease(ctx(t), "gc", "b"), "release by non-holder")
	if got(c.AcquireLease(ctx(t), "gc", "b", time.Minute)) {
		t.Fatal("a non-holder's release freed the lease")
	}
	noErr(t, c.ReleaseLease(ctx(t), "gc", "a"), "release")
	if !got(c.AcquireLease(ctx(t), "gc", "b", time.Minute)) {
		t.Fatal("b could not acquire a released lease")
	}
	if got(c.RenewLease(ctx(t), "gc", "a", time.Minute)) {
		t.Fatal("a renewed after releasing")
	}
	noErr(t, c.ReleaseLease(ctx(t), "never", "x"), "release of an unknown lease")
}

func testLeaseExpiry(t *testing.T, c catalog.Catalog) {
	ok, err := c.AcquireLease(ctx(t), "compact", "a", 200*time.Millisecond)
	noErr(t, err, "AcquireLease")
	if !ok {
		t.Fatal("acquire failed")
	}
	time.Sleep(350 * time.Millisecond)
	ok, err = c.RenewLease(ctx(t), "compact", "a", time.Minute)
	noErr(t, err, "RenewLease")
	if ok {
		t.Fatal("an expired lease was renewed")
	}
	ok, err = c.AcquireLease(ctx(t), "compact", "b", time.Minute)
	noErr(t, err, "AcquireLease")
	if !ok {
		t.Fatal("b could not take an expired lease")
	}
	ok, err = c.AcquireLease(ctx(t), "compact", "a", time.Minute)
	noErr(t, err, "AcquireLease")
	if ok {
		t.Fatal("a took b's live lease")
	}
}
