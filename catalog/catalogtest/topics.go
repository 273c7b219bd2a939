package catalogtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

var topicTests = []namedTest{
	{"CreateAndLookup", testCreateAndLookup},
	{"CreateErrors", testCreateErrors},
	{"UnknownTopic", testUnknownTopic},
	{"UnstorableName", testUnstorableName},
	{"ConcurrentCreate", testConcurrentCreate},
	{"NameCollision", testNameCollision},
	{"ConcurrentCollision", testConcurrentCollision},
	{"Delete", testDeleteTopic},
	{"DeleteByID", testDeleteTopicByID},
	{"CreatePartitions", testCreatePartitions},
	{"AlterConfigs", testAlterConfigs},
	{"ReplaceConfigs", testReplaceConfigs},
	{"ConfigsSince", testConfigsSince},
}

func testCreateAndLookup(t *testing.T, c catalog.Catalog) {
	before := time.Now().Add(-time.Minute)
	configs := map[string]string{"retention.ms": "1000", "cleanup.policy": "compact,delete"}
	a := createTopic(t, c, "orders", 3, configs)
	b := createTopic(t, c, "audit.log-v1_x", 1, nil)
	if a.ID.IsZero() || a.ID == b.ID {
		t.Fatalf("topic ids %x and %x must be distinct and non-zero", a.ID, b.ID)
	}
	if a.Name != "orders" || a.Partitions != 3 || !maps.Equal(a.Configs, configs) {
		t.Fatalf("created topic %+v", a)
	}
	if a.Created.Before(before) || a.Created.After(time.Now().Add(time.Minute)) {
		t.Fatalf("created time %v is not now", a.Created)
	}
	if b.Configs == nil || len(b.Configs) != 0 {
		t.Fatalf("topic without configs has Configs %v, want empty map", b.Configs)
	}
	got, err := c.Topic(ctx(t), "orders")
	noErr(t, err, "Topic")
	if got.ID != a.ID || got.Partitions != 3 || !maps.Equal(got.Configs, configs) || !got.Created.Equal(a.Created) {
		t.Fatalf("Topic = %+v, want %+v", got, a)
	}
	got, err = c.TopicByID(ctx(t), b.ID)
	noErr(t, err, "TopicByID")
	if got.Name != b.Name {
		t.Fatalf("TopicByID = %+v", got)
	}
	list, err := c.ListTopics(ctx(t))
	noErr(t, err, "ListTopics")
	if len(list) != 2 || list[0].Name != "audit.log-v1_x" || list[1].Name != "orders" {
		t.Fatalf("ListTopics = %+v, want both, by name", list)
	}
	for p := range int32(3) {
		if o := offsets(t, c, tpOf(a, p)); o != (catalog.PartitionOffsets{}) {
			t.Fatalf("new partition %d offsets %+v", p, o)
		}
	}
	_, err = c.Offsets(ctx(t), tpOf(a, 3))
	wantErr(t, err, catalog.ErrUnknownTopic, "Offsets past the partition count")
}

func testCreateErrors(t *testing.T, c catalog.Catalog) {
	createTopic(t, c, "taken", 1, nil)
	tests := []struct {
		name string
		spec catalog.TopicSpec
		want error
	}{
		{"empty name", catalog.TopicSpec{Name: "", Partitions: 1}, catalog.ErrInvalidTopic},
		{"dot", catalog.TopicSpec{Name: ".", Partitions: 1}, catalog.ErrInvalidTopic},
		{"dotdot", catalog.TopicSpec{Name: "..", Partitions: 1}, catalog.ErrInvalidTopic},
		{"space", catalog.TopicSpec{Name: "a b", Partitions: 1}, catalog.ErrInvalidTopic},
		{"slash", catalog.TopicSpec{Name: "a/b", Partitions: 1}, catalog.ErrInvalidTopic},
		{"too long", catalog.TopicSpec{Name: strings.Repeat("x", 250), Partitions: 1}, catalog.ErrInvalidTopic},
		{"zero partitions", catalog.TopicSpec{Name: "z", Partitions: 0}, catalog.ErrInvalidPartitions},
		{"negative partitions", catalog.TopicSpec{Name: "z", Partitions: -1}, catalog.ErrInvalidPartitions},
		{"unknown config", catalog.TopicSpec{Name: "z", Partitions: 1, Configs: map[string]string{"no.such.config": "1"}}, catalog.ErrInvalidConfig},
		{"bad long", catalog.TopicSpec{Name: "z", Partitions: 1, Configs: map[string]string{"retention.ms": "soon"}}, catalog.ErrInvalidConfig},
		{"below minimum", catalog.TopicSpec{Name: "z", Partitions: 1, Configs: map[string]string{"retention.ms": "-2"}}, catalog.ErrInvalidConfig},
		{"bad enum", catalog.TopicSpec{Name: "z", Partitions: 1, Configs: map[string]string{"message.timestamp.type": "Now"}}, catalog.ErrInvalidConfig},
		{"bad list", catalog.TopicSpec{Name: "z", Partitions: 1, Configs: map[string]string{"cleanup.policy": "delete,shred"}}, catalog.ErrInvalidConfig},
		{"lag order", catalog.TopicSpec{Name: "z", Partitions: 1, Configs: map[string]string{"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"}}, catalog.ErrInvalidConfig},
		{"exists", catalog.TopicSpec{Name: "taken", Partitions: 1}, catalog.ErrTopicExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.CreateTopic(ctx(t), tt.spec)
			wantErr(t, err, tt.want, "CreateTopic")
		})
	}
	list, err := c.ListTopics(ctx(t))
	noErr(t, err, "ListTopics")
	if len(list) != 1 {
		t.Fatalf("failed creates left topics behind: %+v", list)
	}
}

func testUnknownTopic(t *testing.T, c catalog.Catalog) {
	_, err := c.Topic(ctx(t), "nope")
	wantErr(t, err, catalog.ErrUnknownTopic, "Topic")
	_, err = c.TopicByID(ctx(t), catalog.TopicID{1, 2, 3})
	wantErr(t, err, catalog.ErrUnknownTopic, "TopicByID")
	wantErr(t, deleteTopic(t, c, "nope"), catalog.ErrUnknownTopic, "DeleteTopic")
	wantErr(t, c.CreatePartitions(ctx(t), "nope", 4), catalog.ErrUnknownTopic, "CreatePartitions")
	_, err = c.AlterTopicConfigs(ctx(t), "nope", []catalog.ConfigOp{{Key: "retention.ms", Value: "1"}})
	wantErr(t, err, catalog.ErrUnknownTopic, "AlterTopicConfigs")
	_, err = c.ReplaceTopicConfigs(ctx(t), "nope", nil)
	wantErr(t, err, catalog.ErrUnknownTopic, "ReplaceTopicConfigs")
	tp := catalog.TopicPartition{TopicID: catalog.TopicID{9}, Partition: 0}
	_, err = c.Offsets(ctx(t), tp)
	wantErr(t, err, catalog.ErrUnknownTopic, "Offsets")
	_, err = c.Batches(ctx(t), tp, 0, 100)
	wantErr(t, err, catalog.ErrUnknownTopic, "Batches")
	_, _, _, err = c.BatchForTimestamp(ctx(t), tp, 0, 0)
	wantErr(t, err, catalog.ErrUnknownTopic, "BatchForTimestamp")
	_, _, _, err = c.MaxTimestampBatch(ctx(t), tp, 0)
	wantErr(t, err, catalog.ErrUnknownTopic, "MaxTimestampBatch")
	_, err = c.DeleteRecords(ctx(t), tp, 0)
	wantErr(t, err, catalog.ErrUnknownTopic, "DeleteRecords")
}

// testUnstorableName looks up names no topic can have but a client can
// send (Kafka strings are arbitrary bytes): a NUL, invalid UTF-8. They are
// unknown topics like any other, not storage errors (PostgreSQL's text
// cannot hold them, so a query with one fails).
func testUnstorableName(t *testing.T, c catalog.Catalog) {
	createTopic(t, c, "t", 1, nil)
	for _, name := range []string{"t\x00", "\xff\xfe", "t\x00\xff"} {
		_, err := c.Topic(ctx(t), name)
		wantErr(t, err, catalog.ErrUnknownTopic, fmt.Sprintf("Topic(%q)", name))
		wantErr(t, deleteTopic(t, c, name), catalog.ErrUnknownTopic, fmt.Sprintf("DeleteTopic(%q)", name))
		wantErr(t, c.CreatePartitions(ctx(t), name, 4), catalog.ErrUnknownTopic, fmt.Sprintf("CreatePartitions(%q)", name))
		_, err = c.AlterTopicConfigs(ctx(t), name, []catalog.ConfigOp{{Key: "retention.ms", Value: "1"}})
		wantErr(t, err, catalog.ErrUnknownTopic, fmt.Sprintf("AlterTopicConfigs(%q)", name))
		_, err = c.ReplaceTopicConfigs(ctx(t), name, nil)
		wantErr(t, err, catalog.ErrUnknownTopic, fmt.Sprintf("ReplaceTopicConfigs(%q)", name))
		_, err = c.CreateTopic(ctx(t), catalog.TopicSpec{Name: name, Partitions: 1})
		wantErr(t, err, catalog.ErrInvalidTopic, fmt.Sprintf("CreateTopic(%q)", name))
	}
}

func testConcurrentCreate(t *testing.T, c catalog.Catalog) {
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.CreateTopic(ctx(t), catalog.TopicSpec{Name: "race", Partitions: 4})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, catalog.ErrTopicExists):
			t.Fatalf("concurrent CreateTopic: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent creates succeeded, want 1", ok)
	}
}

// testNameCollision creates names that equal existing ones with '.' and
// '_' swapped: Kafka refuses them (INVALID_TOPIC_EXCEPTION), since their
// metrics would share names.
func testNameCollision(t *testing.T, c catalog.Catalog) {
	createTopic(t, c, "orders.v1", 1, nil)
	createTopic(t, c, "a_b.c", 1, nil)
	for _, name := range []string{"orders_v1", "a.b.c", "a_b_c", "a.b_c"} {
		_, err := c.CreateTopic(ctx(t), catalog.TopicSpec{Name: name, Partitions: 1})
		wantErr(t, err, catalog.ErrInvalidTopic, fmt.Sprintf("CreateTopic(%q)", name))
		if err != nil && !strings.Contains(err.Error(), "collides with existing topic") {
			t.Errorf("CreateTopic(%q): %v, want it to name the collision", name, err)
		}
	}
	// The exact name is taken rather than colliding; other separators and
	// cases are different names.
	_, err := c.CreateTopic(ctx(t), catalog.TopicSpec{Name: "orders.v1", Partitions: 1})
	wantErr(t, err, catalog.ErrTopicExists, "CreateTopic(orders.v1) again")
	for _, name := range []string{"orders-v1", "Orders.v1", "orders.v1.x", "ab.c"} {
		createTopic(t, c, name, 1, nil)
	}
	// Once the topic is deleted its name no longer collides.
	noErr(t, deleteTopic(t, c, "orders.v1"), "DeleteTopic(orders.v1)")
	createTopic(t, c, "orders_v1", 1, nil)
	list, err := c.ListTopics(ctx(t))
	noErr(t, err, "ListTopics")
	if len(list) != 6 {
		t.Fatalf("%d topics, want 6: %+v", len(list), list)
	}
}

// testConcurrentCollision creates colliding names at once: exactly one
// create succeeds, however the backend orders them.
func testConcurrentCollision(t *testing.T, c catalog.Catalog) {
	names := []string{"x.y.z", "x_y.z", "x.y_z", "x_y_z", "x.y.z", "x_y_z"}
	if created := CreateAtOnce(t, c, names); created != 1 {
		t.Fatalf("%d of %d colliding creates succeeded, want 1", created, len(names))
	}
	list, err := c.ListTopics(ctx(t))
	noErr(t, err, "ListTopics")
	if len(list) != 1 {
		t.Fatalf("%d topics exist after colliding creates, want 1", len(list))
	}
}

// CreateAtOnce creates topics of the given names concurrently and returns
// how many creates succeeded; each other create must fail as taken or as
// colliding.
func CreateAtOnce(t *testing.T, c catalog.Catalog, names []string) int {
	t.Helper()
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			_, errs[i] = c.CreateTopic(ctx(t), catalog.TopicSpec{Name: name, Partitions: 2})
		})
	}
	wg.Wait()
	created := 0
	for i, err := range errs {
		switch {
		case err == nil:
			created++
		case !errors.Is(err, catalog.ErrInvalidTopic) && !errors.Is(err, catalog.ErrTopicExists):
			t.Fatalf("concurrent CreateTopic(%q): %v", names[i], err)
		}
	}
	return created
}

func testDeleteTopic(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "doomed", 2, nil)
	other := createTopic(t, c, "kept", 1, nil)
	commit(t, c, segment(batch(tpOf(topic, 0), 5, 1), batch(tpOf(other, 0), 2, 1)))
	commitOffsets(t, c, "g", []catalog.GroupOffset{
		{Topic: "doomed", Partition: 0, Offset: 5, LeaderEpoch: -1},
		{Topic: "doomed", Partition: 1, Offset: 1, LeaderEpoch: -1},
		{Topic: "kept", Partition: 0, Offset: 2, LeaderEpoch: -1},
	})
	noErr(t, deleteTopic(t, c, "doomed"), "DeleteTopic")
	_, err := c.Topic(ctx(t), "doomed")
	wantErr(t, err, catalog.ErrUnknownTopic, "Topic after delete")
	// The topic's committed offsets go with it (as Kafka deletes them), so
	// a group does not resume a topic re-created under the name at offsets
	// it reached in the old one.
	left, err := c.FetchOffsets(ctx(t), "g", nil)
	noErr(t, err, "FetchOffsets after delete")
	if len(left) != 1 || left[0].Topic != "kept" || left[0].Offset != 2 {
		t.Fatalf("offsets after delete = %+v, want only kept's", left)
	}
	_, err = c.Offsets(ctx(t), tpOf(topic, 0))
	wantErr(t, err, catalog.ErrUnknownTopic, "Offsets after delete")

	// A commit racing the delete: the deleted topic's batches fail, the
	// rest are stored.
	res := commit(t, c, segment(batch(tpOf(topic, 1), 1, 1), batch(tpOf(other, 0), 1, 1)))
	if !errors.Is(res.Results[0].Err, catalog.ErrUnknownTopic) || res.Results[1].Err != nil || res.Results[1].BaseOffset != 2 {
		t.Fatalf("commit after delete: %s %s", describe(res.Results[0]), describe(res.Results[1]))
	}
	rows, _, err := c.CommitsSince(ctx(t), 0, 100)
	noErr(t, err, "CommitsSince")
	for _, r := range rows {
		if r.TopicID == topic.ID {
			t.Fatalf("deleted topic's row still listed: %+v", r)
		}
	}

	again := createTopic(t, c, "doomed", 1, nil)
	if again.ID == topic.ID {
		t.Fatal("re-created topic reuses the deleted topic's id")
	}
	if o := offsets(t, c, tpOf(again, 0)); o.HighWatermark != 0 {
		t.Fatalf("re-created topic starts at %+v", o)
	}
}

func testCreatePartitions(t *testing.T, c catalog.Catalog) {
	topic := createTopic(t, c, "grow", 2, nil)
	commit(t, c, segment(batch(tpOf(topic, 1), 3, 1)))
	noErr(t, c.CreatePartitions(ctx(t), "grow", 5), "CreatePartitions")
	got, err := c.Topic(ctx(t), "grow")
	noErr(t, err, "Topic")
	if got.Partitions != 5 {
		t.Fatalf("partitions = %d, want 5", got.Partitions)
	}
	if o := offsets(t, c, tpOf(topic, 4)); o.HighWatermark != 0 {
		t.Fatalf("new partition offsets %+v", o)
	}
	if o := offsets(t, c, tpOf(topic, 1)); o.HighWatermark != 3 {
		t.Fatalf("old partition offsets %+v", o)
	}
	res := commit(t, c, segment(batch(tpOf(topic, 4), 2, 1)))
	if res.Results[0].Err != nil || res.Results[0].BaseOffset != 0 {
		t.Fatalf("commit to new partition: %s", describe(res.Results[0]))
	}
	wantErr(t, c.CreatePartitions(ctx(t), "grow", 5), catalog.ErrInvalidPartitions, "CreatePartitions same count")
	wantErr(t, c.CreatePartitions(ctx(t), "grow", 3), catalog.ErrInvalidPartitions, "CreatePartitions shrink")
	wantErr(t, c.CreatePartitions(ctx(t), "grow", 0), catalog.ErrInvalidPartitions, "CreatePartitions zero")
}

func testAlterConfigs(t *testing.T, c catalog.Catalog) {
	createTopic(t, c, "cfg", 1, map[string]string{"retention.ms": "1000", "max.message.bytes": "2048"})
	got, err := c.AlterTopicConfigs(ctx(t), "cfg", []catalog.ConfigOp{
		{Key: "retention.ms", Value: "5000", Op: catalog.ConfigSet},
		{Key: "max.message.bytes", Op: catalog.ConfigDelete},
		{Key: "segment.ms", Op: catalog.ConfigDelete}, // not set: no-op
		{Key: "cleanup.policy", Value: "compact", Op: catalog.ConfigAppend},
	})
	noErr(t, err, "AlterTopicConfigs")
	want := map[string]string{"retention.ms": "5000", "cleanup.policy": "delete,compact"}
	if !maps.Equal(got.Configs, want) {
		t.Fatalf("configs %v, want %v", got.Configs, want)
	}
	if got.RetentionMs() != 5000 || got.MaxMessageBytes() != 1048588 || !got.CleanupPolicy().Compact {
		t.Fatalf("typed accessors: retention %d max %d policy %+v", got.RetentionMs(), got.MaxMessageBytes(), got.CleanupPolicy())
	}
	got, err = c.AlterTopicConfigs(ctx(t), "cfg", []catalog.ConfigOp{{Key: "cleanup.policy", Value: "delete", Op: catalog.ConfigSubtract}})
	noErr(t, err, "AlterTopicConfigs subtract")
	if got.Configs["cleanup.policy"] != "compact" {
		t.Fatalf("after subtract: %v", got.Configs)
	}

	bad := [][]catalog.ConfigOp{
		{{Key: "retention.ms", Value: "x"}},
		{{Key: "no.such", Value: "1"}},
		{{Key: "retention.ms", Value: "1"}, {Key: "retention.bytes", Value: "?"}}, // all or nothing
		{{Key: "retention.ms", Value: "1", Op: catalog.ConfigAppend}},             // not a list
	}
	for i, ops := range bad {
		_, err := c.AlterTopicConfigs(ctx(t), "cfg", ops)
		wantErr(t, err, catalog.ErrInvalidConfig, "bad ops "+string(rune('0'+i)))
	}
	after, err := c.Topic(ctx(t), "cfg")
	noErr(t, err, "Topic")
	if !maps.Equal(after.Configs, got.Configs) {
		t.Fatalf("failed alters changed configs: %v, want %v", after.Configs, got.Configs)
	}

	// Subtracting the last policy leaves an empty list, stored as set:
	// neither deleted nor compacted, as Kafka allows.
	got, err = c.AlterTopicConfigs(ctx(t), "cfg", []catalog.ConfigOp{{Key: "cleanup.policy", Value: "compact", Op: catalog.ConfigSubtract}})
	noErr(t, err, "subtract the last policy")
	after, err = c.Topic(ctx(t), "cfg")
	noErr(t, err, "Topic")
	if v, set := after.Configs["cleanup.policy"]; !set || v != "" || after.CleanupPolicy() != (catalog.CleanupPolicy{}) {
		t.Fatalf("after subtracting the last policy: %q (set %v), policy %+v", v, set, after.CleanupPolicy())
	}
}

func testReplaceConfigs(t *testing.T, c catalog.Catalog) {
	createTopic(t, c, "cfg", 1, map[string]string{"retention.ms": "1000"})
	repl := map[string]string{"message.timestamp.type": "LogAppendTime"}
	got, err := c.ReplaceTopicConfigs(ctx(t), "cfg", repl)
	noErr(t, err, "ReplaceTopicConfigs")
	if !maps.Equal(got.Configs, repl) || !got.LogAppendTime() || got.RetentionMs() != 604800000 {
		t.Fatalf("configs %v", got.Configs)
	}
	_, err = c.ReplaceTopicConfigs(ctx(t), "cfg", map[string]string{"retention.ms": "-5"})
	wantErr(t, err, catalog.ErrInvalidConfig, "ReplaceTopicConfigs invalid")
	got, err = c.ReplaceTopicConfigs(ctx(t), "cfg", nil)
	noErr(t, err, "ReplaceTopicConfigs empty")
	if len(got.Configs) != 0 {
		t.Fatalf("configs after clearing: %v", got.Configs)
	}
}

// testConfigsSince: every config change is numbered, above every number
// before it; TopicConfigsSince returns the topics changed after a number,
// as they are now, and WatchTopicConfigs announces the change. Agents
// follow these to apply a change made through another agent at once.
func testConfigsSince(t *testing.T, c catalog.Catalog) {
	a := createTopic(t, c, "cfg-a", 1, map[string]string{"retention.ms": "1000"})
	createTopic(t, c, "cfg-b", 1, nil)
	if a.ConfigVersion != 0 {
		t.Fatalf("new topic has ConfigVersion %d", a.ConfigVersion)
	}
	got, latest, err := c.TopicConfigsSince(ctx(t), 0)
	noErr(t, err, "TopicConfigsSince before any change")
	if len(got) != 0 || latest != 0 {
		t.Fatalf("before any change: %d topics, latest %d", len(got), latest)
	}
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	ch, err := c.WatchTopicConfigs(wctx)
	noErr(t, err, "WatchTopicConfigs")
	// Let a backend with a separate listener connection get ready; changes
	// before that are caught by the number published on (re)connect.
	time.Sleep(100 * time.Millisecond)

	a, err = c.AlterTopicConfigs(ctx(t), "cfg-a", []catalog.ConfigOp{{Key: "max.message.bytes", Value: "100"}})
	noErr(t, err, "AlterTopicConfigs")
	if a.ConfigVersion <= 0 {
		t.Fatalf("altered topic has ConfigVersion %d", a.ConfigVersion)
	}
	_, err = c.AlterTopicConfigs(ctx(t), "cfg-b", []catalog.ConfigOp{{Key: "retention.ms", Value: "x"}})
	wantErr(t, err, catalog.ErrInvalidConfig, "invalid alter")
	b, err := c.ReplaceTopicConfigs(ctx(t), "cfg-b", map[string]string{"message.timestamp.type": "LogAppendTime"})
	noErr(t, err, "ReplaceTopicConfigs")
	if b.ConfigVersion <= a.ConfigVersion {
		t.Fatalf("later change numbered %d, not above %d", b.ConfigVersion, a.ConfigVersion)
	}
	if read, err := c.Topic(ctx(t), "cfg-b"); err != nil || read.ConfigVersion != b.ConfigVersion {
		t.Fatalf("Topic after the change: ConfigVersion %d (err %v), want %d", read.ConfigVersion, err, b.ConfigVersion)
	}

	got, latest, err = c.TopicConfigsSince(ctx(t), 0)
	noErr(t, err, "TopicConfigsSince(0)")
	byName := map[string]catalog.Topic{}
	for _, tp := range got {
		byName[tp.Name] = tp
	}
	if len(got) != 2 || byName["cfg-a"].MaxMessageBytes() != 100 || !byName["cfg-b"].LogAppendTime() || latest != b.ConfigVersion {
		t.Fatalf("TopicConfigsSince(0) = %+v, latest %d; want both changed topics, latest %d", got, latest, b.ConfigVersion)
	}
	got, latest, err = c.TopicConfigsSince(ctx(t), a.ConfigVersion)
	noErr(t, err, "TopicConfigsSince(a)")
	if len(got) != 1 || got[0].ID != b.ID || got[0].ConfigVersion != b.ConfigVersion || latest != b.ConfigVersion {
		t.Fatalf("TopicConfigsSince(%d) = %+v, latest %d; want cfg-b only", a.ConfigVersion, got, latest)
	}
	got, latest, err = c.TopicConfigsSince(ctx(t), latest)
	noErr(t, err, "TopicConfigsSince(latest)")
	if len(got) != 0 || latest != b.ConfigVersion {
		t.Fatalf("TopicConfigsSince(latest) = %+v, latest %d", got, latest)
	}

	deadline := time.After(10 * time.Second)
	for last := int64(0); last < b.ConfigVersion; {
		select {
		case n, ok := <-ch:
			if !ok {
				t.Fatal("watch channel closed early")
			}
			last = n
		case <-deadline:
			t.Fatalf("change %d not announced (last %d)", b.ConfigVersion, last)
		}
	}

	// A deleted topic's change is not returned; the next change is still
	// numbered above it.
	noErr(t, deleteTopic(t, c, "cfg-b"), "DeleteTopic")
	got, _, err = c.TopicConfigsSince(ctx(t), a.ConfigVersion)
	noErr(t, err, "TopicConfigsSince after delete")
	if len(got) != 0 {
		t.Fatalf("deleted topic returned: %+v", got)
	}
	a, err = c.AlterTopicConfigs(ctx(t), "cfg-a", []catalog.ConfigOp{{Key: "max.message.bytes", Op: catalog.ConfigDelete}})
	noErr(t, err, "AlterTopicConfigs again")
	if a.ConfigVersion <= b.ConfigVersion {
		t.Fatalf("change after the delete numbered %d, not above %d", a.ConfigVersion, b.ConfigVersion)
	}
}

// testDeleteTopicByID: a delete that names the topic's id removes that
// topic only. A caller that looked the name up by id and deletes by name
// must not delete a topic created since under the name.
func testDeleteTopicByID(t *testing.T, c catalog.Catalog) {
	old := createTopic(t, c, "again", 1, nil)
	got, err := c.DeleteTopic(ctx(t), "again", old.ID)
	noErr(t, err, "DeleteTopic by id")
	if got != old.ID {
		t.Fatalf("DeleteTopic returned id %x, want %x", got, old.ID)
	}
	cur := createTopic(t, c, "again", 1, nil)
	_, err = c.DeleteTopic(ctx(t), "again", old.ID)
	wantErr(t, err, catalog.ErrUnknownTopic, "DeleteTopic with the deleted topic's id")
	if still, err := c.Topic(ctx(t), "again"); err != nil || still.ID != cur.ID {
		t.Fatalf("the topic created again is %+v, %v after a delete by the old id; want it kept", still, err)
	}
	got, err = c.DeleteTopic(ctx(t), "again", catalog.TopicID{})
	noErr(t, err, "DeleteTopic by name")
	if got != cur.ID {
		t.Fatalf("DeleteTopic by name returned id %x, want %x", got, cur.ID)
	}
}

// deleteTopic deletes the topic named name, whatever its id.
func deleteTopic(t *testing.T, c catalog.Catalog, name string) error {
	_, err := c.DeleteTopic(ctx(t), name, catalog.TopicID{})
	return err
}
