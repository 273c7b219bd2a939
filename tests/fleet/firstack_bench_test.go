package fleet

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floebroker/floe/bench"
	"github.com/floebroker/floe/tests/floetest"
	"github.com/floebroker/floe/wal"
)

// BenchmarkFirstAck: how long a producer that starts on a new topic waits
// for its first ack, with 2,000 partitions against 16: what an operator
// sees each time a producer starts on a wide topic. The workload is
// BenchmarkFleetPartitions' (one idempotent franz-go producer, 1 KiB
// records round-robin over the partitions, 5 ms linger, the buffer kept
// full for a second) on a topic created just before, against one agent
// with the flush settings of `floe agent`. Rounds alternate between the
// two sizes (firstAckRounds each) and the medians are reported:
//
//	go test -run - -bench FirstAck -benchtime 1x -v ./tests/fleet/
//
// first-ack-ms is from the client's start; first-produce-ms is when the
// client began writing its first Produce request, which is the client's
// own doing (metadata, InitProducerId, then filling batches: franz-go
// sends its first request to a new broker alone, with everything it has
// buffered by then, tens of MB at 2,000 partitions); agent-ms is the rest,
// the first request's round trip (read, WAL append, seal, PUT, commit).
// FLOE_BENCH_KFAKE=1 runs the same rounds against franz-go's in-memory
// kfake broker, to see the client's part alone.
func BenchmarkFirstAck(b *testing.B) {
	var addr string
	if os.Getenv("FLOE_BENCH_KFAKE") == "1" {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		addr = c.ListenAddrs()[0]
	} else {
		cat := floetest.PostgresCatalog(b)
		base := floetest.MinIOBucket(b)
		a, _ := benchMemberFlush(b, cat, base, "", wal.DefaultFlushInterval)
		benchWaitFleet(b, a)
		addr = a.Addr
	}
	// The agent's first commits after it starts also prepare statements
	// on fresh catalog connections; a warm-up round keeps that out.
	firstAck(b, addr, "first-ack-warm", 16)
	var rounds [2][]firstAckTimes
	for round := range firstAckRounds {
		for i, parts := range []int32{2000, 16} {
			t := firstAck(b, addr, fmt.Sprintf("first-ack-%d-%d", parts, round), parts)
			rounds[i] = append(rounds[i], t)
			b.Logf("%d partitions, round %d: first ack after %v; first Produce written at %v, answered after %v more",
				parts, round, t.ack.Round(time.Millisecond), t.produce.Round(time.Millisecond), (t.ack - t.produce).Round(time.Millisecond))
		}
	}
	for i, parts := range []int32{2000, 16} {
		ack, produce, agent := medianFirstAck(rounds[i])
		b.ReportMetric(ms(ack), fmt.Sprintf("first-ack-ms-%d", parts))
		b.ReportMetric(ms(produce), fmt.Sprintf("first-produce-ms-%d", parts))
		b.ReportMetric(ms(agent), fmt.Sprintf("agent-ms-%d", parts))
		b.Logf("%d partitions, median of %d: first ack %v = first Produce written at %v + %v until its answer",
			parts, len(rounds[i]), ack.Round(time.Millisecond), produce.Round(time.Millisecond), agent.Round(time.Millisecond))
	}
}

// firstAckRounds is how many rounds BenchmarkFirstAck runs per size.
const firstAckRounds = 5

type firstAckTimes struct {
	ack     time.Duration // the first ack, from the client's start
	produce time.Duration // the first Produce request began to be written
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// medianFirstAck returns the medians of the rounds' first acks, first
// Produce requests and the differences of the two.
func medianFirstAck(rounds []firstAckTimes) (ack, produce, agent time.Duration) {
	median := func(f func(firstAckTimes) time.Duration) time.Duration {
		var v []time.Duration
		for _, r := range rounds {
			v = append(v, f(r))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return median(func(r firstAckTimes) time.Duration { return r.ack }),
		median(func(r firstAckTimes) time.Duration { return r.produce }),
		median(func(r firstAckTimes) time.Duration { return r.ack - r.produce })
}

// firstProduceHook notes when the client began writing its first Produce
// request (the hook runs once the answer is read; the request's round trip
// is subtracted).
type firstProduceHook struct {
	start time.Time
	once  sync.Once
	at    atomic.Int64
}

func (h *firstProduceHook) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e kgo.BrokerE2E) {
	if key != 0 { // Produce
		return
	}
	h.once.Do(func() { h.at.Store(int64(time.Since(h.start) - e.DurationE2E())) })
}

// firstAck creates topic with parts partitions, produces to it as
// BenchmarkFleetPartitions does (bench.ProducePartitions) for a second and
// returns when the first ack and the first Produce request came.
func firstAck(tb testing.TB, addr, topic string, parts int32) firstAckTimes {
	tb.Helper()
	benchTopic(tb, addr, topic, parts)
	h := &firstProduceHook{start: time.Now()}
	r, err := bench.ProducePartitions(context.Background(), []string{addr}, topic, int(parts), partitionsRecordSize, 0, time.Second, kgo.WithHooks(h))
	if err != nil {
		tb.Fatalf("produce to %s: %v", topic, err)
	}
	// ProducePartitions times from its own start, just after h.start.
	return firstAckTimes{ack: r.FirstAck, produce: time.Duration(h.at.Load())}
}
