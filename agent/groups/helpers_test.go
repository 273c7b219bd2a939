package groups

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/floebroker/floe/catalog"
)

func TestMain(m *testing.M) {
	// The end-to-end tests' MinIO client keeps idle HTTP connections in
	// its transport after its bucket is closed.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"))
}

// fakeCatalog implements the catalog methods the coordinator calls; the
// embedded nil interface panics on any other, which a test would notice.
type fakeCatalog struct {
	catalog.Catalog

	mu        sync.Mutex
	topics    map[string]catalog.Topic
	offsets   map[string]map[catalog.GroupPartition]catalog.GroupOffset
	commitErr error
	commits   int

	// Stored group state (catalog's SaveGroupState), with the same
	// compare-and-set and ever-increasing versions.
	states      map[string]fakeState
	lastVersion int64
	stateErr    error // fails every state call when set
	loads       int
	saves       int
	deletes     int
	// loadGate and saveGate, when set, hold LoadGroupState and
	// SaveGroupState until they are closed.
	loadGate chan struct{}
	saveGate chan struct{}
	// deleting, when set, is sent on as DeleteGroup starts, which then
	// waits for deleteGate to close.
	deleting   chan struct{}
	deleteGate chan struct{}
}

type fakeState struct {
	blob    []byte
	version int64
}

func newFakeCatalog() *fakeCatalog {
	return &fakeCatalog{
		topics:  make(map[string]catalog.Topic),
		offsets: make(map[string]map[catalog.GroupPartition]catalog.GroupOffset),
		states:  make(map[string]fakeState),
	}
}

func (f *fakeCatalog) LoadGroupState(_ context.Context, group string) ([]byte, int64, error) {
	f.enter(&f.loads, &f.loadGate)
	defer f.mu.Unlock()
	if f.stateErr != nil {
		return nil, 0, f.stateErr
	}
	s := f.states[group]
	return slices.Clone(s.blob), s.version, nil
}

func (f *fakeCatalog) SaveGroupState(_ context.Context, group string, expect int64, state []byte) (int64, error) {
	f.enter(&f.saves, &f.saveGate)
	defer f.mu.Unlock()
	if f.stateErr != nil {
		return 0, f.stateErr
	}
	if len(state) > catalog.MaxGroupStateBytes {
		return 0, catalog.ErrGroupStateTooLarge
	}
	if f.states[group].version != expect {
		return 0, catalog.ErrGroupStateConflict
	}
	f.lastVersion++
	f.states[group] = fakeState{blob: slices.Clone(state), version: f.lastVersion}
	return f.lastVersion, nil
}

func (f *fakeCatalog) DeleteGroupState(_ context.Context, group string, expect int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes++
	if f.stateErr != nil {
		return f.stateErr
	}
	if f.states[group].version != expect {
		return catalog.ErrGroupStateConflict
	}
	delete(f.states, group)
	return nil
}

// holdSaves makes SaveGroupState wait until the returned gate is closed,
// and returns how many calls it had counted before.
func (f *fakeCatalog) holdSaves() (gate chan struct{}, saves int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.saveGate = make(chan struct{})
	return f.saveGate, f.saves
}

// enter counts a call in *calls, waits for *gate if one is set, and
// returns holding f.mu.
func (f *fakeCatalog) enter(calls *int, gate *chan struct{}) {
	f.mu.Lock()
	*calls++
	g := *gate
	f.mu.Unlock()
	if g != nil {
		<-g
	}
	f.mu.Lock()
}

// state returns group's stored state.
func (f *fakeCatalog) state(group string) fakeState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.states[group]
}

func (f *fakeCatalog) addTopic(name string, partitions int32) catalog.Topic {
	f.mu.Lock()
	defer f.mu.Unlock()
	var id catalog.TopicID
	copy(id[:], fmt.Sprintf("%-16s", name))
	t := catalog.Topic{ID: id, Name: name, Partitions: partitions}
	f.topics[name] = t
	return t
}

func (f *fakeCatalog) Topic(_ context.Context, name string) (catalog.Topic, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.topics[name]
	if !ok {
		return catalog.Topic{}, catalog.ErrUnknownTopic
	}
	return t, nil
}

func (f *fakeCatalog) ListTopics(context.Context) ([]catalog.Topic, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []catalog.Topic
	for _, t := range f.topics {
		out = append(out, t)
	}
	return out, nil
}

func (f *fakeCatalog) CommitOffsets(_ context.Context, group string, offsets []catalog.GroupOffset) ([]catalog.GroupPartition, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.commitErr != nil {
		return nil, f.commitErr
	}
	f.commits++
	var refused []catalog.GroupPartition
	for _, o := range offsets {
		gp := catalog.GroupPartition{Topic: o.Topic, Partition: o.Partition}
		if t, ok := f.topics[o.Topic]; !ok || o.Partition < 0 || o.Partition >= t.Partitions {
			if !slices.Contains(refused, gp) {
				refused = append(refused, gp)
			}
			continue
		}
		m := f.offsets[group]
		if m == nil {
			m = make(map[catalog.GroupPartition]catalog.GroupOffset)
			f.offsets[group] = m
		}
		m[gp] = o
	}
	return refused, nil
}

func (f *fakeCatalog) FetchOffsets(_ context.Context, group string, parts []catalog.GroupPartition) ([]catalog.GroupOffset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []catalog.GroupOffset
	for gp, o := range f.offsets[group] {
		if parts == nil || slices.Contains(parts, gp) {
			out = append(out, o)
		}
	}
	return out, nil
}

func (f *fakeCatalog) DeleteOffsets(_ context.Context, group string, parts []catalog.GroupPartition) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, gp := range parts {
		delete(f.offsets[group], gp)
	}
	if len(f.offsets[group]) == 0 {
		delete(f.offsets, group)
	}
	return nil
}

func (f *fakeCatalog) DeleteGroup(_ context.Context, group string) error {
	if f.deleting != nil {
		f.deleting <- struct{}{}
		<-f.deleteGate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.offsets, group)
	delete(f.states, group)
	return nil
}

func (f *fakeCatalog) ListGroups(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for g := range f.offsets {
		out = append(out, g)
	}
	for g := range f.states {
		if _, ok := f.offsets[g]; !ok {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out, nil
}

// ExpireOffsets expires nothing: the fake's offsets carry no commit times
// worth comparing (TestOffsetsRetention runs on SQLite).
func (f *fakeCatalog) ExpireOffsets(context.Context, time.Time) (int, error) { return 0, nil }

// AcquireLease grants every lease: the fake serves one coordinator.
func (f *fakeCatalog) AcquireLease(context.Context, string, string, time.Duration) (bool, error) {
	return true, nil
}

func (f *fakeCatalog) ReleaseLease(context.Context, string, string) error { return nil }

func (f *fakeCatalog) stored(group, topic string, partition int32) (catalog.GroupOffset, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.offsets[group][catalog.GroupPartition{Topic: topic, Partition: partition}]
	return o, ok
}

// fakePlacement coordinates every group on node 1 except those moved.
type fakePlacement struct {
	mu    sync.Mutex
	moved map[string]int32
	err   error
	epoch uint64
}

func (p *fakePlacement) ViewEpoch() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.epoch
}

// viewChanged is a change of the fleet view that left every group here.
func (p *fakePlacement) viewChanged() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.epoch++
}

func (p *fakePlacement) Coordinator(_ context.Context, key string) (int32, string, int32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return 0, "", 0, p.err
	}
	if n, ok := p.moved[key]; ok {
		return n, fmt.Sprintf("agent%d", n), 9092, nil
	}
	return 1, "agent1", 9092, nil
}

func (p *fakePlacement) Self() int32 { return 1 }

func (p *fakePlacement) move(group string, node int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.moved == nil {
		p.moved = make(map[string]int32)
	}
	p.moved[group] = node
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// harness is a running Coordinator on a fake catalog, placement and clock.
type harness struct {
	t     testing.TB
	c     *Coordinator
	cat   *fakeCatalog // nil when on another catalog
	place *fakePlacement
	clock *fakeClock
	stop  func() // ends Run (once; cleanup does it too)
}

func newHarness(t testing.TB, tweak ...func(*Config)) *harness {
	t.Helper()
	cat := newFakeCatalog()
	h := newHarnessOn(t, cat, tweak...)
	h.cat = cat
	return h
}

// newHarnessOn runs a Coordinator on cat.
func newHarnessOn(t testing.TB, cat catalog.Catalog, tweak ...func(*Config)) *harness {
	t.Helper()
	h := &harness{
		t:     t,
		place: &fakePlacement{},
		clock: &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	cfg := DefaultConfig()
	cfg.InitialRebalanceDelay = 0
	cfg.Now = h.clock.Now
	for _, f := range tweak {
		f(&cfg)
	}
	h.c = New(cfg, cat, h.place, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.c.Run(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(h.stop)
	for h.c.running.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	return h
}

// advance moves the clock and runs the timers that came due.
func (h *harness) advance(d time.Duration) {
	h.clock.mu.Lock()
	h.clock.t = h.clock.t.Add(d)
	h.clock.mu.Unlock()
	h.c.fire(h.clock.Now())
}

// do sends req at its max version unless it has one set.
func (h *harness) do(req kmsg.Request) kmsg.Response {
	h.t.Helper()
	resp, err := h.c.Handle(context.Background(), "client", "127.0.0.1", req)
	if err != nil {
		h.t.Fatalf("Handle %T: %v", req, err)
	}
	return resp
}

// async sends req in the background; the response arrives on the channel.
func (h *harness) async(req kmsg.Request) <-chan kmsg.Response {
	ch := make(chan kmsg.Response, 1)
	go func() {
		resp, err := h.c.Handle(context.Background(), "client", "127.0.0.1", req)
		if err != nil {
			h.t.Errorf("Handle %T: %v", req, err)
		}
		ch <- resp
	}()
	return ch
}

func wait[T kmsg.Response](t testing.TB, ch <-chan kmsg.Response) T {
	t.Helper()
	select {
	case r := <-ch:
		return r.(T)
	case <-time.After(10 * time.Second):
		t.Fatalf("no response")
	}
	panic("unreachable")
}

// pending reports that no response arrived yet.
func pending(ch <-chan kmsg.Response) bool {
	time.Sleep(20 * time.Millisecond)
	select {
	case r := <-ch:
		_ = r
		return false
	default:
		return true
	}
}

func errIs(t testing.TB, what string, got int16, want *kerr.Error) {
	t.Helper()
	var wantCode int16
	if want != nil {
		wantCode = want.Code
	}
	if got != wantCode {
		t.Fatalf("%s: error %s, want %s", what, errName(got), errName(wantCode))
	}
}

func joinReq(version int16, group, member string, meta string) *kmsg.JoinGroupRequest {
	r := kmsg.NewPtrJoinGroupRequest()
	r.Version = version
	r.Group = group
	r.MemberID = member
	r.SessionTimeoutMillis = 10_000
	r.RebalanceTimeoutMillis = 20_000
	r.ProtocolType = "consumer"
	p := kmsg.NewJoinGroupRequestProtocol()
	p.Name = "range"
	p.Metadata = []byte(meta)
	r.Protocols = append(r.Protocols, p)
	return r
}

func syncReq(group, member string, gen int32, assign map[string]string) *kmsg.SyncGroupRequest {
	r := kmsg.NewPtrSyncGroupRequest()
	r.Version = 5
	r.Group, r.MemberID, r.Generation = group, member, gen
	for _, id := range sortedKeys(assign) {
		a := kmsg.NewSyncGroupRequestGroupAssignment()
		a.MemberID, a.MemberAssignment = id, []byte(assign[id])
		r.GroupAssignment = append(r.GroupAssignment, a)
	}
	return r
}

func hbReq(group, member string, gen int32) *kmsg.HeartbeatRequest {
	r := kmsg.NewPtrHeartbeatRequest()
	r.Version = 4
	r.Group, r.MemberID, r.Generation = group, member, gen
	return r
}

// joinNew joins a new member with v9 (member id required) and returns its
// member id once MEMBER_ID_REQUIRED came back, and the channel of its
// second join.
func (h *harness) joinNew(group, meta string) (string, <-chan kmsg.Response) {
	h.t.Helper()
	r := h.do(joinReq(9, group, "", meta)).(*kmsg.JoinGroupResponse)
	errIs(h.t, "first join", r.ErrorCode, kerr.MemberIDRequired)
	if !strings.HasPrefix(r.MemberID, "client-") {
		h.t.Fatalf("member id %q does not start with the client id", r.MemberID)
	}
	return r.MemberID, h.async(joinReq(9, group, r.MemberID, meta))
}

// stableGroup forms a stable group of n members and returns their ids
// (leader first) and the generation.
func (h *harness) stableGroup(gid string, n int) ([]string, int32) {
	h.t.Helper()
	ids := make([]string, n)
	chans := make([]<-chan kmsg.Response, n)
	for i := range n {
		ids[i], chans[i] = h.joinNew(gid, fmt.Sprintf("meta%d", i))
		if i == 0 && n > 1 {
			// The first member alone completes a generation at once (no
			// initial delay): make it rejoin with the others.
			r := wait[*kmsg.JoinGroupResponse](h.t, chans[0])
			errIs(h.t, "join", r.ErrorCode, nil)
		}
	}
	if n > 1 {
		// Member 0 formed generation 1 alone; the others' joins started
		// a rebalance that waits for it.
		h.waitFor("others wait in the join phase", func(g *group) bool {
			if g.cl.state != statePreparingRebalance || len(g.cl.pending) > 0 {
				return false
			}
			for _, id := range ids[1:] {
				if m := g.cl.members[id]; m == nil || m.joinWait == nil {
					return false
				}
			}
			return true
		}, gid)
		chans[0] = h.async(joinReq(9, gid, ids[0], "meta0"))
	}
	var leader string
	var gen int32
	resps := make([]*kmsg.JoinGroupResponse, n)
	for i := range n {
		resps[i] = wait[*kmsg.JoinGroupResponse](h.t, chans[i])
		errIs(h.t, "join", resps[i].ErrorCode, nil)
		leader, gen = resps[i].LeaderID, resps[i].Generation
	}
	assign := make(map[string]string)
	for _, id := range ids {
		assign[id] = "assignment-of-" + id
	}
	var syncs []<-chan kmsg.Response
	for _, id := range ids {
		if id != leader {
			syncs = append(syncs, h.async(syncReq(gid, id, gen, nil)))
		}
	}
	lr := h.do(syncReq(gid, leader, gen, assign)).(*kmsg.SyncGroupResponse)
	errIs(h.t, "leader sync", lr.ErrorCode, nil)
	for _, ch := range syncs {
		sr := wait[*kmsg.SyncGroupResponse](h.t, ch)
		errIs(h.t, "sync", sr.ErrorCode, nil)
	}
	out := []string{leader}
	for _, id := range ids {
		if id != leader {
			out = append(out, id)
		}
	}
	return out, gen
}

// waitFor polls cond on the locked group until it holds.
func (h *harness) waitFor(what string, cond func(*group) bool, id string) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		g, _ := h.c.lockGroup(id, false, kindClassic)
		if g != nil {
			ok := cond(g)
			g.mu.Unlock()
			if ok {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	h.t.Fatalf("timed out waiting: %s", what)
}

func commitReq(group, member string, gen int32, topic string, offsets map[int32]int64) *kmsg.OffsetCommitRequest {
	r := kmsg.NewPtrOffsetCommitRequest()
	r.Version = 9
	r.Group, r.MemberID, r.Generation = group, member, gen
	t := kmsg.NewOffsetCommitRequestTopic()
	t.Topic = topic
	for _, p := range slices.Sorted(maps.Keys(offsets)) {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = p, offsets[p]
		t.Partitions = append(t.Partitions, rp)
	}
	r.Topics = append(r.Topics, t)
	return r
}

func commitCodes(r *kmsg.OffsetCommitResponse) map[string]int16 {
	out := make(map[string]int16)
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			out[fmt.Sprintf("%s/%d", t.Topic, p.Partition)] = p.ErrorCode
		}
	}
	return out
}

var errBoom = errors.New("boom")
