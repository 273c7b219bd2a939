package postgres

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/floebroker/floe/catalog"
)

// TestAdvanceLockOrder: sqlAdvance locks partitions in the order its
// nested loop visits them, which is the sorted subquery's only if the
// subquery is the outer side and each partition is an index probe. Check
// the generic plan a commit transaction gets, on a small and a large
// partitions table.
func TestAdvanceLockOrder(t *testing.T) {
	url := freshSchema(t)
	ctx := context.Background()
	c := openTest(t, url, catalog.Options{})
	for _, n := range []int32{2, 3000} {
		if _, err := c.CreateTopic(ctx, catalog.TopicSpec{Name: "t" + string(rune('a'+n%26)), Partitions: n}); err != nil {
			t.Fatal(err)
		}
		conn, err := c.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		plan := func() map[string]any {
			defer conn.Release()
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, sqlPlanSettings); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `PREPARE advance_plan(uuid[], int4[], int8[], bool[], int8) AS `+sqlAdvance); err != nil {
				t.Fatal(err)
			}
			defer tx.Exec(ctx, `DEALLOCATE advance_plan`)
			var out []byte
			if err := tx.QueryRow(ctx, `EXPLAIN (FORMAT JSON) EXECUTE advance_plan('{}', '{}', '{}', '{}', 0)`).Scan(&out); err != nil {
				t.Fatal(err)
			}
			var doc []struct{ Plan map[string]any }
			if err := json.Unmarshal(out, &doc); err != nil {
				t.Fatal(err)
			}
			return doc[0].Plan
		}()
		// Aggregate ← CTE Scan; the CTE's plan is ModifyTable ← Nested Loop.
		var update map[string]any
		var find func(p map[string]any)
		find = func(p map[string]any) {
			if p["Node Type"] == "ModifyTable" {
				update = p
			}
			for _, c := range children(p) {
				find(c)
			}
		}
		find(plan)
		if update == nil {
			t.Fatalf("partitions=%d: no ModifyTable in plan %v", n, plan)
		}
		join := children(update)
		if len(join) != 1 || join[0]["Node Type"] != "Nested Loop" {
			t.Fatalf("partitions=%d: update is not fed by a nested loop: %v", n, update)
		}
		sides := children(join[0])
		if len(sides) != 2 || sides[0]["Parent Relationship"] != "Outer" ||
			(sides[0]["Node Type"] != "Subquery Scan" && sides[0]["Node Type"] != "Sort") ||
			sides[1]["Node Type"] != "Index Scan" || sides[1]["Relation Name"] != "partitions" {
			t.Fatalf("partitions=%d: nested loop is not sorted subquery → partitions probes: %v", n, join[0])
		}
	}
}

func children(p map[string]any) []map[string]any {
	var out []map[string]any
	ps, _ := p["Plans"].([]any)
	for _, c := range ps {
		if m, ok := c.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// TestOffsetsOfProbes: sqlOffsetsOf probes the partitions' primary key,
// planned with the arrays' real length (the plan a statement gets on its
// first executions), where a join of the arrays and the table became a
// hash join over the whole table.
func TestOffsetsOfProbes(t *testing.T) {
	url := freshSchema(t)
	ctx := context.Background()
	c := openTest(t, url, catalog.Options{})
	top, err := c.CreateTopic(ctx, catalog.TopicSpec{Name: "many", Partitions: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.pool.Exec(ctx, `ANALYZE partitions`); err != nil {
		t.Fatal(err)
	}
	ids := make([][16]byte, 2000)
	parts := make([]int32, len(ids))
	for i := range ids {
		ids[i], parts[i] = top.ID, int32(i)
	}
	rows, err := c.pool.Query(ctx, `EXPLAIN `+sqlOffsetsOf, ids, parts)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if !strings.Contains(plan, "Index Scan using partitions_pkey") || strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Hash") {
		t.Fatalf("sqlOffsetsOf does not probe the primary key:\n%s", plan)
	}
}
