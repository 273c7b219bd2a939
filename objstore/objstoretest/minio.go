package objstoretest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// MinIO is a private MinIO server a test started, to stop it under a
// client and see how the client fails.
type MinIO struct {
	Endpoint             string // host:port
	AccessKey, SecretKey string
	cmd                  *exec.Cmd
	exited               chan struct{}
}

// StartMinIO starts the MinIO binary FLOE_TEST_MINIO_BIN names on a free
// loopback port with a data directory under t.TempDir, waits until it is
// ready, and stops it when t ends. Skips or fails like Env when the
// variable is unset.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin := Env(t, "FLOE_TEST_MINIO_BIN")
	port, cport := freePort(t), freePort(t)
	m := &MinIO{
		Endpoint:  fmt.Sprintf("127.0.0.1:%d", port),
		AccessKey: "floeprivate",
		SecretKey: "floeprivate-secret",
		exited:    make(chan struct{}),
	}
	dir := t.TempDir()
	log, err := os.Create(filepath.Join(dir, "minio.log"))
	if err != nil {
		t.Fatal(err)
	}
	m.cmd = exec.Command(bin, "server", "--quiet",
		"--address", m.Endpoint, "--console-address", fmt.Sprintf("127.0.0.1:%d", cport),
		filepath.Join(dir, "data"))
	m.cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey, "MINIO_BROWSER=off")
	m.cmd.Stdout, m.cmd.Stderr = log, log
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start minio: %v", err)
	}
	go func() {
		_ = m.cmd.Wait()
		_ = log.Close()
		close(m.exited)
	}()
	t.Cleanup(m.Stop)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.Endpoint+"/minio/health/ready", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m
			}
		}
		select {
		case <-m.exited:
			out, _ := os.ReadFile(filepath.Join(dir, "minio.log"))
			t.Fatalf("minio exited during start:\n%s", out)
		case <-ctx.Done():
			t.Fatalf("minio not ready after 60s: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop kills the server and waits for it to exit. It is idempotent.
func (m *MinIO) Stop() {
	select {
	case <-m.exited:
		return
	default:
	}
	_ = m.cmd.Process.Kill()
	<-m.exited
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
