package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/floebroker/floe/catalog"
)

// testURL returns FLOE_TEST_POSTGRES_URL, failing under CI and skipping on
// a developer machine when it is unset.
func testURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("FLOE_TEST_POSTGRES_URL")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("FLOE_TEST_POSTGRES_URL is not set (CI=true): run scripts/services.sh start and eval \"$(scripts/services.sh env)\"")
		}
		t.Skip("FLOE_TEST_POSTGRES_URL is not set: skipping PostgreSQL tests (eval \"$(scripts/services.sh env)\" to run them)")
	}
	return u
}

// freshSchema creates an empty schema for one test and returns a URL whose
// search_path points at it. The schema is dropped at cleanup.
func freshSchema(t testing.TB) string {
	t.Helper()
	base := testURL(t)
	var b [6]byte
	rand.Read(b[:])
	schema := "floe_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to test database: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse FLOE_TEST_POSTGRES_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// openTest opens a catalog on url and closes it at cleanup.
func openTest(t testing.TB, url string, opts catalog.Options) *Catalog {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := Open(ctx, url, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
