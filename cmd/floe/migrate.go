package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/floebroker/floe/catalog"
)

// cmdMigrate is `floe migrate --catalog URL`: apply the embedded schema
// migrations (under the catalog's advisory lock, so it is safe while agents
// run) and print the schema version. It takes the agent's catalog.*
// settings, but for catalog.skip-migrate (an agent's setting: migrating is
// this command's point), from flags, the environment or --config. The
// migration statements themselves are bounded by --timeout, not by
// --catalog.statement-timeout (see postgres.Catalog.Migrate).
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("floe migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var url, configFile, logLevel string
	fs.StringVar(&url, "catalog", "", "catalog URL: postgres://… or sqlite:///path (required)")
	fs.StringVar(&configFile, "config", "", "YAML file of settings (keys are flag names)")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long; bounds the migration's statements and its waits for locks")
	var opts catalog.Options
	catFlags := flag.NewFlagSet("catalog", flag.ContinueOnError)
	opts.RegisterFlags(catFlags, "catalog.")
	catFlags.VisitAll(func(f *flag.Flag) {
		if f.Name != "catalog.skip-migrate" {
			fs.Var(f.Value, f.Name, f.Usage)
		}
	})
	agentFlags, _ := newServeFlags("agent", io.Discard)
	if err := parseLayered(fs, args, "config", os.Getenv, agentFlags); err != nil {
		return err
	}
	if url == "" {
		return fmt.Errorf("%w: floe migrate: --catalog is required", errUsage)
	}
	if _, err := parseLevel(logLevel); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := opts.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	opts.Logger = newLogger(stderr, logLevel, "text")
	opts.SkipMigrate = false // Open applies pending migrations
	cat, version, err := openCatalog(ctx, url, opts)
	if err != nil {
		return err
	}
	if err := cat.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "catalog schema is at version %d\n", version)
	return nil
}
