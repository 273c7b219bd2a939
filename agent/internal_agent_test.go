package agent

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent/flush"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/sqlite"
	"github.com/floebroker/floe/objstore/mem"
	"github.com/floebroker/floe/wal"
)

// startInternalAgent runs an agent on an in-memory catalog and bucket,
// after mutate (which may replace handlers), and stops it at cleanup.
func startInternalAgent(t *testing.T, mutate func(*Agent)) string {
	t.Helper()
	return startAgentWAL(t, wal.Config{FlushInterval: time.Millisecond}, mutate)
}

// startAgentWAL is startInternalAgent with the WAL's flush settings
// (walCfg's Dir is set here). At cleanup the WAL stops first: its drain
// seals whatever a test left waiting, so the agent's own drain never waits
// for a long flush interval.
func startAgentWAL(t *testing.T, walCfg wal.Config, mutate func(*Agent)) string {
	t.Helper()
	addr, _ := startAgentStop(t, walCfg, mutate)
	return addr
}

// startAgentStop is startAgentWAL that also returns the stop it runs at
// cleanup, for tests of the drain.
func startAgentStop(t *testing.T, walCfg wal.Config, mutate func(*Agent)) (addr string, stop func()) {
	t.Helper()
	ctx := context.Background()
	cat, err := sqlite.Open(ctx, ":memory:", catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bucket := mem.New(nil)
	cfg := DefaultConfig()
	cfg.AgentID = NewAgentID()
	cfg.AutoCreateTopics = true
	sink := flush.New(flush.Config{Cluster: "t", AgentID: cfg.AgentID}, bucket, cat, nil, nil)
	walCfg.Dir = filepath.Join(t.TempDir(), "wal")
	w, err := wal.Open(walCfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	walCtx, stopWAL := context.WithCancel(ctx)
	walDone := make(chan struct{})
	go func() { _ = w.Run(walCtx); close(walDone) }()
	a, err := New(cfg, Deps{Catalog: cat, Bucket: bucket, WAL: w})
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(a)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	agCtx, stopAgent := context.WithCancel(ctx)
	agDone := make(chan struct{})
	go func() { _ = a.Serve(agCtx, ln); close(agDone) }()
	stop = sync.OnceFunc(func() {
		stopWAL()
		<-walDone
		stopAgent()
		<-agDone
		cat.Close()
	})
	t.Cleanup(stop)
	for !a.Ready() {
		time.Sleep(time.Millisecond)
	}
	return ln.Addr().String(), stop
}

func roundTrip(t *testing.T, nc net.Conn, req kmsg.Request, version int16, corr int32) (kmsg.Response, error) {
	t.Helper()
	if _, err := nc.Write(frame(req, version, corr)); err != nil {
		return nil, err
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(nc, body); err != nil {
		return nil, err
	}
	resp := req.ResponseKind()
	resp.SetVersion(version)
	b := body[4:]
	if resp.IsFlexible() && req.Key() != apiVersionsKey {
		b = b[1:] // empty header tags
	}
	return resp, resp.ReadFrom(b)
}

// TestHandlerPanic: a panicking handler closes its connection only; the
// agent keeps serving.
func TestHandlerPanic(t *testing.T) {
	addr := startInternalAgent(t, func(a *Agent) {
		a.apis[60].handle = func(context.Context, *request) (kmsg.Response, error) { panic("boom") }
	})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := roundTrip(t, nc, kmsg.NewPtrDescribeClusterRequest(), 0, 1); err == nil {
		t.Fatal("panicking handler answered")
	}
	nc2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	md := kmsg.NewPtrMetadataRequest()
	if _, err := roundTrip(t, nc2, md, 12, 1); err != nil {
		t.Fatalf("agent stopped serving after a panic: %v", err)
	}
}

// TestDrainBounded: a request that does not end (a handler waiting on an
// unreachable catalog) holds the drain only until the produce timeout
// plus drainSlack; then its connection is closed, cancelling it.
func TestDrainBounded(t *testing.T) {
	started := make(chan struct{})
	addr, stop := startAgentStop(t, wal.Config{FlushInterval: time.Millisecond}, func(a *Agent) {
		a.cfg.ProduceTimeout = 100 * time.Millisecond
		a.apis[60].handle = func(ctx context.Context, _ *request) (kmsg.Response, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		}
	})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(frame(kmsg.NewPtrDescribeClusterRequest(), 0, 1)); err != nil {
		t.Fatal(err)
	}
	<-started
	start := time.Now()
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(drainSlack + 10*time.Second):
		t.Fatal("the drain waited for a request that does not end")
	}
	if d := time.Since(start); d < drainSlack {
		t.Fatalf("drain took %v, want at least the %v slack", d, drainSlack)
	}
}

// TestFetchLongPollAndRange: a fetch at the high watermark waits for a
// commit notification and returns as soon as data arrives; offsets past
// the high watermark are out of range.
func TestFetchLongPollAndRange(t *testing.T) {
	addr := startInternalAgent(t, nil)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	prod := func(conn net.Conn, corr int32) {
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "lp"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = makeBatch(t, testBatch{records: 1, firstTS: time.Now().UnixMilli()})
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := roundTrip(t, conn, req, 9, corr)
		if err != nil {
			t.Error(err)
			return
		}
		if ec := resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode; ec != 0 {
			t.Errorf("produce error %d", ec)
		}
	}
	prod(nc, 1) // creates the topic, offset 0

	fetch := func(offset int64, wait int32) (*kmsg.FetchResponseTopicPartition, time.Duration) {
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis, req.MinBytes, req.MaxBytes = wait, 1, 1<<20
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic = "lp"
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.FetchOffset, fp.PartitionMaxBytes = offset, 1<<20
		ft.Partitions = append(ft.Partitions, fp)
		req.Topics = append(req.Topics, ft)
		start := time.Now()
		resp, err := roundTrip(t, nc, req, 12, 2)
		if err != nil {
			t.Fatal(err)
		}
		return &resp.(*kmsg.FetchResponse).Topics[0].Partitions[0], time.Since(start)
	}
	if p, _ := fetch(5, 100); p.ErrorCode != 1 {
		t.Fatalf("fetch past the end: error %d, want OFFSET_OUT_OF_RANGE", p.ErrorCode)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		nc2, err := net.Dial("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		defer nc2.Close()
		prod(nc2, 1)
	}()
	p, took := fetch(1, 10_000)
	if p.ErrorCode != 0 || len(p.RecordBatches) == 0 || p.HighWatermark != 2 {
		t.Fatalf("long poll: error %d, %d bytes, hw %d", p.ErrorCode, len(p.RecordBatches), p.HighWatermark)
	}
	if took < 250*time.Millisecond || took > 5*time.Second {
		t.Fatalf("long poll returned after %v; want soon after the produce at 300ms", took)
	}
	if got := int64(binary.BigEndian.Uint64(p.RecordBatches)); got != 1 {
		t.Fatalf("returned batch base offset %d, want 1", got)
	}
}

// TestPanicInOrderedSection: a handler that panics inside its ordered
// section (request.inOrder: for produce, the WAL append) still lets the
// connection's later requests pass theirs, so their handlers return and
// release what they hold; before, they waited for it forever, holding
// their request budget and hanging the agent's drain.
func TestPanicInOrderedSection(t *testing.T) {
	first := make(chan *pending, 1)
	secondDone := make(chan struct{})
	addr := startInternalAgent(t, func(a *Agent) {
		spec := *a.apis[60]
		spec.ordered = true
		spec.handle = func(_ context.Context, r *request) (kmsg.Response, error) {
			if r.hdr.correlationID == 1 {
				first <- r.p
				r.inOrder(func() { panic("boom in the ordered section") })
				return nil, nil
			}
			r.inOrder(nil)
			close(secondDone)
			resp := kmsg.NewPtrDescribeClusterResponse()
			return resp, nil
		}
		a.apis[60] = &spec
	})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Two pipelined requests: the first panics in its ordered section.
	req := kmsg.NewPtrDescribeClusterRequest()
	if _, err := nc.Write(append(frame(req, 0, 1), frame(req, 0, 2)...)); err != nil {
		t.Fatal(err)
	}
	p := <-first
	select {
	case <-secondDone:
	case <-time.After(5 * time.Second):
		close(p.ordered) // let the stuck handler go, so cleanup does not hang
		t.Fatal("a request after one that panicked in its ordered section never passed its own")
	}
}

// TestProduceTimedOutBeforeAppend: a produce whose time runs out while a
// compacted topic's key check waits for the decompression slot appends
// none of its batches, so REQUEST_TIMED_OUT is true for every partition:
// the plain topic's batch, valid and checked first, is not stored either
// (appended, it would commit, and a producer retrying it would store it
// twice).
func TestProduceTimedOutBeforeAppend(t *testing.T) {
	var held *Agent
	addr := startInternalAgent(t, func(a *Agent) {
		held = a
		a.decompress <- struct{}{} // a long decompression elsewhere
	})
	t.Cleanup(func() { <-held.decompress })
	ctx := context.Background()
	compact := "compact"
	if _, err := held.cat.CreateTopic(ctx, catalog.TopicSpec{Name: "cmp", Partitions: 1, Configs: map[string]string{"cleanup.policy": compact}}); err != nil {
		t.Fatal(err)
	}
	if _, err := held.cat.CreateTopic(ctx, catalog.TopicSpec{Name: "plain", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 300
	for _, p := range []struct {
		topic string
		batch []byte
	}{
		{"plain", makeBatch(t, testBatch{records: 2})},
		{"cmp", makeBatch(t, testBatch{records: 2, codec: kgo.GzipCompression()})},
	} {
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = p.topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = p.batch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := roundTrip(t, nc, req, 9, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range resp.(*kmsg.ProduceResponse).Topics {
		if code := rt.Partitions[0].ErrorCode; code != kerr.RequestTimedOut.Code {
			t.Fatalf("%s: %v, want REQUEST_TIMED_OUT", rt.Topic, kerr.ErrorForCode(code))
		}
	}
	// Had the timed-out batch been appended, this one would follow it.
	again := kmsg.NewPtrProduceRequest()
	again.Acks, again.TimeoutMillis = -1, 5000
	again.Topics = req.Topics[:1]
	resp, err = roundTrip(t, nc, again, 9, 2)
	if err != nil {
		t.Fatal(err)
	}
	p := resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0]
	if p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("plain topic after a timed-out produce: %v base offset %d, want the first offset, 0", kerr.ErrorForCode(p.ErrorCode), p.BaseOffset)
	}
}
