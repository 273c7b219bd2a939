package catalog

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Config types as Kafka's DescribeConfigs names them (ConfigDef.Type).
const (
	ConfigTypeBoolean = "BOOLEAN"
	ConfigTypeString  = "STRING"
	ConfigTypeInt     = "INT"
	ConfigTypeLong    = "LONG"
	ConfigTypeDouble  = "DOUBLE"
	ConfigTypeList    = "LIST"
	ConfigTypeClass   = "CLASS"
)

// Incremental alter operations beyond ConfigSet and ConfigDelete, with
// Kafka's IncrementalAlterConfigs op codes. They apply to LIST configs only.
const (
	ConfigAppend   ConfigOpKind = 2
	ConfigSubtract ConfigOpKind = 3
)

// Topic config names Floe interprets itself. Every other known key is
// accepted, validated and stored so admin tools round-trip it, but has no
// effect (replication, local segment files and flushing do not exist here).
const (
	ConfigCleanupPolicy          = "cleanup.policy"
	ConfigCompressionType        = "compression.type"
	ConfigDeleteRetentionMs      = "delete.retention.ms"
	ConfigMaxCompactionLagMs     = "max.compaction.lag.ms"
	ConfigMaxMessageBytes        = "max.message.bytes"
	ConfigMessageTimestampType   = "message.timestamp.type"
	ConfigTimestampBeforeMaxMs   = "message.timestamp.before.max.ms"
	ConfigTimestampAfterMaxMs    = "message.timestamp.after.max.ms"
	ConfigTimestampDifferenceMax = "message.timestamp.difference.max.ms"
	ConfigMinCleanableDirtyRatio = "min.cleanable.dirty.ratio"
	ConfigMinCompactionLagMs     = "min.compaction.lag.ms"
	ConfigRetentionBytes         = "retention.bytes"
	ConfigRetentionMs            = "retention.ms"
	ConfigSegmentBytes           = "segment.bytes"
	ConfigSegmentMs              = "segment.ms"
)

// Values of message.timestamp.type and cleanup.policy.
const (
	TimestampTypeCreateTime    = "CreateTime"
	TimestampTypeLogAppendTime = "LogAppendTime"
	CleanupPolicyDelete        = "delete"
	CleanupPolicyCompact       = "compact"
)

const (
	maxTopicNameLen = 249
	maxLong         = "9223372036854775807"
)

// MaxConfigValueBytes caps a topic config's value. Kafka's longest
// values are the throttled-replica lists, which only partition
// reassignment sets (Floe has none); every other value is a number, a
// name or a short list. Unbounded, a value is limited only by the request
// frame, and the alters validate and apply it twice, the second time
// inside the catalog's write transaction (SQLite's one writer).
const MaxConfigValueBytes = 64 << 10

// MaxPartitions caps a topic's partition count. Every partition is a catalog
// row locked by commits, so an absurd count is refused rather than stored.
const MaxPartitions = 100_000

// ConfigDef describes one topic config as DescribeConfigs reports it.
type ConfigDef struct {
	Name      string
	Default   string
	Type      string // ConfigType* (Kafka's names)
	Doc       string
	Sensitive bool
}

// configSpec is a ConfigDef plus how to validate a value.
type configSpec struct {
	ConfigDef
	check func(v string) error
}

// topicConfigs lists Kafka 4.1's topic configs (LogConfig) plus the two
// that 4.0 removed (message.timestamp.difference.max.ms and
// message.downconversion.enable), still accepted because older admin tools
// send them. Sorted by name, as DescribeConfigs lists them.
var topicConfigs = []configSpec{
	{ConfigDef{Name: ConfigCleanupPolicy, Default: CleanupPolicyDelete, Type: ConfigTypeList, Doc: "delete (drop old records by retention), compact (keep the latest record per key), both, or empty (neither: records are kept forever)."}, checkCleanupPolicy},
	{ConfigDef{Name: "compression.gzip.level", Default: "-1", Type: ConfigTypeInt, Doc: "Accepted for compatibility; Floe stores batches as producers compressed them."}, checkIntIn(-1, -1, 1, 9)},
	{ConfigDef{Name: "compression.lz4.level", Default: "9", Type: ConfigTypeInt, Doc: "Accepted for compatibility; Floe stores batches as producers compressed them."}, checkIntIn(1, 17)},
	{ConfigDef{Name: ConfigCompressionType, Default: "producer", Type: ConfigTypeString, Doc: "Final compression of the topic's data; Floe supports only producer (keep what the producer sent) and accepts the other values for compatibility."}, checkEnum("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")},
	{ConfigDef{Name: "compression.zstd.level", Default: "3", Type: ConfigTypeInt, Doc: "Accepted for compatibility; Floe stores batches as producers compressed them."}, checkIntIn(-131072, 22)},
	{ConfigDef{Name: ConfigDeleteRetentionMs, Default: "86400000", Type: ConfigTypeLong, Doc: "How long tombstones are kept on compacted topics."}, checkLongAtLeast(0)},
	{ConfigDef{Name: "file.delete.delay.ms", Default: "60000", Type: ConfigTypeLong, Doc: "Accepted for compatibility; object deletion uses the garbage collector's grace period."}, checkLongAtLeast(0)},
	{ConfigDef{Name: "flush.messages", Default: maxLong, Type: ConfigTypeLong, Doc: "Accepted for compatibility; every acknowledged record is already in object storage."}, checkLongAtLeast(1)},
	{ConfigDef{Name: "flush.ms", Default: maxLong, Type: ConfigTypeLong, Doc: "Accepted for compatibility; every acknowledged record is already in object storage."}, checkLongAtLeast(0)},
	{ConfigDef{Name: "follower.replication.throttled.replicas", Default: "", Type: ConfigTypeList, Doc: "Accepted for compatibility; Floe does not replicate."}, checkThrottledReplicas},
	{ConfigDef{Name: "index.interval.bytes", Default: "4096", Type: ConfigTypeInt, Doc: "Accepted for compatibility."}, checkIntAtLeast(0)},
	{ConfigDef{Name: "leader.replication.throttled.replicas", Default: "", Type: ConfigTypeList, Doc: "Accepted for compatibility; Floe does not replicate."}, checkThrottledReplicas},
	{ConfigDef{Name: "local.retention.bytes", Default: "-2", Type: ConfigTypeLong, Doc: "Accepted for compatibility; all data lives in object storage."}, checkLongAtLeast(-2)},
	{ConfigDef{Name: "local.retention.ms", Default: "-2", Type: ConfigTypeLong, Doc: "Accepted for compatibility; all data lives in object storage."}, checkLongAtLeast(-2)},
	{ConfigDef{Name: ConfigMaxCompactionLagMs, Default: maxLong, Type: ConfigTypeLong, Doc: "Longest time a record stays ineligible for compaction."}, checkLongAtLeast(1)},
	{ConfigDef{Name: ConfigMaxMessageBytes, Default: "1048588", Type: ConfigTypeInt, Doc: "Largest record batch the topic accepts."}, checkIntAtLeast(0)},
	{ConfigDef{Name: "message.downconversion.enable", Default: "true", Type: ConfigTypeBoolean, Doc: "Removed in Kafka 4.0; accepted for older admin tools. Floe never down-converts."}, checkBool},
	{ConfigDef{Name: ConfigTimestampAfterMaxMs, Default: "3600000", Type: ConfigTypeLong, Doc: "How far in the future a CreateTime timestamp may be."}, checkLongAtLeast(0)},
	{ConfigDef{Name: ConfigTimestampBeforeMaxMs, Default: maxLong, Type: ConfigTypeLong, Doc: "How far in the past a CreateTime timestamp may be."}, checkLongAtLeast(0)},
	{ConfigDef{Name: ConfigTimestampDifferenceMax, Default: maxLong, Type: ConfigTypeLong, Doc: "Removed in Kafka 4.0; when set it bounds both directions unless the before/after configs are set."}, checkLongAtLeast(0)},
	{ConfigDef{Name: ConfigMessageTimestampType, Default: TimestampTypeCreateTime, Type: ConfigTypeString, Doc: "CreateTime (keep the producer's timestamps) or LogAppendTime (stamp the commit time)."}, checkEnum(TimestampTypeCreateTime, TimestampTypeLogAppendTime)},
	{ConfigDef{Name: ConfigMinCleanableDirtyRatio, Default: "0.5", Type: ConfigTypeDouble, Doc: "Fraction of uncompacted log that triggers compaction."}, checkRatio},
	{ConfigDef{Name: ConfigMinCompactionLagMs, Default: "0", Type: ConfigTypeLong, Doc: "Shortest time a record stays uncompacted."}, checkLongAtLeast(0)},
	{ConfigDef{Name: "min.insync.replicas", Default: "1", Type: ConfigTypeInt, Doc: "Accepted for compatibility; durability comes from object storage."}, checkIntAtLeast(1)},
	{ConfigDef{Name: "preallocate", Default: "false", Type: ConfigTypeBoolean, Doc: "Accepted for compatibility."}, checkBool},
	{ConfigDef{Name: "remote.log.copy.disable", Default: "false", Type: ConfigTypeBoolean, Doc: "Accepted for compatibility."}, checkBool},
	{ConfigDef{Name: "remote.log.delete.on.disable", Default: "false", Type: ConfigTypeBoolean, Doc: "Accepted for compatibility."}, checkBool},
	{ConfigDef{Name: "remote.storage.enable", Default: "false", Type: ConfigTypeBoolean, Doc: "Accepted for compatibility; all data lives in object storage."}, checkBool},
	{ConfigDef{Name: ConfigRetentionBytes, Default: "-1", Type: ConfigTypeLong, Doc: "Largest size a partition may grow to before old records are deleted; -1 means unlimited."}, checkLong},
	{ConfigDef{Name: ConfigRetentionMs, Default: "604800000", Type: ConfigTypeLong, Doc: "How long records are kept; -1 means forever."}, checkLongAtLeast(-1)},
	{ConfigDef{Name: ConfigSegmentBytes, Default: "1073741824", Type: ConfigTypeInt, Doc: "Target size of compacted per-partition segment objects."}, checkIntAtLeast(1 << 20)},
	{ConfigDef{Name: "segment.index.bytes", Default: "10485760", Type: ConfigTypeInt, Doc: "Accepted for compatibility."}, checkIntAtLeast(4)},
	{ConfigDef{Name: "segment.jitter.ms", Default: "0", Type: ConfigTypeLong, Doc: "Accepted for compatibility."}, checkLongAtLeast(0)},
	{ConfigDef{Name: ConfigSegmentMs, Default: "604800000", Type: ConfigTypeLong, Doc: "Longest span of record time one merged row (Floe's segment) covers; a compacted topic's rows also cover at most max.compaction.lag.ms."}, checkLongAtLeast(1)},
	{ConfigDef{Name: "unclean.leader.election.enable", Default: "false", Type: ConfigTypeBoolean, Doc: "Accepted for compatibility; Floe has no replicas to elect."}, checkBool},
}

var configIndex = func() map[string]*configSpec {
	m := make(map[string]*configSpec, len(topicConfigs))
	for i := range topicConfigs {
		m[topicConfigs[i].Name] = &topicConfigs[i]
	}
	return m
}()

// ConfigDefs returns every topic config Floe knows, sorted by name. The
// caller may modify the returned slice.
func ConfigDefs() []ConfigDef {
	defs := make([]ConfigDef, len(topicConfigs))
	for i, s := range topicConfigs {
		defs[i] = s.ConfigDef
	}
	return defs
}

// ConfigDefault returns the default of a known topic config.
func ConfigDefault(name string) (string, bool) {
	s, ok := configIndex[name]
	if !ok {
		return "", false
	}
	return s.Default, true
}

// LookupConfigDef returns the definition of a known topic config.
func LookupConfigDef(name string) (ConfigDef, bool) {
	s, ok := configIndex[name]
	if !ok {
		return ConfigDef{}, false
	}
	return s.ConfigDef, true
}

// ValidateConfig checks one topic config. Unknown names are rejected, as
// Kafka rejects them. The error wraps ErrInvalidConfig and names the key.
func ValidateConfig(name, value string) error {
	s, ok := configIndex[name]
	if !ok {
		return fmt.Errorf("%w: Unknown topic config name: %s", ErrInvalidConfig, name)
	}
	if err := checkValueLen(name, value); err != nil {
		return err
	}
	if err := s.check(value); err != nil {
		// Worded as Kafka's ConfigException, which admin tools show.
		return fmt.Errorf("%w: Invalid value %s for configuration %s: %v", ErrInvalidConfig, value, name, err)
	}
	return nil
}

// checkValueLen refuses a value over MaxConfigValueBytes, without
// quoting it.
func checkValueLen(name, value string) error {
	if len(value) > MaxConfigValueBytes {
		return fmt.Errorf("%w: Invalid value for configuration %s: %d bytes, longer than %d",
			ErrInvalidConfig, name, len(value), MaxConfigValueBytes)
	}
	return nil
}

// ValidateConfigs checks a whole set of explicit configs: each key and
// value, and the constraints between keys that Kafka enforces.
func ValidateConfigs(configs map[string]string) error {
	keys := make([]string, 0, len(configs))
	for k := range configs {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic error for several bad keys
	for _, k := range keys {
		if err := ValidateConfig(k, configs[k]); err != nil {
			return err
		}
	}
	t := Topic{Configs: configs}
	if minLag, maxLag := t.configLong(ConfigMinCompactionLagMs), t.configLong(ConfigMaxCompactionLagMs); minLag > maxLag {
		return fmt.Errorf("%w: %s (%d) must not exceed %s (%d)", ErrInvalidConfig,
			ConfigMinCompactionLagMs, minLag, ConfigMaxCompactionLagMs, maxLag)
	}
	return nil
}

// ApplyConfigOps returns a copy of configs with ops applied in order, and
// validates the result. Deleting a key that is not set succeeds, an
// unknown key included: Kafka's controller validates only the resulting
// set, which such a delete leaves unchanged. Any other op on an unknown
// key fails.
func ApplyConfigOps(configs map[string]string, ops []ConfigOp) (map[string]string, error) {
	out := make(map[string]string, len(configs)+len(ops))
	for k, v := range configs {
		out[k] = v
	}
	for _, op := range ops {
		s, ok := configIndex[op.Key]
		if !ok && op.Op == ConfigDelete {
			delete(out, op.Key)
			continue
		}
		if !ok {
			return nil, fmt.Errorf("%w: Unknown topic config name: %s", ErrInvalidConfig, op.Key)
		}
		switch op.Op {
		case ConfigSet:
			out[op.Key] = op.Value
		case ConfigDelete:
			delete(out, op.Key)
		case ConfigAppend, ConfigSubtract:
			if s.Type != ConfigTypeList {
				return nil, fmt.Errorf("%w: %s is not a list; append and subtract apply to lists only", ErrInvalidConfig, op.Key)
			}
			cur, set := out[op.Key]
			if !set {
				cur = s.Default
			}
			// Both lengths are checked before any work, and the items
			// are matched through a set: a value is bounded, but a
			// linear search per item was still quadratic in it.
			if err := checkValueLen(op.Key, op.Value); err != nil {
				return nil, err
			}
			if err := checkValueLen(op.Key, cur); err != nil {
				return nil, err
			}
			items, vals := splitList(cur), splitList(op.Value)
			if op.Op == ConfigAppend {
				seen := make(map[string]bool, len(items)+len(vals))
				for _, v := range items {
					seen[v] = true
				}
				for _, v := range vals {
					if !seen[v] {
						seen[v] = true
						items = append(items, v)
					}
				}
			} else {
				drop := make(map[string]bool, len(vals))
				for _, v := range vals {
					drop[v] = true
				}
				items = slices.DeleteFunc(items, func(x string) bool { return drop[x] })
			}
			out[op.Key] = strings.Join(items, ",")
		default:
			return nil, fmt.Errorf("%w: %s: unknown operation %d", ErrInvalidConfig, op.Key, op.Op)
		}
	}
	if err := ValidateConfigs(out); err != nil {
		return nil, err
	}
	return out, nil
}

var topicNameRE = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// ValidateTopicName applies Kafka's rules: 1 to 249 characters from
// [a-zA-Z0-9._-], and neither "." nor "..". The error wraps ErrInvalidTopic.
func ValidateTopicName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrInvalidTopic)
	case name == "." || name == "..":
		return fmt.Errorf("%w: %q is not allowed", ErrInvalidTopic, name)
	case len(name) > maxTopicNameLen:
		return fmt.Errorf("%w: name is %d characters, longer than %d", ErrInvalidTopic, len(name), maxTopicNameLen)
	case !topicNameRE.MatchString(name):
		return fmt.Errorf("%w: %q has characters outside [a-zA-Z0-9._-]", ErrInvalidTopic, name)
	}
	return nil
}

// TopicCollisionName is the name two topic names collide on: Kafka
// refuses a topic whose name equals an existing one's with '.' and '_'
// swapped ("a.b" and "a_b"), because metric names replace '.' by '_' and
// the two topics' metrics would merge. It returns "" for a name without
// either character, which collides with no other name.
func TopicCollisionName(name string) string {
	if !strings.ContainsAny(name, "._") {
		return ""
	}
	return strings.ReplaceAll(name, ".", "_")
}

// TopicCollisionError is the error CreateTopic returns for a name that
// collides with existing, worded as Kafka words it.
func TopicCollisionError(name, existing string) error {
	return fmt.Errorf("%w: topic '%s' collides with existing topic: %s", ErrInvalidTopic, name, existing)
}

// ValidatePartitionCount checks a requested partition count.
func ValidatePartitionCount(n int32) error {
	if n < 1 || n > MaxPartitions {
		return fmt.Errorf("%w: %d is not in [1, %d]", ErrInvalidPartitions, n, MaxPartitions)
	}
	return nil
}

// ValidateTopicSpec checks a CreateTopic request before any backend work.
func ValidateTopicSpec(spec TopicSpec) error {
	if err := ValidateTopicName(spec.Name); err != nil {
		return err
	}
	if err := ValidatePartitionCount(spec.Partitions); err != nil {
		return err
	}
	return ValidateConfigs(spec.Configs)
}

// Config returns the topic's value for a config: the explicit one if set,
// else the default ("" for an unknown name).
func (t Topic) Config(name string) string {
	if v, ok := t.Configs[name]; ok {
		return v
	}
	v, _ := ConfigDefault(name)
	return v
}

// IsConfigSet reports whether name is set explicitly on the topic.
func (t Topic) IsConfigSet(name string) bool {
	_, ok := t.Configs[name]
	return ok
}

// configLong parses a LONG or INT config, falling back to the default if a
// stored value is somehow unparsable (values are validated on write).
func (t Topic) configLong(name string) int64 {
	if v, err := strconv.ParseInt(strings.TrimSpace(t.Config(name)), 10, 64); err == nil {
		return v
	}
	d, _ := ConfigDefault(name)
	v, _ := strconv.ParseInt(d, 10, 64)
	return v
}

// RetentionMs is retention.ms; -1 means keep forever.
func (t Topic) RetentionMs() int64 { return t.configLong(ConfigRetentionMs) }

// RetentionBytes is retention.bytes per partition; negative means unlimited.
func (t Topic) RetentionBytes() int64 { return t.configLong(ConfigRetentionBytes) }

// MaxMessageBytes is max.message.bytes: the largest batch accepted.
func (t Topic) MaxMessageBytes() int32 {
	return int32(min(t.configLong(ConfigMaxMessageBytes), math.MaxInt32))
}

// LogAppendTime reports message.timestamp.type=LogAppendTime.
func (t Topic) LogAppendTime() bool {
	return t.Config(ConfigMessageTimestampType) == TimestampTypeLogAppendTime
}

// DeleteRetentionMs is delete.retention.ms (tombstone lifetime).
func (t Topic) DeleteRetentionMs() int64 { return t.configLong(ConfigDeleteRetentionMs) }

// MinCompactionLagMs is min.compaction.lag.ms.
func (t Topic) MinCompactionLagMs() int64 { return t.configLong(ConfigMinCompactionLagMs) }

// MaxCompactionLagMs is max.compaction.lag.ms.
func (t Topic) MaxCompactionLagMs() int64 { return t.configLong(ConfigMaxCompactionLagMs) }

// SegmentBytes is segment.bytes.
func (t Topic) SegmentBytes() int64 { return t.configLong(ConfigSegmentBytes) }

// SegmentMs is segment.ms.
func (t Topic) SegmentMs() int64 { return t.configLong(ConfigSegmentMs) }

// MinCleanableDirtyRatio is min.cleanable.dirty.ratio.
func (t Topic) MinCleanableDirtyRatio() float64 {
	if v, err := strconv.ParseFloat(strings.TrimSpace(t.Config(ConfigMinCleanableDirtyRatio)), 64); err == nil {
		return v
	}
	return 0.5
}

// TimestampBeforeMaxMs is how far in the past a CreateTime timestamp may
// be: message.timestamp.before.max.ms, or the removed
// message.timestamp.difference.max.ms when only that one is set (Kafka 3.x
// semantics).
func (t Topic) TimestampBeforeMaxMs() int64 {
	if !t.IsConfigSet(ConfigTimestampBeforeMaxMs) && t.IsConfigSet(ConfigTimestampDifferenceMax) {
		return t.configLong(ConfigTimestampDifferenceMax)
	}
	return t.configLong(ConfigTimestampBeforeMaxMs)
}

// TimestampAfterMaxMs is how far in the future a CreateTime timestamp may
// be, with the same fallback as TimestampBeforeMaxMs.
func (t Topic) TimestampAfterMaxMs() int64 {
	if !t.IsConfigSet(ConfigTimestampAfterMaxMs) && t.IsConfigSet(ConfigTimestampDifferenceMax) {
		return t.configLong(ConfigTimestampDifferenceMax)
	}
	return t.configLong(ConfigTimestampAfterMaxMs)
}

// CleanupPolicy is the parsed cleanup.policy.
type CleanupPolicy struct {
	Delete  bool // retention by time and size applies
	Compact bool // keep the latest record per key
}

// CleanupPolicy parses cleanup.policy.
func (t Topic) CleanupPolicy() CleanupPolicy {
	var p CleanupPolicy
	for _, v := range splitList(t.Config(ConfigCleanupPolicy)) {
		switch v {
		case CleanupPolicyDelete:
			p.Delete = true
		case CleanupPolicyCompact:
			p.Compact = true
		}
	}
	return p
}

// CompressionType is compression.type.
func (t Topic) CompressionType() string { return t.Config(ConfigCompressionType) }

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func checkLong(v string) error {
	if _, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err != nil {
		return fmt.Errorf("not a 64-bit integer")
	}
	return nil
}

func checkLongAtLeast(lo int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return fmt.Errorf("not a 64-bit integer")
		}
		if n < lo {
			return fmt.Errorf("must be at least %d", lo)
		}
		return nil
	}
}

func checkIntAtLeast(lo int32) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
		if err != nil {
			return fmt.Errorf("not a 32-bit integer")
		}
		if int32(n) < lo {
			return fmt.Errorf("must be at least %d", lo)
		}
		return nil
	}
}

// checkIntIn accepts values inside any of the inclusive ranges given as
// lo, hi pairs.
func checkIntIn(bounds ...int32) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
		if err != nil {
			return fmt.Errorf("not a 32-bit integer")
		}
		var ranges []string
		for i := 0; i+1 < len(bounds); i += 2 {
			if int32(n) >= bounds[i] && int32(n) <= bounds[i+1] {
				return nil
			}
			ranges = append(ranges, fmt.Sprintf("[%d, %d]", bounds[i], bounds[i+1]))
		}
		return fmt.Errorf("must be in %s", strings.Join(ranges, " or "))
	}
}

func checkBool(v string) error {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "false":
		return nil
	}
	return fmt.Errorf("must be true or false")
}

func checkRatio(v string) error {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(f) {
		return fmt.Errorf("not a number")
	}
	if f < 0 || f > 1 {
		return fmt.Errorf("must be between 0 and 1")
	}
	return nil
}

func checkEnum(allowed ...string) func(string) error {
	return func(v string) error {
		if slices.Contains(allowed, v) {
			return nil
		}
		return fmt.Errorf("must be one of %s", strings.Join(allowed, ", "))
	}
}

// checkCleanupPolicy accepts delete, compact, both, or neither (an empty
// list, as Kafka's ValidList allows: records are then neither deleted by
// retention nor compacted, and kept forever).
func checkCleanupPolicy(v string) error {
	items := splitList(v)
	seen := map[string]bool{}
	for _, it := range items {
		if it != CleanupPolicyDelete && it != CleanupPolicyCompact {
			return fmt.Errorf("%q is not delete or compact", it)
		}
		if seen[it] {
			return fmt.Errorf("%q is listed twice", it)
		}
		seen[it] = true
	}
	return nil
}

var throttledRE = regexp.MustCompile(`^\s*(\*|[0-9]+\s*:\s*[0-9]+(\s*,\s*[0-9]+\s*:\s*[0-9]+)*)?\s*$`)

func checkThrottledReplicas(v string) error {
	if !throttledRE.MatchString(v) {
		return fmt.Errorf("must be empty, * or a list of partition:broker pairs")
	}
	return nil
}
