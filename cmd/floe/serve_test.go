package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// startServe runs `floe dev` (in-process) on data and returns the Kafka and
// admin addresses and a stop function that drains it and returns serve's
// error.
func startServe(t *testing.T, data string) (string, string, func() error) {
	t.Helper()
	fs, c := newServeFlags("dev", io.Discard)
	args := []string{"--data", data, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--flush-interval", "5ms"}
	if err := parseLayered(fs, args, "config", func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if err := c.finish(); err != nil {
		t.Fatal(err)
	}
	type addrs struct{ kafka, admin string }
	ready := make(chan addrs, 1)
	c.onReady = func(k, a string) { ready <- addrs{k, a} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, c, newLogger(tLogWriter{t}, "warn", "text")) }()
	select {
	case a := <-ready:
		var once bool
		stop := func() error {
			if once {
				return nil
			}
			once = true
			cancel()
			select {
			case err := <-done:
				return err
			case <-time.After(60 * time.Second):
				t.Fatal("serve did not return after its context ended")
				return nil
			}
		}
		t.Cleanup(func() { _ = stop() })
		return a.kafka, a.admin, stop
	case err := <-done:
		cancel()
		t.Fatalf("serve returned before ready: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("serve not ready in 60s")
	}
	return "", "", nil
}

// tLogWriter sends log lines to t.Log (shown with -v or on failure).
type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // a line logged after the test ended
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDevServesAndDrains: `floe dev` serves Kafka and its admin endpoints,
// drains cleanly when its context ends, and serves the same data after a
// restart on the same --data.
func TestDevServesAndDrains(t *testing.T) {
	data := t.TempDir()
	kafka, admin, stop := startServe(t, data)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(t, "http://"+admin+path); code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, code, body)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafka), kgo.DefaultProduceTopic("dev"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	_, metrics := get(t, "http://"+admin+"/metrics")
	// One metric of every package docs/metrics.md lists: each is exported
	// only if serve hands the registry to the package that owns it.
	for _, name := range []string{"floe_agent_requests_total", "floe_agent_request_duration_seconds", "floe_wal_", "floe_flush_", "floe_objstore_operations_total",
		"floe_catalog_op_duration_seconds", "floe_catalog_commit_batches_total", "floe_groups_groups", "floe_compaction_", "go_goroutines", "process_"} {
		if !strings.Contains(metrics, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if code, _ := get(t, "http://"+admin+"/debug/pprof/"); code != http.StatusOK {
		t.Errorf("pprof: %d", code)
	}
	if err := stop(); err != nil {
		t.Fatalf("drain: %v", err)
	}
	// Only the directory's lock file stays.
	if entries, _ := os.ReadDir(filepath.Join(data, "wal")); len(entries) != 1 || entries[0].Name() != "LOCK" {
		t.Errorf("WAL not empty after a clean drain: %v", entries)
	}

	kafka, _, _ = startServe(t, data)
	cons, err := kgo.NewClient(kgo.SeedBrokers(kafka), kgo.ConsumeTopics("dev"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	n := 0
	for n < 20 {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of 20 after restart", n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Value[0] != byte(n) {
				t.Fatalf("record %d: value %d", n, r.Value[0])
			}
			n++
		})
	}
}

func TestMigrateAndVersion(t *testing.T) {
	var out, errb bytes.Buffer
	db := filepath.Join(t.TempDir(), "c.db")
	if code := runMain(context.Background(), []string{"migrate", "--catalog", "sqlite://" + db}, &out, &errb); code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "schema is at version") {
		t.Fatalf("migrate output %q", out.String())
	}
	out.Reset()
	if code := runMain(context.Background(), []string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "floe ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	for _, args := range [][]string{{"migrate"}, {"nope"}, {"agent", "--catalog", "sqlite://" + db}, {"migrate", "--catalog", "mysql://x"}} {
		errb.Reset()
		if code := runMain(context.Background(), args, &out, &errb); code == 0 {
			t.Errorf("%v: exit 0, want failure", args)
		}
	}
}

// TestGroupFlags: the coordinator's settings are flags (group.*), and
// `floe dev` starts a new group's first rebalance sooner than `floe agent`.
func TestGroupFlags(t *testing.T) {
	for _, tc := range []struct {
		mode string
		args []string
		want time.Duration
	}{
		{"dev", nil, devInitialRebalanceDelay},
		{"agent", nil, 300 * time.Millisecond},
		{"agent", []string{"--group.initial-rebalance-delay", "1s", "--group.max-size", "7"}, time.Second},
	} {
		fs, c := newServeFlags(tc.mode, io.Discard)
		if err := parseLayered(fs, tc.args, "config", func(string) string { return "" }); err != nil {
			t.Fatal(err)
		}
		if got := c.agent.Groups.InitialRebalanceDelay; got != tc.want {
			t.Errorf("%s %v: initial rebalance delay %v, want %v", tc.mode, tc.args, got, tc.want)
		}
		if err := c.agent.Validate(); err != nil {
			t.Errorf("%s %v: %v", tc.mode, tc.args, err)
		}
	}
}

// TestMigrateReadsAgentConfig: `floe migrate --config` takes the agent's own
// YAML file, where the docs say to keep the catalog URL's password: the
// agent's settings in it are not errors, misspelt ones still are.
func TestMigrateReadsAgentConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	db := filepath.Join(dir, "c.db")
	good := write("agent.yaml", "catalog: sqlite://"+db+"\nbucket: mem://\nlisten: localhost:9092\nflush-interval: 1s\n"+
		"catalog.statement-timeout: 5s\ngroup:\n  max-size: 10\n")
	typo := write("typo.yaml", "catalog: sqlite://"+db+"\nbuckett: mem://\n")
	var out, errb bytes.Buffer
	if code := runMain(context.Background(), []string{"migrate", "--config", good}, &out, &errb); code != 0 {
		t.Fatalf("migrate --config agent.yaml: exit %d: %s", code, errb.String())
	}
	errb.Reset()
	if code := runMain(context.Background(), []string{"migrate", "--config", typo}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "buckett") {
		t.Fatalf("migrate with a misspelt setting: exit %d: %s", code, errb.String())
	}
}

// TestCatalogPasswordFile: `floe agent` and `floe migrate` take
// --catalog.password-file, from the command line or the agent's YAML file,
// and read the PostgreSQL password from it (the file here is missing, so
// the first connection fails naming it, before any dial).
func TestCatalogPasswordFile(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing-password")
	catalogURL := "postgres://floe@127.0.0.1:1/floe"
	config := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(config, []byte("catalog: "+catalogURL+"\nbucket: mem://\ncatalog.password-file: "+missing+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"agent", "--catalog", catalogURL, "--catalog.password-file", missing, "--bucket", "mem://", "--data", filepath.Join(dir, "wal"), "--listen", "localhost:0", "--admin-listen", ""},
		{"migrate", "--catalog", catalogURL, "--catalog.password-file", missing},
		{"migrate", "--config", config},
	} {
		var out, errb bytes.Buffer
		code := runMain(context.Background(), args, &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), "read password file: open "+missing) {
			t.Errorf("%v: exit %d: %s, want the password file read error", args, code, errb.String())
		}
	}
}
