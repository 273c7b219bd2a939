package groups

import (
	"context"
	"errors"
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
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/internal/testenv"
)

// These tests run real franz-go consumers against the coordinator: a kfake
// cluster serves metadata, produce and fetch, and hands every group API to
// the Coordinator of the broker the request reached. They stand in for the
// agent until the e2e tests (e2e_test.go) run against the real one.

// monotonicCatalog fails the test if a committed offset ever moves back.
type monotonicCatalog struct {
	*fakeCatalog
	t testing.TB
}

func (m *monotonicCatalog) CommitOffsets(ctx context.Context, group string, offsets []catalog.GroupOffset) ([]catalog.GroupPartition, error) {
	for _, o := range offsets {
		if old, ok := m.stored(group, o.Topic, o.Partition); ok && o.Offset < old.Offset {
			m.t.Errorf("group %s %s/%d: committed offset went back from %d to %d", group, o.Topic, o.Partition, old.Offset, o.Offset)
		}
	}
	return m.fakeCatalog.CommitOffsets(ctx, group, offsets)
}

type kfakeEnv struct {
	t       testing.TB
	cluster *kfake.Cluster
	cat     *monotonicCatalog
	coords  []*Coordinator
	addrs   []string
	owner   atomic.Int32 // the node coordinating every group
}

type nodePlacement struct {
	env  *kfakeEnv
	self int32
}

func (p nodePlacement) Coordinator(context.Context, string) (int32, string, int32, error) {
	node := p.env.owner.Load()
	host, port, err := net.SplitHostPort(p.env.addrs[node])
	if err != nil {
		return 0, "", 0, err
	}
	var n int32
	fmt.Sscan(port, &n)
	return node, host, n, nil
}

func (p nodePlacement) Self() int32 { return p.self }

func newKfakeEnv(t *testing.T, brokers int, partitions int32, tweak func(*Config)) *kfakeEnv {
	return newKfakeEnvTB(t, brokers, partitions, tweak)
}

func newKfakeEnvTB(t testing.TB, brokers int, partitions int32, tweak func(*Config)) *kfakeEnv {
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(brokers),
		kfake.MaxVersions(kversion.V4_1_0()),
		kfake.SeedTopics(partitions, "t"),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	env := &kfakeEnv{t: t, cluster: cluster, addrs: cluster.ListenAddrs()}
	env.cat = &monotonicCatalog{fakeCatalog: newFakeCatalog(), t: t}

	adm := kadm.NewClient(env.client())
	md, err := adm.Metadata(context.Background(), "t")
	adm.Close()
	if err != nil {
		t.Fatal(err)
	}
	td := md.Topics["t"]
	env.cat.topics["t"] = catalog.Topic{ID: catalog.TopicID(td.ID), Name: "t", Partitions: int32(len(td.Partitions))}

	cfg := DefaultConfig()
	cfg.InitialRebalanceDelay = 100 * time.Millisecond
	cfg.MinSessionTimeout = time.Second
	cfg.ConsumerHeartbeatInterval = 200 * time.Millisecond
	cfg.ConsumerSessionTimeout = 2 * time.Second
	cfg.OwnershipCheckInterval = 200 * time.Millisecond
	if tweak != nil {
		tweak(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range brokers {
		c := New(cfg, env.cat, nodePlacement{env, int32(i)}, nil, nil)
		env.coords = append(env.coords, c)
		wg.Go(func() { c.Run(ctx) })
		for c.running.Load() != 1 {
			time.Sleep(time.Millisecond)
		}
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, api := range apis {
		cluster.ControlKey(api.Key, func(req kmsg.Request) (kmsg.Response, error, bool) {
			cluster.KeepControl()
			c := env.coords[cluster.CurrentNode()]
			var (
				resp kmsg.Response
				err  error
			)
			done := make(chan struct{})
			go func() {
				defer close(done)
				resp, err = c.Handle(ctx, "kgo", "127.0.0.1", req)
			}()
			cluster.SleepControl(func() { <-done })
			select {
			case <-done:
				return resp, err, true
			default:
				return nil, errors.New("cluster closing"), true
			}
		})
	}
	return env
}

func (env *kfakeEnv) client(opts ...kgo.Opt) *kgo.Client {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(env.addrs...), kgo.MetadataMinAge(50 * time.Millisecond)}, opts...)...)
	if err != nil {
		env.t.Fatal(err)
	}
	return cl
}

func (env *kfakeEnv) produce(from, n int) {
	cl := env.client(kgo.DefaultProduceTopic("t"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	defer cl.Close()
	rs := make([]*kgo.Record, 0, n)
	for i := range n {
		rs = append(rs, kgo.StringRecord(fmt.Sprint(from+i)))
	}
	if err := cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		env.t.Fatal(err)
	}
}

// groupRun consumes t with three members of group and checks every record
// is consumed and the committed offsets reach the end offsets. kill cuts
// one member mid-stream; between is run after the first third.
func (env *kfakeEnv) groupRun(group string, kill bool, between func(), opts ...kgo.Opt) {
	t := env.t
	const perPhase = 300
	env.produce(0, perPhase)

	var mu sync.Mutex
	seen := make(map[string]bool)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var clients []*kgo.Client
	killers := make([]*testenv.KillableDialer, 3)
	// The first phase ends only once every member holds partitions: a fast
	// first member can otherwise consume it alone before the others join,
	// and the mid-stream checks (and the kill) would see a group of one.
	var assigned [3]atomic.Bool
	for i := range 3 {
		killers[i] = &testenv.KillableDialer{}
		cl := env.client(append([]kgo.Opt{
			kgo.Dialer(killers[i].Dial),
			kgo.ClientID(fmt.Sprintf("member-%d", i)),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				if len(m) > 0 {
					assigned[i].Store(true)
				}
			}),
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics("t"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchMaxWait(100 * time.Millisecond),
			kgo.SessionTimeout(1500 * time.Millisecond),
			kgo.RebalanceTimeout(3 * time.Second),
			kgo.HeartbeatInterval(150 * time.Millisecond),
			kgo.AutoCommitInterval(100 * time.Millisecond),
			kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
		}, opts...)...)
		clients = append(clients, cl)
		wg.Go(func() {
			for ctx.Err() == nil {
				fs := cl.PollFetches(ctx)
				fs.EachRecord(func(r *kgo.Record) {
					mu.Lock()
					seen[fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = true
					mu.Unlock()
				})
			}
		})
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	waitUntil := func(what string, cond func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				cancel()
				wg.Wait()
				t.Fatalf("timed out waiting until %s (%d records seen)", what, count())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	allAssigned := func() bool { return assigned[0].Load() && assigned[1].Load() && assigned[2].Load() }
	waitUntil("the first third is consumed by three members", func() bool { return count() == perPhase && allAssigned() })
	if kill {
		killers[2].Kill()
	}
	if between != nil {
		between()
	}
	env.produce(perPhase, 2*perPhase)
	adm := kadm.NewClient(env.client())
	defer adm.Close()
	ends, err := adm.ListEndOffsets(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	waitUntil("every record is consumed and committed", func() bool {
		if count() != 3*perPhase {
			return false
		}
		done := true
		ends.Each(func(o kadm.ListedOffset) {
			c, ok := env.cat.stored(group, "t", o.Partition)
			done = done && ok && c.Offset == o.Offset
		})
		return done
	})
	cancel()
	wg.Wait()
	for i, cl := range clients {
		if !kill || i != 2 {
			cl.Close()
		}
	}
	if kill {
		// The dead member cannot leave; closing it must not hang the test.
		done := make(chan struct{})
		go func() { clients[2].Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("closing the killed client hung")
		}
	}
}

func TestFranzGoClassicGroups(t *testing.T) {
	for _, tc := range []struct {
		name     string
		balancer kgo.GroupBalancer
	}{
		{"eager range", kgo.RangeBalancer()},
		{"cooperative sticky", kgo.CooperativeStickyBalancer()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newKfakeEnv(t, 1, 12, nil)
			var members int
			env.groupRun("g", true, func() { members = len(env.coordsDescribe("g").Members) }, kgo.Balancers(tc.balancer))
			if members != 3 {
				t.Fatalf("%d members mid-stream, want 3", members)
			}
		})
	}
}

func TestFranzGoConsumerGroups(t *testing.T) {
	for _, tc := range []struct {
		name     string
		balancer kgo.GroupBalancer
		assignor string
	}{
		{"server range", kgo.RangeBalancer(), "range"},
		{"server uniform", kgo.CooperativeStickyBalancer(), "uniform"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newKfakeEnv(t, 1, 12, nil)
			var assignor string
			env.groupRun("g", true, func() {
				d := env.coordsConsumerDescribe("g")
				assignor = d.AssignorName
				if len(d.Members) != 3 {
					t.Errorf("%d members mid-stream, want 3", len(d.Members))
				}
				if d.ErrorCode != 0 {
					t.Errorf("the group is not a KIP-848 group: %s", errName(d.ErrorCode))
				}
			}, kgo.Balancers(tc.balancer), kgo.ServerSideBalancer())
			if assignor != tc.assignor {
				t.Fatalf("assignor %q, want %q", assignor, tc.assignor)
			}
		})
	}
}

// TestFranzGoCoordinatorFailover moves the group to another coordinator
// mid-stream: members find it and continue from the committed offsets,
// which never go back.
func TestFranzGoCoordinatorFailover(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kgo.Opt
	}{
		{"classic", []kgo.Opt{kgo.Balancers(kgo.CooperativeStickyBalancer())}},
		{"kip-848", []kgo.Opt{kgo.Balancers(kgo.RangeBalancer()), kgo.ServerSideBalancer()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newKfakeEnv(t, 2, 12, nil)
			env.groupRun("g", false, func() {
				if n := env.coords[0].numGroups(); n != 1 {
					t.Errorf("the first coordinator holds %d groups", n)
				}
				env.owner.Store(1)
				env.coords[0].dropMovedGroups(context.Background())
			}, tc.opts...)
			if n := env.coords[0].numGroups(); n != 0 {
				t.Fatalf("the old coordinator still holds %d groups", n)
			}
			if n := env.coords[1].numGroups(); n != 1 {
				t.Fatalf("the new coordinator holds %d groups", n)
			}
		})
	}
}

func (env *kfakeEnv) coordsDescribe(group string) kmsg.DescribeGroupsResponseGroup {
	r := kmsg.NewPtrDescribeGroupsRequest()
	r.Version, r.Groups = 5, []string{group}
	resp, err := env.coords[env.owner.Load()].Handle(context.Background(), "t", "h", r)
	if err != nil {
		env.t.Fatal(err)
	}
	return resp.(*kmsg.DescribeGroupsResponse).Groups[0]
}

func (env *kfakeEnv) coordsConsumerDescribe(group string) kmsg.ConsumerGroupDescribeResponseGroup {
	r := kmsg.NewPtrConsumerGroupDescribeRequest()
	r.Version, r.Groups = 1, []string{group}
	resp, err := env.coords[env.owner.Load()].Handle(context.Background(), "t", "h", r)
	if err != nil {
		env.t.Fatal(err)
	}
	return resp.(*kmsg.ConsumerGroupDescribeResponse).Groups[0]
}

// TestKcatBalancedConsumer runs librdkafka's balanced consumer (kcat -G)
// against the coordinator: it joins, consumes, commits on exit, and a second
// run resumes at the committed offsets.
func TestKcatBalancedConsumer(t *testing.T) {
	kcat := testenv.Kcat(t)
	env := newKfakeEnv(t, 1, 4, nil)
	run := func(n int) []string {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, kcat, "-b", env.addrs[0], "-G", "kcat-group",
			"-X", "auto.offset.reset=earliest", "-q", "-f", "%s\n", "-c", fmt.Sprint(n), "t")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kcat: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	env.produce(0, 100)
	first := run(100)
	if len(first) != 100 {
		t.Fatalf("kcat consumed %d records, want 100", len(first))
	}
	var committed int64
	for p := range int32(4) {
		o, _ := env.cat.stored("kcat-group", "t", p)
		committed += o.Offset
	}
	if committed != 100 {
		t.Fatalf("kcat committed %d offsets in all, want 100", committed)
	}
	env.produce(100, 20)
	second := run(20)
	if len(second) != 20 {
		t.Fatalf("the second run consumed %d records, want 20", len(second))
	}
	for _, v := range second {
		if n, _ := strconv.Atoi(v); n < 100 {
			t.Fatalf("the second run re-read record %s: it did not resume at the committed offsets", v)
		}
	}
}
