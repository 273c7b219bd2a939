package agent_test

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/tests/floetest"
)

// Malformed AlterConfigs and IncrementalAlterConfigs resources are refused
// whole, as Kafka 4.1's broker refuses them before forwarding anything
// (ConfigAdminManager.preprocess), validate-only or not; the request's
// well-formed resources are applied.

// configAnswer is the answer a test expects for one resource.
type configAnswer struct {
	name string
	err  *kerr.Error // nil: success
	msg  string      // "": not checked
}

func checkConfigAnswers(t *testing.T, what string, names []string, codes []int16, msgs []*string, want []configAnswer) {
	t.Helper()
	if len(names) != len(want) {
		t.Fatalf("%s: answers for %v, want %d", what, names, len(want))
	}
	for i, w := range want {
		msg := ""
		if msgs[i] != nil {
			msg = *msgs[i]
		}
		wantCode(t, fmt.Sprintf("%s: answer %d (%s)", what, i, w.name), codes[i], w.err)
		if names[i] != w.name || (w.msg != "" && msg != w.msg) {
			t.Fatalf("%s: answer %d is %s %q, want %s %q", what, i, names[i], msg, w.name, w.msg)
		}
	}
}

// alterAnswers is an alter response's resource names, codes and messages.
type alterAnswers struct {
	names []string
	codes []int16
	msgs  []*string
}

// answersOf collects the answers of an AlterConfigs or
// IncrementalAlterConfigs response.
func answersOf(resp kmsg.Response) alterAnswers {
	var got alterAnswers
	add := func(name string, code int16, msg *string) {
		got.names, got.codes, got.msgs = append(got.names, name), append(got.codes, code), append(got.msgs, msg)
	}
	switch r := resp.(type) {
	case *kmsg.AlterConfigsResponse:
		for _, rr := range r.Resources {
			add(rr.ResourceName, rr.ErrorCode, rr.ErrorMessage)
		}
	case *kmsg.IncrementalAlterConfigsResponse:
		for _, rr := range r.Resources {
			add(rr.ResourceName, rr.ErrorCode, rr.ErrorMessage)
		}
	}
	return got
}

// checkAlterOutcome checks an alter request's answers, that the refused
// topics kept their configs (before) and that changed got retention.ms
// 2000 unless the request was validate-only.
func checkAlterOutcome(t *testing.T, a *floetest.Agent, what string, got alterAnswers, want []configAnswer, before map[string]string, refused []string, changed string, validateOnly bool) {
	t.Helper()
	checkConfigAnswers(t, what, got.names, got.codes, got.msgs, want)
	for _, n := range refused {
		wantTopicConfigs(t, a, what, n, before)
	}
	after := before
	if !validateOnly {
		after = map[string]string{"retention.ms": "2000"}
	}
	wantTopicConfigs(t, a, what, changed, after)
}

func wantTopicConfigs(t *testing.T, a *floetest.Agent, what, topic string, want map[string]string) {
	t.Helper()
	tp, err := a.Catalog.Topic(ctxT(t), topic)
	if err != nil {
		t.Fatalf("%s: topic %s: %v", what, topic, err)
	}
	if !maps.Equal(tp.Configs, want) {
		t.Fatalf("%s: %s configs %v, want %v", what, topic, tp.Configs, want)
	}
}

func TestIncrementalAlterConfigsMalformedResources(t *testing.T) {
	a := startBadInputAgent(t, false)
	before := map[string]string{"retention.ms": "1000"}
	for _, n := range []string{"ic1", "ic2", "ic3", "ic4"} {
		createTopic(t, a, n, 1, map[string]*string{"retention.ms": kmsg.StringPtr("1000")})
	}
	c := floetest.Dial(t, a.Addr)
	defer c.Close()

	type op struct {
		name  string
		op    kmsg.IncrementalAlterConfigOp
		value *string
	}
	set := func(name, v string) op { return op{name, kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr(v)} }
	resource := func(typ kmsg.ConfigResourceType, name string, ops ...op) kmsg.IncrementalAlterConfigsRequestResource {
		rr := kmsg.NewIncrementalAlterConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = typ, name
		for _, o := range ops {
			rc := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
			rc.Name, rc.Op, rc.Value = o.name, o.op, o.value
			rr.Configs = append(rr.Configs, rc)
		}
		return rr
	}
	topic := kmsg.ConfigResourceTypeTopic
	resources := []kmsg.IncrementalAlterConfigsRequestResource{
		resource(topic, "ic1", set("retention.ms", "2000")),
		resource(topic, "ic2", set("retention.ms", "2000"), op{"retention.ms", kmsg.IncrementalAlterConfigOpDelete, nil}),
		resource(topic, "ic3", op{"retention.ms", kmsg.IncrementalAlterConfigOpSet, nil},
			op{"cleanup.policy", kmsg.IncrementalAlterConfigOpAppend, nil},
			op{"segment.ms", kmsg.IncrementalAlterConfigOpDelete, nil}),
		// A DELETE needs no value, and of a key not set, even an
		// unknown one, changes nothing: Kafka accepts both.
		resource(topic, "ic4", set("retention.ms", "2000"),
			op{"segment.ms", kmsg.IncrementalAlterConfigOpDelete, nil},
			op{"no.such.config", kmsg.IncrementalAlterConfigOpDelete, kmsg.StringPtr("x")}),
		resource(topic, "ic1", set("segment.ms", "60000")),
		// The shape checks come before the resource type's.
		resource(kmsg.ConfigResourceTypeBroker, "0", set("a", "1"), set("a", "2")),
		resource(topic, "ic1", set("retention.ms", "3000")),
	}
	repeated := "Each resource must appear at most once."
	want := []configAnswer{
		{"ic1", kerr.InvalidRequest, repeated},
		{"ic2", kerr.InvalidRequest, "Error due to duplicate config keys"},
		{"ic3", kerr.InvalidRequest, "Null value not supported for : retention.ms, cleanup.policy"},
		{"ic4", nil, ""},
		{"ic1", kerr.InvalidRequest, repeated},
		{"0", kerr.InvalidRequest, "Error due to duplicate config keys"},
		{"ic1", kerr.InvalidRequest, repeated},
	}
	for _, validateOnly := range []bool{true, false} {
		what := fmt.Sprintf("validate only %v", validateOnly)
		req := kmsg.NewPtrIncrementalAlterConfigsRequest()
		req.Version = 1
		req.ValidateOnly = validateOnly
		req.Resources = resources
		resp, err := c.Request(req)
		if err != nil {
			t.Fatal(err)
		}
		checkAlterOutcome(t, a, what, answersOf(resp), want, before, []string{"ic1", "ic2", "ic3"}, "ic4", validateOnly)
	}
}

func TestAlterConfigsMalformedResources(t *testing.T) {
	a := startBadInputAgent(t, false)
	before := map[string]string{"retention.ms": "1000"}
	for _, n := range []string{"lc1", "lc2", "lc3", "lc4"} {
		createTopic(t, a, n, 1, map[string]*string{"retention.ms": kmsg.StringPtr("1000")})
	}
	c := floetest.Dial(t, a.Addr)
	defer c.Close()

	type kv struct {
		name  string
		value *string
	}
	resource := func(name string, configs ...kv) kmsg.AlterConfigsRequestResource {
		rr := kmsg.NewAlterConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeTopic, name
		for _, e := range configs {
			rc := kmsg.NewAlterConfigsRequestResourceConfig()
			rc.Name, rc.Value = e.name, e.value
			rr.Configs = append(rr.Configs, rc)
		}
		return rr
	}
	v := kmsg.StringPtr
	resources := []kmsg.AlterConfigsRequestResource{
		resource("lc1", kv{"retention.ms", v("2000")}),
		resource("lc2", kv{"retention.ms", v("2000")}, kv{"retention.ms", v("3000")}),
		// A null is refused, not read as the key left out.
		resource("lc3", kv{"segment.ms", v("60000")}, kv{"retention.ms", nil}, kv{"cleanup.policy", nil}),
		resource("lc4", kv{"retention.ms", v("2000")}),
		resource("lc1", kv{"segment.ms", v("60000")}),
	}
	repeated := "Each resource must appear at most once."
	want := []configAnswer{
		{"lc1", kerr.InvalidRequest, repeated},
		{"lc2", kerr.InvalidRequest, "Error due to duplicate config keys"},
		{"lc3", kerr.InvalidRequest, "Null value not supported for : retention.ms, cleanup.policy"},
		{"lc4", nil, ""},
		{"lc1", kerr.InvalidRequest, repeated},
	}
	for _, validateOnly := range []bool{true, false} {
		for _, version := range []int16{0, 2} {
			what := fmt.Sprintf("v%d validate only %v", version, validateOnly)
			req := kmsg.NewPtrAlterConfigsRequest()
			req.Version = version
			req.ValidateOnly = validateOnly
			req.Resources = resources
			resp, err := c.Request(req)
			if err != nil {
				t.Fatal(err)
			}
			checkAlterOutcome(t, a, what, answersOf(resp), want, before, []string{"lc1", "lc2", "lc3"}, "lc4", validateOnly)
		}
	}
}

// TestConfigsTopicNames: a topic resource name no topic can have is
// INVALID_TOPIC_EXCEPTION in DescribeConfigs and the alters, and the
// empty name (Kafka's default topic resource) INVALID_REQUEST in the
// alters, as Kafka answers them; a valid unknown name stays
// UNKNOWN_TOPIC_OR_PARTITION.
func TestConfigsTopicNames(t *testing.T) {
	a := startBadInputAgent(t, false)
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	names := []string{"bad name!", "", "fine-but-unknown"}

	d := kmsg.NewPtrDescribeConfigsRequest()
	d.Version = 4
	for _, n := range names {
		r := kmsg.NewDescribeConfigsRequestResource()
		r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, n
		d.Resources = append(d.Resources, r)
	}
	resp, err := c.Request(d)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []*kerr.Error{kerr.InvalidTopicException, kerr.InvalidTopicException, kerr.UnknownTopicOrPartition} {
		wantCode(t, fmt.Sprintf("describe %q", names[i]), resp.(*kmsg.DescribeConfigsResponse).Resources[i].ErrorCode, want)
	}

	in := kmsg.NewPtrIncrementalAlterConfigsRequest()
	in.Version = 1
	for _, n := range names {
		r := kmsg.NewIncrementalAlterConfigsRequestResource()
		r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, n
		r.Configs = []kmsg.IncrementalAlterConfigsRequestResourceConfig{{Name: "retention.ms", Value: kmsg.StringPtr("1000")}}
		in.Resources = append(in.Resources, r)
	}
	iresp, err := c.Request(in)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []*kerr.Error{kerr.InvalidTopicException, kerr.InvalidRequest, kerr.UnknownTopicOrPartition} {
		wantCode(t, fmt.Sprintf("alter %q", names[i]), iresp.(*kmsg.IncrementalAlterConfigsResponse).Resources[i].ErrorCode, want)
	}
}

// TestAlterConfigsUnknownTopicBadValue: a value that is wrong in itself is
// INVALID_CONFIG whether or not the topic exists, as Kafka's controller
// validates before it looks the topic up; a valid change to a missing
// topic is UNKNOWN_TOPIC_OR_PARTITION.
func TestAlterConfigsUnknownTopicBadValue(t *testing.T) {
	a := startBadInputAgent(t, false)
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	for _, tc := range []struct {
		name, key, value string
		op               kmsg.IncrementalAlterConfigOp
		want             *kerr.Error
	}{
		{"bad value", "retention.ms", "abc", kmsg.IncrementalAlterConfigOpSet, kerr.InvalidConfig},
		{"unknown key", "no.such.config", "1", kmsg.IncrementalAlterConfigOpSet, kerr.InvalidConfig},
		{"append to a long", "retention.ms", "1", kmsg.IncrementalAlterConfigOpAppend, kerr.InvalidConfig},
		{"valid", "retention.ms", "1000", kmsg.IncrementalAlterConfigOpSet, kerr.UnknownTopicOrPartition},
	} {
		in := kmsg.NewPtrIncrementalAlterConfigsRequest()
		in.Version = 1
		r := kmsg.NewIncrementalAlterConfigsRequestResource()
		r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, "missing"
		r.Configs = []kmsg.IncrementalAlterConfigsRequestResourceConfig{{Name: tc.key, Value: kmsg.StringPtr(tc.value), Op: tc.op}}
		in.Resources = append(in.Resources, r)
		resp, err := c.Request(in)
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, "incremental "+tc.name, resp.(*kmsg.IncrementalAlterConfigsResponse).Resources[0].ErrorCode, tc.want)
		if tc.op != kmsg.IncrementalAlterConfigOpSet {
			continue
		}
		al := kmsg.NewPtrAlterConfigsRequest()
		al.Version = 2
		ar := kmsg.NewAlterConfigsRequestResource()
		ar.ResourceType, ar.ResourceName = kmsg.ConfigResourceTypeTopic, "missing"
		ar.Configs = []kmsg.AlterConfigsRequestResourceConfig{{Name: tc.key, Value: kmsg.StringPtr(tc.value)}}
		al.Resources = append(al.Resources, ar)
		aresp, err := c.Request(al)
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, "legacy "+tc.name, aresp.(*kmsg.AlterConfigsResponse).Resources[0].ErrorCode, tc.want)
	}
}

// TestAlterConfigsValueTooLong: a config value over
// catalog.MaxConfigValueBytes is INVALID_CONFIG in CreateTopics,
// AlterConfigs and IncrementalAlterConfigs (an APPEND too), whether or
// not the topic exists, and the topic keeps its configs; a list of up to
// the cap is applied. Unbounded, one APPEND of 60,000 items held SQLite's
// writer for 16 s.
func TestAlterConfigsValueTooLong(t *testing.T) {
	a := startBadInputAgent(t, false)
	const key = "leader.replication.throttled.replicas"
	createTopic(t, a, "long", 1, nil)
	c := floetest.Dial(t, a.Addr)
	defer c.Close()

	var b strings.Builder
	for i := 0; b.Len() <= catalog.MaxConfigValueBytes+1; i++ {
		fmt.Fprintf(&b, "%d:%d,", i, i%5)
	}
	long := strings.TrimSuffix(b.String(), ",")
	fits := long[:strings.LastIndexByte(long[:catalog.MaxConfigValueBytes+1], ',')]

	incremental := func(topic, value string, op kmsg.IncrementalAlterConfigOp) int16 {
		t.Helper()
		req := kmsg.NewPtrIncrementalAlterConfigsRequest()
		req.Version = 1
		r := kmsg.NewIncrementalAlterConfigsRequestResource()
		r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, topic
		r.Configs = []kmsg.IncrementalAlterConfigsRequestResourceConfig{{Name: key, Value: kmsg.StringPtr(value), Op: op}}
		req.Resources = append(req.Resources, r)
		resp, err := c.Request(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.(*kmsg.IncrementalAlterConfigsResponse).Resources[0].ErrorCode
	}
	for _, topic := range []string{"long", "missing"} {
		for _, op := range []kmsg.IncrementalAlterConfigOp{kmsg.IncrementalAlterConfigOpSet, kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract} {
			wantCode(t, fmt.Sprintf("incremental %v on %s", op, topic), incremental(topic, long, op), kerr.InvalidConfig)
		}
		al := kmsg.NewPtrAlterConfigsRequest()
		al.Version = 2
		ar := kmsg.NewAlterConfigsRequestResource()
		ar.ResourceType, ar.ResourceName = kmsg.ConfigResourceTypeTopic, topic
		ar.Configs = []kmsg.AlterConfigsRequestResourceConfig{{Name: key, Value: kmsg.StringPtr(long)}}
		al.Resources = append(al.Resources, ar)
		resp, err := c.Request(al)
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, "legacy alter on "+topic, resp.(*kmsg.AlterConfigsResponse).Resources[0].ErrorCode, kerr.InvalidConfig)
	}
	wantTopicConfigs(t, a, "after the refusals", "long", map[string]string{})

	ct := kmsg.NewPtrCreateTopicsRequest()
	ct.Version = 7
	ct.TimeoutMillis = 10_000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "long2", 1, -1
	rt.Configs = []kmsg.CreateTopicsRequestTopicConfig{{Name: key, Value: kmsg.StringPtr(long)}}
	ct.Topics = append(ct.Topics, rt)
	resp, err := c.Request(ct)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, "create", resp.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode, kerr.InvalidConfig)

	// Two appends that each fit, whose union does not.
	half := fits[:strings.LastIndexByte(fits[:len(fits)/2], ',')]
	wantCode(t, "append the first half", incremental("long", half, kmsg.IncrementalAlterConfigOpAppend), nil)
	wantCode(t, "append the rest", incremental("long", long[len(half)+1:], kmsg.IncrementalAlterConfigOpAppend), kerr.InvalidConfig)
	wantTopicConfigs(t, a, "after the halves", "long", map[string]string{key: half})
	wantCode(t, "append up to the cap", incremental("long", fits, kmsg.IncrementalAlterConfigOpAppend), nil)
	wantTopicConfigs(t, a, "after the append", "long", map[string]string{key: fits})
}
