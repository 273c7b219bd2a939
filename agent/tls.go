package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// TLS on the Kafka listeners, Kafka's SSL security protocol: with a
// certificate and key every listener (the main one and the per-zone ones)
// speaks TLS only, as a Kafka listener mapped to SSL does, and clients
// connect with security.protocol=SSL. With a client CA as well, clients
// must present a certificate it signed (Kafka's ssl.client.auth=required).
// There is no SASL: a client certificate authenticates the connection but
// is not mapped to a principal, since nothing authorizes by principal.
//
// Certificates are rotated in place, as cert-manager and similar tools
// rotate them: each handshake checks whether the certificate or key file
// changed since it was read (a stat of each, small next to the handshake)
// and loads the pair again if so. A pair that does not load (a rotation
// caught between writing the two files) keeps the previous certificate in
// use and is logged; it is tried again once either file changes again.
// The client CA is read once, at start.
//
// The handshake runs on the connection's reader before its first request,
// bounded by tlsHandshakeTimeout (or the idle timeout, if shorter): a
// client that connects and stays silent, or speaks plaintext Kafka to a
// TLS listener, is disconnected without holding anything but its socket.
// It is bounded in bytes too, as is what a connection reads after it
// without yielding plaintext (tlsInput).

// tlsHandshakeTimeout bounds a client's TLS handshake.
const tlsHandshakeTimeout = 10 * time.Second

// A TLS connection's raw input is bounded by what it yields. crypto/tls
// holds a handshake message until it is complete, and takes a Certificate
// message of up to 256 KiB at any point of a handshake, whether or not
// client certificates are asked for, and after it (a TLS 1.3
// post-handshake message). A client sending most of one and stalling held
// it, and crypto/tls's record buffer, for the handshake timeout, or after
// the handshake for the idle timeout (a stall inside a TLS record looks
// like idleness to the reader): about 360 KiB a connection, 7 GiB at
// DefaultMaxConnections. So a handshake reading more than
// tlsHandshakeBytes (tlsClientAuthHandshakeBytes with client
// certificates), or a connection reading more than tlsOpaqueBytes after
// its handshake without yielding plaintext, is closed
// (connections_closed{reason="tls_oversized"}). Reads are cut at the
// bound and only a read past it fails, so what crypto/tls reads ahead of
// the record it needs, forgotten once that record yields, cannot make a
// healthy connection fail.

// tlsHandshakeBytes and tlsClientAuthHandshakeBytes bound a client's
// handshake, in bytes on the wire. A client sends a ClientHello of a few
// hundred bytes to a few KiB (a post-quantum key share is 1.2 KiB), the
// short key exchange and Finished messages, and with client certificates
// a chain of a few KiB and its signature. Kafka's brokers (Java's JSSE)
// refuse a handshake message over 32 KiB, so a client that works with
// Kafka sends at most 32 KiB of ClientHello and 32 KiB of chain: each
// bound is twice that.
const (
	tlsHandshakeBytes           = 64 << 10
	tlsClientAuthHandshakeBytes = 128 << 10
)

// tlsOpaqueBytes bounds the bytes a TLS connection reads after its
// handshake without yielding plaintext. A record carries at most 16 KiB
// of it (and 256 bytes of overhead), so a client sending requests yields
// some every 17 KiB; what else it may send (a key update, an alert) is a
// few bytes.
const tlsOpaqueBytes = 64 << 10

// errTLSOversized fails a TLS connection's read past its bound.
var errTLSOversized = errors.New("agent: TLS input without plaintext over its bound")

// tlsInput is how many more bytes a TLS connection may read before it
// yields plaintext. Only the connection's reader reads (the handshake
// runs on it too), so it needs no lock.
type tlsInput struct {
	bound    int // the handshake's, then tlsOpaqueBytes
	left     int
	exceeded bool // a read was refused: the connection is to be closed
}

func newTLSInput(cfg *tls.Config) *tlsInput {
	bound := tlsHandshakeBytes
	if cfg.ClientAuth != tls.NoClientCert {
		bound = tlsClientAuthHandshakeBytes
	}
	return &tlsInput{bound: bound, left: bound}
}

// read reads from the TCP connection nc within the bound; past it, it
// fails, and crypto/tls's connection with it, for good.
func (in *tlsInput) read(nc net.Conn, b []byte) (int, error) {
	if in.left <= 0 {
		in.exceeded = true
		return 0, errTLSOversized
	}
	n, err := nc.Read(b[:min(len(b), in.left)])
	in.left -= n
	return n, err
}

// yielded renews the bound once the handshake is done, and whenever the
// connection yields plaintext.
func (in *tlsInput) yielded() { in.bound, in.left = tlsOpaqueBytes, tlsOpaqueBytes }

// tlsPlain is a TLS connection as its reader reads it.
type tlsPlain struct {
	*tls.Conn
	in *tlsInput
}

func (p tlsPlain) Read(b []byte) (int, error) {
	n, err := p.Conn.Read(b)
	if n > 0 {
		p.in.yielded()
	}
	return n, err
}

// validateTLS reports TLS settings that cannot work, without reading the
// files (New does).
func (c Config) validateTLS() error {
	switch {
	case c.TLSCertFile == "" && c.TLSKeyFile == "" && c.TLSClientCAFile == "":
		return nil
	case c.TLSCertFile == "" || c.TLSKeyFile == "":
		return errors.New("tls: a certificate needs its key and a key its certificate (--tls-cert and --tls-key)")
	}
	return nil
}

// newTLSConfig returns the listeners' TLS configuration, or nil without a
// certificate. It loads the files, so a bad file fails the agent's start
// rather than its first client.
func newTLSConfig(c Config, log *slog.Logger) (*tls.Config, error) {
	if c.TLSCertFile == "" {
		return nil, nil
	}
	src := &certSource{certFile: c.TLSCertFile, keyFile: c.TLSKeyFile, log: log, warn: rate.Sometimes{Interval: time.Minute}}
	if err := src.load(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: src.get,
	}
	if c.TLSClientCAFile != "" {
		pem, err := os.ReadFile(c.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client CA %s: no PEM certificate in it", c.TLSClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// certSource serves the certificate of a cert and key file pair, loading
// it again when either file changes.
type certSource struct {
	certFile, keyFile string
	log               *slog.Logger
	warn              rate.Sometimes // a bad rotation is retried every handshake

	mu      sync.Mutex
	cert    *tls.Certificate
	certMod fileStamp
	keyMod  fileStamp
	// failed are the stamps of a pair that did not load: it is not read
	// again until a file changes once more, so a broken rotation costs a
	// stat per handshake, not a parse under the lock.
	failedCert, failedKey fileStamp
}

// fileStamp is what tells a rewritten file from the one read before.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

// load reads the pair (under mu, or before the source is shared).
func (s *certSource) load() error {
	certMod, err := stamp(s.certFile)
	if err != nil {
		return fmt.Errorf("tls: certificate: %w", err)
	}
	keyMod, err := stamp(s.keyFile)
	if err != nil {
		return fmt.Errorf("tls: key: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	s.cert, s.certMod, s.keyMod = &cert, certMod, keyMod
	return nil
}

// get is the listeners' tls.Config.GetCertificate.
func (s *certSource) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	certMod, cerr := stamp(s.certFile)
	keyMod, kerr := stamp(s.keyFile)
	changed := certMod != s.certMod || keyMod != s.keyMod
	failedBefore := certMod == s.failedCert && keyMod == s.failedKey
	if cerr == nil && kerr == nil && changed && !failedBefore {
		if err := s.load(); err != nil {
			s.failedCert, s.failedKey = certMod, keyMod
			s.warn.Do(func() {
				s.log.Warn("tls: certificate files changed but do not load; serving the previous certificate (logged at most once a minute)", "err", err)
			})
		} else {
			var notAfter time.Time
			if s.cert.Leaf != nil {
				notAfter = s.cert.Leaf.NotAfter
			}
			s.log.Info("tls: certificate reloaded", "cert", s.certFile, "not_after", notAfter)
		}
	}
	return s.cert, nil
}
