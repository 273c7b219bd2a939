package catalog

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a catalog backend. The zero value is usable: WithDefaults
// fills in what is unset.
type Options struct {
	// Logger receives connection and migration events. Default: discard.
	Logger *slog.Logger
	// Registerer receives the catalog's metrics (see Instrument). Nil: no
	// metrics.
	Registerer prometheus.Registerer
	// Now is the clock for leases, commit times and the catalog's other
	// timestamps, and for agent heartbeats on SQLite; PostgreSQL stamps
	// and compares heartbeats with its own clock, so that one agent's bad
	// clock cannot expire the others or keep itself live. Default:
	// time.Now. Agents of one fleet compare each other's timestamps, so
	// their clocks must be roughly in sync (NTP).
	Now func() time.Time
	// SkipMigrate makes Open only check the schema version instead of
	// applying pending migrations; a database older than the binary then
	// fails with ErrSchemaTooOld. For agents whose PostgreSQL role may only
	// read and write the tables, the schema migrated by `floe migrate` as
	// a role with DDL rights.
	SkipMigrate bool
	// ApplicationName is PostgreSQL's application_name for every
	// connection, so operators can see (and tests can find) them.
	ApplicationName string
	// MaxConns bounds the PostgreSQL connection pool (the LISTEN connection
	// for Watch is extra).
	MaxConns int32
	// StatementTimeout bounds every PostgreSQL statement and the idle time
	// inside a transaction, so a stuck agent cannot hold partition locks.
	// A migration's statements are bounded by its context's deadline
	// instead, when it has one.
	StatementTimeout time.Duration
	// PasswordFile names a file holding the PostgreSQL password (a
	// trailing newline is dropped), read each time a connection is opened,
	// for the pool and the LISTEN connection alike; it replaces any
	// password in the URL. A password changed under a running agent (a
	// rotation) thus needs only the file rewritten: open connections keep
	// working, as PostgreSQL lets them, and new ones use the new password.
	// A file that cannot be read, or is empty, fails that connection
	// attempt with an error naming it rather than falling back to a
	// password read earlier, which after a rotation fails anyway, only
	// less clearly. Replace the file by renaming a new one over it, so no
	// connection reads it half written. SQLite ignores it.
	PasswordFile string
	// BusyTimeout is how long a SQLite writer waits for the file lock held
	// by another process.
	BusyTimeout time.Duration
}

// Option defaults.
const (
	DefaultApplicationName  = "floe"
	DefaultMaxConns         = 8
	DefaultStatementTimeout = 30 * time.Second
	DefaultBusyTimeout      = 10 * time.Second
)

// WithDefaults returns o with every unset field set to its default.
func (o Options) WithDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ApplicationName == "" {
		o.ApplicationName = DefaultApplicationName
	}
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.StatementTimeout == 0 {
		o.StatementTimeout = DefaultStatementTimeout
	}
	if o.BusyTimeout == 0 {
		o.BusyTimeout = DefaultBusyTimeout
	}
	return o
}

// Validate reports settings that cannot work.
func (o Options) Validate() error {
	var errs []error
	if o.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("max conns %d is negative", o.MaxConns))
	}
	if o.StatementTimeout < 0 {
		errs = append(errs, fmt.Errorf("statement timeout %v is negative", o.StatementTimeout))
	}
	if o.BusyTimeout < 0 {
		errs = append(errs, fmt.Errorf("busy timeout %v is negative", o.BusyTimeout))
	}
	if len(o.ApplicationName) > 63 {
		errs = append(errs, fmt.Errorf("application name is longer than PostgreSQL's 63 bytes"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("catalog: options: %w", err)
	}
	return nil
}

// RegisterFlags registers the settable options on fs, each name prefixed
// with prefix (for example "catalog.").
func (o *Options) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.BoolVar(&o.SkipMigrate, prefix+"skip-migrate", o.SkipMigrate, "do not apply schema migrations at start; only check the schema version")
	fs.StringVar(&o.ApplicationName, prefix+"application-name", DefaultApplicationName, "PostgreSQL application_name of the catalog's connections")
	fs.Func(prefix+"max-conns", fmt.Sprintf("PostgreSQL connection pool size (default %d)", DefaultMaxConns), func(s string) error {
		var n int32
		if _, err := fmt.Sscan(s, &n); err != nil {
			return err
		}
		o.MaxConns = n
		return nil
	})
	fs.DurationVar(&o.StatementTimeout, prefix+"statement-timeout", DefaultStatementTimeout, "PostgreSQL statement and idle-in-transaction timeout")
	fs.StringVar(&o.PasswordFile, prefix+"password-file", o.PasswordFile, "file holding the PostgreSQL password, read at every new connection in place of the URL's (rewrite it to rotate the password without a restart)")
	fs.DurationVar(&o.BusyTimeout, prefix+"busy-timeout", DefaultBusyTimeout, "SQLite wait for another process's write lock")
}
