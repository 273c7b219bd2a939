package agent

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
)

// requestBudget bounds the memory of request frames across all
// connections, as Kafka's queued.max.request.bytes does: a frame's
// declared size is reserved before its buffer is allocated and released
// when its handler has returned. A connection whose next frame does not
// fit waits before reading it (TCP pushes back on the client), so neither
// many connections nor one pipelining many requests can make the agent
// allocate more than Config.MaxQueuedRequestBytes for frames, whatever
// sizes they claim. Without it, MaxRequestBytes bounded one frame only:
// connections × MaxInflightPerConn × 100 MiB had no limit.
//
// Frames of at most smallFrameBytes are not counted. Fetch, metadata,
// heartbeats and offset commits stay that small, so a budget held by
// large produce requests — which wait for their commit, up to the produce
// timeout when the bucket is down — never stops consumers and group
// members; their memory is bounded per connection by MaxInflightPerConn.
//
// Reservations are first come, first served (semaphore.Weighted), so a
// large frame is not starved by smaller ones arriving after it.
type requestBudget struct {
	sem   *semaphore.Weighted
	held  prometheus.Gauge
	waits prometheus.Counter
}

// smallFrameBytes is the largest frame read without a reservation.
const smallFrameBytes = 64 << 10

// frameStallTimeout closes a connection that sends nothing for this long
// inside a frame holding a reservation (or for the idle timeout if
// shorter). Clients write a request whole, so only a broken network or a
// client that claimed a size it does not send pauses there; without it
// such a client would hold its reservation, and keep the large requests
// of every other connection waiting, for the whole idle timeout (10
// minutes by default, as Kafka's).
var frameStallTimeout = 10 * time.Second // a var for tests

func newRequestBudget(bytes int64, m *metrics) *requestBudget {
	return &requestBudget{sem: semaphore.NewWeighted(bytes), held: m.queuedBytes, waits: m.queuedWaits}
}

// acquire reserves a frame of size bytes, waiting until it fits or ctx
// ends. It returns what was reserved (0 for a small frame), to be passed
// to release.
func (b *requestBudget) acquire(ctx context.Context, size int32) (int64, error) {
	if size <= smallFrameBytes {
		return 0, nil
	}
	n := int64(size)
	if !b.sem.TryAcquire(n) {
		b.waits.Inc()
		if err := b.sem.Acquire(ctx, n); err != nil {
			return 0, err
		}
	}
	b.held.Add(float64(n))
	return n, nil
}

// release returns a reservation made by acquire.
func (b *requestBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.held.Sub(float64(n))
	b.sem.Release(n)
}
