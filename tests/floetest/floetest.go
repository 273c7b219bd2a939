// Package floetest starts in-process Floe agents for end-to-end tests: a
// real agent (WAL, flusher, protocol server) on 127.0.0.1:0 with an SQLite
// catalog and a directory bucket under a temporary directory, or with the
// catalog and bucket a test passes in (PostgreSQL, MinIO). Restarting on
// the same directory serves everything acknowledged before, as `floe dev`
// does.
//
// It also has a raw Kafka connection (Conn) for tests that need to send
// hand-built or malformed requests.
package floetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/agent/flush"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/sqlite"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/file"
	"github.com/floebroker/floe/wal"
)

// Options configure Start. The zero value is a fast single agent with
// auto-created topics, in t.TempDir().
type Options struct {
	// Dir holds the catalog, bucket and WAL. Default: t.TempDir(). Start
	// again with the same Dir to restart on the same data.
	Dir string
	// FlushInterval of the WAL. Default 5ms.
	FlushInterval time.Duration
	// NoAutoCreate turns topic auto-creation off.
	NoAutoCreate bool
	// Config, if set, adjusts the agent's config after the defaults.
	Config func(*agent.Config)
	// Catalog and Bucket replace the SQLite catalog and directory bucket
	// (the test owns and closes them).
	Catalog catalog.Catalog
	Bucket  objstore.Bucket
	// Registerer for the agent's, WAL's and flusher's metrics. Default: a
	// fresh registry per agent.
	Registerer prometheus.Registerer
	// Logger; default: errors and warnings only, to stderr when -v.
	Logger *slog.Logger
}

// Agent is a running in-process agent.
type Agent struct {
	// Addr is the agent's Kafka address (host:port).
	Addr    string
	Agent   *agent.Agent
	Catalog catalog.Catalog
	Bucket  objstore.Bucket
	WAL     *wal.Log
	Dir     string

	t        testing.TB
	stopOnce sync.Once
	stop     func() error
}

// Start starts an agent and registers its Stop with t.Cleanup.
func Start(t testing.TB, opts Options) *Agent {
	t.Helper()
	a, err := start(t, opts)
	if err != nil {
		t.Fatalf("floetest: start agent: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Stop(); err != nil {
			t.Errorf("floetest: stop agent: %v", err)
		}
	})
	return a
}

// TryStart is Start for an agent that may fail to start: it returns the
// error instead of failing t, and a started agent's Stop is the caller's.
func TryStart(t testing.TB, opts Options) (*Agent, error) {
	t.Helper()
	return start(t, opts)
}

func start(t testing.TB, opts Options) (*Agent, error) {
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.FlushInterval == 0 {
		opts.FlushInterval = 5 * time.Millisecond
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx := context.Background()

	var closers []func() error
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
	}
	cat := opts.Catalog
	if cat == nil {
		c, err := sqlite.Open(ctx, filepath.Join(opts.Dir, "catalog.db"), catalog.Options{Logger: logger})
		if err != nil {
			return nil, err
		}
		cat = c
		closers = append(closers, c.Close)
	}
	bucket := opts.Bucket
	if bucket == nil {
		b, err := file.New(filepath.Join(opts.Dir, "bucket"))
		if err != nil {
			cleanup()
			return nil, err
		}
		bucket = b
		closers = append(closers, b.Close)
	}

	cfg := agent.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.AgentID = agent.NewAgentID()
	cfg.AutoCreateTopics = !opts.NoAutoCreate
	cfg.HeartbeatInterval = 200 * time.Millisecond
	cfg.AgentTTL = 2 * time.Second
	cfg.ProduceTimeout = 10 * time.Second
	if opts.Config != nil {
		opts.Config(&cfg)
	}

	var ref atomic.Pointer[agent.Agent]
	sink := flush.New(flush.Config{
		Cluster: cfg.ClusterID,
		AgentID: cfg.AgentID,
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
	}, bucket, cat, logger, opts.Registerer)
	w, err := wal.Open(wal.Config{
		Dir:           filepath.Join(opts.Dir, "wal"),
		FlushInterval: opts.FlushInterval,
		Logger:        logger,
		Registerer:    opts.Registerer,
	}, sink)
	if err != nil {
		cleanup()
		return nil, err
	}
	ag, err := agent.New(cfg, agent.Deps{Catalog: cat, Bucket: bucket, WAL: w, Logger: logger, Registerer: opts.Registerer})
	if err != nil {
		cleanup()
		return nil, err
	}
	ref.Store(ag)

	walCtx, stopWAL := context.WithCancel(ctx)
	walDone := make(chan error, 1)
	go func() { walDone <- w.Run(walCtx) }()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		stopWAL()
		<-walDone
		cleanup()
		return nil, err
	}
	agCtx, stopAgent := context.WithCancel(ctx)
	agDone := make(chan error, 1)
	go func() { agDone <- ag.Serve(agCtx, ln) }()

	a := &Agent{Addr: ln.Addr().String(), Agent: ag, Catalog: cat, Bucket: bucket, WAL: w, Dir: opts.Dir, t: t}
	a.stop = func() error {
		stopAgent()
		errA := <-agDone
		stopWAL()
		errW := <-walDone
		if errors.Is(errW, context.Canceled) {
			errW = nil
		}
		cleanup()
		return errors.Join(errA, errW)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !ag.Ready() {
		select {
		case err := <-agDone:
			stopWAL()
			<-walDone
			cleanup()
			return nil, fmt.Errorf("agent stopped during start: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			_ = a.stop()
			return nil, errors.New("agent not ready after 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	return a, nil
}

// Stop drains the agent (in-flight requests finish, the WAL flushes) and
// closes what Start opened. Safe to call more than once.
func (a *Agent) Stop() error {
	var err error
	a.stopOnce.Do(func() { err = a.stop() })
	return err
}

// Client returns a franz-go client seeded with the agent, closed at
// cleanup.
func (a *Agent) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(a.Addr)}, opts...)...)
	if err != nil {
		t.Fatalf("floetest: client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// testWriter sends log lines to t.Log, so they show with -v or on failure.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // logging after the test ended
	w.t.Log(string(p))
	return len(p), nil
}

// RequireEnv returns the environment variable or skips the test (fails it
// under CI=true, where every service must be present).
func RequireEnv(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set; under CI the test services must run (scripts/services.sh start)", name)
		}
		t.Skipf("%s is not set; start the test services with scripts/services.sh start and eval \"$(scripts/services.sh env)\"", name)
	}
	return v
}
