package catalogtest

import (
	"sync"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// Producer expiry (catalog.Compactor's ExpireProducerStates and
// ExpireProducers). The catalogs stamp rows with their own clock, the Go
// one (catalog.Options.Now): the tests take cutoffs between stamps with a
// pause either side.

// cutoff returns a time after every stamp made so far and before every
// stamp made after it returns.
func cutoff() time.Time {
	time.Sleep(5 * time.Millisecond)
	at := time.Now()
	time.Sleep(5 * time.Millisecond)
	return at
}

func expireStates(t *testing.T, cc catalog.Compactor, before time.Time, limit int) int {
	t.Helper()
	n, err := cc.ExpireProducerStates(ctx(t), before, limit)
	if err != nil {
		t.Fatalf("ExpireProducerStates: %v", err)
	}
	return n
}

func expireProducers(t *testing.T, cc catalog.Compactor, before time.Time, limit int) int {
	t.Helper()
	n, err := cc.ExpireProducers(ctx(t), before, limit)
	if err != nil {
		t.Fatalf("ExpireProducers: %v", err)
	}
	return n
}

// wantStored checks that r was stored as a new batch at base.
func wantStored(t *testing.T, r catalog.BatchResult, base int64, what string) {
	t.Helper()
	if r.Err != nil || r.Duplicate || r.BaseOffset != base {
		t.Fatalf("%s: %s, want stored at %d", what, describe(r), base)
	}
}

// States idle since the cutoff go, in batches of at most the limit;
// states written since stay, with their duplicate detection and
// sequence checks.
func testExpireProducerStates(t *testing.T, c catalog.Catalog, cc catalog.Compactor) {
	top := createTopic(t, c, "expire", 4, nil)
	pid, epoch, err := c.AllocateProducerID(ctx(t))
	noErr(t, err, "AllocateProducerID")
	commit(t, c, segment(idemBatch(tpOf(top, 0), 1, pid, epoch, 0), idemBatch(tpOf(top, 1), 1, pid, epoch, 0),
		idemBatch(tpOf(top, 2), 1, pid, epoch, 0), idemBatch(tpOf(top, 3), 1, pid, epoch, 0)))
	cut := cutoff()
	commit(t, c, segment(idemBatch(tpOf(top, 3), 1, pid, epoch, 1))) // partition 3 stays busy

	if n := expireStates(t, cc, cut.Add(-time.Hour), 100); n != 0 {
		t.Fatalf("expired %d states idle for less than the expiration", n)
	}
	if n := expireStates(t, cc, cut, 2); n != 2 {
		t.Fatalf("first batch expired %d states, want the limit 2", n)
	}
	if n := expireStates(t, cc, cut, 2); n != 1 {
		t.Fatalf("second batch expired %d states, want the 1 left", n)
	}
	if n := expireStates(t, cc, cut, 2); n != 0 {
		t.Fatalf("third batch expired %d states, want none", n)
	}

	// Partition 3's state is intact: a retry is a duplicate, a gap out of
	// order.
	r := commit(t, c, segment(idemBatch(tpOf(top, 3), 1, pid, epoch, 1)))
	if r.Results[0].Err != nil || !r.Results[0].Duplicate || r.Results[0].BaseOffset != 1 {
		t.Fatalf("retry on the busy partition: %s, want a duplicate of offset 1", describe(r.Results[0]))
	}
	r = commit(t, c, segment(idemBatch(tpOf(top, 3), 1, pid, epoch, 5)))
	wantErr(t, r.Results[0].Err, catalog.ErrOutOfOrderSequence, "gap on the busy partition")
	// The others have none: a retry of their batch is a new batch, as for
	// a Kafka broker that expired the producer.
	for p := range int32(3) {
		r := commit(t, c, segment(idemBatch(tpOf(top, p), 1, pid, epoch, 0)))
		wantStored(t, r.Results[0], 1, "retry after expiry")
	}
}

// A producer (its epoch) expires once idle and without state, not while
// it has state, however old its allocation.
func testExpireProducers(t *testing.T, c catalog.Catalog, cc catalog.Compactor) {
	top := createTopic(t, c, "expire", 2, nil)
	alloc := func() (int64, int16) {
		pid, epoch, err := c.AllocateProducerID(ctx(t))
		noErr(t, err, "AllocateProducerID")
		return pid, epoch
	}
	idle1, _ := alloc()
	idle2, _ := alloc()
	idle3, _ := alloc()
	stale, se := alloc() // its state goes idle too
	busy, be := alloc()  // allocated long ago, writing since
	bumped, bme := alloc()
	commit(t, c, segment(idemBatch(tpOf(top, 0), 1, stale, se, 0), idemBatch(tpOf(top, 1), 1, busy, be, 0)))
	cut := cutoff()
	commit(t, c, segment(idemBatch(tpOf(top, 1), 1, busy, be, 1)))
	_, err := c.BumpProducerEpoch(ctx(t), bumped, bme)
	noErr(t, err, "BumpProducerEpoch")
	young, _ := alloc()

	// stale and busy have state: only the three idle ones go, two at a
	// time.
	if n := expireProducers(t, cc, cut, 2); n != 2 {
		t.Fatalf("first batch expired %d producers, want the limit 2", n)
	}
	if n := expireProducers(t, cc, cut, 2); n != 1 {
		t.Fatalf("second batch expired %d producers, want the 1 left", n)
	}
	if n := expireStates(t, cc, cut, 100); n != 1 {
		t.Fatalf("expired %d states, want stale's", n)
	}
	if n := expireProducers(t, cc, cut, 100); n != 1 {
		t.Fatalf("expired %d producers once stale's state was gone, want 1", n)
	}
	if n := expireProducers(t, cc, cut, 100); n != 0 {
		t.Fatalf("expired %d more producers, want none", n)
	}
	for _, pid := range []int64{idle1, idle2, idle3, stale} {
		_, err := c.BumpProducerEpoch(ctx(t), pid, 0)
		wantErr(t, err, catalog.ErrUnknownProducerID, "BumpProducerEpoch of an expired producer")
	}
	for _, p := range []struct {
		pid   int64
		epoch int16
	}{{busy, be}, {bumped, bme + 1}, {young, 0}} {
		if _, err := c.BumpProducerEpoch(ctx(t), p.pid, p.epoch); err != nil {
			t.Fatalf("BumpProducerEpoch of producer %d kept: %v", p.pid, err)
		}
	}
}

// A producer whose state and epoch expired gets what a Kafka broker
// without state for it gives (KIP-360: "If there is no current producer
// epoch ... accept writes with any sequence number"): its next batch is
// stored whatever its sequence, and starts a new state that checks the
// batches after it. Clients that restart numbering at 0 after an error
// are accepted too.
func testProducerAfterExpiry(t *testing.T, c catalog.Catalog, cc catalog.Compactor) {
	top := createTopic(t, c, "expire", 2, nil)
	tp0, tp1 := tpOf(top, 0), tpOf(top, 1)
	pid, epoch, err := c.AllocateProducerID(ctx(t))
	noErr(t, err, "AllocateProducerID")
	for seq := range int32(3) {
		commit(t, c, segment(idemBatch(tp0, 1, pid, epoch, seq), idemBatch(tp1, 1, pid, epoch, seq)))
	}
	cut := cutoff()
	if n := expireStates(t, cc, cut, 100); n != 2 {
		t.Fatalf("expired %d states, want 2", n)
	}
	if n := expireProducers(t, cc, cut, 100); n != 1 {
		t.Fatalf("expired %d producers, want 1", n)
	}

	// The catalog may remember the states and the epoch it verified
	// (commitplan.StateCache): those commits must find them gone.
	r := commit(t, c, segment(idemBatch(tp0, 1, pid, epoch, 0)))
	wantStored(t, r.Results[0], 3, "sequence 0 after expiry")
	r = commit(t, c, segment(idemBatch(tp1, 2, pid, epoch, 7)))
	wantStored(t, r.Results[0], 3, "sequence 7 after expiry")

	// The new states check what follows.
	r = commit(t, c, segment(idemBatch(tp0, 1, pid, epoch, 1), idemBatch(tp1, 2, pid, epoch, 7),
		idemBatch(tp1, 1, pid, epoch, 9), idemBatch(tp1, 1, pid, epoch, 20)))
	wantStored(t, r.Results[0], 4, "next sequence after expiry")
	if r.Results[1].Err != nil || !r.Results[1].Duplicate || r.Results[1].BaseOffset != 3 {
		t.Fatalf("retry of the first batch after expiry: %s, want a duplicate of offset 3", describe(r.Results[1]))
	}
	wantStored(t, r.Results[2], 5, "next sequence on the other partition")
	wantErr(t, r.Results[3].Err, catalog.ErrOutOfOrderSequence, "gap after expiry")

	// InitProducerId naming the expired id gets a new one (the agent
	// allocates on ErrUnknownProducerID).
	_, err = c.BumpProducerEpoch(ctx(t), pid, epoch)
	wantErr(t, err, catalog.ErrUnknownProducerID, "BumpProducerEpoch of the expired producer")
}

// Expiry racing a producer's commits never loses or resurrects state
// behind the commits' backs. Each round expires, with a cutoff after
// every state's last write, at the same moment as the producer's next
// commit rewrites those states: expiry may take a state before the commit
// (which then starts a new one) but never the one the commit wrote. So
// every batch is stored — never out of order (an older state resurrected),
// never a duplicate, never a failed commit — and after the round its
// retry is a duplicate on every partition (the state the commit wrote is
// there).
func testExpiryRacesCommits(t *testing.T, c catalog.Catalog, cc catalog.Compactor) {
	const parts, rounds = 16, 20
	top := createTopic(t, c, "race", parts, nil)
	pid, epoch, err := c.AllocateProducerID(ctx(t))
	noErr(t, err, "AllocateProducerID")
	seg := func(seq int32) catalog.Segment {
		var bs []catalog.BatchRef
		for p := range int32(parts) {
			bs = append(bs, idemBatch(tpOf(top, p), 1, pid, epoch, seq))
		}
		return segment(bs...)
	}
	cx := ctx(t)
	var expired int
	for seq := range int32(rounds) {
		cut := time.Now() // after every stamp so far: the states are idle
		start := make(chan struct{})
		var wg sync.WaitGroup
		var n int
		var expireErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if n, expireErr = cc.ExpireProducerStates(cx, cut, 1000); expireErr == nil {
				_, expireErr = cc.ExpireProducers(cx, cut, 1000)
			}
		}()
		close(start)
		res, err := c.CommitSegment(cx, seg(seq))
		wg.Wait()
		noErr(t, err, "commit racing expiry")
		noErr(t, expireErr, "expiry racing a commit")
		expired += n
		for i, r := range res.Results {
			if r.Err != nil || r.Duplicate || r.BaseOffset != int64(seq) {
				t.Fatalf("commit %d batch %d racing expiry: %s, want stored at %d", seq, i, describe(r), seq)
			}
		}
		retry := seg(seq)
		for i, r := range commit(t, c, retry).Results {
			if r.Err != nil || !r.Duplicate || r.BaseOffset != int64(seq) {
				t.Fatalf("round %d: retry on partition %d: %s, want a duplicate of offset %d: expiry took the state the commit wrote",
					seq, i, describe(r), seq)
			}
		}
	}
	t.Logf("expiry removed %d of %d states while commits ran", expired, parts*rounds)
	for p := range int32(parts) {
		checkTiling(t, c, tpOf(top, p), rounds)
	}
}
