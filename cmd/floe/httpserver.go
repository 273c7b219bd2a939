package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/wal"
)

// health is what /healthz and /readyz look at.
type health struct {
	agent  *agent.Agent
	wal    *wal.Log
	cat    catalog.Catalog
	bucket objstore.BucketReader
	ttl    time.Duration
}

// live reports whether the process can still do its work: a failed WAL is
// fatal (the process is about to exit).
func (h health) live() error { return h.wal.Healthy() }

// ready reports whether the agent should get traffic: it serves, its WAL
// works, and the catalog and the bucket answer.
func (h health) ready(ctx context.Context) error {
	if !h.agent.Ready() {
		return errors.New("agent is not serving (starting, draining, or its agent id is registered by another process)")
	}
	if err := h.wal.Healthy(); err != nil {
		return err
	}
	if _, _, err := h.cat.LiveAgents(ctx, h.ttl); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	// The bucket itself: a Stat of a key that never exists takes a
	// deleted bucket for a missing key on S3 and GCS, so every produce
	// failed while the agent stayed ready.
	if err := objstore.CheckBucket(ctx, h.bucket); err != nil {
		return fmt.Errorf("bucket: %w", err)
	}
	return nil
}

// adminLimits bound what the admin port's clients can hold. The port has
// no auth and shares the process's file descriptors with the Kafka
// listener, the WAL, the catalog and the bucket: connections left open
// (1,000 idle ones were all still open after 40 s) took descriptors until
// the Kafka listener's accept failed with "too many open files".
type adminLimits struct {
	// idle closes a keep-alive connection that sends no request for this
	// long; maxConns caps the connections served at once (more wait to be
	// accepted, holding no descriptor of ours).
	idle     time.Duration
	maxConns int
}

// defaultAdminLimits leave ample room for scrapers and probes. The write
// timeout needs no room for pprof: its profile and trace handlers extend
// it by the seconds they are asked to run.
var defaultAdminLimits = adminLimits{idle: 60 * time.Second, maxConns: 64}

// startAdminHTTP serves /metrics, /healthz, /readyz and /debug/pprof on
// addr (nothing when addr is empty) and returns the bound address and a
// function that stops it.
func startAdminHTTP(addr string, reg *prometheus.Registry, h health, logger *slog.Logger) (string, func(), error) {
	return serveAdminHTTP(addr, reg, h, logger, defaultAdminLimits)
}

func serveAdminHTTP(addr string, reg *prometheus.Registry, h health, logger *slog.Logger, lim adminLimits) (string, func(), error) {
	if addr == "" {
		return "", func() {}, nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := h.live(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := h.ready(ctx); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	// No /debug/pprof/cmdline: the command line can hold the catalog
	// URL's password or a bucket URL's keys, and this port has no auth
	// (pprof.Index answers it 404 as an unknown profile).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("admin listen %s: %w", addr, err)
	}
	ln = netutil.LimitListener(ln, lim.maxConns)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       lim.idle,
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin HTTP server failed", "err", err)
		}
	}()
	logger.Info("admin HTTP serving", "addr", ln.Addr().String())
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
