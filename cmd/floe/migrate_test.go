package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floebroker/floe/tests/floetest"
)

// TestMigrateTakesCatalogSettings: `floe migrate` takes the agent's
// catalog.* settings from its flags and --config file — it opened the
// catalog with none of them, refusing --catalog.statement-timeout (exit 2)
// and ignoring the file's — except catalog.skip-migrate, which is the
// agents' (a file shared with agents that must not migrate still
// migrates). Its migration's statements are bounded by --timeout, not by
// catalog.statement-timeout: waiting 2.5 s for another process's migration
// past a 1 s statement timeout does not fail it.
func TestMigrateTakesCatalogSettings(t *testing.T) {
	url := floetest.PostgresURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var b [4]byte
	rand.Read(b[:])
	app := "floe-migrate-test-" + hex.EncodeToString(b[:])
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(cfg, []byte("catalog: '"+url+"'\nbucket: mem://\n"+
		"catalog.application-name: "+app+"\ncatalog.statement-timeout: 1s\ncatalog.skip-migrate: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	holder, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	const lock = `hashtext('floe.migrate.' || current_schema())`
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_lock(`+lock+`)`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var stderr bytes.Buffer // read after done
	done := make(chan int, 1)
	go func() {
		var out bytes.Buffer
		done <- runMain(ctx, []string{"migrate", "--config", cfg, "--timeout", "1m"}, &out, &stderr)
	}()
	for {
		var seen bool
		if err := holder.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = $1)`, app).Scan(&seen); err != nil {
			t.Fatal(err)
		}
		if seen {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("floe migrate --config exited %d before its connection with the file's catalog.application-name was seen: %s", code, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("no connection with the file's catalog.application-name %s", app)
		}
	}
	time.Sleep(2500*time.Millisecond - time.Since(start))
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_unlock(`+lock+`)`); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != 0 {
		t.Fatalf("floe migrate --config (catalog.statement-timeout 1s) waiting 2.5 s for another migration: exit %d: %s", code, stderr.String())
	}

	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--catalog.statement-timeout", "2m", "--catalog.application-name", app, "--catalog.max-conns", "2"}, 0},
		{[]string{"--catalog.statement-timeout", "-1s"}, 2},
		{[]string{"--catalog.skip-migrate"}, 2},
	} {
		var out, errb bytes.Buffer
		if code := runMain(ctx, append([]string{"migrate", "--catalog", url}, tc.args...), &out, &errb); code != tc.code {
			t.Errorf("floe migrate %v: exit %d, want %d: %s", tc.args, code, tc.code, errb.String())
		}
	}
}
