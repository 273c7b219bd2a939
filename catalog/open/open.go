// Package open picks a catalog backend by URL, so callers (cmd/floe, tests)
// need not import every backend. It is its own package because the
// backends import package catalog.
//
//	postgres://user:pass@host:5432/db?search_path=floe   PostgreSQL
//	postgresql://…                                       PostgreSQL
//	sqlite:///absolute/path/catalog.db                   SQLite file
//	sqlite://relative/path/catalog.db                    SQLite file
//	sqlite:relative/path.db                              SQLite file
//	sqlite://:memory: or sqlite::memory:                 private in-memory SQLite (tests)
//
// Both backends apply pending migrations at open unless
// Options.SkipMigrate; with Options.Registerer set, the catalog is wrapped
// in catalog.Instrument. Whatever Open returns also has a
// Ping(context.Context) error method, for readiness probes.
package open

import (
	"context"
	"fmt"
	"strings"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/postgres"
	"github.com/floebroker/floe/catalog/sqlite"
)

// Open opens the catalog at url.
func Open(ctx context.Context, url string, opts catalog.Options) (catalog.Catalog, error) {
	c, err := openBackend(ctx, url, opts)
	if err != nil {
		return nil, err
	}
	if opts.Registerer != nil {
		m, err := catalog.NewMetrics(opts.Registerer)
		if err != nil {
			c.Close()
			return nil, err
		}
		return catalog.Instrument(c, m), nil
	}
	return c, nil
}

func openBackend(ctx context.Context, url string, opts catalog.Options) (catalog.Catalog, error) {
	lower := strings.ToLower(url)
	switch {
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		return postgres.Open(ctx, url, opts)
	case strings.HasPrefix(lower, "sqlite:"):
		path := strings.TrimPrefix(url[len("sqlite:"):], "//")
		path, _, _ = strings.Cut(path, "?")
		if path == "" {
			return nil, fmt.Errorf("catalog: open %q: no path", url)
		}
		return sqlite.Open(ctx, path, opts)
	default:
		return nil, fmt.Errorf("catalog: open %q: want postgres://… or sqlite:…", redact(url))
	}
}

// Migrate applies pending migrations to the catalog at url and closes it
// (`floe migrate`). It fails with catalog.ErrSchemaTooNew if the database
// is newer than this binary.
func Migrate(ctx context.Context, url string, opts catalog.Options) error {
	opts.SkipMigrate = false
	opts.Registerer = nil
	c, err := openBackend(ctx, url, opts)
	if err != nil {
		return err
	}
	return c.Close()
}

// redact hides a password in a URL for error messages.
func redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return url
	}
	userinfo := rest[:at]
	if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
		return scheme + "://" + user + ":xxxxx" + rest[at:]
	}
	return url
}
