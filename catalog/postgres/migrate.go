package postgres

import (
	"context"
	"embed"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/internal/migrate"
)

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

const versionTableSQL = `CREATE TABLE IF NOT EXISTS schema_version (
    version integer PRIMARY KEY,
    name    text NOT NULL,
    applied timestamptz NOT NULL DEFAULT now()
)`

// migrateLockTimeout bounds each wait of a migration's statements for a
// lock (SET LOCAL lock_timeout). A migration that alters or locks objects
// (0002, 0007) needs a lock no other transaction may hold, and while it
// waits every later request for a lock on the table queues behind it: one
// long reader of objects (a pg_dump, which docs/operations.md recommends
// daily; an anti-wraparound vacuum; a report) held up every agent's commits
// and fetches for the whole statement timeout, after which the migration
// failed and a restarted agent tried again. Now they wait at most this
// long; the migration logs what holds the lock and tries again after
// migrateBackoff, until its caller's context ends.
const migrateLockTimeout = 2 * time.Second

// migrateRetryMax bounds the pause between a migration's attempts at its
// locks. The pause doubles from half the lock timeout (with jitter), so
// while a reader keeps the table the agents' requests on it wait for up to
// migrateLockTimeout once every 15 to 30 s, not all the time.
const migrateRetryMax = 30 * time.Second

const codeLockNotAvailable = "55P03"

// Migrate applies pending migrations, each in its own transaction, under an
// advisory lock per schema so agents starting together migrate once. It
// fails with ErrSchemaTooNew if the database is newer than the binary.
// `floe migrate` calls it; Open calls it unless Options.SkipMigrate.
//
// A schema already up to date is only read, so agents whose role may only
// read and write the tables can open it. Otherwise the migration's
// statements are bounded by ctx's deadline rather than by
// Options.StatementTimeout, and a migration that cannot get a table lock
// within migrateLockTimeout is tried again until ctx ends.
func (c *Catalog) Migrate(ctx context.Context) error {
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("catalog: migrate: %w", err)
	}
	defer conn.Release()
	// Read the version before anything needing more than DML rights:
	// CREATE TABLE IF NOT EXISTS checks for CREATE on the schema before it
	// looks for the table, so it failed for agents with a DML-only role
	// (the schema migrated by `floe migrate` as a role with DDL rights).
	cur, err := readVersion(ctx, conn)
	if err != nil {
		return err
	}
	latest := SchemaVersion()
	if cur > latest {
		return fmt.Errorf("%w: database schema version %d, binary knows %d", catalog.ErrSchemaTooNew, cur, latest)
	}
	if cur == latest {
		return nil
	}
	// The migration's statements, the wait for another process's
	// migration included, are bounded by the caller's deadline (floe
	// migrate --timeout, an agent's start), not by StatementTimeout, which
	// is sized for the agents' short statements: 0006's UPDATE of every
	// object takes about 1.5 s a million. The setting lasts until the
	// deferred RESET, before the pool has the connection back.
	if d, ok := ctx.Deadline(); ok {
		ms := strconv.FormatInt(max(time.Until(d).Milliseconds(), 1), 10)
		if _, err := conn.Exec(ctx, "SELECT set_config('statement_timeout', $1, false)", ms); err != nil {
			return fmt.Errorf("catalog: migrate: %w", err)
		}
	}
	defer func() {
		// A failure leaves the lock or the setting with the session: close it.
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtext('floe.migrate.' || current_schema())); RESET statement_timeout"); err != nil {
			conn.Conn().Close(context.Background())
		}
	}()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext('floe.migrate.' || current_schema()))"); err != nil {
		return fmt.Errorf("catalog: migrate: lock: %w", err)
	}
	if _, err := conn.Exec(ctx, versionTableSQL); err != nil {
		return fmt.Errorf("catalog: migrate: create schema_version: %w", err)
	}
	// Another process may have migrated while this one waited for the lock.
	if cur, err = currentVersion(ctx, conn); err != nil {
		return err
	}
	if cur > latest {
		return fmt.Errorf("%w: database schema version %d, binary knows %d", catalog.ErrSchemaTooNew, cur, latest)
	}
	for _, m := range migrations[cur:] {
		if err := c.apply(ctx, conn, m); err != nil {
			return fmt.Errorf("catalog: migrate: apply %s: %w", m.Name, err)
		}
		c.log.Info("applied catalog migration", "version", m.Version, "name", m.Name, "schema", c.schema)
	}
	return nil
}

// apply runs migration m in one transaction, whose lock waits are bounded
// by migrateLockTimeout. One that timed out is logged with the sessions
// that held the lock, and m is tried again after a pause, until ctx ends.
func (c *Catalog) apply(ctx context.Context, conn *pgxpool.Conn, m migrate.Migration) error {
	setLockTimeout := fmt.Sprintf("SET LOCAL lock_timeout = %d", migrateLockTimeout.Milliseconds())
	for attempt := 1; ; attempt++ {
		w := c.watchBlockers(ctx, conn.Conn().PgConn().PID())
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, setLockTimeout); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_version (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		blockers := w.stop()
		if err == nil || pgCode(err) != codeLockNotAvailable {
			return err
		}
		if blockers == "" {
			blockers = "sessions unknown (gone or unreadable when looked for)"
		}
		err = fmt.Errorf("lock held by %s: %w", blockers, err)
		d := migrateBackoff(attempt)
		c.log.Warn("catalog migration could not lock a table other sessions use; trying again",
			"name", m.Name, "schema", c.schema, "attempt", attempt, "lock_timeout", migrateLockTimeout, "retry_in", d, "blocked_by", blockers)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// migrateBackoff is the pause after a migration's attempt (≥ 1) timed out
// on a lock: from half migrateLockTimeout, doubling up to migrateRetryMax,
// with half of it jittered.
func migrateBackoff(attempt int) time.Duration {
	d := min(migrateLockTimeout/2<<min(attempt-1, 10), migrateRetryMax)
	return d/2 + rand.N(d/2+1)
}

// blockerWatch reads, while a migration runs, which sessions block its
// connection's lock waits, so that a lock timeout can say what held the
// lock: by the time the statement fails it waits no more, and
// pg_blocking_pids names nobody.
type blockerWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	last   string // the last sessions found, written by the goroutine until done
}

// watchBlockers starts reading the blockers of backend pid every half
// lock timeout, on another pool connection.
func (c *Catalog) watchBlockers(ctx context.Context, pid uint32) *blockerWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &blockerWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(migrateLockTimeout / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if s := c.blockers(ctx, pid); s != "" {
				w.last = s
			}
		}
	}()
	return w
}

// stop ends the watch and returns the last blockers it found ("" if none).
func (w *blockerWatch) stop() string {
	w.cancel()
	<-w.done
	return w.last
}

// blockers describes the sessions that block backend pid's lock wait: pid,
// user, application, state and query (PostgreSQL shows another role's
// state and query only to superusers and members of pg_read_all_stats),
// or "" if there are none or they cannot be read.
func (c *Catalog) blockers(ctx context.Context, pid uint32) string {
	ctx, cancel := context.WithTimeout(ctx, migrateLockTimeout)
	defer cancel()
	rows, err := c.pool.Query(ctx, `SELECT pid, coalesce(usename, ''), coalesce(application_name, ''), coalesce(state, ''),
    coalesce(extract(epoch FROM now() - xact_start), 0)::float8, left(coalesce(query, ''), 200)
FROM pg_stat_activity WHERE pid = ANY (pg_blocking_pids($1)) ORDER BY pid`, int64(pid))
	if err != nil {
		return ""
	}
	var (
		b                       strings.Builder
		bpid                    int64
		user, app, state, query string
		xactSecs                float64
	)
	_, err = pgx.ForEachRow(rows, []any{&bpid, &user, &app, &state, &xactSecs, &query}, func() error {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "pid %d (user %q, application %q", bpid, user, app)
		if state != "" {
			fmt.Fprintf(&b, ", %s, transaction open %v, query %q",
				state, time.Duration(xactSecs*float64(time.Second)).Round(time.Second), query)
		}
		b.WriteString(")")
		return nil
	})
	if err != nil {
		return ""
	}
	return b.String()
}

func currentVersion(ctx context.Context, conn *pgxpool.Conn) (int, error) {
	var v int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("catalog: read schema version: %w", err)
	}
	return v, nil
}

// readVersion is the schema's version, 0 if it has no schema_version
// table. It needs no right beyond reading the table. The table is looked
// for in the current schema, the one migrations create it in: another on
// the search_path is another catalog's.
func readVersion(ctx context.Context, conn *pgxpool.Conn) (int, error) {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass(format('%I.schema_version', current_schema())) IS NOT NULL").Scan(&exists); err != nil {
		return 0, fmt.Errorf("catalog: read schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	return currentVersion(ctx, conn)
}

// checkVersion is Open's check when migrations are skipped.
func (c *Catalog) checkVersion(ctx context.Context) error {
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("catalog: check schema version: %w", err)
	}
	defer conn.Release()
	cur, err := readVersion(ctx, conn)
	if err != nil {
		return err
	}
	switch latest := SchemaVersion(); {
	case cur > latest:
		return fmt.Errorf("%w: database schema version %d, binary knows %d", catalog.ErrSchemaTooNew, cur, latest)
	case cur < latest:
		return fmt.Errorf("%w: database schema version %d, binary needs %d: run floe migrate", catalog.ErrSchemaTooOld, cur, latest)
	}
	return nil
}
