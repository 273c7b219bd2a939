package agent

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"runtime"
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
	var a *Agent
	addr := startInternalAgent(t, func(x *Agent) { a = x })
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	prod := produceReq("pin", 1, makeBatch(t, testBatch{records: 3, firstTS: time.Now().UnixMilli()}))
	resp, err := roundTrip(t, nc, prod, 9, 1)
	if err != nil {
		t.Fatal(err)
	}
	if ec := resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode; ec != 0 {
		t.Fatalf("produce: error %d", ec)
	}

	// The whole budget is held elsewhere (by responses of clients that do
	// not read, say).
	ctx := context.Background()
	if err := a.respBudget.sem.Acquire(ctx, a.respBudget.size); err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			a.respBudget.sem.Release(a.respBudget.size)
		}
	}
	defer release()

	fetch := kmsg.NewPtrFetchRequest()
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
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(a.m.responseWaits) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the fetch never waited for the response budget")
		}
		time.Sleep(time.Millisecond)
	}

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
