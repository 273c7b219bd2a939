package agent_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/internal/testenv"
	"github.com/floebroker/floe/tests/floetest"
)

// fetchAt fetches one partition at offset through conn.
func fetchAt(t *testing.T, conn *floetest.Conn, topic string, offset int64) kmsg.FetchResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(11)
	req.MaxWaitMillis, req.MaxBytes = 0, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset, rp.PartitionMaxBytes, rp.LogStartOffset = offset, 1<<20, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := conn.Request(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.(*kmsg.FetchResponse).Topics[0].Partitions[0]
}

// A fetch below a log start that moved without this agent (retention by
// a compactor, DeleteRecords through another agent) is OFFSET_OUT_OF_RANGE
// with the new log start, so the consumer resets at once: never a
// KAFKA_STORAGE_ERROR it retries until the agent's cached log start ages.
func TestFetchBelowLogStartMovedElsewhere(t *testing.T) {
	dir := t.TempDir()
	a := floetest.Start(t, floetest.Options{Dir: dir})
	ctx := ctxT(t)
	if _, err := kadm.NewClient(a.Client(t)).CreateTopic(ctx, 1, -1, nil, "moved"); err != nil {
		t.Fatal(err)
	}
	prod := a.Client(t, kgo.DefaultProduceTopic("moved"))
	for b := 0; b < 10; b++ {
		var rs []*kgo.Record
		for i := 0; i < 10; i++ {
			rs = append(rs, &kgo.Record{Value: []byte{byte(b*10 + i)}})
		}
		if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	prod.Close()
	// A fresh agent: it knows the partition from the catalog only.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	a = floetest.Start(t, floetest.Options{Dir: dir})
	conn := floetest.Dial(t, a.Addr)
	if p := fetchAt(t, conn, "moved", 0); p.ErrorCode != 0 || len(p.RecordBatches) == 0 {
		t.Fatalf("fetch at 0: error %d, %d bytes", p.ErrorCode, len(p.RecordBatches))
	}
	topic, err := a.Catalog.Topic(ctx, "moved")
	if err != nil {
		t.Fatal(err)
	}
	// As the compactor's retention does: straight to the catalog.
	if _, err := a.Catalog.DeleteRecords(ctx, catalog.TopicPartition{TopicID: topic.ID, Partition: 0}, 50); err != nil {
		t.Fatal(err)
	}
	p := fetchAt(t, conn, "moved", 20)
	if p.ErrorCode != kerr.OffsetOutOfRange.Code || p.LogStartOffset != 50 {
		t.Fatalf("fetch at 20 below the new log start 50: error %v, log start %d; want OFFSET_OUT_OF_RANGE, 50", kerr.ErrorForCode(p.ErrorCode), p.LogStartOffset)
	}
}

// A timestamp lookup after the log start moved without this agent
// (retention by a compactor, DeleteRecords through another agent) answers
// no offset below the new log start: the catalog picks the row from its
// log start, and the record is searched for from that same log start, not
// from the one the agent cached for its fetches.
func TestListOffsetsBelowLogStartMovedElsewhere(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})
	ctx := ctxT(t)
	adm := kadm.NewClient(a.Client(t))
	if _, err := adm.CreateTopic(ctx, 1, -1, nil, "movedts"); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).UnixMilli()
	var rs []*kgo.Record
	for i := range 10 {
		rs = append(rs, &kgo.Record{Value: []byte{byte(i)}, Timestamp: time.UnixMilli(base + int64(i))})
	}
	if err := a.Client(t, kgo.DefaultProduceTopic("movedts")).ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// The agent caches the log start, 0, for its fetches.
	conn := floetest.Dial(t, a.Addr)
	if p := fetchAt(t, conn, "movedts", 0); p.ErrorCode != 0 || len(p.RecordBatches) == 0 {
		t.Fatalf("fetch at 0: error %d, %d bytes", p.ErrorCode, len(p.RecordBatches))
	}
	topic, err := a.Catalog.Topic(ctx, "movedts")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Catalog.DeleteRecords(ctx, catalog.TopicPartition{TopicID: topic.ID, Partition: 0}, 5); err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrListOffsetsRequest()
	req.SetVersion(7)
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = "movedts"
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp = 0, base
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := conn.Request(req)
	if err != nil {
		t.Fatal(err)
	}
	if p := resp.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0]; p.ErrorCode != 0 || p.Offset != 5 || p.Timestamp != base+5 {
		t.Fatalf("first offset at or after the first record's timestamp, the log start moved to 5: offset %d timestamp %d (%v), want 5, %d",
			p.Offset, p.Timestamp, kerr.ErrorForCode(p.ErrorCode), base+5)
	}
}

// fetchPartitionAt fetches one partition at offset through conn.
func fetchPartitionAt(t *testing.T, conn *floetest.Conn, topic string, partition int32, offset int64) kmsg.FetchResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(11)
	req.MaxWaitMillis, req.MaxBytes = 0, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes, rp.LogStartOffset = partition, offset, 1<<20, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := conn.Request(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.(*kmsg.FetchResponse).Topics[0].Partitions[0]
}

// DeleteRecords answers once no agent of the fleet serves the deleted
// records, as Kafka's waits for every replica's log start: a fetch below
// the new log start on another agent is OFFSET_OUT_OF_RANGE as soon as
// the answer is in, whether that agent read the partition's log start
// just before (it serves fetches from memory on it) or long before. A
// request whose timeout is shorter than the wait is answered
// REQUEST_TIMED_OUT, its records deleted all the same, as in Kafka.
func TestDeleteRecordsUnreadableOnOtherAgents(t *testing.T) {
	cat, bkt := sharedStores(t)
	a := floetest.Start(t, floetest.Options{Catalog: cat, Bucket: bkt})
	b := floetest.Start(t, floetest.Options{Catalog: cat, Bucket: bkt})
	ctx := ctxT(t)
	admA := kadm.NewClient(a.Client(t))
	if _, err := admA.CreateTopic(ctx, 2, -1, nil, "held"); err != nil {
		t.Fatal(err)
	}
	// Produced through b, whose tail index then holds the rows: its
	// fetches are served from memory, on the log start it cached.
	prod := b.Client(t, kgo.DefaultProduceTopic("held"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := range int32(2) {
		var rs []*kgo.Record
		for range 10 {
			rs = append(rs, &kgo.Record{Partition: p, Value: []byte("v")})
		}
		if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	conn := floetest.Dial(t, b.Addr)
	read := func(p int32) {
		t.Helper()
		if got := fetchPartitionAt(t, conn, "held", p, 0); got.ErrorCode != 0 || len(got.RecordBatches) == 0 {
			t.Fatalf("fetch of partition %d at 0 on b: %v, %d bytes", p, kerr.ErrorForCode(got.ErrorCode), len(got.RecordBatches))
		}
	}
	// Partition 1's log start is read long before the delete, partition
	// 0's just before.
	read(1)
	time.Sleep(agent.LogStartMaxAge + 100*time.Millisecond)
	read(0)
	start := time.Now()
	resp, err := admA.DeleteRecords(ctx, kadm.Offsets{"held": {0: {At: 5}, 1: {At: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	held := time.Since(start)
	for p := range int32(2) {
		if r, _ := resp.Lookup("held", p); r.Err != nil || r.LowWatermark != 5 {
			t.Fatalf("delete records of partition %d: %v, low watermark %d", p, r.Err, r.LowWatermark)
		}
		for _, off := range []int64{0, 4} {
			if got := fetchPartitionAt(t, conn, "held", p, off); got.ErrorCode != kerr.OffsetOutOfRange.Code || got.LogStartOffset != 5 {
				t.Errorf("fetch of partition %d at %d on b once DeleteRecords(5) through a answered (after %v): %v, %d bytes, log start %d; want OFFSET_OUT_OF_RANGE, log start 5",
					p, off, held.Round(time.Millisecond), kerr.ErrorForCode(got.ErrorCode), len(got.RecordBatches), got.LogStartOffset)
			}
		}
	}
	if held < agent.LogStartMaxAge {
		t.Errorf("DeleteRecords answered after %v, before the fleet's log starts can be %v old", held, agent.LogStartMaxAge)
	}

	// A timeout shorter than the wait.
	req := kmsg.NewPtrDeleteRecordsRequest()
	req.SetVersion(2)
	req.TimeoutMillis = 100
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = "held"
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition, rp.Offset = 0, 7
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	start = time.Now()
	dresp, err := floetest.Dial(t, a.Addr).Request(req)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if p := dresp.(*kmsg.DeleteRecordsResponse).Topics[0].Partitions[0]; p.ErrorCode != kerr.RequestTimedOut.Code || p.LowWatermark != 7 {
		t.Errorf("delete records with a 100 ms timeout: %v, low watermark %d; want REQUEST_TIMED_OUT, 7", kerr.ErrorForCode(p.ErrorCode), p.LowWatermark)
	}
	if took < 100*time.Millisecond || took >= agent.LogStartMaxAge {
		t.Errorf("delete records with a 100 ms timeout answered after %v", took)
	}
	lo, err := admA.ListStartOffsets(ctx, "held")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := lo.Lookup("held", 0); o.Offset != 7 {
		t.Errorf("log start after the timed out delete: %d, want 7", o.Offset)
	}
}

// DeleteRecords and OffsetForLeaderEpoch on a partition another agent
// added answer for it, not UNKNOWN_TOPIC_OR_PARTITION from a topic cached
// with fewer partitions (ListOffsets, Fetch and Produce re-read such a
// topic).
func TestPartitionAddedElsewhere(t *testing.T) {
	cat, bkt := sharedStores(t)
	a := floetest.Start(t, floetest.Options{Catalog: cat, Bucket: bkt})
	b := floetest.Start(t, floetest.Options{Catalog: cat, Bucket: bkt})
	ctx := ctxT(t)
	admA := kadm.NewClient(a.Client(t))
	if _, err := admA.CreateTopic(ctx, 1, -1, nil, "grow"); err != nil {
		t.Fatal(err)
	}
	conn := floetest.Dial(t, b.Addr)
	epochReq := func(p int32) *kmsg.OffsetForLeaderEpochRequest {
		req := kmsg.NewPtrOffsetForLeaderEpochRequest()
		req.SetVersion(3)
		req.ReplicaID = -1
		rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
		rt.Topic = "grow"
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.Partition, rp.CurrentLeaderEpoch, rp.LeaderEpoch = p, -1, 0
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return req
	}
	// b caches the topic with one partition.
	if resp, err := conn.Request(epochReq(0)); err != nil || resp.(*kmsg.OffsetForLeaderEpochResponse).Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("offset for leader epoch of partition 0: %v %+v", err, resp)
	}
	if _, err := admA.CreatePartitions(ctx, 2, "grow"); err != nil {
		t.Fatal(err)
	}
	resp, err := conn.Request(epochReq(2))
	if err != nil {
		t.Fatal(err)
	}
	if p := resp.(*kmsg.OffsetForLeaderEpochResponse).Topics[0].Partitions[0]; p.ErrorCode != 0 || p.EndOffset != 0 {
		t.Errorf("offset for leader epoch of the new partition 2: %v, end offset %d", kerr.ErrorForCode(p.ErrorCode), p.EndOffset)
	}
	del := kmsg.NewPtrDeleteRecordsRequest()
	del.SetVersion(2)
	dt := kmsg.NewDeleteRecordsRequestTopic()
	dt.Topic = "grow"
	dp := kmsg.NewDeleteRecordsRequestTopicPartition()
	dp.Partition, dp.Offset = 2, -1
	dt.Partitions = append(dt.Partitions, dp)
	del.Topics = append(del.Topics, dt)
	dresp, err := conn.Request(del)
	if err != nil {
		t.Fatal(err)
	}
	if p := dresp.(*kmsg.DeleteRecordsResponse).Topics[0].Partitions[0]; p.ErrorCode != 0 || p.LowWatermark != 0 {
		t.Errorf("delete records of the new partition 2: %v, low watermark %d", kerr.ErrorForCode(p.ErrorCode), p.LowWatermark)
	}
}

// kcat (librdkafka) positioned inside a deleted range resets as
// auto.offset.reset says, and a timestamp lookup below the log start
// starts at the log start.
func TestKcatInsideDeletedRange(t *testing.T) {
	kcat := testenv.Kcat(t)
	a := floetest.Start(t, floetest.Options{})
	ctx := ctxT(t)
	adm := kadm.NewClient(a.Client(t))
	if _, err := adm.CreateTopic(ctx, 1, -1, nil, "gone"); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour)
	prod := a.Client(t, kgo.DefaultProduceTopic("gone"))
	for b := 0; b < 10; b++ {
		var rs []*kgo.Record
		for i := b * 10; i < b*10+10; i++ {
			rs = append(rs, &kgo.Record{Value: fmt.Appendf(nil, "%d", i), Timestamp: base.Add(time.Duration(i) * time.Second)})
		}
		if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := adm.DeleteRecords(ctx, kadm.Offsets{"gone": {0: {At: 30}}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		first string
		n     int
	}{
		{"offset 5, reset earliest", []string{"-o", "5", "-X", "auto.offset.reset=earliest"}, "30", 70},
		{"offset 5, reset latest", []string{"-o", "5", "-X", "auto.offset.reset=latest"}, "", 0},
		{"beginning", []string{"-o", "beginning"}, "30", 70},
		{"timestamp before the log start", []string{"-o", fmt.Sprintf("s@%d", base.UnixMilli()+5000)}, "30", 70},
		{"timestamp after it", []string{"-o", fmt.Sprintf("s@%d", base.UnixMilli()+42000)}, "42", 58},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := testenv.RunKcat(t, kcat, nil, append([]string{"-b", a.Addr, "-C", "-t", "gone", "-p", "0", "-e", "-q", "-f", "%s\n"}, tc.args...)...)
			lines := strings.Fields(string(out))
			if len(lines) != tc.n || (tc.n > 0 && lines[0] != tc.first) {
				t.Fatalf("kcat %v: %d records, first %v; want %d from %s", tc.args, len(lines), lines[:min(len(lines), 1)], tc.n, tc.first)
			}
		})
	}
}

// A consumer positioned by ListOffsets (its cursor then carries the
// leader epoch, the fleet's generation) goes on after an agent joins
// (a new generation: franz-go validates the position with
// OffsetForLeaderEpoch) without any error or data loss reported.
func TestPositionValidatedAfterAgentJoins(t *testing.T) {
	cat, bkt := sharedStores(t)
	a := floetest.Start(t, floetest.Options{Catalog: cat, Bucket: bkt})
	ctx := ctxT(t)
	prod := a.Client(t)
	if _, err := kadm.NewClient(prod).CreateTopic(ctx, 4, -1, nil, "epochs"); err != nil {
		t.Fatal(err)
	}
	produce := func() {
		t.Helper()
		var rs []*kgo.Record
		for i := 0; i < 40; i++ {
			rs = append(rs, &kgo.Record{Topic: "epochs", Partition: int32(i % 4), Value: []byte("v")})
		}
		if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce()
	var validations epochRequests
	cons := a.Client(t, kgo.WithHooks(&validations), kgo.ConsumeTopics("epochs"), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchMaxWait(100*time.Millisecond), kgo.MetadataMinAge(50*time.Millisecond), kgo.MetadataMaxAge(100*time.Millisecond))
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	if fs := cons.PollFetches(pctx); fs.NumRecords() != 0 {
		t.Fatalf("consumed %d records before any was produced after the end", fs.NumRecords())
	}
	cancel()
	floetest.Start(t, floetest.Options{Catalog: cat, Bucket: bkt})
	time.Sleep(time.Second) // the agents see the new generation; the consumer's metadata too
	produce()
	n := 0
	for n < 40 {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of 40 records", n)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		n += fs.NumRecords()
	}
	if validations.n.Load() == 0 {
		t.Fatal("the consumer never sent OffsetForLeaderEpoch: the test did not test it")
	}
}

// epochRequests counts a client's OffsetForLeaderEpoch requests.
type epochRequests struct{ n atomic.Int64 }

func (e *epochRequests) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, _ error) {
	if key == 23 {
		e.n.Add(1)
	}
}

// A rack-aware consumer (KIP-392) whose position was deleted resets as
// auto.offset.reset says. Kafka's leader names no preferred replica for
// an offset no replica holds, so the client gets OFFSET_OUT_OF_RANGE; a
// leader that steered it to its zone's agent anyway would send it back and
// forth (that agent answers out of range, the client returns to the
// leader) without ever resetting.
func TestRackConsumerOutOfRangeResets(t *testing.T) {
	a, b := twoZones(t)
	ctx := ctxT(t)
	const parts = 16
	adm := kadm.NewClient(a.Client(t))
	if _, err := adm.CreateTopic(ctx, parts, -1, nil, "racked"); err != nil {
		t.Fatal(err)
	}
	var rs []*kgo.Record
	for i := 0; i < 10*parts; i++ {
		rs = append(rs, &kgo.Record{Topic: "racked", Partition: int32(i % parts), Value: []byte("v")})
	}
	prod := a.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	del := kadm.Offsets{}
	for p := int32(0); p < parts; p++ {
		del.Add(kadm.Offset{Topic: "racked", Partition: p, At: 5})
	}
	if _, err := adm.DeleteRecords(ctx, del); err != nil {
		t.Fatal(err)
	}
	// Both agents must list each other, or nothing is steered.
	waitListEachOther(t, a, b)
	from0 := map[string]map[int32]kgo.Offset{"racked": {}}
	for p := int32(0); p < parts; p++ {
		from0["racked"][p] = kgo.NewOffset().At(0)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(a.Addr, b.Addr), kgo.Rack("b"), kgo.ConsumePartitions(from0),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got := map[int32]int{}
	for n := 0; n < 5*parts; {
		fs := cl.PollFetches(pctx)
		if pctx.Err() != nil {
			t.Fatalf("consumed %d of %d records after the reset (per partition: %v)", n, 5*parts, got)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < 5 {
				t.Fatalf("record at %d below the log start 5", r.Offset)
			}
			got[r.Partition]++
			n++
		})
	}
	cl.Close()

	// librdkafka resets too.
	kcat := testenv.Kcat(t)
	out := testenv.RunKcat(t, kcat, nil, "-b", a.Addr+","+b.Addr, "-C", "-t", "racked", "-o", "0", "-e", "-q", "-f", "%o\n",
		"-X", "client.rack=b", "-X", "auto.offset.reset=earliest")
	if lines := strings.Fields(string(out)); len(lines) != 5*parts {
		t.Fatalf("kcat read %d records, want %d", len(lines), 5*parts)
	}
}

// waitListEachOther waits until every agent's Metadata lists them all.
func waitListEachOther(t *testing.T, agents ...*floetest.Agent) {
	t.Helper()
	for _, ag := range agents {
		conn := floetest.Dial(t, ag.Addr)
		for deadline := time.Now().Add(10 * time.Second); ; {
			resp, err := conn.Request(kmsg.NewPtrMetadataRequest())
			if err != nil {
				t.Fatal(err)
			}
			if n := len(resp.(*kmsg.MetadataResponse).Brokers); n == len(agents) {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("agent at %s lists %d agents, want %d", ag.Addr, n, len(agents))
			}
			time.Sleep(20 * time.Millisecond)
		}
		conn.Close()
	}
}

// twoZones starts two agents on one catalog and bucket, in zones a and b.
func twoZones(t *testing.T) (a, b *floetest.Agent) {
	t.Helper()
	cat, bkt := sharedStores(t)
	inZone := func(z string) func(*agent.Config) { return func(c *agent.Config) { c.Zone = z } }
	a = floetest.Start(t, floetest.Options{Catalog: cat, Bucket: bkt, Config: inZone("a")})
	b = floetest.Start(t, floetest.Options{Catalog: cat, Bucket: bkt, Config: inZone("b")})
	return a, b
}

// TestPreferredReplicaAnswerCarriesOffsets: a fetch steered to the
// consumer's zone (KIP-392) carries the partition's high watermark, last
// stable offset and log start offset, as Kafka's does, so lag read from
// it (by clients and exporters) stays current.
func TestPreferredReplicaAnswerCarriesOffsets(t *testing.T) {
	a, b := twoZones(t)
	ctx := ctxT(t)
	if _, err := kadm.NewClient(a.Client(t)).CreateTopic(ctx, 1, -1, nil, "steered"); err != nil {
		t.Fatal(err)
	}
	var rs []*kgo.Record
	for range 10 {
		rs = append(rs, &kgo.Record{Topic: "steered", Value: []byte("v")})
	}
	if err := a.Client(t).ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	conn := floetest.Dial(t, a.Addr)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		req := kmsg.NewPtrFetchRequest()
		req.Version, req.MaxBytes, req.Rack = 12, 1<<20, "b"
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "steered"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.FetchOffset, rp.PartitionMaxBytes = 3, 1<<20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := conn.Request(req)
		if err != nil {
			t.Fatal(err)
		}
		p := resp.(*kmsg.FetchResponse).Topics[0].Partitions[0]
		if p.PreferredReadReplica == b.Agent.NodeID() {
			if p.ErrorCode != 0 || p.HighWatermark != 10 || p.LastStableOffset != 10 || p.LogStartOffset != 0 {
				t.Fatalf("steered answer: error %v, high watermark %d, last stable %d, log start %d; want 10, 10, 0",
					kerr.ErrorForCode(p.ErrorCode), p.HighWatermark, p.LastStableOffset, p.LogStartOffset)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("never steered to zone b's agent (preferred %d)", p.PreferredReadReplica)
		}
	}
}

// TestPreferredReplicaIsListedReplica: whatever agent a consumer fetches
// from and whatever its rack, the preferred read replica a fetch names
// (KIP-392) is among the partition's replicas in every agent's Metadata.
// The Java consumer (since Kafka 3.4, KAFKA-14379) ignores a preferred
// replica its metadata does not list as a replica: it refreshes its
// metadata, fetches from the leader, is steered again, and never consumes.
// Metadata listed the leader alone, chosen among all agents for a client
// that names its zone only in its rack id, so a rack-a consumer was
// steered to zone a's leader of a partition Metadata gave to zone b's.
func TestPreferredReplicaIsListedReplica(t *testing.T) {
	a, b := twoZones(t)
	ctx := ctxT(t)
	const parts = 16
	if _, err := kadm.NewClient(a.Client(t)).CreateTopic(ctx, parts, -1, nil, "steering"); err != nil {
		t.Fatal(err)
	}
	id := topicID(t, a, "steering")
	waitListEachOther(t, a, b)
	agents := []*floetest.Agent{a, b}
	conns := map[*floetest.Agent]*floetest.Conn{}
	for _, ag := range agents {
		conns[ag] = floetest.Dial(t, ag.Addr)
	}
	steered := 0
	for _, md := range agents {
		req := kmsg.NewPtrMetadataRequest()
		req.Version = 12
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr("steering")
		req.Topics = append(req.Topics, rt)
		resp, err := conns[md].Request(req)
		if err != nil {
			t.Fatal(err)
		}
		replicas := map[int32][]int32{}
		for _, p := range resp.(*kmsg.MetadataResponse).Topics[0].Partitions {
			if len(p.Replicas) == 0 || p.Replicas[0] != p.Leader || !slices.Equal(p.ISR, p.Replicas) {
				t.Fatalf("partition %d: leader %d, replicas %v, ISR %v; want the leader first and all in sync", p.Partition, p.Leader, p.Replicas, p.ISR)
			}
			replicas[p.Partition] = p.Replicas
		}
		for _, ag := range agents {
			for _, rack := range []string{"a", "b", "c"} {
				freq := kmsg.NewPtrFetchRequest()
				freq.Version, freq.MaxBytes, freq.Rack = 13, 1<<20, rack
				ft := kmsg.NewFetchRequestTopic()
				ft.TopicID = id
				for p := range int32(parts) {
					fp := kmsg.NewFetchRequestTopicPartition()
					fp.Partition, fp.PartitionMaxBytes = p, 1<<20
					ft.Partitions = append(ft.Partitions, fp)
				}
				freq.Topics = append(freq.Topics, ft)
				fresp, err := conns[ag].Request(freq)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range fresp.(*kmsg.FetchResponse).Topics[0].Partitions {
					if p.PreferredReadReplica < 0 {
						continue
					}
					steered++
					if !slices.Contains(replicas[p.Partition], p.PreferredReadReplica) {
						t.Errorf("partition %d, rack %s, fetched from node %d: steered to node %d, not among its replicas %v in node %d's Metadata",
							p.Partition, rack, ag.Agent.NodeID(), p.PreferredReadReplica, replicas[p.Partition], md.Agent.NodeID())
					}
				}
			}
		}
	}
	if steered == 0 {
		t.Fatal("no fetch was steered")
	}
}

// recreateElsewhere deletes the named topic and creates it again with
// parts partitions straight in the catalog, as another agent would: a
// leaves what it cached of the old topic, and returns the old id.
func recreateElsewhere(t *testing.T, a *floetest.Agent, name string, parts int32) catalog.TopicID {
	t.Helper()
	old := topicID(t, a, name)
	if _, err := a.Catalog.DeleteTopic(ctxT(t), name, old); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Catalog.CreateTopic(ctxT(t), catalog.TopicSpec{Name: name, Partitions: parts}); err != nil {
		t.Fatal(err)
	}
	return old
}

// TestEndOffsetsOfRecreatedTopic: OffsetForLeaderEpoch and ListOffsets by
// name of a topic deleted and created again through another agent, which
// this one still has cached, answer for the new topic at once, not
// UNKNOWN_TOPIC_OR_PARTITION until the cache entry ages (a consumer
// validating its position after a metadata refresh would retry for that
// long). A partition the new topic does not have stays unknown.
func TestEndOffsetsOfRecreatedTopic(t *testing.T) {
	epochs := func(conn *floetest.Conn, topic string) []kmsg.OffsetForLeaderEpochResponseTopicPartition {
		t.Helper()
		req := kmsg.NewPtrOffsetForLeaderEpochRequest()
		req.SetVersion(3)
		req.ReplicaID = -1
		rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
		rt.Topic = topic
		for p := range int32(2) {
			rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
			rp.Partition, rp.CurrentLeaderEpoch, rp.LeaderEpoch = p, -1, 0
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := conn.Request(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.(*kmsg.OffsetForLeaderEpochResponse).Topics[0].Partitions
	}
	latest := func(conn *floetest.Conn, topic string) []kmsg.ListOffsetsResponseTopicPartition {
		t.Helper()
		req := kmsg.NewPtrListOffsetsRequest()
		req.SetVersion(7)
		req.ReplicaID = -1
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		for p := range int32(2) {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.CurrentLeaderEpoch, rp.Timestamp = p, -1, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := conn.Request(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.(*kmsg.ListOffsetsResponse).Topics[0].Partitions
	}
	for _, tc := range []struct {
		name string
		// ends asks for the end offsets of partitions 0 and 1.
		ends func(conn *floetest.Conn, topic string) ([2]int16, [2]int64)
	}{
		{"OffsetForLeaderEpoch", func(conn *floetest.Conn, topic string) (codes [2]int16, offs [2]int64) {
			for i, p := range epochs(conn, topic) {
				codes[i], offs[i] = p.ErrorCode, p.EndOffset
			}
			return codes, offs
		}},
		{"ListOffsets", func(conn *floetest.Conn, topic string) (codes [2]int16, offs [2]int64) {
			for i, p := range latest(conn, topic) {
				codes[i], offs[i] = p.ErrorCode, p.Offset
			}
			return codes, offs
		}},
	} {
		ends := tc.ends
		t.Run(tc.name, func(t *testing.T) {
			a := floetest.Start(t, floetest.Options{NoAutoCreate: true})
			const topic = "recreated"
			createTopic(t, a, topic, 2, nil)
			conn := floetest.Dial(t, a.Addr)
			b := floetest.Batch(floetest.BatchSpec{Records: 3, FirstTimestamp: time.Now().UnixMilli()})
			for _, p := range produce(t, conn, produceReq(topic, -1, b, b)) {
				wantCode(t, "produce", p.ErrorCode, nil)
			}
			// a caches the topic and its end offsets.
			if codes, offs := ends(conn, topic); codes != [2]int16{} || offs != [2]int64{3, 3} {
				t.Fatalf("before: errors %v, end offsets %v; want none, 3 3", codes, offs)
			}
			recreateElsewhere(t, a, topic, 1)
			codes, offs := ends(conn, topic)
			if codes[0] != 0 || offs[0] != 0 {
				t.Errorf("partition 0 of the new topic: %v, end offset %d; want no error, 0", kerr.ErrorForCode(codes[0]), offs[0])
			}
			if codes[1] != kerr.UnknownTopicOrPartition.Code {
				t.Errorf("partition 1, which the new topic lacks: %v, want UNKNOWN_TOPIC_OR_PARTITION", kerr.ErrorForCode(codes[1]))
			}
		})
	}
}

// TestMetadataOfDeletedTopicID: Metadata by topic id (v12+) of a topic
// deleted and created again through another agent, which this one still
// has cached, answers UNKNOWN_TOPIC_ID for the old id at once, as Kafka
// does, and the new topic for the new id: never the old topic, with its
// name and partitions and no error, until the cache entry ages. Asked for
// few ids (read one by one) and for many (read with one listing).
func TestMetadataOfDeletedTopicID(t *testing.T) {
	metadata := func(conn *floetest.Conn, ids ...catalog.TopicID) []kmsg.MetadataResponseTopic {
		t.Helper()
		req := kmsg.NewPtrMetadataRequest()
		req.SetVersion(12)
		for _, id := range ids {
			rt := kmsg.NewMetadataRequestTopic()
			rt.TopicID = id
			req.Topics = append(req.Topics, rt)
		}
		resp, err := conn.Request(req)
		if err != nil {
			t.Fatal(err)
		}
		topics := resp.(*kmsg.MetadataResponse).Topics
		if len(topics) != len(ids) {
			t.Fatalf("%d topics answered, want %d", len(topics), len(ids))
		}
		return topics
	}
	for _, n := range []int{1, 12} {
		t.Run(fmt.Sprintf("%d ids", n), func(t *testing.T) {
			a := floetest.Start(t, floetest.Options{NoAutoCreate: true})
			const topic = "recreated"
			createTopic(t, a, topic, 2, nil)
			conn := floetest.Dial(t, a.Addr)
			old := topicID(t, a, topic)
			// Other ids no topic has: one unknown, and n in all.
			ids := []catalog.TopicID{old}
			for i := 1; i < n; i++ {
				ids = append(ids, catalog.TopicID{0xee, byte(i)})
			}
			if mt := metadata(conn, ids...)[0]; mt.ErrorCode != 0 || len(mt.Partitions) != 2 {
				t.Fatalf("before: %v, %d partitions", kerr.ErrorForCode(mt.ErrorCode), len(mt.Partitions))
			}
			recreateElsewhere(t, a, topic, 1)
			got := metadata(conn, ids...)
			for i, mt := range got {
				if mt.ErrorCode != kerr.UnknownTopicID.Code || mt.Topic != nil || len(mt.Partitions) != 0 {
					t.Errorf("id %x: %v, name %v, %d partitions; want UNKNOWN_TOPIC_ID, no name, none", ids[i][:2], kerr.ErrorForCode(mt.ErrorCode), mt.Topic, len(mt.Partitions))
				}
			}
			nw := topicID(t, a, topic)
			if mt := metadata(conn, append(ids[1:], nw)...)[n-1]; mt.ErrorCode != 0 || mt.Topic == nil || *mt.Topic != topic || len(mt.Partitions) != 1 {
				t.Errorf("the new id: %v, name %v, %d partitions; want %s with 1", kerr.ErrorForCode(mt.ErrorCode), mt.Topic, len(mt.Partitions), topic)
			}
		})
	}
}

// TestSweepForgetsTopicDeletedElsewhere: a topic deleted through another
// agent leaves this agent's tail index and topic cache within a sweep
// period, though no client of this agent lists every topic or names the
// topic again (Java, librdkafka and franz-go ask for the topics they use).
// The commit follower had fed it the topic's rows, and they were kept,
// counted against every live partition's share of the tail index's rows,
// for the agent's life.
func TestSweepForgetsTopicDeletedElsewhere(t *testing.T) {
	const period = 50 * time.Millisecond
	t.Cleanup(agent.SetTopicSweepInterval(period)) // restored once the agents stopped
	cat, bkt := sharedStores(t)
	a := floetest.Start(t, floetest.Options{Catalog: cat, Bucket: bkt, NoAutoCreate: true})
	b := floetest.Start(t, floetest.Options{Catalog: cat, Bucket: bkt, NoAutoCreate: true})
	ctx := ctxT(t)
	const parts = 8
	adm := kadm.NewClient(a.Client(t))
	for _, name := range []string{"doomed", "kept"} {
		if _, err := adm.CreateTopic(ctx, parts, -1, nil, name); err != nil {
			t.Fatal(err)
		}
	}
	var rs []*kgo.Record
	for p := range int32(parts) {
		rs = append(rs, &kgo.Record{Topic: "doomed", Partition: p, Value: []byte("v")}, &kgo.Record{Topic: "kept", Partition: p, Value: []byte("v")})
	}
	if err := a.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner())).ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	doomed, kept := topicID(t, a, "doomed"), topicID(t, a, "kept")
	// b learns of both: it caches them for a client naming them, and its
	// follower adds a's commits to its tail index.
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(12)
	for _, name := range []string{"doomed", "kept"} {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, rt)
	}
	if _, err := floetest.Dial(t, b.Addr).Request(req); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		nd, cd := b.Agent.KnowsTopic(doomed)
		nk, ck := b.Agent.KnowsTopic(kept)
		if nd == parts && nk == parts && cd && ck {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b knows %d and %d partitions of the topics in its tail index, cached %v and %v; want %d each, cached", nd, nk, cd, ck, parts)
		}
	}
	if _, err := adm.DeleteTopic(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for deadline := start.Add(100 * period); ; time.Sleep(period / 5) {
		n, cached := b.Agent.KnowsTopic(doomed)
		if n == 0 && !cached {
			t.Logf("forgotten after %v", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after the topic was deleted through another agent, b's tail index holds %d of its partitions, cached %v", time.Since(start).Round(time.Millisecond), n, cached)
		}
	}
	if n, cached := b.Agent.KnowsTopic(kept); n != parts || !cached {
		t.Errorf("the live topic: %d partitions in b's tail index, cached %v; want %d, cached", n, cached, parts)
	}
}
