// Package fleet tests several in-process agents sharing one PostgreSQL
// catalog and one MinIO bucket (tests/floetest): records spread over the
// agents and read back from any of them, zone-aware routing, the shared
// tail (long polls across agents, fetches at the tail served from memory,
// the read cache), and leaving the fleet on shutdown. The tests need the
// services of scripts/services.sh; without them they skip, or fail under
// CI=true.
package fleet

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/internal/testenv"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/tests/floetest"
)

// member is one agent of a test fleet with its own metrics registry.
type member struct {
	*floetest.Agent
	zone string
	reg  *prometheus.Registry
}

// services opens the shared catalog and bucket, wrapped to count reads.
func services(t *testing.T) (*countingCatalog, *countingBucket) {
	t.Helper()
	return &countingCatalog{Catalog: floetest.PostgresCatalog(t)}, &countingBucket{Bucket: floetest.MinIOBucket(t)}
}

// startMember starts an agent in zone on the shared services.
func startMember(t *testing.T, cat catalog.Catalog, bucket objstore.Bucket, zone string, adjust func(*agent.Config)) *member {
	t.Helper()
	reg := prometheus.NewRegistry()
	a := floetest.Start(t, floetest.Options{Catalog: cat, Bucket: bucket, Registerer: reg, Config: func(c *agent.Config) {
		c.Zone = zone
		c.HeartbeatInterval = 100 * time.Millisecond
		c.AgentTTL = time.Second
		c.Groups.InitialRebalanceDelay = 50 * time.Millisecond
		if adjust != nil {
			adjust(c)
		}
	}})
	return &member{Agent: a, zone: zone, reg: reg}
}

// waitFleet waits until every member lists exactly the live members.
func waitFleet(t *testing.T, members ...*member) {
	t.Helper()
	waitUntil(t, 10*time.Second, fmt.Sprintf("all agents list the %d live ones and serve their groups", len(members)), func() bool {
		for _, m := range members {
			md := metadata(t, m.Addr, "", nil)
			if len(md.Brokers) != len(members) || !m.Agent.Agent.JoinSettled() {
				return false
			}
		}
		return true
	})
}

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metadata asks addr itself (not whichever broker a client would pick)
// for the topics' metadata (all topics when nil), as clientID.
func metadata(t *testing.T, addr, clientID string, topics []string) *kmsg.MetadataResponse {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 12
	for _, tp := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(tp)
		req.Topics = append(req.Topics, rt)
	}
	return rawRequest(t, addr, clientID, req).(*kmsg.MetadataResponse)
}

// rawRequest sends one request on a new connection and decodes the answer.
func rawRequest(t *testing.T, addr, clientID string, req kmsg.Request) kmsg.Response {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(15 * time.Second))
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID(clientID))
	if _, err := nc.Write(f.AppendRequest(nil, req, 1)); err != nil {
		t.Fatalf("write to %s: %v", addr, err)
	}
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(nc, body); err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	b := body[4:] // correlation id
	if resp.IsFlexible() {
		b = b[1:] // empty header tags
	}
	if err := resp.ReadFrom(b); err != nil {
		t.Fatalf("decode %T: %v", resp, err)
	}
	return resp
}

func client(t *testing.T, addrs string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(strings.Split(addrs, ",")...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func createTopic(t *testing.T, addr, topic string, partitions int32) {
	t.Helper()
	adm := kadm.NewClient(client(t, addr))
	resp, err := adm.CreateTopic(context.Background(), partitions, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// value is a record value: producer and sequence number.
func value(producer, seq int) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(producer)), uint32(seq))
}

func parseValue(b []byte) (producer, seq int) {
	return int(binary.BigEndian.Uint32(b)), int(binary.BigEndian.Uint32(b[4:]))
}

// produceN produces n records (values producer/0..n-1) and waits for
// their acknowledgements.
func produceN(t *testing.T, cl *kgo.Client, topic string, producer, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rs := make([]*kgo.Record, n)
	for i := range rs {
		rs[i] = &kgo.Record{Topic: topic, Key: []byte{byte(i)}, Value: value(producer, i)}
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// consumeAll reads want records of topic from the start with cl and
// returns the values by partition in offset order, failing on any gap.
func consumeAll(t *testing.T, cl *kgo.Client, want int) map[int32][][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[int32][][]byte{}
	got := 0
	for got < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records", got, want)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset != int64(len(out[r.Partition])) {
				t.Fatalf("partition %d: offset %d after %d records", r.Partition, r.Offset, len(out[r.Partition]))
			}
			out[r.Partition] = append(out[r.Partition], r.Value)
			got++
		})
	}
	return out
}

// counter sums the samples of a metric family whose labels include
// labels.
func counter(tb testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	tb.Helper()
	return testenv.Metric(tb, reg, name, labels)
}

func requests(t *testing.T, m *member, api string) float64 {
	return counter(t, m.reg, "floe_agent_requests_total", map[string]string{"api": api})
}

// countingCatalog counts the catalog reads a fetch could make, and the
// commit follower's reads.
type countingCatalog struct {
	catalog.Catalog
	batches, offsets, topics atomic.Int64
	commitsSince, commitRows atomic.Int64
}

func (c *countingCatalog) CommitsSince(ctx context.Context, after int64, limit int) ([]catalog.BatchRow, int64, error) {
	rows, latest, err := c.Catalog.CommitsSince(ctx, after, limit)
	c.commitsSince.Add(1)
	c.commitRows.Add(int64(len(rows)))
	return rows, latest, err
}

func (c *countingCatalog) Batches(ctx context.Context, tp catalog.TopicPartition, from, maxBytes int64) ([]catalog.BatchRow, error) {
	c.batches.Add(1)
	return c.Catalog.Batches(ctx, tp, from, maxBytes)
}

func (c *countingCatalog) Offsets(ctx context.Context, tp catalog.TopicPartition) (catalog.PartitionOffsets, error) {
	c.offsets.Add(1)
	return c.Catalog.Offsets(ctx, tp)
}

// OffsetsOf counts a partition read per partition, as Offsets does.
func (c *countingCatalog) OffsetsOf(ctx context.Context, tps []catalog.TopicPartition) (map[catalog.TopicPartition]catalog.PartitionOffsets, error) {
	c.offsets.Add(int64(len(tps)))
	return c.Catalog.OffsetsOf(ctx, tps)
}

func (c *countingCatalog) Topic(ctx context.Context, name string) (catalog.Topic, error) {
	c.topics.Add(1)
	return c.Catalog.Topic(ctx, name)
}

func (c *countingCatalog) TopicByID(ctx context.Context, id catalog.TopicID) (catalog.Topic, error) {
	c.topics.Add(1)
	return c.Catalog.TopicByID(ctx, id)
}

// countingBucket counts GETs and the distinct objects read.
type countingBucket struct {
	objstore.Bucket
	gets atomic.Int64
	mu   sync.Mutex
	keys map[string]int
}

func (b *countingBucket) count(key string) {
	b.gets.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keys == nil {
		b.keys = map[string]int{}
	}
	b.keys[key]++
}

func (b *countingBucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	b.count(key)
	return b.Bucket.Get(ctx, key)
}

func (b *countingBucket) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	b.count(key)
	return b.Bucket.GetRange(ctx, key, off, n)
}

// reset zeroes the counts.
func (b *countingBucket) reset() {
	b.gets.Store(0)
	b.mu.Lock()
	b.keys = nil
	b.mu.Unlock()
}

// maxPerObject is the most GETs of any one object since the last reset.
func (b *countingBucket) maxPerObject() (objects, most int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range b.keys {
		most = max(most, n)
	}
	return len(b.keys), most
}
