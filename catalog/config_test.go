package catalog

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/floebroker/floe/internal/testenv"
)

func TestConfigDefs(t *testing.T) {
	defs := ConfigDefs()
	if !slices.IsSortedFunc(defs, func(a, b ConfigDef) int { return strings.Compare(a.Name, b.Name) }) {
		t.Fatal("ConfigDefs is not sorted by name")
	}
	types := []string{ConfigTypeBoolean, ConfigTypeString, ConfigTypeInt, ConfigTypeLong, ConfigTypeDouble, ConfigTypeList, ConfigTypeClass}
	for _, d := range defs {
		if !slices.Contains(types, d.Type) || d.Doc == "" {
			t.Errorf("%s: type %q doc %q", d.Name, d.Type, d.Doc)
		}
		// Every default must pass its own validation (empty lists aside).
		if err := ValidateConfig(d.Name, d.Default); err != nil && d.Default != "" {
			t.Errorf("default of %s: %v", d.Name, err)
		}
		if v, ok := ConfigDefault(d.Name); !ok || v != d.Default {
			t.Errorf("ConfigDefault(%s) = %q, %v", d.Name, v, ok)
		}
	}
	for name, want := range map[string]string{
		"retention.ms": "604800000", "retention.bytes": "-1", "cleanup.policy": "delete",
		"max.message.bytes": "1048588", "message.timestamp.type": "CreateTime", "min.insync.replicas": "1",
		"compression.type": "producer", "segment.bytes": "1073741824",
	} {
		if got, _ := ConfigDefault(name); got != want {
			t.Errorf("default of %s = %q, want Kafka's %q", name, got, want)
		}
	}
	if _, ok := ConfigDefault("no.such"); ok {
		t.Error("unknown config has a default")
	}
}

func TestValidateConfig(t *testing.T) {
	tests := []struct {
		name, value string
		ok          bool
	}{
		{"retention.ms", "-1", true},
		{"retention.ms", "-2", false},
		{"retention.ms", "1.5", false},
		{"retention.bytes", "-5", true},
		{"max.message.bytes", "0", true},
		{"max.message.bytes", "3000000000", false}, // INT overflow
		{"segment.bytes", "1048575", false},
		{"cleanup.policy", "compact", true},
		{"cleanup.policy", "compact,delete", true},
		{"cleanup.policy", " delete , compact ", true},
		{"cleanup.policy", "", true}, // neither deleted nor compacted, as Kafka's ValidList allows
		{"cleanup.policy", "delete,delete", false},
		{"cleanup.policy", "archive", false},
		{"message.timestamp.type", "LogAppendTime", true},
		{"message.timestamp.type", "logappendtime", false},
		{"compression.type", "zstd", true},
		{"compression.type", "brotli", false},
		{"compression.gzip.level", "-1", true},
		{"compression.gzip.level", "0", false},
		{"compression.gzip.level", "9", true},
		{"compression.zstd.level", "-7", true},
		{"min.cleanable.dirty.ratio", "0.9", true},
		{"min.cleanable.dirty.ratio", "1.1", false},
		{"min.cleanable.dirty.ratio", "NaN", false},
		{"preallocate", "TRUE", true},
		{"preallocate", "yes", false},
		{"min.insync.replicas", "0", false},
		{"leader.replication.throttled.replicas", "*", true},
		{"leader.replication.throttled.replicas", "0:1,1:2", true},
		{"leader.replication.throttled.replicas", "0-1", false},
		{"message.downconversion.enable", "false", true},
		{"message.timestamp.difference.max.ms", "1000", true},
		{"flush.messages", "0", false},
		{"no.such.config", "1", false},
	}
	for _, tt := range tests {
		err := ValidateConfig(tt.name, tt.value)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateConfig(%s, %q) = %v, want ok=%v", tt.name, tt.value, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.name)) {
			t.Errorf("ValidateConfig(%s): error %v does not wrap ErrInvalidConfig or name the key", tt.name, err)
		}
	}
}

func TestValidateTopicName(t *testing.T) {
	for name, ok := range map[string]bool{
		"orders": true, "a.b-c_D9": true, strings.Repeat("x", 249): true,
		"": false, ".": false, "..": false, strings.Repeat("x", 250): false,
		"a b": false, "a/b": false, "ü": false, "a\x00": false,
	} {
		err := ValidateTopicName(name)
		if (err == nil) != ok || (err != nil && !errors.Is(err, ErrInvalidTopic)) {
			t.Errorf("ValidateTopicName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestApplyConfigOps(t *testing.T) {
	base := map[string]string{"retention.ms": "1"}
	tests := []struct {
		name string
		ops  []ConfigOp
		want map[string]string // nil: error
	}{
		{"set", []ConfigOp{{Key: "retention.ms", Value: "2"}}, map[string]string{"retention.ms": "2"}},
		{"delete", []ConfigOp{{Key: "retention.ms", Op: ConfigDelete}}, map[string]string{}},
		{"delete unset", []ConfigOp{{Key: "segment.ms", Op: ConfigDelete}}, map[string]string{"retention.ms": "1"}},
		{"delete unknown", []ConfigOp{{Key: "nope", Op: ConfigDelete}}, map[string]string{"retention.ms": "1"}},
		{"append to default", []ConfigOp{{Key: "cleanup.policy", Value: "compact", Op: ConfigAppend}},
			map[string]string{"retention.ms": "1", "cleanup.policy": "delete,compact"}},
		{"append present", []ConfigOp{{Key: "cleanup.policy", Value: "delete", Op: ConfigAppend}},
			map[string]string{"retention.ms": "1", "cleanup.policy": "delete"}},
		{"in order", []ConfigOp{{Key: "retention.ms", Value: "x"}, {Key: "retention.ms", Value: "3"}},
			map[string]string{"retention.ms": "3"}},
		{"subtract to empty", []ConfigOp{{Key: "cleanup.policy", Value: "delete", Op: ConfigSubtract}},
			map[string]string{"retention.ms": "1", "cleanup.policy": ""}},
		{"append to a long", []ConfigOp{{Key: "retention.ms", Value: "1", Op: ConfigAppend}}, nil},
		{"unknown key", []ConfigOp{{Key: "nope", Value: "1"}}, nil},
		{"unknown op", []ConfigOp{{Key: "retention.ms", Value: "1", Op: 9}}, nil},
		{"lag order", []ConfigOp{{Key: "min.compaction.lag.ms", Value: "5"}, {Key: "max.compaction.lag.ms", Value: "4"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ApplyConfigOps(base, tt.ops)
			if tt.want == nil {
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("err = %v, want ErrInvalidConfig", err)
				}
				return
			}
			if err != nil || !maps.Equal(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
			if base["retention.ms"] != "1" || len(base) != 1 {
				t.Fatal("ApplyConfigOps modified its input")
			}
		})
	}
}

func TestTopicAccessors(t *testing.T) {
	var def Topic
	if def.RetentionMs() != 604800000 || def.RetentionBytes() != -1 || def.MaxMessageBytes() != 1048588 ||
		def.LogAppendTime() || def.CleanupPolicy() != (CleanupPolicy{Delete: true}) || def.CompressionType() != "producer" ||
		def.TimestampAfterMaxMs() != 3600000 || def.MinCleanableDirtyRatio() != 0.5 {
		t.Fatalf("defaults wrong")
	}
	tp := Topic{Configs: map[string]string{
		"retention.ms": "5", "cleanup.policy": "compact", "message.timestamp.type": "LogAppendTime",
		"message.timestamp.difference.max.ms": "77", "message.timestamp.after.max.ms": "9",
		"max.message.bytes": "99999999999", // unvalidated garbage falls back sensibly
	}}
	if tp.RetentionMs() != 5 || tp.CleanupPolicy() != (CleanupPolicy{Compact: true}) || !tp.LogAppendTime() {
		t.Fatal("explicit configs not read")
	}
	if tp.TimestampBeforeMaxMs() != 77 || tp.TimestampAfterMaxMs() != 9 {
		t.Fatalf("timestamp bounds %d %d", tp.TimestampBeforeMaxMs(), tp.TimestampAfterMaxMs())
	}
	if tp.MaxMessageBytes() <= 0 {
		t.Fatalf("MaxMessageBytes = %d", tp.MaxMessageBytes())
	}
	if tp.Config("no.such") != "" || tp.Config("segment.ms") != "604800000" {
		t.Fatal("Config fallbacks")
	}
}

func TestNextProducerEpoch(t *testing.T) {
	tests := []struct {
		cur, given, want int16
		ok               bool
	}{
		{0, 0, 1, true},
		{3, 3, 4, true},
		{3, 5, 6, true},  // bumped locally by the client
		{4, 3, 4, true},  // retry of a lost answer
		{5, 3, 0, false}, // fenced
		{0, 32766, 0, false},
	}
	for _, tt := range tests {
		got, err := NextProducerEpoch(tt.cur, tt.given)
		if (err == nil) != tt.ok || (err == nil && got != tt.want) || (err != nil && !errors.Is(err, ErrInvalidProducerEpoch)) {
			t.Errorf("NextProducerEpoch(%d, %d) = %d, %v", tt.cur, tt.given, got, err)
		}
	}
}

func TestOptions(t *testing.T) {
	o := Options{}.WithDefaults()
	if o.Logger == nil || o.Now == nil || o.MaxConns != DefaultMaxConns || o.Validate() != nil {
		t.Fatalf("defaults: %+v", o)
	}
	bad := Options{MaxConns: -1, StatementTimeout: -1, ApplicationName: strings.Repeat("a", 64)}
	if err := bad.Validate(); err == nil {
		t.Fatal("invalid options accepted")
	}
}

// TestApplyConfigOpsLinear: APPEND and SUBTRACT match items through a
// set. A linear search per item made an op quadratic in its value's
// items, and it ran twice per alter, once inside the catalog's write
// transaction: twenty ops of each kind on 9,000 items (a list of
// 64 KiB) took 14 s of CPU, about 0.3 s now. Measured in CPU time, which
// other processes on a loaded machine do not stretch as they do the
// wall clock.
func TestApplyConfigOpsLinear(t *testing.T) {
	const key, n, rounds = "leader.replication.throttled.replicas", 9_000, 20
	items := func(broker int) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%d:%d", i, broker)
		}
		return b.String()
	}
	list, other := items(1), items(2)
	if len(list) > MaxConfigValueBytes {
		t.Fatalf("list is %d bytes, over the cap", len(list))
	}
	// Each APPEND finds every item present, each SUBTRACT none: the list
	// keeps its n items throughout, the worst case of a linear search.
	var ops []ConfigOp
	for range rounds {
		ops = append(ops, ConfigOp{Key: key, Value: list, Op: ConfigAppend}, ConfigOp{Key: key, Value: other, Op: ConfigSubtract})
	}
	var got map[string]string
	var err error
	took := testenv.CPU(t, func() { got, err = ApplyConfigOps(map[string]string{key: list}, ops) })
	if err != nil || got[key] != list {
		t.Fatalf("ApplyConfigOps: %v, list changed: %v", err, got[key] != list)
	}
	t.Logf("%d ops on %d items: %v of CPU", len(ops), n, took)
	if took > 5*time.Second {
		t.Fatalf("%d ops on %d items took %v of CPU, want under 5 s (a linear search of the list per item took 14 s)", len(ops), n, took)
	}
}

// TestConfigValueTooLong: a value over MaxConfigValueBytes is
// INVALID_CONFIG from every path, before an APPEND or SUBTRACT does any
// work on it, and the error does not quote it.
func TestConfigValueTooLong(t *testing.T) {
	const key = "follower.replication.throttled.replicas"
	var b strings.Builder
	for i := 0; b.Len() <= MaxConfigValueBytes+1; i++ {
		fmt.Fprintf(&b, "%d:%d,", i, i%7)
	}
	long := strings.TrimSuffix(b.String(), ",")
	if err := checkThrottledReplicas(long); err != nil {
		t.Fatalf("the long value is not a valid list: %v", err)
	}
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrInvalidConfig) || strings.Contains(err.Error(), long[:100]) {
			t.Errorf("%s: err = %.200v, want ErrInvalidConfig without the value", what, err)
		}
	}
	check("ValidateConfig", ValidateConfig(key, long))
	check("ValidateTopicSpec", ValidateTopicSpec(TopicSpec{Name: "t", Partitions: 1, Configs: map[string]string{key: long}}))
	for _, op := range []ConfigOpKind{ConfigSet, ConfigAppend, ConfigSubtract} {
		_, err := ApplyConfigOps(nil, []ConfigOp{{Key: key, Value: long, Op: op}})
		check(fmt.Sprintf("op %d", op), err)
	}
	// Appends that each fit but together outgrow the cap.
	half := long[:strings.LastIndexByte(long[:len(long)/2], ',')]
	_, err := ApplyConfigOps(nil, []ConfigOp{{Key: key, Value: half, Op: ConfigAppend}, {Key: key, Value: long[len(half)+1:], Op: ConfigAppend}})
	check("appends", err)
	if err := ValidateConfig(key, long[:strings.LastIndexByte(long[:MaxConfigValueBytes+1], ',')]); err != nil {
		t.Errorf("a value of at most %d bytes: %.200v", MaxConfigValueBytes, err)
	}
}
