package postgres

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floebroker/floe/catalog"
)

func TestMigrateConcurrently(t *testing.T) {
	url := freshSchema(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := Open(context.Background(), url, catalog.Options{})
			if err == nil {
				c.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
	c := openTest(t, url, catalog.Options{SkipMigrate: true})
	var n, v int
	if err := c.pool.QueryRow(context.Background(), `SELECT count(*), max(version) FROM schema_version`).Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != SchemaVersion() || v != SchemaVersion() {
		t.Fatalf("schema_version has %d rows up to %d, want %d", n, v, SchemaVersion())
	}
	if err := c.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
}

func TestSchemaVersionChecks(t *testing.T) {
	ctx := context.Background()
	url := freshSchema(t)
	_, err := Open(ctx, url, catalog.Options{SkipMigrate: true})
	if !errors.Is(err, catalog.ErrSchemaTooOld) {
		t.Fatalf("SkipMigrate on an empty schema: %v, want ErrSchemaTooOld", err)
	}
	c := openTest(t, url, catalog.Options{})
	if _, err := c.pool.Exec(ctx, `INSERT INTO schema_version (version, name) VALUES (999, '0999_future.sql')`); err != nil {
		t.Fatal(err)
	}
	for _, skip := range []bool{false, true} {
		_, err := Open(ctx, url, catalog.Options{SkipMigrate: skip})
		if !errors.Is(err, catalog.ErrSchemaTooNew) {
			t.Fatalf("Open(SkipMigrate=%v) of a newer schema: %v, want ErrSchemaTooNew", skip, err)
		}
	}
	if err := c.Migrate(ctx); !errors.Is(err, catalog.ErrSchemaTooNew) {
		t.Fatalf("Migrate of a newer schema: %v", err)
	}
}

// TestWatchReconnects kills the LISTEN connection: the listener reconnects
// and publishes the latest commit id, so a follower learns of commits made
// while it was disconnected.
func TestWatchReconnects(t *testing.T) {
	url := freshSchema(t)
	watcher := openTest(t, url, catalog.Options{ApplicationName: "floe-watch-test"})
	writer := openTest(t, url, catalog.Options{})
	ctx := context.Background()
	topic, err := writer.CreateTopic(ctx, catalog.TopicSpec{Name: "w", Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := watcher.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	commit := func(i int) int64 {
		res, err := writer.CommitSegment(ctx, oneBatchSegment("w"+string(rune('a'+i)), topic.ID))
		if err != nil {
			t.Fatal(err)
		}
		return res.CommitID
	}
	waitFor := func(id int64) { waitCommit(t, ch, id, 20*time.Second) }
	waitFor(commit(0))
	admin, err := pgx.Connect(ctx, testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var killed int
	if err := admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE application_name = 'floe-watch-test/listen'`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d listener connections, want 1", killed)
	}
	waitFor(commit(1))
}
