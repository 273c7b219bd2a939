package groups_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/tests/floetest"
)

// TestE2ECoordinatorMoveKeepsAssignment: three agents share PostgreSQL and
// MinIO; a franz-go group of three members (classic eager and cooperative,
// and KIP-848) consumes; the group's coordinator is stopped. The group's state is in the catalog, so the
// members heartbeat on to the agent the group moves to and keep their
// generation and partitions: no partition is revoked, lost or assigned
// again, and no record is delivered twice. Before group state was stored,
// the new coordinator started the group empty and every member rejoined.
func TestE2ECoordinatorMoveKeepsAssignment(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kip848 bool
		opts   []kgo.Opt
	}{
		{"eager-range", false, []kgo.Opt{kgo.Balancers(kgo.RangeBalancer())}},
		{"cooperative-sticky", false, []kgo.Opt{kgo.Balancers(kgo.CooperativeStickyBalancer())}},
		{"kip-848", true, []kgo.Opt{kgo.Balancers(kgo.RangeBalancer()), kgo.ServerSideBalancer()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cat, bucket := floetest.PostgresCatalog(t), floetest.MinIOBucket(t)
			agents := make([]*floetest.Agent, 3)
			addrList := make([]string, 3)
			for i := range agents {
				agents[i] = startAgent(t, floetest.Options{Catalog: cat, Bucket: bucket})
				addrList[i] = agents[i].Addr
			}
			addrs := strings.Join(addrList, ",")
			createTopic(t, addrs, "t")
			waitUntil(t, 10*time.Second, "all agents are live and serve their groups", func() bool {
				for _, a := range agents {
					md, err := kadm.NewClient(client(t, a.Addr)).BrokerMetadata(context.Background())
					if err != nil || len(md.Brokers) != 3 || !a.Agent.JoinSettled() {
						return false
					}
				}
				return true
			})
			const perPhase = 300
			produce(t, addrs, "t", 0, perPhase)

			var (
				got     deliveries
				changes atomic.Int64 // partitions assigned, revoked or lost after the group formed
				formed  atomic.Bool
				owned   [3]atomic.Int64
			)
			hook := func(i int, sign int64, what string) func(context.Context, *kgo.Client, map[string][]int32) {
				return func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
					commitOnRevoke(ctx, cl, what)
					n := int64(len(m["t"]))
					if n == 0 {
						return
					}
					owned[i].Add(sign * n)
					if formed.Load() {
						changes.Add(1)
						t.Logf("member %d: %d partitions %s after the group formed: %v", i, n, what, m)
					}
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var clients []*kgo.Client
			defer func() {
				formed.Store(false) // closing revokes
				cancel()
				wg.Wait()
				for _, cl := range clients {
					cl.Close()
				}
			}()
			for i := range 3 {
				cl, err := kgo.NewClient(append([]kgo.Opt{
					kgo.SeedBrokers(addrList...),
					kgo.ClientID(fmt.Sprintf("member-%d", i)),
					kgo.ConsumerGroup("g"),
					kgo.ConsumeTopics("t"),
					kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
					kgo.FetchMaxWait(200 * time.Millisecond),
					kgo.SessionTimeout(6 * time.Second),
					kgo.RebalanceTimeout(5 * time.Second),
					kgo.HeartbeatInterval(200 * time.Millisecond),
					kgo.AutoCommitInterval(100 * time.Millisecond),
					kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
					kgo.OnPartitionsAssigned(hook(i, 1, "assigned")),
					kgo.OnPartitionsRevoked(hook(i, -1, "revoked")),
					kgo.OnPartitionsLost(hook(i, -1, "lost")),
				}, tc.opts...)...)
				if err != nil {
					t.Fatal(err)
				}
				clients = append(clients, cl)
				wg.Go(func() {
					for ctx.Err() == nil {
						cl.PollFetches(ctx).EachRecord(got.by(i))
					}
				})
			}
			count := got.count
			// Formed: every member owns partitions, all 12 are owned, and
			// the first phase is consumed.
			waitUntil(t, 60*time.Second, "three members own every partition and consumed the first phase", func() bool {
				var total int64
				for i := range owned {
					if owned[i].Load() == 0 {
						return false
					}
					total += owned[i].Load()
				}
				return total == partitions && count() == perPhase
			})
			// A cooperative group may still be finishing its second
			// rebalance round: wait for quiet before taking the baseline.
			time.Sleep(time.Second)
			formed.Store(true)
			t.Logf("group formed at %v", got.since())

			adm := kadm.NewClient(client(t, addrs))
			// describe is the group's state, member count and (KIP-848)
			// epoch; the classic generation is not in DescribeGroups.
			describe := func(adm *kadm.Client) (string, int, int32) {
				t.Helper()
				if tc.kip848 {
					d, err := adm.DescribeConsumerGroups(context.Background(), "g")
					if err != nil {
						t.Fatal(err)
					}
					return d["g"].State, len(d["g"].Members), d["g"].Epoch
				}
				d, err := adm.DescribeGroups(context.Background(), "g")
				if err != nil {
					t.Fatal(err)
				}
				return d["g"].State, len(d["g"].Members), 0
			}
			_, _, epochBefore := describe(adm)
			coord := adm.FindGroupCoordinators(context.Background(), "g")["g"]
			if coord.Err != nil {
				t.Fatalf("find coordinator: %v", coord.Err)
			}
			stopped := -1
			for i, a := range agents {
				if a.Addr == net.JoinHostPort(coord.Host, strconv.Itoa(int(coord.Port))) {
					t.Logf("stopping the coordinator, agent %d, at %v", i, got.since())
					if err := a.Stop(); err != nil {
						t.Fatalf("stop the coordinator: %v", err)
					}
					stopped = i
				}
			}
			if stopped < 0 {
				t.Fatalf("coordinator %s:%d is no agent", coord.Host, coord.Port)
			}
			var live []string
			for i, a := range addrList {
				if i != stopped {
					live = append(live, a)
				}
			}
			liveAddrs := strings.Join(live, ",")
			waitUntil(t, 10*time.Second, "the group has a new coordinator", func() bool {
				c := kadm.NewClient(client(t, liveAddrs)).FindGroupCoordinators(context.Background(), "g")["g"]
				return c.Err == nil && net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))) != agents[stopped].Addr
			})
			// Longer than several heartbeat intervals: every member has
			// talked to the new coordinator.
			time.Sleep(2 * time.Second)
			t.Logf("producing the second phase at %v", got.since())
			produce(t, liveAddrs, "t", perPhase, perPhase)
			admLive := kadm.NewClient(client(t, liveAddrs))
			ends, err := admLive.ListEndOffsets(context.Background(), "t")
			if err != nil {
				t.Fatal(err)
			}
			waitUntil(t, 60*time.Second, "every record is consumed and committed", func() bool {
				if count() != 2*perPhase {
					return false
				}
				offs, err := admLive.FetchOffsets(context.Background(), "g")
				if err != nil {
					return false
				}
				done := true
				ends.Each(func(e kadm.ListedOffset) {
					o, ok := offs.Lookup("t", e.Partition)
					done = done && ok && o.At == e.Offset
				})
				return done
			})
			if state, members, epoch := describe(admLive); state != "Stable" || members != 3 || epoch != epochBefore {
				t.Errorf("after the move: state %s with %d members, epoch %d (was %d)", state, members, epoch, epochBefore)
			}
			if n := changes.Load(); n != 0 {
				t.Errorf("%d partition assignment changes after the coordinator moved (a rebalance), want none", n)
			}
			if dups := got.twice(); len(dups) > 0 {
				t.Errorf("%d records delivered twice, e.g. %v", len(dups), dups[:min(len(dups), 5)])
			}
		})
	}
}

// TestE2ERestartKeepsAssignment: the single agent of `floe dev` (SQLite
// catalog) restarts on its directory and address while a group of two
// members consumes: the group's state is in the catalog file, so the
// restarted agent loads it and the members keep their partitions.
func TestE2ERestartKeepsAssignment(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, floetest.Options{Dir: dir})
	addr := a.Addr
	createTopic(t, addr, "t")
	produce(t, addr, "t", 0, 200)
	var (
		got     deliveries
		owned   [2]atomic.Int64
		formed  atomic.Bool
		changes atomic.Int64
	)
	hook := func(i int, sign int64, what string) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			commitOnRevoke(ctx, cl, what)
			if n := int64(len(m["t"])); n > 0 {
				owned[i].Add(sign * n)
				if formed.Load() {
					changes.Add(1)
					t.Logf("member %d: %d partitions %s after the restart began", i, n, what)
				}
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var clients []*kgo.Client
	defer func() {
		formed.Store(false)
		cancel()
		wg.Wait()
		for _, cl := range clients {
			cl.Close()
		}
	}()
	for i := range 2 {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ClientID(fmt.Sprintf("member-%d", i)),
			kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t"), kgo.Balancers(kgo.RangeBalancer()),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond),
			kgo.SessionTimeout(10*time.Second), kgo.HeartbeatInterval(200*time.Millisecond),
			kgo.AutoCommitInterval(100*time.Millisecond), kgo.RetryTimeout(30*time.Second),
			kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }),
			kgo.OnPartitionsAssigned(hook(i, 1, "assigned")), kgo.OnPartitionsRevoked(hook(i, -1, "revoked")),
			kgo.OnPartitionsLost(hook(i, -1, "lost")))
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, cl)
		wg.Go(func() {
			for ctx.Err() == nil {
				cl.PollFetches(ctx).EachRecord(got.by(i))
			}
		})
	}
	count := got.count
	waitUntil(t, 60*time.Second, "two members own every partition and consumed the first records", func() bool {
		return owned[0].Load() > 0 && owned[1].Load() > 0 && owned[0].Load()+owned[1].Load() == partitions && count() == 200
	})
	time.Sleep(time.Second)
	formed.Store(true)
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	startAgent(t, floetest.Options{Dir: dir, Config: func(c *agent.Config) { c.Listen = addr }})
	produce(t, addr, "t", 200, 200)
	adm := kadm.NewClient(client(t, addr))
	ends, err := adm.ListEndOffsets(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 60*time.Second, "every record is consumed and committed", func() bool {
		if count() != 400 {
			return false
		}
		offs, err := adm.FetchOffsets(context.Background(), "g")
		if err != nil {
			return false
		}
		done := true
		ends.Each(func(e kadm.ListedOffset) {
			o, ok := offs.Lookup("t", e.Partition)
			done = done && ok && o.At == e.Offset
		})
		return done
	})
	if n := changes.Load(); n != 0 {
		t.Errorf("%d partition assignment changes across the restart (a rebalance), want none", n)
	}
	if dups := got.twice(); len(dups) > 0 {
		t.Errorf("%d records delivered twice, e.g. %v", len(dups), dups[:min(len(dups), 5)])
	}
}

// commitOnRevoke does what franz-go's default OnPartitionsRevoked does
// and a hook of its own replaces: a blocking commit of what was polled, so
// that a partition handed to another member while the group forms is not
// read again from an older commit. (Without it, the first member's records
// of a partition revoked before its next autocommit were delivered twice:
// an at-least-once redelivery of the client's making, not the broker's.)
func commitOnRevoke(ctx context.Context, cl *kgo.Client, what string) {
	if what == "revoked" {
		_ = cl.CommitUncommittedOffsets(ctx)
	}
}

// deliveries records which partition offsets a group's members received,
// from any goroutine, and by whom and when, so that a failure says whether
// a record came twice to one member (its cursor went back) or to two (a
// partition moved ahead of its commit).
type deliveries struct {
	mu    sync.Mutex
	start time.Time
	seen  map[string]delivery
	dups  []string
}

type delivery struct {
	member int
	at     time.Duration
	n      int
}

// by is member i's record callback.
func (d *deliveries) by(i int) func(*kgo.Record) {
	return func(r *kgo.Record) {
		key := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.seen == nil {
			d.seen = make(map[string]delivery)
			d.start = time.Now()
		}
		at := time.Since(d.start).Round(time.Millisecond)
		first, ok := d.seen[key]
		if !ok {
			d.seen[key] = delivery{member: i, at: at, n: 1}
			return
		}
		first.n++
		d.seen[key] = first
		if first.n == 2 {
			d.dups = append(d.dups, fmt.Sprintf("%s (member %d at %v, then member %d at %v)", key, first.member, first.at, i, at))
		}
	}
}

// since is the time since the first record was received.
func (d *deliveries) since() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return time.Since(d.start).Round(time.Millisecond)
}

// count is how many distinct records were received.
func (d *deliveries) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.seen)
}

// twice lists the records received more than once.
func (d *deliveries) twice() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.dups)
}
