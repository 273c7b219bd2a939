// Package compaction is Floe's background work on stored data: it merges
// small multi-partition segment objects into large per-partition ones,
// enforces retention (retention.ms, retention.bytes, DeleteRecords),
// applies log compaction (cleanup.policy=compact: the latest record per
// key, see logcompact.go for the exact rules), deletes objects no
// catalog row references, keeping their catalog rows as tombstones for
// TombstoneRetention (see catalog.Compactor), and expires idempotent
// producers idle for ProducerExpiration, as Kafka's
// producer.id.expiration.ms.
//
// Every agent runs one Compactor. Work is split into shards of partitions
// (a hash of topic id and partition) plus one GC sweep, each owned through
// a catalog lease, so one agent works on a piece at a time; a holder that
// dies is replaced once its lease expires.
//
// Guarantees:
//   - Log compaction removes superseded records and expired tombstones
//     only; surviving records keep their offsets, keys, values, headers
//     and timestamps, and batches keep their codec (logcompact.go).
//   - Offsets, record bytes and their order never change: a merge copies
//     batches byte for byte into a new object, uploads it, and only then
//     swaps the catalog rows in one compare-and-swap transaction
//     (catalog.Compactor.SwapRows). A swap that lost a race changes
//     nothing; its object is deleted (or, after a crash, found by the
//     orphan sweep).
//   - Work is idempotent: a holder killed at any point leaves either the
//     old rows or the new ones, never a mix, and the next holder redoes
//     whatever is left.
//   - No object is deleted while a row references it, nor before
//     Config.GCGrace has passed since its last row went away (so reads
//     that looked a row up before a swap still find their bytes), nor an
//     unknown object younger than Config.GCGrace (an upload whose commit
//     is in flight).
package compaction

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floebroker/floe/agent/flush"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore"
)

// Catalog is what compaction needs of the catalog.
type Catalog interface {
	ListTopics(ctx context.Context) ([]catalog.Topic, error)
	Offsets(ctx context.Context, tp catalog.TopicPartition) (catalog.PartitionOffsets, error)
	BatchForTimestamp(ctx context.Context, tp catalog.TopicPartition, ts, from int64) (catalog.BatchRow, int64, bool, error)
	DeleteRecords(ctx context.Context, tp catalog.TopicPartition, offset int64) (int64, error)
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	RenewLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
	catalog.Compactor
}

// Config holds compaction's settings.
type Config struct {
	// Cluster names the key space (flush.ObjectKey) of merged objects and
	// of the orphan sweep.
	Cluster string
	// Holder names this worker in leases (the agent id).
	Holder string

	Interval time.Duration // between passes over the shards
	// MaxUploadAge is the agents' flush.Config.MaxUploadAge: an output
	// object put longer ago is put again before its swap, and a swap call
	// lasts at most this long (see swapRows). GCGrace must be at least
	// four times it. Default flush.DefaultMaxUploadAge.
	MaxUploadAge time.Duration
	// MergeMinAge: rows in objects younger than this are left alone (the
	// tail is read from agents' caches and changes fastest).
	MergeMinAge time.Duration
	// TargetBytes is the size merged objects grow to. It also bounds a
	// log compaction pass's key map and rewrite groups (logcompact.go).
	TargetBytes int64
	// SmallObjectBytes: rows in objects at least this large are not merged
	// again. Defaults to TargetBytes/2.
	SmallObjectBytes int64
	// GCGrace is how long an unreferenced object stays in the bucket:
	// longer than the longest fetch.
	GCGrace time.Duration
	// OrphanInterval is how often the bucket is listed for objects the
	// catalog never knew.
	OrphanInterval time.Duration
	// TombstoneRetention is how long the catalog keeps a collected
	// object's row as a tombstone, so a WAL buffer replayed late is still
	// recognised as committed (see catalog.Compactor). It must not be
	// shorter than the agents' flush.Config.MaxReplayAge; both default to
	// catalog.DefaultTombstoneRetention.
	TombstoneRetention time.Duration
	// ProducerExpiration is how long an idempotent producer's state on a
	// partition is kept after its last write there (then its epoch, once
	// it has no state left), as Kafka's producer.id.expiration.ms: the
	// producer's next batch is then accepted at any sequence, and a retry
	// of a batch from before is no longer recognised. Clients take a new
	// producer id at every start, so without it short-lived producers
	// would grow the catalog without bound.
	ProducerExpiration time.Duration
	Shards             int
	LeaseTTL           time.Duration
	// Bounds bound each of compaction's calls on the bucket (default
	// objstore.DefaultBounds): a stalled read or upload would otherwise
	// hold the pass, and every later one of this agent, until TCP gave
	// up, while its lease lapsed and another agent redid the work.
	Bounds objstore.Bounds
	// Disabled turns the loop off (Run waits for ctx).
	Disabled bool
}

// Defaults for an agent in production.
const (
	DefaultInterval       = 30 * time.Second
	DefaultMergeMinAge    = 2 * time.Minute
	DefaultTargetBytes    = 64 << 20
	DefaultGCGrace        = 10 * time.Minute
	DefaultOrphanInterval = 10 * time.Minute
	DefaultShards         = 16
	DefaultLeaseTTL       = time.Minute

	// DefaultProducerExpiration is Kafka's producer.id.expiration.ms
	// default.
	DefaultProducerExpiration = 24 * time.Hour
)

// DevConfig tightens the loops for `floe dev`, so a user sees retention
// and merges act within seconds. The GC grace stays well above the age at
// which an upload is put again before its commit or swap
// (flush.DefaultMaxUploadAge): an object must never be collected while a
// commit that will reference it is on its way.
func (c *Config) DevConfig() {
	c.Interval, c.MergeMinAge, c.GCGrace, c.OrphanInterval = 3*time.Second, 5*time.Second, 2*time.Minute, time.Minute
}

// RegisterFlags registers the settings as compaction.* flags, defaulting
// to c's values where set (DevConfig's, for `floe dev`) and to the package
// defaults otherwise.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	d := c.WithDefaults()
	fs.DurationVar(&c.Interval, "compaction.interval", d.Interval, "how often compaction, retention and GC run")
	fs.DurationVar(&c.MergeMinAge, "compaction.merge-min-age", d.MergeMinAge, "segments younger than this are not merged")
	fs.Int64Var(&c.TargetBytes, "compaction.target-bytes", d.TargetBytes, "size of merged per-partition segments")
	fs.Int64Var(&c.SmallObjectBytes, "compaction.small-object-bytes", c.SmallObjectBytes, "segments smaller than this are merged (0: target-bytes/2)")
	fs.DurationVar(&c.GCGrace, "compaction.gc-grace", d.GCGrace, "how long an unreferenced object is kept (longer than any fetch)")
	fs.DurationVar(&c.OrphanInterval, "compaction.orphan-interval", d.OrphanInterval, "how often the bucket is listed for orphaned uploads")
	fs.DurationVar(&c.TombstoneRetention, "compaction.tombstone-retention", d.TombstoneRetention, "how long a collected object's catalog row is kept to recognise late WAL replays (at least the agents' max replay age)")
	fs.DurationVar(&c.ProducerExpiration, "compaction.producer-expiration", d.ProducerExpiration, "how long an idle idempotent producer's state is kept (Kafka's producer.id.expiration.ms)")
	fs.IntVar(&c.Shards, "compaction.shards", d.Shards, "partition shards (one lease each)")
	fs.DurationVar(&c.LeaseTTL, "compaction.lease-ttl", d.LeaseTTL, "how long a dead worker's lease blocks others")
	fs.BoolVar(&c.Disabled, "compaction.disabled", c.Disabled, "do not run compaction, retention or GC on this agent")
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Interval, DefaultInterval)
	def(&c.MergeMinAge, DefaultMergeMinAge)
	def(&c.GCGrace, DefaultGCGrace)
	def(&c.OrphanInterval, DefaultOrphanInterval)
	def(&c.LeaseTTL, DefaultLeaseTTL)
	def(&c.TombstoneRetention, catalog.DefaultTombstoneRetention)
	def(&c.ProducerExpiration, DefaultProducerExpiration)
	def(&c.MaxUploadAge, flush.DefaultMaxUploadAge)
	if c.Bounds == (objstore.Bounds{}) {
		c.Bounds = objstore.DefaultBounds
	}
	if c.TargetBytes == 0 {
		c.TargetBytes = DefaultTargetBytes
	}
	if c.SmallObjectBytes == 0 {
		c.SmallObjectBytes = c.TargetBytes / 2
	}
	if c.Shards == 0 {
		c.Shards = DefaultShards
	}
	return c
}

// Validate checks the settings (after WithDefaults).
func (c Config) Validate() error {
	switch {
	case flush.ValidCluster(c.Cluster) != nil:
		return fmt.Errorf("compaction: config: %w", flush.ValidCluster(c.Cluster))
	case c.Holder == "":
		return errors.New("compaction: config: holder is required")
	case c.Interval <= 0 || c.MergeMinAge < 0 || c.GCGrace <= 0 || c.OrphanInterval <= 0 || c.LeaseTTL <= 0 ||
		c.ProducerExpiration <= 0 || c.Bounds.Call <= 0 || c.Bounds.PutPerMiB < 0:
		return errors.New("compaction: config: intervals must be positive")
	case c.TombstoneRetention < c.GCGrace:
		return errors.New("compaction: config: tombstone retention must be at least the GC grace")
	case c.TargetBytes < 1<<10:
		return errors.New("compaction: config: target bytes must be at least 1 KiB")
	case c.SmallObjectBytes <= 0:
		return errors.New("compaction: config: small object bytes must be positive")
	case c.Shards < 1 || c.Shards > 4096:
		return errors.New("compaction: config: shards must be in [1, 4096]")
	}
	return nil
}

// Compactor runs merge, retention and GC passes. One Compactor runs one
// pass at a time (RunOnce is not reentrant); several Compactors, in one
// process or many, share the work through leases.
type Compactor struct {
	cfg    Config
	cat    Catalog
	bucket objstore.Bucket
	log    *slog.Logger
	m      *metrics
	now    func() time.Time

	lastOrphanSweep    time.Time
	lastProducerExpiry time.Time
	// mergeFrom is where the next merge pass over a partition starts
	// reading (absent: the log start). Only RunOnce, one at a time, uses
	// it; it lives as long as the Compactor, and another Compactor taking
	// a shard over starts from the log start.
	mergeFrom map[catalog.TopicPartition]int64
	// cleaned is where each compacted partition is cleaned up to (see
	// logcompact.go), with the same lifetime as mergeFrom: a Compactor
	// taking a shard over cleans its partitions from the log start again.
	cleaned map[catalog.TopicPartition]cleanState
	// shardFrom is, per shard, the partition its next pass starts at
	// (absent: the first): the one after the partition during whose pass
	// the shard's lease was lost. A partition whose pass outlasts the
	// lease every time would otherwise end every pass of its shard, and
	// the partitions after it would never be worked (retention
	// included).
	shardFrom map[int]catalog.TopicPartition
}

// New makes a Compactor. now may be nil (time.Now).
func New(cfg Config, cat Catalog, bucket objstore.Bucket, log *slog.Logger, reg prometheus.Registerer, now func() time.Time) (*Compactor, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	bucket = objstore.WithBounds(bucket, cfg.Bounds)
	return &Compactor{cfg: cfg, cat: cat, bucket: bucket, log: log.With("component", "compaction"), m: m, now: now,
		mergeFrom: map[catalog.TopicPartition]int64{}, cleaned: map[catalog.TopicPartition]cleanState{},
		shardFrom: map[int]catalog.TopicPartition{}}, nil
}

// Run runs a pass every Config.Interval until ctx ends. Errors of a pass
// are logged and counted; the next pass retries.
func (c *Compactor) Run(ctx context.Context) error {
	if c.cfg.Disabled {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := c.RunOnce(ctx); err != nil && ctx.Err() == nil {
			c.m.errors.Inc()
			c.log.Warn("compaction pass failed", "err", err)
		}
	}
}

// RunOnce does one pass: every shard whose lease it gets (retention, then
// merge, per partition, starting after the partition during which the
// shard's last pass lost its lease), then the GC sweep if its lease is
// free.
func (c *Compactor) RunOnce(ctx context.Context) error {
	topics, err := c.cat.ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("compaction: list topics: %w", err)
	}
	shards := make([][]partition, c.cfg.Shards)
	exists := make(map[catalog.TopicID]int32, len(topics))
	compacted := make(map[catalog.TopicID]bool, len(topics))
	for _, t := range topics {
		exists[t.ID] = t.Partitions
		compacted[t.ID] = t.CleanupPolicy().Compact
		for p := int32(0); p < t.Partitions; p++ {
			tp := catalog.TopicPartition{TopicID: t.ID, Partition: p}
			s := shardOf(tp, c.cfg.Shards)
			shards[s] = append(shards[s], partition{tp: tp, topic: t})
		}
	}
	for tp := range c.mergeFrom {
		if tp.Partition >= exists[tp.TopicID] {
			delete(c.mergeFrom, tp) // its topic was deleted
		}
	}
	for tp := range c.cleaned {
		if tp.Partition >= exists[tp.TopicID] || !compacted[tp.TopicID] {
			delete(c.cleaned, tp) // deleted, or no longer compacted
		}
	}
	var errs []error
	for i, parts := range shards {
		if len(parts) == 0 {
			continue
		}
		if from, ok := c.shardFrom[i]; ok {
			if k := slices.IndexFunc(parts, func(p partition) bool { return p.tp == from }); k > 0 {
				parts = slices.Concat(parts[k:], parts[:k])
			}
		}
		errs = append(errs, c.withLease(ctx, fmt.Sprintf("compaction/shard/%d", i), c.cfg.Interval, func(renew func() error) error {
			delete(c.shardFrom, i)
			// lost stops the shard's pass at a lost lease, the next one
			// to start at parts[next]. A pass that outlasted its lease is
			// a failure, counted and logged: another agent may have had
			// to take the shard over.
			lost := func(err error, next int) error {
				if errors.Is(err, errLeaseLost) {
					p := parts[next%len(parts)]
					c.m.errors.Inc()
					c.log.Warn("compaction lease lost during a shard's pass; its next pass starts at the partition",
						"shard", i, "topic", p.topic.Name, "partition", p.tp.Partition)
					c.shardFrom[i] = p.tp
				}
				return err
			}
			for k, p := range parts {
				if err := renew(); err != nil {
					return lost(err, k)
				}
				if err := c.partitionPass(ctx, p, renew); err != nil {
					if errors.Is(err, errLeaseLost) {
						return lost(err, k+1)
					}
					errs = append(errs, err)
				}
			}
			return nil
		}))
	}
	gc := false
	errs = append(errs, c.withLease(ctx, "compaction/gc", c.cfg.Interval, func(renew func() error) error {
		gc = true
		return c.gcPass(ctx, renew)
	}))
	if gc {
		// Counting scans the catalog's tables: once per interval for the
		// fleet, by the agent that swept.
		c.updateStats(ctx)
	}
	return errors.Join(errs...)
}

type partition struct {
	tp    catalog.TopicPartition
	topic catalog.Topic
}

// partitionPass works one partition. renew (withLease's) is called before
// every row read, every batch log compaction re-encodes and every swap: a
// pass can outlast the lease, and a worker that lost it must stop before
// it swaps rows another worker may be rewriting too.
func (c *Compactor) partitionPass(ctx context.Context, p partition, renew func() error) error {
	if err := c.retain(ctx, p); err != nil {
		return err
	}
	var logErr error
	if p.topic.CleanupPolicy().Compact {
		// A partition log compaction cannot read (a batch that
		// decompresses past the bound, a corrupt row) is still merged:
		// merging copies batches byte for byte.
		if logErr = c.compactLog(ctx, p, renew); errors.Is(logErr, errLeaseLost) {
			return logErr
		}
	}
	return errors.Join(logErr, c.merge(ctx, p, renew))
}

// errLeaseLost stops work whose lease another holder took.
var errLeaseLost = errors.New("compaction: lease lost")

// withLease runs fn if the lease is free; renew extends it (call it
// between units of work: losing it stops fn). Once fn has done its work,
// the lease is kept for hold from then (if > 0), unused, so that no other
// agent redoes the work before it is due again: each agent's pass over
// the shards takes every lease that is free, and a lease given back at
// once let every agent whose pass came later in the same interval redo
// every shard and the GC — a catalog query per partition per agent per
// interval, 27,000 a second at 10,000 partitions and 20 agents. The
// holder's own next pass takes it again; another agent takes it once it
// lapses. A failed fn gives it back at once.
func (c *Compactor) withLease(ctx context.Context, name string, hold time.Duration, fn func(renew func() error) error) error {
	ok, err := c.cat.AcquireLease(ctx, name, c.cfg.Holder, c.cfg.LeaseTTL)
	if err != nil || !ok {
		return err
	}
	last := c.now()
	renew := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if c.now().Sub(last) < c.cfg.LeaseTTL/3 {
			return nil
		}
		ok, err := c.cat.RenewLease(ctx, name, c.cfg.Holder, c.cfg.LeaseTTL)
		if err != nil {
			return err
		}
		if !ok {
			return errLeaseLost
		}
		last = c.now()
		return nil
	}
	err = fn(renew)
	if err == nil && hold > 0 && ctx.Err() == nil {
		if _, err := c.cat.RenewLease(ctx, name, c.cfg.Holder, hold); err == nil {
			return nil // lost meanwhile: another holder has it anyway
		}
	}
	// Released even when ctx ended, so the next holder need not wait.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if rerr := c.cat.ReleaseLease(rctx, name, c.cfg.Holder); rerr != nil && err == nil {
		err = rerr
	}
	if errors.Is(err, errLeaseLost) {
		return nil
	}
	return err
}

func shardOf(tp catalog.TopicPartition, n int) int {
	h := fnv.New32a()
	h.Write(tp.TopicID[:])
	h.Write([]byte{byte(tp.Partition >> 24), byte(tp.Partition >> 16), byte(tp.Partition >> 8), byte(tp.Partition)})
	return int(h.Sum32() % uint32(n))
}

func (c *Compactor) updateStats(ctx context.Context) {
	s, err := c.cat.CompactionStats(ctx)
	if err != nil {
		return
	}
	c.m.rows.Set(float64(s.Rows))
	c.m.objects.Set(float64(s.Objects))
	c.m.tombstones.Set(float64(s.Tombstones))
	c.m.liveBytes.Set(float64(s.LiveBytes))
	lag := 0.0
	if !s.OldestFlush.IsZero() {
		lag = c.now().Sub(s.OldestFlush).Seconds()
	}
	c.m.lag.Set(lag)
	c.m.statsTime.Set(float64(c.now().UnixNano()) / 1e9)
}
