package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
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

// tlsHandshakeTimeout bounds a client's TLS handshake.
const tlsHandshakeTimeout = 10 * time.Second

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
