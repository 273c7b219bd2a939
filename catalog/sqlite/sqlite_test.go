package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/catalogtest"
)

func openTest(t testing.TB, path string, opts catalog.Options) *Catalog {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Open(ctx, path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConformance(t *testing.T) {
	catalogtest.Run(t, func(t *testing.T) catalog.Catalog {
		return openTest(t, filepath.Join(t.TempDir(), "catalog.db"), catalog.Options{})
	})
}

func TestConformanceMemory(t *testing.T) {
	catalogtest.Run(t, func(t *testing.T) catalog.Catalog {
		return openTest(t, ":memory:", catalog.Options{})
	})
}

func TestStress(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	catalogtest.Stress(t, func(t *testing.T) catalog.Catalog {
		// Eight handles are eight processes writing one file. SQLite's
		// busy handler is not fair: on a loaded machine one of them can
		// wait out the default 10 s while the others take turns. Only the
		// stored offsets are under test here, not how long the lock takes:
		// wait as long as a commit may take (catalogtest's 60 s).
		return openTest(t, path, catalog.Options{BusyTimeout: time.Minute})
	}, catalogtest.StressConfig{Commits: catalogtest.CommitsFromEnv(100), ProducerBatches: 10})
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSchemaVersionChecks(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "catalog.db")
	if _, err := Open(ctx, path, catalog.Options{SkipMigrate: true}); !errors.Is(err, catalog.ErrSchemaTooOld) {
		t.Fatalf("SkipMigrate on a new file: %v, want ErrSchemaTooOld", err)
	}
	c := openTest(t, path, catalog.Options{})
	if _, err := c.CreateTopic(ctx, catalog.TopicSpec{Name: "kept", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Data survives a reopen; migrating again is a no-op.
	c = openTest(t, path, catalog.Options{})
	if _, err := c.Topic(ctx, "kept"); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
	if _, err := c.w.ExecContext(ctx, `INSERT INTO schema_version (version, name, applied) VALUES (999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	c.Close()
	for _, skip := range []bool{false, true} {
		if _, err := Open(ctx, path, catalog.Options{SkipMigrate: skip}); !errors.Is(err, catalog.ErrSchemaTooNew) {
			t.Fatalf("Open(SkipMigrate=%v) of a newer file: %v, want ErrSchemaTooNew", skip, err)
		}
	}
}

func TestWALMode(t *testing.T) {
	c := openTest(t, filepath.Join(t.TempDir(), "catalog.db"), catalog.Options{})
	var mode string
	var sync int
	if err := c.w.QueryRowContext(context.Background(), `PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if err := c.w.QueryRowContext(context.Background(), `PRAGMA synchronous`).Scan(&sync); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || sync != 2 {
		t.Fatalf("journal_mode %q synchronous %d, want wal and 2 (FULL)", mode, sync)
	}
}

// TestWriteWaitEndsAtDeadline: a write waiting behind a long one (a large
// topic's delete) gives up when its context ends, as a PostgreSQL commit
// waiting on a lock does; it once waited for the lock whatever its
// deadline, so a commit bounded to land before the GC grace was not.
func TestWriteWaitEndsAtDeadline(t *testing.T) {
	c := openTest(t, t.TempDir()+"/catalog.db", catalog.Options{})
	if err := c.wmu.lock(context.Background()); err != nil { // the long write
		t.Fatal(err)
	}
	defer c.wmu.unlock()
	for name, write := range map[string]func(context.Context) error{
		"commit": func(ctx context.Context) error {
			_, err := c.CommitSegment(ctx, catalog.Segment{Key: "v1/x/k", Size: 1})
			return err
		},
		"create topic": func(ctx context.Context) error {
			_, err := c.CreateTopic(ctx, catalog.TopicSpec{Name: "t", Partitions: 1})
			return err
		},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		start := time.Now()
		err := write(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
			t.Errorf("%s behind a long write: %v after %v, want the deadline at once", name, err, time.Since(start))
		}
	}
}
