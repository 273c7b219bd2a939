package postgres

import (
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// TestConnectTimeoutDefault: a URL without connect_timeout gets a bound on
// connecting (pgxpool's background connects run on no caller's deadline);
// one that sets it keeps it.
func TestConnectTimeoutDefault(t *testing.T) {
	opts := catalog.Options{}.WithDefaults()
	for url, want := range map[string]time.Duration{
		"postgres://floe@127.0.0.1:1/floe":                   min(defaultConnectTimeout, opts.StatementTimeout),
		"postgres://floe@127.0.0.1:1/floe?connect_timeout=3": 3 * time.Second,
	} {
		cfg, err := poolConfig(url, opts)
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.ConnConfig.ConnectTimeout; got != want {
			t.Errorf("%s: connect timeout %v, want %v", url, got, want)
		}
	}
}
