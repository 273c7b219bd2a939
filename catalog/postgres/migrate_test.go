package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	neturl "net/url"
	"strings"
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

// TestMigrationStampsRowlessObjects: migration 0006 stamps the objects
// earlier versions left without rows and unstamped (a commit none of whose
// batches was stored), which GC, going by the stamp alone, would never
// collect otherwise; with the migration's time, so they get a grace period
// from it. Nothing else changes: an object with rows stays unstamped, and
// stamped objects and tombstones keep their stamps.
func TestMigrationStampsRowlessObjects(t *testing.T) {
	url := freshSchema(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	migrateTo(t, conn, 5)
	stamped := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	died := time.Date(2002, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := conn.Exec(ctx, `INSERT INTO objects (key, size, created, state, commit_id, nrows, results, unreferenced) VALUES
    ('rows', 1, now() - interval '1 day', 'live', 1, 1, '\x', NULL),
    ('norows', 1, now() - interval '1 day', 'live', 2, 0, '\x', NULL),
    ('stamped', 1, now() - interval '1 day', 'compacted', 3, 1, '\x', $1),
    ('tomb', 1, now() - interval '1 day', 'deletable', 4, 1, '\x', $2)`, stamped, died); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO batches (topic_id, partition, base_offset, last_offset, object_id, byte_offset, byte_length, records, max_timestamp)
SELECT '00000000-0000-0000-0000-000000000001', 0, 0, 0, id, 0, 1, 1, 0 FROM objects WHERE key = 'rows'`); err != nil {
		t.Fatal(err)
	}
	var from, to time.Time
	if err := conn.QueryRow(ctx, `SELECT now()`).Scan(&from); err != nil {
		t.Fatal(err)
	}
	c := openTest(t, url, catalog.Options{}) // migrates
	if err := conn.QueryRow(ctx, `SELECT now()`).Scan(&to); err != nil {
		t.Fatal(err)
	}
	got := map[string]*time.Time{}
	rows, err := conn.Query(ctx, `SELECT key, unreferenced FROM objects`)
	if err != nil {
		t.Fatal(err)
	}
	var key string
	var at *time.Time
	if _, err := pgx.ForEachRow(rows, []any{&key, &at}, func() error { got[key] = at; return nil }); err != nil {
		t.Fatal(err)
	}
	if got["rows"] != nil {
		t.Errorf("object with rows stamped %v", got["rows"])
	}
	if a := got["norows"]; a == nil || a.Before(from) || a.After(to) {
		t.Errorf("object without rows stamped %v, want the migration's time, in [%v, %v]", a, from, to)
	}
	if a := got["stamped"]; a == nil || !a.Equal(stamped) {
		t.Errorf("stamped object restamped %v, want %v", a, stamped)
	}
	if a := got["tomb"]; a == nil || !a.Equal(died) {
		t.Errorf("tombstone restamped %v, want %v", a, died)
	}
	objs, err := c.UnreferencedObjects(ctx, to.Add(time.Second), 100)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	if len(keys) != 2 || keys[0] != "stamped" || keys[1] != "norows" {
		t.Errorf("unreferenced after the migration: %v, want [stamped norows]", keys)
	}
}

// migrateTo applies the first n migrations on conn's schema, as Migrate
// would, so a test can start from an older schema.
func migrateTo(t *testing.T, conn *pgx.Conn, n int) {
	t.Helper()
	ctx := context.Background()
	if _, err := conn.Exec(ctx, versionTableSQL); err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:n] {
		if _, err := conn.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO schema_version (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMigrationLockWaitBounded: a migration that must lock objects (0007
// takes it ACCESS EXCLUSIVE) while another transaction reads the table (a
// pg_dump, a long report) waits for the lock at most migrateLockTimeout at
// a time. Every later lock request on objects queues behind the
// migration's, so commits (INSERT INTO objects) and fetches (reads of
// objects) were held up for the whole statement timeout, and the migration
// then failed. Now they wait at most the lock timeout; the migration logs
// what holds the lock, tries again and completes once the reader ends.
func TestMigrationLockWaitBounded(t *testing.T) {
	url := freshSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	connect := func(app string) *pgx.Conn {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		cfg.RuntimeParams["application_name"] = app
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}
	admin := connect("floe-test-admin")
	migrateTo(t, admin, 6)

	reader := connect("floe-test-dump")
	rtx, err := reader.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rtx.Exec(ctx, `SELECT count(*) FROM objects`); err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer // read after done
	done := make(chan error, 1)
	go func() {
		c, err := Open(ctx, url, catalog.Options{
			StatementTimeout: 10 * time.Second,
			Logger:           slog.New(slog.NewTextHandler(&logs, nil)),
		})
		if err == nil {
			c.Close()
		}
		done <- err
	}()

	// The statements a commit and a fetch make of objects, each on its own
	// connection, started while the migration waits for its lock.
	ops := []struct{ name, sql string }{
		{"commit's INSERT INTO objects", `INSERT INTO objects (key, size, created, state, commit_id, nrows, results) VALUES ('k', 1, now(), 'live', 1, 1, '\x')`},
		{"fetch's read of objects", `SELECT count(*) FROM objects`},
	}
	conns := make([]*pgx.Conn, len(ops))
	for i := range ops {
		conns[i] = connect("floe-test-agent")
	}
	for waited := time.Duration(0); ; waited += 10 * time.Millisecond {
		var queued bool
		if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_locks WHERE relation = 'objects'::regclass AND NOT granted)`).Scan(&queued); err != nil {
			t.Fatal(err)
		}
		if queued {
			break
		}
		if waited > 20*time.Second {
			t.Fatal("the migration never waited for a lock on objects")
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := make([]time.Duration, len(ops))
	var wg sync.WaitGroup
	for i, op := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			if _, err := conns[i].Exec(ctx, op.sql); err != nil {
				t.Errorf("%s: %v", op.name, err)
			}
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	// Halfway between the lock timeout, which ends each wait (about 2 s
	// observed), and the statement timeout, which ended the unbounded one
	// (10 s): no margin to tune for a loaded machine.
	bound := (migrateLockTimeout + 10*time.Second) / 2
	for i, op := range ops {
		if took[i] > bound {
			t.Errorf("%s waited %v behind the migration's lock request, want at most %v", op.name, took[i], bound)
		}
	}

	time.Sleep(migrateLockTimeout) // a retry or two while the reader holds on
	if err := rtx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("migration after the reader ended: %v", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("the migration did not complete after the reader ended")
	}
	var v int
	if err := admin.QueryRow(ctx, `SELECT max(version) FROM schema_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != SchemaVersion() {
		t.Fatalf("schema at version %d after the migration, want %d", v, SchemaVersion())
	}
	if !strings.Contains(logs.String(), "floe-test-dump") {
		t.Errorf("the migration's log does not name the session holding the lock (application floe-test-dump):\n%s", logs.String())
	}
}

// TestMigrationOutlastsStatementTimeout: a migration's statements are
// bounded by its caller's deadline (floe migrate --timeout, 5 minutes by
// default), not by StatementTimeout, which is sized for the agents' short
// statements: waiting for another process's migration (the advisory lock)
// or one migration's UPDATE of every object (0006, about 1.5 s a million
// objects) may take longer.
func TestMigrationOutlastsStatementTimeout(t *testing.T) {
	url := freshSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	holder, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_lock(hashtext('floe.migrate.' || current_schema()))`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		c, err := Open(ctx, url, catalog.Options{StatementTimeout: time.Second})
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	time.Sleep(2500 * time.Millisecond)
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_unlock(hashtext('floe.migrate.' || current_schema()))`); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Open waiting 2.5 s for another migration, with a 1 s statement timeout and a minute's deadline: %v", err)
	}
}

// TestOpenAsDMLOnlyRole: an agent whose role may only read and write the
// catalog's tables (least privilege; the schema migrated by `floe migrate`
// as a role with DDL rights) opens a migrated catalog. Migrate ran CREATE
// TABLE IF NOT EXISTS schema_version before reading the version, and
// PostgreSQL checks CREATE on the schema before it looks for the table:
// such agents failed at start with "permission denied for schema".
func TestOpenAsDMLOnlyRole(t *testing.T) {
	url := freshSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	openTest(t, url, catalog.Options{}).Close() // migrates

	var b [4]byte
	rand.Read(b[:])
	role := "floe_dml_" + hex.EncodeToString(b[:])
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, `CREATE ROLE `+role+` LOGIN`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Errorf("drop role %s: %v", role, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP OWNED BY `+role+`; DROP ROLE `+role); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	if _, err := admin.Exec(ctx, `DO $$ BEGIN
EXECUTE format('GRANT USAGE ON SCHEMA %I TO `+role+`', current_schema());
EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO `+role+`', current_schema());
EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO `+role+`', current_schema());
END $$`); err != nil {
		t.Fatal(err)
	}
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	u.User = neturl.User(role)
	c := openTest(t, u.String(), catalog.Options{})
	topic, err := c.CreateTopic(ctx, catalog.TopicSpec{Name: "dml", Partitions: 1})
	if err != nil {
		t.Fatalf("CreateTopic as a DML-only role: %v", err)
	}
	if _, err := c.CommitSegment(ctx, oneBatchSegment("dml-1", topic.ID)); err != nil {
		t.Fatalf("CommitSegment as a DML-only role: %v", err)
	}
}
