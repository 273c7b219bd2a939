package agent

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
	"weak"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestResponseBudgetWaitHoldsNoRead: a fetch waiting for response budget
// keeps none of the bytes it read before finding no room. Every
// connection can have a fetch waiting, so bytes held by waiting fetches
// (cached spans of up to 8 MiB each, which the caches may evict meanwhile)
// would be bounded by nothing, in the very overload the budget is for.
// The fetch is answered with the records once room is free.
func TestResponseBudgetWaitHoldsNoRead(t *testing.T) {
	a, nc, fetch, release := waitingFetch(t)

	// The caches let go of what the fetch read; nothing else refers to it.
	read := append(evictAll(a.cache), evictAll(a.catchup)...)
	if len(read) == 0 {
		t.Fatal("the fetch read nothing through the caches")
	}
	live := 0
	for range 5 {
		runtime.GC()
		live = 0
		for _, p := range read {
			if p.Value() != nil {
				live++
			}
		}
		if live == 0 {
			break
		}
	}
	if live > 0 {
		t.Errorf("a fetch waiting for response budget keeps %d of the %d buffers it read reachable", live, len(read))
	}

	release()
	fr := readFetchResponse(t, nc, fetch, 12)
	p := fr.Topics[0].Partitions[0]
	if p.ErrorCode != 0 || len(p.RecordBatches) == 0 {
		t.Fatalf("fetch after room was free: error %d, %d bytes of records", p.ErrorCode, len(p.RecordBatches))
	}
}

// waitingFetch starts an agent, produces three records to "pin", spends
// the whole response budget (as responses of clients that do not read
// would) and sends a fetch of them with a 20 s long poll, returning once
// that fetch waits for budget. release gives the budget back (once).
func waitingFetch(t *testing.T) (a *Agent, nc net.Conn, fetch *kmsg.FetchRequest, release func()) {
	t.Helper()
	addr := startInternalAgent(t, func(x *Agent) { a = x })
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	prod := produceReq("pin", 1, makeBatch(t, testBatch{records: 3, firstTS: time.Now().UnixMilli()}))
	resp, err := roundTrip(t, nc, prod, 9, 1)
	if err != nil {
		t.Fatal(err)
	}
	if ec := resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode; ec != 0 {
		t.Fatalf("produce: error %d", ec)
	}
	if err := a.respBudget.sem.Acquire(context.Background(), a.respBudget.size); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { a.respBudget.sem.Release(a.respBudget.size) }) }
	t.Cleanup(release)

	fetch = kmsg.NewPtrFetchRequest()
	fetch.MaxWaitMillis, fetch.MinBytes, fetch.MaxBytes = 20_000, 1, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "pin"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	if _, err := nc.Write(frame(fetch, 12, 2)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); testutil.ToFloat64(a.m.responseWaits) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the fetch never waited for the response budget")
		}
	}
	return a, nc, fetch, release
}

// evictAll empties c and returns weak pointers to the ranges it held.
func evictAll(c *rangeCache) []weak.Pointer[byte] {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ps []weak.Pointer[byte]
	for c.mu.lru.Len() > 0 {
		el := c.mu.lru.Back()
		if d := el.Value.(*cacheEntry).data; len(d) > 0 {
			ps = append(ps, weak.Make(&d[0]))
		}
		c.removeLocked(el)
	}
	return ps
}

// readFetchResponse reads one response to req from nc.
func readFetchResponse(t *testing.T, nc net.Conn, req *kmsg.FetchRequest, version int16) *kmsg.FetchResponse {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(nc, body); err != nil {
		t.Fatal(err)
	}
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	resp.SetVersion(version)
	b := body[4:] // correlation id
	if resp.IsFlexible() {
		b = b[1:]
	}
	if err := resp.ReadFrom(b); err != nil {
		t.Fatal(err)
	}
	return resp
}

// A fetch waiting for response budget is answered at once, without
// records, when the agent starts draining or the client half-closes, as a
// long poll is: it used to wait out its MaxWaitMs (up to --fetch-max-wait,
// 30 s), holding up shutdown.
func TestResponseBudgetWaitEndsOnDrainAndHalfClose(t *testing.T) {
	for _, how := range []string{"drain", "half-close"} {
		t.Run(how, func(t *testing.T) {
			a, nc, fetch, _ := waitingFetch(t)
			start := time.Now()
			if how == "drain" {
				go a.drain()
			} else if err := nc.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			fr := readFetchResponse(t, nc, fetch, 12)
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("answered %v after the %s, want at once", took, how)
			}
			if p := fr.Topics[0].Partitions[0]; p.ErrorCode != 0 || len(p.RecordBatches) != 0 {
				t.Fatalf("fetch: error %d, %d bytes of records; want an empty answer", p.ErrorCode, len(p.RecordBatches))
			}
		})
	}
}
