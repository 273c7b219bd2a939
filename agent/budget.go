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
// connections × MaxInflightPerConn × 100 MiB had no limit. What a frame
// costs decoded and answered is bounded apart, by its elements (see
// maxRequestNames).
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

// responseBudget bounds the record bytes of fetch responses across all
// connections, from the read that puts a batch into a response until the
// response is written to the socket or its connection is closed. A
// connection holds at most one built fetch response (pending.prevLarge),
// but a client that stops reading holds it until WriteTimeout passes with
// less than 64 KiB of it moving (writeClock; one reading slowly holds it
// as long as it keeps reading, as in Kafka): 20,000
// such clients could otherwise pin 20,000 × FetchMaxBytes of batches the
// caches have evicted (or copied into the response). A response refers to
// batches in the buffers they were read into, keeping each whole buffer
// reachable; one whose buffers are more than twice its records copies
// them out first (fetchResponse.unpin), so responses keep at most twice
// the budget reachable.
//
// A response reserves each batch before taking it. Its first batch waits
// for room, first come first served, until the fetch's long-poll deadline
// (then the client gets an empty response and fetches again), or until the
// agent drains or the client half-closes; later batches are only tried,
// and a response that cannot reserve one is complete. So a fetch never
// waits for budget while holding some — fetches each holding part of the
// budget and waiting for more would wait on each other — and, as
// semaphore.Weighted fails every try while anyone waits, a waiting fetch
// is not overtaken by later ones. A batch larger than the whole budget
// (KIP-74 returns it anyway) reserves the whole budget.
//
// Nor does a fetch wait while holding what it read: a batch is reserved
// once read, and the read's buffer (a cached span of up to 8 MiB, which
// the caches may evict meanwhile) would stay reachable through the wait —
// one such buffer per waiting fetch, so per connection, bounded by nothing.
// A first batch that finds no room therefore voids the response's build
// (want); the fetch drops it, waits for that room (await) and builds again,
// its first batch taking the room reserved for it (credit).
//
// Responses without records (metadata, errors, empty fetches) are not
// counted: they are small, and bounded per connection by
// MaxInflightPerConn.
type responseBudget struct {
	sem   *semaphore.Weighted
	size  int64
	held  prometheus.Gauge
	waits prometheus.Counter
}

func newResponseBudget(bytes int64, m *metrics) *responseBudget {
	return &responseBudget{sem: semaphore.NewWeighted(bytes), size: bytes, held: m.responseBytes, waits: m.responseWaits}
}

// responseHold is one fetch response's reservation in the response budget.
// It is built by one goroutine; release may then run on another.
type responseHold struct {
	b *responseBudget
	n int64
	// credit is the part of n that await reserved and no batch has taken
	// yet.
	credit int64
	// want is the room the response's first batch found missing: the
	// build that set it holds nothing and is void, and await waits for it.
	want int64
	// ctx and deadline bound the wait for a first batch, and so do drain
	// and peer (the agent's shutdown, the client's half-close) when
	// closed, as they end the fetch's long poll.
	ctx         context.Context
	deadline    time.Time
	drain, peer <-chan struct{}
	refused     bool // a wait failed: no further batch waits in this build
}

// reserve reserves size bytes for a batch the response is about to take,
// and reports whether it may. It never waits: a first batch without room
// (the response holds nothing) sets want instead, unless a wait already
// failed or the deadline has passed, and every later batch of that build
// is refused.
func (h *responseHold) reserve(size int) bool {
	if h.want > 0 {
		return false
	}
	n := min(int64(size), h.b.size)
	need := n - min(h.credit, n)
	if need > 0 && !h.b.sem.TryAcquire(need) {
		if h.n == 0 && !h.refused {
			if time.Now().Before(h.deadline) {
				h.want = n
			} else {
				h.refused = true
			}
		}
		return false
	}
	h.credit -= n - need
	h.n += need
	h.b.held.Add(float64(need))
	return true
}

// await waits for the room want names, holding nothing, until the
// deadline, and keeps it as credit for the next build's first batch. A
// failed wait refuses further waits until release.
func (h *responseHold) await() {
	n := h.want
	h.want = 0
	if n == 0 || h.n > 0 {
		return
	}
	h.b.waits.Inc()
	ctx, cancel := context.WithDeadline(h.ctx, h.deadline)
	defer cancel()
	if h.drain != nil || h.peer != nil {
		// Only a fetch that found the budget spent gets here, so the
		// goroutine costs nothing on the common path.
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-h.drain:
			case <-h.peer:
			case <-done:
				return
			}
			cancel()
		}()
	}
	err := h.b.sem.Acquire(ctx, n)
	if err != nil {
		h.refused = true
		return
	}
	h.n, h.credit = n, n
	h.b.held.Add(float64(n))
}

// trim releases what the response reserved beyond used bytes (batches it
// reserved and then dropped on a failed read, credit no batch took).
func (h *responseHold) trim(used int64) {
	h.credit, h.want = 0, 0
	if extra := h.n - used; extra > 0 {
		h.n = used
		h.b.held.Sub(float64(extra))
		h.b.sem.Release(extra)
	}
}

// release returns the whole reservation, for a response written, dropped
// or about to be rebuilt.
func (h *responseHold) release() {
	h.trim(0)
	h.refused = false
}
