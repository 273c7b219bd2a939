package agent

import (
	"bytes"
	"encoding/binary"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore"
)

// createInternalTopic creates a topic through the agent at addr.
func createInternalTopic(t *testing.T, nc net.Conn, name string, parts int32) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, parts, -1
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 5000
	resp, err := roundTrip(t, nc, req, 5, 1)
	if err != nil {
		t.Fatal(err)
	}
	if ec := resp.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode; ec != 0 {
		t.Fatalf("create topic %s: error %d", name, ec)
	}
}

// TestStalledFetchConnectionsHoldBoundedMemory: a client that pipelines
// fetches on a connection and never reads the responses makes the agent
// hold at most one built fetch response per connection, as Kafka does
// (it reads a connection's next request only once the response before it
// is sent). Before, every pipelined fetch (up to MaxInflightPerConn) built
// its response — small batches are copied into it — and held it until the
// write timed out: connections × 32 × FetchMaxBytes.
func TestStalledFetchConnectionsHoldBoundedMemory(t *testing.T) {
	var ag *Agent
	addr := startInternalAgent(t, func(a *Agent) { ag = a })
	nc := dialAgent(t, addr)
	const parts = 16
	createInternalTopic(t, nc, "stalled", parts)
	// ~2 MiB of batches small enough to be copied into each response.
	batch := makeBatch(t, testBatch{records: 150, firstTS: time.Now().UnixMilli()})
	if len(batch) >= recordsCopyBelow {
		t.Fatalf("batch of %d bytes is not copied into responses", len(batch))
	}
	rounds := (2 << 20) / (parts * len(batch))
	for i := range rounds {
		if _, err := roundTrip(t, nc, produceReq("stalled", parts, batch), 9, int32(2+i)); err != nil {
			t.Fatal(err)
		}
	}

	fetch := fetchReq("stalled", parts, 0, 0, 2<<20)
	// One response, for reference.
	resp, err := roundTrip(t, nc, fetch, 12, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var one int
	for _, p := range resp.(*kmsg.FetchResponse).Topics[0].Partitions {
		one += len(p.RecordBatches)
	}
	if one < 1<<20 {
		t.Fatalf("a fetch returned %d bytes, want about 2 MiB", one)
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	const conns, pipelined = 4, 32
	fetched := func() float64 { return testutil.ToFloat64(ag.m.requests.WithLabelValues("Fetch")) }
	base := fetched()
	var stalled []net.Conn
	for range conns {
		c := dialAgent(t, addr)
		_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
		var frames []byte
		for i := range pipelined {
			frames = append(frames, frame(fetch, 12, int32(i))...)
		}
		if _, err := c.Write(frames); err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, c)
	}
	// Let the agent handle what it will of the pipelined fetches (all
	// of them within a few hundred milliseconds before the fix).
	deadline := time.Now().Add(2 * time.Second)
	for fetched()-base < conns*pipelined && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d stalled connections with %d pipelined fetches of %d KiB each: heap grew %d MiB", conns, pipelined, one>>10, grown>>20)
	// One response per connection in flight (being written), one more
	// built: 4 × 2 × 2 MiB, plus slack.
	if limit := int64(conns*3*one) + 8<<20; grown > limit {
		t.Fatalf("heap grew %d MiB with stalled fetch connections, want at most %d MiB: responses are built for every pipelined fetch", grown>>20, limit>>20)
	}
	for _, c := range stalled {
		c.Close()
	}
}

// TestLongPollsNotWokenByOtherTopics: commits to one topic wake none of
// the long polls waiting on another. Before, every commit in the fleet
// woke every long-polling fetch, which rebuilt its whole response: 500
// consumers of a quiet 64-partition topic cost some 10 ms of CPU per
// commit to a busy one.
func TestLongPollsNotWokenByOtherTopics(t *testing.T) {
	var ag *Agent
	addr := startInternalAgent(t, func(a *Agent) { ag = a })
	nc := dialAgent(t, addr)
	const parts, polls, commits = 64, 50, 20
	createInternalTopic(t, nc, "quiet", parts)
	createInternalTopic(t, nc, "busy", 1)
	batch := makeBatch(t, testBatch{records: 1, firstTS: time.Now().UnixMilli()})
	corr := int32(10)
	produce := func() {
		corr++
		if _, err := roundTrip(t, nc, produceReq("busy", 1, batch), 9, corr); err != nil {
			t.Fatal(err)
		}
	}
	fetch := fetchReq("quiet", parts, 0, 30_000, 1<<20)
	waiting := func() (n int, woken int64) {
		ag.tail.mu.Lock()
		defer ag.tail.mu.Unlock()
		for _, ws := range ag.tail.mu.waiters {
			n += len(ws)
		}
		return n, ag.tail.mu.woken
	}
	for range polls {
		c := dialAgent(t, addr)
		if _, err := c.Write(frame(fetch, 12, 1)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for n, _ := waiting(); n < polls; n, _ = waiting() {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d long polls waiting", n, polls)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, before := waiting()
	for range commits {
		produce()
	}
	if n, woken := waiting(); woken != before || n != polls {
		t.Fatalf("%d commits to another topic woke %d long polls (%d waiting), want none", commits, woken-before, n)
	}
}

// TestLaggingReaderKeepsTailCache: a consumer reading a partition from
// rows its tail index still holds but the tail cache no longer does (far
// behind: more commits than the cache holds) reads them through the
// catch-up cache, so the objects the tail cache holds for consumers at the
// tail stay there. Before, such a reader swept its whole backlog through
// the tail cache (the catch-up cache served only rows below the tail
// index, which keeps up to 512 rows a partition: minutes of commits),
// evicting everything consumers at the tail read.
func TestLaggingReaderKeepsTailCache(t *testing.T) {
	var ag *Agent
	addr := startInternalAgent(t, func(a *Agent) {
		ag = a
		a.cache = newRangeCache(4<<20, 0, a.m.cache("tail"))
	})
	nc := dialAgent(t, addr)
	createInternalTopic(t, nc, "lag", 1)
	createInternalTopic(t, nc, "live", 1)
	corr := int32(10)
	produce := func(topic string, batch []byte) {
		t.Helper()
		corr++
		resp, err := roundTrip(t, nc, produceReq(topic, 1, batch), 9, corr)
		if err != nil {
			t.Fatal(err)
		}
		if ec := resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode; ec != 0 {
			t.Fatalf("produce: error %d", ec)
		}
	}
	// Twice the tail cache in commits of one partition, each its own
	// object: the first half is evicted by the second.
	big := makeBatch(t, testBatch{records: 5000, firstTS: time.Now().UnixMilli()})
	commits := (8 << 20) / len(big)
	for range commits {
		produce("lag", big)
	}
	produce("live", makeBatch(t, testBatch{records: 1, firstTS: time.Now().UnixMilli()}))
	live, err := ag.topic(t.Context(), "live", 1)
	if err != nil {
		t.Fatal(err)
	}
	// This agent learns of its commits from the follower (no OnCommitted
	// hook here): wait for it.
	var liveRows []catalog.BatchRow
	for deadline := time.Now().Add(5 * time.Second); ; {
		var ok bool
		if liveRows, ok = ag.tail.lookup(catalog.TopicPartition{TopicID: live.ID}, 0, 1, 0); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the live partition's row is not in the tail index")
		}
		time.Sleep(5 * time.Millisecond)
	}
	row := liveRows[0]
	fetchAt := func(topic string, offset int64) kmsg.FetchResponseTopicPartition {
		t.Helper()
		corr++
		resp, err := roundTrip(t, nc, fetchReq(topic, 1, offset, 0, 1<<20), 12, corr)
		if err != nil {
			t.Fatal(err)
		}
		p := resp.(*kmsg.FetchResponse).Topics[0].Partitions[0]
		if p.ErrorCode != 0 || len(p.RecordBatches) == 0 {
			t.Fatalf("fetch %s at %d: error %d, %d bytes", topic, offset, p.ErrorCode, len(p.RecordBatches))
		}
		return p
	}
	fetchAt("live", 0) // a consumer at the tail
	cached := func() bool { _, ok := ag.cache.peek(row.ObjectKey, row.ByteOffset, row.ByteLength); return ok }
	if !cached() {
		t.Fatal("the tail read is not in the tail cache")
	}

	// The lagging consumer reads "lag" from the start to its end.
	offset, end := int64(0), int64(commits*5000)
	for offset < end {
		p := fetchAt("lag", offset)
		var batches kmsg.RecordBatch
		for b := p.RecordBatches; len(b) > 0; {
			if err := batches.ReadFrom(b); err != nil {
				t.Fatal(err)
			}
			offset = batches.FirstOffset + int64(batches.LastOffsetDelta) + 1
			b = b[12+batches.Length:]
		}
	}
	if !cached() {
		t.Fatal("a consumer reading far behind evicted the tail cache")
	}
}

// TestLongPollOnDeletedTopic: deleting a topic answers the fetches
// waiting for its records at once, with UNKNOWN_TOPIC_OR_PARTITION, as
// Kafka completes a delayed fetch whose partition is gone; they waited
// for their whole MaxWait.
func TestLongPollOnDeletedTopic(t *testing.T) {
	addr := startInternalAgent(t, nil)
	nc := dialAgent(t, addr)
	createInternalTopic(t, nc, "doomed", 2)
	fetch := fetchReq("doomed", 2, 0, 10_000, 1<<20)
	go func() {
		time.Sleep(300 * time.Millisecond)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		del := kmsg.NewPtrDeleteTopicsRequest()
		del.TopicNames = []string{"doomed"}
		del.TimeoutMillis = 5000
		if _, err := roundTrip(t, c, del, 5, 1); err != nil {
			t.Error(err)
		}
	}()
	start := time.Now()
	resp, err := roundTrip(t, nc, fetch, 12, 2)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	p := resp.(*kmsg.FetchResponse).Topics[0].Partitions[0]
	if took > 5*time.Second || p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("long poll on a deleted topic answered after %v with error %d, want UNKNOWN_TOPIC_OR_PARTITION at once", took, p.ErrorCode)
	}
}

// TestFetchAfterObjectsCollected: rows of the tail index whose objects
// compaction merged away and GC deleted are read again from the catalog
// (the merged object): the consumer gets its records, not a storage error
// or empty answers forever.
func TestFetchAfterObjectsCollected(t *testing.T) {
	var ag *Agent
	addr := startInternalAgent(t, func(a *Agent) { ag = a })
	nc := dialAgent(t, addr)
	createInternalTopic(t, nc, "gc", 1)
	for i := range 3 {
		req := produceReq("gc", 1, makeBatch(t, testBatch{records: 2, firstTS: time.Now().UnixMilli()}))
		if _, err := roundTrip(t, nc, req, 9, int32(10+i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := t.Context()
	top, err := ag.topic(ctx, "gc", 1)
	if err != nil {
		t.Fatal(err)
	}
	tp := catalog.TopicPartition{TopicID: top.ID}
	deadline := time.Now().Add(5 * time.Second)
	for !ag.tail.covers(tp, 0) || !ag.tail.covers(tp, 5) {
		if time.Now().After(deadline) {
			t.Fatal("the tail index never held the partition's rows")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Merge the three rows into one object, then delete the old ones.
	swapRowsInto(t, ag, tp, 3, "merged", -1)
	for i, from := range []int64{2, 0, 4} {
		resp, err := roundTrip(t, nc, fetchReq("gc", 1, from, 0, 1<<20), 12, int32(100+i))
		if err != nil {
			t.Fatal(err)
		}
		p := resp.(*kmsg.FetchResponse).Topics[0].Partitions[0]
		if p.ErrorCode != 0 || len(p.RecordBatches) == 0 || p.HighWatermark != 6 {
			t.Fatalf("fetch at %d after GC: error %d, %d bytes, high watermark %d", from, p.ErrorCode, len(p.RecordBatches), p.HighWatermark)
		}
		if got := int64(binary.BigEndian.Uint64(p.RecordBatches)); got != from {
			t.Fatalf("fetch at %d after GC: first batch at %d", from, got)
		}
	}
}

// produceReq is an acks=all produce of batch to partitions 0..parts-1 of
// topic.
func produceReq(topic string, parts int32, batch []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	for p := range parts {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = p, batch
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	return req
}

// fetchReq is a fetch of partitions 0..parts-1 of topic from offset from,
// waiting up to maxWaitMs for a byte, each partition and the response up
// to maxBytes.
func fetchReq(topic string, parts int32, from int64, maxWaitMs, maxBytes int32) *kmsg.FetchRequest {
	fetch := kmsg.NewPtrFetchRequest()
	fetch.MaxWaitMillis, fetch.MinBytes, fetch.MaxBytes = maxWaitMs, 1, maxBytes
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = topic
	for p := range parts {
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = p, from, maxBytes
		ft.Partitions = append(ft.Partitions, fp)
	}
	fetch.Topics = append(fetch.Topics, ft)
	return fetch
}

// dialAgent connects to the agent at addr, closing the connection at the
// end of the test.
func dialAgent(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// swapRowsInto does what compaction does to tp's n rows: copies them but
// the one at index drop (-1: none) into one new object under key, swaps
// the rows in the catalog, and deletes the old objects.
func swapRowsInto(t *testing.T, ag *Agent, tp catalog.TopicPartition, n int, key string, drop int) {
	t.Helper()
	ctx := t.Context()
	rows, err := ag.cat.Batches(ctx, tp, 0, 1<<20)
	if err != nil || len(rows) != n {
		t.Fatalf("rows: %v, %d of %d", err, len(rows), n)
	}
	bucket := ag.bucket.(objstore.Bucket)
	var merged []byte
	swap := catalog.RowSwap{TopicPartition: tp, Old: rows, ObjectKey: key}
	for i, r := range rows {
		if i == drop {
			continue
		}
		raw, err := readRange(ctx, bucket, r.ObjectKey, r.ByteOffset, r.ByteLength)
		if err != nil {
			t.Fatal(err)
		}
		nr := r
		nr.ByteOffset = int64(len(merged))
		swap.New = append(swap.New, nr)
		merged = append(merged, raw...)
	}
	swap.ObjectSize = int64(len(merged))
	if err := bucket.Put(ctx, key, bytes.NewReader(merged), int64(len(merged))); err != nil {
		t.Fatal(err)
	}
	if err := ag.cat.(catalog.Compactor).SwapRows(ctx, swap); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if err := bucket.Delete(ctx, r.ObjectKey); err != nil {
			t.Fatal(err)
		}
	}
}
