package agent_test

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/tests/floetest"
)

// Bad input against a live agent: each row of DESIGN.md's table, with raw
// kmsg requests over a net.Conn, while a witness connection checks that
// the agent keeps serving other clients throughout.

const testMaxRequestBytes = 1 << 20

func startBadInputAgent(t *testing.T, autoCreate bool) *floetest.Agent {
	return floetest.Start(t, floetest.Options{
		NoAutoCreate: !autoCreate,
		Config: func(c *agent.Config) {
			c.MaxRequestBytes = testMaxRequestBytes
			c.IdleTimeout = time.Second
		},
	})
}

// witness checks that the agent answers a fresh client.
func witness(t *testing.T, a *floetest.Agent) {
	t.Helper()
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "witness", "1"
	resp, err := c.Request(req)
	if err != nil {
		t.Fatalf("witness: agent stopped serving: %v", err)
	}
	if ec := resp.(*kmsg.ApiVersionsResponse).ErrorCode; ec != 0 {
		t.Fatalf("witness: ApiVersions error %d", ec)
	}
}

func createTopic(t *testing.T, a *floetest.Agent, name string, parts int32, configs map[string]*string) [16]byte {
	t.Helper()
	adm := kadm.NewClient(a.Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, parts, -1, configs, name)
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	return resp.ID
}

func produceReq(topic string, acks int16, parts ...[]byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version = 9
	req.Acks = acks
	req.TimeoutMillis = 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	for i, b := range parts {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition = int32(i)
		rp.Records = b
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	return req
}

func produce(t *testing.T, c *floetest.Conn, req *kmsg.ProduceRequest) []kmsg.ProduceResponseTopicPartition {
	t.Helper()
	resp, err := c.Request(req)
	if err != nil {
		t.Fatalf("produce: %v", err)
	}
	return resp.(*kmsg.ProduceResponse).Topics[0].Partitions
}

func wantCode(t *testing.T, what string, got int16, want *kerr.Error) {
	t.Helper()
	wantCode := int16(0)
	if want != nil {
		wantCode = want.Code
	}
	if got != wantCode {
		t.Fatalf("%s: error code %v, want %v", what, kerr.ErrorForCode(got), want)
	}
}

func TestBadFramesCloseTheConnection(t *testing.T) {
	a := startBadInputAgent(t, true)
	header := func(key, version int16) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(key))
		b = binary.BigEndian.AppendUint16(b, uint16(version))
		b = binary.BigEndian.AppendUint32(b, 7)      // correlation id
		b = binary.BigEndian.AppendUint16(b, 0xffff) // null client id
		return b
	}
	tests := []struct {
		name string
		send func(c *floetest.Conn) error
	}{
		{"oversize frame", func(c *floetest.Conn) error {
			// Only the size is sent: the agent must close without
			// waiting for (or allocating) the body.
			return c.WriteRaw(binary.BigEndian.AppendUint32(nil, testMaxRequestBytes+1))
		}},
		{"negative size", func(c *floetest.Conn) error {
			return c.WriteRaw([]byte{0xff, 0xff, 0xff, 0xfe})
		}},
		{"frame shorter than a header", func(c *floetest.Conn) error {
			return c.WriteFrame([]byte{0, 3, 0})
		}},
		{"garbage body", func(c *floetest.Conn) error {
			return c.WriteFrame(append(header(3, 12), 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xff, 0x7f))
		}},
		{"unknown API key in kmsg", func(c *floetest.Conn) error {
			return c.WriteFrame(append(header(10, 4), 0, 0)) // FindCoordinator: not served
		}},
		{"API key beyond kmsg", func(c *floetest.Conn) error {
			return c.WriteFrame(append(header(1000, 0), 0, 0))
		}},
		{"unsupported version", func(c *floetest.Conn) error {
			return c.WriteFrame(append(header(3, 99), 0, 0))
		}},
		{"produce v2", func(c *floetest.Conn) error {
			return c.WriteFrame(append(header(0, 2), 0, 1, 0, 0, 0, 0, 0, 0, 0, 0))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := floetest.Dial(t, a.Addr)
			if err := tt.send(c); err != nil {
				t.Fatalf("send: %v", err)
			}
			if !c.WaitClosed(5 * time.Second) {
				t.Fatal("agent did not close the connection")
			}
			witness(t, a)
		})
	}
}

func TestApiVersionsTooNew(t *testing.T) {
	a := startBadInputAgent(t, true)
	c := floetest.Dial(t, a.Addr)
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 5 // kmsg knows it, Kafka 4.1 (and Floe) does not serve it
	corr, err := c.Send(req)
	if err != nil {
		t.Fatal(err)
	}
	// The answer is a v0 body (no tags) whatever the request version.
	v0 := kmsg.NewPtrApiVersionsRequest()
	v0.Version = 0
	resp, err := c.Receive(v0, corr)
	if err != nil {
		t.Fatalf("read v0 answer: %v", err)
	}
	av := resp.(*kmsg.ApiVersionsResponse)
	if av.ErrorCode != kerr.UnsupportedVersion.Code || len(av.ApiKeys) == 0 {
		t.Fatalf("answer: error %d, %d keys", av.ErrorCode, len(av.ApiKeys))
	}
	// The connection stays usable at a supported version.
	req.Version = 4
	req.ClientSoftwareName, req.ClientSoftwareVersion = "t", "1"
	if _, err := c.Request(req); err != nil {
		t.Fatalf("ApiVersions v4 after the retry: %v", err)
	}
}

func TestProduceBadBatches(t *testing.T) {
	a := startBadInputAgent(t, true)
	createTopic(t, a, "bad", 2, nil)
	maxBytes := "1000"
	createTopic(t, a, "small", 1, map[string]*string{"max.message.bytes": &maxBytes})
	c := floetest.Dial(t, a.Addr)

	good := floetest.Batch(floetest.BatchSpec{Records: 3})
	badCRC := floetest.Batch(floetest.BatchSpec{Records: 3})
	badCRC[len(badCRC)-1] ^= 0x55
	oldMagic := floetest.Batch(floetest.BatchSpec{Records: 1, Magic: 1})
	badLength := floetest.Batch(floetest.BatchSpec{Records: 2})
	binary.BigEndian.PutUint32(badLength[8:], uint32(len(badLength)))

	t.Run("bad CRC fails only its partition", func(t *testing.T) {
		ps := produce(t, c, produceReq("bad", -1, good, badCRC))
		wantCode(t, "good partition", ps[0].ErrorCode, nil)
		wantCode(t, "bad CRC partition", ps[1].ErrorCode, kerr.CorruptMessage)
		if ps[0].BaseOffset != 0 {
			t.Fatalf("good partition base offset %d, want 0", ps[0].BaseOffset)
		}
		witness(t, a)
	})
	t.Run("old magic", func(t *testing.T) {
		ps := produce(t, c, produceReq("bad", 1, oldMagic))
		wantCode(t, "magic 1", ps[0].ErrorCode, kerr.InvalidRecord)
	})
	t.Run("bad length", func(t *testing.T) {
		ps := produce(t, c, produceReq("bad", 1, badLength))
		// Kafka finds no whole batch in the bytes sent: INVALID_RECORD.
		wantCode(t, "bad length", ps[0].ErrorCode, kerr.InvalidRecord)
	})
	t.Run("too large", func(t *testing.T) {
		big := floetest.Batch(floetest.BatchSpec{Records: 1, Value: make([]byte, 2000)})
		ps := produce(t, c, produceReq("small", -1, big))
		wantCode(t, "2000 byte batch", ps[0].ErrorCode, kerr.MessageTooLarge)
	})
	t.Run("unknown partition", func(t *testing.T) {
		req := produceReq("bad", -1, good)
		req.Topics[0].Partitions[0].Partition = 7
		ps := produce(t, c, req)
		wantCode(t, "partition 7", ps[0].ErrorCode, kerr.UnknownTopicOrPartition)
	})
	// Nothing of the rejected batches is stored: partition 0 holds the one
	// good batch, partition 1 nothing.
	ends := listOffsets(t, c, "bad", 2, -1)
	if ends[0] != 3 || ends[1] != 0 {
		t.Fatalf("end offsets %v, want [3 0]", ends)
	}
	witness(t, a)
}

func TestProduceUnknownTopicWithoutAutoCreate(t *testing.T) {
	a := startBadInputAgent(t, false)
	c := floetest.Dial(t, a.Addr)
	ps := produce(t, c, produceReq("nope", -1, floetest.Batch(floetest.BatchSpec{Records: 1})))
	wantCode(t, "unknown topic", ps[0].ErrorCode, kerr.UnknownTopicOrPartition)
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 12
	md.AllowAutoTopicCreation = true
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr("nope")
	md.Topics = append(md.Topics, rt)
	resp, err := c.Request(md)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, "metadata", resp.(*kmsg.MetadataResponse).Topics[0].ErrorCode, kerr.UnknownTopicOrPartition)
}

func TestIdempotence(t *testing.T) {
	a := startBadInputAgent(t, true)
	createTopic(t, a, "idem", 1, nil)
	c := floetest.Dial(t, a.Addr)
	pid, epoch := initProducer(t, c)

	batch := func(seq int32, ep int16) []byte {
		return floetest.Batch(floetest.BatchSpec{Records: 2, Idempotent: true, ProducerID: pid, ProducerEpoch: ep, BaseSequence: seq})
	}
	ps := produce(t, c, produceReq("idem", -1, batch(0, epoch)))
	wantCode(t, "first batch", ps[0].ErrorCode, nil)
	ps = produce(t, c, produceReq("idem", -1, batch(2, epoch)))
	wantCode(t, "second batch", ps[0].ErrorCode, nil)
	if ps[0].BaseOffset != 2 {
		t.Fatalf("second batch at %d, want 2", ps[0].BaseOffset)
	}

	t.Run("duplicate gets the original offset", func(t *testing.T) {
		ps := produce(t, c, produceReq("idem", -1, batch(0, epoch)))
		wantCode(t, "duplicate", ps[0].ErrorCode, nil)
		if ps[0].BaseOffset != 0 {
			t.Fatalf("duplicate answered offset %d, want the original 0", ps[0].BaseOffset)
		}
		if end := listOffsets(t, c, "idem", 1, -1)[0]; end != 4 {
			t.Fatalf("end offset %d after the duplicate, want 4 (one copy)", end)
		}
	})
	t.Run("out of order sequence", func(t *testing.T) {
		ps := produce(t, c, produceReq("idem", -1, batch(10, epoch)))
		wantCode(t, "sequence gap", ps[0].ErrorCode, kerr.OutOfOrderSequenceNumber)
	})
	t.Run("fenced epoch", func(t *testing.T) {
		bump := kmsg.NewPtrInitProducerIDRequest()
		bump.Version = 4
		bump.ProducerID, bump.ProducerEpoch = pid, epoch
		resp, err := c.Request(bump)
		if err != nil {
			t.Fatal(err)
		}
		b := resp.(*kmsg.InitProducerIDResponse)
		wantCode(t, "epoch bump", b.ErrorCode, nil)
		if b.ProducerID != pid || b.ProducerEpoch != epoch+1 {
			t.Fatalf("bump gave %d/%d, want %d/%d", b.ProducerID, b.ProducerEpoch, pid, epoch+1)
		}
		ps := produce(t, c, produceReq("idem", -1, batch(4, epoch)))
		wantCode(t, "old epoch", ps[0].ErrorCode, kerr.InvalidProducerEpoch)
		ps = produce(t, c, produceReq("idem", -1, batch(0, epoch+1)))
		wantCode(t, "new epoch", ps[0].ErrorCode, nil)
	})
	t.Run("transactional id refused", func(t *testing.T) {
		tx := kmsg.NewPtrInitProducerIDRequest()
		tx.Version = 4
		tx.TransactionalID = kmsg.StringPtr("tx")
		resp, err := c.Request(tx)
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, "transactional", resp.(*kmsg.InitProducerIDResponse).ErrorCode, kerr.TransactionalIDAuthorizationFailed)
	})
	witness(t, a)
}

// TestSlowClientDoesNotBlockOthers leaves a connection inside a frame and
// checks that other clients are served meanwhile and that the stalled one
// is closed after the idle timeout.
func TestSlowClientDoesNotBlockOthers(t *testing.T) {
	a := startBadInputAgent(t, true)
	slow := floetest.Dial(t, a.Addr)
	frame := append(binary.BigEndian.AppendUint32(nil, 100), 0, 3) // 2 of 100 bytes
	if err := slow.WriteRaw(frame); err != nil {
		t.Fatal(err)
	}
	idle := floetest.Dial(t, a.Addr) // connected, never sends
	for i := 0; i < 5; i++ {
		witness(t, a)
	}
	if !slow.WaitClosed(5 * time.Second) {
		t.Fatal("stalled connection not closed after the idle timeout")
	}
	if !idle.WaitClosed(5 * time.Second) {
		t.Fatal("idle connection not closed after the idle timeout")
	}
}

// TestPipelinedResponsesInOrder sends a long-polling fetch and then an
// ApiVersions on one connection: the responses come in request order, and
// an acks=0 produce in between gets none.
func TestPipelinedResponsesInOrder(t *testing.T) {
	a := startBadInputAgent(t, true)
	createTopic(t, a, "order", 1, nil)
	c := floetest.Dial(t, a.Addr)

	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version = 11
	fetch.MaxWaitMillis = 300
	fetch.MinBytes = 1
	fetch.MaxBytes = 1 << 20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "order"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = 0, 0, 1<<20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)

	av := kmsg.NewPtrApiVersionsRequest()
	av.Version = 3
	av.ClientSoftwareName, av.ClientSoftwareVersion = "t", "1"

	start := time.Now()
	fc, err := c.Send(fetch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(produceReq("order", 0, floetest.Batch(floetest.BatchSpec{Records: 1}))); err != nil {
		t.Fatal(err)
	}
	ac, err := c.Send(av)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Receive(fetch, fc)
	if err != nil {
		t.Fatalf("first response is not the fetch's: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("fetch took %v", d)
	}
	if _, err := c.Receive(av, ac); err != nil {
		t.Fatalf("second response is not ApiVersions' (acks=0 must get none): %v", err)
	}
	// The acks=0 record may be answered by the long poll or not: either
	// way it is stored.
	_ = resp
	deadline := time.Now().Add(5 * time.Second)
	for listOffsets(t, c, "order", 1, -1)[0] != 1 {
		if time.Now().After(deadline) {
			t.Fatal("acks=0 record never stored")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listOffsets returns each partition's offset for the timestamp.
func listOffsets(t *testing.T, c *floetest.Conn, topic string, parts int32, ts int64) []int64 {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = 7
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := int32(0); p < parts; p++ {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, ts
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := c.Request(req)
	if err != nil {
		t.Fatalf("list offsets: %v", err)
	}
	out := make([]int64, parts)
	for _, p := range resp.(*kmsg.ListOffsetsResponse).Topics[0].Partitions {
		wantCode(t, "list offsets", p.ErrorCode, nil)
		out[p.Partition] = p.Offset
	}
	return out
}

// initProducer allocates an idempotent producer id and epoch on c.
func initProducer(t *testing.T, c *floetest.Conn) (int64, int16) {
	t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.Version = 4
	resp, err := c.Request(req)
	if err != nil {
		t.Fatal(err)
	}
	ip := resp.(*kmsg.InitProducerIDResponse)
	wantCode(t, "InitProducerId", ip.ErrorCode, nil)
	return ip.ProducerID, ip.ProducerEpoch
}
