package postgres

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// freezingProxy forwards TCP connections to target until freeze, after
// which the connections open so far stay open but carry nothing either
// way: a silently dead connection (a partitioned network, a vanished
// host), which no error reveals. Connections opened later work.
type freezingProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	frozen []chan struct{}
	wg     sync.WaitGroup
	refuse atomic.Bool // close new connections at once
	hold   atomic.Bool // accept new connections but forward nothing
}

func newFreezingProxy(t *testing.T, target string) *freezingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *freezingProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refuse.Load() {
			c.Close()
			continue
		}
		if p.hold.Load() {
			p.mu.Lock()
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		stop := make(chan struct{})
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.frozen = append(p.frozen, stop)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(s, c, stop)
		go p.pipe(c, s, stop)
	}
}

// pipe copies src to dst, dropping everything once stop is closed.
func (p *freezingProxy) pipe(dst, src net.Conn, stop chan struct{}) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-stop:
			n = 0
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err == io.EOF {
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
			}
			return
		}
	}
}

func (p *freezingProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.frozen {
		close(s)
	}
	p.frozen = nil
}

// blackhole freezes the connections open so far and holds new ones open
// without forwarding anything: the database host vanished, or a firewall
// drops its packets.
func (p *freezingProxy) blackhole() {
	p.hold.Store(true)
	p.freeze()
}

// cut closes every connection and refuses new ones until restore: the
// catalog is down.
func (p *freezingProxy) cut() {
	p.refuse.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *freezingProxy) restore() { p.refuse.Store(false) }

func (p *freezingProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestWatchSilentlyDeadConnection freezes the LISTEN connection: the
// listener must notice within about two idle periods (its periodic
// re-read of the counter cannot wait on the dead connection forever) and
// reconnect, so a commit made meanwhile is delivered.
func TestWatchSilentlyDeadConnection(t *testing.T) {
	w := watchThroughProxy(t, catalog.Options{}, func(c *Catalog) { c.listenIdle = 200 * time.Millisecond })
	waitCommit(t, w.ch, w.commit("a"), 10*time.Second)
	w.proxy.freeze()
	waitCommit(t, w.ch, w.commit("b"), 10*time.Second)
}

// TestCloseUnreachable: with the database black-holed, a statement cut
// off by its context leaves a connection that pgx closes by sending a
// cancel request, to the same unreachable host; Close must not wait the
// 15 s pgxpool allows for that, which made an agent's shutdown outlast the
// deploy units' stop timeout.
func TestCloseUnreachable(t *testing.T) {
	u, err := url.Parse(freshSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFreezingProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := Open(ctx, u.String(), catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	proxy.blackhole()
	pctx, pcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = c.Ping(pctx)
	pcancel()
	if err == nil {
		t.Fatal("ping through a black-holed proxy succeeded")
	}
	start := time.Now()
	c.Close()
	if d := time.Since(start); d > poolCloseWait+5*time.Second {
		t.Fatalf("Close took %v, want about %v", d, poolCloseWait)
	}
}

// proxiedWatch is a catalog watching commits through a freezingProxy and
// a second catalog, connected directly, that commits.
type proxiedWatch struct {
	proxy  *freezingProxy
	ch     <-chan int64
	commit func(key string) int64 // commits a one-batch segment, returns its id
}

// watchThroughProxy opens a watcher with opts through a proxy (tune, if
// set, adjusts it before it starts watching) and a writer, and creates the
// topic the writer commits to.
func watchThroughProxy(t *testing.T, opts catalog.Options, tune func(*Catalog)) proxiedWatch {
	direct := freshSchema(t)
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFreezingProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	writer := openTest(t, direct, catalog.Options{})
	watcher := openTest(t, u.String(), opts)
	if tune != nil {
		tune(watcher)
	}
	ctx := t.Context()
	topic, err := writer.CreateTopic(ctx, catalog.TopicSpec{Name: "w", Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := watcher.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return proxiedWatch{proxy: proxy, ch: ch, commit: func(key string) int64 {
		res, err := writer.CommitSegment(ctx, oneBatchSegment(key, topic.ID))
		if err != nil {
			t.Fatal(err)
		}
		return res.CommitID
	}}
}

// TestWatchOutageLogsQuietly: while the catalog is down the commit
// listener retries every few hundred milliseconds, but logs the loss once
// (then every listenLogEvery), and once when it is back; notifications
// resume.
func TestWatchOutageLogsQuietly(t *testing.T) {
	logs := &countingHandler{}
	w := watchThroughProxy(t, catalog.Options{Logger: slog.New(logs)}, nil)
	waitCommit(t, w.ch, w.commit("a"), 10*time.Second)
	w.proxy.cut()
	time.Sleep(3 * time.Second) // a dozen reconnection attempts or more
	w.proxy.restore()
	waitCommit(t, w.ch, w.commit("b"), 10*time.Second)
	// The listener publishes the latest commit id before it logs that it
	// is back, so commit b can arrive first: wait for the notice.
	logs.waitFor(t, slog.LevelInfo, "catalog commit listener reconnected", 10*time.Second)
	if n := logs.count(slog.LevelWarn, "catalog commit listener"); n != 1 {
		t.Errorf("%d warnings from the commit listener during a 3 s outage, want 1", n)
	}
	if n := logs.count(slog.LevelInfo, "catalog commit listener reconnected"); n != 1 {
		t.Errorf("%d reconnection notices, want 1", n)
	}
}

// countingHandler is a slog.Handler that remembers each record's level
// and message.
type countingHandler struct {
	mu   sync.Mutex
	seen []slog.Record
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen = append(h.seen, r)
	return nil
}

// waitFor waits until a record at level with a message starting with
// prefix has been logged.
func (h *countingHandler) waitFor(t *testing.T, level slog.Level, prefix string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for h.count(level, prefix) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no %v record %q within %v", level, prefix, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// count is how many records at level have messages starting with prefix.
func (h *countingHandler) count(level slog.Level, prefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.seen {
		if r.Level == level && strings.HasPrefix(r.Message, prefix) {
			n++
		}
	}
	return n
}

// TestCommitSilentlyDeadConnection: a commit whose connection died without
// a word (frozen by the proxy) ends at the operation deadline with
// ErrCommitUnknown instead of waiting for TCP to give up, and the retry
// under the same key, on a fresh connection, commits.
func TestCommitSilentlyDeadConnection(t *testing.T) {
	direct := freshSchema(t)
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFreezingProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	c := openTest(t, u.String(), catalog.Options{MaxConns: 4})
	// Cut the frozen connection before the pool closes, which would wait
	// for its goodbye to time out.
	t.Cleanup(proxy.close)
	c.opTimeout = 500 * time.Millisecond
	ctx := t.Context()
	topic, err := c.CreateTopic(ctx, catalog.TopicSpec{Name: "d", Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	seg := func(key string) catalog.Segment { return oneBatchSegment(key, topic.ID) }
	if _, err := c.CommitSegment(ctx, seg("a")); err != nil {
		t.Fatal(err)
	}
	proxy.freeze()
	start := time.Now()
	_, err = c.CommitSegment(ctx, seg("b"))
	if !errors.Is(err, catalog.ErrCommitUnknown) {
		t.Fatalf("commit on a dead connection: %v after %v, want ErrCommitUnknown", err, time.Since(start))
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("commit on a dead connection took %v", took)
	}
	res, err := c.CommitSegment(ctx, seg("b"))
	if err != nil {
		t.Fatalf("retry on a fresh connection: %v", err)
	}
	if res.Results[0].BaseOffset != 1 {
		t.Fatalf("retry committed at offset %d, want 1", res.Results[0].BaseOffset)
	}
}

// oneBatchSegment is a segment of one 10-byte, one-record batch on
// partition 0 of topic.
func oneBatchSegment(key string, topic catalog.TopicID) catalog.Segment {
	return catalog.Segment{Key: key, Size: 10, Batches: []catalog.BatchRef{{
		TopicPartition: catalog.TopicPartition{TopicID: topic}, ByteLength: 10, OffsetSpan: 1, Records: 1, ProducerID: -1,
	}}}
}

// waitCommit waits until ch delivers commit id (or a later one).
func waitCommit(t *testing.T, ch <-chan int64, id int64, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case got := <-ch:
			if got >= id {
				return
			}
		case <-deadline:
			t.Fatalf("commit %d not delivered", id)
		}
	}
}
