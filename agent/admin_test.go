package agent_test

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/tests/floetest"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAdminTopicsAndConfigs(t *testing.T) {
	a := floetest.Start(t, floetest.Options{NoAutoCreate: true})
	ctx := ctxT(t)
	adm := kadm.NewClient(a.Client(t))
	retention := "3600000"

	t.Run("validate only creates nothing", func(t *testing.T) {
		resp, err := adm.ValidateCreateTopics(ctx, 3, -1, map[string]*string{"retention.ms": &retention}, "v")
		if err != nil || resp["v"].Err != nil {
			t.Fatalf("validate: %v %v", err, resp["v"].Err)
		}
		topics, err := adm.ListTopics(ctx)
		if err != nil || topics.Has("v") {
			t.Fatalf("validate-only created the topic (%v)", err)
		}
	})
	t.Run("create errors", func(t *testing.T) {
		bad := "x"
		for _, tc := range []struct {
			name    string
			parts   int32
			configs map[string]*string
			want    *kerr.Error
		}{
			{"bad/name", 1, nil, kerr.InvalidTopicException},
			{"zero-parts", 0, nil, kerr.InvalidPartitions},
			{"bad-config", 1, map[string]*string{"retention.ms": &bad}, kerr.InvalidConfig},
			{"unknown-config", 1, map[string]*string{"no.such.config": &bad}, kerr.InvalidConfig},
		} {
			resp, err := adm.CreateTopics(ctx, tc.parts, -1, tc.configs, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if got := resp[tc.name].Err; !errors.Is(got, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
		}
	})

	created, err := adm.CreateTopic(ctx, 2, 3, map[string]*string{"retention.ms": &retention}, "cfg")
	if err != nil || created.Err != nil {
		t.Fatalf("create: %v %v", err, created.Err)
	}
	if again, _ := adm.CreateTopic(ctx, 2, -1, nil, "cfg"); !errors.Is(again.Err, kerr.TopicAlreadyExists) {
		t.Fatalf("second create: %v", again.Err)
	}

	t.Run("describe configs", func(t *testing.T) {
		rcs, err := adm.DescribeTopicConfigs(ctx, "cfg")
		if err != nil {
			t.Fatal(err)
		}
		rc, err := rcs.On("cfg", nil)
		if err != nil || rc.Err != nil {
			t.Fatalf("describe: %v %v", err, rc.Err)
		}
		found := map[string]kadm.Config{}
		for _, c := range rc.Configs {
			found[c.Key] = c
		}
		if c := found["retention.ms"]; c.MaybeValue() != retention || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
			t.Errorf("retention.ms: %q source %v", c.MaybeValue(), c.Source)
		}
		if c := found["cleanup.policy"]; c.MaybeValue() != "delete" || c.Source != kmsg.ConfigSourceDefaultConfig {
			t.Errorf("cleanup.policy: %q source %v", c.MaybeValue(), c.Source)
		}
		brokers, err := adm.DescribeBrokerConfigs(ctx, a.Agent.NodeID())
		if err != nil || len(brokers) == 0 || brokers[0].Err != nil || len(brokers[0].Configs) == 0 {
			t.Fatalf("broker configs: %v %+v", err, brokers)
		}
		// The cluster's dynamic defaults, as Kafka answers without any:
		// none. Another broker's id is a mistake.
		if cluster, err := adm.DescribeBrokerConfigs(ctx); err != nil || len(cluster) != 1 || cluster[0].Err != nil || len(cluster[0].Configs) != 0 {
			t.Fatalf("cluster default configs: %v %+v", err, cluster)
		}
		req := kmsg.NewPtrDescribeConfigsRequest()
		req.Version = 4
		rr := kmsg.NewDescribeConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeBroker, strconv.Itoa(int(a.Agent.NodeID())+1)
		req.Resources = append(req.Resources, rr)
		// Sent straight to this agent: franz-go routes a broker's
		// resource to that broker.
		conn := floetest.Dial(t, a.Addr)
		defer conn.Close()
		resp, err := conn.Request(req)
		if err != nil || resp.(*kmsg.DescribeConfigsResponse).Resources[0].ErrorCode != kerr.InvalidRequest.Code {
			t.Fatalf("another broker's configs: %v %+v", err, resp)
		}
	})
	t.Run("incremental alter", func(t *testing.T) {
		compact := "compact"
		resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
			{Op: kadm.SetConfig, Name: "max.message.bytes", Value: kmsg.StringPtr("2000")},
			{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: &compact},
			{Op: kadm.DeleteConfig, Name: "retention.ms"},
		}, "cfg")
		if err != nil || resp[0].Err != nil {
			t.Fatalf("alter: %v %v", err, resp)
		}
		rcs, _ := adm.DescribeTopicConfigs(ctx, "cfg")
		rc, _ := rcs.On("cfg", nil)
		for _, c := range rc.Configs {
			switch c.Key {
			case "cleanup.policy":
				if c.MaybeValue() != "delete,compact" {
					t.Errorf("cleanup.policy %q", c.MaybeValue())
				}
			case "retention.ms":
				if c.Source != kmsg.ConfigSourceDefaultConfig {
					t.Errorf("retention.ms still set: %q", c.MaybeValue())
				}
			case "max.message.bytes":
				if c.MaybeValue() != "2000" {
					t.Errorf("max.message.bytes %q", c.MaybeValue())
				}
			}
		}
		bad, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kmsg.StringPtr("soon")}}, "cfg")
		if err != nil || !errors.Is(bad[0].Err, kerr.InvalidConfig) {
			t.Fatalf("bad value: %v %v", err, bad)
		}
	})
	t.Run("replace configs", func(t *testing.T) {
		resp, err := adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "segment.ms", Value: kmsg.StringPtr("60000")}}, "cfg")
		if err != nil || resp[0].Err != nil {
			t.Fatalf("alter state: %v %v", err, resp)
		}
		rcs, _ := adm.DescribeTopicConfigs(ctx, "cfg")
		rc, _ := rcs.On("cfg", nil)
		for _, c := range rc.Configs {
			explicit := c.Source == kmsg.ConfigSourceDynamicTopicConfig
			if explicit != (c.Key == "segment.ms") {
				t.Errorf("%s: source %v after replacing the set", c.Key, c.Source)
			}
		}
	})
	t.Run("create partitions", func(t *testing.T) {
		resp, err := adm.UpdatePartitions(ctx, 4, "cfg")
		if err != nil || resp["cfg"].Err != nil {
			t.Fatalf("update partitions: %v %v", err, resp)
		}
		shrink, _ := adm.UpdatePartitions(ctx, 2, "cfg")
		if !errors.Is(shrink["cfg"].Err, kerr.InvalidPartitions) {
			t.Fatalf("shrink: %v", shrink["cfg"].Err)
		}
		td, err := adm.ListTopics(ctx, "cfg")
		if err != nil || len(td["cfg"].Partitions) != 4 {
			t.Fatalf("after grow: %v %+v", err, td)
		}
		prod := a.Client(t, kgo.DefaultProduceTopic("cfg"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err := prod.ProduceSync(ctx, &kgo.Record{Partition: 3, Value: []byte("p3")}).FirstErr(); err != nil {
			t.Fatalf("produce to the new partition: %v", err)
		}
	})
	t.Run("delete by id and name", func(t *testing.T) {
		idTopic, err := adm.CreateTopic(ctx, 1, -1, nil, "byid")
		if err != nil {
			t.Fatal(err)
		}
		req := kmsg.NewPtrDeleteTopicsRequest()
		req.Version = 6
		dt := kmsg.NewDeleteTopicsRequestTopic()
		dt.TopicID = idTopic.ID
		req.Topics = append(req.Topics, dt)
		c := floetest.Dial(t, a.Addr)
		resp, err := c.Request(req)
		if err != nil {
			t.Fatal(err)
		}
		if r := resp.(*kmsg.DeleteTopicsResponse).Topics[0]; r.ErrorCode != 0 || r.Topic == nil || *r.Topic != "byid" {
			t.Fatalf("delete by id: %+v", r)
		}
		if r, err := adm.DeleteTopic(ctx, "cfg"); err != nil || r.Err != nil {
			t.Fatalf("delete: %v %v", err, r.Err)
		}
		if r, _ := adm.DeleteTopic(ctx, "cfg"); !errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
			t.Fatalf("second delete: %v", r.Err)
		}
		// A fresh client: kgo caches metadata answers for a while.
		topics, _ := kadm.NewClient(a.Client(t)).ListTopics(ctx)
		if len(topics) != 0 {
			t.Fatalf("topics left: %v", topics.Names())
		}
	})
}

func TestClusterMetadata(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})
	ctx := ctxT(t)
	adm := kadm.NewClient(a.Client(t, kgo.ClientID("app,floe_az=z1")))
	if _, err := adm.CreateTopic(ctx, 8, -1, nil, "md"); err != nil {
		t.Fatal(err)
	}
	md, err := adm.Metadata(ctx, "md")
	if err != nil {
		t.Fatal(err)
	}
	node := a.Agent.NodeID()
	if len(md.Brokers) != 1 || md.Brokers[0].NodeID != node || md.Controller != node || md.Cluster != "floe" {
		t.Fatalf("metadata: brokers %+v controller %d cluster %q", md.Brokers, md.Controller, md.Cluster)
	}
	for _, p := range md.Topics["md"].Partitions {
		if p.Leader != node || p.LeaderEpoch < 1 || len(p.Replicas) != 1 {
			t.Fatalf("partition %+v", p)
		}
	}
	bd, err := adm.ListBrokers(ctx)
	if err != nil || len(bd) != 1 || bd[0].NodeID != node {
		t.Fatalf("describe cluster: %v %+v", err, bd)
	}
	epochs, err := adm.OffsetForLeaderEpoch(ctx, kadm.OffsetForLeaderEpochRequest{"md": {0: md.Topics["md"].Partitions[0].LeaderEpoch}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range epochs {
		for _, o := range ps {
			if o.Err != nil || o.EndOffset != 0 {
				t.Errorf("offset for leader epoch: %+v", o)
			}
		}
	}
}

// TestAuthorizedOperations: asked for them, Metadata and DescribeCluster
// report every operation of the resource type, as Kafka without an
// authorizer does (Java Admin describeTopics and describeCluster with
// includeAuthorizedOperations); not asked, Kafka's "omitted".
func TestAuthorizedOperations(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})
	ctx := ctxT(t)
	cl := a.Client(t)
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 1, -1, nil, "ops"); err != nil {
		t.Fatal(err)
	}
	const topicOps = 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<10 | 1<<11
	const clusterOps = 1<<5 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 | 1<<12
	for _, ask := range []bool{false, true} {
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr("ops")
		req.Topics = append(req.Topics, rt)
		req.IncludeTopicAuthorizedOperations = ask
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		want := int32(math.MinInt32)
		if ask {
			want = topicOps
		}
		if len(resp.Topics) != 1 || resp.Topics[0].AuthorizedOperations != want {
			t.Fatalf("asked %v: topic operations %+v, want %b", ask, resp.Topics, want)
		}
		dc := kmsg.NewPtrDescribeClusterRequest()
		dc.IncludeClusterAuthorizedOperations = ask
		dresp, err := dc.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if want = math.MinInt32; ask {
			want = clusterOps
		}
		if dresp.ClusterAuthorizedOperations != want {
			t.Fatalf("asked %v: cluster operations %b, want %b", ask, dresp.ClusterAuthorizedOperations, want)
		}
	}
}

func TestListOffsetsAndDeleteRecords(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})
	ctx := ctxT(t)
	adm := kadm.NewClient(a.Client(t))
	if _, err := adm.CreateTopic(ctx, 1, -1, nil, "ts"); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).UnixMilli()
	// Ten batches of ten records, compressed, timestamps base+0..base+99,
	// with the largest timestamp on offset 42.
	prod := a.Client(t, kgo.DefaultProduceTopic("ts"), kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.MaxBufferedRecords(10))
	for b := 0; b < 10; b++ {
		var rs []*kgo.Record
		for i := b * 10; i < b*10+10; i++ {
			ts := base + int64(i)
			if i == 42 {
				ts = base + 1000
			}
			rs = append(rs, &kgo.Record{Value: []byte{byte(i)}, Timestamp: time.UnixMilli(ts)})
		}
		if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	check := func(name string, lo kadm.ListedOffsets, err error, wantOffset, wantTS int64) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		o, _ := lo.Lookup("ts", 0)
		if o.Err != nil || o.Offset != wantOffset || (wantTS != 0 && o.Timestamp != wantTS) {
			t.Errorf("%s: offset %d ts %d (%v), want offset %d ts %d", name, o.Offset, o.Timestamp, o.Err, wantOffset, wantTS)
		}
	}
	lo, err := adm.ListOffsetsAfterMilli(ctx, base+35, "ts")
	check("after base+35", lo, err, 35, base+35)
	// The first record at or after base+55 in offset order is 42.
	lo, err = adm.ListOffsetsAfterMilli(ctx, base+55, "ts")
	check("after base+55", lo, err, 42, base+1000)
	lo, err = adm.ListOffsetsAfterMilli(ctx, base+500, "ts")
	check("after base+500", lo, err, 42, base+1000)
	lo, err = adm.ListMaxTimestampOffsets(ctx, "ts")
	check("max timestamp", lo, err, 42, base+1000)
	lo, err = adm.ListOffsetsAfterMilli(ctx, base+5000, "ts")
	check("after everything", lo, err, 100, 0)
	lo, err = adm.ListEndOffsets(ctx, "ts")
	check("end", lo, err, 100, 0)

	resp, err := adm.DeleteRecords(ctx, kadm.Offsets{"ts": {0: {At: 30}}})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := resp.Lookup("ts", 0); r.Err != nil || r.LowWatermark != 30 {
		t.Fatalf("delete records: %+v", r)
	}
	lo, err = adm.ListStartOffsets(ctx, "ts")
	check("start after delete", lo, err, 30, 0)
	if tooFar, _ := adm.DeleteRecords(ctx, kadm.Offsets{"ts": {0: {At: 101}}}); tooFar != nil {
		if r, _ := tooFar.Lookup("ts", 0); !errors.Is(r.Err, kerr.OffsetOutOfRange) {
			t.Fatalf("delete past the end: %v", r.Err)
		}
	}
	// A fetch below the log start is out of range; consumers resetting to
	// the start begin at 30.
	cons := a.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"ts": {0: kgo.NewOffset().AtStart()}}))
	fs := cons.PollFetches(ctx)
	var first int64 = -1
	fs.EachRecord(func(r *kgo.Record) {
		if first < 0 {
			first = r.Offset
		}
	})
	if first != 30 {
		t.Fatalf("first record after delete at %d, want 30", first)
	}

	// A log start inside a batch (30-39): a timestamp lookup answers no
	// offset below it, as Kafka's does (it searches from the log start).
	if _, err := adm.DeleteRecords(ctx, kadm.Offsets{"ts": {0: {At: 35}}}); err != nil {
		t.Fatal(err)
	}
	lo, err = adm.ListOffsetsAfterMilli(ctx, base+31, "ts")
	check("after base+31 with the log start at 35", lo, err, 35, base+35)
}

// TestListOffsetsPastUnmatchedRow: a timestamp lookup whose first
// candidate row has no matching record at or after the log start (a
// DeleteRecords offset inside a row of unordered timestamps, a batch
// header whose max timestamp no record carries) goes on to the next
// rows, as Kafka searches on through its segment, and answers no offset
// (-1, -1) only when none matches: never an offset with timestamp -1,
// which a Java consumer's offsetsForTimes rejects ("Invalid negative
// timestamp"). The max timestamp (-3) is that of the records at or after
// the log start.
func TestListOffsetsPastUnmatchedRow(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})
	ctx := ctxT(t)
	adm := kadm.NewClient(a.Client(t))
	if _, err := adm.CreateTopic(ctx, 3, -1, nil, "skew"); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).UnixMilli()
	prod := a.Client(t, kgo.DefaultProduceTopic("skew"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	batch := func(p int32, ts ...int64) {
		t.Helper()
		var rs []*kgo.Record
		for _, ts := range ts {
			rs = append(rs, &kgo.Record{Partition: p, Value: []byte("v"), Timestamp: time.UnixMilli(ts)})
		}
		if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	run := func(from int64) []int64 {
		ts := make([]int64, 10)
		for i := range ts {
			ts[i] = base + from + int64(i)
		}
		return ts
	}
	// Partitions 0 and 1: a first batch (offsets 0-9) whose first record
	// is far later than the rest.
	for p := range int32(2) {
		batch(p, append([]int64{base + 5000}, run(101)[:9]...)...)
		batch(p, run(200)...) // 10-19
	}
	batch(0, run(6000)...) // 20-29
	// Partition 2: a batch whose header's max timestamp (base+9000) no
	// record carries (records base+300..309), then one of base+7000..7009.
	lying := floetest.Batch(floetest.BatchSpec{Records: 10, FirstTimestamp: base + 300})
	binary.BigEndian.PutUint64(lying[35:], uint64(base+9000))
	conn := floetest.Dial(t, a.Addr)
	for _, b := range [][]byte{floetest.FixCRC(lying), floetest.Batch(floetest.BatchSpec{Records: 10, FirstTimestamp: base + 7000})} {
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis = 9, -1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "skew"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = 2, b
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := conn.Request(req)
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, "produce", resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode, nil)
	}
	// Raw requests: kadm asks again for the end offset when the answer is
	// no offset.
	cl := a.Client(t)
	list := func(ts int64) []kmsg.ListOffsetsResponseTopicPartition {
		t.Helper()
		req := kmsg.NewPtrListOffsetsRequest()
		req.ReplicaID = -1
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "skew"
		for p := range int32(3) {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.Timestamp = p, ts
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions
	}
	check := func(name string, got []kmsg.ListOffsetsResponseTopicPartition, p int32, wantOffset, wantTS int64) {
		t.Helper()
		for _, o := range got {
			if o.Partition == p && (o.ErrorCode != 0 || o.Offset != wantOffset || o.Timestamp != wantTS) {
				t.Errorf("%s, partition %d: offset %d timestamp %d (%v), want offset %d timestamp %d", name, p, o.Offset, o.Timestamp, kerr.ErrorForCode(o.ErrorCode), wantOffset, wantTS)
			}
		}
	}
	got := list(base + 1000)
	check("after base+1000", got, 0, 0, base+5000)
	check("after base+1000", got, 1, 0, base+5000)
	check("after base+8000", list(base+8000), 2, -1, -1)
	check("after base+6500", list(base+6500), 2, 10, base+7000)
	check("max timestamp", list(-3), 2, 19, base+7009)

	if _, err := adm.DeleteRecords(ctx, kadm.Offsets{"skew": {0: {At: 5}, 1: {At: 5}}}); err != nil {
		t.Fatal(err)
	}
	got = list(base + 1000)
	check("after base+1000 from 5", got, 0, 20, base+6000)
	check("after base+1000 from 5", got, 1, -1, -1)
	got = list(-3)
	check("max timestamp from 5", got, 0, 29, base+6009)
	check("max timestamp from 5", got, 1, 19, base+209)
}

func TestLogAppendTime(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})
	ctx := ctxT(t)
	adm := kadm.NewClient(a.Client(t))
	lat := "LogAppendTime"
	if _, err := adm.CreateTopic(ctx, 1, -1, map[string]*string{"message.timestamp.type": &lat}, "lat"); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	prod := a.Client(t, kgo.DefaultProduceTopic("lat"))
	old := time.Unix(1000, 0)
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("x"), Timestamp: old}, &kgo.Record{Value: []byte("y"), Timestamp: old}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cons := a.Client(t, kgo.ConsumeTopics("lat"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	n := 0
	for n < 2 {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal(ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			if r.Attrs.TimestampType() != 1 || r.Timestamp.Before(before) {
				t.Errorf("record %d: timestamp %v type %d, want the append time", r.Offset, r.Timestamp, r.Attrs.TimestampType())
			}
		})
	}
}

// TestFetchFirstBatchLargerThanLimits: KIP-74 — the first batch comes back
// even when it exceeds MaxBytes and PartitionMaxBytes, and nothing else
// does.
func TestFetchFirstBatchLargerThanLimits(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})
	createTopic(t, a, "big", 2, nil)
	c := floetest.Dial(t, a.Addr)
	batch := floetest.Batch(floetest.BatchSpec{Records: 1, Value: make([]byte, 50_000)})
	small := floetest.Batch(floetest.BatchSpec{Records: 1})
	for _, b := range [][]byte{batch, batch} {
		ps := produce(t, c, produceReq("big", -1, b, small))
		wantCode(t, "produce", ps[0].ErrorCode, nil)
	}
	req := kmsg.NewPtrFetchRequest()
	req.Version = 12
	req.MaxBytes = 1000
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "big"
	for p := int32(0); p < 2; p++ {
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.PartitionMaxBytes = p, 1000
		ft.Partitions = append(ft.Partitions, fp)
	}
	req.Topics = append(req.Topics, ft)
	resp, err := c.Request(req)
	if err != nil {
		t.Fatal(err)
	}
	ps := resp.(*kmsg.FetchResponse).Topics[0].Partitions
	if len(ps[0].RecordBatches) != len(batch) {
		t.Fatalf("partition 0: %d bytes, want exactly the first batch (%d)", len(ps[0].RecordBatches), len(batch))
	}
	if len(ps[1].RecordBatches) != 0 || ps[1].HighWatermark != 2 {
		t.Fatalf("partition 1: %d bytes (hw %d), want none once the limit is used", len(ps[1].RecordBatches), ps[1].HighWatermark)
	}
}

// TestListOffsetsManyPartitions asks for many partitions at once, in a
// scrambled order with bad ones among them: the partitions are looked up
// concurrently, and every answer must still land in its request slot.
func TestListOffsetsManyPartitions(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})
	ctx := ctxT(t)
	const parts = 64
	adm := kadm.NewClient(a.Client(t))
	if _, err := adm.CreateTopic(ctx, parts, -1, nil, "many"); err != nil {
		t.Fatal(err)
	}
	// Partition p holds p%5 records.
	prod := a.Client(t, kgo.DefaultProduceTopic("many"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var rs []*kgo.Record
	for p := int32(0); p < parts; p++ {
		for range p % 5 {
			rs = append(rs, &kgo.Record{Partition: p, Value: []byte("v")})
		}
	}
	if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = 7
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = "many"
	order := []int32{parts, -1} // two bad partitions first
	for p := int32(parts - 1); p >= 0; p -= 2 {
		order = append(order, p)
	}
	for p := int32(0); p < parts; p += 2 {
		order = append(order, p)
	}
	for _, p := range order {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	unknown := kmsg.NewListOffsetsRequestTopic()
	unknown.Topic = "no-such-topic"
	unknown.Partitions = rt.Partitions[2:4]
	req.Topics = append(req.Topics, rt, unknown)
	// A raw connection: a kgo client would split the request by leader.
	resp, err := floetest.Dial(t, a.Addr).Request(req)
	if err != nil {
		t.Fatal(err)
	}
	kresp := resp.(*kmsg.ListOffsetsResponse)
	if len(kresp.Topics) != 2 || kresp.Topics[0].Topic != "many" || kresp.Topics[1].Topic != "no-such-topic" {
		t.Fatalf("topics %+v", kresp.Topics)
	}
	got := kresp.Topics[0].Partitions
	if len(got) != len(order) {
		t.Fatalf("%d partitions answered, want %d", len(got), len(order))
	}
	for i, p := range order {
		g := got[i]
		switch {
		case g.Partition != p:
			t.Errorf("slot %d: partition %d, want %d", i, g.Partition, p)
		case p < 0 || p >= parts:
			if g.ErrorCode != kerr.UnknownTopicOrPartition.Code || g.Offset != -1 {
				t.Errorf("partition %d: error %d offset %d, want UNKNOWN_TOPIC_OR_PARTITION and -1", p, g.ErrorCode, g.Offset)
			}
		case g.ErrorCode != 0 || g.Offset != int64(p%5):
			t.Errorf("partition %d: error %d offset %d, want offset %d", p, g.ErrorCode, g.Offset, p%5)
		}
	}
	for _, g := range kresp.Topics[1].Partitions {
		if g.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Errorf("unknown topic partition %d: error %d", g.Partition, g.ErrorCode)
		}
	}
}
