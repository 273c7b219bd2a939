package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
)

// ErrSizeMismatch reports that a Put's reader ended before the size the
// caller declared. The Put fails and leaves no object behind. It is never
// transient: retrying would read the same short input.
var ErrSizeMismatch = errors.New("objstore: body shorter than declared size")

// StatusError is a backend's account of a call the service answered with an
// error: the HTTP status and the service's own error code. Backends wrap
// their SDK errors in it so the retry and metrics wrappers can classify
// failures without importing any SDK.
type StatusError struct {
	// Status is the HTTP status code (0 if the SDK did not say).
	Status int
	// Code is the service's error code, such as "SlowDown".
	Code string
	// Err is the SDK's error.
	Err error
}

func (e *StatusError) Error() string {
	switch {
	case e.Code != "" && e.Status != 0:
		return fmt.Sprintf("%s (HTTP %d): %v", e.Code, e.Status, e.Err)
	case e.Status != 0:
		return fmt.Sprintf("HTTP %d: %v", e.Status, e.Err)
	default:
		return e.Err.Error()
	}
}

func (e *StatusError) Unwrap() error { return e.Err }

// transientCodes are service error codes that mean "try again later" even
// when the status code alone would not say so (S3 sends some of them with
// 400).
var transientCodes = map[string]bool{
	"SlowDown":                   true,
	"Throttling":                 true,
	"ThrottlingException":        true,
	"RequestTimeout":             true,
	"RequestTimeoutException":    true,
	"RequestLimitExceeded":       true,
	"TooManyRequestsException":   true,
	"ServiceUnavailable":         true,
	"InternalError":              true,
	"OperationAborted":           true,
	"XMinioServerNotInitialized": true,
	"rateLimitExceeded":          true,
	"backendError":               true,
}

// Transient reports whether the service asked to be retried: throttling,
// 408, 429 and every 5xx except 501 Not Implemented.
func (e *StatusError) Transient() bool {
	if transientCodes[e.Code] {
		return true
	}
	switch {
	case e.Status == 408, e.Status == 429:
		return true
	case e.Status >= 500 && e.Status != 501:
		return true
	}
	return false
}

// IsTransient reports whether err is worth retrying: the service throttled
// or failed internally, or the connection timed out, was refused, reset
// or lost. It is false for missing objects, bad ranges, short bodies,
// authentication and other 4xx answers, and for cancelled or expired
// contexts, because none of those change on a second try.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrNotExist) || errors.Is(err, ErrInvalidRange) || errors.Is(err, ErrSizeMismatch) ||
		errors.Is(err, context.Canceled) {
		return false
	}
	// net/http's own timeouts (ResponseHeaderTimeout) also claim to be
	// context.DeadlineExceeded; only the caller's expired context is final.
	if transportTimeout(err) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	// A connection that died under the request — a stale keep-alive
	// answered by EOF, a response cut off mid-body, a closed socket — is
	// worth another try on a fresh one, whatever status a wrapper claims
	// (a 200 whose body was cut carries the cut as its cause).
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	// So is one that net/http gave up on without an error type to say
	// so: a request sent on a keep-alive connection the server had just
	// closed (replayed by net/http only when it can rewind the body), an
	// HTTP/2 connection lost or closed with GOAWAY, or a request on one
	// whose body was already sent. GCS's client retries the same.
	msg := err.Error()
	for _, s := range connectionLost {
		if strings.Contains(msg, s) {
			return true
		}
	}
	var t interface{ Transient() bool }
	if errors.As(err, &t) {
		return t.Transient()
	}
	for _, errno := range []syscall.Errno{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE, syscall.ETIMEDOUT} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.IsTimeout || dns.IsTemporary
	}
	return false
}

// connectionLost are the messages of net/http's errors for a connection
// lost under a request that it has no exported type or value for.
var connectionLost = []string{
	"http: server closed idle connection",
	"http2: client connection lost",
	"http2: server sent GOAWAY",
	"after Request.Body was written",
}

// transportTimeout reports whether err's tree ends in a timeout raised by
// the network or the HTTP transport, as opposed to the caller's expired
// context. Wrappers such as url.Error pass Timeout through from what they
// wrap, so only leaves are asked.
func transportTimeout(err error) bool {
	switch u := err.(type) {
	case nil:
		return false
	case interface{ Unwrap() error }:
		if inner := u.Unwrap(); inner != nil {
			return transportTimeout(inner)
		}
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if transportTimeout(e) {
				return true
			}
		}
		return false
	}
	if err == context.DeadlineExceeded {
		return false
	}
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// ErrorKind is a bounded classification of an error, for metric labels and
// logs: "not_found", "invalid_range", "canceled", "transient" or "other".
func ErrorKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrNotExist):
		return "not_found"
	case errors.Is(err, ErrInvalidRange):
		return "invalid_range"
	case IsTransient(err):
		return "transient"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	default:
		return "other"
	}
}

// ExactReader returns a reader that yields exactly size bytes of r and
// reports ErrSizeMismatch, rather than io.EOF, if r ends sooner. Backends
// wrap a Put's body in it so a short body is an error the SDK propagates
// (and aborts the upload on) instead of a smaller object. Bytes of r past
// size are not read.
func ExactReader(r io.Reader, size int64) io.Reader {
	return &exactReader{r: r, left: size, size: size}
}

type exactReader struct {
	r    io.Reader
	left int64
	size int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF {
		if e.left > 0 {
			return n, fmt.Errorf("%w: got %d of %d bytes", ErrSizeMismatch, e.size-e.left, e.size)
		}
		if n > 0 {
			err = nil
		}
	}
	return n, err
}

// ReadFull reads exactly size bytes of r into a new buffer, reporting
// ErrSizeMismatch if r holds fewer. It is for backends that need the whole
// body in memory (to retry, sign or split it).
func ReadFull(r io.Reader, size int64) ([]byte, error) {
	buf := make([]byte, size)
	n, err := io.ReadFull(r, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return nil, fmt.Errorf("%w: got %d of %d bytes", ErrSizeMismatch, n, size)
	}
	if err != nil {
		return nil, err
	}
	return buf, nil
}

// ClampRange applies GetRange's contract to an object of size bytes: it
// returns how many bytes a read of length at off yields (length < 0: to the
// end; a range past the end is cut), or ErrInvalidRange when off is at or
// past the end, except off == 0 on an empty object.
func ClampRange(size, off, length int64) (int64, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative offset %d", ErrInvalidRange, off)
	}
	if off >= size && !(off == 0 && size == 0) {
		return 0, fmt.Errorf("%w: offset %d, object size %d", ErrInvalidRange, off, size)
	}
	if length < 0 || length > size-off {
		return size - off, nil
	}
	return length, nil
}

// CheckRangeResponse vets the answer to a ranged GET for off and length
// (length < 0: to the end) before its body is handed out as those bytes.
// contentRange is the response's Content-Range header, "" when the server
// answered 200 with the whole object: HTTP lets a server or proxy ignore
// Range, and a caller reading the body would take the object's first bytes
// for the bytes at off. A whole-object answer is cut to length when off is
// 0 and refused otherwise, as is a Content-Range that does not start at
// off. On error body is closed.
func CheckRangeResponse(body io.ReadCloser, contentRange string, off, length int64) (io.ReadCloser, error) {
	if contentRange == "" {
		if off != 0 {
			body.Close()
			return nil, fmt.Errorf("objstore: range at offset %d answered with the whole object (Range ignored)", off)
		}
		if length < 0 {
			return body, nil
		}
		return limitedBody{Reader: io.LimitReader(body, length), Closer: body}, nil
	}
	var start, end int64
	if _, err := fmt.Sscanf(contentRange, "bytes %d-%d/", &start, &end); err != nil || start != off || end < start ||
		(length >= 0 && end-start+1 > length) {
		body.Close()
		return nil, fmt.Errorf("objstore: range at offset %d length %d answered with Content-Range %q", off, length, contentRange)
	}
	return body, nil
}

type limitedBody struct {
	io.Reader
	io.Closer
}
