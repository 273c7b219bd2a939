// Package e2e runs the floe binary as a subprocess: restarts on the same
// data, kill -9 while an idempotent producer runs, and a graceful drain.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var floeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "floe-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	floeBin = filepath.Join(dir, "floe")
	build := exec.Command("go", "build", "-o", floeBin, "github.com/floebroker/floe/cmd/floe")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building floe:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running `floe dev`.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	// exited is closed when the process has exited, with exitErr set.
	exited  chan struct{}
	exitErr error
	mu      sync.Mutex
	logs    strings.Builder
}

var listenRE = regexp.MustCompile(`msg="floe started".* listen=(\S+)`)

// startDev starts `floe dev` on data, listening on listen (host:port; port 0
// picks one), and waits until it serves.
func startDev(t *testing.T, data, listen string, extra ...string) *proc {
	t.Helper()
	return startFloe(t, append([]string{"dev", "--data", data, "--listen", listen, "--admin-listen", "", "--log-level", "info", "--flush-interval", "5ms"}, extra...)...)
}

// startFloe runs the floe binary with args (which must make it log at info
// level in text format) and waits until its Kafka listener answers.
func startFloe(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(floeBin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start floe: %v", err)
	}
	p := &proc{t: t, cmd: cmd, exited: make(chan struct{})}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if m := listenRE.FindStringSubmatch(line); m != nil {
				addrCh <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("floe logs:\n%s", p.log())
		}
	})
	select {
	case p.addr = <-addrCh:
	case <-p.exited:
		t.Fatalf("floe exited at start: %v\n%s", p.exitErr, p.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("floe did not start in 60s\n%s", p.log())
	}
	// "floe started" is logged once the listener exists; wait for the
	// agent to answer.
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("floe not reachable at %s", p.addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.exited:
		if p.exitErr != nil {
			p.t.Fatalf("floe exited with %v after SIGTERM\n%s", p.exitErr, p.log())
		}
	case <-time.After(60 * time.Second):
		p.t.Fatalf("floe did not exit within 60s of SIGTERM\n%s", p.log())
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatal("floe did not die after SIGKILL")
	}
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
