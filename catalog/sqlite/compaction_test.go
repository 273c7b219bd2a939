package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/catalogtest"
)

func TestCompactionConformance(t *testing.T) {
	catalogtest.RunCompaction(t, func(t *testing.T) catalog.Catalog {
		return openTest(t, filepath.Join(t.TempDir(), "catalog.db"), catalog.Options{})
	})
}

// TestGCQueriesUseTheirIndexes: garbage collection's queries walk a
// partial index of what they are after (see the PostgreSQL backend's
// test), not the objects table.
func TestGCQueriesUseTheirIndexes(t *testing.T) {
	c := openTest(t, filepath.Join(t.TempDir(), "catalog.db"), catalog.Options{})
	ctx := context.Background()
	for _, tc := range []struct{ name, sql, index string }{
		{"UnreferencedObjects", sqlUnreferencedObjects, "objects_gc"},
		{"PruneTombstones", sqlPruneTombstones, "objects_tombstones"},
	} {
		rows, err := c.r.QueryContext(ctx, `EXPLAIN QUERY PLAN `+tc.sql, micros(time.Now()), 500)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		p := strings.Join(plan, "\n")
		// SCAN is a walk of a whole table or index; SEARCH uses a key.
		if !strings.Contains(p, "INDEX "+tc.index+" (unreferenced<?)") || strings.Contains(p, "SCAN ") {
			t.Errorf("%s does not walk %s:\n%s", tc.name, tc.index, p)
		}
	}
}

// TestMigrationStampsRowlessObjects: migration 0005 stamps the objects
// earlier versions left without rows and unstamped, with the migration's
// time; nothing else changes (see the PostgreSQL backend's test).
func TestMigrationStampsRowlessObjects(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "catalog.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, versionTableSQL); err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:4] {
		if _, err := db.ExecContext(ctx, m.SQL); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO schema_version (version, name, applied) VALUES (?1, ?2, 0)`, m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}
	created := micros(time.Now().Add(-24 * time.Hour))
	const stamped, died = 1_000_000, 2_000_000
	if _, err := db.ExecContext(ctx, `INSERT INTO objects (key, size, created, state, commit_id, results, unreferenced) VALUES
    ('rows', 1, ?1, 'live', 1, x'', NULL),
    ('norows', 1, ?1, 'live', 2, x'', NULL),
    ('stamped', 1, ?1, 'compacted', 3, x'', ?2),
    ('tomb', 1, ?1, 'deletable', 4, x'', ?3)`, created, stamped, died); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO batches (topic_id, partition, base_offset, last_offset, object_id, byte_offset, byte_length, records, max_timestamp, commit_id)
SELECT zeroblob(16), 0, 0, 0, id, 0, 1, 1, 0, 1 FROM objects WHERE key = 'rows'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	from := micros(time.Now())
	c := openTest(t, path, catalog.Options{}) // migrates
	to := micros(time.Now())
	got := map[string]*int64{}
	rows, err := c.r.QueryContext(ctx, `SELECT key, unreferenced FROM objects`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var key string
		var at *int64
		if err := rows.Scan(&key, &at); err != nil {
			t.Fatal(err)
		}
		got[key] = at
	}
	rows.Close()
	if got["rows"] != nil {
		t.Errorf("object with rows stamped %d", *got["rows"])
	}
	// unixepoch('subsec') has millisecond precision.
	if a := got["norows"]; a == nil || *a < from-1000 || *a > to {
		t.Errorf("object without rows stamped %v, want the migration's time, in [%d, %d]", a, from, to)
	}
	if a := got["stamped"]; a == nil || *a != stamped {
		t.Errorf("stamped object restamped %v, want %d", a, stamped)
	}
	if a := got["tomb"]; a == nil || *a != died {
		t.Errorf("tombstone restamped %v, want %d", a, died)
	}
	objs, err := c.UnreferencedObjects(ctx, time.Now().Add(time.Second), 100)
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
