package main

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestAdminConnectionsBounded: the admin port closes idle keep-alive
// connections and serves at most maxConns at once — an audit held 1,000
// idle connections open on it, and 240 under a 256-descriptor limit made
// the Kafka listener's accept fail.
func TestAdminConnectionsBounded(t *testing.T) {
	const maxConns, extra = 4, 2
	lim := adminLimits{idle: 2 * time.Second, maxConns: maxConns}
	addr, stop, err := serveAdminHTTP("127.0.0.1:0", prometheus.NewRegistry(), health{}, slog.New(slog.DiscardHandler), lim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	var answered, closed atomic.Int32
	done := make(chan struct{}, maxConns+extra)
	for i := 0; i < maxConns+extra; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		// A scraper's request (a keep-alive GET /metrics), then
		// nothing: the connection idles.
		req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
		if err := req.Write(c); err != nil {
			t.Fatal(err)
		}
		go func() {
			defer func() { done <- struct{}{} }()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			answered.Add(1)
			if _, err := br.ReadByte(); err == io.EOF {
				closed.Add(1)
			}
		}()
	}

	// The first maxConns are answered at once; the others wait to be
	// accepted until idle ones are closed.
	for deadline := time.Now().Add(lim.idle / 2); answered.Load() < maxConns && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := answered.Load(); n != maxConns {
		t.Errorf("%d connections answered before any went idle, want %d (the cap)", n, maxConns)
	}
	for i := 0; i < maxConns+extra; i++ {
		<-done
	}
	if n := answered.Load(); n != maxConns+extra {
		t.Errorf("%d connections answered in the end, want all %d once idle ones closed", n, maxConns+extra)
	}
	if n := closed.Load(); n != maxConns+extra {
		t.Errorf("%d idle connections closed by the server, want %d", n, maxConns+extra)
	}
}
