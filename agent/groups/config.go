package groups

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Config configures a Coordinator. The zero value is not valid; start from
// DefaultConfig (or call RegisterFlags, which sets the defaults).
type Config struct {
	// MinSessionTimeout and MaxSessionTimeout bound the session timeout a
	// classic member may ask for (Kafka's group.min.session.timeout.ms and
	// group.max.session.timeout.ms); a JoinGroup outside them gets
	// INVALID_SESSION_TIMEOUT.
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration

	// InitialRebalanceDelay is how long the first rebalance of an empty
	// classic group waits for more members (group.initial.rebalance.delay.ms),
	// extended by each new member up to the rebalance timeout. Kafka's 3s
	// suits rolling restarts of many processes; Floe defaults to 300ms, which
	// still gathers consumers that one process or test starts together into
	// one generation while adding little to a single consumer's first join.
	// 0 disables it (for tests).
	InitialRebalanceDelay time.Duration

	// GroupMaxSize caps the members (including members that were sent
	// MEMBER_ID_REQUIRED and have not rejoined yet) of one group, classic or
	// KIP-848 (group.max.size, group.consumer.max.size); more get
	// GROUP_MAX_SIZE_REACHED.
	GroupMaxSize int

	// MaxGroups caps the groups held in memory (groups with members, and
	// empty groups until evicted). When full, empty groups are evicted;
	// when none is empty, a request that would create a group gets
	// COORDINATOR_NOT_AVAILABLE. Committed offsets are in the catalog and
	// do not count.
	MaxGroups int

	// MaxMetadataBytes caps what one member may make the coordinator hold:
	// the instance id, protocol names and metadata of a JoinGroup, the
	// assignment the leader sends for it in SyncGroup, and a KIP-848
	// member's subscription.
	// Larger gets MESSAGE_TOO_LARGE (classic) or INVALID_REQUEST (KIP-848).
	MaxMetadataBytes int

	// MaxTotalMetadataBytes caps the member metadata and assignments held
	// for all groups together. A join that would exceed it gets
	// COORDINATOR_NOT_AVAILABLE (retriable) instead of growing the heap.
	MaxTotalMetadataBytes int64

	// MaxOffsetMetadataBytes caps the metadata string of one committed
	// offset (offset.metadata.max.bytes); larger gets
	// OFFSET_METADATA_TOO_LARGE for that partition. As in Kafka, the
	// length is in UTF-16 code units (Java's String.length), not bytes.
	MaxOffsetMetadataBytes int

	// ConsumerHeartbeatInterval is the heartbeat interval KIP-848 members
	// are told to use (group.consumer.heartbeat.interval.ms).
	ConsumerHeartbeatInterval time.Duration
	// ConsumerSessionTimeout is how long a KIP-848 member may go without a
	// heartbeat before it is removed (group.consumer.session.timeout.ms).
	ConsumerSessionTimeout time.Duration
	// ConsumerAssignors are the server-side assignors KIP-848 members may
	// name, the first being the default (group.consumer.assignors). Known:
	// "uniform" and "range".
	ConsumerAssignors []string

	// TopicCacheTTL is how stale the coordinator's view of topics (names,
	// ids, partition counts) may be: OffsetCommit's topic checks and KIP-848
	// subscriptions (new topics matching a regex, added partitions) see a
	// change at most this late.
	TopicCacheTTL time.Duration

	// OffsetsRetention is how long the committed offsets of a group
	// without members are kept after its last commit or after its last
	// member left, whichever is later (offsets.retention.minutes,
	// KIP-211); a group with members keeps them however old. Run checks
	// every OffsetsRetention/2, at most every 10 minutes
	// (offsets.retention.check.interval.ms).
	OffsetsRetention time.Duration

	// OwnershipCheckInterval is how often Run asks Placement whether this
	// node still coordinates each group in memory, dropping those that
	// moved, so members that have not noticed yet get NOT_COORDINATOR.
	OwnershipCheckInterval time.Duration

	// Now is the clock. Default time.Now; tests inject a fake one.
	Now func() time.Time
}

// Defaults.
const (
	DefaultMinSessionTimeout         = 6 * time.Second
	DefaultMaxSessionTimeout         = 30 * time.Minute
	DefaultInitialRebalanceDelay     = 300 * time.Millisecond
	DefaultGroupMaxSize              = 1000
	DefaultMaxGroups                 = 100_000
	DefaultMaxMetadataBytes          = 1 << 20
	DefaultMaxTotalMetadataBytes     = 512 << 20
	DefaultMaxOffsetMetadataBytes    = 4096
	DefaultConsumerHeartbeatInterval = 5 * time.Second
	DefaultConsumerSessionTimeout    = 45 * time.Second
	DefaultTopicCacheTTL             = 2 * time.Second
	DefaultOwnershipCheckInterval    = 5 * time.Second
	DefaultOffsetsRetention          = 7 * 24 * time.Hour
)

// Assignor names.
const (
	AssignorUniform = "uniform"
	AssignorRange   = "range"
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MinSessionTimeout:         DefaultMinSessionTimeout,
		MaxSessionTimeout:         DefaultMaxSessionTimeout,
		InitialRebalanceDelay:     DefaultInitialRebalanceDelay,
		GroupMaxSize:              DefaultGroupMaxSize,
		MaxGroups:                 DefaultMaxGroups,
		MaxMetadataBytes:          DefaultMaxMetadataBytes,
		MaxTotalMetadataBytes:     DefaultMaxTotalMetadataBytes,
		MaxOffsetMetadataBytes:    DefaultMaxOffsetMetadataBytes,
		ConsumerHeartbeatInterval: DefaultConsumerHeartbeatInterval,
		ConsumerSessionTimeout:    DefaultConsumerSessionTimeout,
		ConsumerAssignors:         []string{AssignorUniform, AssignorRange},
		TopicCacheTTL:             DefaultTopicCacheTTL,
		OwnershipCheckInterval:    DefaultOwnershipCheckInterval,
		OffsetsRetention:          DefaultOffsetsRetention,
		Now:                       time.Now,
	}
}

// withDefaults fills fields left at their zero value (except
// InitialRebalanceDelay, whose zero is meaningful).
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MinSessionTimeout == 0 {
		c.MinSessionTimeout = d.MinSessionTimeout
	}
	if c.MaxSessionTimeout == 0 {
		c.MaxSessionTimeout = d.MaxSessionTimeout
	}
	if c.GroupMaxSize == 0 {
		c.GroupMaxSize = d.GroupMaxSize
	}
	if c.MaxGroups == 0 {
		c.MaxGroups = d.MaxGroups
	}
	if c.MaxMetadataBytes == 0 {
		c.MaxMetadataBytes = d.MaxMetadataBytes
	}
	if c.MaxTotalMetadataBytes == 0 {
		c.MaxTotalMetadataBytes = d.MaxTotalMetadataBytes
	}
	if c.MaxOffsetMetadataBytes == 0 {
		c.MaxOffsetMetadataBytes = d.MaxOffsetMetadataBytes
	}
	if c.ConsumerHeartbeatInterval == 0 {
		c.ConsumerHeartbeatInterval = d.ConsumerHeartbeatInterval
	}
	if c.ConsumerSessionTimeout == 0 {
		c.ConsumerSessionTimeout = d.ConsumerSessionTimeout
	}
	if len(c.ConsumerAssignors) == 0 {
		c.ConsumerAssignors = d.ConsumerAssignors
	}
	if c.TopicCacheTTL == 0 {
		c.TopicCacheTTL = d.TopicCacheTTL
	}
	if c.OwnershipCheckInterval == 0 {
		c.OwnershipCheckInterval = d.OwnershipCheckInterval
	}
	if c.OffsetsRetention == 0 {
		c.OffsetsRetention = d.OffsetsRetention
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports settings that cannot work. Zero values are replaced by
// defaults first, so a partly filled Config validates.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.MinSessionTimeout < 0 || c.MaxSessionTimeout < c.MinSessionTimeout {
		errs = append(errs, fmt.Errorf("session timeout bounds [%v, %v] are not a range", c.MinSessionTimeout, c.MaxSessionTimeout))
	}
	if c.InitialRebalanceDelay < 0 {
		errs = append(errs, fmt.Errorf("initial rebalance delay %v is negative", c.InitialRebalanceDelay))
	}
	if c.GroupMaxSize < 1 {
		errs = append(errs, fmt.Errorf("group max size %d is below 1", c.GroupMaxSize))
	}
	if c.MaxGroups < 1 {
		errs = append(errs, fmt.Errorf("max groups %d is below 1", c.MaxGroups))
	}
	if c.MaxMetadataBytes < 1 {
		errs = append(errs, fmt.Errorf("max metadata bytes %d is below 1", c.MaxMetadataBytes))
	}
	if c.MaxTotalMetadataBytes < int64(c.MaxMetadataBytes) {
		errs = append(errs, fmt.Errorf("max total metadata bytes %d is below max metadata bytes %d", c.MaxTotalMetadataBytes, c.MaxMetadataBytes))
	}
	if c.MaxOffsetMetadataBytes < 0 {
		errs = append(errs, fmt.Errorf("max offset metadata bytes %d is negative", c.MaxOffsetMetadataBytes))
	}
	if c.ConsumerHeartbeatInterval <= 0 || c.ConsumerSessionTimeout <= c.ConsumerHeartbeatInterval {
		errs = append(errs, fmt.Errorf("consumer heartbeat interval %v must be positive and below the consumer session timeout %v", c.ConsumerHeartbeatInterval, c.ConsumerSessionTimeout))
	}
	for _, a := range c.ConsumerAssignors {
		if a != AssignorUniform && a != AssignorRange {
			errs = append(errs, fmt.Errorf("unknown consumer assignor %q (known: %s, %s)", a, AssignorUniform, AssignorRange))
		}
	}
	if c.TopicCacheTTL < 0 {
		errs = append(errs, fmt.Errorf("topic cache ttl %v is negative", c.TopicCacheTTL))
	}
	if c.OwnershipCheckInterval < 0 {
		errs = append(errs, fmt.Errorf("ownership check interval %v is negative", c.OwnershipCheckInterval))
	}
	if c.OffsetsRetention < time.Second {
		errs = append(errs, fmt.Errorf("offsets retention %v is below a second", c.OffsetsRetention))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("groups: config: %w", err)
	}
	return nil
}

// RegisterFlags sets c to the defaults and registers its settable fields on
// fs, each name prefixed with prefix (for example "group.").
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	*c = DefaultConfig()
	fs.DurationVar(&c.MinSessionTimeout, prefix+"min-session-timeout", c.MinSessionTimeout, "smallest session timeout a classic group member may ask for")
	fs.DurationVar(&c.MaxSessionTimeout, prefix+"max-session-timeout", c.MaxSessionTimeout, "largest session timeout a classic group member may ask for")
	fs.DurationVar(&c.InitialRebalanceDelay, prefix+"initial-rebalance-delay", c.InitialRebalanceDelay, "how long an empty classic group's first rebalance waits for more members (0 in tests)")
	fs.IntVar(&c.GroupMaxSize, prefix+"max-size", c.GroupMaxSize, "most members of one group")
	fs.IntVar(&c.MaxGroups, prefix+"max-groups", c.MaxGroups, "most groups held in memory by one agent")
	fs.IntVar(&c.MaxMetadataBytes, prefix+"max-metadata-bytes", c.MaxMetadataBytes, "most protocol metadata, assignment or subscription bytes per member")
	fs.Int64Var(&c.MaxTotalMetadataBytes, prefix+"max-total-metadata-bytes", c.MaxTotalMetadataBytes, "most member metadata bytes held for all groups")
	fs.IntVar(&c.MaxOffsetMetadataBytes, prefix+"max-offset-metadata-bytes", c.MaxOffsetMetadataBytes, "largest metadata string of one committed offset")
	fs.DurationVar(&c.ConsumerHeartbeatInterval, prefix+"consumer-heartbeat-interval", c.ConsumerHeartbeatInterval, "heartbeat interval of KIP-848 consumer group members")
	fs.DurationVar(&c.ConsumerSessionTimeout, prefix+"consumer-session-timeout", c.ConsumerSessionTimeout, "session timeout of KIP-848 consumer group members")
	fs.Func(prefix+"consumer-assignors", "comma-separated KIP-848 server assignors, the first is the default (uniform,range)", func(s string) error {
		var list []string
		for _, a := range splitComma(s) {
			if !slices.Contains(list, a) {
				list = append(list, a)
			}
		}
		c.ConsumerAssignors = list
		return nil
	})
	fs.DurationVar(&c.TopicCacheTTL, prefix+"topic-cache-ttl", c.TopicCacheTTL, "how stale the coordinator's view of topics may be")
	fs.DurationVar(&c.OffsetsRetention, prefix+"offsets-retention", c.OffsetsRetention, "how long a group without members keeps its committed offsets after its last commit or its last member left, offsets.retention.minutes")
	fs.DurationVar(&c.OwnershipCheckInterval, prefix+"ownership-check-interval", c.OwnershipCheckInterval, "how often to drop groups this agent no longer coordinates")
}

func splitComma(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
