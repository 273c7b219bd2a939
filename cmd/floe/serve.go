package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/agent/flush"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/compaction"
	"github.com/floebroker/floe/objstore/bucket"
	"github.com/floebroker/floe/wal"
)

// devInitialRebalanceDelay is `floe dev`'s group.initial-rebalance-delay.
const devInitialRebalanceDelay = 50 * time.Millisecond

// The shortest --upload-max-age and --heartbeat-interval an agent works
// with (the fault tests run at 100 ms and 200 ms).
const (
	minUploadMaxAge = 100 * time.Millisecond
	minHeartbeat    = 100 * time.Millisecond
)

// serveConfig is everything `floe dev` and `floe agent` take.
type serveConfig struct {
	mode        string // "dev" or "agent"
	configFile  string
	catalogURL  string
	bucketURL   string
	data        string
	adminListen string
	logLevel    string
	logFormat   string

	flushInterval    time.Duration
	flushMinInterval time.Duration // 0: flushInterval / 5 (wal's default)
	flushBytes       int64
	uploadMaxAge     time.Duration
	maxBufferedBytes int64
	walDrainTimeout  time.Duration

	agent      agent.Config
	catalog    catalog.Options
	compaction compaction.Config

	// onReady, if set, is called with the Kafka and admin addresses once
	// the agent serves (tests use it).
	onReady func(kafkaAddr, adminAddr string)
}

// newServeFlags registers the serve settings with the mode's defaults.
func newServeFlags(mode string, stderr io.Writer) (*flag.FlagSet, *serveConfig) {
	c := &serveConfig{mode: mode, agent: agent.DefaultConfig(), logLevel: "info", logFormat: "text",
		flushInterval: wal.DefaultFlushInterval, flushBytes: wal.DefaultFlushBytes, maxBufferedBytes: wal.DefaultMaxBufferedBytes,
		walDrainTimeout: wal.DefaultDrainTimeout}
	if mode == "dev" {
		c.data = "./floe-data"
		c.adminListen = "localhost:" + defaultAdminPort
		c.flushInterval = 10 * time.Millisecond
		c.agent.AutoCreateTopics = true
	} else {
		c.data = "./floe-wal"
		c.adminListen = ":" + defaultAdminPort
		c.logFormat = "json"
	}
	fs := flag.NewFlagSet("floe "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.configFile, "config", "", "YAML file of settings (keys are flag names)")
	if mode == "dev" {
		fs.StringVar(&c.catalogURL, "catalog", "", "catalog URL (default: sqlite under --data)")
		fs.StringVar(&c.bucketURL, "bucket", "", "bucket URL (default: a directory under --data)")
		fs.StringVar(&c.data, "data", c.data, "directory holding the bucket, the SQLite catalog and the WAL")
	} else {
		fs.StringVar(&c.catalogURL, "catalog", "", "catalog URL: postgres://… or sqlite:///path (required)")
		fs.StringVar(&c.bucketURL, "bucket", "", "bucket URL: s3://…, gs://…, minio://…, file://… or mem:// (required)")
		fs.StringVar(&c.data, "data", c.data, "directory of the write-ahead log")
	}
	fs.StringVar(&c.adminListen, "admin-listen", c.adminListen, "host:port of the admin HTTP server (/metrics, /healthz, /readyz, /debug/pprof); empty disables it")
	fs.StringVar(&c.logLevel, "log-level", c.logLevel, "log level: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", c.logFormat, "log format: text or json")
	fs.DurationVar(&c.flushInterval, "flush-interval", c.flushInterval, "flush the WAL to a segment object at least this often")
	fs.DurationVar(&c.flushMinInterval, "flush-min-interval", c.flushMinInterval, "shortest gap between flushes when every producer with data in the buffer has its in-flight window full and waits for acks (default: flush-interval / 5; equal to flush-interval: never flush early)")
	fs.Int64Var(&c.flushBytes, "flush-bytes", c.flushBytes, "flush once this many bytes are buffered")
	c.uploadMaxAge = flush.DefaultMaxUploadAge
	fs.DurationVar(&c.uploadMaxAge, "upload-max-age", c.uploadMaxAge, "a segment object put longer ago than this is put again before its commit, and a commit call lasts at most this long (--compaction.gc-grace must be at least four times it)")
	fs.Int64Var(&c.maxBufferedBytes, "max-buffered-bytes", c.maxBufferedBytes, "produce waits while this many bytes are not yet committed")
	fs.DurationVar(&c.walDrainTimeout, "wal-drain-timeout", c.walDrainTimeout, "on shutdown, how long the WAL keeps flushing and committing what it holds; what is left stays in --data for the next start (exit 1)")
	c.agent.RegisterFlags(fs)
	if mode == "dev" {
		// One developer's consumers: a new group's first rebalance need
		// not wait long for more members.
		c.agent.Groups.InitialRebalanceDelay = devInitialRebalanceDelay
		fs.Lookup("group.initial-rebalance-delay").DefValue = devInitialRebalanceDelay.String()
	}
	c.catalog.RegisterFlags(fs, "catalog.")
	if mode == "dev" {
		c.compaction.DevConfig()
	}
	c.compaction.RegisterFlags(fs)
	return fs, c
}

// finish fills dev defaults that derive from --data and validates.
func (c *serveConfig) finish() error {
	walDir := c.data
	if c.mode == "dev" {
		if c.catalogURL == "" {
			c.catalogURL = "sqlite://" + filepath.Join(c.data, "catalog.db")
		}
		if c.bucketURL == "" {
			abs, err := filepath.Abs(filepath.Join(c.data, "bucket"))
			if err != nil {
				return err
			}
			c.bucketURL = "file://" + abs
		}
		walDir = filepath.Join(c.data, "wal")
	}
	c.data = walDir
	var errs []error
	if c.catalogURL == "" {
		errs = append(errs, errors.New("--catalog is required"))
	}
	if c.bucketURL == "" {
		errs = append(errs, errors.New("--bucket is required"))
	}
	if c.data == "" {
		errs = append(errs, errors.New("--data is required"))
	}
	if _, err := parseLevel(c.logLevel); err != nil {
		errs = append(errs, err)
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", c.logFormat))
	}
	// A collected object's catalog row must outlive any WAL buffer an
	// agent may still replay, or a replay of a committed buffer would be
	// committed again (flush.Config.MaxReplayAge).
	if tr := c.compaction.TombstoneRetention; tr != 0 && tr < catalog.DefaultTombstoneRetention {
		errs = append(errs, fmt.Errorf("--compaction.tombstone-retention %v: want at least %v, the agents' max replay age", tr, catalog.DefaultTombstoneRetention))
	}
	// The tail index serves rows for at most half the merge age, so it
	// never serves rows a compaction swap replaced (agent.Config.TailMaxAge).
	c.agent.TailMaxAge = max(c.compaction.WithDefaults().MergeMinAge/2, time.Nanosecond)
	// An upload older than --upload-max-age is put again before
	// its commit, and a commit call lasts at most that long; the grace
	// must leave room for both with a margin, or the orphan sweep could
	// take an object a commit is about to reference.
	// Below minUploadMaxAge every upload is put again and every commit call
	// cut short, so nothing is ever acknowledged.
	if c.uploadMaxAge < minUploadMaxAge {
		errs = append(errs, fmt.Errorf("--upload-max-age %v: want at least %v", c.uploadMaxAge, minUploadMaxAge))
	} else if g := c.compaction.GCGrace; g != 0 && g < 4*c.uploadMaxAge {
		errs = append(errs, fmt.Errorf("--compaction.gc-grace %v: want at least %v, four times --upload-max-age", g, 4*c.uploadMaxAge))
	}
	c.compaction.MaxUploadAge = c.uploadMaxAge
	// A WAL buffer of idempotent batches is dropped once nine tenths of the
	// producer expiration old (flush.Config.ProducerExpiration), and its
	// commit may land up to --upload-max-age after that check: the last
	// tenth must cover it, with room for a slow flush.
	if pe := c.compaction.ProducerExpiration; pe != 0 && c.uploadMaxAge > 0 && pe < 20*c.uploadMaxAge {
		errs = append(errs, fmt.Errorf("--compaction.producer-expiration %v: want at least %v, twenty times --upload-max-age", pe, 20*c.uploadMaxAge))
	}
	// A heartbeat is a catalog write: far below minHeartbeat the agent
	// spends itself renewing, and with a TTL under two heartbeats one
	// late renewal declares it dead (the agent's own check is only that
	// the TTL exceeds the interval).
	if hb := c.agent.HeartbeatInterval; hb < minHeartbeat {
		errs = append(errs, fmt.Errorf("--heartbeat-interval %v: want at least %v", hb, minHeartbeat))
	} else if ttl := c.agent.AgentTTL; ttl < 2*hb {
		errs = append(errs, fmt.Errorf("--agent-ttl %v: want at least %v, twice --heartbeat-interval", ttl, 2*hb))
	}
	if err := c.agent.Validate(); err != nil {
		errs = append(errs, err)
	}
	// The WAL takes a zero drain timeout for its default: refuse it
	// rather than drain for 30 s when asked not to.
	if c.walDrainTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--wal-drain-timeout %v: must be positive", c.walDrainTimeout))
	}
	// Checked here, not only by compaction.New once the catalog, the
	// bucket and the WAL are open, so a mistake is a usage error (exit
	// 2) like the others. The holder is the agent id, random if unset.
	if !c.compaction.Disabled {
		cc := c.compaction.WithDefaults()
		cc.Cluster, cc.Holder = c.agent.ClusterID, cmp.Or(c.agent.AgentID, "agent")
		if err := cc.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.walConfig(nil, nil).Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.catalog.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

func (c *serveConfig) walConfig(logger *slog.Logger, reg prometheus.Registerer) wal.Config {
	return wal.Config{
		Dir:              c.data,
		FlushInterval:    c.flushInterval,
		FlushMinInterval: c.flushMinInterval,
		FlushBytes:       c.flushBytes,
		MaxBufferedBytes: c.maxBufferedBytes,
		DrainTimeout:     c.walDrainTimeout,
		Logger:           logger,
		Registerer:       reg,
	}
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	l, _ := parseLevel(level)
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// cmdServe is `floe dev` and `floe agent`.
func cmdServe(ctx context.Context, mode string, args []string, stderr io.Writer) error {
	fs, c := newServeFlags(mode, stderr)
	getenv := os.Getenv
	if mode == "dev" {
		getenv = devGetenv(stderr)
	}
	if err := parseLayered(fs, args, "config", getenv); err != nil {
		return err
	}
	if err := c.finish(); err != nil {
		return err
	}
	return serve(ctx, c, newLogger(stderr, c.logLevel, c.logFormat))
}

// devOnlyFlags are the settings `floe dev` takes from its command line and
// config file only, never from the environment: a shell set up for
// production (FLOE_BUCKET, FLOE_CATALOG, as the README shows) would
// otherwise run `floe dev` — and `make run` — on the production bucket
// with a new SQLite catalog that knows none of its objects, and dev's
// orphan sweep (every minute, two minutes' grace) deletes all of them.
var devOnlyFlags = []string{"bucket", "catalog"}

// devGetenv is os.Getenv without devOnlyFlags' variables, each noted on
// stderr when set.
func devGetenv(stderr io.Writer) func(string) string {
	skip := map[string]bool{}
	for _, f := range devOnlyFlags {
		skip[envName(f)] = true
	}
	return func(name string) string {
		v := os.Getenv(name)
		if skip[name] {
			if v != "" {
				fmt.Fprintf(stderr, "floe dev: ignoring %s (floe dev takes its bucket and catalog from flags only)\n", name)
			}
			return ""
		}
		return v
	}
}

// serve runs one agent until ctx ends, then drains it: the agent stops
// accepting and finishes in-flight requests, then the WAL flushes and
// commits what it holds.
func serve(ctx context.Context, c *serveConfig, logger *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if c.agent.AgentID == "" {
		c.agent.AgentID = agent.NewAgentID()
	}
	logger = logger.With("agent_id", c.agent.AgentID)
	setMemoryLimit(c, logger)
	openCtx, cancelOpen := context.WithTimeout(ctx, time.Minute)
	defer cancelOpen()

	catOpts := c.catalog
	catOpts.Logger, catOpts.Registerer = logger, reg
	cat, _, err := openCatalog(openCtx, c.catalogURL, catOpts)
	if err != nil {
		return fmt.Errorf("open catalog: %w", err)
	}
	defer cat.Close()
	bkt, err := bucket.Open(openCtx, c.bucketURL, bucket.Options{Logger: logger, Registerer: reg})
	if err != nil {
		return fmt.Errorf("open bucket: %w", err)
	}
	defer bkt.Close()

	var ref atomic.Pointer[agent.Agent]
	sink := flush.New(flush.Config{
		Cluster:            c.agent.ClusterID,
		AgentID:            c.agent.AgentID,
		ProducerExpiration: c.compaction.ProducerExpiration,
		MaxUploadAge:       c.uploadMaxAge,
		OnCommitted: func(key string, obj []byte, rows []catalog.BatchRow) {
			if a := ref.Load(); a != nil {
				a.OnCommitted(key, obj, rows)
			}
		},
		OnUploaded: func(key string, obj []byte) {
			if a := ref.Load(); a != nil {
				a.OnUploaded(key, obj)
			}
		},
	}, bkt, cat, logger, reg)
	w, err := wal.Open(c.walConfig(logger, reg), sink)
	if err != nil {
		return fmt.Errorf("open WAL: %w", err)
	}
	ag, err := agent.New(c.agent, agent.Deps{Catalog: cat, Bucket: bkt, WAL: w, Logger: logger, Registerer: reg})
	if err != nil {
		return err
	}
	ref.Store(ag)
	if cc, ok := cat.(compaction.Catalog); ok && !c.compaction.Disabled {
		cfg := c.compaction
		cfg.Cluster, cfg.Holder = c.agent.ClusterID, c.agent.AgentID
		comp, err := compaction.New(cfg, cc, bkt, logger, reg, nil)
		if err != nil {
			return err
		}
		compCtx, stopComp := context.WithCancel(ctx)
		compDone := make(chan error, 1)
		go func() { compDone <- comp.Run(compCtx) }()
		defer func() { stopComp(); <-compDone }()
	}

	// The WAL runs on its own context: it must outlive the agent's drain,
	// which waits for in-flight produces to be committed.
	walCtx, stopWAL := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWAL()
	walDone := make(chan error, 1)
	go func() { walDone <- w.Run(walCtx) }()

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", c.agent.Listen)
	if err != nil {
		stopWAL()
		<-walDone
		return fmt.Errorf("listen %s: %w", c.agent.Listen, err)
	}
	adminAddr, adminStop, err := startAdminHTTP(c.adminListen, reg, health{agent: ag, wal: w, cat: cat, bucket: bkt, ttl: c.agent.AgentTTL}, logger)
	if err != nil {
		ln.Close()
		stopWAL()
		<-walDone
		return err
	}
	defer adminStop()

	agCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	agDone := make(chan error, 1)
	go func() { agDone <- ag.Serve(agCtx, ln) }()
	if c.onReady != nil {
		go func() {
			for !ag.Ready() {
				select {
				case <-agCtx.Done():
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
			c.onReady(ln.Addr().String(), adminAddr)
		}()
	}
	logger.Info("floe started", "mode", c.mode, "listen", ln.Addr().String(), "catalog", redactURL(c.catalogURL), "bucket", redactURL(c.bucketURL), "wal", c.data)

	var agErr, walErr error
	agentDone, walFinished := false, false
	select {
	case <-ctx.Done():
		logger.Info("shutting down: draining")
	case agErr = <-agDone:
		agentDone = true
	case walErr = <-walDone:
		walFinished = true
		logger.Error("WAL stopped; shutting down", "err", walErr)
	}
	stopAgent()
	if !agentDone {
		agErr = <-agDone
	}
	stopWAL()
	if !walFinished {
		walErr = <-walDone
	}
	if walFinished && walErr == nil {
		walErr = errors.New("WAL stopped unexpectedly")
	}
	if err := errors.Join(agErr, walErr); err != nil {
		return err
	}
	logger.Info("floe stopped")
	return nil
}

// redactURL hides the secrets a catalog or bucket URL can hold, for logs
// and errors: the user info's password and any *password query value (pgx
// reads password= and sslpassword=). A URL that does not parse, or has an
// '@' outside its user info (a key holding '/' or '?'), is not shown.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.User == nil && strings.Contains(s, "@")) {
		scheme, _, _ := strings.Cut(s, ":")
		return scheme + ":<not shown>"
	}
	q := u.Query()
	masked := false
	for k := range q {
		if strings.Contains(strings.ToLower(k), "password") {
			q[k], masked = []string{"xxxxx"}, true
		}
	}
	if masked {
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// memoryHeadroom is what an agent holds beyond its read caches at full
// load: the WAL's buffered bytes (64 MiB by default), objects being built
// and uploaded, request frames being read and handled (up to
// --max-queued-request-bytes, 256 MiB by default, rarely all at once),
// fetch responses' records the caches evicted or that were copied (up to
// --max-queued-response-bytes, 256 MiB by default; most refer to cached
// bytes), the runtime.
const memoryHeadroom = 256 << 20

// setMemoryLimit gives the Go runtime a soft memory limit of the read
// caches plus memoryHeadroom (448 MiB with the defaults) plus what the WAL
// may buffer, and requests and responses may queue, beyond their
// defaults, unless GOMEMLIMIT sets one (an empty one counts as unset, as
// the runtime reads it). Without it the heap grows to twice what is live before a
// collection, and the caches, full at any steady load, are most of what is
// live: an agent at full load reached 700 MiB of RSS for about 300 MiB in
// use. The caches hold byte slices, which a collection need not scan, so
// collecting more often near the limit costs little CPU.
func setMemoryLimit(c *serveConfig, logger *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	// The headroom counts the WAL's default buffer and request and
	// response budgets; larger ones are held at full load too.
	queued := c.agent.MaxQueuedRequestBytes
	if queued == 0 {
		queued = max(agent.DefaultMaxQueuedRequestBytes, int64(cmp.Or(c.agent.MaxRequestBytes, agent.DefaultConfig().MaxRequestBytes)))
	}
	limit := c.agent.ReadCacheBytes + c.agent.CatchUpCacheBytes + memoryHeadroom +
		max(0, c.maxBufferedBytes-wal.DefaultMaxBufferedBytes) +
		max(0, queued-agent.DefaultMaxQueuedRequestBytes) +
		max(0, c.agent.MaxQueuedResponseBytes-agent.DefaultMaxQueuedResponseBytes) // 0: the default
	debug.SetMemoryLimit(limit)
	logger.Debug("memory limit", "bytes", limit)
}
