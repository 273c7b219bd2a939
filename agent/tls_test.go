package agent_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/internal/testenv"
	"github.com/floebroker/floe/tests/floetest"
)

// tlsFiles is a CA and a server certificate of 127.0.0.1 it signed, in dir.
type tlsFiles struct {
	ca                 *testenv.CA
	cert, key, dir     string
	clientCert, cliKey string
}

func newTLSFiles(t *testing.T) tlsFiles {
	dir := t.TempDir()
	f := tlsFiles{dir: dir, cert: filepath.Join(dir, "server.pem"), key: filepath.Join(dir, "server.key"),
		clientCert: filepath.Join(dir, "client.pem"), cliKey: filepath.Join(dir, "client.key")}
	f.ca = testenv.NewCA(t, dir, "floe-test")
	f.ca.Issue(t, "floe-agent", true, f.cert, f.key)
	f.ca.Issue(t, "floe-client", false, f.clientCert, f.cliKey)
	return f
}

// produceConsume produces n records to topic through cl and reads them back.
func produceConsume(t *testing.T, cl *kgo.Client, topic string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range n {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	cl.AddConsumeTopics(topic)
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d: %v", got, n, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset != int64(got) || r.Value[0] != byte(got) {
				t.Errorf("record at %d: offset %d value %d", got, r.Offset, r.Value[0])
			}
			got++
		})
	}
}

// TestTLSListener: with a certificate the listener speaks TLS; Kafka
// clients with security.protocol=SSL produce and consume through it, and
// a plaintext client, or one that connects and says nothing, is
// disconnected without disturbing them.
func TestTLSListener(t *testing.T) {
	f := newTLSFiles(t)
	reg := prometheus.NewRegistry()
	a := floetest.Start(t, floetest.Options{Registerer: reg, Config: func(c *agent.Config) {
		c.TLSCertFile, c.TLSKeyFile = f.cert, f.key
		c.IdleTimeout = 500 * time.Millisecond // bounds the handshake
	}})
	cl := a.Client(t, kgo.DialTLSConfig(f.ca.ClientConfig(t, "", "")), kgo.AllowAutoTopicCreation(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	produceConsume(t, cl, "tls", 20)

	// A plaintext Kafka request on the TLS listener: disconnected.
	nc, err := net.Dial("tcp", a.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(apiVersionsFrame()); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, nc)

	// A client that connects and never starts the handshake: disconnected
	// after the handshake deadline (here the idle timeout).
	silent, err := net.Dial("tcp", a.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	expectClosed(t, silent)
	// Polled: on a handshake timeout crypto/tls closes the socket itself,
	// so the client can see the close before the agent counts it.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n := testenv.Metric(t, reg, "floe_agent_connections_closed_total", map[string]string{"reason": "tls_handshake"})
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v connections closed for their handshake, want 2", n)
		}
	}

	// A client that does not trust the agent's CA fails its handshake.
	other := testenv.NewCA(t, t.TempDir(), "other")
	if err := ping(other.ClientConfig(t, "", ""), a.Addr); err == nil {
		t.Fatal("a client trusting another CA connected")
	}
	produceConsume(t, cl, "tls-after", 5)
}

// apiVersionsFrame is a v0 ApiVersions request, framed.
func apiVersionsFrame() []byte {
	req := kmsg.NewPtrApiVersionsRequest()
	var body []byte
	body = binary.BigEndian.AppendUint16(body, uint16(req.Key()))
	body = binary.BigEndian.AppendUint16(body, 0) // version
	body = binary.BigEndian.AppendUint32(body, 1) // correlation id
	body = binary.BigEndian.AppendUint16(body, 0) // empty client id
	req.SetVersion(0)
	body = req.AppendTo(body)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// expectClosed waits for the agent to close nc: a read ends in EOF or a
// reset, not in the test's own deadline.
func expectClosed(t *testing.T, nc net.Conn) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection still open after 5s")
	}
}

// ping opens a TLS connection to addr with cfg and reads the answer to an
// ApiVersions request: a handshake the agent refuses (a missing or foreign
// client certificate is refused after a TLS 1.3 client's handshake has
// completed) fails the read.
func ping(cfg *tls.Config, addr string) error {
	d := &net.Dialer{Timeout: 5 * time.Second}
	nc, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Write(apiVersionsFrame()); err != nil {
		return err
	}
	var size [4]byte
	_, err = io.ReadFull(nc, size[:])
	return err
}

// TestTLSClientAuth: with a client CA, only clients presenting a
// certificate it signed get through.
func TestTLSClientAuth(t *testing.T) {
	f := newTLSFiles(t)
	a := floetest.Start(t, floetest.Options{Config: func(c *agent.Config) {
		c.TLSCertFile, c.TLSKeyFile, c.TLSClientCAFile = f.cert, f.key, f.ca.File
	}})
	if err := ping(f.ca.ClientConfig(t, "", ""), a.Addr); err == nil {
		t.Fatal("a client without a certificate connected")
	}
	stranger := testenv.NewCA(t, t.TempDir(), "stranger")
	sc, sk := filepath.Join(f.dir, "stranger.pem"), filepath.Join(f.dir, "stranger.key")
	stranger.Issue(t, "stranger", false, sc, sk)
	if err := ping(f.ca.ClientConfig(t, sc, sk), a.Addr); err == nil {
		t.Fatal("a client with a certificate of another CA connected")
	}
	cl := a.Client(t, kgo.DialTLSConfig(f.ca.ClientConfig(t, f.clientCert, f.cliKey)), kgo.AllowAutoTopicCreation(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	produceConsume(t, cl, "mtls", 10)
}

// TestTLSCertificateRotation: certificate files replaced in place are
// served from the next handshake on, connections already open carry on,
// and files that do not load keep the previous certificate in use.
func TestTLSCertificateRotation(t *testing.T) {
	f := newTLSFiles(t)
	a := floetest.Start(t, floetest.Options{Config: func(c *agent.Config) {
		c.TLSCertFile, c.TLSKeyFile = f.cert, f.key
	}})
	oldCl := a.Client(t, kgo.DialTLSConfig(f.ca.ClientConfig(t, "", "")), kgo.AllowAutoTopicCreation(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	produceConsume(t, oldCl, "before", 3)

	// A half-written rotation (a key that does not match): still the
	// old certificate.
	next := testenv.NewCA(t, t.TempDir(), "next")
	spareCert, spareKey := filepath.Join(f.dir, "next.pem"), filepath.Join(f.dir, "next.key")
	next.Issue(t, "floe-agent", true, spareCert, spareKey)
	replace(t, spareCert, f.cert, time.Now().Add(time.Minute))
	if err := ping(f.ca.ClientConfig(t, "", ""), a.Addr); err != nil {
		t.Fatalf("with a certificate that does not match its key, the previous one must be served: %v", err)
	}
	// The key follows: the new certificate is served.
	replace(t, spareKey, f.key, time.Now().Add(2*time.Minute))
	if err := ping(next.ClientConfig(t, "", ""), a.Addr); err != nil {
		t.Fatalf("rotated certificate not served: %v", err)
	}
	if err := ping(f.ca.ClientConfig(t, "", ""), a.Addr); err == nil {
		t.Fatal("the old certificate is still served after rotation")
	}
	// The connections of the client from before carry on.
	produceConsume(t, oldCl, "after", 3)
}

// replace copies src over dst and sets dst's modification time to mod, so
// that the rotation shows whatever the file system's time granularity.
func replace(t *testing.T, src, dst string, mod time.Time) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(dst, mod, mod); err != nil {
		t.Fatal(err)
	}
}

// TestTLSBadFiles: files that do not load fail the agent's start, naming
// what is wrong, rather than its first client.
func TestTLSBadFiles(t *testing.T) {
	f := newTLSFiles(t)
	garbage := filepath.Join(f.dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		cert, key, ca string
		want          string
	}{
		{"missing cert", filepath.Join(f.dir, "nope.pem"), f.key, "", "certificate"},
		{"garbage cert", garbage, f.key, "", "tls"},
		{"garbage client CA", f.cert, f.key, garbage, "no PEM certificate"},
		{"missing client CA", f.cert, f.key, filepath.Join(f.dir, "nope.pem"), "client CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := floetest.TryStart(t, floetest.Options{Config: func(c *agent.Config) {
				c.TLSCertFile, c.TLSKeyFile, c.TLSClientCAFile = tc.cert, tc.key, tc.ca
			}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// TestKcatTLS: librdkafka with security.protocol=ssl produces and consumes
// through a TLS listener that requires client certificates, verifying the
// agent's certificate against its CA and host name.
func TestKcatTLS(t *testing.T) {
	kcat := testenv.Kcat(t)
	f := newTLSFiles(t)
	a := floetest.Start(t, floetest.Options{Config: func(c *agent.Config) {
		c.TLSCertFile, c.TLSKeyFile, c.TLSClientCAFile = f.cert, f.key, f.ca.File
	}})
	ssl := []string{"-X", "security.protocol=ssl", "-X", "ssl.ca.location=" + f.ca.File,
		"-X", "ssl.endpoint.identification.algorithm=https",
		"-X", "ssl.certificate.location=" + f.clientCert, "-X", "ssl.key.location=" + f.cliKey}
	var lines strings.Builder
	for i := range 200 {
		lines.WriteString("k" + string(rune('a'+i%26)) + ":line " + strings.Repeat("x", i%17) + "\n")
	}
	in := []byte(lines.String())
	testenv.RunKcat(t, kcat, in, append([]string{"-P", "-b", a.Addr, "-t", "kcat-tls", "-K", ":", "-X", "enable.idempotence=true"}, ssl...)...)
	out := testenv.RunKcat(t, kcat, nil, append([]string{"-C", "-b", a.Addr, "-t", "kcat-tls", "-o", "beginning", "-e", "-q", "-f", "%k:%s\n"}, ssl...)...)
	if string(out) != string(in) {
		t.Fatalf("consumed %d bytes differ from the %d produced; first line %q", len(out), len(in), firstLine(out))
	}
}

// BenchmarkFetchTLS reads 64 MiB (1 KiB records over 8 partitions) from
// the start with franz-go, from a plaintext and from a TLS listener: what
// TLS costs a consumer (the agent encrypts every byte it would otherwise
// writev from its cache). Reports MiB/s.
func BenchmarkFetchTLS(b *testing.B) {
	const total = 64 << 20
	for _, secure := range []bool{false, true} {
		name := "plaintext"
		if secure {
			name = "tls"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			ca := testenv.NewCA(b, dir, "bench")
			cert, key := filepath.Join(dir, "s.pem"), filepath.Join(dir, "s.key")
			ca.Issue(b, "agent", true, cert, key)
			a := floetest.Start(b, floetest.Options{Config: func(c *agent.Config) {
				if secure {
					c.TLSCertFile, c.TLSKeyFile = cert, key
				}
			}})
			var opts []kgo.Opt
			if secure {
				opts = append(opts, kgo.DialTLSConfig(ca.ClientConfig(b, "", "")))
			}
			prod := a.Client(b, append(opts, kgo.AllowAutoTopicCreation(), kgo.DefaultProduceTopic("fetch-tls"))...)
			ctx := context.Background()
			if err := kadmCreate(ctx, prod, "fetch-tls", 8); err != nil {
				b.Fatal(err)
			}
			val := make([]byte, 1024)
			for i := 0; i < total/len(val); i++ {
				prod.Produce(ctx, &kgo.Record{Value: val}, func(_ *kgo.Record, err error) {
					if err != nil {
						b.Error(err)
					}
				})
			}
			if err := prod.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				cl := a.Client(b, append(opts, kgo.ConsumeTopics("fetch-tls"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
				got := 0
				for got < total/len(val) {
					fs := cl.PollFetches(ctx)
					got += fs.NumRecords()
				}
				cl.Close()
			}
			b.ReportMetric(float64(total)*float64(b.N)/(1<<20)/time.Since(start).Seconds(), "MiB/s")
		})
	}
}

// kadmCreate creates topic with partitions through cl.
func kadmCreate(ctx context.Context, cl *kgo.Client, topic string, partitions int32) error {
	_, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, -1, nil, topic)
	return err
}
