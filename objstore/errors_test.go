package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"

	"github.com/floebroker/floe/objstore"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// headerTimeout mimics net/http's response header timeout, which is a
// net.Error and also matches context.DeadlineExceeded.
type headerTimeout struct{}

func (headerTimeout) Error() string        { return "net/http: timeout awaiting response headers" }
func (headerTimeout) Timeout() bool        { return true }
func (headerTimeout) Temporary() bool      { return true }
func (headerTimeout) Is(target error) bool { return target == context.DeadlineExceeded }

func TestIsTransientAndKind(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		transient bool
		kind      string
	}{
		{"nil", nil, false, ""},
		{"not exist", fmt.Errorf("s3: get: %w", objstore.ErrNotExist), false, "not_found"},
		{"invalid range", objstore.ErrInvalidRange, false, "invalid_range"},
		{"size mismatch", objstore.ErrSizeMismatch, false, "other"},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), false, "canceled"},
		{"deadline", context.DeadlineExceeded, false, "canceled"},
		{"503", &objstore.StatusError{Status: 503}, true, "transient"},
		{"500", &objstore.StatusError{Status: 500}, true, "transient"},
		{"501", &objstore.StatusError{Status: 501}, false, "other"},
		{"429", &objstore.StatusError{Status: 429}, true, "transient"},
		{"408", &objstore.StatusError{Status: 408}, true, "transient"},
		{"403", &objstore.StatusError{Status: 403, Code: "AccessDenied"}, false, "other"},
		{"400 slowdown", &objstore.StatusError{Status: 400, Code: "SlowDown"}, true, "transient"},
		{"400 request timeout", &objstore.StatusError{Status: 400, Code: "RequestTimeout"}, true, "transient"},
		{"wrapped status", fmt.Errorf("s3: put: %w", &objstore.StatusError{Status: 502}), true, "transient"},
		{"net timeout", &net.OpError{Op: "read", Err: timeoutErr{}}, true, "transient"},
		{"dial refused", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true, "transient"},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true, "transient"},
		{"pipe", syscall.EPIPE, true, "transient"},
		{"unexpected eof", io.ErrUnexpectedEOF, true, "transient"},
		{"stale keep-alive", &url.Error{Op: "Put", URL: "http://x", Err: io.EOF}, true, "transient"},
		{"closed socket", fmt.Errorf("write: %w", net.ErrClosed), true, "transient"},
		{"200 cut mid-body", &objstore.StatusError{Status: 200, Err: io.ErrUnexpectedEOF}, true, "transient"},
		{"server closed idle connection", &url.Error{Op: "Put", URL: "http://x", Err: errors.New("http: server closed idle connection")}, true, "transient"},
		{"http2 connection lost", &url.Error{Op: "Put", URL: "http://x", Err: errors.New("http2: client connection lost")}, true, "transient"},
		{"http2 goaway", &url.Error{Op: "Put", URL: "http://x", Err: errors.New(`http2: server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=NO_ERROR, debug=""`)}, true, "transient"},
		{"http2 body written", &url.Error{Op: "Post", URL: "http://x", Err: errors.New("http2: Transport: cannot retry err [http2: client connection lost] after Request.Body was written; define Request.GetBody to avoid this error")}, true, "transient"},
		{"dns not found", &net.DNSError{Err: "no such host", IsNotFound: true}, false, "other"},
		{"dns timeout", &net.DNSError{Err: "timeout", IsTimeout: true}, true, "transient"},
		{"plain", errors.New("boom"), false, "other"},
		{"os deadline", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, true, "transient"},
		{"caller deadline in url error", &url.Error{Op: "Get", URL: "http://x", Err: context.DeadlineExceeded}, false, "canceled"},
		{"caller deadline joined", fmt.Errorf("%w (after attempt 1: %w)", context.DeadlineExceeded, &objstore.StatusError{Status: 503}), false, "canceled"},
		{"transport timeout claiming deadline", &url.Error{Op: "Put", URL: "http://x", Err: headerTimeout{}}, true, "transient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := objstore.IsTransient(tt.err); got != tt.transient {
				t.Errorf("IsTransient(%v) = %v, want %v", tt.err, got, tt.transient)
			}
			if got := objstore.ErrorKind(tt.err); got != tt.kind {
				t.Errorf("ErrorKind(%v) = %q, want %q", tt.err, got, tt.kind)
			}
		})
	}
}

func TestStatusErrorMessage(t *testing.T) {
	e := &objstore.StatusError{Status: 503, Code: "SlowDown", Err: errors.New("reduce rate")}
	if got := e.Error(); got != "SlowDown (HTTP 503): reduce rate" {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(fmt.Errorf("x: %w", e), e.Err) {
		t.Error("StatusError does not unwrap")
	}
}

func TestExactReader(t *testing.T) {
	tests := []struct {
		name    string
		r       io.Reader
		size    int64
		want    string
		wantErr error
	}{
		{"exact", strings.NewReader("hello"), 5, "hello", nil},
		{"longer source", strings.NewReader("hello world"), 5, "hello", nil},
		{"short", strings.NewReader("hel"), 5, "hel", objstore.ErrSizeMismatch},
		{"empty", strings.NewReader(""), 0, "", nil},
		{"empty claimed", strings.NewReader(""), 3, "", objstore.ErrSizeMismatch},
		{"one byte at a time", iotest.OneByteReader(strings.NewReader("hello")), 5, "hello", nil},
		{"data with eof", iotest.DataErrReader(strings.NewReader("hello")), 5, "hello", nil},
		{"source error", iotest.ErrReader(io.ErrClosedPipe), 5, "", io.ErrClosedPipe},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := io.ReadAll(objstore.ExactReader(tt.r, tt.size))
			if string(got) != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("got %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	// Bytes past size stay in the source.
	src := strings.NewReader("abcdef")
	if _, err := io.ReadAll(objstore.ExactReader(src, 2)); err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(src); string(rest) != "cdef" {
		t.Errorf("source left %q", rest)
	}
}

func TestReadFull(t *testing.T) {
	if b, err := objstore.ReadFull(strings.NewReader("abc"), 3); err != nil || string(b) != "abc" {
		t.Errorf("ReadFull = %q, %v", b, err)
	}
	if _, err := objstore.ReadFull(strings.NewReader("ab"), 3); !errors.Is(err, objstore.ErrSizeMismatch) {
		t.Errorf("ReadFull short = %v", err)
	}
	if b, err := objstore.ReadFull(bytes.NewReader(nil), 0); err != nil || len(b) != 0 {
		t.Errorf("ReadFull empty = %q, %v", b, err)
	}
}

func TestClampRange(t *testing.T) {
	tests := []struct {
		size, off, length, want int64
		invalid                 bool
	}{
		{10, 0, -1, 10, false},
		{10, 0, 5, 5, false},
		{10, 5, 100, 5, false},
		{10, 9, 1, 1, false},
		{10, 9, 0, 0, false},
		{10, 10, 1, 0, true},
		{10, 11, -1, 0, true},
		{10, -1, 1, 0, true},
		{0, 0, -1, 0, false},
		{0, 0, 5, 0, false},
		{0, 1, 5, 0, true},
	}
	for _, tt := range tests {
		got, err := objstore.ClampRange(tt.size, tt.off, tt.length)
		if tt.invalid != errors.Is(err, objstore.ErrInvalidRange) || got != tt.want {
			t.Errorf("ClampRange(%d, %d, %d) = %d, %v", tt.size, tt.off, tt.length, got, err)
		}
	}
}

func TestCheckRangeResponse(t *testing.T) {
	for _, tc := range []struct {
		contentRange string
		off, length  int64
		want         string // "" means an error
	}{
		{"bytes 3-6/10", 3, 4, "3456"},
		{"bytes 3-9/10", 3, -1, "3456789"},
		{"bytes 3-5/10", 3, 4, "345"}, // cut at the end of the object
		{"bytes 0-3/10", 3, 4, ""},    // wrong start
		{"bytes 3-9/10", 3, 4, ""},    // more than asked
		{"garbage", 3, 4, ""},
		{"", 0, 4, "0123"}, // whole object: cut to the range
		{"", 0, -1, "0123456789"},
		{"", 3, 4, ""}, // whole object for a range past 0
	} {
		body := "0123456789"
		if tc.contentRange != "" && tc.want != "" {
			body = tc.want
		}
		rc, err := objstore.CheckRangeResponse(io.NopCloser(strings.NewReader(body)), tc.contentRange, tc.off, tc.length)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%q for [%d,+%d): no error", tc.contentRange, tc.off, tc.length)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q for [%d,+%d): %v", tc.contentRange, tc.off, tc.length, err)
			continue
		}
		got, _ := io.ReadAll(rc)
		if string(got) != tc.want {
			t.Errorf("%q for [%d,+%d) = %q, want %q", tc.contentRange, tc.off, tc.length, got, tc.want)
		}
	}
}
