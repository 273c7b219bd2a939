package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent/flush"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/sqlite"
	"github.com/floebroker/floe/objstore/mem"
	"github.com/floebroker/floe/wal"
)

// fuzzAgent is one agent per fuzzing process, on an in-memory catalog and
// bucket, with small limits so every input finishes fast and memory stays
// bounded.
var fuzzAgent struct {
	once sync.Once
	addr string
	err  error
}

func startFuzzAgent(t testing.TB) string {
	fuzzAgent.once.Do(func() {
		ctx := context.Background()
		cat, err := sqlite.Open(ctx, ":memory:", catalog.Options{})
		if err != nil {
			fuzzAgent.err = err
			return
		}
		bucket := mem.New(nil)
		cfg := DefaultConfig()
		cfg.AgentID = NewAgentID()
		cfg.MaxRequestBytes = 64 << 10
		cfg.FetchMaxWait = 20 * time.Millisecond
		cfg.ProduceTimeout = time.Second
		cfg.IdleTimeout = 2 * time.Second
		cfg.AutoCreateTopics = true
		cfg.DefaultPartitions = 2
		var a *Agent
		var mu sync.Mutex
		sink := flush.New(flush.Config{Cluster: "fuzz", AgentID: cfg.AgentID, OnCommitted: func(k string, o []byte, r []catalog.BatchRow) {
			mu.Lock()
			defer mu.Unlock()
			if a != nil {
				a.OnCommitted(k, o, r)
			}
		}}, bucket, cat, nil, nil)
		// The WAL directory outlives the test that happened to start the
		// agent: the agent serves the whole fuzzing process.
		dir, err := tempDirNoCleanup()
		if err != nil {
			fuzzAgent.err = err
			return
		}
		w, err := wal.Open(wal.Config{Dir: filepath.Join(dir, "wal"), FlushInterval: time.Millisecond}, sink)
		if err != nil {
			fuzzAgent.err = err
			return
		}
		go func() { _ = w.Run(ctx) }()
		ag, err := New(cfg, Deps{Catalog: cat, Bucket: bucket, WAL: w})
		if err != nil {
			fuzzAgent.err = err
			return
		}
		mu.Lock()
		a = ag
		mu.Unlock()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fuzzAgent.err = err
			return
		}
		go func() { _ = ag.Serve(ctx, ln) }()
		for !ag.Ready() {
			time.Sleep(time.Millisecond)
		}
		fuzzAgent.addr = ln.Addr().String()
	})
	if fuzzAgent.err != nil {
		t.Fatalf("start fuzz agent: %v", fuzzAgent.err)
	}
	return fuzzAgent.addr
}

// frame encodes a request as a client would.
func frame(req kmsg.Request, version int16, corr int32) []byte {
	req.SetVersion(version)
	return kmsg.NewRequestFormatter(kmsg.FormatterClientID("fuzz")).AppendRequest(nil, req, corr)
}

func fuzzSeeds(t testing.TB) [][]byte {
	av := kmsg.NewPtrApiVersionsRequest()
	av.ClientSoftwareName, av.ClientSoftwareVersion = "fuzz", "1"
	md := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr("fz")
	md.Topics = []kmsg.MetadataRequestTopic{mt}
	md.AllowAutoTopicCreation = true

	prod := kmsg.NewPtrProduceRequest()
	prod.Acks = -1
	prod.TimeoutMillis = 500
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "fz"
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Records = makeBatch(t, testBatch{records: 2, firstTS: time.Now().UnixMilli()})
	pt.Partitions = []kmsg.ProduceRequestTopicPartition{pp}
	prod.Topics = []kmsg.ProduceRequestTopic{pt}

	fetch := kmsg.NewPtrFetchRequest()
	fetch.MaxWaitMillis = 5000
	fetch.MinBytes = 1
	fetch.MaxBytes = 1 << 20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "fz"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = []kmsg.FetchRequestTopicPartition{fp}
	fetch.Topics = []kmsg.FetchRequestTopic{ft}

	lo := kmsg.NewPtrListOffsetsRequest()
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = "fz"
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.Timestamp = 0
	lt.Partitions = []kmsg.ListOffsetsRequestTopicPartition{lp}
	lo.Topics = []kmsg.ListOffsetsRequestTopic{lt}

	ct := kmsg.NewPtrCreateTopicsRequest()
	ctt := kmsg.NewCreateTopicsRequestTopic()
	ctt.Topic, ctt.NumPartitions, ctt.ReplicationFactor = "fz2", 3, -1
	ct.Topics = []kmsg.CreateTopicsRequestTopic{ctt}

	dc := kmsg.NewPtrDescribeConfigsRequest()
	dr := kmsg.NewDescribeConfigsRequestResource()
	dr.ResourceType, dr.ResourceName = kmsg.ConfigResourceTypeTopic, "fz"
	dc.Resources = []kmsg.DescribeConfigsRequestResource{dr}

	ip := kmsg.NewPtrInitProducerIDRequest()

	seeds := [][]byte{
		frame(av, 3, 1),
		frame(av, 0, 1),
		frame(md, 12, 2),
		frame(md, 1, 2),
		frame(prod, 9, 3),
		frame(prod, 3, 3),
		frame(fetch, 11, 4),
		frame(fetch, 13, 4),
		frame(lo, 7, 5),
		frame(ct, 7, 6),
		frame(dc, 4, 7),
		frame(ip, 4, 8),
		append(frame(md, 12, 1), frame(prod, 9, 2)...),
		append(frame(prod, 9, 1), frame(fetch, 11, 2)...),
		{0, 0, 0, 4, 0, 18, 0, 0},
		{0xff, 0xff, 0xff, 0xff},
	}
	return seeds
}

// FuzzConnection writes arbitrary bytes to a live agent's connection: the
// agent must not panic (the process would die), must close or answer
// within a bounded time, and keeps serving others.
func FuzzConnection(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		addr := startFuzzAgent(t)
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := nc.Write(in); err != nil && !isConnClosed(err) {
			t.Fatalf("write: %v", err)
		}
		_ = nc.(*net.TCPConn).CloseWrite()
		// Read every response frame until the agent closes.
		for {
			var size [4]byte
			if _, err := io.ReadFull(nc, size[:]); err != nil {
				if isTimeout(err) {
					t.Fatal("agent neither answered nor closed the connection in 20s")
				}
				break
			}
			n := binary.BigEndian.Uint32(size[:])
			if n > 64<<20 {
				t.Fatalf("response frame of %d bytes", n)
			}
			if _, err := io.CopyN(io.Discard, nc, int64(n)); err != nil {
				if isTimeout(err) {
					t.Fatal("agent stalled inside a response")
				}
				break
			}
		}
		// The agent still serves.
		c2, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("agent stopped accepting: %v", err)
		}
		c2.Close()
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isConnClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || !isTimeout(err)
}

// fuzzDir is the fuzz agent's WAL directory, removed when the test binary
// exits (the agent outlives any single test).
var fuzzDir string

func tempDirNoCleanup() (string, error) {
	dir, err := os.MkdirTemp("", "floe-agent-fuzz")
	fuzzDir = dir
	return dir, err
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fuzzDir != "" {
		os.RemoveAll(fuzzDir)
	}
	os.Exit(code)
}

// TestHalfClosedClientGetsAnswers: a client that closes its sending side
// after pipelining requests still gets every answer, in order.
func TestHalfClosedClientGetsAnswers(t *testing.T) {
	addr := startFuzzAgent(t)
	seeds := fuzzSeeds(t)
	in := append(append(append([]byte(nil), seeds[2]...), seeds[4]...), seeds[6]...) // metadata, produce, fetch
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(in); err != nil {
		t.Fatal(err)
	}
	_ = nc.(*net.TCPConn).CloseWrite()
	var corrs []int32
	for {
		var size [4]byte
		if _, err := io.ReadFull(nc, size[:]); err != nil {
			break
		}
		body := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(nc, body); err != nil {
			t.Fatal(err)
		}
		corrs = append(corrs, int32(binary.BigEndian.Uint32(body)))
	}
	if len(corrs) != 3 || corrs[0] != 2 || corrs[1] != 3 || corrs[2] != 4 {
		t.Fatalf("answers %v, want correlation ids [2 3 4]", corrs)
	}
}
