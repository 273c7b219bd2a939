package agent_test

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/tests/floetest"
)

// heapAlloc is the live heap after a collection.
func heapAlloc() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// TestPaddedAcks0FramesNotPinned: acks=0 frames of a tiny batch padded to
// the frame limit (kmsg skips trailing bytes) are answered at once, which
// releases their reservation in the request budget, while the WAL keeps
// their batches until the flush, counting only the batches. The batches
// must not keep the frames reachable.
func TestPaddedAcks0FramesNotPinned(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := floetest.Start(t, floetest.Options{Registerer: reg, FlushInterval: 30 * time.Second, Config: func(c *agent.Config) {
		c.MaxRequestBytes = testMaxRequestBytes
		c.MaxQueuedRequestBytes = 2 * testMaxRequestBytes
	}})
	createTopic(t, a, "pin", 1, nil)
	before := heapAlloc()
	c := floetest.Dial(t, a.Addr)
	req := produceReq("pin", 0, floetest.Batch(floetest.BatchSpec{Records: 1, Value: []byte("x")}))
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("padded"))
	const n = 200
	for i := range n {
		frame := f.AppendRequest(nil, req, int32(i+1))
		frame = append(frame, make([]byte, testMaxRequestBytes-len(frame))...)
		binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
		if err := c.WriteRaw(frame); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && metricValue(t, reg, "floe_wal_buffered_bytes") < n*50 {
		time.Sleep(20 * time.Millisecond)
	}
	if got := metricValue(t, reg, "floe_wal_buffered_bytes"); got < n*50 {
		t.Fatalf("WAL buffers %v bytes: the %d produces did not all arrive", got, n)
	}
	witness(t, a)
	if grew := heapAlloc() - before; grew > 48<<20 {
		t.Fatalf("heap grew by %d MiB for %d padded acks=0 frames of 1 MiB (request budget 2 MiB)", grew>>20, n)
	}
}

// TestMetadataNonReadersBounded: clients that pipeline Metadata requests
// and never read hold one built response each, not one per request in
// flight (each a whole cluster's topics).
func TestMetadataNonReadersBounded(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})
	createTopic(t, a, "wide", 4000, nil)
	meta := kmsg.NewPtrMetadataRequest()
	meta.Version = 12
	frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("stalled")).AppendRequest(nil, meta, 1)
	before := heapAlloc()
	const conns = 20
	for range conns {
		nc, err := net.Dial("tcp", a.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.(*net.TCPConn).SetReadBuffer(4 << 10)
		for range 200 {
			_ = nc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := nc.Write(frame); err != nil {
				break
			}
		}
	}
	time.Sleep(2 * time.Second)
	// Before, 20 such connections held 274 MiB.
	if grew := heapAlloc() - before; grew > 80<<20 {
		t.Fatalf("heap grew by %d MiB with %d connections not reading their Metadata responses", grew>>20, conns)
	}
	witness(t, a)
}

// TestSlowReaderGetsWholeResponse: a consumer reading steadily but slower
// than its fetch response's size per WriteTimeout gets the whole
// response, over plaintext and TLS; the write deadline bounds a client's
// silence, not a response's length.
func TestSlowReaderGetsWholeResponse(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "plaintext"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			f := newTLSFiles(t)
			a := floetest.Start(t, floetest.Options{Config: func(c *agent.Config) {
				c.WriteTimeout = 1500 * time.Millisecond
				c.FetchMaxBytes = 16 << 20
				if useTLS {
					c.TLSCertFile, c.TLSKeyFile = f.cert, f.key
				}
			}})
			opts := []kgo.Opt{kgo.AllowAutoTopicCreation()}
			if useTLS {
				opts = append(opts, kgo.DialTLSConfig(f.ca.ClientConfig(t, "", "")))
			}
			cl := a.Client(t, opts...)
			for range 12 {
				r := &kgo.Record{Topic: "slowlink", Value: make([]byte, 900<<10)}
				_, _ = rand.Read(r.Value) // incompressible
				if err := cl.ProduceSync(t.Context(), r).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			nc, err := net.Dial("tcp", a.Addr)
			if err != nil {
				t.Fatal(err)
			}
			sc := nc
			if useTLS {
				cfg := f.ca.ClientConfig(t, "", "")
				cfg.ServerName = "127.0.0.1"
				sc = tls.Client(nc, cfg)
			}
			t.Cleanup(func() { sc.Close() })
			fetch := kmsg.NewPtrFetchRequest()
			fetch.Version = 12
			fetch.MaxWaitMillis, fetch.MinBytes, fetch.MaxBytes = 500, 1, 16<<20
			ft := kmsg.NewFetchRequestTopic()
			ft.Topic = "slowlink"
			fp := kmsg.NewFetchRequestTopicPartition()
			fp.PartitionMaxBytes = 16 << 20
			ft.Partitions = append(ft.Partitions, fp)
			fetch.Topics = append(fetch.Topics, ft)
			frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("slow")).AppendRequest(nil, fetch, 1)
			if _, err := sc.Write(frame); err != nil {
				t.Fatal(err)
			}
			var size [4]byte
			if _, err := io.ReadFull(sc, size[:]); err != nil {
				t.Fatal(err)
			}
			want := int(binary.BigEndian.Uint32(size[:]))
			// Larger than the socket buffers hold (a few MiB), so the
			// writes wait on the reader for longer than the timeout. The
			// timeout is still longer than the kernel's bursts: a writer
			// blocked on a full send buffer waits for half of it to drain.
			if want < 10<<20 {
				t.Fatalf("fetch response of %d bytes: want the twelve batches", want)
			}
			got, buf, start := 0, make([]byte, 16<<10), time.Now()
			for got < want {
				n, err := io.ReadFull(sc, buf[:min(len(buf), want-got)])
				got += n
				if err != nil {
					t.Fatalf("response of %d bytes cut after %d bytes and %v: %v", want, got, time.Since(start).Round(time.Millisecond), err)
				}
				time.Sleep(8 * time.Millisecond) // about 2 MiB/s
			}
			if d := time.Since(start); d < 4*time.Second {
				t.Fatalf("read %d bytes in %v: the test needs the response to outlast the write timeout", want, d)
			}
		})
	}
}
