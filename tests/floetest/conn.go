package floetest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Conn is a raw Kafka connection for tests that build requests by hand:
// Request sends a kmsg request and decodes its response; WriteFrame and
// WriteRaw send arbitrary bytes.
type Conn struct {
	t    testing.TB
	nc   net.Conn
	corr int32
}

// Dial opens a raw connection, closed at cleanup.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("floetest: dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &Conn{t: t, nc: nc}
}

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// Request sends req at the version set on it and returns the decoded
// response.
func (c *Conn) Request(req kmsg.Request) (kmsg.Response, error) {
	corr, err := c.Send(req)
	if err != nil {
		return nil, err
	}
	return c.Receive(req, corr)
}

// Send writes req and returns its correlation id.
func (c *Conn) Send(req kmsg.Request) (int32, error) {
	c.corr++
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("floetest"))
	frame := f.AppendRequest(nil, req, c.corr)
	return c.corr, c.WriteRaw(frame)
}

// Receive reads the response to req with correlation id corr.
func (c *Conn) Receive(req kmsg.Request, corr int32) (kmsg.Response, error) {
	body, err := c.ReadFrame(10 * time.Second)
	if err != nil {
		return nil, err
	}
	r := kbin.Reader{Src: body}
	if got := r.Int32(); got != corr {
		return nil, fmt.Errorf("correlation id %d, want %d", got, corr)
	}
	resp := req.ResponseKind()
	if resp.IsFlexible() && req.Key() != 18 {
		kmsg.SkipTags(&r)
	}
	if err := resp.ReadFrom(r.Src); err != nil {
		return nil, fmt.Errorf("decode %T: %w", resp, err)
	}
	return resp, nil
}

// WriteFrame sends body with its 4-byte size prefix.
func (c *Conn) WriteFrame(body []byte) error {
	return c.WriteRaw(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body)
}

// WriteRaw sends bytes as they are.
func (c *Conn) WriteRaw(parts ...[]byte) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	for _, p := range parts {
		if _, err := c.nc.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// ReadFrame reads one response frame (without its size prefix).
func (c *Conn) ReadFrame(timeout time.Duration) ([]byte, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	var size [4]byte
	if _, err := io.ReadFull(c.nc, size[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > 256<<20 {
		return nil, fmt.Errorf("response frame of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.nc, body); err != nil {
		return nil, err
	}
	return body, nil
}

// WaitClosed reports whether the agent closed the connection within
// timeout (reads end in EOF or a reset), draining anything it still sent.
func (c *Conn) WaitClosed(timeout time.Duration) bool {
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	for {
		_, err := c.nc.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}
