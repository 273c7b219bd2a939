package open

import (
	"context"
	"errors"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/floebroker/floe/catalog"
)

func TestOpenSQLite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "catalog.db")
	reg := prometheus.NewRegistry()
	c, err := Open(ctx, "sqlite://"+path, catalog.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTopic(ctx, catalog.TopicSpec{Name: "a", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(catalog.Compactor); !ok {
		t.Fatal("the instrumented catalog hides the backend's Compactor")
	}
	if err := c.(interface{ Ping(context.Context) error }).Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if _, err := c.Topic(ctx, "missing"); !errors.Is(err, catalog.ErrUnknownTopic) {
		t.Fatalf("Topic(missing) = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("catalog file: %v", err)
	}
	if n := testutil.CollectAndCount(reg, "floe_catalog_op_duration_seconds"); n < 2 {
		t.Fatalf("%d duration series", n)
	}
	// An unknown topic is an answer, not a failure: no error series.
	if n := testutil.CollectAndCount(reg, "floe_catalog_op_errors_total"); n != 0 {
		t.Fatalf("%d error series", n)
	}
	if err := Migrate(ctx, "sqlite://"+path, catalog.Options{}); err != nil {
		t.Fatal(err)
	}
	// Reopening with a second registry-sharing catalog works.
	c2, err := Open(ctx, "sqlite://"+path, catalog.Options{Registerer: reg, SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Topic(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	c2.Close()
}

func TestOpenMemory(t *testing.T) {
	for _, u := range []string{"sqlite://:memory:", "sqlite::memory:"} {
		c, err := Open(context.Background(), u, catalog.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateTopic(context.Background(), catalog.TopicSpec{Name: "a", Partitions: 1}); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

func TestOpenErrors(t *testing.T) {
	for _, u := range []string{"mysql://x", "nothing", "sqlite://", "sqlite:", "postgres://user:secret@127.0.0.1:1/db?connect_timeout=1"} {
		_, err := Open(context.Background(), u, catalog.Options{})
		if err == nil {
			t.Fatalf("Open(%q) succeeded", u)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Fatalf("error leaks the password: %v", err)
		}
	}
}

func TestOpenPostgres(t *testing.T) {
	u := os.Getenv("FLOE_TEST_POSTGRES_URL")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("FLOE_TEST_POSTGRES_URL is not set (CI=true)")
		}
		t.Skip("FLOE_TEST_POSTGRES_URL is not set: skipping the PostgreSQL open test")
	}
	// The postgres package's tests cover the backend; this checks the
	// scheme dispatch (and migrations into the public schema are
	// avoided by using a throwaway schema).
	parsed, err := neturl.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := parsed.Query()
	q.Set("search_path", "floe_no_such_schema")
	parsed.RawQuery = q.Encode()
	for _, scheme := range []string{"postgres", "postgresql"} {
		parsed.Scheme = scheme
		_, err := Open(context.Background(), parsed.String(), catalog.Options{})
		if err == nil || !strings.Contains(err.Error(), "schema") {
			t.Fatalf("Open(%s) with a missing schema: %v", scheme, err)
		}
	}
}
