// Package catalog owns Floe's metadata and the order of its records: topics,
// partitions, the batch index that maps partition offsets to byte ranges of
// segment objects, idempotent producer state, consumer group offsets, the live
// agents, background-work leases and a global commit sequence.
//
// It is the single source of order. CommitSegment assigns offsets to every
// batch of one flushed segment object in one transaction; once it returns,
// those offsets are durable and visible to every agent. All SQL in Floe lives
// in this package and its backends (catalog/postgres, catalog/sqlite); callers
// depend only on the Catalog interface.
//
// Guarantees every backend gives (and catalogtest checks):
//   - Offsets of a partition are gapless, unique and increasing, whatever
//     number of agents commit concurrently.
//   - A commit is all-or-nothing. CommitSegment is idempotent per segment
//     key: committing a key that is already committed changes nothing and
//     returns the original results, so a caller that lost the answer to an
//     ambiguous commit (ErrCommitUnknown) retries with the same key.
//   - An idempotent producer's batch is stored once: a retry is reported as
//     a duplicate carrying the original base offset.
//   - Every method is safe for concurrent use.
package catalog

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. The agent maps them to Kafka error codes.
var (
	ErrTopicExists          = errors.New("catalog: topic already exists")        // TOPIC_ALREADY_EXISTS
	ErrUnknownTopic         = errors.New("catalog: unknown topic or partition")  // UNKNOWN_TOPIC_OR_PARTITION
	ErrInvalidTopic         = errors.New("catalog: invalid topic name")          // INVALID_TOPIC_EXCEPTION
	ErrInvalidPartitions    = errors.New("catalog: invalid partition count")     // INVALID_PARTITIONS
	ErrInvalidConfig        = errors.New("catalog: invalid config")              // INVALID_CONFIG
	ErrOffsetOutOfRange     = errors.New("catalog: offset out of range")         // OFFSET_OUT_OF_RANGE
	ErrOutOfOrderSequence   = errors.New("catalog: out of order sequence")       // OUT_OF_ORDER_SEQUENCE_NUMBER
	ErrInvalidProducerEpoch = errors.New("catalog: invalid producer epoch")      // INVALID_PRODUCER_EPOCH
	ErrUnknownProducerID    = errors.New("catalog: unknown producer id")         // UNKNOWN_PRODUCER_ID
	ErrSchemaTooNew         = errors.New("catalog: schema is newer than binary") // refuse to run
	// ErrCommitUnknown reports that a commit may or may not have happened
	// (the connection died after the commit was sent). Retry with the same
	// segment key: CommitSegment is idempotent per key.
	ErrCommitUnknown = errors.New("catalog: commit outcome unknown")
)

// TopicID is a topic's UUID, as Kafka's Metadata v10+ and Fetch v13+ carry it.
type TopicID [16]byte

// IsZero reports whether id is the null UUID.
func (id TopicID) IsZero() bool { return id == TopicID{} }

// TopicPartition names one partition.
type TopicPartition struct {
	TopicID   TopicID
	Partition int32
}

// Topic is a topic as the catalog stores it.
type Topic struct {
	ID         TopicID
	Name       string
	Partitions int32
	// Configs holds the explicitly set configs only; defaults come from
	// ConfigDefault.
	Configs map[string]string
	Created time.Time
	// ConfigVersion is the number of the last change of Configs
	// (AlterTopicConfigs, ReplaceTopicConfigs; see TopicConfigsSince), 0
	// if they were not changed since the topic was created. Numbers grow
	// with every change of any topic's configs, so of two reads of a
	// topic the one with the larger number is the newer.
	ConfigVersion int64
}

// TopicSpec is a request to create a topic.
type TopicSpec struct {
	Name       string
	Partitions int32
	Configs    map[string]string
}

// ConfigOpKind is what an IncrementalAlterConfigs entry does.
type ConfigOpKind int8

const (
	ConfigSet    ConfigOpKind = 0
	ConfigDelete ConfigOpKind = 1
)

// ConfigOp is one change to a topic's configs.
type ConfigOp struct {
	Key   string
	Value string
	Op    ConfigOpKind
}

// PartitionOffsets are one partition's bounds.
type PartitionOffsets struct {
	LogStart      int64 // first offset still readable
	HighWatermark int64 // next offset to be assigned (== log end offset)
}

// BatchRef describes one producer record batch inside a segment object, as
// the flusher hands it to CommitSegment.
type BatchRef struct {
	TopicPartition
	ByteOffset int64 // position of the batch in the object
	ByteLength int64
	// OffsetSpan is the number of offsets the batch occupies:
	// lastOffsetDelta+1 from the batch header.
	OffsetSpan     int32
	Records        int32
	FirstTimestamp int64
	MaxTimestamp   int64
	// Idempotence: ProducerID < 0 for a non-idempotent batch.
	ProducerID    int64
	ProducerEpoch int16
	BaseSequence  int32
}

// Segment is one flushed object and the batches it holds, in object order
// (partitions ascending by topic id then partition, batches of one partition
// in append order).
type Segment struct {
	Key     string
	Size    int64
	Batches []BatchRef
}

// BatchResult is the outcome of one BatchRef, in the same position.
type BatchResult struct {
	// BaseOffset is the assigned base offset, or for a duplicate the
	// original one.
	BaseOffset int64
	Duplicate  bool
	// Err is nil, ErrUnknownTopic, ErrOutOfOrderSequence,
	// ErrInvalidProducerEpoch or ErrUnknownProducerID. A failed batch is not
	// stored; the other batches of the segment are.
	Err error
	// LogStartOffset of the partition after the commit.
	LogStartOffset int64
}

// CommitResult is the outcome of CommitSegment.
type CommitResult struct {
	CommitID int64
	Results  []BatchResult
}

// BatchRow is one row of the batch index: a contiguous offset range of one
// partition stored as a contiguous byte range of one object. A row may hold
// several producer batches back to back.
type BatchRow struct {
	TopicPartition
	BaseOffset   int64
	LastOffset   int64
	ObjectKey    string
	ByteOffset   int64
	ByteLength   int64
	Records      int32
	MaxTimestamp int64
	CommitID     int64
	// ObjectSize is the size in bytes of the whole object ObjectKey names,
	// so a reader can choose between reading the object once and reading
	// the row's range. Filled by every lookup that returns rows (Batches,
	// BatchForTimestamp, MaxTimestampBatch, CommitsSince); 0 means
	// unknown. Ignored in a RowSwap's rows.
	ObjectSize int64
}

// GroupOffset is one committed consumer offset.
type GroupOffset struct {
	Topic       string
	Partition   int32
	Offset      int64
	LeaderEpoch int32
	Metadata    string
	CommitTime  time.Time
}

// GroupPartition names one partition of a group's committed offsets.
type GroupPartition struct {
	Topic     string
	Partition int32
}

// RefusedOffsets is what a backend's CommitOffsets returns: the partitions
// of offsets that stored does not mark as written, once each, in the order
// given. It marks each one it returns in stored.
func RefusedOffsets(offsets []GroupOffset, stored map[GroupPartition]bool) []GroupPartition {
	var out []GroupPartition
	for _, o := range offsets {
		gp := GroupPartition{Topic: o.Topic, Partition: o.Partition}
		if !stored[gp] {
			stored[gp] = true // once
			out = append(out, gp)
		}
	}
	return out
}

// AgentIDRetention is how long an agent ID that left the fleet (it
// deregistered or was expired) keeps its node id: RegisterAgent gives the
// ID the same NodeID again until ExpireAgents forgets it, AgentIDRetention
// after it left. A fixed agent ID (a StatefulSet pod name) thus stays one
// Kafka node across restarts and upgrades, while the records of random
// IDs, which never come back, do not pile up.
const AgentIDRetention = 7 * 24 * time.Hour

// Agent is one live agent of the fleet.
type Agent struct {
	NodeID    int32 // assigned by RegisterAgent
	ID        string
	Addr      string // advertised host:port
	Zone      string
	Started   time.Time
	Heartbeat time.Time
}

// Catalog is the whole metadata store. Backends: catalog/postgres,
// catalog/sqlite. Open one with Open.
type Catalog interface {
	// Topics.

	// CreateTopic creates a topic. It is ErrTopicExists if the name is
	// taken, and ErrInvalidTopic if the name collides with an existing
	// topic's (TopicCollisionName), as in Kafka; two concurrent creates of
	// colliding names never both succeed.
	CreateTopic(ctx context.Context, spec TopicSpec) (Topic, error)
	// DeleteTopic removes the topic named name with its partitions, batch
	// rows, producer state and the offsets groups committed for it (a
	// topic created again under the name starts with none, as in Kafka),
	// and returns its id. With a non-zero id it removes the topic only if
	// its id is id, and is ErrUnknownTopic otherwise: a caller that found
	// the topic by id never deletes another topic created since under the
	// name.
	DeleteTopic(ctx context.Context, name string, id TopicID) (TopicID, error)
	Topic(ctx context.Context, name string) (Topic, error)
	TopicByID(ctx context.Context, id TopicID) (Topic, error)
	ListTopics(ctx context.Context) ([]Topic, error)
	// CreatePartitions grows the topic to total partitions.
	CreatePartitions(ctx context.Context, name string, total int32) error
	// AlterTopicConfigs applies ops in order (incremental alter).
	AlterTopicConfigs(ctx context.Context, name string, ops []ConfigOp) (Topic, error)
	// ReplaceTopicConfigs sets the explicit configs to exactly configs
	// (the non-incremental AlterConfigs).
	ReplaceTopicConfigs(ctx context.Context, name string, configs map[string]string) (Topic, error)
	// TopicConfigsSince returns the topics whose configs changed after
	// change number after (their ConfigVersion is above it), in no order,
	// read in one snapshot, and the largest ConfigVersion among them
	// (after if none): passing it as after next time misses no change
	// (changes commit in the order of their numbers). Agents follow it to
	// apply a change made through another agent at once rather than when
	// their cached copy of the topic expires.
	TopicConfigsSince(ctx context.Context, after int64) (topics []Topic, latest int64, err error)
	// WatchTopicConfigs delivers change numbers as topic config changes
	// commit (coalesced, as Watch). The channel closes when ctx ends.
	// Watchers must still call TopicConfigsSince after any gap.
	WatchTopicConfigs(ctx context.Context) (<-chan int64, error)

	// Data.
	CommitSegment(ctx context.Context, seg Segment) (CommitResult, error)
	// CommitSegments commits segs in order, with the results CommitSegment
	// would give committing each one after the other, one CommitResult per
	// segment. It is group commit: a backend may commit them in one
	// transaction, touching each partition's row and producer state once
	// however many of the segments hold it, which is what an agent whose
	// commits queue behind each other needs (a commit's cost grows with
	// its partitions, not its bytes). Keys must be distinct. Idempotent
	// per key as CommitSegment is: a key already committed gets its
	// original results. On error any prefix of segs may be committed, and
	// retrying the same segments (together or one by one) is safe.
	CommitSegments(ctx context.Context, segs []Segment) ([]CommitResult, error)
	// Batches returns the rows of tp that hold offsets >= from, ascending,
	// at least one row if any exist, stopping once maxBytes are covered.
	Batches(ctx context.Context, tp TopicPartition, from int64, maxBytes int64) ([]BatchRow, error)
	Offsets(ctx context.Context, tp TopicPartition) (PartitionOffsets, error)
	// OffsetsOf returns the offsets of many partitions in one read, in
	// one snapshot: what Offsets returns for each, so that an agent
	// refreshing the log starts of thousands of partitions asks the
	// catalog once, not once per partition. A partition the catalog does
	// not have (its topic was deleted, or it never existed), for which
	// Offsets is ErrUnknownTopic, is absent from the map; repeated
	// partitions are answered once.
	OffsetsOf(ctx context.Context, tps []TopicPartition) (map[TopicPartition]PartitionOffsets, error)
	// BatchForTimestamp returns the first row, among those holding
	// offsets >= from and >= the log start, whose MaxTimestamp >= ts,
	// and that log start, read in the same snapshot as the row (so a
	// caller searches the row's records from the log start the row was
	// chosen by). A caller finding no record at or after ts in it (below
	// the log start, or its batch headers overstate) goes on from its
	// LastOffset+1.
	BatchForTimestamp(ctx context.Context, tp TopicPartition, ts, from int64) (row BatchRow, logStart int64, found bool, err error)
	// MaxTimestampBatch returns the row holding the largest timestamp (the
	// first on ties) among those holding offsets >= from and >= the log
	// start, and that log start, as BatchForTimestamp.
	MaxTimestampBatch(ctx context.Context, tp TopicPartition, from int64) (row BatchRow, logStart int64, found bool, err error)
	// DeleteRecords advances the log start offset to offset (clamped to the
	// high watermark; never moves it back) and returns the new log start.
	DeleteRecords(ctx context.Context, tp TopicPartition, offset int64) (int64, error)
	// CommitsSince returns the rows committed with commit id > after,
	// ascending by commit id, at most limit rows, for agents following the
	// tail. The second result is the latest commit id seen.
	CommitsSince(ctx context.Context, after int64, limit int) ([]BatchRow, int64, error)
	// Watch delivers commit ids as commits happen (coalesced: a slow reader
	// sees the latest). The channel closes when ctx ends. Followers must
	// still call CommitsSince after any gap.
	Watch(ctx context.Context) (<-chan int64, error)

	// Idempotent producers.
	AllocateProducerID(ctx context.Context) (id int64, epoch int16, err error)
	// BumpProducerEpoch fences the given epoch and returns the next one.
	BumpProducerEpoch(ctx context.Context, id int64, epoch int16) (int16, error)

	// Consumer group offsets.
	//
	// CommitOffsets upserts the group's offsets (a later entry for the same
	// partition wins) for the partitions that exist when it commits, and
	// returns the others, in the order given: their topic is unknown or
	// the partition is out of its range, as Kafka answers
	// UNKNOWN_TOPIC_OR_PARTITION for them. The check is atomic with
	// DeleteTopic: a commit either precedes the delete (which removes
	// its offsets) or is refused, so a topic created again under the name
	// never starts from the deleted one's offsets, whatever a caller had
	// cached about the topic. An error means nothing was stored.
	CommitOffsets(ctx context.Context, group string, offsets []GroupOffset) (refused []GroupPartition, err error)
	// FetchOffsets returns the group's offsets for parts, or all when parts
	// is nil. Partitions without a committed offset are absent.
	FetchOffsets(ctx context.Context, group string, parts []GroupPartition) ([]GroupOffset, error)
	DeleteOffsets(ctx context.Context, group string, parts []GroupPartition) error
	// ExpireOffsets deletes the committed offsets older than before of
	// every group that has no coordinator state (no members: see
	// SaveGroupState) and whose latest commit, and the last time it lost
	// its state (DeleteGroupState: its last member left), are older than
	// before, and returns how many groups it expired (Kafka's
	// offsets.retention.minutes, KIP-211, which ages a group's offsets
	// from when it became empty). An offset committed meanwhile is kept.
	ExpireOffsets(ctx context.Context, before time.Time) (groups int, err error)
	// DeleteGroup removes every offset of the group and its coordinator
	// state (see SaveGroupState).
	DeleteGroup(ctx context.Context, group string) error
	// ListGroups returns the groups with committed offsets or stored
	// coordinator state, sorted: every group a coordinator may have to
	// load, even one whose members never committed.
	ListGroups(ctx context.Context) ([]string, error)

	// Consumer group coordinator state: one opaque blob per group that the
	// group's coordinator writes when the group reaches a new stable state
	// and a new coordinator reads, so that a group survives a coordinator
	// move without a rebalance. The catalog does not interpret the blob.
	//
	// Every stored state carries a version, unique across the catalog's
	// life and increasing (a state deleted and stored again never reuses a
	// version), so a compare-and-set cannot be fooled by a delete.
	//
	// LoadGroupState returns group's state and its version, or nil and 0
	// when none is stored.
	LoadGroupState(ctx context.Context, group string) (state []byte, version int64, err error)
	// SaveGroupState stores state as group's if the stored version is
	// expect (0: none is stored) and returns the new version. Otherwise it
	// changes nothing and returns ErrGroupStateConflict: another agent
	// wrote the group since this one loaded it. A state longer than
	// MaxGroupStateBytes gets ErrGroupStateTooLarge.
	SaveGroupState(ctx context.Context, group string, expect int64, state []byte) (version int64, err error)
	// DeleteGroupState removes group's state if its version is expect;
	// ErrGroupStateConflict if another version (or, with expect > 0,
	// none) is stored. With expect 0 and none stored it does nothing.
	// The group's offsets age from when it removes the state (see
	// ExpireOffsets).
	DeleteGroupState(ctx context.Context, group string, expect int64) error

	// Agents. Generation is the membership counter (bumped when an agent
	// joins or leaves); the agent uses it as every partition's leader epoch.
	//
	// An agent's registration is one incarnation of its ID: a.Started
	// (truncated to microseconds; now if zero) tells incarnations apart.
	// RegisterAgent inserts the ID's row, or takes it over — keeping its
	// NodeID — when the row is a's own incarnation or its heartbeat is at
	// least ttl old; a live row of another incarnation (two processes given
	// one agent ID) is ErrAgentIDInUse. An ID that left (DeregisterAgent,
	// ExpireAgents) gets its NodeID back, for AgentIDRetention. Heartbeat
	// and deregistration name the incarnation, so a process whose ID was
	// taken over can neither keep the other's row alive nor remove it: it
	// gets ErrUnknownAgent.
	RegisterAgent(ctx context.Context, a Agent, ttl time.Duration) (Agent, error)
	HeartbeatAgent(ctx context.Context, nodeID int32, started time.Time) error
	DeregisterAgent(ctx context.Context, nodeID int32, started time.Time) error
	// LiveAgents returns agents whose heartbeat is younger than ttl, by
	// NodeID, and the current generation.
	LiveAgents(ctx context.Context, ttl time.Duration) ([]Agent, int64, error)
	// ExpireAgents removes agents whose heartbeat is older than ttl (their
	// IDs keep their NodeIDs) and forgets the NodeIDs of IDs that left
	// more than AgentIDRetention ago.
	ExpireAgents(ctx context.Context, ttl time.Duration) (int, error)

	// Leases for background work.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	RenewLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error

	Close() error
}
