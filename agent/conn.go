package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A connection has one reader goroutine (frames, header, decode, dispatch)
// and one writer goroutine (responses in request order). Handlers run in
// their own goroutines; pending entries queue between reader and writer in
// request order, and the queue's capacity bounds a connection's in-flight
// requests.

// minHeaderSize is key, version and correlation id; a frame must hold at
// least that plus the client id length.
const minHeaderSize = 2 + 2 + 4 + 2

// errCloseConn makes the writer close the connection at this request,
// after the responses before it. Handlers return it (wrapped) when no
// valid response can be sent.
var errCloseConn = errors.New("agent: close connection")

type conn struct {
	a      *Agent
	nc     net.Conn
	remote string
	// listenerZone is the zone of the per-zone listener that accepted the
	// connection, "" for the main listener.
	listenerZone string
	br           *bufio.Reader
	// tlsw batches a TLS connection's writes into full TLS records: a
	// fetch response is many small slices (fetch_records.go), each of
	// which would otherwise be a record, a syscall and a packet of its
	// own. nil for plaintext, which writes them with one writev.
	tlsw *bufio.Writer
	// clock is the write deadline of the response being written.
	clock *writeClock
	// tlsIn bounds a TLS connection's input (tls.go); nil for plaintext.
	tlsIn *tlsInput

	ctx    context.Context // cancelled when the connection dies
	cancel context.CancelFunc
	// readCtx is ctx, also cancelled by stopReading: it ends a wait for
	// the request budget.
	readCtx  context.Context
	stopRead context.CancelFunc

	queue chan *pending // reader → writer, request order
	done  chan struct{} // closed when the writer has finished
	// served is closed when serve returns: reader and writer are done, so
	// no handler of this connection can start any more.
	served chan struct{}
	// peerDone is closed when the client closed its sending side: pending
	// requests are still answered (long polls at once), then the
	// connection closes.
	peerDone chan struct{}

	// lastOrdered is the ordered gate of the newest request (see
	// pending.ordered); only the reader touches it.
	lastOrdered chan struct{}
	// lastLarge is the written channel of the newest request with a
	// large answer (see pending.prevLarge); only the reader touches it.
	lastLarge chan struct{}

	inflight     atomic.Int32
	lastActivity atomic.Int64 // unix nanos of the last complete read or write
	stopping     atomic.Bool  // drain: read no further requests
	closeOnce    sync.Once

	// produce counts the connection's produce requests waiting for their
	// acks, for early seals (sealWatch in produce.go, whose mutex guards
	// it).
	produce produceWaits
}

// pending is one request between reader and writer.
type pending struct {
	hdr  requestHeader
	done chan struct{} // closed when resp/err are set
	resp kmsg.Response // nil: no response (acks=0)
	err  error         // non-nil: close the connection here

	// prev is closed when every earlier request of the connection has
	// passed its ordered section; ordered is closed when this one has.
	// Produce appends to the WAL inside its ordered section, so appends
	// happen in request order while acks are awaited concurrently.
	prev      <-chan struct{}
	ordered   chan struct{}
	orderOnce sync.Once

	// budget is the frame's reservation in the agent's request budget,
	// released when its handler has returned.
	budget int64
	// frameSize is the request's size on the wire.
	frameSize int

	// For fetches and the other requests whose answer the request's size
	// does not bound (largeAnswer): written is closed once the writer has
	// sent this response, prevLarge when it has sent the connection's
	// previous such response. One builds its response only after
	// prevLarge, so a connection holds at most one built large response
	// while its client does not read (Kafka reads a connection's next
	// request only once the response before it is sent): pipelined
	// fetches of a stalled client would otherwise each hold up to
	// FetchMaxBytes, and pipelined Metadata requests each a whole
	// cluster's topics, until the write timed out.
	written   chan struct{}
	prevLarge <-chan struct{}
}

// passOrdered runs f (may be nil) once all earlier requests passed their
// ordered sections, then lets later requests pass. Later calls do nothing.
// Later requests pass even if f panics: sync.Once counts a panicking f as
// done, so the handler's recovery could not pass them, and they would wait
// forever holding their request budget.
func (p *pending) passOrdered(f func()) {
	p.orderOnce.Do(func() {
		defer close(p.ordered)
		<-p.prev
		if f != nil {
			f()
		}
	})
}

// requestHeader is the Kafka request header.
type requestHeader struct {
	key           int16
	version       int16
	correlationID int32
	clientID      string
}

// newConn serves a connection accepted by a listener; with TLS configured,
// it speaks TLS over it.
func newConn(a *Agent, nc net.Conn, listenerZone string) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	clock := &writeClock{nc: nc, timeout: a.cfg.WriteTimeout}
	var tlsw *bufio.Writer
	var tlsIn *tlsInput
	rd := io.Reader(nc)
	if a.tlsConf != nil {
		// The handshake runs on the connection's reader (serve).
		tlsIn = newTLSInput(a.tlsConf)
		tc := tls.Server(progressConn{Conn: nc, clock: clock, in: tlsIn}, a.tlsConf)
		nc, rd = tc, tlsPlain{Conn: tc, in: tlsIn}
		tlsw = bufio.NewWriterSize(nc, tlsRecordBytes)
	}
	c := &conn{
		clock:        clock,
		tlsIn:        tlsIn,
		tlsw:         tlsw,
		a:            a,
		nc:           nc,
		remote:       nc.RemoteAddr().String(),
		listenerZone: listenerZone,
		br:           bufio.NewReaderSize(rd, 32<<10),
		ctx:          ctx,
		cancel:       cancel,
		queue:        make(chan *pending, a.cfg.MaxInflightPerConn),
		done:         make(chan struct{}),
		served:       make(chan struct{}),
		peerDone:     make(chan struct{}),
	}
	c.readCtx, c.stopRead = context.WithCancel(ctx)
	start := make(chan struct{})
	close(start)
	c.lastOrdered = start
	c.lastLarge = start
	c.touch()
	return c
}

// clientHost is the client's address as Kafka shows it in DescribeGroups:
// "/" and the IP.
func (c *conn) clientHost() string {
	host, _, err := net.SplitHostPort(c.remote)
	if err != nil {
		host = c.remote
	}
	return "/" + host
}

func (c *conn) touch() { c.lastActivity.Store(time.Now().UnixNano()) }

// serve runs the reader here and the writer in a goroutine, and returns
// when both are done and the connection is closed.
func (c *conn) serve() {
	defer close(c.served)
	go c.writeLoop()
	if c.handshake() {
		c.readLoop()
	} else {
		close(c.queue)
	}
	<-c.done
}

// handshake runs the TLS handshake of a TLS listener's connection (see
// tls.go), bounded in time and by the agent's drain; false if it failed
// and the connection is closed.
func (c *conn) handshake() bool {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return true
	}
	ctx, cancel := context.WithTimeout(c.readCtx, min(tlsHandshakeTimeout, c.a.cfg.IdleTimeout))
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		if c.stopping.Load() {
			c.close("drain")
			return false
		}
		if c.tlsIn.exceeded {
			c.a.badInputLog.Do(func() {
				c.a.log.Warn("closing connection: TLS handshake longer than its bound", "remote", c.remote, "max_bytes", c.tlsIn.bound)
			})
			c.close("tls_oversized")
			return false
		}
		c.a.tlsFailLog.Do(func() { // a scan or a flood must not flood the log
			c.a.log.Warn("TLS handshake failed (logged at most once a minute; connections_closed{reason=tls_handshake} counts them all)", "remote", c.remote, "err", err)
		})
		c.close("tls_handshake")
		return false
	}
	c.touch() // the idle timeout counts from here, not from the accept
	c.tlsIn.yielded()
	return true
}

// close closes the connection; safe to call many times. A TLS connection
// is closed without a close_notify alert: sending one can block for
// seconds on a client that stopped reading, holding up the agent's drain,
// and Kafka's length-prefixed frames do not need it to detect truncation.
func (c *conn) close(reason string) {
	c.closeOnce.Do(func() {
		c.cancel()
		// Counted before the close, so that whoever sees the close sees
		// the count.
		c.a.m.connsClosed.WithLabelValues(reason).Inc()
		if tc, ok := c.nc.(*tls.Conn); ok {
			tc.NetConn().Close()
			return
		}
		c.nc.Close()
	})
}

// stopReading makes the reader take no further request (drain): pending
// requests finish and are answered, then the connection closes.
func (c *conn) stopReading() {
	c.stopping.Store(true)
	c.stopRead()
	_ = c.nc.SetReadDeadline(time.Unix(1, 0))
}

// readLoop reads and dispatches requests until the connection ends, a
// request must close it, or the agent drains. It always closes the queue.
func (c *conn) readLoop() {
	defer close(c.queue)
	for {
		p, reason := c.readRequest()
		if p == nil {
			switch reason {
			case "drain": // the writer answers what is pending, then closes
			case "eof":
				close(c.peerDone)
			default:
				c.close(reason)
			}
			return
		}
		select {
		case c.queue <- p:
		case <-c.ctx.Done():
			return
		}
	}
}

// readRequest reads one frame and prepares its pending entry, starting its
// handler. A nil pending ends the reader; reason says why: "drain" and
// "eof" let the writer answer what is pending, others close at once.
func (c *conn) readRequest() (*pending, string) {
	var sizeBuf [4]byte
	if reason := c.readFull(sizeBuf[:], true, 0); reason != "" {
		return nil, reason
	}
	size := int32(binary.BigEndian.Uint32(sizeBuf[:]))
	switch {
	case size < 0:
		c.a.badInputLog.Do(func() { c.a.log.Warn("closing connection: negative frame size", "remote", c.remote, "size", size) })
		return nil, "bad_frame"
	case size > c.a.cfg.MaxRequestBytes:
		c.a.badInputLog.Do(func() {
			c.a.log.Warn("closing connection: frame larger than socket.request.max.bytes", "remote", c.remote, "size", size, "max", c.a.cfg.MaxRequestBytes)
		})
		return nil, "frame_too_large"
	case size < minHeaderSize:
		c.a.badInputLog.Do(func() {
			c.a.log.Warn("closing connection: frame shorter than a request header", "remote", c.remote, "size", size)
		})
		return nil, "bad_frame"
	}
	// Reserve before allocating: the size is the client's claim.
	held, err := c.a.budget.acquire(c.readCtx, size)
	if err != nil {
		if c.stopping.Load() {
			return nil, "drain"
		}
		return nil, "closed"
	}
	if held > 0 {
		c.touch() // time spent waiting for room is not the client's silence
	}
	frame := make([]byte, size)
	stall := time.Duration(0)
	if held > 0 {
		stall = min(c.a.cfg.IdleTimeout, frameStallTimeout)
	}
	if reason := c.readFull(frame, false, stall); reason != "" {
		c.a.budget.release(held)
		return nil, reason
	}
	c.touch()
	p, reason := c.dispatch(frame, held)
	if p == nil || p.budget != held {
		// Not handed to a handler (answered or refused in dispatch).
		c.a.budget.release(held)
	}
	return p, reason
}

// minFrameProgress is how much of a frame holding a reservation must
// arrive per frame stall timeout: a client trickling a byte now and then
// would otherwise hold its reservation, and keep every other connection's
// large requests waiting, for as long as it liked.
const minFrameProgress = 64 << 10

// readFull fills buf and returns "", or why reading ended. Between
// requests a read deadline expiry only ends the connection once it has been
// idle for IdleTimeout with nothing in flight; inside a frame, the same
// timeout applies to the client's silence. With stall > 0 (a frame holding
// a reservation of the request budget), stall without minFrameProgress
// bytes received also ends it, whatever is in flight: the reservation may
// keep other connections' large requests waiting.
func (c *conn) readFull(buf []byte, atBoundary bool, stall time.Duration) string {
	n := 0
	progress := time.Time{}
	moved := 0 // since progress
	if stall > 0 {
		progress = time.Now()
	}
	for n < len(buf) {
		deadline := time.Unix(0, c.lastActivity.Load()).Add(c.a.cfg.IdleTimeout)
		if stall > 0 && progress.Add(stall).Before(deadline) {
			deadline = progress.Add(stall)
		}
		_ = c.nc.SetReadDeadline(deadline)
		// Checked after setting the deadline: stopReading sets the flag,
		// then a past deadline, so one of the two is always seen.
		if c.stopping.Load() {
			return "drain"
		}
		m, err := c.br.Read(buf[n:])
		n += m
		if moved += m; stall > 0 && moved >= minFrameProgress {
			progress, moved = time.Now(), 0
		}
		if m > 0 || err == nil {
			continue
		}
		if c.tlsIn != nil && c.tlsIn.exceeded {
			c.a.badInputLog.Do(func() {
				c.a.log.Warn("closing connection: TLS records without data over their bound", "remote", c.remote, "max_bytes", c.tlsIn.bound)
			})
			return "tls_oversized"
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if c.stopping.Load() {
				return "drain"
			}
			if stall > 0 && time.Since(progress) >= stall {
				c.a.log.Info("closing connection: client stalled inside a large request frame", "remote", c.remote, "stall", stall)
				return "stalled"
			}
			if c.inflight.Load() > 0 {
				c.touch() // a long request is not idleness
				continue
			}
			if time.Now().Sub(time.Unix(0, c.lastActivity.Load())) < c.a.cfg.IdleTimeout {
				continue // a response was written since the deadline was set
			}
			if n > 0 || !atBoundary {
				c.a.log.Info("closing connection: client stalled inside a request frame", "remote", c.remote)
				return "stalled"
			}
			return "idle"
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			return "eof"
		}
		return "read_error"
	}
	return ""
}

// dispatch parses the header, decodes the body with kmsg and starts the
// handler. Unknown keys and versions close the connection, except that
// ApiVersions is answered with UNSUPPORTED_VERSION and the version list.
//
// A frame's budget reservation passes to the pending entry (p.budget)
// only when a handler starts, which releases it; otherwise the caller
// releases it.
func (c *conn) dispatch(frame []byte, budget int64) (*pending, string) {
	r := kbin.Reader{Src: frame}
	hdr := requestHeader{key: r.Int16(), version: r.Int16(), correlationID: r.Int32()}
	if cid := r.NullableString(); cid != nil {
		hdr.clientID = *cid
	}
	if !r.Ok() {
		c.a.badInputLog.Do(func() { c.a.log.Warn("closing connection: undecodable request header", "remote", c.remote) })
		return nil, "bad_request"
	}
	p := &pending{hdr: hdr, done: make(chan struct{}), prev: c.lastOrdered, ordered: make(chan struct{}), frameSize: len(frame)}
	c.lastOrdered = p.ordered

	spec := c.a.apis.lookup(hdr.key)
	if spec != nil && hdr.key == apiVersionsKey && (hdr.version < spec.min || hdr.version > spec.max) {
		// Kafka answers a too-new ApiVersions with a v0 body (it cannot
		// know the client's newer format) carrying the version list.
		p.resp = c.a.unsupportedAPIVersions()
		p.passOrdered(nil)
		close(p.done)
		return p, ""
	}
	if spec == nil || hdr.version < spec.min || hdr.version > spec.max {
		c.a.badInputLog.Do(func() {
			c.a.log.Warn("closing connection: unsupported request", "remote", c.remote, "api_key", hdr.key, "version", hdr.version, "client_id", hdr.clientID)
		})
		c.a.m.requestErrors.WithLabelValues(c.a.apis.name(hdr.key), "unsupported").Inc()
		return nil, "unsupported"
	}
	req := kmsg.RequestForKey(hdr.key)
	req.SetVersion(hdr.version)
	if req.IsFlexible() {
		kmsg.SkipTags(&r)
		if !r.Ok() {
			c.a.badInputLog.Do(func() { c.a.log.Warn("closing connection: undecodable request header tags", "remote", c.remote) })
			return nil, "bad_request"
		}
	}
	if n, ok := leadingNames(hdr.key, hdr.version, req.IsFlexible(), r.Src); ok && n > maxRequestNames {
		return nil, c.tooManyElements(hdr, n, 0)
	}
	if err := req.ReadFrom(r.Src); err != nil {
		c.a.badInputLog.Do(func() {
			c.a.log.Warn("closing connection: undecodable request", "remote", c.remote, "api", c.a.apis.name(hdr.key), "version", hdr.version, "err", err)
		})
		c.a.m.requestErrors.WithLabelValues(c.a.apis.name(hdr.key), "decode").Inc()
		return nil, "bad_request"
	}
	if names, parts := requestElements(req); names > maxRequestNames || parts > maxRequestPartitions {
		return nil, c.tooManyElements(hdr, names, parts)
	}
	if largeAnswer(hdr.key) {
		p.written, p.prevLarge = make(chan struct{}), c.lastLarge
		c.lastLarge = p.written
	}
	c.inflight.Add(1)
	c.a.handlers.Add(1)
	p.budget = budget
	go c.handle(spec, p, req)
	return p, ""
}

// tooManyElements logs a request refused for naming more elements than
// maxRequestNames or maxRequestPartitions and returns the reason the
// connection closes.
func (c *conn) tooManyElements(hdr requestHeader, names, partitions int) string {
	c.a.badInputLog.Do(func() {
		c.a.log.Warn("closing connection: request names too many elements", "remote", c.remote, "api", c.a.apis.name(hdr.key), "version", hdr.version,
			"names", names, "max_names", maxRequestNames, "partitions", partitions, "max_partitions", maxRequestPartitions)
	})
	c.a.m.requestErrors.WithLabelValues(c.a.apis.name(hdr.key), "too_many_elements").Inc()
	return "too_many_elements"
}

// handle runs one handler with metrics and panic recovery.
func (c *conn) handle(spec *apiSpec, p *pending, req kmsg.Request) {
	start := time.Now()
	name := spec.name
	defer func() {
		if v := recover(); v != nil {
			c.a.log.Error("handler panicked; closing the connection", "api", name, "version", p.hdr.version, "remote", c.remote, "panic", v, "stack", stack())
			c.a.m.requestErrors.WithLabelValues(name, "panic").Inc()
			p.resp, p.err = nil, fmt.Errorf("%w: %s handler panicked: %v", errCloseConn, name, v)
		}
		p.passOrdered(nil)
		c.a.m.requests.WithLabelValues(name).Inc()
		c.a.m.latency.WithLabelValues(name).Observe(time.Now().Sub(start).Seconds())
		close(p.done)
		// The frame is no longer needed, except for batches appended to
		// the WAL, which its own bound (MaxBufferedBytes) covers.
		c.a.budget.release(p.budget)
		c.inflight.Add(-1)
		c.a.handlers.Done()
	}()
	if !spec.ordered {
		p.passOrdered(nil)
	}
	if p.prevLarge != nil && p.hdr.key != fetchKey {
		// Fetch waits in its handler, after its session checks.
		select {
		case <-p.prevLarge:
		case <-c.ctx.Done():
			p.err = errCloseConn
			return
		}
	}
	r := &request{conn: c, p: p, hdr: p.hdr, kreq: req}
	resp, err := spec.handle(c.ctx, r)
	if err != nil {
		c.a.m.requestErrors.WithLabelValues(name, "closed").Inc()
		if !errors.Is(err, errCloseConn) {
			c.a.log.Warn("request failed; closing the connection", "api", name, "remote", c.remote, "err", err)
		}
		p.err = err
		return
	}
	if resp != nil {
		resp.SetVersion(p.hdr.version)
	}
	p.resp = resp
}

// writeLoop writes responses in request order until the queue closes or a
// request needs the connection closed, then closes it.
func (c *conn) writeLoop() {
	defer close(c.done)
	defer c.close("done")
	var buf []byte
	for p := range c.queue {
		select {
		case <-p.done:
		case <-c.ctx.Done():
			return
		}
		if p.err != nil {
			return
		}
		if p.resp == nil {
			continue
		}
		c.clock.start()
		var bufs net.Buffers
		if fr, ok := p.resp.(*fetchResponse); ok {
			// Records go from the cache to the socket (fetch_records.go).
			bufs = fr.appendFrame(buf[:0], p.hdr)
			buf = bufs[0][:0]
		} else {
			buf = appendResponse(buf[:0], p.hdr, p.resp)
			bufs = net.Buffers{buf}
		}
		var err error
		if c.tlsw != nil {
			_, err = bufs.WriteTo(c.tlsw)
		} else {
			err = c.clock.writeBuffers(bufs)
		}
		if fr, ok := p.resp.(*fetchResponse); ok {
			fr.sent()
		}
		if err == nil && c.tlsw != nil {
			err = c.tlsw.Flush()
		}
		c.clock.stop()
		if err != nil {
			if c.ctx.Err() == nil {
				c.a.log.Info("closing connection: write failed", "remote", c.remote, "err", err)
			}
			return
		}
		if p.written != nil {
			close(p.written)
		}
		c.touch()
		if cap(buf) > 1<<20 {
			buf = nil // do not pin a huge fetch response's buffer
		}
	}
}

// appendResponse frames a response: size, correlation id, the header's
// tagged fields for flexible responses — except ApiVersions, whose response
// header is always v0 so clients can parse it before knowing the versions.
func appendResponse(dst []byte, hdr requestHeader, resp kmsg.Response) []byte {
	if fr, ok := resp.(*kmsg.FetchResponse); ok {
		// Sized once: appending a large fetch's records to a growing
		// buffer copied them several times over.
		dst = slices.Grow(dst, fetchResponseSizeHint(fr))
	}
	dst = appendResponseHeader(dst, hdr, resp)
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst, uint32(len(dst)-4))
	return dst
}

// appendResponseHeader appends a frame's size (to be filled in),
// correlation id and header tags (see appendResponse).
func appendResponseHeader(dst []byte, hdr requestHeader, resp kmsg.Response) []byte {
	dst = append(dst, 0, 0, 0, 0)
	dst = kbin.AppendInt32(dst, hdr.correlationID)
	if resp.IsFlexible() && hdr.key != apiVersionsKey {
		dst = append(dst, 0)
	}
	return dst
}

// minWriteProgress is how many bytes of a response must move per
// WriteTimeout. A client reading slowly but steadily gets its response
// however long it takes (Kafka has no write timeout at all, only an idle
// one): one deadline for a whole response cut a consumer below
// FetchMaxBytes/WriteTimeout mid-response every time, and it fetched the
// same offset again forever. A client that stops reading is still cut
// after WriteTimeout, and the response budget it holds freed.
//
// Progress is what the kernel takes, which comes in bursts: a writer
// blocked on a full send buffer is woken only once about half of it has
// drained, so a reader must still move that much (a few MiB at most) per
// WriteTimeout.
const minWriteProgress = 64 << 10

// tlsRecordBytes is the most plaintext one TLS record carries.
const tlsRecordBytes = 16 << 10

// writeClock keeps a connection's write deadline WriteTimeout after the
// last time the response being written moved minWriteProgress bytes. The
// writer starts it for each response; writes go on past a deadline that
// expired while bytes kept moving (a timed-out write on a TCP connection
// leaves it usable and says how much it wrote).
type writeClock struct {
	nc      net.Conn // the TCP connection
	timeout time.Duration
	// moved counts bytes written since the deadline was last set; a TLS
	// connection's reader writes too (alerts, key updates).
	moved atomic.Int64
	// responding is set from a response's start to its end. A TLS
	// connection's reader writes between responses (crypto/tls answers a
	// client's key update from it), when the deadline may have expired
	// long ago: each such write sets its own (progressConn.Write).
	responding atomic.Bool
}

// start sets the deadline for a new response.
func (w *writeClock) start() {
	w.responding.Store(true)
	w.renew()
}

// stop ends the response.
func (w *writeClock) stop() { w.responding.Store(false) }

func (w *writeClock) renew() {
	w.moved.Store(0)
	_ = w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
}

// goOn counts n bytes written by a call that returned err, and reports
// whether to write on: err is a deadline that expired while the response
// moved enough, and the deadline is set again.
func (w *writeClock) goOn(n int64, err error) bool {
	if w.moved.Add(n) < minWriteProgress || err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	w.renew()
	return true
}

// writeBuffers writes bufs to a plaintext connection with writev.
func (w *writeClock) writeBuffers(bufs net.Buffers) error {
	for {
		n, err := bufs.WriteTo(w.nc)
		if !w.goOn(n, err) {
			return err
		}
	}
}

// progressConn is a TLS connection's TCP connection: its writes go on as
// writeClock says, below TLS, because a TLS connection fails every write
// after one that timed out; its reads stay within tlsInput's bound.
type progressConn struct {
	net.Conn
	clock *writeClock
	in    *tlsInput
}

func (p progressConn) Read(b []byte) (int, error) { return p.in.read(p.Conn, b) }

func (p progressConn) Write(b []byte) (int, error) {
	if !p.clock.responding.Load() {
		// The reader's write: a write failed on a stale deadline would
		// fail the next response too (crypto/tls keeps a write's error).
		p.clock.renew()
	}
	done := 0
	for {
		n, err := p.Conn.Write(b[done:])
		done += n
		if !p.clock.goOn(int64(n), err) {
			return done, err
		}
	}
}
