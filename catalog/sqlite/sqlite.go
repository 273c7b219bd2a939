// Package sqlite is the embedded catalog backend: one SQLite file (pure Go,
// modernc.org/sqlite), for `floe dev` and single-agent deployments.
//
// Guarantees beyond catalog.Catalog's:
//   - The file runs in WAL journal mode with synchronous=FULL: a returned
//     commit survives power loss.
//   - Writes are serialized: one writer connection, guarded by a mutex in
//     this process and by SQLite's write lock (BEGIN IMMEDIATE, waiting up
//     to Options.BusyTimeout) against other processes. Reads use a separate
//     pool and never block on writers.
//   - The schema and its semantics match catalog/postgres (own embedded,
//     numbered migrations; the same commitplan decides every batch).
//   - Watch and WatchTopicConfigs are in-process: they see the commits and
//     topic config changes made through this Catalog value only. Another
//     process writing the same file is not observed.
//
// ":memory:" opens a private in-memory catalog on a single connection, for
// tests.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/internal/migrate"
	"github.com/floebroker/floe/catalog/internal/watchhub"
)

// Catalog is a catalog.Catalog on one SQLite file. Safe for concurrent use.
type Catalog struct {
	w    *sql.DB // the single writer connection
	r    *sql.DB // readers (== w for :memory:)
	wmu  writeLock
	opts catalog.Options
	log  *slog.Logger
	now  func() time.Time
	path string

	hub       *watchhub.Hub
	configHub *watchhub.Hub // topic config change numbers
	closed    atomic.Bool

	// stmts are the readers' prepared statements (read.go).
	stmts stmtCache
}

var _ catalog.Catalog = (*Catalog)(nil)

//go:embed migrations/*.sql
var migrationFS embed.FS

var migrations = func() []migrate.Migration {
	ms, err := migrate.Load(migrationFS, "migrations")
	if err != nil {
		panic(err) // a broken embedded file set is a build mistake
	}
	return ms
}()

// SchemaVersion is the schema version this binary expects.
func SchemaVersion() int { return migrate.Latest(migrations) }

// Open opens (creating if needed) the catalog file at path, or a private
// in-memory catalog for ":memory:", and migrates it unless
// opts.SkipMigrate.
func Open(ctx context.Context, path string, opts catalog.Options) (*Catalog, error) {
	opts = opts.WithDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if path == "" {
		return nil, fmt.Errorf("catalog: sqlite: empty path")
	}
	c := &Catalog{
		wmu:  newWriteLock(),
		opts: opts,
		log:  opts.Logger.With("component", "catalog", "backend", "sqlite"),
		now:  opts.Now,
		path: path,
		hub:  watchhub.New(),

		configHub: watchhub.New(),
	}
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(opts.BusyTimeout.Milliseconds()))
	q.Set("_foreign_keys", "1")
	q.Set("_txlock", "immediate")
	if path == ":memory:" {
		db, err := sql.Open("sqlite", ":memory:?"+q.Encode())
		if err != nil {
			return nil, fmt.Errorf("catalog: sqlite: open: %w", err)
		}
		// One connection forever: every connection of :memory: is a
		// different database.
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxIdleTime(0)
		db.SetConnMaxLifetime(0)
		c.w, c.r = db, db
	} else {
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("catalog: sqlite: create directory: %w", err)
			}
		}
		// The catalog holds topic names, group offsets and producer state:
		// readable by its owner only. SQLite gives its -wal and -shm files
		// the database file's mode, so creating that file first is enough.
		f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("catalog: sqlite: create %s: %w", path, err)
		}
		f.Close()
		q.Set("_journal_mode", "WAL")
		q.Set("_synchronous", "FULL")
		if runtime.GOOS == "darwin" {
			// On macOS fsync(2) leaves the data in the drive's cache;
			// only F_FULLFSYNC, which SQLite uses when asked, reaches
			// the medium (Go's File.Sync, which the WAL and the file
			// bucket use, does so already). Without it a commit
			// acknowledged before a power cut could be lost while its
			// object survived.
			q.Add("_pragma", "fullfsync(1)")
			q.Add("_pragma", "checkpoint_fullfsync(1)")
		}
		w, err := sql.Open("sqlite", path+"?"+q.Encode())
		if err != nil {
			return nil, fmt.Errorf("catalog: sqlite: open %s: %w", path, err)
		}
		w.SetMaxOpenConns(1)
		w.SetMaxIdleConns(1)
		q.Set("_txlock", "deferred")
		q.Set("_query_only", "1")
		r, err := sql.Open("sqlite", path+"?"+q.Encode())
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("catalog: sqlite: open %s: %w", path, err)
		}
		r.SetMaxOpenConns(8)
		r.SetMaxIdleConns(8)
		c.w, c.r = w, r
	}
	if err := c.init(ctx); err != nil {
		c.closeDBs()
		return nil, err
	}
	return c, nil
}

func (c *Catalog) init(ctx context.Context) error {
	// The writer applies the journal mode (a persistent file setting) before
	// any reader connects.
	if err := c.w.PingContext(ctx); err != nil {
		return fmt.Errorf("catalog: sqlite: open %s: %w", c.path, err)
	}
	if c.opts.SkipMigrate {
		return c.checkVersion(ctx)
	}
	return c.Migrate(ctx)
}

const versionTableSQL = `CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name    TEXT NOT NULL,
    applied INTEGER NOT NULL
)`

// Migrate applies pending migrations, each in its own IMMEDIATE
// transaction (SQLite's DDL is transactional and the write lock keeps other
// processes out). It fails with ErrSchemaTooNew if the file is newer than
// the binary.
func (c *Catalog) Migrate(ctx context.Context) error {
	if err := c.wmu.lock(ctx); err != nil {
		return fmt.Errorf("catalog: migrate: %w", err)
	}
	defer c.wmu.unlock()
	if _, err := c.w.ExecContext(ctx, versionTableSQL); err != nil {
		return fmt.Errorf("catalog: migrate: create schema_version: %w", err)
	}
	for {
		tx, err := c.w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("catalog: migrate: %w", err)
		}
		var cur int
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&cur); err != nil {
			tx.Rollback()
			return fmt.Errorf("catalog: read schema version: %w", err)
		}
		latest := SchemaVersion()
		if cur > latest {
			tx.Rollback()
			return fmt.Errorf("%w: database schema version %d, binary knows %d", catalog.ErrSchemaTooNew, cur, latest)
		}
		if cur == latest {
			return tx.Rollback()
		}
		m := migrations[cur]
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			tx.Rollback()
			return fmt.Errorf("catalog: migrate: apply %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, name, applied) VALUES (?1, ?2, ?3)`,
			m.Version, m.Name, c.now().UnixMicro()); err != nil {
			tx.Rollback()
			return fmt.Errorf("catalog: migrate: apply %s: %w", m.Name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("catalog: migrate: apply %s: %w", m.Name, err)
		}
		c.log.Info("applied catalog migration", "version", m.Version, "name", m.Name, "path", c.path)
	}
}

func (c *Catalog) checkVersion(ctx context.Context) error {
	var cur int
	err := c.w.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&cur)
	if err != nil && !isNoSuchTable(err) {
		return fmt.Errorf("catalog: check schema version: %w", err)
	}
	switch latest := SchemaVersion(); {
	case cur > latest:
		return fmt.Errorf("%w: database schema version %d, binary knows %d", catalog.ErrSchemaTooNew, cur, latest)
	case cur < latest:
		return fmt.Errorf("%w: database schema version %d, binary needs %d: run floe migrate", catalog.ErrSchemaTooOld, cur, latest)
	}
	return nil
}

func isNoSuchTable(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "no such table")
}

// Close closes every Watch and WatchTopicConfigs channel and the
// database.
func (c *Catalog) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.hub.Close()
	c.configHub.Close()
	// Wait for a write in flight so it is not cut off mid-transaction.
	_ = c.wmu.lock(context.Background())
	defer c.wmu.unlock()
	return c.closeDBs()
}

func (c *Catalog) closeDBs() error {
	var errs []error
	if c.r != c.w {
		errs = append(errs, c.r.Close())
	}
	errs = append(errs, c.w.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("catalog: sqlite: close: %w", err)
	}
	return nil
}

// Ping checks that the database file answers (for readiness probes).
func (c *Catalog) Ping(ctx context.Context) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := c.r.PingContext(ctx); err != nil {
		return fmt.Errorf("catalog: ping: %w", err)
	}
	return nil
}

func (c *Catalog) checkOpen() error {
	if c.closed.Load() {
		return catalog.ErrClosed
	}
	return nil
}

// writeLock serializes the writer connection's transactions (and, for
// ":memory:", every statement). A waiter gives up when its context ends: a
// long write (a large topic's delete, a trim after DeleteRecords) would
// otherwise hold every produce commit, offset commit and heartbeat past
// its deadline — a commit bounded so that it never lands after the GC
// grace included.
type writeLock chan struct{}

func newWriteLock() writeLock { return make(chan struct{}, 1) }

// lock takes the lock, or returns ctx's error if ctx ends first.
func (l writeLock) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err // select would pick at random with the lock free
	}
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l writeLock) unlock() { <-l }

// write runs fn in an IMMEDIATE transaction on the writer connection.
func (c *Catalog) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := c.wmu.lock(ctx); err != nil {
		return err
	}
	defer c.wmu.unlock()
	tx, err := c.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// read runs fn in a read transaction (one snapshot) on a reader connection.
func (c *Catalog) read(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if c.r == c.w {
		// :memory: shares the one connection with writers.
		if err := c.wmu.lock(ctx); err != nil {
			return err
		}
		defer c.wmu.unlock()
	}
	tx, err := c.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: c.r != c.w})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(tx)
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func topicID(b []byte) (catalog.TopicID, error) {
	var id catalog.TopicID
	if len(b) != len(id) {
		return id, fmt.Errorf("stored topic id has %d bytes", len(b))
	}
	copy(id[:], b)
	return id, nil
}
