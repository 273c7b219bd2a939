package agent_test

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/internal/testenv"
	"github.com/floebroker/floe/tests/floetest"
)

// certificateFlood is most of a 256 KiB TLS Certificate message (the
// largest crypto/tls accepts, and holds until it is complete), cut in
// 16 KiB handshake fragments: the start of a message a client sends and
// then stalls on.
func certificateFlood() [][]byte {
	msg := make([]byte, 250<<10)
	copy(msg, []byte{11, 0x03, 0xff, 0xff}) // certificate, 0x03ffff bytes
	var frags [][]byte
	for len(msg) > 0 {
		n := min(len(msg), 16<<10)
		frags = append(frags, msg[:n])
		msg = msg[n:]
	}
	return frags
}

// waitClosedFor polls the agent's count of connections closed for reason
// until it is want.
func waitClosedFor(t *testing.T, reg prometheus.Gatherer, reason string, want float64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n := testenv.Metric(t, reg, "floe_agent_connections_closed_total", map[string]string{"reason": reason})
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v connections closed for %s, want %v", n, reason, want)
		}
	}
}

// TestTLSHandshakeBytesBounded: a client that sends a ClientHello, then
// most of a 256 KiB Certificate message in plaintext TLS 1.2 records and
// stalls is disconnected once its handshake passes the bound (64 KiB, 128
// KiB with client certificates), not held with the message buffered until
// the handshake timeout (10 s here), with or without mutual TLS.
func TestTLSHandshakeBytesBounded(t *testing.T) {
	for _, mutual := range []bool{false, true} {
		t.Run(fmt.Sprintf("mutual=%v", mutual), func(t *testing.T) {
			f := newTLSFiles(t)
			reg := prometheus.NewRegistry()
			a := floetest.Start(t, floetest.Options{Registerer: reg, Config: func(c *agent.Config) {
				c.TLSCertFile, c.TLSKeyFile = f.cert, f.key
				if mutual {
					c.TLSClientCAFile = f.ca.File
				}
				c.IdleTimeout = time.Minute // the handshake timeout is 10 s
			}})
			nc, err := net.Dial("tcp", a.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if _, err := nc.Write(clientHello(t, tls.VersionTLS12)); err != nil {
				t.Fatal(err)
			}
			for _, frag := range certificateFlood() {
				rec := append([]byte{22, 3, 3, 0, 0}, frag...)
				binary.BigEndian.PutUint16(rec[3:], uint16(len(frag)))
				if _, err := nc.Write(rec); err != nil {
					break // the agent closed the connection
				}
			}
			expectClosed(t, nc)
			waitClosedFor(t, reg, "tls_oversized", 1)
		})
	}
}

// TestTLSPostHandshakeBytesBounded: after a TLS 1.3 handshake, a client
// that sends most of a 256 KiB Certificate message (a post-handshake
// message to crypto/tls) and stalls is disconnected once 64 KiB arrived
// without plaintext, not held with the message buffered for the idle
// timeout; a client sending large requests, full TLS records one after
// the other, is not.
func TestTLSPostHandshakeBytesBounded(t *testing.T) {
	f := newTLSFiles(t)
	reg := prometheus.NewRegistry()
	a := floetest.Start(t, floetest.Options{Registerer: reg, Config: func(c *agent.Config) {
		c.TLSCertFile, c.TLSKeyFile = f.cert, f.key
		c.IdleTimeout = time.Minute
	}})
	cl := a.Client(t, kgo.DialTLSConfig(f.ca.ClientConfig(t, "", "")), kgo.AllowAutoTopicCreation())
	ctx := t.Context()
	for range 3 {
		big := &kgo.Record{Topic: "big", Value: bytes.Repeat([]byte{'x'}, 900<<10)}
		if err := cl.ProduceSync(ctx, big).FirstErr(); err != nil {
			t.Fatalf("a large produce through TLS: %v", err)
		}
	}

	c := dialTLS13(t, a.Addr, f.ca.ClientConfig(t, "", ""))
	defer c.nc.Close()
	c.apiVersions(t)
	for _, frag := range certificateFlood() {
		if err := c.write(22, frag); err != nil {
			break // the agent closed the connection
		}
	}
	expectClosed(t, c.nc)
	waitClosedFor(t, reg, "tls_oversized", 1)
}

// TestTLSKeyUpdateAfterWriteTimeout: a TLS 1.3 client asking for a key
// update more than the write timeout after the agent's last response gets
// the agent's key update and its next response: crypto/tls answers the
// update from the connection's reader, outside any response, and that
// write met the last response's expired deadline, failed, and failed every
// later response with it.
func TestTLSKeyUpdateAfterWriteTimeout(t *testing.T) {
	f := newTLSFiles(t)
	a := floetest.Start(t, floetest.Options{Config: func(c *agent.Config) {
		c.TLSCertFile, c.TLSKeyFile = f.cert, f.key
		c.WriteTimeout = time.Second
	}})
	c := dialTLS13(t, a.Addr, f.ca.ClientConfig(t, "", ""))
	defer c.nc.Close()
	c.apiVersions(t)
	time.Sleep(1500 * time.Millisecond)
	if err := c.keyUpdate(); err != nil {
		t.Fatal(err)
	}
	c.apiVersions(t)
	if c.in.generation != 1 {
		t.Fatalf("the agent updated its keys %d times, want 1", c.in.generation)
	}
}

// clientHello is a crypto/tls client's first record, a ClientHello for at
// most version.
func clientHello(t *testing.T, version uint16) []byte {
	t.Helper()
	cli, srv := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tls.Client(cli, &tls.Config{InsecureSkipVerify: true, MaxVersion: version}).Handshake()
	}()
	defer func() { cli.Close(); srv.Close(); <-done }()
	var hdr [5]byte
	if _, err := io.ReadFull(srv, hdr[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(srv, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr[:], body...)
}

// tls13Conn is a TLS 1.3 connection whose handshake crypto/tls did, and
// whose records are then written and read here with the traffic secrets
// of its key log: what crypto/tls does not let a client send (key
// updates, post-handshake handshake messages).
type tls13Conn struct {
	nc      net.Conn
	hash    func() hash.Hash
	keyLen  int
	out, in trafficKeys
	plain   []byte // read and not yet consumed
}

// trafficKeys are one direction's keys.
type trafficKeys struct {
	secret     []byte
	aead       cipher.AEAD
	iv         []byte
	seq        uint64
	generation int // key updates so far
}

// dialTLS13 connects to addr with a TLS 1.3 handshake.
func dialTLS13(t *testing.T, addr string, cfg *tls.Config) *tls13Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var keyLog bytes.Buffer
	cfg = cfg.Clone()
	cfg.MinVersion, cfg.KeyLogWriter, cfg.ServerName = tls.VersionTLS13, &keyLog, "127.0.0.1"
	tc := tls.Client(&recordReader{Conn: nc}, cfg)
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		nc.Close()
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Time{})
	c := &tls13Conn{nc: nc}
	switch s := tc.ConnectionState().CipherSuite; s {
	case tls.TLS_AES_128_GCM_SHA256:
		c.hash, c.keyLen = sha256.New, 16
	case tls.TLS_AES_256_GCM_SHA384:
		c.hash, c.keyLen = sha512.New384, 32
	default:
		nc.Close()
		t.Fatalf("cipher suite %s: only AES-GCM is done here (crypto/tls picks it with AES hardware)", tls.CipherSuiteName(s))
	}
	secrets := map[string][]byte{}
	sc := bufio.NewScanner(&keyLog)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 {
			secrets[f[0]], _ = hex.DecodeString(f[2])
		}
	}
	c.out = c.keys(secrets["CLIENT_TRAFFIC_SECRET_0"], 0)
	c.in = c.keys(secrets["SERVER_TRAFFIC_SECRET_0"], 0)
	return c
}

// keys are the keys of a traffic secret (RFC 8446, section 7.3).
func (c *tls13Conn) keys(secret []byte, generation int) trafficKeys {
	block, err := aes.NewCipher(c.expandLabel(secret, "key", c.keyLen))
	if err != nil {
		panic(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return trafficKeys{secret: secret, aead: aead, iv: c.expandLabel(secret, "iv", 12), generation: generation}
}

// next are the keys after a key update.
func (c *tls13Conn) next(k trafficKeys) trafficKeys {
	return c.keys(c.expandLabel(k.secret, "traffic upd", c.hash().Size()), k.generation+1)
}

// expandLabel is HKDF-Expand-Label with an empty context.
func (c *tls13Conn) expandLabel(secret []byte, label string, n int) []byte {
	label = "tls13 " + label
	info := append([]byte{byte(n >> 8), byte(n), byte(len(label))}, label...)
	info = append(info, 0)
	b, err := hkdf.Expand(c.hash, secret, string(info), n)
	if err != nil {
		panic(err)
	}
	return b
}

func (k *trafficKeys) nonce() []byte {
	nonce := slices.Clone(k.iv)
	for i := range 8 {
		nonce[len(nonce)-1-i] ^= byte(k.seq >> (8 * i))
	}
	k.seq++
	return nonce
}

// write sends data as one record of content type typ.
func (c *tls13Conn) write(typ byte, data []byte) error {
	inner := append(slices.Clone(data), typ)
	hdr := []byte{23, 3, 3, 0, 0}
	binary.BigEndian.PutUint16(hdr[3:], uint16(len(inner)+c.out.aead.Overhead()))
	rec := c.out.aead.Seal(slices.Clone(hdr), c.out.nonce(), inner, hdr)
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.nc.Write(rec)
	return err
}

// keyUpdate sends a KeyUpdate asking for the peer's, and moves to the
// next keys.
func (c *tls13Conn) keyUpdate() error {
	if err := c.write(22, []byte{24, 0, 0, 1, 1}); err != nil {
		return err
	}
	c.out = c.next(c.out)
	return nil
}

// readPlain reads n bytes of application data, following the agent's key
// updates and skipping its session tickets.
func (c *tls13Conn) readPlain(n int) ([]byte, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(c.plain) < n {
		var hdr [5]byte
		if _, err := io.ReadFull(c.nc, hdr[:]); err != nil {
			return nil, err
		}
		body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
		if _, err := io.ReadFull(c.nc, body); err != nil {
			return nil, err
		}
		if hdr[0] != 23 {
			return nil, fmt.Errorf("record of type %d", hdr[0])
		}
		inner, err := c.in.aead.Open(nil, c.in.nonce(), body, hdr[:])
		if err != nil {
			return nil, err
		}
		inner = bytes.TrimRight(inner, "\x00")
		typ, data := inner[len(inner)-1], inner[:len(inner)-1]
		switch typ {
		case 23:
			c.plain = append(c.plain, data...)
		case 22:
			for len(data) >= 4 {
				size := 4 + (int(data[1])<<16 | int(data[2])<<8 | int(data[3]))
				if data[0] == 24 { // key_update: the records after it use the next keys
					c.in = c.next(c.in)
				}
				data = data[min(size, len(data)):]
			}
		case 21:
			return nil, fmt.Errorf("alert %v", data)
		default:
			return nil, fmt.Errorf("inner content type %d", typ)
		}
	}
	b := c.plain[:n]
	c.plain = c.plain[n:]
	return b, nil
}

// apiVersions sends an ApiVersions request and reads its response.
func (c *tls13Conn) apiVersions(t *testing.T) {
	t.Helper()
	if err := c.write(23, apiVersionsFrame()); err != nil {
		t.Fatalf("ApiVersions: %v", err)
	}
	size, err := c.readPlain(4)
	if err != nil {
		t.Fatalf("ApiVersions: %v", err)
	}
	resp, err := c.readPlain(int(binary.BigEndian.Uint32(size)))
	if err != nil {
		t.Fatalf("ApiVersions: %v", err)
	}
	if id := binary.BigEndian.Uint32(resp); id != 1 {
		t.Fatalf("ApiVersions answered with correlation id %d", id)
	}
}

// recordReader is a client's TCP connection that never reads past the TLS
// record being read, so that what follows crypto/tls's handshake is still
// on the wire for tls13Conn.
type recordReader struct {
	net.Conn
	hdr  [5]byte
	got  int // of the header
	left int // of the record's body
}

func (r *recordReader) Read(b []byte) (int, error) {
	if r.left > 0 {
		n, err := r.Conn.Read(b[:min(len(b), r.left)])
		r.left -= n
		return n, err
	}
	n, err := r.Conn.Read(b[:min(len(b), len(r.hdr)-r.got)])
	copy(r.hdr[r.got:], b[:n])
	if r.got += n; r.got == len(r.hdr) {
		r.got, r.left = 0, int(binary.BigEndian.Uint16(r.hdr[3:]))
	}
	return n, err
}
