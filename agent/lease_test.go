package agent

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// grantLease gives a the coordination lease for d, without a timer.
func grantLease(a *Agent, d time.Duration) {
	a.lease.until.Store(int64(time.Since(leaseOrigin) + d))
}

// leaseAgent is an agent with only what the lease needs, registered as
// node 1, and whether it coordinates a group.
func leaseAgent(hb, ttl time.Duration) (*Agent, func() bool) {
	a := &Agent{cfg: Config{HeartbeatInterval: hb, AgentTTL: ttl}, log: slog.New(slog.DiscardHandler)}
	self := catalog.Agent{NodeID: 1, ID: "a", Addr: "h:1"}
	a.members.Store(&membership{self: self, registered: true, agents: []catalog.Agent{self}})
	return a, func() bool {
		_, _, _, err := a.Coordinator(context.Background(), "g")
		return err == nil
	}
}

// resumeRound checks that a's lease came back after a lapse but that it
// serves its groups only once its heartbeat round settles its join, then
// ends the round as heartbeatOnce does, with a view of a alone (it serves
// at once).
func resumeRound(t *testing.T, a *Agent, coordinates func() bool) {
	t.Helper()
	if coordinates() || !a.lease.rejoin.Load() {
		t.Fatalf("back from a lapse: coordinating %v, rejoin pending %v (want no, yes)", coordinates(), a.lease.rejoin.Load())
	}
	if a.lease.rejoin.Swap(false) {
		a.settleJoin(true)
	}
	if !coordinates() {
		t.Fatal("not coordinating once the join settled")
	}
}

// waitViewEpoch waits until a's view epoch is at least e.
func waitViewEpoch(t *testing.T, a *Agent, e uint64, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for a.ViewEpoch() < e {
		if time.Now().After(deadline) {
			t.Fatalf("%s was never noted", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCoordinationLease: the lease lasts from the start of the last
// successful heartbeat for the TTL less the heartbeat interval; its lapse
// stops coordination at once (without waiting for its timer) and is noted
// once, by a view change, at the lapse even with no heartbeat returning;
// a renewal resumes coordination with another view change, once the
// heartbeat round has settled the join again (resumeRound).
func TestCoordinationLease(t *testing.T) {
	const hb, ttl = 100 * time.Millisecond, 800 * time.Millisecond
	a, coordinates := leaseAgent(hb, ttl)
	if coordinates() {
		t.Fatal("coordinating before any heartbeat")
	}
	if a.leaseMargin() != hb {
		t.Fatalf("margin %v, want the heartbeat interval", a.leaseMargin())
	}

	// This part is about the heartbeat half: the view half lasts.
	a.extendLease(time.Since(leaseOrigin)+time.Hour, true)
	if coordinates() {
		t.Fatal("coordinating with a view but before any heartbeat")
	}
	start := time.Now()
	a.renewLease(start)
	t.Cleanup(a.stopLease)
	if !coordinates() || a.ViewEpoch() != 0 {
		t.Fatalf("after the first grant: coordinating %v, view epoch %d (want no change)", coordinates(), a.ViewEpoch())
	}
	waitViewEpoch(t, a, 1, "the lapse")
	if at := time.Since(start); at < ttl-hb {
		t.Fatalf("lapse noted %v after the heartbeat started, before the lease's end (%v)", at, ttl-hb)
	}
	if coordinates() {
		t.Fatal("coordinating after the lapse")
	}
	time.Sleep(2 * hb)
	if e := a.ViewEpoch(); e != 1 {
		t.Fatalf("view epoch %d after one lapse, want 1", e)
	}

	a.renewLease(time.Now())
	if a.ViewEpoch() != 2 {
		t.Fatalf("after renewal: view epoch %d (want 2)", a.ViewEpoch())
	}
	resumeRound(t, a, coordinates)
	// An older start (a slow call's) never shortens the lease.
	until := a.lease.until.Load()
	a.renewLease(time.Now().Add(-ttl))
	if a.lease.until.Load() != until || !coordinates() {
		t.Fatal("an older heartbeat shortened the lease")
	}

	// A lapse the timer has not noted yet (it runs late on a loaded host)
	// already stops coordination, and the renewal notes it: two view
	// changes, the lapse and the resumption.
	a.lease.mu.Lock()
	a.lease.timer.Stop()
	a.lease.until.Store(int64(time.Since(leaseOrigin) - time.Millisecond))
	a.lease.mu.Unlock()
	if coordinates() {
		t.Fatal("coordinating past the lease's end before its timer ran")
	}
	a.renewLease(time.Now())
	if a.ViewEpoch() != 4 {
		t.Fatalf("after an unnoted lapse and a renewal: view epoch %d (want 4)", a.ViewEpoch())
	}
	resumeRound(t, a, coordinates)
}

// TestViewLease: the lease also ends viewMaxAge after the start of the
// last successful read of the live agents, however recent the heartbeat:
// a view that old may not list an agent that joined since, and serves its
// groups by now. A new read resumes coordination.
func TestViewLease(t *testing.T) {
	const hb, ttl = 100 * time.Millisecond, time.Hour
	a, coordinates := leaseAgent(hb, ttl)
	a.renewLease(time.Now())
	t.Cleanup(a.stopLease)
	if coordinates() {
		t.Fatal("coordinating before any view was read")
	}
	start := time.Now()
	a.renewView(start)
	if !coordinates() {
		t.Fatal("not coordinating after a heartbeat and a view read")
	}
	waitViewEpoch(t, a, 1, "the view's lapse")
	if at := time.Since(start); at < a.viewMaxAge() {
		t.Fatalf("lapse noted %v after the view read started, before the view's end (%v)", at, a.viewMaxAge())
	}
	if coordinates() {
		t.Fatal("coordinating from an old view, with a recent heartbeat lease")
	}
	a.renewLease(time.Now()) // the heartbeat alone does not resume
	if coordinates() || a.ViewEpoch() != 1 {
		t.Fatalf("after a heartbeat only: coordinating %v, view epoch %d (want 1)", coordinates(), a.ViewEpoch())
	}
	a.renewView(time.Now())
	if a.ViewEpoch() != 2 {
		t.Fatalf("after a new view: view epoch %d (want 2)", a.ViewEpoch())
	}
	resumeRound(t, a, coordinates)

	// Back from a lapse with other agents in its view, it waits for them
	// to have read a view with it, as a joining agent does.
	waitViewEpoch(t, a, 3, "the second view lapse")
	m := a.members.Load()
	other := catalog.Agent{NodeID: 2, ID: "b", Addr: "h:2"}
	a.members.Store(&membership{self: m.self, registered: true, agents: []catalog.Agent{m.self, other}})
	a.renewView(time.Now())
	if a.lease.rejoin.Swap(false) {
		a.settleJoin(true)
	}
	if a.JoinSettled() {
		t.Fatal("back from a lapse among other agents, serving its groups at once")
	}
	if a.joinSettle() <= a.viewMaxAge() {
		t.Fatalf("join settle %v not longer than the view's life %v", a.joinSettle(), a.viewMaxAge())
	}
}
