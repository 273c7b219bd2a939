package objstore

import (
	"context"
	"io"
	"iter"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultSingleRequestBytes is the largest object the s3, minio and gs
// backends send in one request by default; larger ones are a multipart (or
// resumable) upload of several. A store bills requests, not bytes moved, so
// every object the agents write routinely must fit: a WAL segment is at
// most the WAL's buffered bytes (wal.DefaultMaxBufferedBytes, 64 MiB) plus
// the last produce request appended, and a merged segment is about
// compaction's target size (64 MiB). Splitting such an object would let
// its parts go up in parallel, but a flush would cost create + parts +
// complete requests instead of one, exactly when uploads back up and
// segments grow.
const DefaultSingleRequestBytes = 128 << 20

// RequestCounter counts the requests a backend sends its store, in
//
//	floe_objstore_requests_total{op}
//
// where op is the Bucket call the request serves (get, get_range, stat,
// list, put, delete) or "other" for requests outside any call (a backend's
// bucket check at start). Unlike floe_objstore_operations_total, which
// counts a caller's calls, it counts what the store bills: every attempt
// of a retried call, every hedged PUT, each request of a multipart upload
// (create, parts, complete, abort) and each page of a listing. A nil
// *RequestCounter counts nothing.
type RequestCounter struct {
	c *prometheus.CounterVec
}

// NewRequestCounter creates the counter and registers it on reg (nil: not
// registered). Registering twice on one registry reuses the first counter.
func NewRequestCounter(reg prometheus.Registerer) *RequestCounter {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "floe_objstore_requests_total",
		Help: "Requests sent to the object store (each retry, hedge, multipart request and list page), by the operation they serve.",
	}, []string{"op"})
	if reg != nil {
		c = register(reg, c)
	}
	return &RequestCounter{c: c}
}

// Add counts n requests serving op.
func (rc *RequestCounter) Add(op string, n int) {
	if rc != nil && n > 0 {
		rc.c.WithLabelValues(op).Add(float64(n))
	}
}

type requestOpKey struct{}

// WithRequestOp marks ctx as serving op, for a Transport that counts the
// requests made with it.
func WithRequestOp(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, requestOpKey{}, op)
}

// Transport returns rt counting each request it sends under the op its
// context was marked with (WithRequestOp), or "other". A nil rc returns rt.
func (rc *RequestCounter) Transport(rt http.RoundTripper) http.RoundTripper {
	if rc == nil {
		return rt
	}
	return &countingTransport{rt: rt, rc: rc}
}

type countingTransport struct {
	rt http.RoundTripper
	rc *RequestCounter
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	op, _ := req.Context().Value(requestOpKey{}).(string)
	if op == "" {
		op = "other"
	}
	t.rc.Add(op, 1)
	return t.rt.RoundTrip(req)
}

// CloseIdleConnections passes through, so closing a client built on the
// transport still drops its connections.
func (t *countingTransport) CloseIdleConnections() {
	if c, ok := t.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// WithRequestCount returns b counting one request per call in rc, for a
// backend that sends its store one request per call (or has no store to
// bill it, as file and mem: there a call stands for the request it would
// be). A backend that can send several counts them itself.
func WithRequestCount(b Bucket, rc *RequestCounter) Bucket {
	if rc == nil {
		return b
	}
	return &requestBucket{b: b, rc: rc}
}

type requestBucket struct {
	b  Bucket
	rc *RequestCounter
}

var _ Bucket = (*requestBucket)(nil)

func (r *requestBucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	r.rc.Add("get", 1)
	return r.b.Get(ctx, key)
}

func (r *requestBucket) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	r.rc.Add("get_range", 1)
	return r.b.GetRange(ctx, key, off, length)
}

func (r *requestBucket) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	r.rc.Add("stat", 1)
	return r.b.Stat(ctx, key)
}

func (r *requestBucket) List(ctx context.Context, prefix string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		r.rc.Add("list", 1)
		r.b.List(ctx, prefix)(yield)
	}
}

func (r *requestBucket) Put(ctx context.Context, key string, rd io.Reader, size int64) error {
	r.rc.Add("put", 1)
	return r.b.Put(ctx, key, rd, size)
}

func (r *requestBucket) Delete(ctx context.Context, key string) error {
	r.rc.Add("delete", 1)
	return r.b.Delete(ctx, key)
}

func (r *requestBucket) Close() error { return r.b.Close() }

// Unwrap returns the bucket this one wraps (see CheckBucket).
func (r *requestBucket) Unwrap() Bucket { return r.b }
