package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/postgres"
	"github.com/floebroker/floe/catalog/sqlite"
)

// openCatalog opens the catalog a URL names:
//
//	postgres://user:pass@host:5432/db?sslmode=…   (also postgresql://)
//	sqlite:///absolute/path.db   sqlite://relative/path.db   sqlite:path.db
//	sqlite::memory:   (a private in-memory catalog, for experiments)
//
// With opts.Registerer set, the catalog is wrapped in catalog.Instrument:
// the floe_catalog_* metrics (and the alerts docs/operations.md builds on
// them) exist only then.
func openCatalog(ctx context.Context, url string, opts catalog.Options) (catalog.Catalog, int, error) {
	c, version, err := openBackend(ctx, url, opts)
	if err != nil || opts.Registerer == nil {
		return c, version, err
	}
	m, err := catalog.NewMetrics(opts.Registerer)
	if err != nil {
		c.Close()
		return nil, 0, err
	}
	return catalog.Instrument(c, m), version, nil
}

func openBackend(ctx context.Context, url string, opts catalog.Options) (catalog.Catalog, int, error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		c, err := postgres.Open(ctx, url, opts)
		if err != nil {
			return nil, 0, err
		}
		return c, postgres.SchemaVersion(), nil
	case strings.HasPrefix(url, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(url, "sqlite:"), "//")
		if path == "" {
			return nil, 0, fmt.Errorf("catalog URL %q names no file", url)
		}
		c, err := sqlite.Open(ctx, path, opts)
		if err != nil {
			return nil, 0, err
		}
		return c, sqlite.SchemaVersion(), nil
	}
	return nil, 0, fmt.Errorf("catalog URL %q: want postgres://… or sqlite:…", redactURL(url))
}
