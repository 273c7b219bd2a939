package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/catalogtest"
)

func TestCompactionConformance(t *testing.T) {
	testURL(t)
	catalogtest.RunCompaction(t, func(t *testing.T) catalog.Catalog {
		return openTest(t, freshSchema(t), catalog.Options{})
	})
}

// TestGCQueriesUseTheirIndexes: garbage collection's queries walk a
// partial index of what they are after, with the parameters' values known
// (a statement's first executions) and in the generic plan a cached
// statement may get later, on a table of many live objects and
// tombstones. UnreferencedObjects once filtered on coalesce(unreferenced,
// created), which no index serves: every GC round scanned the objects
// table and probed batches for each live object.
func TestGCQueriesUseTheirIndexes(t *testing.T) {
	url := freshSchema(t)
	ctx := context.Background()
	c := openTest(t, url, catalog.Options{})
	for _, q := range []string{
		// Live objects, one row each.
		`INSERT INTO objects (key, size, created, state, commit_id, nrows, results)
SELECT 'live/' || i, 1000, now() - interval '1 day', 'live', i, 1, '\x' FROM generate_series(1, 20000) i`,
		`INSERT INTO batches (topic_id, partition, base_offset, last_offset, object_id, byte_offset, byte_length, records, max_timestamp)
SELECT '00000000-0000-0000-0000-000000000001', 0, o.commit_id, o.commit_id, o.id, 0, 100, 1, 0 FROM objects o`,
		// Tombstones, of the last few hours.
		`INSERT INTO objects (key, size, created, state, commit_id, nrows, results, unreferenced)
SELECT 'dead/' || i, 1000, now() - interval '1 day', 'deletable', 100000 + i, 1, '\x', now() - i * interval '1 second'
FROM generate_series(1, 20000) i`,
		// GC's candidates: a hundred objects without rows.
		`INSERT INTO objects (key, size, created, state, commit_id, nrows, results, unreferenced)
SELECT 'gone/' || i, 1000, now() - interval '1 day', 'compacted', 200000 + i, 1, '\x', now() - i * interval '1 minute'
FROM generate_series(1, 100) i`,
		`ANALYZE objects`,
		`ANALYZE batches`,
	} {
		if _, err := c.pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	before := time.Now().Add(-time.Hour)
	for _, tc := range []struct{ name, sql, index string }{
		{"UnreferencedObjects", sqlUnreferencedObjects, "objects_gc"},
		{"PruneTombstones", sqlPruneTombstones, "objects_tombstones"},
	} {
		check := func(how string, lines []string) {
			plan := strings.Join(lines, "\n")
			if !strings.Contains(plan, "using "+tc.index+" on objects") || strings.Contains(plan, "Seq Scan") {
				t.Errorf("%s (%s) does not walk %s:\n%s", tc.name, how, tc.index, plan)
			}
		}
		rows, err := c.pool.Query(ctx, `EXPLAIN `+tc.sql, before, 500)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		check("custom plan", lines)

		err = pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `PREPARE gc_plan(timestamptz, int) AS `+tc.sql); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `EXPLAIN EXECUTE gc_plan(now() - interval '1 hour', 500)`)
			if err != nil {
				return err
			}
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			check("generic plan", lines)
			_, err = tx.Exec(ctx, `DEALLOCATE gc_plan`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
