package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floebroker/floe/tests/floetest"
)

// fleetArgs are the arguments of one `floe agent` of a test fleet on the
// given catalog and bucket, with short heartbeats and group timeouts so
// that a dead agent is noticed in about a second.
func fleetArgs(t *testing.T, pg, bucket string) []string {
	return []string{"agent", "--catalog", pg, "--bucket", bucket, "--data", t.TempDir(),
		"--listen", "127.0.0.1:0", "--admin-listen", "", "--log-format", "text", "--log-level", "info",
		"--flush-interval", "10ms", "--heartbeat-interval", "200ms", "--agent-ttl", "1500ms",
		"--group.min-session-timeout", "1s", "--group.initial-rebalance-delay", "100ms",
		"--group.ownership-check-interval", "200ms"}
}

// TestFleetFailover: three `floe agent` processes share PostgreSQL and
// MinIO. Idempotent producers and a consumer group run across them; the
// group's coordinator agent is killed with SIGKILL mid-stream. No
// acknowledged record is lost, none is stored twice, and the group
// consumes again within 10s. Then a second agent is stopped with SIGTERM:
// it exits cleanly and the last agent serves everything.
func TestFleetFailover(t *testing.T) {
	pg := floetest.PostgresURL(t)
	mc := floetest.MinIOConfig(t)
	bucket := fmt.Sprintf("minio://%s:%s@%s/%s?secure=false", url.QueryEscape(mc.AccessKey), url.QueryEscape(mc.SecretKey), mc.Endpoint, mc.Bucket)
	ctx := testCtx(t, 3*time.Minute)

	var procs []*proc
	for range 3 {
		procs = append(procs, startFloe(t, fleetArgs(t, pg, bucket)...))
	}
	var addrs []string
	for _, p := range procs {
		addrs = append(addrs, p.Addr)
	}
	seeds := kgo.SeedBrokers(addrs...)
	// A fresh client per look: franz-go reuses a recent metadata answer.
	brokers := func(addr string) int {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		md, err := kadm.NewClient(cl).BrokerMetadata(ctx)
		if err != nil {
			return -1
		}
		return len(md.Brokers)
	}
	waitFor(t, 10*time.Second, "three live agents", func() bool { return brokers(addrs[0]) == 3 })
	adm := kadm.NewClient(newClient(t, addrs[0]))
	const topic, group = "failover", "failover-group"
	if _, err := adm.CreateTopic(ctx, 6, -1, nil, topic); err != nil {
		t.Fatal(err)
	}

	// Producers: idempotent (franz-go's default), acks=all, values are
	// (producer, sequence).
	var (
		mu     sync.Mutex
		acked  = map[uint64]bool{}
		failed []error
	)
	stopProducing := make(chan struct{})
	var producers sync.WaitGroup
	for i := range 2 {
		cl := newClient(t, addrs[i], seeds, kgo.ClientID("producer-"+strconv.Itoa(i)), kgo.DefaultProduceTopic(topic),
			kgo.ProducerLinger(2*time.Millisecond), kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }))
		producers.Go(func() {
			var inflight sync.WaitGroup
			defer inflight.Wait()
			for seq := uint32(0); ; seq++ {
				select {
				case <-stopProducing:
					return
				default:
				}
				v := uint64(i)<<32 | uint64(seq)
				inflight.Add(1)
				cl.Produce(ctx, &kgo.Record{Key: binary.BigEndian.AppendUint32(nil, seq%31), Value: binary.BigEndian.AppendUint64(nil, v)}, func(r *kgo.Record, err error) {
					defer inflight.Done()
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						failed = append(failed, err)
						return
					}
					acked[v] = true
				})
				time.Sleep(500 * time.Microsecond)
			}
		})
	}

	// The group: two members, consuming into one set.
	var (
		cmu      sync.Mutex
		consumed = map[uint64]bool{}
		// After the kill: when each partition first delivered a record
		// produced after it (sequence above its producer's at the kill).
		killSeq = map[uint64]uint64{}
		resumed = map[int32]time.Time{}
	)
	cctx, stopConsuming := context.WithCancel(ctx)
	defer stopConsuming()
	var consumers sync.WaitGroup
	for i := range 2 {
		cl := newClient(t, addrs[2-i], seeds, kgo.ClientID("member-"+strconv.Itoa(i)),
			kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.FetchMaxWait(200*time.Millisecond),
			kgo.SessionTimeout(3*time.Second), kgo.HeartbeatInterval(300*time.Millisecond),
			kgo.AutoCommitInterval(200*time.Millisecond),
			kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }))
		consumers.Go(func() {
			for cctx.Err() == nil {
				fs := cl.PollFetches(cctx)
				now := time.Now()
				fs.EachRecord(func(r *kgo.Record) {
					v := binary.BigEndian.Uint64(r.Value)
					cmu.Lock()
					consumed[v] = true
					if ks, ok := killSeq[v>>32]; ok && uint64(uint32(v)) > ks && resumed[r.Partition].IsZero() {
						resumed[r.Partition] = now
					}
					cmu.Unlock()
				})
			}
		})
	}
	countAcked := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	waitFor(t, 30*time.Second, "records are acknowledged and consumed", func() bool {
		cmu.Lock()
		defer cmu.Unlock()
		return countAcked() > 2000 && len(consumed) > 1000
	})

	// Kill the group's coordinator.
	co := adm.FindGroupCoordinators(ctx, group)[group]
	if co.Err != nil {
		t.Fatalf("find coordinator: %v", co.Err)
	}
	victim := -1
	for i, p := range procs {
		if p.Addr == net.JoinHostPort(co.Host, strconv.Itoa(int(co.Port))) {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("coordinator %s:%d is no agent of the fleet", co.Host, co.Port)
	}
	mu.Lock()
	cmu.Lock()
	for v := range acked {
		killSeq[v>>32] = max(killSeq[v>>32], uint64(uint32(v)))
	}
	ackedAtKill := len(acked)
	cmu.Unlock()
	mu.Unlock()
	procs[victim].Kill()
	killedAt := time.Now()
	t.Logf("killed the coordinator (agent %d) with %d records acknowledged", victim, ackedAtKill)

	// Every partition delivers records produced after the kill to the
	// group within 10s.
	var slowest time.Duration
	waitFor(t, 10*time.Second, "every partition delivers records produced after the kill", func() bool {
		cmu.Lock()
		defer cmu.Unlock()
		if len(resumed) < 6 {
			return false
		}
		for _, at := range resumed {
			slowest = max(slowest, at.Sub(killedAt))
		}
		return true
	})
	// Keep going a little, then stop producing and let the group drain.
	time.Sleep(2 * time.Second)
	close(stopProducing)
	producers.Wait()
	mu.Lock()
	if len(failed) > 0 {
		t.Errorf("%d produces failed after retries; first: %v", len(failed), failed[0])
	}
	total := len(acked)
	mu.Unlock()
	waitFor(t, 30*time.Second, "the group consumed every acknowledged record", func() bool {
		cmu.Lock()
		defer cmu.Unlock()
		for v := range acked {
			if !consumed[v] {
				return false
			}
		}
		return true
	})
	stopConsuming()
	consumers.Wait()
	t.Logf("every partition delivered new records to the group within %v of the kill; %d records acknowledged in all", slowest.Round(time.Millisecond), total)

	// The log holds every acknowledged record exactly once, in key order.
	var survivors []*proc
	for i, p := range procs {
		if i != victim {
			survivors = append(survivors, p)
		}
	}
	checkLog := func(addr string) {
		got := consumeAll(t, ctx, addr, topic)
		seen := map[uint64]int{}
		for part, vs := range got {
			last := map[uint64]uint64{}
			for _, v := range vs {
				seen[v]++
				k := v>>32<<8 | uint64(uint32(v)%31)
				if l, ok := last[k]; ok && v <= l {
					t.Errorf("partition %d: %x stored after %x (same producer and key)", part, v, l)
				}
				last[k] = v
			}
		}
		dups, missing := 0, 0
		for _, c := range seen {
			if c > 1 {
				dups++
			}
		}
		for v := range acked {
			if seen[v] == 0 {
				missing++
			}
		}
		if dups > 0 || missing > 0 {
			t.Fatalf("read from %s: %d records stored twice, %d acknowledged records missing", addr, dups, missing)
		}
	}
	checkLog(survivors[0].Addr)

	// SIGTERM: the agent leaves the fleet and exits cleanly; the last one
	// serves everything and lists only itself.
	survivors[0].Stop()
	waitFor(t, 10*time.Second, "the last agent lists only itself", func() bool { return brokers(survivors[1].Addr) == 1 })
	if !strings.Contains(survivors[0].Log(), "deregistered; serving until the fleet has noticed") {
		t.Error("the stopped agent did not deregister before closing")
	}
	checkLog(survivors[1].Addr)
	survivors[1].Stop()
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
