// Package bucket opens an objstore.Bucket from a URL, choosing the backend
// by scheme and composing the wrappers every Floe bucket gets:
//
//	backend → latency (only if asked) → hedged put → prefix → retry → metrics
//
// With a Registerer, the backend counts the requests it sends
// (floe_objstore_requests_total, objstore.RequestCounter): innermost, so
// every retry attempt, hedge and multipart request is counted as the store
// bills it. The file and mem backends count one per call.
//
// It lives apart from package objstore because it imports every backend,
// and every backend imports objstore.
//
// URLs:
//
//	s3://bucket/prefix?region=us-east-1&endpoint=http://host:9000&path_style=true
//	gs://bucket/prefix
//	minio://[access:secret@]host:port/bucket/prefix?secure=false
//	file:///absolute/dir   file:relative/dir   file://./relative/dir
//	mem://
//
// Query parameters for every scheme:
//
//	latency=s3-standard|s3-express|none|put=p50:100ms,p99:400ms;get=…   (objstore.ParseLatency)
//	hedge_put=p90     start a second identical PUT when the first is slower
//	                  than 90% of recent PUTs of its size (adaptive), or a
//	                  fixed delay such as 250ms; default p90 for s3://, off
//	                  elsewhere; 0 = off
//	hedge_max_extra=0.25  the most extra PUTs per PUT hedging may send over
//	                  time (0 to 1; default 0.25)
//	retry_attempts=5 retry_initial_backoff=100ms retry_max_backoff=2s retry_max_elapsed=15s
//
// and per scheme:
//
//	s3:     region endpoint path_style multipart_threshold part_size part_concurrency
//	        list_page_size check (false skips the HeadBucket at open)
//	gs:     endpoint chunk_size list_page_size check
//	minio:  secure region multipart_threshold part_size part_concurrency
//	        list_page_size check
//
// Sizes take a KiB, MiB or GiB suffix. Credentials: s3 uses static keys
// from the URL's user info or the AWS default chain (AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, profiles, roles); minio uses the URL's user info,
// else MINIO_ACCESS_KEY/MINIO_SECRET_KEY, MINIO_ROOT_USER/
// MINIO_ROOT_PASSWORD or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; gs uses
// Application Default Credentials. Unknown parameters, malformed values and
// missing credentials fail Open, and the s3, gs and minio backends check
// their bucket is reachable before Open returns.
package bucket

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/file"
	"github.com/floebroker/floe/objstore/gcs"
	"github.com/floebroker/floe/objstore/mem"
	"github.com/floebroker/floe/objstore/minio"
	"github.com/floebroker/floe/objstore/s3"
)

// Options carries what Open cannot read from the URL.
type Options struct {
	// Logger receives retry notices. Nil discards.
	Logger *slog.Logger
	// Registerer receives the floe_objstore_* metrics. Nil: no metrics
	// wrapper.
	Registerer prometheus.Registerer
}

// Open parses rawURL, connects to the bucket it names and returns it with
// the standard wrappers. See the package documentation for the URL forms.
func Open(ctx context.Context, rawURL string, opts Options) (objstore.Bucket, error) {
	u, err := url.Parse(rawURL)
	if err == nil && u.User == nil && (u.Scheme == "s3" || u.Scheme == "minio") && strings.Contains(rawURL, "@") {
		// An '@' but no user info: a secret key holding '/', '?' or '#'
		// moved the user info into the path or query, where error
		// messages would quote it.
		err = errors.New("'@' outside the user info")
	}
	if err != nil && strings.Contains(rawURL, "@") {
		// A url.Error quotes the whole URL, and its detail can quote part
		// of it (invalid port ":<start of the secret key>"): with
		// credentials likely present, show neither.
		return nil, errors.New("bucket: malformed URL (not shown: it may hold credentials); percent-encode '/', '?', '#', '%' and '@' in the access and secret key")
	}
	if err != nil {
		return nil, fmt.Errorf("bucket: parse URL: %w", err)
	}
	redacted := u.Redacted()
	q := params{u.Query(), map[string]bool{}}
	common, err := parseCommon(&q, opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", redacted, err)
	}
	var requests *objstore.RequestCounter
	if opts.Registerer != nil {
		requests = objstore.NewRequestCounter(opts.Registerer)
	}
	var b objstore.Bucket
	var prefix string
	switch u.Scheme {
	case "s3":
		b, prefix, err = openS3(ctx, u, &q, requests)
	case "gs":
		b, prefix, err = openGCS(ctx, u, &q, requests)
	case "minio":
		b, prefix, err = openMinio(ctx, u, &q, requests)
	case "file":
		if b, err = openFile(u, &q); err == nil {
			b = objstore.WithRequestCount(b, requests)
		}
	case "mem":
		if u.Host != "" || strings.Trim(u.Path, "/") != "" || u.Opaque != "" {
			err = errors.New("mem:// takes no name or path")
		} else if err = q.done(); err == nil {
			b = objstore.WithRequestCount(mem.New(nil), requests)
		}
	case "":
		err = errors.New("no scheme (want s3://, gs://, minio://, file:// or mem://)")
	default:
		err = fmt.Errorf("unknown scheme %q (want s3, gs, minio, file or mem)", u.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", redacted, err)
	}
	if common.latency != nil {
		b = objstore.WithLatency(b, *common.latency)
	}
	hedge := common.hedge
	// Hedging is on by default only for S3, whose PUT cannot create an
	// object from a truncated body (Content-Length is enforced and a
	// multipart upload completes only when asked), so a cancelled hedge
	// attempt can never overwrite the winner with partial bytes. For GCS
	// that guarantee has not been shown here (see gcs.Config.ChunkSize), so
	// it is opt-in.
	if !common.hedgeSet && u.Scheme == "s3" {
		hedge = DefaultHedge
	}
	hedge.MaxExtra = common.maxExtra
	if b, err = objstore.WithHedgedPut(b, hedge, opts.Registerer); err != nil {
		return nil, fmt.Errorf("bucket %s: %w", redacted, err)
	}
	b = objstore.WithPrefix(b, prefix)
	b = objstore.WithRetry(b, common.retry)
	if opts.Registerer != nil {
		b = objstore.WithMetrics(b, opts.Registerer)
	}
	return b, nil
}

// Redacted returns rawURL with any password replaced by "xxxxx", for logs.
func Redacted(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparsable bucket URL>"
	}
	return u.Redacted()
}

// DefaultHedge is the hedge policy of s3:// buckets (hedge_put=p90): a
// second PUT when the first is slower than 90% of recent PUTs of its size,
// so about a tenth of PUTs are sent twice and the PUT p99 (the produce p99)
// drops toward the p90. Until it has timed enough PUTs it hedges at 250 ms,
// about S3 Standard's p93. Set hedge_put=0 to turn it off.
var DefaultHedge = objstore.HedgePolicy{Delay: 250 * time.Millisecond, Quantile: 0.9}

type common struct {
	retry    objstore.RetryConfig
	latency  *objstore.LatencyConfig
	hedge    objstore.HedgePolicy
	hedgeSet bool
	maxExtra float64 // hedge_max_extra; 0: the policy's default
}

func parseCommon(q *params, logger *slog.Logger) (common, error) {
	var c common
	c.retry.Logger = logger
	if s, ok := q.take("latency"); ok {
		l, err := objstore.ParseLatency(s)
		if err != nil {
			return c, err
		}
		c.latency = &l
	}
	var err error
	if s, ok := q.take("hedge_put"); ok {
		c.hedgeSet = true
		if c.hedge, err = parseHedge(s); err != nil {
			return c, err
		}
	}
	if s, ok := q.take("hedge_max_extra"); ok {
		if c.maxExtra, err = strconv.ParseFloat(s, 64); err != nil || !(c.maxExtra > 0 && c.maxExtra <= 1) { // NaN too
			return c, fmt.Errorf("hedge_max_extra %q: want a fraction in (0, 1]", s)
		}
	}
	if c.retry.MaxAttempts, err = q.int("retry_attempts", 0); err != nil {
		return c, err
	}
	if c.retry.MaxAttempts < 0 {
		return c, fmt.Errorf("retry_attempts %d < 0", c.retry.MaxAttempts)
	}
	for name, dst := range map[string]*time.Duration{
		"retry_initial_backoff": &c.retry.InitialBackoff,
		"retry_max_backoff":     &c.retry.MaxBackoff,
		"retry_max_elapsed":     &c.retry.MaxElapsed,
	} {
		if *dst, err = q.duration(name); err != nil {
			return c, err
		}
	}
	return c, c.retry.Validate()
}

// parseHedge reads hedge_put: a duration (a fixed delay; 0 turns hedging
// off, as does "off") or pNN (adaptive at that percentile of recent PUTs, starting from
// DefaultHedge's delay).
func parseHedge(s string) (objstore.HedgePolicy, error) {
	if s == "off" {
		return objstore.HedgePolicy{}, nil
	}
	if rest, ok := strings.CutPrefix(s, "p"); ok {
		pct, err := strconv.ParseFloat(rest, 64)
		if err != nil || !(pct > 0 && pct < 100) { // NaN too
			return objstore.HedgePolicy{}, fmt.Errorf("hedge_put %q: want a duration or a percentile p1…p99.9", s)
		}
		return objstore.HedgePolicy{Delay: DefaultHedge.Delay, Quantile: pct / 100}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return objstore.HedgePolicy{}, fmt.Errorf("hedge_put %q: want a duration or a percentile p1…p99.9", s)
	}
	return objstore.HedgePolicy{Delay: d}, nil
}

// prefixOf turns a URL path after the bucket into a key prefix.
func prefixOf(path string) string { return strings.Trim(path, "/") }

func openS3(ctx context.Context, u *url.URL, q *params, requests *objstore.RequestCounter) (objstore.Bucket, string, error) {
	cfg := s3.Config{Bucket: u.Host, Requests: requests}
	if u.User != nil {
		cfg.AccessKeyID = u.User.Username()
		cfg.SecretAccessKey, _ = u.User.Password()
	}
	cfg.Region, _ = q.take("region")
	cfg.Endpoint, _ = q.take("endpoint")
	var err error
	if cfg.PathStyle, err = q.bool("path_style", false); err != nil {
		return nil, "", err
	}
	if cfg.MultipartThreshold, err = q.size("multipart_threshold"); err != nil {
		return nil, "", err
	}
	if cfg.PartSize, err = q.size("part_size"); err != nil {
		return nil, "", err
	}
	if cfg.PartConcurrency, err = q.int("part_concurrency", 0); err != nil {
		return nil, "", err
	}
	n, err := q.int("list_page_size", 0)
	if err != nil {
		return nil, "", err
	}
	cfg.ListPageSize = int32(min(n, 1<<30))
	check, err := q.bool("check", true)
	if err != nil {
		return nil, "", err
	}
	cfg.SkipBucketCheck = !check
	if err := q.done(); err != nil {
		return nil, "", err
	}
	b, err := s3.New(ctx, cfg)
	return b, prefixOf(u.Path), err
}

func openGCS(ctx context.Context, u *url.URL, q *params, requests *objstore.RequestCounter) (objstore.Bucket, string, error) {
	cfg := gcs.Config{Bucket: u.Host, Requests: requests}
	cfg.Endpoint, _ = q.take("endpoint")
	chunk, err := q.size("chunk_size")
	if err != nil {
		return nil, "", err
	}
	cfg.ChunkSize = int(min(chunk, 1<<30))
	if cfg.ListPageSize, err = q.int("list_page_size", 0); err != nil {
		return nil, "", err
	}
	check, err := q.bool("check", true)
	if err != nil {
		return nil, "", err
	}
	cfg.SkipBucketCheck = !check
	if err := q.done(); err != nil {
		return nil, "", err
	}
	b, err := gcs.New(ctx, cfg)
	return b, prefixOf(u.Path), err
}

func openMinio(ctx context.Context, u *url.URL, q *params, requests *objstore.RequestCounter) (objstore.Bucket, string, error) {
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if u.Host == "" || bucket == "" {
		return nil, "", errors.New("want minio://host:port/bucket[/prefix]")
	}
	cfg := minio.Config{Endpoint: u.Host, Bucket: bucket, Requests: requests}
	cfg.AccessKey, cfg.SecretKey = minioCreds(u)
	var err error
	if cfg.Secure, err = q.bool("secure", true); err != nil {
		return nil, "", err
	}
	cfg.Region, _ = q.take("region")
	if cfg.MultipartThreshold, err = q.size("multipart_threshold"); err != nil {
		return nil, "", err
	}
	part, err := q.size("part_size")
	if err != nil {
		return nil, "", err
	}
	cfg.PartSize = uint64(part)
	pc, err := q.int("part_concurrency", 0)
	if err != nil {
		return nil, "", err
	}
	if pc < 0 {
		return nil, "", fmt.Errorf("part_concurrency %d < 0", pc)
	}
	cfg.PartConcurrency = uint(pc)
	if cfg.ListPageSize, err = q.int("list_page_size", 0); err != nil {
		return nil, "", err
	}
	check, err := q.bool("check", true)
	if err != nil {
		return nil, "", err
	}
	cfg.SkipBucketCheck = !check
	if err := q.done(); err != nil {
		return nil, "", err
	}
	b, err := minio.New(ctx, cfg)
	return b, prefixOf(prefix), err
}

// minioCreds picks the first complete pair: the URL's user info, then the
// environment variables MinIO's and AWS's tools use.
func minioCreds(u *url.URL) (string, string) {
	if u.User != nil {
		if p, ok := u.User.Password(); ok && u.User.Username() != "" {
			return u.User.Username(), p
		}
	}
	for _, pair := range [][2]string{
		{"MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"},
		{"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"},
		{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
	} {
		if a, s := os.Getenv(pair[0]), os.Getenv(pair[1]); a != "" && s != "" {
			return a, s
		}
	}
	return "", ""
}

func openFile(u *url.URL, q *params) (objstore.Bucket, error) {
	var dir string
	switch {
	case u.Opaque != "": // file:relative/dir
		dir = u.Opaque
	case u.Host == "" || u.Host == "localhost": // file:///abs
		dir = u.Path
	case u.Host == "." || u.Host == "..": // file://./rel
		dir = u.Host + u.Path
	default:
		return nil, fmt.Errorf("file URL host %q: want file:///absolute/path, file:relative/path or file://./relative/path", u.Host)
	}
	if dir == "" {
		return nil, errors.New("file URL has no directory")
	}
	if err := q.done(); err != nil {
		return nil, err
	}
	return file.New(dir)
}

// params consumes query parameters, so leftovers (typos) can be reported.
type params struct {
	v    url.Values
	used map[string]bool
}

func (p *params) take(name string) (string, bool) {
	vs, ok := p.v[name]
	if !ok {
		return "", false
	}
	p.used[name] = true
	return vs[len(vs)-1], true
}

func (p *params) done() error {
	var extra []string
	for k := range p.v {
		if !p.used[k] {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		return fmt.Errorf("unknown parameter(s) %s", strings.Join(extra, ", "))
	}
	return nil
}

func (p *params) bool(name string, def bool) (bool, error) {
	s, ok := p.take(name)
	if !ok {
		return def, nil
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want true or false", name, s)
	}
	return v, nil
}

func (p *params) int(name string, def int) (int, error) {
	s, ok := p.take(name)
	if !ok {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: want an integer", name, s)
	}
	return v, nil
}

func (p *params) duration(name string) (time.Duration, error) {
	s, ok := p.take(name)
	if !ok {
		return 0, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration such as 250ms", name, s)
	}
	return v, nil
}

// size parses a byte count with an optional KiB, MiB or GiB suffix; 0 when
// absent (the backend's default).
func (p *params) size(name string) (int64, error) {
	s, ok := p.take(name)
	if !ok {
		return 0, nil
	}
	v, err := parseSize(s)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: %w", name, s, err)
	}
	return v, nil
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || v < 0 || v > (1<<50)/mult {
		return 0, errors.New("want a byte count such as 8388608 or 8MiB")
	}
	return v * mult, nil
}
