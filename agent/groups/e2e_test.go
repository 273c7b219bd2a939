// End-to-end tests of consumer groups against real in-process agents
// (tests/floetest): franz-go classic and KIP-848 groups, kcat -G, restarts,
// coordinator failover between two agents, and bad input.
package groups_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/internal/testenv"
	"github.com/floebroker/floe/tests/floetest"
)

// fastGroups shortens the group timeouts so a killed member is noticed in
// about a second. It assumes agent.Config carries the coordinator's config
// as Groups (WIRING.md).
func fastGroups(c *agent.Config) {
	c.Groups.MinSessionTimeout = time.Second
	c.Groups.InitialRebalanceDelay = 100 * time.Millisecond
	c.Groups.ConsumerHeartbeatInterval = 200 * time.Millisecond
	c.Groups.ConsumerSessionTimeout = 2 * time.Second
	c.Groups.OwnershipCheckInterval = 200 * time.Millisecond
}

func startAgent(t *testing.T, opts floetest.Options) *floetest.Agent {
	prev := opts.Config
	opts.Config = func(c *agent.Config) {
		fastGroups(c)
		if prev != nil {
			prev(c)
		}
	}
	return floetest.Start(t, opts)
}

const partitions = 12

func createTopic(t *testing.T, addr, topic string) {
	t.Helper()
	adm := kadm.NewClient(client(t, addr))
	if _, err := adm.CreateTopic(context.Background(), partitions, -1, nil, topic); err != nil {
		t.Fatalf("create topic: %v", err)
	}
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

func produce(t *testing.T, addrs, topic string, from, n int) {
	t.Helper()
	cl := client(t, addrs, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	rs := make([]*kgo.Record, 0, n)
	for i := range n {
		rs = append(rs, kgo.StringRecord(strconv.Itoa(from+i)))
	}
	if err := cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// offsetWatch fails the test if a committed offset of group ever moves
// back, polling through any agent of addrs.
func offsetWatch(t *testing.T, addrs, group, topic string) (stop func()) {
	adm := kadm.NewClient(client(t, addrs))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		high := make(map[int32]int64)
		for ctx.Err() == nil {
			offs, err := adm.FetchOffsets(ctx, group)
			if err == nil {
				offs.Each(func(o kadm.OffsetResponse) {
					if o.Topic != topic || o.Err != nil {
						return
					}
					if o.At < high[o.Partition] {
						t.Errorf("%s/%d: committed offset went back from %d to %d", topic, o.Partition, high[o.Partition], o.At)
					}
					high[o.Partition] = max(high[o.Partition], o.At)
				})
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return func() { cancel(); <-done }
}

// groupRun consumes topic with three members of group: every record is
// consumed and the committed offsets end at the end offsets. With kill, one
// member dies mid-stream and its partitions move to the others; between
// runs after the first third (for example to kill an agent).
func groupRun(t *testing.T, addrs, topic, group string, kill bool, between func(), opts ...kgo.Opt) {
	const perPhase = 400
	produce(t, addrs, topic, 0, perPhase)
	stopWatch := offsetWatch(t, addrs, group, topic)
	defer stopWatch()

	var mu sync.Mutex
	seen := make(map[string]bool)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var clients []*kgo.Client
	killers := make([]*testenv.KillableDialer, 3)
	// The first phase ends only once every member holds partitions: a fast
	// first member can otherwise consume it alone before the others join,
	// and the mid-stream checks (and the kill) would see a group of one.
	var assigned [3]atomic.Bool
	for i := range 3 {
		killers[i] = &testenv.KillableDialer{}
		cl, err := kgo.NewClient(append([]kgo.Opt{
			kgo.SeedBrokers(strings.Split(addrs, ",")...),
			kgo.Dialer(killers[i].Dial),
			kgo.ClientID(fmt.Sprintf("member-%d", i)),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				if len(m) > 0 {
					assigned[i].Store(true)
				}
			}),
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchMaxWait(200 * time.Millisecond),
			kgo.SessionTimeout(1500 * time.Millisecond),
			kgo.RebalanceTimeout(5 * time.Second),
			kgo.HeartbeatInterval(150 * time.Millisecond),
			kgo.AutoCommitInterval(100 * time.Millisecond),
			kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
		}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, cl)
		wg.Go(func() {
			for ctx.Err() == nil {
				cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
					mu.Lock()
					seen[fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = true
					mu.Unlock()
				})
			}
		})
	}
	defer func() {
		cancel()
		wg.Wait()
		for i, cl := range clients {
			if kill && i == 2 {
				go cl.Close() // cannot leave; must not hold the test
				continue
			}
			cl.Close()
		}
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	allAssigned := func() bool { return assigned[0].Load() && assigned[1].Load() && assigned[2].Load() }
	waitUntil(t, 60*time.Second, "the first third is consumed by three members", func() bool { return count() == perPhase && allAssigned() })
	if kill {
		killers[2].Kill()
	}
	if between != nil {
		between()
	}
	produce(t, addrs, topic, perPhase, 2*perPhase)
	adm := kadm.NewClient(client(t, addrs))
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 60*time.Second, "every record is consumed and committed", func() bool {
		if count() != 3*perPhase {
			return false
		}
		offs, err := adm.FetchOffsets(context.Background(), group)
		if err != nil {
			return false
		}
		done := true
		ends.Each(func(e kadm.ListedOffset) {
			o, ok := offs.Lookup(topic, e.Partition)
			done = done && ok && o.At == e.Offset
		})
		return done
	})
}

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func TestE2EClassicGroups(t *testing.T) {
	for _, tc := range []struct {
		name     string
		balancer kgo.GroupBalancer
	}{
		{"eager range", kgo.RangeBalancer()},
		{"cooperative sticky", kgo.CooperativeStickyBalancer()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startAgent(t, floetest.Options{})
			createTopic(t, a.Addr, "t")
			groupRun(t, a.Addr, "t", "g", true, nil, kgo.Balancers(tc.balancer))
		})
	}
}

func TestE2EConsumerGroups(t *testing.T) {
	for _, tc := range []struct {
		name     string
		balancer kgo.GroupBalancer
	}{
		{"server range", kgo.RangeBalancer()},
		{"server uniform", kgo.CooperativeStickyBalancer()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startAgent(t, floetest.Options{})
			createTopic(t, a.Addr, "t")
			groupRun(t, a.Addr, "t", "g", true, func() {
				adm := kadm.NewClient(client(t, a.Addr))
				described, err := adm.DescribeConsumerGroups(context.Background(), "g")
				if err != nil || described.Error() != nil {
					t.Errorf("describe consumer group: %v %v", err, described.Error())
				}
			}, kgo.Balancers(tc.balancer), kgo.ServerSideBalancer())
		})
	}
}

// TestE2EKcatBalancedConsumer: librdkafka's balanced consumer joins two
// members to a group over 12 partitions, consumes everything and commits.
func TestE2EKcatBalancedConsumer(t *testing.T) {
	bin := testenv.Kcat(t)
	a := startAgent(t, floetest.Options{})
	createTopic(t, a.Addr, "t")
	produce(t, a.Addr, "t", 0, 600)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	outs := make([]string, 2)
	for i := range 2 {
		wg.Go(func() {
			cmd := exec.CommandContext(ctx, bin, "-b", a.Addr, "-G", "kcat", "-q", "-e",
				"-X", "auto.offset.reset=earliest", "-f", "%s\n", "t")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("kcat %d: %v\n%s", i, err, out)
			}
			outs[i] = string(out)
		})
	}
	wg.Wait()
	seen := make(map[string]bool)
	for _, out := range outs {
		for _, v := range strings.Fields(out) {
			seen[v] = true
		}
	}
	if len(seen) != 600 {
		t.Fatalf("kcat consumed %d distinct records, want 600", len(seen))
	}
	adm := kadm.NewClient(client(t, a.Addr))
	offs, err := adm.FetchOffsets(context.Background(), "kcat")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	offs.Each(func(o kadm.OffsetResponse) { total += o.At })
	if total != 600 {
		t.Fatalf("kcat committed %d offsets in all, want 600", total)
	}
}

// TestE2ERestartResume: a member that commits and leaves resumes exactly at
// its committed offsets, also after the agent restarts.
func TestE2ERestartResume(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, floetest.Options{Dir: dir})
	createTopic(t, a.Addr, "t")
	produce(t, a.Addr, "t", 0, 240)

	consume := func(addr string, n int) []int {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("r"), kgo.ConsumeTopics("t"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(),
			kgo.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var got []int
		var rs []*kgo.Record
		for len(got) < n {
			fs := cl.PollRecords(ctx, n-len(got))
			if err := ctx.Err(); err != nil {
				t.Fatalf("consumed %d of %d: %v", len(got), n, err)
			}
			fs.EachRecord(func(r *kgo.Record) {
				v, _ := strconv.Atoi(string(r.Value))
				got = append(got, v)
				rs = append(rs, r)
			})
		}
		if err := cl.CommitRecords(context.Background(), rs...); err != nil {
			t.Fatal(err)
		}
		cl.Close() // leaves the group
		return got
	}
	seen := make(map[int]bool)
	add := func(vs []int) {
		for _, v := range vs {
			if seen[v] {
				t.Fatalf("record %d consumed twice: not resumed at the committed offset", v)
			}
			seen[v] = true
		}
	}
	add(consume(a.Addr, 80))
	add(consume(a.Addr, 80))
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	b := startAgent(t, floetest.Options{Dir: dir})
	add(consume(b.Addr, 80))
	if len(seen) != 240 {
		t.Fatalf("consumed %d distinct records", len(seen))
	}
}

// TestE2ECoordinatorFailover: two agents share PostgreSQL and MinIO; the
// group's coordinator is stopped mid-stream; members find the other agent
// and continue; no committed offset goes back.
func TestE2ECoordinatorFailover(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kgo.Opt
	}{
		{"classic", []kgo.Opt{kgo.Balancers(kgo.CooperativeStickyBalancer())}},
		{"kip-848", []kgo.Opt{kgo.Balancers(kgo.RangeBalancer()), kgo.ServerSideBalancer()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cat, bucket := floetest.PostgresCatalog(t), floetest.MinIOBucket(t)
			agents := []*floetest.Agent{
				startAgent(t, floetest.Options{Catalog: cat, Bucket: bucket}),
				startAgent(t, floetest.Options{Catalog: cat, Bucket: bucket}),
			}
			addrs := agents[0].Addr + "," + agents[1].Addr
			createTopic(t, addrs, "t")
			waitUntil(t, 10*time.Second, "both agents are live", func() bool {
				md, err := kadm.NewClient(client(t, addrs)).BrokerMetadata(context.Background())
				return err == nil && len(md.Brokers) == 2
			})
			groupRun(t, addrs, "t", "g", false, func() {
				resp := kadm.NewClient(client(t, addrs)).FindGroupCoordinators(context.Background(), "g")["g"]
				if resp.Err != nil {
					t.Fatalf("find coordinator: %v", resp.Err)
				}
				for _, a := range agents {
					if a.Addr == net.JoinHostPort(resp.Host, strconv.Itoa(int(resp.Port))) {
						if err := a.Stop(); err != nil {
							t.Errorf("stop the coordinator: %v", err)
						}
						return
					}
				}
				t.Fatalf("coordinator %s:%d is neither agent", resp.Host, resp.Port)
			}, tc.opts...)
		})
	}
}

// TestE2EBadInput: stale-generation heartbeats, oversized protocol metadata
// and commits for unknown topics each get their Kafka error, and the group
// and its offsets do not change.
func TestE2EBadInput(t *testing.T) {
	a := startAgent(t, floetest.Options{Config: func(c *agent.Config) { c.Groups.MaxMetadataBytes = 4096 }})
	createTopic(t, a.Addr, "t")
	conn := floetest.Dial(t, a.Addr)
	do := func(req kmsg.Request) kmsg.Response {
		t.Helper()
		resp, err := conn.Request(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	join := func(member string, meta []byte) *kmsg.JoinGroupResponse {
		r := kmsg.NewPtrJoinGroupRequest()
		r.Version = 9
		r.Group, r.MemberID, r.ProtocolType = "bad", member, "consumer"
		r.SessionTimeoutMillis, r.RebalanceTimeoutMillis = 30_000, 30_000
		r.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta}}
		return do(r).(*kmsg.JoinGroupResponse)
	}
	first := join("", []byte("m"))
	jr := join(first.MemberID, []byte("m"))
	if jr.ErrorCode != 0 {
		t.Fatalf("join: %v", kerr.ErrorForCode(jr.ErrorCode))
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Version, sync.Group, sync.MemberID, sync.Generation = 5, "bad", jr.MemberID, jr.Generation
	do(sync)
	commit := func(topic string, gen int32) int16 {
		r := kmsg.NewPtrOffsetCommitRequest()
		r.Version, r.Group, r.MemberID, r.Generation = 9, "bad", jr.MemberID, gen
		r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 7, LeaderEpoch: -1}}}}
		return do(r).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
	}
	if code := commit("t", jr.Generation); code != 0 {
		t.Fatalf("good commit: %v", kerr.ErrorForCode(code))
	}

	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Version, hb.Group, hb.MemberID, hb.Generation = 4, "bad", jr.MemberID, jr.Generation-1
	if code := do(hb).(*kmsg.HeartbeatResponse).ErrorCode; code != kerr.IllegalGeneration.Code {
		t.Fatalf("stale heartbeat: %v", kerr.ErrorForCode(code))
	}
	big := join("", make([]byte, 8192))
	if big.ErrorCode != kerr.MessageTooLarge.Code {
		t.Fatalf("oversized join: %v", kerr.ErrorForCode(big.ErrorCode))
	}
	if code := commit("no-such-topic", jr.Generation); code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("unknown topic commit: %v", kerr.ErrorForCode(code))
	}

	adm := kadm.NewClient(client(t, a.Addr))
	described, err := adm.DescribeGroups(context.Background(), "bad")
	if err != nil {
		t.Fatal(err)
	}
	if g := described["bad"]; g.State != "Stable" || len(g.Members) != 1 {
		t.Fatalf("the group changed: %+v", g)
	}
	offs, err := adm.FetchOffsets(context.Background(), "bad")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := offs.Lookup("t", 0); o.At != 7 {
		t.Fatalf("offset %d, want 7", o.At)
	}
	if _, ok := offs.Lookup("no-such-topic", 0); ok {
		t.Fatal("an offset of an unknown topic was stored")
	}
}
