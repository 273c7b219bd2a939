package agent

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/floebroker/floe/agent/flush"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/sqlite"
	"github.com/floebroker/floe/objstore/mem"
	"github.com/floebroker/floe/wal"
)

// TestStopWhileWaitingForAgentID: an agent told to stop while it waits for
// a live registration of its id to lapse stops cleanly (nil, so `floe
// agent` exits 0 on SIGTERM), promptly, without having registered.
func TestStopWhileWaitingForAgentID(t *testing.T) {
	ctx := context.Background()
	cat, err := sqlite.Open(ctx, ":memory:", catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	cfg := DefaultConfig()
	cfg.AgentID = NewAgentID()
	cfg.HeartbeatInterval, cfg.AgentTTL = 50*time.Millisecond, time.Minute
	// Another incarnation of the id, live for a minute.
	if _, err := cat.RegisterAgent(ctx, catalog.Agent{ID: cfg.AgentID, Addr: "other:9092", Started: time.Now().Add(-time.Second)}, cfg.AgentTTL); err != nil {
		t.Fatal(err)
	}
	bucket := mem.New(nil)
	w, err := wal.Open(wal.Config{Dir: filepath.Join(t.TempDir(), "wal"), FlushInterval: time.Millisecond},
		flush.New(flush.Config{Cluster: "t", AgentID: cfg.AgentID}, bucket, cat, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	walCtx, stopWAL := context.WithCancel(ctx)
	defer stopWAL()
	go func() { _ = w.Run(walCtx) }()
	a, err := New(cfg, Deps{Catalog: cat, Bucket: bucket, WAL: w})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Serve(serveCtx, ln) }()
	time.Sleep(200 * time.Millisecond) // a few rounds of waiting
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve stopped while waiting for its id: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not stop while waiting for its id")
	}
	agents, _, err := cat.LiveAgents(ctx, cfg.AgentTTL)
	if err != nil {
		t.Fatal(err)
	}
	if len(agents) != 1 || agents[0].Addr != "other:9092" {
		t.Fatalf("agents after the stop: %+v, want only the other incarnation", agents)
	}
}
