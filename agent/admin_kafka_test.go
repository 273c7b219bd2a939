package agent_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/sqlite"
	"github.com/floebroker/floe/tests/floetest"
)

// Admin answers that differ from Kafka 4.1's in ways clients notice, each
// checked with a raw request of the affected versions.

func TestDescribeConfigsEmptyNamesMeansAll(t *testing.T) {
	a := startBadInputAgent(t, false)
	createTopic(t, a, "dc", 1, nil)
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	// Kafka's ConfigHelper reads a null and an empty ConfigNames alike:
	// every config. Clients on other protocol libraries send empty.
	for _, typ := range []kmsg.ConfigResourceType{kmsg.ConfigResourceTypeTopic, kmsg.ConfigResourceTypeBroker} {
		req := kmsg.NewPtrDescribeConfigsRequest()
		req.Version = 4
		rr := kmsg.NewDescribeConfigsRequestResource()
		rr.ResourceType, rr.ConfigNames = typ, []string{}
		rr.ResourceName = "dc"
		if typ == kmsg.ConfigResourceTypeBroker {
			rr.ResourceName = strconv.Itoa(int(a.Agent.NodeID()))
		}
		req.Resources = append(req.Resources, rr)
		resp, err := c.Request(req)
		if err != nil {
			t.Fatal(err)
		}
		res := resp.(*kmsg.DescribeConfigsResponse).Resources[0]
		wantCode(t, "describe configs", res.ErrorCode, nil)
		if len(res.Configs) == 0 {
			t.Errorf("%v: an empty ConfigNames described no configs, want all", typ)
		}
	}
}

// TestListOffsetsSpecialTimestampVersions: a special timestamp below the
// version that introduced it is UNSUPPORTED_VERSION for that partition, as
// in Kafka 4 (ReplicaManager.isListOffsetsTimestampUnsupported); at its
// version it is answered, and any other negative value is a timestamp to
// search for.
func TestListOffsetsSpecialTimestampVersions(t *testing.T) {
	a := startBadInputAgent(t, false)
	createTopic(t, a, "lo", 1, nil)
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	produce(t, c, produceReq("lo", -1, floetest.Batch(floetest.BatchSpec{Records: 5, FirstTimestamp: 1000})))
	unsupported := kerr.UnsupportedVersion
	for _, tc := range []struct {
		version            int16
		ts, offset, tsWant int64
		err                *kerr.Error
	}{
		{1, -1, 5, -1, nil},
		{1, -2, 0, -1, nil},
		{6, -3, -1, -1, unsupported}, // max timestamp before v7
		{7, -3, 4, 1004, nil},
		{7, -4, -1, -1, unsupported}, // earliest local before v8
		{8, -4, 0, -1, nil},
		{8, -5, -1, -1, unsupported}, // latest tiered before v9
		{9, -5, -1, -1, nil},
		{10, -6, 0, 1000, nil}, // not special in Kafka 4.1: a search
		{10, -7, 0, 1000, nil},
	} {
		req := kmsg.NewPtrListOffsetsRequest()
		req.Version = tc.version
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "lo"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = 0, tc.ts
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := c.Request(req)
		if err != nil {
			t.Fatal(err)
		}
		p := resp.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0]
		code := int16(0)
		if tc.err != nil {
			code = tc.err.Code
		}
		if p.ErrorCode != code || p.Offset != tc.offset || p.Timestamp != tc.tsWant {
			t.Errorf("v%d timestamp %d: %v offset %d timestamp %d, want %v offset %d timestamp %d",
				tc.version, tc.ts, kerr.ErrorForCode(p.ErrorCode), p.Offset, p.Timestamp, tc.err, tc.offset, tc.tsWant)
		}
	}
}

func TestMetadataInvalidTopicName(t *testing.T) {
	a := startBadInputAgent(t, false)
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	// Without auto-creation Kafka still validates the name: a name no
	// topic can have is INVALID_TOPIC_EXCEPTION (not retriable), a valid
	// unknown one UNKNOWN_TOPIC_OR_PARTITION.
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 12
	for _, n := range []string{"bad name!", "fine-but-unknown"} {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(n)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := c.Request(req)
	if err != nil {
		t.Fatal(err)
	}
	topics := resp.(*kmsg.MetadataResponse).Topics
	wantCode(t, "invalid name", topics[0].ErrorCode, kerr.InvalidTopicException)
	wantCode(t, "valid unknown name", topics[1].ErrorCode, kerr.UnknownTopicOrPartition)
}

// TestMetadataRepeatedTopicAnsweredOnce: a topic named many times in one
// request is answered once, as Kafka answers the set of names, not once
// per entry (a small frame could otherwise build an answer of millions of
// partitions).
func TestMetadataRepeatedTopicAnsweredOnce(t *testing.T) {
	a := startBadInputAgent(t, false)
	id := createTopic(t, a, "rep", 64, nil)
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 12
	for range 1000 {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr("rep")
		req.Topics = append(req.Topics, rt)
		rt = kmsg.NewMetadataRequestTopic()
		rt.TopicID = id
		req.Topics = append(req.Topics, rt)
	}
	resp, err := c.Request(req)
	if err != nil {
		t.Fatal(err)
	}
	topics := resp.(*kmsg.MetadataResponse).Topics
	if len(topics) != 2 {
		t.Fatalf("%d topics answered for one topic named 1,000 times by name and 1,000 by id, want 2 (one per distinct name or id)", len(topics))
	}
	for _, mt := range topics {
		if mt.ErrorCode != 0 || len(mt.Partitions) != 64 {
			t.Fatalf("topic answered %v with %d partitions, want 64", kerr.ErrorForCode(mt.ErrorCode), len(mt.Partitions))
		}
	}
}

func TestDeleteTopicsByNameReportsID(t *testing.T) {
	a := startBadInputAgent(t, false)
	id := createTopic(t, a, "del", 1, nil)
	adm := kadm.NewClient(a.Client(t))
	resp, err := adm.DeleteTopics(ctxT(t), "del")
	if err != nil {
		t.Fatal(err)
	}
	r := resp["del"]
	if r.Err != nil || r.ID != id {
		t.Fatalf("delete by name: id %x (%v), want %x", r.ID, r.Err, id)
	}
}

// brokenTopicCatalog fails topic lookups of one name.
type brokenTopicCatalog struct {
	catalog.Catalog
	name string
}

func (c brokenTopicCatalog) Topic(ctx context.Context, name string) (catalog.Topic, error) {
	if name == c.name {
		return catalog.Topic{}, errors.New("catalog unreachable")
	}
	return c.Catalog.Topic(ctx, name)
}

func TestValidateOnlyCreateWhenCatalogFails(t *testing.T) {
	dir := t.TempDir()
	cat, err := sqlite.Open(context.Background(), filepath.Join(dir, "catalog.db"), catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	a := floetest.Start(t, floetest.Options{Dir: dir, NoAutoCreate: true, Catalog: brokenTopicCatalog{cat, "unsure"}})
	adm := kadm.NewClient(a.Client(t))
	// Whether "unsure" exists is unknown: validation must not pass.
	resp, err := adm.ValidateCreateTopics(ctxT(t), 1, -1, nil, "unsure")
	if err != nil {
		t.Fatal(err)
	}
	if got := resp["unsure"].Err; !errors.Is(got, kerr.UnknownServerError) {
		t.Fatalf("validate-only create with a failing catalog: %v, want UNKNOWN_SERVER_ERROR", got)
	}
}

// TestCreateTopicsNameCollision: a name equal to an existing topic's with
// '.' and '_' swapped is INVALID_TOPIC_EXCEPTION, whether created or
// validated (as in Kafka) or auto-created by Metadata (where Kafka's
// asynchronous creation fails silently).
func TestCreateTopicsNameCollision(t *testing.T) {
	a := startBadInputAgent(t, true)
	createTopic(t, a, "metrics.in", 1, nil)
	adm := kadm.NewClient(a.Client(t))
	resp, err := adm.CreateTopics(ctxT(t), 1, -1, nil, "metrics_in", "metrics-in")
	if err != nil {
		t.Fatal(err)
	}
	if got := resp["metrics_in"].Err; !errors.Is(got, kerr.InvalidTopicException) {
		t.Fatalf("create metrics_in beside metrics.in: %v, want INVALID_TOPIC_EXCEPTION", got)
	}
	if got := resp["metrics-in"].Err; got != nil {
		t.Fatalf("create metrics-in: %v", got)
	}
	resp, err = adm.ValidateCreateTopics(ctxT(t), 1, -1, nil, "metrics_in")
	if err != nil {
		t.Fatal(err)
	}
	if got := resp["metrics_in"].Err; !errors.Is(got, kerr.InvalidTopicException) {
		t.Fatalf("validate-only create of metrics_in: %v, want INVALID_TOPIC_EXCEPTION", got)
	}

	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 12
	req.AllowAutoTopicCreation = true
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr("metrics_in")
	req.Topics = append(req.Topics, rt)
	mresp, err := c.Request(req)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, "auto-created colliding name", mresp.(*kmsg.MetadataResponse).Topics[0].ErrorCode, kerr.InvalidTopicException)
	if _, err := a.Catalog.Topic(ctxT(t), "metrics_in"); !errors.Is(err, catalog.ErrUnknownTopic) {
		t.Fatalf("metrics_in after refused creates: %v, want unknown", err)
	}
}

// TestDeleteTopicsAmbiguousEntries: a topic given twice (by name, by id,
// or once each way) or an entry with both a name and an id is refused
// with INVALID_REQUEST, answered once, and not deleted, as Kafka's
// controller does; the request's other topics are deleted.
func TestDeleteTopicsAmbiguousEntries(t *testing.T) {
	a := startBadInputAgent(t, false)
	id := map[string][16]byte{}
	for _, n := range []string{"d1", "d2", "d3", "d4", "d5", "d6", "d7"} {
		id[n] = createTopic(t, a, n, 1, nil)
	}
	c := floetest.Dial(t, a.Addr)
	defer c.Close()

	byName := func(n string) kmsg.DeleteTopicsRequestTopic {
		rt := kmsg.NewDeleteTopicsRequestTopic()
		rt.Topic = kmsg.StringPtr(n)
		return rt
	}
	byID := func(id [16]byte) kmsg.DeleteTopicsRequestTopic {
		rt := kmsg.NewDeleteTopicsRequestTopic()
		rt.TopicID = id
		return rt
	}
	both := byName("d4")
	both.TopicID = id["d4"]
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.Version = 6
	req.Topics = []kmsg.DeleteTopicsRequestTopic{
		byName("d1"), byID(id["d2"]), byName("d3"), byName("d5"),
		byName("d1"), byID(id["d2"]), byID(id["d3"]), both, byName("d1"),
		byID(id["d7"]), byID(id["d7"]), byName("d7"),
	}
	resp, err := c.Request(req)
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		name string
		id   [16]byte
		code int16
	}
	var got []answer
	for _, rt := range resp.(*kmsg.DeleteTopicsResponse).Topics {
		n := ""
		if rt.Topic != nil {
			n = *rt.Topic
		}
		got = append(got, answer{n, rt.TopicID, rt.ErrorCode})
	}
	inv := kerr.InvalidRequest.Code
	want := []answer{
		{"d1", [16]byte{}, inv}, {"", id["d2"], inv}, {"d3", [16]byte{}, inv}, {"d5", id["d5"], 0},
		{"d3", id["d3"], inv}, {"d4", id["d4"], inv},
		{"", id["d7"], inv}, {"d7", [16]byte{}, inv},
	}
	if len(got) != len(want) {
		t.Fatalf("answers %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("answer %d: %+v, want %+v (all: %+v)", i, got[i], want[i], got)
		}
	}
	for _, n := range []string{"d1", "d2", "d3", "d4", "d7"} {
		if _, err := a.Catalog.Topic(ctxT(t), n); err != nil {
			t.Fatalf("%s after a refused delete: %v", n, err)
		}
	}
	if _, err := a.Catalog.Topic(ctxT(t), "d5"); !errors.Is(err, catalog.ErrUnknownTopic) {
		t.Fatalf("d5 after its delete: %v", err)
	}

	// Before v6, topics are named only; a repeated name is refused too.
	old := kmsg.NewPtrDeleteTopicsRequest()
	old.Version = 5
	old.TopicNames = []string{"d6", "d1", "d6"}
	resp, err = c.Request(old)
	if err != nil {
		t.Fatal(err)
	}
	topics := resp.(*kmsg.DeleteTopicsResponse).Topics
	if len(topics) != 2 || *topics[0].Topic != "d6" || *topics[1].Topic != "d1" {
		t.Fatalf("v5 answers %+v, want d6 and d1", topics)
	}
	wantCode(t, "v5 repeated name", topics[0].ErrorCode, kerr.InvalidRequest)
	wantCode(t, "v5 single name", topics[1].ErrorCode, nil)
}

// TestListOffsetsDuplicatePartitions: a partition asked for twice, in one
// topic entry or in two entries of the topic, is answered once with
// INVALID_REQUEST, and a topic named by two entries once, as Kafka's
// ReplicaManager.fetchOffset (one answer per partition) does; the
// request's other partitions are answered.
func TestListOffsetsDuplicatePartitions(t *testing.T) {
	a := startBadInputAgent(t, false)
	createTopic(t, a, "lo2", 3, nil)
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = 7
	for _, parts := range [][]int32{{0, 0, 1}, {2, 1}} {
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "lo2"
		for _, p := range parts {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.Timestamp = p, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	resp, err := c.Request(req)
	if err != nil {
		t.Fatal(err)
	}
	topics := resp.(*kmsg.ListOffsetsResponse).Topics
	if len(topics) != 1 || len(topics[0].Partitions) != 3 {
		t.Fatalf("answers %+v, want one topic with partitions 0, 1, 2", topics)
	}
	for i, want := range []*kerr.Error{kerr.InvalidRequest, kerr.InvalidRequest, nil} {
		p := topics[0].Partitions[i]
		if p.Partition != int32(i) {
			t.Fatalf("answer %d is for partition %d", i, p.Partition)
		}
		wantCode(t, fmt.Sprintf("partition %d", p.Partition), p.ErrorCode, want)
	}
	if p := topics[0].Partitions[2]; p.Offset != 0 || p.LeaderEpoch < 0 {
		t.Fatalf("partition 2: latest offset %d, leader epoch %d", p.Offset, p.LeaderEpoch)
	}
	if p := topics[0].Partitions[0]; p.LeaderEpoch != -1 {
		t.Fatalf("refused partition's leader epoch %d, want -1", p.LeaderEpoch)
	}
}

// TestCreateTopicsRepeatedName: a name given twice in one CreateTopics is
// answered once with INVALID_REQUEST and not created, as in Kafka.
func TestCreateTopicsRepeatedName(t *testing.T) {
	a := startBadInputAgent(t, false)
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.Version = 7
	for _, n := range []string{"twice", "once", "twice"} {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = n, 1, -1
		req.Topics = append(req.Topics, rt)
	}
	resp, err := c.Request(req)
	if err != nil {
		t.Fatal(err)
	}
	topics := resp.(*kmsg.CreateTopicsResponse).Topics
	if len(topics) != 2 || topics[0].Topic != "twice" || topics[1].Topic != "once" {
		t.Fatalf("answers %+v, want twice and once", topics)
	}
	wantCode(t, "repeated name", topics[0].ErrorCode, kerr.InvalidRequest)
	wantCode(t, "single name", topics[1].ErrorCode, nil)
	if _, err := a.Catalog.Topic(ctxT(t), "twice"); !errors.Is(err, catalog.ErrUnknownTopic) {
		t.Fatalf("twice after a refused create: %v", err)
	}
}

// TestDeleteRecordsCompactedTopic: DeleteRecords on a topic whose
// cleanup.policy lacks "delete" is POLICY_VIOLATION and moves nothing, as
// in Kafka, including when the policy was changed through another agent
// after this one cached the topic.
func TestDeleteRecordsCompactedTopic(t *testing.T) {
	a := startBadInputAgent(t, false)
	compact, both := "compact", "compact,delete"
	createTopic(t, a, "cmp", 1, map[string]*string{"cleanup.policy": &compact})
	createTopic(t, a, "both", 1, map[string]*string{"cleanup.policy": &both})
	createTopic(t, a, "later", 1, nil)
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	for _, topic := range []string{"cmp", "both", "later"} {
		produce(t, c, produceReq(topic, -1, floetest.Batch(floetest.BatchSpec{Records: 5})))
	}
	adm := kadm.NewClient(a.Client(t))
	// The agent caches "later" with the default policy, then another
	// agent (the catalog, here) makes it compacted only.
	if _, err := adm.ListEndOffsets(ctxT(t), "later"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Catalog.AlterTopicConfigs(ctxT(t), "later", []catalog.ConfigOp{{Key: "cleanup.policy", Value: "compact"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := adm.DeleteRecords(ctxT(t), kadm.Offsets{
		"cmp": {0: {At: 3}}, "both": {0: {At: 3}}, "later": {0: {At: 3}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]error{"cmp": kerr.PolicyViolation, "both": nil, "later": kerr.PolicyViolation} {
		r, ok := resp.Lookup(topic, 0)
		if !ok || !errors.Is(r.Err, want) || (want == nil) != (r.LowWatermark == 3) {
			t.Errorf("delete records of %s: %+v (found %v), want error %v", topic, r, ok, want)
		}
	}
	starts, err := adm.ListStartOffsets(ctxT(t), "cmp", "later")
	if err != nil {
		t.Fatal(err)
	}
	starts.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset != 0 {
			t.Errorf("%s log start after a refused delete: %d (%v), want 0", o.Topic, o.Offset, o.Err)
		}
	})
}

// TestFetchUnknownPartitionKeepsLongPoll: a fetch naming a partition that
// does not exist beside one that does answers the first with
// UNKNOWN_TOPIC_OR_PARTITION but, as in Kafka, still long-polls the
// second; a fetch of only partitions that do not exist is answered at
// once.
func TestFetchUnknownPartitionKeepsLongPoll(t *testing.T) {
	a := startBadInputAgent(t, false)
	createTopic(t, a, "real", 1, nil)
	// Partition 3 of "real" does not exist either.
	fetch := longFetch(map[string][]int32{"real": {0, 3}, "ghost": {0}}, "real", "ghost")

	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	done := make(chan *kmsg.FetchResponse, 1)
	go func() {
		resp, err := c.Request(fetch)
		if err != nil {
			t.Error(err)
			done <- nil
			return
		}
		done <- resp.(*kmsg.FetchResponse)
	}()
	select {
	case r := <-done:
		t.Fatalf("fetch answered before any record was produced: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	pc := floetest.Dial(t, a.Addr)
	defer pc.Close()
	produce(t, pc, produceReq("real", -1, floetest.Batch(floetest.BatchSpec{Records: 2})))
	var resp *kmsg.FetchResponse
	select {
	case resp = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the produce did not wake the fetch")
	}
	if resp == nil {
		t.FailNow()
	}
	got := resp.Topics[0].Partitions
	wantCode(t, "real/0", got[0].ErrorCode, nil)
	if len(got[0].RecordBatches) == 0 {
		t.Fatal("real/0: no records after the produce woke the fetch")
	}
	wantCode(t, "real/3", got[1].ErrorCode, kerr.UnknownTopicOrPartition)
	wantCode(t, "ghost/0", resp.Topics[1].Partitions[0].ErrorCode, kerr.UnknownTopicOrPartition)

	// Nothing to wait for: answered at once, not after MaxWait (30 s).
	only := longFetch(map[string][]int32{"ghost": {0, 1}}, "ghost")
	start := time.Now()
	r, err := c.Request(only)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("a fetch of only unknown partitions took %v", took)
	}
	wantCode(t, "ghost only", r.(*kmsg.FetchResponse).Topics[0].Partitions[0].ErrorCode, kerr.UnknownTopicOrPartition)
}

// longFetch is a v12 fetch from offset 0 of the partitions of topics (in
// the order given), waiting up to 30 s for a byte.
func longFetch(parts map[string][]int32, order ...string) *kmsg.FetchRequest {
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version, fetch.MaxWaitMillis, fetch.MinBytes, fetch.MaxBytes = 12, 30_000, 1, 1<<20
	for _, topic := range order {
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic = topic
		for _, p := range parts[topic] {
			fp := kmsg.NewFetchRequestTopicPartition()
			fp.Partition, fp.PartitionMaxBytes = p, 1<<20
			ft.Partitions = append(ft.Partitions, fp)
		}
		fetch.Topics = append(fetch.Topics, ft)
	}
	return fetch
}

// TestCreatePartitionsChecks: Kafka's answers for a topic named twice
// (once, INVALID_REQUEST), an unknown topic whatever the count
// (UNKNOWN_TOPIC_OR_PARTITION) and assignments that do not match the
// partitions added (INVALID_REPLICA_ASSIGNMENT); none grows a topic.
func TestCreatePartitionsChecks(t *testing.T) {
	a := startBadInputAgent(t, false)
	createTopic(t, a, "twice", 1, nil)
	createTopic(t, a, "assigned", 1, nil)
	createTopic(t, a, "grows", 1, nil)
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	req := kmsg.NewPtrCreatePartitionsRequest()
	req.Version = 3
	add := func(topic string, count int32, assignments int) {
		rt := kmsg.NewCreatePartitionsRequestTopic()
		rt.Topic, rt.Count = topic, count
		for range assignments {
			as := kmsg.NewCreatePartitionsRequestTopicAssignment()
			as.Replicas = []int32{1}
			rt.Assignment = append(rt.Assignment, as)
		}
		if assignments < 0 {
			rt.Assignment = nil
		}
		req.Topics = append(req.Topics, rt)
	}
	add("twice", 2, -1)
	add("nope", 0, -1)
	add("assigned", 4, 2)
	add("twice", 3, -1)
	add("grows", 3, 2)
	resp, err := c.Request(req)
	if err != nil {
		t.Fatal(err)
	}
	topics := resp.(*kmsg.CreatePartitionsResponse).Topics
	want := []struct {
		topic string
		err   *kerr.Error
	}{{"twice", kerr.InvalidRequest}, {"nope", kerr.UnknownTopicOrPartition}, {"assigned", kerr.InvalidReplicaAssignment}, {"grows", nil}}
	if len(topics) != len(want) {
		t.Fatalf("answers %+v, want %d", topics, len(want))
	}
	for i, w := range want {
		if topics[i].Topic != w.topic {
			t.Fatalf("answer %d is for %s, want %s", i, topics[i].Topic, w.topic)
		}
		wantCode(t, w.topic, topics[i].ErrorCode, w.err)
	}
	for topic, parts := range map[string]int32{"twice": 1, "assigned": 1, "grows": 3} {
		got, err := a.Catalog.Topic(ctxT(t), topic)
		if err != nil || got.Partitions != parts {
			t.Fatalf("%s: %d partitions (%v), want %d", topic, got.Partitions, err, parts)
		}
	}
}

// TestCreateTopicsExistingBeforeChecks: creating a topic that exists is
// TOPIC_ALREADY_EXISTS even with a bad config, partition count or
// replication factor, as Kafka checks existence first; a topic that does
// not exist still gets the check's error.
func TestCreateTopicsExistingBeforeChecks(t *testing.T) {
	a := startBadInputAgent(t, false)
	createTopic(t, a, "exists", 1, nil)
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	bad := "nope"
	for _, tc := range []struct {
		name    string
		mutate  func(*kmsg.CreateTopicsRequestTopic)
		missing *kerr.Error // the error for a topic that does not exist
	}{
		{"bad config", func(rt *kmsg.CreateTopicsRequestTopic) {
			rt.Configs = []kmsg.CreateTopicsRequestTopicConfig{{Name: "cleanup.policy", Value: &bad}}
		}, kerr.InvalidConfig},
		{"unknown config", func(rt *kmsg.CreateTopicsRequestTopic) {
			rt.Configs = []kmsg.CreateTopicsRequestTopicConfig{{Name: "message.format.versio", Value: &bad}}
		}, kerr.InvalidConfig},
		{"zero partitions", func(rt *kmsg.CreateTopicsRequestTopic) { rt.NumPartitions = 0 }, kerr.InvalidPartitions},
		{"zero replication", func(rt *kmsg.CreateTopicsRequestTopic) { rt.ReplicationFactor = 0 }, kerr.InvalidReplicationFactor},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, topic := range []string{"exists", "missing"} {
				req := kmsg.NewPtrCreateTopicsRequest()
				req.Version = 7
				rt := kmsg.NewCreateTopicsRequestTopic()
				rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, 1, -1
				tc.mutate(&rt)
				req.Topics = append(req.Topics, rt)
				resp, err := c.Request(req)
				if err != nil {
					t.Fatal(err)
				}
				want := tc.missing
				if topic == "exists" {
					want = kerr.TopicAlreadyExists
				}
				wantCode(t, topic, resp.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode, want)
			}
		})
	}
}

// TestInternalTopicsNotCreated: Kafka's internal topic names are never
// created. Floe keeps group offsets in its catalog, and an ordinary topic
// named __consumer_offsets was listed, matched by regex subscriptions and
// read as empty by tools reading Kafka's. Auto-creation (Metadata and
// Produce) answers UNKNOWN_TOPIC_OR_PARTITION, as Kafka answers an unknown
// topic it does not create, with IsInternal as Kafka sets it; CreateTopics,
// validate-only or not, INVALID_REQUEST, as Kafka answers for
// __cluster_metadata.
func TestInternalTopicsNotCreated(t *testing.T) {
	a := startBadInputAgent(t, true)
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	names := []string{"__consumer_offsets", "__transaction_state", "__share_group_state", "__cluster_metadata"}
	internal := map[string]bool{"__consumer_offsets": true, "__transaction_state": true, "__share_group_state": true}

	mreq := kmsg.NewPtrMetadataRequest()
	mreq.Version = 12
	mreq.AllowAutoTopicCreation = true
	for _, n := range names {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(n)
		mreq.Topics = append(mreq.Topics, rt)
	}
	resp, err := c.Request(mreq)
	if err != nil {
		t.Fatal(err)
	}
	for _, mt := range resp.(*kmsg.MetadataResponse).Topics {
		n := *mt.Topic
		wantCode(t, "metadata auto-creating "+n, mt.ErrorCode, kerr.UnknownTopicOrPartition)
		if mt.IsInternal != internal[n] {
			t.Errorf("metadata %s: IsInternal %v, want %v", n, mt.IsInternal, internal[n])
		}
	}
	ps := produce(t, c, produceReq("__consumer_offsets", -1, floetest.Batch(floetest.BatchSpec{Records: 1})))
	wantCode(t, "produce to __consumer_offsets", ps[0].ErrorCode, kerr.UnknownTopicOrPartition)

	for _, validateOnly := range []bool{true, false} {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.Version = 7
		req.ValidateOnly = validateOnly
		for _, n := range names {
			rt := kmsg.NewCreateTopicsRequestTopic()
			rt.Topic, rt.NumPartitions, rt.ReplicationFactor = n, 50, -1
			req.Topics = append(req.Topics, rt)
		}
		resp, err := c.Request(req)
		if err != nil {
			t.Fatal(err)
		}
		for _, ot := range resp.(*kmsg.CreateTopicsResponse).Topics {
			wantCode(t, fmt.Sprintf("create %s (validate only %v)", ot.Topic, validateOnly), ot.ErrorCode, kerr.InvalidRequest)
			if want := "Creation of internal topic " + ot.Topic + " is prohibited."; ot.ErrorMessage == nil || *ot.ErrorMessage != want {
				t.Errorf("create %s: message %v, want %q", ot.Topic, ot.ErrorMessage, want)
			}
		}
	}
	for _, n := range names {
		if _, err := a.Catalog.Topic(ctxT(t), n); !errors.Is(err, catalog.ErrUnknownTopic) {
			t.Errorf("%s after the refused creations: %v, want unknown", n, err)
		}
	}
}

// TestCreateTopicsChecksReplicaAssignment: manual replica assignments are
// checked as Kafka's controller checks them (INVALID_REPLICA_ASSIGNMENT for
// partition indexes that are not 0 to n-1, an empty replica list, a broker
// named twice, replica lists of different lengths; INVALID_REQUEST with a
// replication factor), except that broker ids are not looked up: Floe's
// replicas are not placed, so any id is accepted and ignored. Assignments
// for partitions [0, 5] had made a 2-partition topic.
func TestCreateTopicsChecksReplicaAssignment(t *testing.T) {
	a := startBadInputAgent(t, false)
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	for _, tc := range []struct {
		name       string
		partitions []int32
		replicas   [][]int32
		rf         int16
		want       *kerr.Error
	}{
		{"gap", []int32{0, 5}, [][]int32{{1}, {1}}, -1, kerr.InvalidReplicaAssignment},
		{"from-one", []int32{1, 2}, [][]int32{{1}, {1}}, -1, kerr.InvalidReplicaAssignment},
		{"repeated-partition", []int32{0, 0}, [][]int32{{1}, {1}}, -1, kerr.InvalidReplicaAssignment},
		{"empty", []int32{0, 1}, [][]int32{{1}, {}}, -1, kerr.InvalidReplicaAssignment},
		{"repeated-broker", []int32{0}, [][]int32{{1, 2, 1}}, -1, kerr.InvalidReplicaAssignment},
		{"uneven", []int32{0, 1}, [][]int32{{1, 2}, {1}}, -1, kerr.InvalidReplicaAssignment},
		{"with-factor", []int32{0}, [][]int32{{1}}, 1, kerr.InvalidRequest},
		{"any-ids", []int32{1, 0, 2}, [][]int32{{99, 7}, {-5, 99}, {7, 1000}}, -1, nil},
	} {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.Version = 7
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = tc.name, -1, tc.rf
		for i, p := range tc.partitions {
			ra := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
			ra.Partition, ra.Replicas = p, tc.replicas[i]
			rt.ReplicaAssignment = append(rt.ReplicaAssignment, ra)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := c.Request(req)
		if err != nil {
			t.Fatal(err)
		}
		ot := resp.(*kmsg.CreateTopicsResponse).Topics[0]
		wantCode(t, tc.name, ot.ErrorCode, tc.want)
		got, err := a.Catalog.Topic(ctxT(t), tc.name)
		switch {
		case tc.want != nil && !errors.Is(err, catalog.ErrUnknownTopic):
			t.Errorf("%s: refused, yet the catalog has %+v (%v)", tc.name, got, err)
		case tc.want == nil && (err != nil || got.Partitions != int32(len(tc.partitions))):
			t.Errorf("%s: %d partitions (%v), want %d", tc.name, got.Partitions, err, len(tc.partitions))
		}
	}
}

// TestCreatePartitionsChecksReplicaAssignment: CreatePartitions refuses an
// empty replica list, a broker named twice and replica lists of different
// lengths with INVALID_REPLICA_ASSIGNMENT, as Kafka does, and accepts any
// broker id (see TestCreateTopicsChecksReplicaAssignment).
func TestCreatePartitionsChecksReplicaAssignment(t *testing.T) {
	a := startBadInputAgent(t, false)
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	for _, tc := range []struct {
		name     string
		replicas [][]int32
		want     *kerr.Error
	}{
		{"empty", [][]int32{{1}, {}}, kerr.InvalidReplicaAssignment},
		{"repeated-broker", [][]int32{{3, 3}, {1, 2}}, kerr.InvalidReplicaAssignment},
		{"uneven", [][]int32{{1}, {1, 2}}, kerr.InvalidReplicaAssignment},
		{"any-ids", [][]int32{{99}, {-1}}, nil},
	} {
		createTopic(t, a, tc.name, 1, nil)
		req := kmsg.NewPtrCreatePartitionsRequest()
		req.Version = 3
		rt := kmsg.NewCreatePartitionsRequestTopic()
		rt.Topic, rt.Count = tc.name, 1+int32(len(tc.replicas))
		for _, r := range tc.replicas {
			as := kmsg.NewCreatePartitionsRequestTopicAssignment()
			as.Replicas = r
			rt.Assignment = append(rt.Assignment, as)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := c.Request(req)
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, tc.name, resp.(*kmsg.CreatePartitionsResponse).Topics[0].ErrorCode, tc.want)
		want := int32(1)
		if tc.want == nil {
			want = rt.Count
		}
		if got, err := a.Catalog.Topic(ctxT(t), tc.name); err != nil || got.Partitions != want {
			t.Errorf("%s: %d partitions (%v), want %d", tc.name, got.Partitions, err, want)
		}
	}
}
