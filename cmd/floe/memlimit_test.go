package main

import (
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"testing"
)

// TestMemoryLimitCoversWALBuffer: the soft memory limit must leave room
// for what the agent is configured to hold. A WAL allowed to buffer 1 GiB
// of produced bytes (--max-buffered-bytes) with a limit of 448 MiB would
// have the runtime collect continuously whenever the buffer fills.
func TestMemoryLimitCoversBuffers(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	os.Unsetenv("GOMEMLIMIT")
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })

	_, c := newServeFlags("agent", io.Discard)
	c.maxBufferedBytes = 1 << 30
	setMemoryLimit(c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	limit := debug.SetMemoryLimit(-1)
	if want := c.agent.ReadCacheBytes + c.agent.CatchUpCacheBytes + c.maxBufferedBytes; limit < want {
		t.Fatalf("memory limit %d MiB, below the read caches and the WAL buffer alone (%d MiB)", limit>>20, want>>20)
	}

	// So does a request budget above its default.
	_, c = newServeFlags("agent", io.Discard)
	c.agent.MaxQueuedRequestBytes = 1 << 30
	setMemoryLimit(c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if limit, want := debug.SetMemoryLimit(-1), c.agent.ReadCacheBytes+c.agent.CatchUpCacheBytes+c.agent.MaxQueuedRequestBytes; limit < want {
		t.Fatalf("memory limit %d MiB, below the read caches and the request budget alone (%d MiB)", limit>>20, want>>20)
	}

	// And a response budget.
	_, c = newServeFlags("agent", io.Discard)
	c.agent.MaxQueuedResponseBytes = 1 << 30
	setMemoryLimit(c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if limit, want := debug.SetMemoryLimit(-1), c.agent.ReadCacheBytes+c.agent.CatchUpCacheBytes+c.agent.MaxQueuedResponseBytes; limit < want {
		t.Fatalf("memory limit %d MiB, below the read caches and the response budget alone (%d MiB)", limit>>20, want>>20)
	}

	_, c = newServeFlags("agent", io.Discard)
	setMemoryLimit(c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if limit, want := debug.SetMemoryLimit(-1), int64(448<<20); limit != want {
		t.Errorf("default memory limit %d MiB, want %d MiB", limit>>20, want>>20)
	}
}
