package postgres

import (
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
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
	direct := freshSchema(t)
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFreezingProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	writer := openTest(t, direct, catalog.Options{})
	watcher := openTest(t, u.String(), catalog.Options{})
	watcher.listenIdle = 200 * time.Millisecond
	ctx := t.Context()
	topic, err := writer.CreateTopic(ctx, catalog.TopicSpec{Name: "w", Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := watcher.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	commit := func(key string) int64 {
		res, err := writer.CommitSegment(ctx, oneBatchSegment(key, topic.ID))
		if err != nil {
			t.Fatal(err)
		}
		return res.CommitID
	}
	waitFor := func(id int64) { waitCommit(t, ch, id, 10*time.Second) }
	waitFor(commit("a"))
	proxy.freeze()
	waitFor(commit("b"))
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
