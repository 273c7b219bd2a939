// Package postgres is the PostgreSQL catalog backend, for fleets of agents
// sharing one database.
//
// Guarantees beyond catalog.Catalog's:
//   - CommitSegment takes one round trip when the catalog remembers the
//     producer state its segment needs (its own earlier commits verified
//     it), two otherwise: unlocked reads, then one pipelined READ COMMITTED
//     transaction that locks the touched partition rows in (topic id,
//     partition) order by updating their next offsets, writes every row
//     in one statement that also verifies, under the locks, everything the
//     plan assumed (rolling back if not), NOTIFYs the commit id and COMMITs
//     (details in commit.go). The fixed lock order means agents never
//     deadlock each other, and no client round trip happens while locks
//     are held. Commit transactions plan by index probes only (seq scans
//     and hash joins are turned off for them), so a plan made while the
//     tables were small cannot turn into full scans as they grow.
//   - Commit ids are taken from a one-row counter updated inside the commit
//     transaction, so they are assigned in commit order: a follower that has
//     seen commit id N has seen every commit ≤ N (CommitsSince relies on it).
//   - synchronous_commit is left as configured (on by default): a returned
//     commit is durable in PostgreSQL's WAL.
//   - Serialization failures (40001), deadlocks (40P01) and failures before
//     any byte reached the server are retried with jittered backoff. A
//     connection that dies after COMMIT was sent yields ErrCommitUnknown.
//   - Watch LISTENs on a dedicated connection that reconnects by itself and,
//     after reconnecting, publishes the latest commit id so followers catch
//     up on anything they missed.
//   - Every statement and every idle-in-transaction period is bounded by
//     Options.StatementTimeout, so a stuck agent cannot hold partition locks
//     (a migration's statements by Migrate's deadline instead).
//   - With Options.PasswordFile, every new connection (pooled or LISTEN)
//     reads its password from the file, so a password rotated under a
//     running agent takes effect without a restart.
//   - Connections run with plan_cache_mode=force_generic_plan and jit=off
//     (unless the URL sets them): the statements are short primary-key and
//     index probes, written so any plan is cheap, and JIT compilation of a
//     plan estimated "expensive" on fresh statistics costs 100 ms or more.
//
// The schema lives in the search_path's first schema (add
// ?search_path=myschema to the URL to isolate several catalogs in one
// database) and is migrated by numbered, embedded SQL files under an
// advisory lock. A migration waits for a table lock at most 2 s at a time,
// so that the agents' statements queued behind its request are not held
// up, and tries again until its deadline (Migrate). Opening an up-to-date
// schema needs no rights beyond reading and writing its tables.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/internal/commitplan"
	"github.com/floebroker/floe/catalog/internal/watchhub"
)

// Catalog is a catalog.Catalog on PostgreSQL. Safe for concurrent use.
type Catalog struct {
	pool    *pgxpool.Pool
	connCfg *pgx.ConnConfig // for the LISTEN connection
	opts    catalog.Options
	log     *slog.Logger
	now     func() time.Time
	schema  string
	channel string // NOTIFY channel of commits, per schema
	// configChannel is the NOTIFY channel of topic config changes, per
	// schema: apart from channel, so that agents of a version that does
	// not know it are not told of them.
	configChannel string
	// beforeConnect, if set, adjusts a copy of connCfg before each LISTEN
	// connection, as the pool's BeforeConnect does for its own (the
	// password file).
	beforeConnect func(context.Context, *pgx.ConnConfig) error

	hub       *watchhub.Hub
	configHub *watchhub.Hub // topic config change numbers
	closed    atomic.Bool
	conflicts atomic.Int64 // see CommitConflicts
	reads     atomic.Int64 // commit round trips 1 sent (tests)
	// alwaysLock makes every commit run in locked mode (tests compare the
	// two modes).
	alwaysLock bool
	// states remembers the producer states and epochs this catalog's own
	// commits verified, and the producers it allocated (which have no
	// state yet), so a commit that knows them all skips round trip 1 (see
	// "How a commit works" in commit.go).
	states *commitplan.StateCache
	// known caches how many partitions each topic is known to have (from
	// commits, and topics created or read), so a commit need not ask. A
	// stale entry is harmless: the commit verifies existence under its
	// locks and drops the entry on a conflict.
	known struct {
		sync.Mutex
		parts map[catalog.TopicID]int32
	}
	// listenIdle is the LISTEN connection's idle check period (watch.go;
	// tests shorten it).
	listenIdle time.Duration
	// opTimeout bounds one attempt of any operation (bounded).
	opTimeout time.Duration
	// The listener starts with the first Watch and stops at Close.
	listen struct {
		sync.Mutex
		started bool
		cancel  context.CancelFunc
		done    chan struct{}
	}
}

var _ catalog.Catalog = (*Catalog)(nil)

// defaultConnectTimeout bounds connecting when the URL sets no
// connect_timeout. pgxpool connects in the background, on no caller's
// deadline: without a bound, connects to a server that accepts and never
// answers (a hung primary, a half-open proxy during a failover) wait
// forever, or until TCP gives up, and once they fill MaxConns every
// commit fails, even after the new primary is up, until the agent
// restarts.
const defaultConnectTimeout = 10 * time.Second

// poolConfig is the pool configuration Open uses for url: Floe's
// settings wherever the URL leaves them unset.
func poolConfig(url string, opts catalog.Options) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("catalog: postgres: parse url: %w", err)
	}
	cfg.MaxConns = opts.MaxConns
	cfg.MinConns = 0
	cfg.HealthCheckPeriod = 30 * time.Second
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = min(defaultConnectTimeout, opts.StatementTimeout)
	}
	rp := cfg.ConnConfig.RuntimeParams
	if _, ok := rp["application_name"]; !ok {
		rp["application_name"] = opts.ApplicationName
	}
	ms := strconv.FormatInt(opts.StatementTimeout.Milliseconds(), 10)
	if _, ok := rp["statement_timeout"]; !ok {
		rp["statement_timeout"] = ms
	}
	if _, ok := rp["idle_in_transaction_session_timeout"]; !ok {
		rp["idle_in_transaction_session_timeout"] = ms
	}
	// Every statement here is written for a generic plan (primary-key
	// probes, unnest joins); re-planning each execution only costs CPU.
	if _, ok := rp["plan_cache_mode"]; !ok {
		rp["plan_cache_mode"] = "force_generic_plan"
	}
	// JIT compiles a plan the planner thinks expensive, taking 100 ms and
	// more: never worth it for these short statements.
	if _, ok := rp["jit"]; !ok {
		rp["jit"] = "off"
	}
	// The password is read at each connect, not once here: a rotation
	// changes it for new connections only (open ones stay logged in), and
	// the pool opens new ones all the time (lifetime and idle limits,
	// reconnects), so one read at start would fail them from the rotation
	// until the agent restarts.
	if path := opts.PasswordFile; path != "" {
		cfg.BeforeConnect = func(_ context.Context, cc *pgx.ConnConfig) error {
			return readPassword(cc, path)
		}
	}
	return cfg, nil
}

// readPassword sets cfg's password to the contents of the file at path,
// less one trailing newline (echo and most editors add one).
func readPassword(cfg *pgx.ConnConfig, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("catalog: postgres: read password file: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pw == "" {
		return fmt.Errorf("catalog: postgres: password file %s is empty", path)
	}
	cfg.Password = pw
	return nil
}

// Open connects to the database at url (postgres:// or postgresql://, any
// libpq-style URL pgx accepts), applies pending migrations unless
// opts.SkipMigrate, and checks the schema version.
func Open(ctx context.Context, url string, opts catalog.Options) (*Catalog, error) {
	opts = opts.WithDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	cfg, err := poolConfig(url, opts)
	if err != nil {
		return nil, err
	}
	rp := cfg.ConnConfig.RuntimeParams
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("catalog: postgres: connect: %w", err)
	}
	listenCfg := cfg.ConnConfig.Copy()
	// Operators (and tests) tell the long-lived LISTEN connection apart.
	listenCfg.RuntimeParams["application_name"] = truncate(rp["application_name"], 56) + "/listen"
	c := &Catalog{
		states:    commitplan.NewStateCache(maxCachedStates),
		pool:      pool,
		connCfg:   listenCfg,
		opts:      opts,
		log:       opts.Logger.With("component", "catalog", "backend", "postgres"),
		now:       opts.Now,
		hub:       watchhub.New(),
		configHub: watchhub.New(),

		listenIdle: listenIdle,
		opTimeout:  2 * opts.StatementTimeout,

		beforeConnect: cfg.BeforeConnect,
	}
	c.known.parts = make(map[catalog.TopicID]int32)
	if err := c.init(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return c, nil
}

func (c *Catalog) init(ctx context.Context) error {
	var schema *string
	if err := c.pool.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return fmt.Errorf("catalog: postgres: connect: %w", err)
	}
	if schema == nil {
		return fmt.Errorf("catalog: postgres: no schema of the search_path exists; create it first")
	}
	c.schema = *schema
	c.channel = notifyChannel("floe_commits", c.schema)
	c.configChannel = notifyChannel("floe_configs", c.schema)
	if c.opts.SkipMigrate {
		return c.checkVersion(ctx)
	}
	return c.Migrate(ctx)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// notifyChannel names a NOTIFY channel of a schema, prefix alone for
// public, within PostgreSQL's 63-byte identifier limit.
func notifyChannel(prefix, schema string) string {
	if schema == "public" {
		return prefix
	}
	ch := prefix + "_" + schema
	if len(ch) > 63 {
		h := fnv.New64a()
		h.Write([]byte(schema))
		ch = fmt.Sprintf("%s_%016x", prefix, h.Sum64())
	}
	return ch
}

// poolCloseWait bounds how long Close waits for the pool's connections to
// close. A healthy connection closes at once (a Terminate message); one a
// cancelled statement broke first sends the server a cancel request, which
// pgxpool waits up to 15 s for per connection. With the server unreachable
// that wait bought nothing and held up an agent's shutdown, which the
// deploy units bound (docs/operations.md, "Upgrades").
const poolCloseWait = 3 * time.Second

// Close stops the Watch listener, closes every Watch and WatchTopicConfigs
// channel and the pool. It returns within poolCloseWait of the listener
// stopping: connections still closing then (the database unreachable)
// finish closing in the background, bounded by pgx.
func (c *Catalog) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.listen.Lock()
	if c.listen.started {
		c.listen.cancel()
		<-c.listen.done
	}
	c.listen.Unlock()
	c.hub.Close()
	c.configHub.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.pool.Close()
	}()
	t := time.NewTimer(poolCloseWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		c.log.Warn("catalog: connections still closing; not waiting for them", "waited", poolCloseWait)
	}
	return nil
}

// Ping checks that the database answers (for readiness probes).
func (c *Catalog) Ping(ctx context.Context) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := c.pool.Ping(ctx); err != nil {
		return fmt.Errorf("catalog: ping: %w", err)
	}
	return nil
}

// Schema returns the schema holding the catalog's tables.
func (c *Catalog) Schema() string { return c.schema }

func (c *Catalog) checkOpen() error {
	if c.closed.Load() {
		return catalog.ErrClosed
	}
	return nil
}

// SQLSTATE codes the backend reacts to.
const (
	codeSerialization  = "40001"
	codeDeadlock       = "40P01"
	codeUniqueViolated = "23505"
)

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// retryable reports errors after which running the whole transaction again
// is safe and may succeed.
func retryable(err error) bool {
	switch pgCode(err) {
	case codeSerialization, codeDeadlock:
		return true
	}
	return pgconn.SafeToRetry(err)
}

const (
	maxAttempts    = 8
	backoffInitial = 2 * time.Millisecond
	backoffMax     = 250 * time.Millisecond
)

// backoff sleeps before attempt (≥ 1) with full jitter, or returns ctx's
// error.
func backoff(ctx context.Context, attempt int) error {
	d := backoffInitial << min(max(attempt, 1)-1, 10)
	d = min(d, backoffMax)
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retry runs fn until it succeeds, fails with a non-retryable error or runs
// out of attempts. fn must be safe to repeat (a whole transaction or an
// idempotent statement).
func (c *Catalog) retry(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		actx, cancel := c.bounded(ctx)
		err := fn(actx)
		cancel()
		if err == nil || !retryable(err) || attempt >= maxAttempts {
			return err
		}
		if berr := backoff(ctx, attempt); berr != nil {
			return err
		}
	}
}

// bounded returns ctx with the deadline of one attempt of an operation,
// twice the statement timeout, unless ctx ends sooner. statement_timeout
// bounds the server's work, not a connection that died without a word
// (a failover to another host, a partition): a call on one would wait
// until TCP gives up, a quarter of an hour, and an agent's commits, which
// run on a context without deadline, with it. Past the deadline pgx drops
// the connection; a commit then reports ErrCommitUnknown and is retried
// under its key on a fresh one.
func (c *Catalog) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= c.opTimeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.opTimeout)
}

// tx runs fn in a READ COMMITTED transaction, retried as retry does.
// The level is set, not left to the server's
// default_transaction_isolation: callers rely on each statement seeing
// what committed before it started, e.g. a topic create's collision check
// after it waited for a lock (checkCollision), which under REPEATABLE
// READ would read the snapshot taken before the wait.
func (c *Catalog) tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return c.retry(ctx, func(ctx context.Context) error {
		return pgx.BeginTxFunc(ctx, c.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn)
	})
}

// knownPartitions reports whether every tp is known to exist. tps must be
// sorted by topic (a commit's are): partitions are numbered densely, so
// only each topic's last (highest) one is checked, and each topic is
// looked up once, not once per partition.
func (c *Catalog) knownPartitions(tps []catalog.TopicPartition) bool {
	c.known.Lock()
	defer c.known.Unlock()
	for i, tp := range tps {
		if i+1 < len(tps) && tps[i+1].TopicID == tp.TopicID {
			continue // not the topic's highest
		}
		if tp.Partition >= c.known.parts[tp.TopicID] {
			return false
		}
	}
	return true
}

// learnPartitions records that the partitions in exist exist (partitions
// are numbered densely, so partition p implies 0..p).
func (c *Catalog) learnPartitions(exist []catalog.TopicPartition) {
	c.known.Lock()
	defer c.known.Unlock()
	for _, tp := range exist {
		if tp.Partition+1 > c.known.parts[tp.TopicID] {
			c.known.parts[tp.TopicID] = tp.Partition + 1
		}
	}
}

// forgetPartitions drops what is known about the topics of tps.
func (c *Catalog) forgetPartitions(tps []catalog.TopicPartition) {
	c.known.Lock()
	defer c.known.Unlock()
	for _, tp := range tps {
		delete(c.known.parts, tp.TopicID)
	}
}

func topicIDs(tps []catalog.TopicPartition) ([][16]byte, []int32) {
	ids := make([][16]byte, len(tps))
	parts := make([]int32, len(tps))
	for i, tp := range tps {
		ids[i] = tp.TopicID
		parts[i] = tp.Partition
	}
	return ids, parts
}
