// Package testenv holds test helpers that tests in any package may use,
// including a package's own (internal) tests: it imports nothing of
// Floe's, so it can never close an import cycle.
//
// It owns how tests find external tools and how they simulate crashed
// clients. A tool a test needs that is missing skips the test, or fails it
// under CI=true, where `make test` must have installed it.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Kcat returns the path of kcat (librdkafka's CLI): FLOE_TEST_KCAT, else
// the PATH.
func Kcat(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("FLOE_TEST_KCAT"); p != "" {
		return p
	}
	if p, err := exec.LookPath("kcat"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("kcat is not installed; under CI=true it must be (scripts/services.sh start installs it, FLOE_TEST_KCAT names it)")
	}
	t.Skip("kcat is not installed (set FLOE_TEST_KCAT); skipping librdkafka tests")
	return ""
}

// RunKcat runs kcat (the path Kcat gives) with stdin and args, failing t
// if it fails or takes a minute, and returns its standard output. What it
// wrote to standard error is logged.
func RunKcat(t testing.TB, kcat string, stdin []byte, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out.String(), errb.String())
	}
	if errb.Len() > 0 {
		t.Logf("kcat %v stderr:\n%s", args, errb.String())
	}
	return out.Bytes()
}

// KillableDialer is a dialer (kgo.Dialer(k.Dial)) whose connections can
// all be cut at once, so a client dies without leaving its group or
// finishing its requests, as a crashed process does.
type KillableDialer struct {
	mu    sync.Mutex
	dead  bool
	conns []net.Conn
}

// Dial connects, unless Kill was called.
func (k *KillableDialer) Dial(ctx context.Context, network, host string) (net.Conn, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.dead {
		return nil, errors.New("testenv: dialer killed")
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, host)
	if err == nil {
		k.conns = append(k.conns, c)
	}
	return c, err
}

// Kill closes every connection made and refuses new ones.
func (k *KillableDialer) Kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dead = true
	for _, c := range k.conns {
		c.Close()
	}
}
