package floetest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BuildFloe builds cmd/floe into dir and returns the binary's path (the
// build cache makes a repeat build a link step).
func BuildFloe(dir string) (string, error) {
	bin := filepath.Join(dir, "floe")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/floebroker/floe/cmd/floe").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building floe: %v\n%s", err, out)
	}
	return bin, nil
}

// Process is a floe binary running as a child process, for tests that
// kill -9 it or restart it on the same data.
type Process struct {
	// Addr is the Kafka listener's address, taken from the startup log.
	Addr string

	t      *testing.T
	name   string
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited (exitErr set)
	// exitErr is written before exited is closed.
	exitErr error
	mu      sync.Mutex
	logs    strings.Builder
}

var startedRE = regexp.MustCompile(`msg="floe started".* listen=(\S+)`)

// StartProcess runs bin with args (which must make it log at info level in
// text format) and waits until its Kafka listener answers. The process is
// killed at cleanup if still running, and its logs are printed when the
// test failed.
func StartProcess(t *testing.T, bin string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start floe: %v", err)
	}
	p := &Process{t: t, cmd: cmd, exited: make(chan struct{})}
	if len(args) > 0 {
		p.name = args[0]
	}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if m := startedRE.FindStringSubmatch(line); m != nil {
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
			t.Logf("floe %s logs:\n%s", p.name, p.Log())
		}
	})
	select {
	case p.Addr = <-addrCh:
	case <-p.exited:
		t.Fatalf("floe exited at start: %v\n%s", p.exitErr, p.Log())
	case <-time.After(60 * time.Second):
		t.Fatalf("floe did not start in 60s\n%s", p.Log())
	}
	// "floe started" is logged once the listener exists; wait for the
	// agent to answer.
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("floe not reachable at %s", p.Addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Log returns everything the process has logged so far.
func (p *Process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Stop sends SIGTERM and waits for a clean exit (status 0).
func (p *Process) Stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.exited:
		if p.exitErr != nil {
			p.t.Fatalf("floe exited with %v after SIGTERM\n%s", p.exitErr, p.Log())
		}
	case <-time.After(60 * time.Second):
		p.t.Fatalf("floe did not exit within 60s of SIGTERM\n%s", p.Log())
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatal("floe did not die after SIGKILL")
	}
}
