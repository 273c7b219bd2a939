package agent

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/floebroker/floe/agent/flush"
	"github.com/floebroker/floe/agent/groups"
)

// Config is the agent's protocol-server configuration. Zero values are
// replaced by the defaults of DefaultConfig in New; Validate reports
// settings that cannot work.
type Config struct {
	// Listen is the host:port the Kafka listener binds.
	Listen string
	// Advertise is the host:port clients are told to connect to
	// (Metadata brokers). Empty: the listener's address. An empty or
	// wildcard host (":9092", a listener binding every interface) is
	// replaced by the machine's host name.
	Advertise string
	// Zone is this agent's availability zone, served as the broker rack
	// and used for zone-aware leader placement.
	Zone string
	// ZoneListeners are extra Kafka listeners whose connections are
	// treated as coming from a zone, for clients that cannot name their
	// zone in their client id (see listeners.go).
	ZoneListeners []ZoneListener
	// TLSCertFile and TLSKeyFile are the PEM certificate (chain) and key
	// of the Kafka listeners: with them every listener speaks TLS only
	// (see tls.go). TLSClientCAFile, if set, makes clients present a
	// certificate signed by one of its PEM certificates (mutual TLS).
	TLSCertFile, TLSKeyFile, TLSClientCAFile string
	// ClusterID is the cluster id served in Metadata and DescribeCluster.
	ClusterID string
	// AgentID names this agent in the catalog (and in the segment objects
	// it writes); unique per process. Empty: a random id.
	AgentID string

	// MaxRequestBytes is Kafka's socket.request.max.bytes: a bigger frame
	// closes the connection before anything is allocated for it.
	MaxRequestBytes int32
	// IdleTimeout is Kafka's connections.max.idle.ms: a connection with
	// no complete request for this long is closed.
	IdleTimeout time.Duration
	// WriteTimeout is how long a response being written may go without
	// 64 KiB of it moving before the connection is closed: a client that
	// stopped reading, not one reading slowly (see writeClock).
	WriteTimeout time.Duration
	// MaxInflightPerConn bounds the requests of one connection that are
	// being handled or whose responses wait to be written; the reader
	// stops reading while the bound is reached.
	MaxInflightPerConn int
	// MaxConnections is Kafka's max.connections: a connection accepted
	// while this many are open is closed at once. Negative: no limit; 0:
	// DefaultMaxConnections. Each open connection costs about 50 KiB
	// before any request (buffers and two goroutines), 80 KiB with TLS,
	// and a TLS client stalling inside its handshake or a TLS record holds
	// up to about 180 KiB (250 KiB in a handshake with client
	// certificates; see tlsHandshakeBytes).
	MaxConnections int
	// MaxConnectionsPerIP is Kafka's max.connections.per.ip: a connection
	// from an address that already has this many open is closed at once.
	// 0 (the default, as in Kafka): no limit.
	MaxConnectionsPerIP int
	// MaxQueuedRequestBytes is Kafka's queued.max.request.bytes: request
	// frames larger than 64 KiB, while being read or handled, hold at most
	// this many bytes across all connections together; a connection
	// waits before reading a frame that does not fit (see budget.go).
	// At least MaxRequestBytes. Default: the larger of
	// DefaultMaxQueuedRequestBytes and MaxRequestBytes.
	MaxQueuedRequestBytes int64
	// MaxQueuedResponseBytes bounds the record bytes of fetch responses
	// across all connections, from their read until their response is
	// written; a fetch that finds no room for its first batch waits for it
	// up to its MaxWaitMs (see budget.go). 0: DefaultMaxQueuedResponseBytes.
	MaxQueuedResponseBytes int64

	// ProduceTimeout caps the produce request's TimeoutMs (and replaces a
	// non-positive one): how long a produce waits for its flush and commit
	// before answering REQUEST_TIMED_OUT.
	ProduceTimeout time.Duration
	// FetchMaxWait caps a fetch's MaxWaitMs long poll.
	FetchMaxWait time.Duration
	// FetchMaxBytes caps the record bytes of one fetch response whatever
	// the client asks (Kafka's broker fetch.max.bytes); the first batch is
	// returned whatever its size (KIP-74). Default DefaultFetchMaxBytes.
	FetchMaxBytes int64
	// AutoCreateTopics creates unknown topics on Metadata and Produce
	// (Kafka's auto.create.topics.enable).
	AutoCreateTopics bool
	// DefaultPartitions is the partition count of auto-created topics and
	// of CreateTopics requests with NumPartitions -1 (num.partitions).
	DefaultPartitions int32

	// HeartbeatInterval is how often the agent renews its registration
	// and refreshes its view of the live agents.
	HeartbeatInterval time.Duration
	// AgentTTL is how long an agent without a heartbeat stays live.
	AgentTTL time.Duration
	// ShutdownGrace is how long a stopping agent keeps serving after it
	// deregistered, while other agents are live, so that their views
	// (re-read every HeartbeatInterval) no longer list it before its
	// connections close and clients ask them where to go. Default: the
	// heartbeat interval and a quarter.
	ShutdownGrace time.Duration
	// TailMaxAge bounds how long a compacted topic's committed row is
	// served from the in-memory tail index (after that, reads go through
	// the catalog): half of compaction's merge age, which is as young as
	// rows compaction rewrites get, so the index never serves rows a log
	// compaction swap replaced (see tailIndex.freshLocked). Default 1m,
	// half of compaction's default merge age; `floe` sets it from
	// --compaction.merge-min-age.
	TailMaxAge time.Duration
	// ReadCacheBytes bounds the tail cache: the objects this agent just
	// wrote and the tail rows consumers read (see cache.go).
	ReadCacheBytes int64
	// CatchUpCacheBytes bounds the separate cache of catch-up reads
	// (consumers reading below the tail index) and their prefetches.
	CatchUpCacheBytes int64
	// CatchUpReads bounds the bucket reads in flight for catch-up reads
	// and prefetches together; tail reads are not bounded by it.
	CatchUpReads int
	// CatchUpPrefetchBytes is how far a catch-up read reads ahead of what
	// its fetch returns, per partition: less when many partitions catch
	// up at once, at most a quarter of each one's share of
	// CatchUpCacheBytes (see catchUpAhead).
	CatchUpPrefetchBytes int64
	// TopicCacheTTL bounds how long topic metadata is reused before the
	// catalog is read again: in the background up to twice the TTL, so
	// busy topics never wait for it, and before the request after that.
	// Misses (unknown topic, partition out of range) always read the
	// catalog.
	TopicCacheTTL time.Duration

	// Groups configures the consumer group coordinator.
	Groups groups.Config
}

// DefaultMaxConnections is MaxConnections's default: far above what a
// fleet of clients needs of one agent (Kafka's is unbounded), low enough
// that a flood of connections cannot take more than about 1 GiB, 1.5 GiB
// with TLS (up to 3.4 GiB, 4.8 GiB with client certificates, if every one
// of them stalls inside its handshake).
const DefaultMaxConnections = 20_000

// DefaultMaxQueuedRequestBytes is MaxQueuedRequestBytes's default unless
// MaxRequestBytes is larger: room for a producer window of large requests
// from each of a few dozen producers (franz-go sends up to 5 of at most a
// few MiB each) while the WAL's own bound (64 MiB) holds them back.
const DefaultMaxQueuedRequestBytes = 256 << 20

// DefaultMaxQueuedResponseBytes is MaxQueuedResponseBytes's default: 128
// full responses of DefaultFetchMaxBytes written at once, far more than
// consumers that read their responses keep in flight, while 20,000
// connections that stop reading could otherwise pin 40 GiB.
const DefaultMaxQueuedResponseBytes = 256 << 20

// DefaultConfig returns the defaults: Kafka's where Kafka has one.
func DefaultConfig() Config {
	return Config{
		Listen:               "localhost:9092",
		ClusterID:            "floe",
		MaxRequestBytes:      100 << 20,
		IdleTimeout:          10 * time.Minute,
		WriteTimeout:         30 * time.Second,
		MaxInflightPerConn:   32,
		MaxConnections:       DefaultMaxConnections,
		ProduceTimeout:       30 * time.Second,
		FetchMaxWait:         30 * time.Second,
		FetchMaxBytes:        DefaultFetchMaxBytes,
		DefaultPartitions:    1,
		HeartbeatInterval:    3 * time.Second,
		AgentTTL:             15 * time.Second,
		TailMaxAge:           time.Minute,
		ReadCacheBytes:       128 << 20,
		CatchUpCacheBytes:    64 << 20,
		CatchUpReads:         8,
		CatchUpPrefetchBytes: 4 << 20,
		TopicCacheTTL:        5 * time.Second,
		Groups:               groups.DefaultConfig(),
	}
}

// RegisterFlags registers the settings on fs, with c's current values as
// the defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "host:port of the Kafka listener")
	fs.StringVar(&c.Advertise, "advertise", c.Advertise, "host:port advertised to clients (default: the listener address); an empty or wildcard host is the host name")
	fs.StringVar(&c.Zone, "zone", c.Zone, "availability zone of this agent (served as broker rack)")
	fs.StringVar(&c.TLSCertFile, "tls-cert", c.TLSCertFile, "PEM certificate (chain) of the Kafka listeners; with --tls-key they speak TLS only (clients use security.protocol=SSL); reloaded when the file changes")
	fs.StringVar(&c.TLSKeyFile, "tls-key", c.TLSKeyFile, "PEM private key of --tls-cert")
	fs.StringVar(&c.TLSClientCAFile, "tls-client-ca", c.TLSClientCAFile, "PEM CA certificates: clients must present a certificate one of them signed (mutual TLS, ssl.client.auth=required)")
	fs.StringVar(&c.ClusterID, "cluster", c.ClusterID, "cluster id, also naming the cluster's objects in the bucket: 1-64 of A-Z a-z 0-9 . _ - (one catalog per bucket prefix and cluster id)")
	fs.StringVar(&c.AgentID, "agent-id", c.AgentID, "unique id of this agent process (default: random)")
	fs.Func("max-request-bytes", fmt.Sprintf("largest request frame accepted, socket.request.max.bytes (default %d)", c.MaxRequestBytes), func(s string) error {
		var v int64
		if _, err := fmt.Sscan(s, &v); err != nil || v <= 0 || v > 1<<31-1 {
			return fmt.Errorf("want a positive 32-bit byte count, got %q", s)
		}
		c.MaxRequestBytes = int32(v)
		return nil
	})
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "close connections idle this long, connections.max.idle.ms")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "close a connection whose response moved less than 64 KiB in this long (a client that stopped reading)")
	fs.IntVar(&c.MaxInflightPerConn, "max-inflight-per-conn", c.MaxInflightPerConn, "requests of one connection handled or queued at once")
	fs.IntVar(&c.MaxConnections, "max-connections", c.MaxConnections, "open client connections beyond which new ones are closed at once, max.connections (-1: no limit)")
	fs.IntVar(&c.MaxConnectionsPerIP, "max-connections-per-ip", c.MaxConnectionsPerIP, "open connections from one client address beyond which new ones are closed at once, max.connections.per.ip (0: no limit)")
	fs.Int64Var(&c.MaxQueuedRequestBytes, "max-queued-request-bytes", c.MaxQueuedRequestBytes, "bytes of request frames over 64 KiB read or handled at once across all connections, queued.max.request.bytes (0: the larger of 256 MiB and --max-request-bytes)")
	fs.Int64Var(&c.MaxQueuedResponseBytes, "max-queued-response-bytes", c.MaxQueuedResponseBytes, "record bytes of fetch responses built or being written at once across all connections; a fetch whose first batch finds no room waits for it (0: 256 MiB)")
	fs.DurationVar(&c.ProduceTimeout, "produce-timeout", c.ProduceTimeout, "cap on a produce request's timeout")
	fs.DurationVar(&c.FetchMaxWait, "fetch-max-wait", c.FetchMaxWait, "cap on a fetch request's long-poll wait")
	fs.Int64Var(&c.FetchMaxBytes, "fetch-max-bytes", c.FetchMaxBytes, "cap on the record bytes of one fetch response (Kafka's broker fetch.max.bytes); raise it for consumers far away (a round trip per response)")
	fs.BoolVar(&c.AutoCreateTopics, "auto-create-topics", c.AutoCreateTopics, "create unknown topics on metadata and produce requests")
	fs.Func("default-partitions", fmt.Sprintf("partitions of auto-created topics (default %d)", c.DefaultPartitions), func(s string) error {
		var v int32
		if _, err := fmt.Sscan(s, &v); err != nil {
			return fmt.Errorf("want a partition count, got %q", s)
		}
		c.DefaultPartitions = v
		return nil
	})
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", c.HeartbeatInterval, "agent registration heartbeat interval")
	fs.DurationVar(&c.AgentTTL, "agent-ttl", c.AgentTTL, "an agent without heartbeat for this long is dead")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", c.ShutdownGrace, "how long a stopping agent serves after deregistering while others are live (default: 1.25 heartbeat intervals)")
	fs.Func("zone-listeners", "extra listeners whose clients are treated as one zone's: zone=host:port[@advertised-host:port],…", func(s string) error {
		zls, err := parseZoneListeners(s)
		if err != nil {
			return err
		}
		c.ZoneListeners = zls
		return nil
	})
	fs.Int64Var(&c.ReadCacheBytes, "read-cache-bytes", c.ReadCacheBytes, "bytes of the tail cache (objects just written, tail reads)")
	fs.Int64Var(&c.CatchUpCacheBytes, "catch-up-cache-bytes", c.CatchUpCacheBytes, "bytes of the separate cache of catch-up reads and their prefetches")
	fs.IntVar(&c.CatchUpReads, "catch-up-reads", c.CatchUpReads, "bucket reads in flight for catch-up reads and prefetches")
	fs.Int64Var(&c.CatchUpPrefetchBytes, "catch-up-prefetch-bytes", c.CatchUpPrefetchBytes, "bytes a catch-up read reads ahead per partition (at most a quarter of the catch-up cache shared among the partitions catching up)")
	fs.DurationVar(&c.TopicCacheTTL, "topic-cache-ttl", c.TopicCacheTTL, "how long topic metadata is reused before re-reading the catalog")
	// The coordinator's flags start from its defaults, whatever c.Groups
	// held (groups.Config.RegisterFlags resets it).
	c.Groups.RegisterFlags(fs, "group.")
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	if c.ClusterID == "" {
		c.ClusterID = d.ClusterID
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = d.MaxRequestBytes
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.MaxInflightPerConn == 0 {
		c.MaxInflightPerConn = d.MaxInflightPerConn
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = d.MaxConnections
	}
	if c.MaxQueuedRequestBytes == 0 {
		c.MaxQueuedRequestBytes = max(DefaultMaxQueuedRequestBytes, int64(c.MaxRequestBytes))
	}
	if c.MaxQueuedResponseBytes == 0 {
		c.MaxQueuedResponseBytes = DefaultMaxQueuedResponseBytes
	}
	if c.ProduceTimeout == 0 {
		c.ProduceTimeout = d.ProduceTimeout
	}
	if c.FetchMaxWait == 0 {
		c.FetchMaxWait = d.FetchMaxWait
	}
	if c.FetchMaxBytes == 0 {
		c.FetchMaxBytes = d.FetchMaxBytes
	}
	if c.DefaultPartitions == 0 {
		c.DefaultPartitions = d.DefaultPartitions
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.AgentTTL == 0 {
		c.AgentTTL = d.AgentTTL
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = c.HeartbeatInterval + c.HeartbeatInterval/4
	}
	if c.TailMaxAge == 0 {
		c.TailMaxAge = d.TailMaxAge
	}
	if c.ReadCacheBytes == 0 {
		c.ReadCacheBytes = d.ReadCacheBytes
	}
	if c.CatchUpCacheBytes == 0 {
		c.CatchUpCacheBytes = d.CatchUpCacheBytes
	}
	if c.CatchUpReads == 0 {
		c.CatchUpReads = d.CatchUpReads
	}
	if c.CatchUpPrefetchBytes == 0 {
		c.CatchUpPrefetchBytes = d.CatchUpPrefetchBytes
	}
	if c.TopicCacheTTL == 0 {
		c.TopicCacheTTL = d.TopicCacheTTL
	}
	return c
}

// Validate reports settings that cannot work. Zero values are valid (they
// mean the default).
func (c Config) Validate() error {
	var errs []error
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("listen %q: %w", c.Listen, err))
		}
	}
	if c.Advertise != "" {
		if _, port, err := net.SplitHostPort(c.Advertise); err != nil || port == "" || port == "0" {
			errs = append(errs, fmt.Errorf("advertise %q: want host:port with a port", c.Advertise))
		}
	}
	if c.ClusterID != "" { // "": the default
		if err := flush.ValidCluster(c.ClusterID); err != nil {
			errs = append(errs, err)
		}
	}
	if err := validateZoneListeners(c.ZoneListeners); err != nil {
		errs = append(errs, err)
	}
	if err := c.validateTLS(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxRequestBytes < 0 || (c.MaxRequestBytes > 0 && c.MaxRequestBytes < 1024) {
		errs = append(errs, fmt.Errorf("max request bytes %d: want at least 1024", c.MaxRequestBytes))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"idle timeout", c.IdleTimeout}, {"write timeout", c.WriteTimeout},
		{"produce timeout", c.ProduceTimeout}, {"fetch max wait", c.FetchMaxWait},
		{"heartbeat interval", c.HeartbeatInterval}, {"agent ttl", c.AgentTTL},
		{"shutdown grace", c.ShutdownGrace},
		{"topic cache ttl", c.TopicCacheTTL}, {"tail max age", c.TailMaxAge},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v: must not be negative", d.name, d.v))
		}
	}
	if c.FetchMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("fetch max bytes %d: must not be negative", c.FetchMaxBytes))
	}
	if maxReq := cmp.Or(c.MaxRequestBytes, DefaultConfig().MaxRequestBytes); c.MaxQueuedRequestBytes < 0 ||
		(c.MaxQueuedRequestBytes > 0 && c.MaxQueuedRequestBytes < int64(maxReq)) {
		errs = append(errs, fmt.Errorf("max queued request bytes %d: want at least max request bytes (%d), or 0 for the default", c.MaxQueuedRequestBytes, maxReq))
	}
	if c.MaxQueuedResponseBytes < 0 {
		errs = append(errs, fmt.Errorf("max queued response bytes %d: must not be negative (0: the default)", c.MaxQueuedResponseBytes))
	}
	if c.MaxConnectionsPerIP < 0 {
		errs = append(errs, fmt.Errorf("max connections per ip %d: must not be negative (0: no limit)", c.MaxConnectionsPerIP))
	}
	if c.MaxInflightPerConn < 0 {
		errs = append(errs, fmt.Errorf("max inflight per conn %d: must not be negative", c.MaxInflightPerConn))
	}
	if c.DefaultPartitions < 0 {
		errs = append(errs, fmt.Errorf("default partitions %d: must be positive", c.DefaultPartitions))
	}
	if c.ReadCacheBytes < 0 || c.CatchUpCacheBytes < 0 || c.CatchUpPrefetchBytes < 0 {
		errs = append(errs, fmt.Errorf("cache sizes %d, %d and prefetch %d: must not be negative", c.ReadCacheBytes, c.CatchUpCacheBytes, c.CatchUpPrefetchBytes))
	}
	if c.CatchUpReads < 0 {
		errs = append(errs, fmt.Errorf("catch-up reads %d: must not be negative", c.CatchUpReads))
	}
	hb, ttl := c.HeartbeatInterval, c.AgentTTL
	if hb == 0 {
		hb = DefaultConfig().HeartbeatInterval
	}
	if ttl == 0 {
		ttl = DefaultConfig().AgentTTL
	}
	if ttl <= hb {
		errs = append(errs, fmt.Errorf("agent ttl %v must exceed the heartbeat interval %v", ttl, hb))
	}
	if err := c.Groups.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
