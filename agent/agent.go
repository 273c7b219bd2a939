// Package agent is Floe's Kafka protocol server: it accepts Kafka client
// connections, decodes every request with franz-go's kmsg, dispatches it by
// API key to one handler per API (one file each: produce.go, fetch.go,
// metadata.go, …) and writes the responses back in request order. It owns
// the agent's life in the fleet (registration, heartbeat, the view of the
// live agents that Metadata serves and group placement uses, leaving on
// shutdown), per-zone listeners, the tail index that follows catalog
// commits, and the read caches in front of the bucket (tail and catch-up,
// cache.go). The consumer-group APIs are served by the coordinator of
// agent/groups, which the agent runs.
//
// Guarantees:
//   - The one rule: a produce partition is answered with ErrorCode 0 only
//     after the WAL's Ack for it resolved successfully, which happens only
//     once its segment object is in the bucket and its offsets are committed
//     in the catalog. acks=0 produces get no response at all.
//   - Record batches are served byte for byte as producers sent them, except
//     the base offset (outside the CRC) and, for message.timestamp.type =
//     LogAppendTime topics, the max timestamp and timestamp-type bit (with
//     the CRC recomputed) written on produce.
//   - Responses on one connection leave in request order. Produce requests
//     of one connection are appended to the WAL in request order, so an
//     idempotent producer's pipelined batches never reorder.
//   - A frame larger than MaxRequestBytes, a negative size, an undecodable
//     request, an unknown API key or an unsupported version (except for
//     ApiVersions, which is answered as Kafka answers it) closes the
//     connection before anything is allocated for the body.
//   - A handler's panic is recovered and logged; it closes that connection
//     and never the agent.
//   - A fetch with nothing new waits on commit notifications (the commit
//     follower's, fed by catalog.Watch), never by polling the catalog.
//   - A fetch at the tail (the offset is in the tail index) reads neither
//     the catalog nor, at the agent that wrote the rows, the bucket; the
//     log start offset and topics it checks are re-read in the background,
//     the log starts of all partitions due together, in one catalog read
//     per half second (logstart.go), not one per partition. A log start
//     is never served older than maxLogStartAge (a partition fetched after
//     a pause reads it), the wait of a DeleteRecords answer.
//   - Concurrent reads of one object range share one bucket GET. Catch-up
//     reads (below the tail index, or far behind its newest rows and no
//     longer in the tail cache) use their own cache and a bounded number
//     of bucket reads, so they never evict the tail or take every read.
//   - A connection holds at most one built fetch response: a fetch builds
//     its response only once the connection's previous one was written.
//   - A long-polling fetch is woken only by commits to its topics (and by
//     their deletion on this agent).
//   - The agent answers a consumer group's requests only while it holds its
//     coordination lease, which lapses before any other agent can count it
//     dead and take its groups over (lease.go), even when it is cut off
//     from the catalog but not from clients — provided the agents' clocks
//     agree within the heartbeat interval.
//
// Differences from Kafka are listed in COMPATIBILITY.md.
package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/floebroker/floe/agent/groups"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/wal"
)

// Deps are the agent's collaborators. Catalog, Bucket and WAL are required.
type Deps struct {
	Catalog catalog.Catalog
	// Bucket is read by fetches and timestamp lookups; the agent never
	// writes to it (the WAL's sink does).
	Bucket objstore.BucketReader
	// WAL takes produced batches; its Run is supervised by the caller,
	// which must keep it running until the agent's Run has returned so
	// in-flight produces can finish.
	WAL *wal.Log
	// Logger; nil discards.
	Logger *slog.Logger
	// Registerer for floe_agent_* metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Agent is one Kafka protocol server. Create it with New, then call Run or
// Serve once.
type Agent struct {
	cfg    Config
	cat    catalog.Catalog
	bucket objstore.BucketReader
	wal    *wal.Log
	log    *slog.Logger
	now    func() time.Time
	m      *metrics

	apis   apiTable
	budget *requestBudget // request frames held across connections
	// respBudget: fetch response records held across connections.
	respBudget *responseBudget
	// decompress is held while a batch is decompressed (see
	// decompressing).
	decompress chan struct{}
	groups     *groups.Coordinator
	topics     *topicCache
	// allTopics is the last topic list the catalog gave a Metadata request
	// for all topics, served while the catalog cannot list them.
	allTopics     atomic.Pointer[[]catalog.Topic]
	allTopicsWarn rate.Sometimes
	// listings counts the listings of every topic (see sweepTopics).
	listings atomic.Uint64
	// tlsConf is the listeners' TLS (nil: plaintext; see tls.go).
	tlsConf    *tls.Config
	tlsFailLog rate.Sometimes
	tail       *tailIndex
	// cache serves tail reads, catchup reads far behind it (cache.go).
	cache   *rangeCache
	catchup *rangeCache
	// catchingUp counts the partitions catch-up reads share the catch-up
	// cache among (catchUpAhead).
	catchingUp catchUpPartitions

	// members is the current view of the fleet (*membership).
	members atomic.Pointer[membership]
	// viewEpoch changes (after the view is stored) whenever the set of
	// agents in the view, or this agent's registration, changes, and when
	// its lease lapses or is renewed after a lapse: the group coordinator
	// re-checks its groups' memory then (ViewEpoch, viewChanged).
	viewEpoch atomic.Uint64
	// lease is the coordination lease (lease.go): this agent coordinates
	// groups only while its heartbeats keep the others from counting it
	// expired.
	lease coordLease
	// joinedFrom is when this agent may serve the groups its view places
	// on it after it (re-)registered, as time since leaseOrigin;
	// math.MaxInt64 until its first view after registering is read
	// (lease.go, settleJoin).
	joinedFrom atomic.Int64
	// advertise is the address registered for this agent (see
	// listeners.go for its format).
	advertise string
	// listeners are the bound listener addresses by zone, for tests.
	listenersMu sync.Mutex
	listeners   map[string]string

	// draining is closed when shutdown starts: readers stop taking new
	// requests and long polls return what they have.
	draining  chan struct{}
	drainOnce sync.Once

	connsMu sync.Mutex
	conns   map[*conn]struct{}
	perIP   map[string]int // open connections by client IP, under connsMu
	// refusedLog paces the log of refused connections, badInputLog that
	// of connections closed for what they sent: a flood of either must
	// not flood the log too (each is counted in the metrics).
	refusedLog, badInputLog rate.Sometimes
	// handlers counts requests being handled, so shutdown can wait for
	// them.
	handlers sync.WaitGroup
	// seal decides when the WAL's open buffer is sealed early (produce.go).
	seal sealWatch

	started atomic.Bool
	ready   atomic.Bool
	// incarnation tells this process's registration from another's under
	// the same agent ID (catalog.Catalog.RegisterAgent): its start time.
	incarnation time.Time
}

// New returns an agent. It validates cfg and deps but does no I/O.
func New(cfg Config, deps Deps) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent: config: %w", err)
	}
	if deps.Catalog == nil || deps.Bucket == nil || deps.WAL == nil {
		return nil, errors.New("agent: deps: catalog, bucket and WAL are required")
	}
	cfg = cfg.withDefaults()
	if cfg.AgentID == "" {
		cfg.AgentID = NewAgentID()
	}
	a := &Agent{
		cfg:           cfg,
		cat:           deps.Catalog,
		bucket:        deps.Bucket,
		wal:           deps.WAL,
		log:           deps.Logger,
		now:           deps.Now,
		draining:      make(chan struct{}),
		conns:         make(map[*conn]struct{}),
		perIP:         make(map[string]int),
		refusedLog:    rate.Sometimes{Interval: time.Second},
		badInputLog:   rate.Sometimes{Interval: time.Second},
		allTopicsWarn: rate.Sometimes{Interval: 10 * time.Second},
		tlsFailLog:    rate.Sometimes{Interval: time.Minute},
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.log = a.log.With("agent", cfg.AgentID)
	if a.now == nil {
		a.now = time.Now
	}
	tlsConf, err := newTLSConfig(cfg, a.log)
	if err != nil {
		return nil, fmt.Errorf("agent: config: %w", err)
	}
	a.tlsConf = tlsConf
	a.m = newMetrics(deps.Registerer)
	a.budget = newRequestBudget(cfg.MaxQueuedRequestBytes, a.m)
	a.respBudget = newResponseBudget(cfg.MaxQueuedResponseBytes, a.m)
	a.decompress = make(chan struct{}, 1)
	a.groups = groups.New(cfg.Groups, deps.Catalog, a, a.log.With("component", "groups"), deps.Registerer)
	a.apis = a.newAPITable()
	a.topics = newTopicCache(cfg.TopicCacheTTL, a.now)
	a.tail = newTailIndex(a.now)
	a.cache = newRangeCache(cfg.ReadCacheBytes, 0, a.m.cache("tail"))
	a.catchup = newRangeCache(cfg.CatchUpCacheBytes, cfg.CatchUpReads, a.m.cache("catchup"))
	a.members.Store(&membership{})
	a.joinedFrom.Store(math.MaxInt64)
	a.seal.holdLimit, a.seal.now = deps.WAL.FlushInterval(), a.now
	return a, nil
}

// NewAgentID returns a fresh random agent id (a ULID).
func NewAgentID() string {
	return ulid.MustNew(ulid.Now(), rand.Reader).String()
}

// ID returns the agent id registered in the catalog.
func (a *Agent) ID() string { return a.cfg.AgentID }

// NodeID returns the Kafka broker id the catalog assigned, or -1 before
// registration.
func (a *Agent) NodeID() int32 {
	if m := a.members.Load(); m.registered {
		return m.self.NodeID
	}
	return -1
}

// Ready reports whether the agent is registered and serving.
func (a *Agent) Ready() bool { return a.ready.Load() && a.members.Load().registered }

// OnUploaded is the flush.Config.OnUploaded hook: it caches the object this
// agent just put, before its commit, so that however this agent learns of
// the commit (OnCommitted or the commit follower, whichever is first) the
// partition's tail is served from memory with no GET. Safe for concurrent
// use; cheap.
func (a *Agent) OnUploaded(key string, obj []byte) {
	a.cache.put(key, 0, obj)
}

// OnCommitted is the flush.Config.OnCommitted hook: it adds the commit's
// rows to the tail index (the object is cached already, by OnUploaded),
// and the commit follower then steps over this commit instead of reading
// it back from the catalog, so rows must hold every row the commit stored
// (flush.Sink's rows do). Safe for concurrent use; cheap.
func (a *Agent) OnCommitted(_ string, _ []byte, rows []catalog.BatchRow) {
	a.tail.addOwn(rows)
}

// Run listens on cfg.Listen and serves until ctx ends (see Serve).
func (a *Agent) Run(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("agent: listen %s: %w", a.cfg.Listen, err)
	}
	return a.Serve(ctx, ln)
}

// Serve registers the agent in the catalog with ln's address (or
// cfg.Advertise) and those of its per-zone listeners (cfg.ZoneListeners,
// which Serve opens), follows catalog commits, heartbeats, runs the group
// coordinator, and serves Kafka connections until ctx ends.
//
// Then it shuts down in this order: it stops heartbeating and deregisters,
// so the other agents stop listing it; while others are live it keeps
// serving for cfg.ShutdownGrace with answers (Metadata, FindCoordinator)
// that already leave it out, so clients that refresh move away; then it
// stops accepting, stops the coordinator (waiting joins get
// NOT_COORDINATOR), stops reading new requests, lets in-flight requests
// finish (produces wait for their acks, so the WAL must still run) and
// returns. Serve closes ln. It may be called once.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	if !a.started.CompareAndSwap(false, true) {
		ln.Close()
		return errors.New("agent: Serve called twice")
	}
	a.incarnation = time.Now().UTC().Truncate(time.Microsecond)
	listeners, err := a.listenZones(ctx, ln)
	if err != nil {
		ln.Close()
		return err
	}
	closeAll := func() {
		for _, l := range listeners {
			l.ln.Close()
		}
	}
	a.advertise = registeredAddr(listeners)
	self, err := a.register(ctx)
	if err != nil {
		closeAll()
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// Told to stop while waiting for the id: nothing was
			// served, so there is nothing to drain. A clean stop.
			a.log.Info("stopped before serving, while waiting for the agent id", "agent", a.cfg.AgentID)
			return nil
		}
		return fmt.Errorf("agent: register %s: %w", a.cfg.AgentID, err)
	}
	a.members.Store(&membership{self: self, registered: true, agents: []catalog.Agent{self}})
	a.viewChanged()
	a.settleJoin(a.refreshMembers(ctx))
	a.log.Info("agent serving", "listen", ln.Addr().String(), "advertise", a.advertise, "node", self.NodeID, "zone", a.cfg.Zone,
		"tls", a.tlsConf != nil, "tls_client_auth", a.tlsConf != nil && a.tlsConf.ClientCAs != nil)

	// The follower outlives the accept loop: in-flight fetches still want
	// commit notifications while they finish. The heartbeat stops first,
	// before deregistration (it would register the agent again).
	bgCtx, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	var bg errgroup.Group
	bg.Go(func() error { a.followCommits(bgCtx); return nil })
	bg.Go(func() error { a.refreshLogStarts(bgCtx); return nil })
	bg.Go(func() error { a.sweepTopics(bgCtx); return nil })
	bg.Go(func() error { a.followTopicConfigs(bgCtx); return nil })
	hbCtx, stopHB := context.WithCancel(bgCtx)
	defer stopHB()
	hbDone := make(chan struct{})
	go func() { defer close(hbDone); a.heartbeat(hbCtx) }()
	coordCtx, stopCoord := context.WithCancel(bgCtx)
	defer stopCoord()
	coordDone := make(chan error, 1)
	go func() { coordDone <- a.groups.Run(coordCtx) }()
	if err := a.tail.waitStarted(ctx); err != nil {
		a.log.Warn("commit follower did not start before shutdown", "err", err)
	}

	a.ready.Store(true)
	var accepting sync.WaitGroup
	for _, l := range listeners {
		accepting.Go(func() { a.acceptLoop(l.ln, l.zone) })
	}

	<-ctx.Done()
	a.ready.Store(false)
	a.log.Info("agent draining")
	stopHB()
	<-hbDone
	a.stopLease()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	others := a.leave(dctx)
	cancel()
	if others {
		// The other agents re-read the live agents every heartbeat
		// interval; until they have, their metadata still lists this one.
		a.log.Info("deregistered; serving until the fleet has noticed", "grace", a.cfg.ShutdownGrace)
		sleepCtx(context.Background(), a.cfg.ShutdownGrace)
	}
	closeAll()
	accepting.Wait()
	stopCoord()
	if err := <-coordDone; err != nil {
		a.log.Warn("group coordinator failed", "err", err)
	}
	a.drain()
	stopBG()
	_ = bg.Wait()
	a.log.Info("agent stopped")
	return nil
}

// acceptLoop accepts connections until ln is closed. zone is the zone of a
// per-zone listener ("" for the main one).
func (a *Agent) acceptLoop(ln net.Listener, zone string) {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and retry
			// rather than exit, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			a.log.Warn("accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		a.serveConn(nc, zone)
	}
}

// serveConn starts the goroutines of one connection, unless the agent is
// draining or the connection is over MaxConnections or
// MaxConnectionsPerIP: it is then closed at once, before anything is read
// or allocated for it (Kafka closes connections over max.connections.per.ip
// the same way).
func (a *Agent) serveConn(nc net.Conn, zone string) {
	ip := connIP(nc)
	a.connsMu.Lock()
	select {
	case <-a.draining:
		a.connsMu.Unlock()
		nc.Close()
		return
	default:
	}
	var refused string
	switch {
	case a.cfg.MaxConnections > 0 && len(a.conns) >= a.cfg.MaxConnections:
		refused = "max_connections"
	case a.cfg.MaxConnectionsPerIP > 0 && a.perIP[ip] >= a.cfg.MaxConnectionsPerIP:
		refused = "max_connections_per_ip"
	}
	if refused != "" {
		a.connsMu.Unlock()
		// Counted before the close, so that whoever sees the close sees
		// the count.
		a.m.connsRefused.WithLabelValues(refused).Inc()
		nc.Close()
		a.refusedLog.Do(func() { // a flood must not flood the log too
			a.log.Warn("refusing connections over a connection limit (logged at most once a second)", "remote", nc.RemoteAddr().String(), "limit", refused,
				"max_connections", a.cfg.MaxConnections, "max_connections_per_ip", a.cfg.MaxConnectionsPerIP)
		})
		return
	}
	c := newConn(a, nc, zone)
	a.conns[c] = struct{}{}
	a.perIP[ip]++
	a.connsMu.Unlock()
	a.m.connsActive.Inc()
	a.m.connsTotal.Inc()
	go func() {
		c.serve()
		a.connsMu.Lock()
		delete(a.conns, c)
		if a.perIP[ip]--; a.perIP[ip] == 0 {
			delete(a.perIP, ip)
		}
		a.connsMu.Unlock()
		a.m.connsActive.Dec()
	}()
}

// connIP is the client's IP address, the key of MaxConnectionsPerIP.
func connIP(nc net.Conn) string {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(nc.RemoteAddr().String())
	if err != nil {
		return nc.RemoteAddr().String()
	}
	return host
}

// drainSlack is how long past ProduceTimeout the drain waits for
// in-flight requests: a produce waits at most ProduceTimeout for its
// commit, after an append that may wait for WAL buffer space.
const drainSlack = 5 * time.Second

// drain stops every connection's reader, waits for the in-flight requests
// and their responses, then closes the connections. Requests still
// unanswered ProduceTimeout plus drainSlack in have their connections
// closed, which cancels them: a request waiting on an unreachable catalog
// would otherwise hold the drain for its retries, many minutes, past any
// stop timeout.
func (a *Agent) drain() {
	a.drainOnce.Do(func() { close(a.draining) })
	a.connsMu.Lock()
	conns := make([]*conn, 0, len(a.conns))
	for c := range a.conns {
		conns = append(conns, c)
	}
	a.connsMu.Unlock()
	for _, c := range conns {
		c.stopReading()
	}
	deadline := time.NewTimer(a.cfg.ProduceTimeout + drainSlack)
	defer deadline.Stop()
	for i, c := range conns {
		// Not just the writer (c.done): a reader still inside dispatch
		// could start a handler after handlers.Wait below returned.
		select {
		case <-c.served:
			continue
		case <-deadline.C:
		}
		a.log.Warn("requests still in flight after the produce timeout; closing their connections", "waited", a.cfg.ProduceTimeout+drainSlack)
		for _, c := range conns[i:] {
			c.close("drain")
		}
		for _, c := range conns[i:] {
			<-c.served
		}
		break
	}
	a.handlers.Wait()
}
