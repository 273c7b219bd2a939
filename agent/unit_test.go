package agent

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/floebroker/floe/agent/groups"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore"
)

// countingBucket counts GetRange calls and the bytes they ask for, and can
// slow them down.
type countingBucket struct {
	objstore.BucketReader
	gets, bytes atomic.Int64
	delay       time.Duration
}

func (b *countingBucket) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	b.gets.Add(1)
	b.bytes.Add(n)
	time.Sleep(b.delay)
	return b.BucketReader.GetRange(ctx, key, off, n)
}

func TestRendezvousLeader(t *testing.T) {
	agents := []catalog.Agent{
		{NodeID: 1, ID: "a", Zone: "z1"},
		{NodeID: 2, ID: "b", Zone: "z1"},
		{NodeID: 3, ID: "c", Zone: "z2"},
		{NodeID: 4, ID: "d", Zone: "z2"},
	}
	m := &membership{self: agents[0], agents: agents, generation: 7}
	var id catalog.TopicID
	copy(id[:], "topic-id-0123456")
	counts := map[int32]int{}
	moved := 0
	without := &membership{self: agents[0], agents: []catalog.Agent{agents[0], agents[1], agents[2]}}
	for p := int32(0); p < 400; p++ {
		l := m.leader(id, p, "")
		counts[l]++
		if l2 := m.leader(id, p, ""); l2 != l {
			t.Fatal("leader is not deterministic")
		}
		if z := m.leader(id, p, "z2"); z != 3 && z != 4 {
			t.Fatalf("zone z2 client got leader %d", z)
		}
		if z := m.leader(id, p, "nowhere"); z != l {
			t.Fatalf("unknown zone: leader %d, want %d", z, l)
		}
		if l != 4 && without.leader(id, p, "") != l {
			moved++
		}
	}
	for n, c := range counts {
		if c < 50 {
			t.Errorf("node %d leads %d of 400 partitions: unbalanced %v", n, c, counts)
		}
	}
	if moved != 0 {
		t.Errorf("removing node 4 moved %d partitions it did not lead", moved)
	}
	if m.leaderEpoch() != 7 {
		t.Errorf("epoch %d", m.leaderEpoch())
	}
	if got := (&membership{self: agents[0]}).leader(id, 0, ""); got != 1 {
		t.Errorf("empty view: leader %d, want self", got)
	}
}

// referenceLeader is the placement as first defined, over hash/fnv:
// every agent, whatever its version, must compute the same.
func referenceLeader(agents []catalog.Agent, self int32, id catalog.TopicID, partition int32, zone string) int32 {
	candidates := agents
	if zone != "" {
		var inZone []catalog.Agent
		for _, ag := range agents {
			if ag.Zone == zone {
				inZone = append(inZone, ag)
			}
		}
		if len(inZone) > 0 {
			candidates = inZone
		}
	}
	if len(candidates) == 0 {
		return self
	}
	var key [20]byte
	copy(key[:], id[:])
	binary.BigEndian.PutUint32(key[16:], uint32(partition))
	score := func(agentID string) uint64 {
		h := fnv.New64a()
		h.Write([]byte(agentID))
		h.Write([]byte{0})
		h.Write(key[:])
		x := h.Sum64()
		x ^= x >> 30
		x *= 0xbf58476d1ce4e5b9
		x ^= x >> 27
		x *= 0x94d049bb133111eb
		x ^= x >> 31
		return x
	}
	best, bestScore := candidates[0], score(candidates[0].ID)
	for _, ag := range candidates[1:] {
		if s := score(ag.ID); s > bestScore || (s == bestScore && ag.NodeID < best.NodeID) {
			best, bestScore = ag, s
		}
	}
	return best.NodeID
}

// TestLeadersMatchReference: the leaders Metadata and Fetch give, picked
// from hash states computed once per view and per topic, are the
// placement's, for every zone, and a fixed input keeps its leader.
// Metadata's replicas, all in sync, are the leader and then every other
// zone's leader: every agent a rack-aware Fetch may steer to.
func TestLeadersMatchReference(t *testing.T) {
	m := benchView()
	if got := m.leader(catalog.TopicID{1, 2, 3}, 5, ""); got != 14 {
		t.Errorf("leader of a fixed partition is %d, was 14", got)
	}
	if got := rendezvousScore("agent", []byte("group")); got != 0xbee7044af7e47297 {
		t.Errorf("rendezvousScore changed: %#x", got)
	}
	// And with agents of no zone, which only a client of no zone is led
	// by.
	mixed := benchView()
	for i := range 5 {
		mixed.agents = append(mixed.agents, catalog.Agent{ID: fmt.Sprintf("01JNOZONE%017d", i), NodeID: int32(21 + i)})
	}
	for _, m := range []*membership{m, mixed} {
		checkLeaders(t, m)
	}
	empty := &membership{self: catalog.Agent{NodeID: 3}}
	if mp := (&Agent{}).topicMetadata(empty, catalog.Topic{Partitions: 1}, "").Partitions[0]; mp.Leader != 3 || !slices.Equal(mp.Replicas, []int32{3}) || !slices.Equal(mp.ISR, []int32{3}) {
		t.Errorf("empty view: metadata %+v, want this agent", mp)
	}
}

func checkLeaders(t *testing.T, m *membership) {
	t.Helper()
	a := &Agent{}
	a.members.Store(m)
	zones := []string{"z0", "z1", "z2"}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, zone := range []string{"", "z0", "z1", "z2", "nowhere"} {
		for range 20 {
			var id catalog.TopicID
			for i := range id {
				id[i] = byte(rng.Uint32())
			}
			tp := catalog.Topic{ID: id, Name: "t", Partitions: 50}
			mt := a.topicMetadata(m, tp, zone)
			parts := [][]fetchPart{make([]fetchPart, tp.Partitions)}
			for p := range parts[0] {
				parts[0][p] = fetchPart{tp: catalog.TopicPartition{TopicID: id, Partition: int32(p)}, preferred: -1}
			}
			req := kmsg.NewPtrFetchRequest()
			req.Version, req.Rack = 11, zone
			a.steerToZone(&request{conn: &conn{}}, req, parts)
			for p := range tp.Partitions {
				want := referenceLeader(m.agents, m.self.NodeID, id, p, zone)
				if got := m.leader(id, p, zone); got != want {
					t.Fatalf("zone %q, partition %d: leader %d, want %d", zone, p, got, want)
				}
				wantReplicas := []int32{want}
				for _, z := range zones {
					if l := referenceLeader(m.agents, m.self.NodeID, id, p, z); l != want {
						wantReplicas = append(wantReplicas, l)
					}
				}
				mp := mt.Partitions[p]
				if mp.Leader != want || !slices.Equal(mp.Replicas, wantReplicas) || !slices.Equal(mp.ISR, wantReplicas) ||
					cap(mp.Replicas) != len(wantReplicas) || cap(mp.ISR) != len(wantReplicas) {
					t.Fatalf("zone %q, partition %d: metadata %+v, want leader %d, replicas %v", zone, p, mp, want, wantReplicas)
				}
				wantPreferred := int32(-1)
				if zone != "" && m.hasZone(zone) && want != m.self.NodeID {
					wantPreferred = want
				}
				if got := parts[0][p].preferred; got != wantPreferred {
					t.Fatalf("zone %q, partition %d: preferred replica %d, want %d", zone, p, got, wantPreferred)
				}
			}
		}
	}
}

// TestLeadersAllocateNothingPerPartition: a Metadata answer's leaders and
// a rack-aware Fetch's preferred replicas cost no allocation per
// partition (an all-topics answer has one for every partition).
func TestLeadersAllocateNothingPerPartition(t *testing.T) {
	m := benchView()
	a := &Agent{}
	a.members.Store(m)
	tp := catalog.Topic{ID: catalog.TopicID{9}, Name: "t", Partitions: 100}
	for _, zone := range []string{"", "z1"} {
		if n := testing.AllocsPerRun(10, func() { a.topicMetadata(m, tp, zone) }); n > 4 {
			t.Errorf("zone %q: Metadata of %d partitions allocates %v times", zone, tp.Partitions, n)
		}
	}
	parts := [][]fetchPart{make([]fetchPart, tp.Partitions)}
	for p := range parts[0] {
		parts[0][p] = fetchPart{tp: catalog.TopicPartition{TopicID: tp.ID, Partition: int32(p)}, preferred: -1}
	}
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.Rack = 11, "z1"
	r := &request{conn: &conn{}}
	if n := testing.AllocsPerRun(10, func() { a.steerToZone(r, req, parts) }); n > 1 {
		t.Errorf("steering a Fetch of %d partitions allocates %v times", tp.Partitions, n)
	}
}

func TestClientZone(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "",
		"app":                      "",
		"floe_az=us-east-1a":       "us-east-1a",
		"app,floe_az=eu-west-1b":   "eu-west-1b",
		"floe_az=z1;other=x":       "z1",
		"prefix floe_az=z2 suffix": "z2",
	} {
		if got := clientZone(in); got != want {
			t.Errorf("clientZone(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"zero value", func(c *Config) { *c = Config{} }, ""},
		{"bad listen", func(c *Config) { c.Listen = "nohostport" }, "listen"},
		{"advertise without port", func(c *Config) { c.Advertise = "host" }, "advertise"},
		{"advertise port 0", func(c *Config) { c.Advertise = "host:0" }, "advertise"},
		{"tiny max request", func(c *Config) { c.MaxRequestBytes = 10 }, "max request bytes"},
		{"negative timeout", func(c *Config) { c.IdleTimeout = -time.Second }, "idle timeout"},
		{"ttl below heartbeat", func(c *Config) { c.HeartbeatInterval, c.AgentTTL = 5*time.Second, time.Second }, "agent ttl"},
		{"negative partitions", func(c *Config) { c.DefaultPartitions = -1 }, "default partitions"},
		{"queued below one request", func(c *Config) { c.MaxQueuedRequestBytes = int64(c.MaxRequestBytes) - 1 }, "max queued request bytes"},
		{"queued below default request", func(c *Config) { c.MaxRequestBytes, c.MaxQueuedRequestBytes = 0, 1<<20 }, "max queued request bytes"},
		{"negative queued", func(c *Config) { c.MaxQueuedRequestBytes = -1 }, "max queued request bytes"},
		{"queued of one request", func(c *Config) { c.MaxQueuedRequestBytes = int64(c.MaxRequestBytes) }, ""},
		{"negative queued responses", func(c *Config) { c.MaxQueuedResponseBytes = -1 }, "max queued response bytes"},
		{"tls cert without key", func(c *Config) { c.TLSCertFile = "cert.pem" }, "--tls-key"},
		{"tls key without cert", func(c *Config) { c.TLSKeyFile = "key.pem" }, "--tls-cert"},
		{"tls client CA alone", func(c *Config) { c.TLSClientCAFile = "ca.pem" }, "--tls-cert"},
		{"tls", func(c *Config) { c.TLSCertFile, c.TLSKeyFile, c.TLSClientCAFile = "c", "k", "ca" }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid config rejected: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
	// The group coordinator fills its own defaults; the shutdown grace
	// derives from the heartbeat interval, the request budget from the
	// largest request.
	d, want := (Config{}).withDefaults(), DefaultConfig()
	want.Groups, want.ShutdownGrace = d.Groups, want.HeartbeatInterval*5/4
	want.MaxQueuedRequestBytes = DefaultMaxQueuedRequestBytes
	want.MaxQueuedResponseBytes = DefaultMaxQueuedResponseBytes
	if big := (Config{MaxRequestBytes: 1 << 30}).withDefaults(); big.MaxQueuedRequestBytes != 1<<30 {
		t.Fatalf("request budget %d below a 1 GiB max request", big.MaxQueuedRequestBytes)
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("zero config with defaults %+v != DefaultConfig %+v", d, want)
	}
}

func TestTailIndex(t *testing.T) {
	ti := newTailIndex(time.Now)
	tp := catalog.TopicPartition{Partition: 1}
	row := func(base, last int64) catalog.BatchRow {
		return catalog.BatchRow{TopicPartition: tp, BaseOffset: base, LastOffset: last, ByteLength: 100, ObjectKey: fmt.Sprint(base)}
	}
	other := catalog.TopicID{1}
	w, wOther := ti.watch([]catalog.TopicID{tp.TopicID}), ti.watch([]catalog.TopicID{other, other})
	ti.add([]catalog.BatchRow{row(10, 19), row(20, 29)})
	select {
	case <-w.ch:
	default:
		t.Fatal("add did not wake waiters")
	}
	select {
	case <-wOther.ch:
		t.Fatal("rows of one topic woke a waiter of another")
	default:
	}
	ti.unwatch(wOther)
	if n := len(ti.mu.waiters); n != 0 {
		t.Fatalf("waiters of %d topics left after waking and unwatching", n)
	}
	if _, ok := ti.lookup(tp, 5, 1000, 0); ok {
		t.Fatal("lookup below the run claimed coverage")
	}
	rows, ok := ti.lookup(tp, 25, 1000, 0)
	if !ok || len(rows) != 1 || rows[0].BaseOffset != 20 {
		t.Fatalf("lookup 25: %v %+v", ok, rows)
	}
	ti.add([]catalog.BatchRow{row(20, 29)}) // duplicate delivery
	ti.add([]catalog.BatchRow{row(40, 49)}) // gap: a new run
	if _, ok := ti.lookup(tp, 25, 1000, 0); ok {
		t.Fatal("rows before a gap still served")
	}
	if rows, ok := ti.lookup(tp, 45, 1000, 0); !ok || rows[0].BaseOffset != 40 {
		t.Fatalf("lookup after gap: %v %+v", ok, rows)
	}
	ls, hw := ti.storeOffsets(tp, catalog.PartitionOffsets{LogStart: 0, HighWatermark: 45}, time.Now())
	if ls != 0 || hw != 50 {
		t.Fatalf("offsets %d %d, want 0 50 (the followed high watermark wins)", ls, hw)
	}
}

// TestAPIsMatchKafka41 checks the served versions against franz-go's record
// of what Kafka 4.1 serves (kversion) and that kmsg can encode them.
func TestAPIsMatchKafka41(t *testing.T) {
	kafka := kversion.V4_1_0()
	a := &Agent{}
	a.groups = groups.New(groups.DefaultConfig(), nil, a, nil, nil)
	table := a.newAPITable()
	n := 0
	for _, s := range table {
		if s == nil {
			continue
		}
		n++
		max, ok := kafka.LookupMaxKeyVersion(s.key)
		if !ok {
			t.Errorf("%s (key %d) is not served by Kafka 4.1", s.name, s.key)
			continue
		}
		if kmax := kmsg.RequestForKey(s.key).MaxVersion(); s.max != min(max, kmax) {
			t.Errorf("%s: max version %d, Kafka 4.1 serves %d and kmsg knows %d", s.name, s.max, max, kmax)
		}
		if s.name != kmsg.NameForKey(s.key) && !strings.EqualFold(s.name, kmsg.NameForKey(s.key)) {
			t.Errorf("key %d named %q, kmsg calls it %q", s.key, s.name, kmsg.NameForKey(s.key))
		}
	}
	if n != 30 {
		t.Errorf("%d APIs served, want 30 (17 and the 13 group APIs)", n)
	}
}

func TestGroupCoordinatorPlacement(t *testing.T) {
	a := &Agent{}
	a.members.Store(&membership{})
	if _, _, _, err := a.Coordinator(context.Background(), "g"); err == nil {
		t.Fatal("placement before registration")
	}
	agents := []catalog.Agent{{NodeID: 1, ID: "a", Addr: "h1:9092", Zone: "z1"}, {NodeID: 2, ID: "b", Addr: "h2:9093", Zone: "z2"}}
	a.members.Store(&membership{self: agents[0], registered: true, agents: agents})
	if _, _, _, err := a.Coordinator(context.Background(), "g"); err == nil {
		t.Fatal("placement without a lease")
	}
	grantLease(a, time.Hour)
	seen := map[int32]bool{}
	for i := 0; i < 50; i++ {
		g := fmt.Sprintf("group-%d", i)
		n, host, port, err := a.Coordinator(context.Background(), g)
		n2, _, _, _ := a.Coordinator(context.Background(), g)
		if err != nil || n != n2 || (n == 1 && (host != "h1" || port != 9092)) || (n == 2 && (host != "h2" || port != 9093)) {
			t.Fatalf("%s: %d %s:%d %v", g, n, host, port, err)
		}
		seen[n] = true
	}
	if len(seen) != 2 || a.Self() != 1 {
		t.Fatalf("groups placed on %v, self %d", seen, a.Self())
	}
}

// TestTailLogStartNeverGoesBack: a catalog read that started before a
// DeleteRecords and is stored after it must not bring the deleted records
// back into the served log start, nor make it look older; and a log
// start's age counts from the start of the read that gave it.
func TestTailLogStartNeverGoesBack(t *testing.T) {
	ti := newTailIndex(time.Now)
	tp := catalog.TopicPartition{Partition: 1}
	ti.storeOffsets(tp, catalog.PartitionOffsets{LogStart: 10, HighWatermark: 20}, time.Now())                  // DeleteRecords
	ti.storeOffsets(tp, catalog.PartitionOffsets{LogStart: 0, HighWatermark: 20}, time.Now().Add(-time.Second)) // the older read
	if ls, _, age := ti.cachedOffsets(tp); ls != 10 || age >= time.Second {
		t.Fatalf("log start %d, %v old after a stale read, want 10, the newer read's age", ls, age)
	}
	slow := catalog.TopicPartition{Partition: 2}
	ti.storeOffsets(slow, catalog.PartitionOffsets{LogStart: 0, HighWatermark: 20}, time.Now().Add(-3*time.Second))
	if _, _, age := ti.cachedOffsets(slow); age < 3*time.Second {
		t.Fatalf("a log start read by a read started 3 s ago is %v old", age)
	}
}

// TestResponseBudgetHold: a response waits for room only for its first
// batch, holding nothing (reserve refuses it and names the room wanted,
// await waits for that and keeps it for the next build's first batch), and
// only tries for later ones; waits are first come, first served; a batch
// larger than the budget reserves all of it; a response handed to its
// connection is released once, by the writer or by the connection's end.
func TestResponseBudgetHold(t *testing.T) {
	m := newMetrics(nil)
	b := newResponseBudget(10, m)
	held := func() float64 { return testutil.ToFloat64(m.responseBytes) }
	hold := func(wait time.Duration) *responseHold {
		return &responseHold{b: b, ctx: context.Background(), deadline: time.Now().Add(wait)}
	}

	h1 := hold(time.Hour)
	if !h1.reserve(6) || !h1.reserve(3) {
		t.Fatal("batches that fit were refused")
	}
	if h1.reserve(2) || h1.want != 0 {
		t.Fatalf("a response holding budget took a batch beyond it, or wants to wait (want %d)", h1.want)
	}
	h2 := hold(20 * time.Millisecond)
	if h2.reserve(2) || h2.want != 2 {
		t.Fatalf("a first batch beyond the budget: want %d, not 2", h2.want)
	}
	if h2.reserve(1) {
		t.Fatal("a void build took a later batch")
	}
	start := time.Now()
	h2.await()
	if time.Since(start) < 20*time.Millisecond || !h2.refused || h2.n != 0 {
		t.Fatalf("a first batch beyond the budget did not wait until its deadline (refused %v, held %d)", h2.refused, h2.n)
	}
	if h2.reserve(2) || h2.want != 0 {
		t.Fatal("a response whose wait failed waits again")
	}
	if held() != 9 {
		t.Fatalf("held %v, want 9", held())
	}

	// An oversized batch waits for the whole budget, ahead of a later
	// response's small batch.
	big, small := hold(5*time.Second), hold(5*time.Second)
	bigDone, smallDone := make(chan struct{}), make(chan struct{})
	if big.reserve(100) || big.want != 10 {
		t.Fatalf("an oversized batch wants %d, not the budget", big.want)
	}
	go func() { big.await(); close(bigDone) }()
	for b.sem.TryAcquire(1) {
		b.sem.Release(1) // until big waits
		time.Sleep(time.Millisecond)
	}
	if small.reserve(1) || small.want != 1 {
		t.Fatal("a later batch overtook a waiting one")
	}
	go func() { small.await(); close(smallDone) }()
	time.Sleep(20 * time.Millisecond)
	h1.release()
	<-bigDone
	if !big.reserve(100) {
		t.Fatal("an oversized batch was refused the room it waited for")
	}
	if held() != 10 {
		t.Fatalf("held %v with an oversized batch, want the budget (10)", held())
	}
	big.trim(100) // trimming to more than held keeps it all
	select {
	case <-smallDone:
		t.Fatal("a later batch overtook the oversized one or took room it held")
	default:
	}
	big.release()
	<-smallDone
	if !small.reserve(1) {
		t.Fatal("the later batch was refused once room was free")
	}
	small.release()

	// Credit no batch took is released with the build.
	c := hold(time.Second)
	c.want = 4
	c.await()
	if !c.reserve(3) || held() != 4 {
		t.Fatalf("credit: held %v, want 4", held())
	}
	c.trim(3)
	if held() != 3 {
		t.Fatalf("after trim held %v, want 3", held())
	}
	c.release()

	// Handed to a connection: released by the writer, or by the
	// connection's end, once.
	for _, writerFirst := range []bool{true, false} {
		ctx, cancel := context.WithCancel(context.Background())
		fr := &fetchResponse{hold: *hold(0)}
		fr.hold.reserve(4)
		fr.keep(ctx)
		if writerFirst {
			fr.sent()
			cancel()
		} else {
			cancel()
			for held() != 0 { // AfterFunc runs in its own goroutine
				time.Sleep(time.Millisecond)
			}
			fr.sent()
		}
		time.Sleep(5 * time.Millisecond)
		if held() != 0 || !b.sem.TryAcquire(10) {
			t.Fatalf("writer first %v: held %v after the response was sent and its connection ended", writerFirst, held())
		}
		b.sem.Release(10)
	}
}
