package groups

import (
	"container/heap"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/time/rate"

	"github.com/floebroker/floe/catalog"
)

// Placement tells the coordinator where groups live (the agent implements
// it with rendezvous hashing over live agents). A Placement whose view
// changes should also implement ViewEpocher.
type Placement interface {
	// Coordinator returns the node that coordinates key (a group id): node
	// id, host, port. With ErrJoining (wrapped or not) it names this node,
	// which will coordinate key but may not yet.
	Coordinator(ctx context.Context, key string) (nodeID int32, host string, port int32, err error)
	// Self is this agent's node id.
	Self() int32
}

// LeaseBounder is implemented by a Placement whose right to coordinate
// lapses unless renewed (the agent's catalog heartbeat lease):
// LeaseRemaining is how long it still holds (≤ 0: lapsed). The coordinator
// bounds its offset writes by it, so a write held up in a slow catalog
// cannot land after another agent took the group over and accepted newer
// commits (offsets going backwards).
type LeaseBounder interface {
	LeaseRemaining() time.Duration
}

// ErrJoining is Placement's error, naming this node, for a group that is
// this node's but that it must not serve yet: it joined the fleet so
// recently that an agent which has not seen it join may still serve the
// group. FindCoordinator names this node (clients come here), and the
// group's requests get COORDINATOR_LOAD_IN_PROGRESS, which clients retry,
// until the join has settled.
var ErrJoining = errors.New("groups: this agent joined the fleet too recently to take groups over")

// API is one API key this package serves and the versions it serves.
type API struct {
	Key        int16
	MinVersion int16
	MaxVersion int16
}

// apis are the APIs and versions Kafka 4.1 serves (kversion.V4_1_0; the
// minimums are KIP-896's, with JoinGroup v0-1 re-added in 4.1).
// OffsetCommit and OffsetFetch v10 (topic ids) are Kafka 4.2.
var apis = []API{
	{Key: 8, MinVersion: 2, MaxVersion: 9},  // OffsetCommit
	{Key: 9, MinVersion: 1, MaxVersion: 9},  // OffsetFetch
	{Key: 10, MinVersion: 0, MaxVersion: 6}, // FindCoordinator
	{Key: 11, MinVersion: 0, MaxVersion: 9}, // JoinGroup
	{Key: 12, MinVersion: 0, MaxVersion: 4}, // Heartbeat
	{Key: 13, MinVersion: 0, MaxVersion: 5}, // LeaveGroup
	{Key: 14, MinVersion: 0, MaxVersion: 5}, // SyncGroup
	{Key: 15, MinVersion: 0, MaxVersion: 6}, // DescribeGroups
	{Key: 16, MinVersion: 0, MaxVersion: 5}, // ListGroups
	{Key: 42, MinVersion: 0, MaxVersion: 2}, // DeleteGroups
	{Key: 47, MinVersion: 0, MaxVersion: 0}, // OffsetDelete
	{Key: 68, MinVersion: 0, MaxVersion: 1}, // ConsumerGroupHeartbeat
	{Key: 69, MinVersion: 0, MaxVersion: 1}, // ConsumerGroupDescribe
}

// Coordinator is the group coordinator of one agent. Create it with New,
// run its timers with Run, and pass it the requests of the keys APIs lists.
type Coordinator struct {
	cfg    Config
	cat    catalog.Catalog
	place  Placement
	log    *slog.Logger
	m      *metrics
	topics *topicCache

	// running is 0 before Run, 1 while Run runs, 2 after.
	running   atomic.Int32
	metaBytes atomic.Int64

	mu struct {
		sync.Mutex
		groups map[string]*group
		// loading are the loads of stored state in flight (persist.go);
		// absent the groups known to have none stored while this node
		// coordinates them.
		loading     map[string]*loadCall
		absent      map[string]struct{}
		absentEpoch uint64 // the view epoch absent was learnt at
		// deleting counts the DeleteGroups of each group in flight:
		// meanwhile its requests are COORDINATOR_LOAD_IN_PROGRESS and no
		// group of that id is created, so a member cannot join (and
		// commit) between the emptiness check and the catalog's delete
		// of the group's offsets and state, which would wipe them.
		deleting map[string]int
	}
	timers timerQueue
	// viewChanged wakes Run to check the groups' placement at once
	// (ViewChanged).
	viewChanged chan struct{}
	// placeWarn paces the warnings of failing placement: while it fails
	// (the agent's lease lapsed), every group request would log one.
	placeWarn rate.Sometimes

	// holder names this Coordinator in catalog leases; expiryHeld says
	// its last check held the offsets expiry lease.
	holder     string
	expiryHeld atomic.Bool

	// bg bounds the catalog calls of group state (cancelled when Run
	// ends); saves counts the background saves in flight.
	bg     context.Context
	stopBg context.CancelFunc
	saves  sync.WaitGroup
}

// New returns a Coordinator. cfg must be valid (see Config.Validate); an
// invalid one panics, as the agent validates configuration at start. Zero
// fields of cfg take their defaults. logger and reg may be nil.
func New(cfg Config, cat catalog.Catalog, place Placement, logger *slog.Logger, reg prometheus.Registerer) *Coordinator {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Coordinator{cfg: cfg, cat: cat, place: place, log: logger, holder: "groups-" + rand.Text(),
		viewChanged: make(chan struct{}, 1), placeWarn: rate.Sometimes{Interval: 10 * time.Second}}
	c.mu.groups = make(map[string]*group)
	c.mu.loading = make(map[string]*loadCall)
	c.mu.absent = make(map[string]struct{})
	c.bg, c.stopBg = context.WithCancel(context.Background())
	c.topics = newTopicCache(cat, cfg.TopicCacheTTL, cfg.Now)
	c.timers.init()
	c.m = newMetrics(reg, c)
	return c
}

// ForgetTopic drops the coordinator's cached view of a topic this agent
// just deleted, so that commits for it are answered from the catalog at
// once. (The catalog refuses them anyway, as it does for a topic deleted
// through another agent: the cache only saves lookups.)
func (c *Coordinator) ForgetTopic(name string) { c.topics.forget(name) }

// ViewChanged tells the coordinator that Placement's answers may have
// changed: Run checks at once which groups in memory this node still
// coordinates (as it does every OwnershipCheckInterval), dropping the
// others, so that their waiting JoinGroup and SyncGroup calls are answered
// NOT_COORDINATOR and their timers stop. It never blocks.
func (c *Coordinator) ViewChanged() {
	select {
	case c.viewChanged <- struct{}{}:
	default:
	}
}

// APIs returns the API keys Handle serves with the versions it serves; the
// agent lists them in ApiVersions and routes these keys to Handle.
func (c *Coordinator) APIs() []API {
	out := make([]API, len(apis))
	copy(out, apis)
	return out
}

// Run drives the coordinator's timers (session expiry, rebalance and sync
// timeouts, KIP-848 revocation timeouts) and drops groups this node no
// longer coordinates (every OwnershipCheckInterval, and at once after
// ViewChanged). Group requests get COORDINATOR_LOAD_IN_PROGRESS
// until Run starts and NOT_COORDINATOR after it returns. Run returns nil
// when ctx ends; waiting JoinGroup and SyncGroup calls then get
// NOT_COORDINATOR so their clients find the next coordinator.
func (c *Coordinator) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(0, 1) {
		return fmt.Errorf("groups: run: already started")
	}
	// Lag and offset retention run apart from the timer loop: their
	// catalog calls must not delay session expiries. At the end they are
	// waited for only after shutdown: a retention check may be loading a
	// group (adoptGroups), a call bounded by c.bg, which shutdown cancels.
	lagCtx, stopLag := context.WithCancel(ctx)
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		c.lagLoop(lagCtx)
	}()
	retentionDone := make(chan struct{})
	go func() {
		defer close(retentionDone)
		c.retentionLoop(lagCtx)
	}()
	defer func() { <-lagDone; <-retentionDone }()
	defer c.shutdown()
	defer stopLag()
	ownership := time.NewTicker(c.cfg.OwnershipCheckInterval)
	defer ownership.Stop()
	for {
		wait := c.timers.untilNext(c.cfg.Now())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-c.timers.wake:
			t.Stop()
		case <-ownership.C:
			t.Stop()
			c.dropMovedGroups(ctx)
		case <-c.viewChanged:
			t.Stop()
			c.dropMovedGroups(ctx)
		}
		c.fire(c.cfg.Now())
	}
}

// shutdown stops serving and releases every waiting request. Background
// saves already started may finish first (for a little while): one that
// stores a group's emptying, left undone, would have the next coordinator
// load members that are gone.
func (c *Coordinator) shutdown() {
	c.running.Store(2)
	flushed := make(chan struct{})
	go func() {
		c.saves.Wait()
		close(flushed)
	}()
	select {
	case <-flushed:
	case <-time.After(shutdownFlush):
	}
	c.stopBg()
	c.mu.Lock()
	groups := c.mu.groups
	c.mu.groups = make(map[string]*group)
	clear(c.mu.absent)
	c.mu.Unlock()
	for _, g := range groups {
		g.mu.Lock()
		g.kill(kerr.NotCoordinator.Code)
		g.mu.Unlock()
	}
	c.saves.Wait()
}

// Handle serves one request of a key APIs lists. It may block (JoinGroup and
// SyncGroup wait for the rebalance) until ctx ends, which returns ctx's
// error. Group-level failures are Kafka error codes in the response; an
// error means the request could not be answered (an unserved type or
// version, or ctx ended) and the connection should close.
func (c *Coordinator) Handle(ctx context.Context, clientID, clientHost string, req kmsg.Request) (kmsg.Response, error) {
	if !c.serves(req.Key(), req.GetVersion()) {
		return nil, fmt.Errorf("groups: %s v%d is not served", kmsg.NameForKey(req.Key()), req.GetVersion())
	}
	var (
		resp kmsg.Response
		err  error
	)
	switch r := req.(type) {
	case *kmsg.FindCoordinatorRequest:
		resp = c.findCoordinator(ctx, r)
	case *kmsg.JoinGroupRequest:
		resp, err = c.joinGroup(ctx, clientID, clientHost, r)
	case *kmsg.SyncGroupRequest:
		resp, err = c.syncGroup(ctx, r)
	case *kmsg.HeartbeatRequest:
		resp = c.heartbeat(ctx, r)
	case *kmsg.LeaveGroupRequest:
		resp = c.leaveGroup(ctx, r)
	case *kmsg.OffsetCommitRequest:
		resp = c.offsetCommit(ctx, r)
	case *kmsg.OffsetFetchRequest:
		resp = c.offsetFetch(ctx, r)
	case *kmsg.OffsetDeleteRequest:
		resp = c.offsetDelete(ctx, r)
	case *kmsg.DeleteGroupsRequest:
		resp = c.deleteGroups(ctx, r)
	case *kmsg.ListGroupsRequest:
		resp = c.listGroups(ctx, r)
	case *kmsg.DescribeGroupsRequest:
		resp = c.describeGroups(ctx, r)
	case *kmsg.ConsumerGroupHeartbeatRequest:
		resp = c.consumerHeartbeat(ctx, clientID, clientHost, r)
	case *kmsg.ConsumerGroupDescribeRequest:
		resp = c.consumerDescribe(ctx, r)
	default:
		return nil, fmt.Errorf("groups: %T is not served", req)
	}
	if err != nil {
		return nil, err
	}
	c.countErrors(req.Key(), resp)
	return resp, nil
}

func (c *Coordinator) serves(key, version int16) bool {
	for _, a := range apis {
		if a.Key == key {
			return version >= a.MinVersion && version <= a.MaxVersion
		}
	}
	return false
}

// gate is the error of a request for group id before any group logic:
// INVALID_GROUP_ID, COORDINATOR_LOAD_IN_PROGRESS before Run,
// NOT_COORDINATOR after Run or when Placement names another node (whose
// state for the group this node then drops), COORDINATOR_NOT_AVAILABLE
// when Placement fails or the group's stored state cannot be loaded. When
// it answers 0, the group's stored state is in memory (ensure).
func (c *Coordinator) gate(ctx context.Context, id string) int16 {
	if id == "" || !storable(id) {
		return kerr.InvalidGroupID.Code
	}
	switch c.running.Load() {
	case 0:
		return kerr.CoordinatorLoadInProgress.Code
	case 2:
		return kerr.NotCoordinator.Code
	}
	node, _, _, err := c.place.Coordinator(ctx, id)
	switch {
	case errors.Is(err, ErrJoining):
		return kerr.CoordinatorLoadInProgress.Code
	case err != nil:
		c.warnPlacement(id, err)
		return kerr.CoordinatorNotAvailable.Code
	}
	if node != c.place.Self() {
		c.drop(id)
		return kerr.NotCoordinator.Code
	}
	return c.ensure(ctx, id)
}

// markDeleting counts a DeleteGroups of id in flight; the function it
// returns ends it.
func (c *Coordinator) markDeleting(id string) func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.deleting == nil {
		c.mu.deleting = make(map[string]int)
	}
	c.mu.deleting[id]++
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.mu.deleting[id]--; c.mu.deleting[id] <= 0 {
			delete(c.mu.deleting, id)
		}
	}
}

// storable reports whether s can be stored as catalog text: PostgreSQL's
// text takes neither NUL nor invalid UTF-8. Group ids and offset metadata
// that cannot are refused with a code clients do not retry, rather than
// failing in the catalog with one they retry forever (and differently on
// SQLite, which would store them).
func storable(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// javaLength is the length of s as Java's String.length counts it, in
// UTF-16 code units: what Kafka compares offset.metadata.max.bytes with
// (OffsetMetadataManager.isMetadataInvalid), despite its name.
func javaLength(s string) int {
	n := 0
	for _, r := range s {
		n++
		if r > 0xFFFF {
			n++ // a surrogate pair
		}
	}
	return n
}

// groupKind tells which protocol a group speaks.
type groupKind int8

const (
	kindClassic  groupKind = 0
	kindConsumer groupKind = 1
)

func (k groupKind) String() string {
	if k == kindConsumer {
		return "consumer"
	}
	return "classic"
}

// group is one group's in-memory state. All fields but id are guarded by mu
// (scheduled by the timer queue's lock).
type group struct {
	id string
	c  *Coordinator
	mu sync.Mutex
	// dead: removed from the coordinator; whoever locks a dead group looks
	// it up again.
	dead bool
	kind groupKind
	cl   classicGroup
	cg   consumerGroup

	// Persistence (persist.go). version is the catalog version of the
	// stored state this memory matches (0: none stored). dirty: a change
	// that must be stored happened; saveQueued: a background save will
	// store it. saveSem serializes the group's saves; it is taken before
	// mu, never while holding mu.
	version    int64
	dirty      bool
	saveQueued bool
	saveSem    chan struct{}
	// retryAt: the last write failed, and the stored state is behind
	// what members were told: the group's requests and timers from then
	// on write it again.
	retryAt time.Time
	// evicted: killed while empty, to make room or because the group
	// moved: a queued save still deletes its stored state, or a later
	// load (here, or at the coordinator it moved to) would bring back
	// members that left and wait a session timeout for them. The write
	// is a compare-and-set on version, so it cannot overwrite what
	// another coordinator stored since.
	evicted bool
	// epoch is the Placement view epoch at which this memory was last
	// known to be the stored state (persist.go's recheck).
	epoch atomic.Uint64

	// scheduled is the earliest deadline queued for this group, guarded by
	// the timer queue's lock.
	scheduled time.Time
}

// empty reports whether the group has no members and nothing waiting, so
// it may be evicted or converted.
func (g *group) empty() bool {
	if g.kind == kindConsumer {
		return len(g.cg.members) == 0
	}
	return len(g.cl.members) == 0 && len(g.cl.pending) == 0
}

// noMembers reports whether the group is in Kafka's Empty state: a
// KIP-848 group without members, a classic group in stateEmpty, which
// pending members (told MEMBER_ID_REQUIRED, not joined yet) do not leave,
// and a rebalance's initial delay has not begun. DeleteGroups,
// OffsetDelete and a KIP-848 member's arrival judge a group by it, as
// Kafka's validateDeleteGroup, validateOffsetDelete and isEmpty do;
// eviction also waits for pending members (empty).
func (g *group) noMembers() bool {
	if g.kind == kindConsumer {
		return len(g.cg.members) == 0
	}
	return g.cl.state == stateEmpty
}

// kill marks g dead and answers every waiting request with code.
func (g *group) kill(code int16) {
	if g.dead {
		return
	}
	g.dead = true
	if g.kind == kindClassic {
		for _, m := range g.cl.members {
			m.failWaits(code)
		}
	}
	g.releaseAll()
}

// releaseAll drops every member's memory accounting.
func (g *group) releaseAll() {
	for _, m := range g.cl.members {
		g.c.adjustBytes(&m.bytes, 0)
		g.c.m.members[kindClassic].Add(-1)
	}
	for _, m := range g.cg.members {
		g.c.adjustBytes(&m.bytes, 0)
		g.c.m.members[kindConsumer].Add(-1)
	}
	g.cl.members = nil
	g.cg.members = nil
}

// lookup returns the live group id, creating an empty one of kind when
// create is set. A nil group with code 0 means it does not exist.
func (c *Coordinator) lookup(id string, create bool, kind groupKind) (*group, int16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.mu.groups[id]; g != nil {
		return g, 0
	}
	if !create {
		return nil, 0
	}
	if c.mu.deleting[id] > 0 {
		// A request that passed gate just before a DeleteGroups began.
		return nil, kerr.CoordinatorLoadInProgress.Code
	}
	if c.running.Load() == 2 {
		// Shut down: a request that passed gate just before must not
		// create a group no timer will ever serve.
		return nil, kerr.NotCoordinator.Code
	}
	if len(c.mu.groups) >= c.cfg.MaxGroups && !c.evictOneLocked() {
		c.log.Warn("groups: too many groups in memory", "max", c.cfg.MaxGroups)
		return nil, kerr.CoordinatorNotAvailable.Code
	}
	g := c.newGroup(id, kind)
	g.epoch.Store(c.viewEpoch())
	c.mu.groups[id] = g
	delete(c.mu.absent, id)
	return g, 0
}

func (c *Coordinator) newGroup(id string, kind groupKind) *group {
	g := &group{id: id, c: c, kind: kind, saveSem: make(chan struct{}, 1)}
	g.cl.init()
	g.cg.init()
	return g
}

// lockGroup returns id's group locked, retrying when it died between the
// lookup and the lock.
func (c *Coordinator) lockGroup(id string, create bool, kind groupKind) (*group, int16) {
	for {
		g, code := c.lookup(id, create, kind)
		if g == nil {
			return nil, code
		}
		g.mu.Lock()
		if !g.dead {
			return g, 0
		}
		g.mu.Unlock()
	}
}

// settle is deferred right after a successful lockGroup, around the state
// machine's work: it unlocks g as unlock does. If that work panicked, g's
// state may be half updated, and a group left locked would make every later
// request and timer of it wait forever (and, through fire, of every group):
// g is killed instead — the next request loads its last stored state, as
// after a coordinator move — and the panic goes on to the caller (the
// agent fails that request; the timer loop logs it).
func (c *Coordinator) settle(g *group) {
	if v := recover(); v != nil {
		c.reset(g, v)
	}
	c.unlock(g)
}

// settleQuiet is settle for work that only moves g's deadlines later (a
// heartbeat): the deadline already queued stays valid, so it is not
// recomputed, which would cost a pass over the members.
func (c *Coordinator) settleQuiet(g *group) {
	if v := recover(); v != nil {
		c.reset(g, v)
	}
	c.queueSave(g) // a failed write due again
	g.mu.Unlock()
}

// reset kills and unlocks g after a panic v in its state machine (see
// settle), then panics with v again.
func (c *Coordinator) reset(g *group, v any) {
	c.log.Error("groups: panic in a group's state machine; the group is reset", "group", g.id, "panic", v, "stack", string(debug.Stack()))
	func() {
		defer func() { _ = recover() }() // best effort on broken state
		g.kill(kerr.NotCoordinator.Code)
	}()
	g.dead = true
	g.mu.Unlock()
	c.remove(g)
	panic(v)
}

// unlock releases g, queueing its next deadline and removing it from the
// coordinator if it died.
func (c *Coordinator) unlock(g *group) {
	next := g.nextDeadline()
	dead := g.dead
	c.queueSave(g)
	g.mu.Unlock()
	if dead {
		c.remove(g)
		return
	}
	c.timers.schedule(g, next)
}

func (g *group) nextDeadline() time.Time {
	if g.dead {
		return time.Time{}
	}
	if g.kind == kindConsumer {
		return g.cg.nextDeadline(g.c.cfg)
	}
	return g.cl.nextDeadline()
}

// remove deletes g from the map if it is still the group there.
func (c *Coordinator) remove(g *group) {
	c.mu.Lock()
	if c.mu.groups[g.id] == g {
		delete(c.mu.groups, g.id)
	}
	c.mu.Unlock()
}

// drop forgets id's in-memory state (the group moved to another node): if
// the group comes back to this node, its state is loaded again, as what
// this node held may have changed under another coordinator meanwhile.
func (c *Coordinator) drop(id string) {
	c.mu.Lock()
	g := c.mu.groups[id]
	delete(c.mu.absent, id)
	c.mu.Unlock()
	if g == nil {
		return
	}
	g.mu.Lock()
	// An emptied group's queued save still runs (see evicted). (A group
	// already dead was reset, its members cleared by kill: not emptied.)
	g.evicted = !g.dead && g.empty()
	g.kill(kerr.NotCoordinator.Code)
	g.mu.Unlock()
	c.remove(g)
}

// evictOneLocked removes one empty group to make room. c.mu is held; group
// locks are only tried, never waited for, to keep the lock order (a group's
// lock is never held while taking c.mu).
func (c *Coordinator) evictOneLocked() bool {
	for id, g := range c.mu.groups {
		if !g.mu.TryLock() {
			continue
		}
		ok := g.empty()
		if ok {
			// A save still queued deletes its stored state (persist.go).
			g.evicted = true
			g.kill(kerr.NotCoordinator.Code)
			delete(c.mu.groups, id)
		}
		g.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

func (c *Coordinator) numGroups() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mu.groups)
}

func (c *Coordinator) groupIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.mu.groups))
	for id := range c.mu.groups {
		ids = append(ids, id)
	}
	return ids
}

// warnPlacement logs a failed placement, at most once every 10 s.
func (c *Coordinator) warnPlacement(group string, err error) {
	c.placeWarn.Do(func() {
		c.log.Warn("groups: placement failed; group requests are answered COORDINATOR_NOT_AVAILABLE (logged at most every 10 s)", "group", group, "err", err)
	})
}

// dropMovedGroups drops the groups Placement no longer gives this node
// (and forgets which moved groups had no stored state). A failing
// Placement gives this node none: the agent cannot coordinate (its lease
// lapsed, or another process took its id), and another agent may soon
// coordinate these groups, so their memory must neither be served later
// nor act meanwhile — a session timer expiring members whose heartbeats
// are refused would store the group without them.
func (c *Coordinator) dropMovedGroups(ctx context.Context) {
	self := c.place.Self()
	c.mu.Lock()
	absent := make([]string, 0, len(c.mu.absent))
	for id := range c.mu.absent {
		absent = append(absent, id)
	}
	c.mu.Unlock()
	for _, id := range absent {
		if node, _, _, err := c.place.Coordinator(ctx, id); err != nil || node != self {
			c.mu.Lock()
			delete(c.mu.absent, id)
			c.mu.Unlock()
		}
	}
	var unplaced int
	var placeErr error
	for _, id := range c.groupIDs() {
		node, _, _, err := c.place.Coordinator(ctx, id)
		switch {
		case errors.Is(err, ErrJoining):
			// Nothing of it should be in memory yet; whatever is, is
			// loaded afresh once the join settles.
			c.drop(id)
		case err != nil:
			unplaced++
			placeErr = err
			c.drop(id)
		case node != self:
			c.log.Info("groups: group moved to another coordinator", "group", id, "node", node)
			c.drop(id)
		}
	}
	if unplaced > 0 {
		c.log.Warn("groups: placement failed; dropped the groups in memory, to be loaded from the catalog when placement is back", "groups", unplaced, "err", placeErr)
	}
}

// fire runs the timers of every group whose deadline has passed.
func (c *Coordinator) fire(now time.Time) {
	for _, g := range c.timers.due(now) {
		c.expire(g, now)
	}
}

// expire runs g's timers; a panic in them resets g (settle) and is logged
// there, and the other groups' timers still run.
func (c *Coordinator) expire(g *group, now time.Time) {
	defer func() { _ = recover() }()
	g.mu.Lock()
	if g.dead {
		g.mu.Unlock()
		return
	}
	defer c.settle(g)
	if g.kind == kindConsumer {
		g.cg.expire(g, now)
	} else {
		g.cl.expire(g, now)
	}
}

// adjustBytes sets a member's accounted metadata size to n, returning false
// (and changing nothing) when growing it would exceed the total budget.
func (c *Coordinator) adjustBytes(held *int64, n int64) bool {
	delta := n - *held
	if delta > 0 && c.metaBytes.Add(delta) > c.cfg.MaxTotalMetadataBytes {
		c.metaBytes.Add(-delta)
		return false
	} else if delta <= 0 {
		c.metaBytes.Add(delta)
	}
	*held = n
	return true
}

// countErrors counts the error codes of a response.
func (c *Coordinator) countErrors(key int16, resp kmsg.Response) {
	api := kmsg.NameForKey(key)
	each := func(code int16) {
		if code != 0 {
			c.m.errors.WithLabelValues(api, errName(code)).Inc()
		}
	}
	switch r := resp.(type) {
	case *kmsg.JoinGroupResponse:
		each(r.ErrorCode)
	case *kmsg.SyncGroupResponse:
		each(r.ErrorCode)
	case *kmsg.HeartbeatResponse:
		each(r.ErrorCode)
	case *kmsg.LeaveGroupResponse:
		each(r.ErrorCode)
		for _, m := range r.Members {
			each(m.ErrorCode)
		}
	case *kmsg.ConsumerGroupHeartbeatResponse:
		each(r.ErrorCode)
	case *kmsg.OffsetCommitResponse:
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				each(p.ErrorCode)
			}
		}
	case *kmsg.OffsetFetchResponse:
		each(r.ErrorCode)
		for _, g := range r.Groups {
			each(g.ErrorCode)
		}
	case *kmsg.FindCoordinatorResponse:
		each(r.ErrorCode)
		for _, k := range r.Coordinators {
			each(k.ErrorCode)
		}
	}
}

func errName(code int16) string {
	if code == 0 {
		return "NONE"
	}
	if err := kerr.ErrorForCode(code); err != nil {
		if ke, ok := err.(*kerr.Error); ok {
			return ke.Message
		}
	}
	return "UNKNOWN"
}

// timerQueue orders group deadlines. A group has at most one live entry
// (its earliest deadline, group.scheduled); superseded entries are skipped
// when they surface.
type timerQueue struct {
	mu   sync.Mutex
	h    deadlineHeap
	wake chan struct{}
}

type deadline struct {
	at time.Time
	g  *group
}

type deadlineHeap []deadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)        { *h = append(*h, x.(deadline)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = deadline{}
	*h = old[:len(old)-1]
	return x
}

func (q *timerQueue) init() { q.wake = make(chan struct{}, 1) }

// schedule queues g's deadline at, unless an earlier one is queued.
func (q *timerQueue) schedule(g *group, at time.Time) {
	if at.IsZero() {
		return
	}
	q.mu.Lock()
	if !g.scheduled.IsZero() && !at.Before(g.scheduled) {
		q.mu.Unlock()
		return
	}
	g.scheduled = at
	heap.Push(&q.h, deadline{at: at, g: g})
	first := q.h[0].g == g && q.h[0].at.Equal(at)
	q.mu.Unlock()
	if first {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// due pops the groups whose deadline is at or before now.
func (q *timerQueue) due(now time.Time) []*group {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*group
	for len(q.h) > 0 && !q.h[0].at.After(now) {
		d := heap.Pop(&q.h).(deadline)
		if !d.g.scheduled.Equal(d.at) {
			continue // superseded by an earlier entry that already fired
		}
		d.g.scheduled = time.Time{}
		out = append(out, d.g)
	}
	return out
}

// untilNext is how long Run may sleep: until the earliest deadline, at
// most a second (so a clock that jumps is noticed) and at least a
// millisecond.
func (q *timerQueue) untilNext(now time.Time) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := time.Second
	if len(q.h) > 0 {
		d = min(d, q.h[0].at.Sub(now))
	}
	return max(d, time.Millisecond)
}
