package postgres

import (
	"context"
	"embed"
	"fmt"

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

// Migrate applies pending migrations, each in its own transaction, under an
// advisory lock per schema so agents starting together migrate once. It
// fails with ErrSchemaTooNew if the database is newer than the binary.
// `floe migrate` calls it; Open calls it unless Options.SkipMigrate.
func (c *Catalog) Migrate(ctx context.Context) error {
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("catalog: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext('floe.migrate.' || current_schema()))"); err != nil {
		return fmt.Errorf("catalog: migrate: lock: %w", err)
	}
	defer func() {
		// A failed unlock leaves the lock with the session: close it.
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtext('floe.migrate.' || current_schema()))"); err != nil {
			conn.Conn().Close(context.Background())
		}
	}()
	if _, err := conn.Exec(ctx, versionTableSQL); err != nil {
		return fmt.Errorf("catalog: migrate: create schema_version: %w", err)
	}
	cur, err := currentVersion(ctx, conn)
	if err != nil {
		return err
	}
	latest := SchemaVersion()
	if cur > latest {
		return fmt.Errorf("%w: database schema version %d, binary knows %d", catalog.ErrSchemaTooNew, cur, latest)
	}
	for _, m := range migrations[cur:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_version (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("catalog: migrate: apply %s: %w", m.Name, err)
		}
		c.log.Info("applied catalog migration", "version", m.Version, "name", m.Name, "schema", c.schema)
	}
	return nil
}

func currentVersion(ctx context.Context, conn *pgxpool.Conn) (int, error) {
	var v int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("catalog: read schema version: %w", err)
	}
	return v, nil
}

// checkVersion is Open's check when migrations are skipped.
func (c *Catalog) checkVersion(ctx context.Context) error {
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("catalog: check schema version: %w", err)
	}
	defer conn.Release()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('schema_version') IS NOT NULL").Scan(&exists); err != nil {
		return fmt.Errorf("catalog: check schema version: %w", err)
	}
	cur := 0
	if exists {
		if cur, err = currentVersion(ctx, conn); err != nil {
			return err
		}
	}
	switch latest := SchemaVersion(); {
	case cur > latest:
		return fmt.Errorf("%w: database schema version %d, binary knows %d", catalog.ErrSchemaTooNew, cur, latest)
	case cur < latest:
		return fmt.Errorf("%w: database schema version %d, binary needs %d: run floe migrate", catalog.ErrSchemaTooOld, cur, latest)
	}
	return nil
}
