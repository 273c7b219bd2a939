// Package e2e runs the floe binary as a subprocess: restarts on the same
// data, kill -9 while an idempotent producer runs, and a graceful drain.
package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/floebroker/floe/tests/floetest"
)

var floeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "floe-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	floeBin, err = floetest.BuildFloe(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running floe process.
type proc = floetest.Process

// startDev starts `floe dev` on data, listening on listen (host:port; port 0
// picks one), and waits until it serves.
func startDev(t *testing.T, data, listen string, extra ...string) *proc {
	t.Helper()
	return startFloe(t, append([]string{"dev", "--data", data, "--listen", listen, "--admin-listen", "", "--log-level", "info", "--flush-interval", "5ms"}, extra...)...)
}

// startFloe runs the floe binary with args and waits until it serves.
func startFloe(t *testing.T, args ...string) *proc {
	t.Helper()
	return floetest.StartProcess(t, floeBin, args...)
}

// freePort returns a loopback address with a port free right now, for a
// process that must come back on the same address.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
