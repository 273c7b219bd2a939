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

// LatencyConfig says how much delay WithLatency adds per operation. It
// exists to make benchmarks on a local bucket behave like a remote one.
type LatencyConfig struct {
	// Put is added after the backend's Put returns (the upload).
	Put Dist
	// Get is added before Get and GetRange (time to first byte).
	Get Dist
	// Stat, List (before the first page) and Delete.
	Stat, List, Delete Dist

	// Rand draws the samples; nil seeds one from the runtime. The wrapper
	// guards it, so it need not be safe for concurrent use, but it must
	// not be shared with another wrapper.
	Rand *rand.Rand
	// Sleep waits d or until ctx is done; nil uses a timer.
	Sleep func(ctx context.Context, d time.Duration) error
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

// WithLatency returns a Bucket that delays b's calls by samples of cfg's
// distributions, to benchmark on a local or in-memory bucket as if it were
// remote. A delay honours ctx: a cancelled caller returns at once. Compose
// it innermost (just around the backend) so retries and metrics see it.
func WithLatency(b Bucket, cfg LatencyConfig) Bucket {
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepCtx
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

func (l *latencyBucket) wait(ctx context.Context, d Dist) error {
	if d.P50 <= 0 {
		return nil
	}
	l.mu.Lock()
	z := l.mu.rand.NormFloat64()
	l.mu.Unlock()
	return l.cfg.Sleep(ctx, d.sample(z))
}

func (l *latencyBucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := l.wait(ctx, l.cfg.Get); err != nil {
		return nil, err
	}
	return l.b.Get(ctx, key)
}

func (l *latencyBucket) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if err := l.wait(ctx, l.cfg.Get); err != nil {
		return nil, err
	}
	return l.b.GetRange(ctx, key, off, length)
}

func (l *latencyBucket) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := l.wait(ctx, l.cfg.Stat); err != nil {
		return ObjectInfo{}, err
	}
	return l.b.Stat(ctx, key)
}

func (l *latencyBucket) List(ctx context.Context, prefix string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		if err := l.wait(ctx, l.cfg.List); err != nil {
			yield(ObjectInfo{}, err)
			return
		}
		for info, err := range l.b.List(ctx, prefix) {
			if !yield(info, err) {
				return
			}
		}
	}
}

func (l *latencyBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := l.b.Put(ctx, key, r, size); err != nil {
		return err
	}
	// The object is already stored: like a real upload whose answer is
	// slow, a cancelled wait reports failure for a Put that happened.
	return l.wait(ctx, l.cfg.Put)
}

func (l *latencyBucket) Delete(ctx context.Context, key string) error {
	if err := l.wait(ctx, l.cfg.Delete); err != nil {
		return err
	}
	return l.b.Delete(ctx, key)
}

func (l *latencyBucket) Close() error { return l.b.Close() }
