package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// TestExpireOffsetsBacklog: the offsets of 50,000 abandoned groups (half a
// million rows, as a fleet that ran without retention has, or one whose
// checks failed for a while) expire under a statement timeout that deleting
// them in one statement exceeds several times over (listing them takes a
// fraction of it): a check that can never finish would fail every time and
// the backlog would only grow.
func TestExpireOffsetsBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("half a million rows: not in -short")
	}
	url := freshSchema(t)
	admin := openTest(t, url, catalog.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const groups, parts = 50_000, 10
	if _, err := admin.pool.Exec(ctx, `INSERT INTO group_offsets
SELECT 'group-' || g, 'topic', p, 1, -1, '', now() - interval '30 days'
FROM generate_series(1, $1::int) g, generate_series(0, $2::int - 1) p`, groups, parts); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.pool.Exec(ctx, `ANALYZE group_offsets`); err != nil {
		t.Fatal(err)
	}

	c := openTest(t, url, catalog.Options{StatementTimeout: time.Second})
	start := time.Now()
	n, err := c.ExpireOffsets(ctx, time.Now().Add(-7*24*time.Hour))
	if err != nil {
		t.Fatalf("ExpireOffsets after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	t.Logf("expired %d groups in %v", n, time.Since(start).Round(time.Millisecond))
	var left int64
	if err := admin.pool.QueryRow(ctx, `SELECT count(*) FROM group_offsets`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if n != groups || left != 0 {
		t.Fatalf("expired %d groups of %d, %d offsets left", n, groups, left)
	}
}
