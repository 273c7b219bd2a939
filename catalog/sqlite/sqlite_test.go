package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/catalogtest"
)

func openTest(t testing.TB, path string, opts catalog.Options) *Catalog {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Open(ctx, path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConformance(t *testing.T) {
	catalogtest.Run(t, func(t *testing.T) catalog.Catalog {
		return openTest(t, filepath.Join(t.TempDir(), "catalog.db"), catalog.Options{})
	})
}

func TestConformanceMemory(t *testing.T) {
	catalogtest.Run(t, func(t *testing.T) catalog.Catalog {
		return openTest(t, ":memory:", catalog.Options{})
	})
}

func TestStress(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	catalogtest.Stress(t, func(t *testing.T) catalog.Catalog {
		return openTest(t, path, catalog.Options{})
	}, catalogtest.StressConfig{Commits: catalogtest.CommitsFromEnv(100), ProducerBatches: 10})
}
