package agent_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/floebroker/floe/internal/testenv"
	"github.com/floebroker/floe/tests/floetest"
)

// TestSASLClientsRefused: a client configured for SASL gets Kafka's
// answer on a listener without SASL, ILLEGAL_SASL_STATE, rather than a
// closed connection — the agent used to leave SaslHandshake out of
// ApiVersions, so franz-go fell back to pre-KIP-43 raw SASL bytes, which
// the agent closed the connection on, and the client saw only EOF. Other
// clients are served meanwhile.
func TestSASLClientsRefused(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})

	t.Run("franz-go", func(t *testing.T) {
		cl := a.Client(t, kgo.SASL(plain.Auth{User: "u", Pass: "p"}.AsMechanism()), kgo.RequestRetries(0))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := cl.Ping(ctx)
		if !errors.Is(err, kerr.IllegalSaslState) {
			t.Fatalf("ping with SASL PLAIN: %v, want ILLEGAL_SASL_STATE", err)
		}
		t.Logf("franz-go: %v", err)
	})

	t.Run("wire", func(t *testing.T) {
		c := floetest.Dial(t, a.Addr)
		resp, err := c.Request(kmsg.NewPtrApiVersionsRequest())
		if err != nil {
			t.Fatalf("ApiVersions: %v", err)
		}
		listed := map[int16][2]int16{}
		for _, k := range resp.(*kmsg.ApiVersionsResponse).ApiKeys {
			listed[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
		}
		if listed[17] != [2]int16{0, 1} || listed[36] != [2]int16{0, 2} {
			t.Fatalf("ApiVersions lists SaslHandshake %v and SaslAuthenticate %v, want [0 1] and [0 2]", listed[17], listed[36])
		}
		for v := int16(0); v <= 1; v++ {
			hs := kmsg.NewPtrSASLHandshakeRequest()
			hs.Version, hs.Mechanism = v, "PLAIN"
			resp, err := c.Request(hs)
			if err != nil {
				t.Fatalf("SaslHandshake v%d: %v", v, err)
			}
			r := resp.(*kmsg.SASLHandshakeResponse)
			if r.ErrorCode != kerr.IllegalSaslState.Code || len(r.SupportedMechanisms) != 0 {
				t.Fatalf("SaslHandshake v%d: error %d, mechanisms %q; want ILLEGAL_SASL_STATE and none", v, r.ErrorCode, r.SupportedMechanisms)
			}
		}
		for v := int16(0); v <= 2; v++ {
			au := kmsg.NewPtrSASLAuthenticateRequest()
			au.Version, au.SASLAuthBytes = v, []byte("\x00u\x00p")
			resp, err := c.Request(au)
			if err != nil {
				t.Fatalf("SaslAuthenticate v%d: %v", v, err)
			}
			if ec := resp.(*kmsg.SASLAuthenticateResponse).ErrorCode; ec != kerr.IllegalSaslState.Code {
				t.Fatalf("SaslAuthenticate v%d: error %d, want ILLEGAL_SASL_STATE", v, ec)
			}
		}
	})

	t.Run("kcat", func(t *testing.T) {
		kcat := testenv.Kcat(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// librdkafka: "SASL PLAIN mechanism handshake failed: Broker:
		// Request not valid in current SASL state: broker's supported
		// mechanisms: ", where it said "SASL Handshake not supported by
		// broker". kcat keeps retrying until its metadata timeout, so it
		// is stopped once it has said it (-m 30 is for a slow machine).
		const want = "handshake failed: Broker: Request not valid in current SASL state"
		cmd := exec.CommandContext(ctx, kcat, "-L", "-b", a.Addr, "-m", "30",
			"-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN",
			"-X", "sasl.username=u", "-X", "sasl.password=p")
		out := &watchedOutput{want: want, seen: make(chan struct{})}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case <-out.seen:
			cmd.Process.Kill()
			<-exited
		case err := <-exited:
			if err == nil {
				t.Fatalf("kcat with SASL PLAIN succeeded:\n%s", out.String())
			}
		}
		t.Logf("kcat:\n%s", out.String())
		if !strings.Contains(out.String(), want) {
			t.Fatalf("kcat with SASL PLAIN did not name the SASL state error:\n%s", out.String())
		}
	})

	// The agent serves other clients as before.
	cl := a.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		t.Fatalf("ping without SASL: %v", err)
	}
}

// watchedOutput collects a command's output and closes seen once it
// contains want.
type watchedOutput struct {
	want string
	mu   sync.Mutex
	buf  bytes.Buffer
	seen chan struct{}
	done bool
}

func (w *watchedOutput) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.done && strings.Contains(w.buf.String(), w.want) {
		w.done = true
		close(w.seen)
	}
	return len(p), nil
}

func (w *watchedOutput) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
