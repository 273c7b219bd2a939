package postgres

import (
	"context"
	"fmt"
	"testing"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/catalogtest"
)

func TestConformance(t *testing.T) {
	testURL(t)
	catalogtest.Run(t, func(t *testing.T) catalog.Catalog {
		return openTest(t, freshSchema(t), catalog.Options{})
	})
}

func TestStress(t *testing.T) {
	url := freshSchema(t)
	catalogtest.Stress(t, func(t *testing.T) catalog.Catalog {
		return openTest(t, url, catalog.Options{MaxConns: 4})
	}, catalogtest.StressConfig{Commits: catalogtest.CommitsFromEnv(1000)})
}

// TestCollisionUnderRepeatableReadDefault: colliding topic creates stay
// exclusive on a server whose default isolation is REPEATABLE READ (the
// catalog's transactions set READ COMMITTED themselves: under the default,
// the check after the lock wait would read a snapshot from before it).
func TestCollisionUnderRepeatableReadDefault(t *testing.T) {
	url := freshSchema(t) + "&default_transaction_isolation=repeatable%20read"
	c := openTest(t, url, catalog.Options{})
	ctx := context.Background()
	var level string
	if err := c.pool.QueryRow(ctx, "SHOW default_transaction_isolation").Scan(&level); err != nil || level != "repeatable read" {
		t.Fatalf("default isolation %q (%v), want repeatable read", level, err)
	}
	for round := range 5 {
		names := []string{"r.s.t", "r_s.t", "r.s_t", "r_s_t"}
		for i := range names {
			names[i] = fmt.Sprintf("%s%d", names[i], round)
		}
		ok := catalogtest.CreateAtOnce(t, c, names)
		if ok != 1 {
			t.Fatalf("round %d: %d of %d colliding creates succeeded, want 1", round, ok, len(names))
		}
	}
}
