package objstore

import (
	"context"
	"fmt"
	"io"
	"iter"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// Dist is a latency distribution: log-normal, fitted so its median is P50
// and its 99th percentile is P99. P99 <= P50 means a constant P50. The zero
// Dist adds no delay.
type Dist struct {
	P50, P99 time.Duration
}

// z99 is the standard normal's 99th percentile.
const z99 = 2.3263478740408408

// sample maps a standard normal draw z to a latency.
func (d Dist) sample(z float64) time.Duration {
	if d.P50 <= 0 {
		return 0
	}
	if d.P99 <= d.P50 {
		return d.P50
	}
	mu := math.Log(float64(d.P50))
	sigma := (math.Log(float64(d.P99)) - mu) / z99
	return time.Duration(math.Exp(mu + sigma*z))
}

func (d Dist) String() string {
	if d.P99 <= d.P50 {
		return fmt.Sprintf("p50:%s", d.P50)
	}
	return fmt.Sprintf("p50:%s,p99:%s", d.P50, d.P99)
}

// LatencyConfig says how long WithLatency makes each operation take. It
// exists to make benchmarks on a local bucket behave like a remote one.
//
// A sample is the operation's whole latency, not an addition to the
// backend's: the wrapper calls the backend first and then waits out what
// is left of the sample. A local MinIO on a busy machine takes 15–30 ms
// for a few hundred KB, and adding the sample on top of that would make
// "PUT p50 100 ms" a PUT of 115 ms or more, slower than the remote store
// it stands for by however loaded the benchmark machine happens to be.
// When the backend itself is slower than the sample, its time stands.
type LatencyConfig struct {
	// Put is the upload's latency, until the backend's Put returns.
	Put Dist
	// Get is the time to first byte of Get and GetRange.
	Get Dist
	// Stat, Delete, and List's before its first page.
	Stat, List, Delete Dist

	// Rand draws the samples; nil seeds one from the runtime. The wrapper
	// guards it, so it need not be safe for concurrent use, but it must
	// not be shared with another wrapper.
	Rand *rand.Rand
	// Sleep waits d or until ctx is done; nil uses a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now reads the clock the backend's own time is measured on; nil
	// uses time.Now.
	Now func() time.Time
}

// Latency presets, from AWS's published guidance and common measurements:
// S3 Standard PUTs take around 100 ms at the median with a long tail, and
// first bytes of a GET arrive in tens of milliseconds; S3 Express One Zone
// answers in single-digit milliseconds.
var latencyPresets = map[string]string{
	"s3-standard": "put=p50:100ms,p99:400ms;get=p50:30ms,p99:150ms;stat=p50:20ms,p99:80ms;list=p50:50ms,p99:200ms;delete=p50:30ms,p99:120ms",
	"s3-express":  "put=p50:5ms,p99:15ms;get=p50:3ms,p99:10ms;stat=p50:2ms,p99:8ms;list=p50:5ms,p99:15ms;delete=p50:3ms,p99:10ms",
	"none":        "",
}

// ParseLatency reads a preset name ("s3-standard", "s3-express", "none")
// or a spec of ';'-separated op=dist entries, each dist being
// "p50:<duration>[,p99:<duration>]":
//
//	put=p50:100ms,p99:400ms;get=p50:20ms,p99:80ms
//
// Ops are put, get, stat, list and delete; stat, list and delete default to
// get's distribution when not given.
func ParseLatency(spec string) (LatencyConfig, error) {
	if p, ok := latencyPresets[spec]; ok {
		spec = p
	}
	var c LatencyConfig
	set := map[string]bool{}
	for entry := range strings.SplitSeq(spec, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		op, ds, ok := strings.Cut(entry, "=")
		if !ok {
			return LatencyConfig{}, fmt.Errorf("objstore: latency %q: entry %q: want op=p50:<dur>[,p99:<dur>] or a preset (s3-standard, s3-express, none)", spec, entry)
		}
		d, err := parseDist(ds)
		if err != nil {
			return LatencyConfig{}, fmt.Errorf("objstore: latency %q: %s: %w", spec, op, err)
		}
		var dst *Dist
		switch op {
		case "put":
			dst = &c.Put
		case "get":
			dst = &c.Get
		case "stat":
			dst = &c.Stat
		case "list":
			dst = &c.List
		case "delete":
			dst = &c.Delete
		default:
			return LatencyConfig{}, fmt.Errorf("objstore: latency %q: unknown op %q (want put, get, stat, list, delete)", spec, op)
		}
		if set[op] {
			return LatencyConfig{}, fmt.Errorf("objstore: latency %q: %s given twice", spec, op)
		}
		set[op] = true
		*dst = d
	}
	for op, dst := range map[string]*Dist{"stat": &c.Stat, "list": &c.List, "delete": &c.Delete} {
		if !set[op] {
			*dst = c.Get
		}
	}
	return c, nil
}

func parseDist(s string) (Dist, error) {
	var d Dist
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return Dist{}, fmt.Errorf("%q: want p50:<dur> or p99:<dur>", part)
		}
		dur, err := time.ParseDuration(v)
		if err != nil || dur < 0 {
			return Dist{}, fmt.Errorf("%q: bad duration %q", part, v)
		}
		switch k {
		case "p50":
			d.P50 = dur
		case "p99":
			d.P99 = dur
		default:
			return Dist{}, fmt.Errorf("%q: unknown percentile %q (want p50, p99)", part, k)
		}
	}
	if d.P50 == 0 && d.P99 != 0 {
		return Dist{}, fmt.Errorf("%q: p99 without p50", s)
	}
	if d.P99 != 0 && d.P99 < d.P50 {
		return Dist{}, fmt.Errorf("%q: p99 %s below p50 %s", s, d.P99, d.P50)
	}
	return d, nil
}

// WithLatency returns a Bucket whose calls take as long as samples of cfg's
// distributions (or b's own time, if longer), to benchmark on a local or
// in-memory bucket as if it were remote. A wait honours ctx: a cancelled
// caller returns at once. Compose it innermost (just around the backend)
// so retries and metrics see it.
func WithLatency(b Bucket, cfg LatencyConfig) Bucket {
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepCtx
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &latencyBucket{b: b, cfg: cfg}
	l.mu.rand = cfg.Rand
	return l
}

type latencyBucket struct {
	b   Bucket
	cfg LatencyConfig
	mu  struct {
		sync.Mutex
		rand *rand.Rand
	}
}

var _ Bucket = (*latencyBucket)(nil)

func (l *latencyBucket) sample(d Dist) time.Duration {
	if d.P50 <= 0 {
		return 0
	}
	l.mu.Lock()
	z := l.mu.rand.NormFloat64()
	l.mu.Unlock()
	return d.sample(z)
}

// timed runs op and then waits until a sample of d has passed since it
// started.
func (l *latencyBucket) timed(ctx context.Context, d Dist, op func() error) error {
	total := l.sample(d)
	start := l.cfg.Now()
	if err := op(); err != nil {
		return err
	}
	if rest := total - l.cfg.Now().Sub(start); rest > 0 {
		return l.cfg.Sleep(ctx, rest)
	}
	return nil
}

func (l *latencyBucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return l.reader(ctx, func() (io.ReadCloser, error) { return l.b.Get(ctx, key) })
}

func (l *latencyBucket) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	return l.reader(ctx, func() (io.ReadCloser, error) { return l.b.GetRange(ctx, key, off, length) })
}

// reader opens a body with Get's latency; a caller cancelled during the
// wait gets no body.
func (l *latencyBucket) reader(ctx context.Context, open func() (io.ReadCloser, error)) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := l.timed(ctx, l.cfg.Get, func() (err error) {
		rc, err = open()
		return err
	})
	if err != nil {
		if rc != nil {
			rc.Close()
		}
		return nil, err
	}
	return rc, nil
}

func (l *latencyBucket) Stat(ctx context.Context, key string) (info ObjectInfo, err error) {
	err = l.timed(ctx, l.cfg.Stat, func() (err error) {
		info, err = l.b.Stat(ctx, key)
		return err
	})
	if err != nil {
		return ObjectInfo{}, err
	}
	return info, nil
}

// List waits before its first page: a listing's pages are the caller's to
// pace, so only the first answer's latency is the store's.
func (l *latencyBucket) List(ctx context.Context, prefix string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		if d := l.sample(l.cfg.List); d > 0 {
			if err := l.cfg.Sleep(ctx, d); err != nil {
				yield(ObjectInfo{}, err)
				return
			}
		}
		for info, err := range l.b.List(ctx, prefix) {
			if !yield(info, err) {
				return
			}
		}
	}
}

func (l *latencyBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	// A wait cancelled after the backend stored the object reports
	// failure for a Put that happened, like a real upload whose answer
	// is slow.
	return l.timed(ctx, l.cfg.Put, func() error { return l.b.Put(ctx, key, r, size) })
}

func (l *latencyBucket) Delete(ctx context.Context, key string) error {
	return l.timed(ctx, l.cfg.Delete, func() error { return l.b.Delete(ctx, key) })
}

func (l *latencyBucket) Close() error { return l.b.Close() }

// Unwrap returns the bucket this one wraps (see CheckBucket).
func (l *latencyBucket) Unwrap() Bucket { return l.b }
