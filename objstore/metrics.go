package objstore

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the collectors WithMetrics updates. Labels are bounded: op is
// one of get, get_range, stat, list, put, delete; kind is one of the values
// ErrorKind returns.
type metrics struct {
	// Operations counts calls, by op.
	Operations *prometheus.CounterVec
	// Errors counts failed calls (and failed reads of Get bodies), by op
	// and kind.
	Errors *prometheus.CounterVec
	// Duration is the latency of a call, by op. For get and get_range it
	// is time to first byte (until the call returns a reader); for list,
	// the whole iteration.
	Duration *prometheus.HistogramVec
	// Bytes counts object bytes moved, by op (put: sent; get and
	// get_range: read by the caller).
	Bytes *prometheus.CounterVec
}

// newMetrics creates the collectors and registers them on reg (nil: not
// registered). Registering twice on one registry reuses the collectors
// already there, so several buckets can share a registry.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		Operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_objstore_operations_total",
			Help: "Object store calls, by operation.",
		}, []string{"op"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_objstore_operation_errors_total",
			Help: "Failed object store calls, by operation and error kind.",
		}, []string{"op", "kind"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "floe_objstore_operation_duration_seconds",
			Help:    "Object store call latency (time to first byte for reads), by operation.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"op"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_objstore_bytes_total",
			Help: "Object bytes written by put and read from get bodies, by operation.",
		}, []string{"op"}),
	}
	if reg != nil {
		m.Operations = register(reg, m.Operations)
		m.Errors = register(reg, m.Errors)
		m.Duration = register(reg, m.Duration)
		m.Bytes = register(reg, m.Bytes)
	}
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		// Only a programmer error (a clashing metric of another type)
		// gets here.
		panic("objstore: register metrics: " + err.Error())
	}
	return c
}

// WithMetrics returns a Bucket that records every call of b in collectors
// registered on reg (nil: kept but not registered):
//
//	floe_objstore_operations_total{op}
//	floe_objstore_operation_errors_total{op,kind}
//	floe_objstore_operation_duration_seconds{op}   time to first byte for get, get_range
//	floe_objstore_bytes_total{op}                  put: sent; get, get_range: read by the caller
//
// op is one of get, get_range, stat, list, put, delete; kind is what
// ErrorKind returns. Several buckets may share one registry: the second
// reuses the first's collectors. Put WithMetrics outside WithRetry so a
// caller's call counts once and its latency includes the retries.
func WithMetrics(b Bucket, reg prometheus.Registerer) Bucket {
	return &metricBucket{b: b, m: newMetrics(reg)}
}

type metricBucket struct {
	b Bucket
	m *metrics
}

var _ Bucket = (*metricBucket)(nil)

func (mb *metricBucket) observe(op string, start time.Time, err error) {
	mb.m.Operations.WithLabelValues(op).Inc()
	mb.m.Duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		mb.m.Errors.WithLabelValues(op, ErrorKind(err)).Inc()
	}
}

func (mb *metricBucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := mb.b.Get(ctx, key)
	mb.observe("get", start, err)
	if err != nil {
		return nil, err
	}
	return &countingReader{rc: rc, m: mb.m, op: "get"}, nil
}

func (mb *metricBucket) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := mb.b.GetRange(ctx, key, off, length)
	mb.observe("get_range", start, err)
	if err != nil {
		return nil, err
	}
	return &countingReader{rc: rc, m: mb.m, op: "get_range"}, nil
}

func (mb *metricBucket) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	start := time.Now()
	info, err := mb.b.Stat(ctx, key)
	mb.observe("stat", start, err)
	return info, err
}

func (mb *metricBucket) List(ctx context.Context, prefix string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		start := time.Now()
		var lerr error
		defer func() { mb.observe("list", start, lerr) }()
		for info, err := range mb.b.List(ctx, prefix) {
			lerr = err
			if !yield(info, err) {
				return
			}
		}
	}
}

func (mb *metricBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	start := time.Now()
	err := mb.b.Put(ctx, key, r, size)
	mb.observe("put", start, err)
	if err == nil {
		mb.m.Bytes.WithLabelValues("put").Add(float64(size))
	}
	return err
}

func (mb *metricBucket) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := mb.b.Delete(ctx, key)
	mb.observe("delete", start, err)
	return err
}

func (mb *metricBucket) Close() error { return mb.b.Close() }

// countingReader counts the bytes a caller reads and the error that ends a
// body early.
type countingReader struct {
	rc     io.ReadCloser
	m      *metrics
	op     string
	n      int64
	failed bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && !c.failed {
		c.failed = true
		c.m.Errors.WithLabelValues(c.op, ErrorKind(err)).Inc()
	}
	return n, err
}

func (c *countingReader) Close() error {
	c.m.Bytes.WithLabelValues(c.op).Add(float64(c.n))
	c.n = 0
	return c.rc.Close()
}

// Unwrap returns the bucket this one wraps (see CheckBucket).
func (mb *metricBucket) Unwrap() Bucket { return mb.b }
