// Package s3 is the objstore.Bucket for Amazon S3 and S3-compatible stores
// (MinIO, Ceph RGW, R2, …), on aws-sdk-go-v2.
//
// Guarantees, beyond objstore.Bucket's:
//   - Objects up to Config.MultipartThreshold (default
//     objstore.DefaultSingleRequestBytes, 128 MiB) are one PutObject, so a
//     segment the agents write costs one billed request; larger ones are a
//     multipart upload whose parts go up concurrently (at most
//     Config.PartConcurrency in flight, so at most that many part buffers
//     for a streamed body). Either way the object appears whole or not at
//     all; a failed multipart upload is aborted so no parts linger.
//   - With Config.Requests set, every HTTP request sent is counted
//     (objstore.RequestCounter), by the call it serves.
//   - The SDK does not retry: objstore.WithRetry is the single retry layer,
//     so a failing service sees no retry storm. Errors carry the HTTP
//     status and S3 error code (objstore.StatusError) so that layer can
//     tell throttling from a bad request.
//   - Checksums are computed and validated only when an operation requires
//     them, the setting S3-compatible stores understand.
//   - New checks credentials and the bucket (HeadBucket) within
//     Config.CheckTimeout, so bad settings fail at start, not at the first
//     produce.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"

	"github.com/floebroker/floe/objstore"
)

// Config says which bucket to use and how. Zero fields take defaults.
type Config struct {
	// Bucket is the bucket name. Required.
	Bucket string
	// Region; empty takes AWS_REGION / the shared config, else us-east-1.
	Region string
	// Endpoint is an S3-compatible service's URL ("http://host:9000");
	// empty means AWS.
	Endpoint string
	// PathStyle addresses the bucket in the path rather than the host
	// name, as most S3-compatible stores need.
	PathStyle bool
	// Static credentials. Empty means the default chain: AWS_ACCESS_KEY_ID
	// and AWS_SECRET_ACCESS_KEY, shared config files, web identity, the
	// instance's role.
	AccessKeyID, SecretAccessKey, SessionToken string

	// MultipartThreshold is the largest object sent as one PutObject.
	// Default objstore.DefaultSingleRequestBytes (128 MiB): a multipart
	// upload sends its parts in parallel but costs create + parts +
	// complete requests. A single PutObject of a body that is not an
	// io.ReaderAt and io.Seeker is read into memory whole (the agents
	// always pass a bytes.Reader).
	MultipartThreshold int64
	// PartSize is a multipart upload's part size, at least 5 MiB (S3's
	// minimum). It grows if an object would need more than 10000 parts.
	// Default 8 MiB.
	PartSize int64
	// PartConcurrency is how many parts upload at once. Default 4.
	PartConcurrency int
	// ListPageSize is the keys asked for per ListObjectsV2 call, at most
	// 1000. Default 1000.
	ListPageSize int32
	// ResponseHeaderTimeout bounds the wait for a response once a request
	// is sent, so a hung service fails the call instead of blocking it.
	// Default 30s.
	ResponseHeaderTimeout time.Duration
	// CheckTimeout bounds New's credential and bucket checks. Default 10s.
	CheckTimeout time.Duration
	// SkipBucketCheck skips New's HeadBucket.
	SkipBucketCheck bool
	// HTTPClient replaces the client New builds.
	HTTPClient *http.Client
	// Requests, if set, counts the HTTP requests sent.
	Requests *objstore.RequestCounter
}

const minPartSize = 5 << 20

func (c Config) withDefaults() Config {
	if c.MultipartThreshold == 0 {
		c.MultipartThreshold = objstore.DefaultSingleRequestBytes
	}
	if c.PartSize == 0 {
		c.PartSize = 8 << 20
	}
	if c.PartConcurrency == 0 {
		c.PartConcurrency = 4
	}
	if c.ListPageSize == 0 {
		c.ListPageSize = 1000
	}
	if c.ResponseHeaderTimeout == 0 {
		c.ResponseHeaderTimeout = 30 * time.Second
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = 10 * time.Second
	}
	return c
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Bucket == "":
		return errors.New("s3: no bucket name")
	case (c.AccessKeyID == "") != (c.SecretAccessKey == ""):
		return errors.New("s3: access key id and secret access key must be given together")
	case c.MultipartThreshold < 0 || c.MultipartThreshold > 5<<30:
		// 5 GiB is S3's largest single PUT.
		return fmt.Errorf("s3: multipart threshold %d outside [0, 5 GiB]", c.MultipartThreshold)
	case c.PartSize < minPartSize || c.PartSize > 5<<30:
		return fmt.Errorf("s3: part size %d outside [5 MiB, 5 GiB]", c.PartSize)
	case c.PartConcurrency < 1:
		return fmt.Errorf("s3: part concurrency %d < 1", c.PartConcurrency)
	case c.ListPageSize < 1 || c.ListPageSize > 1000:
		return fmt.Errorf("s3: list page size %d outside [1, 1000]", c.ListPageSize)
	case c.ResponseHeaderTimeout < 0, c.CheckTimeout < 0:
		return errors.New("s3: negative timeout")
	}
	if c.Endpoint != "" && !strings.HasPrefix(c.Endpoint, "http://") && !strings.HasPrefix(c.Endpoint, "https://") {
		return fmt.Errorf("s3: endpoint %q: want http:// or https://", c.Endpoint)
	}
	return nil
}

// Bucket is an S3 bucket.
type Bucket struct {
	cfg    Config
	client *s3.Client
	idle   interface{ CloseIdleConnections() } // nil if the client has none
}

var _ objstore.Bucket = (*Bucket)(nil)

// New connects to the bucket cfg names and checks that it is reachable
// with the credentials found.
func New(ctx context.Context, cfg Config) (*Bucket, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	var hc awsconfig.HTTPClient = cfg.HTTPClient
	if cfg.HTTPClient == nil {
		// A BuildableClient, because the config loader can only add a
		// custom CA bundle (AWS_CA_BUNDLE) to one of those.
		hc = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.ResponseHeaderTimeout = cfg.ResponseHeaderTimeout
			// The default of 2 idle connections per host would make every
			// concurrent part upload and range read dial anew.
			tr.MaxIdleConnsPerHost = 64
		}).WithDialerOptions(func(d *net.Dialer) { d.Timeout = 10 * time.Second })
	}
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithHTTPClient(hc),
		awsconfig.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		awsconfig.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		awsconfig.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
		awsconfig.WithDefaultRegion("us-east-1"),
		// The SDK's logger writes unstructured lines to stderr; what
		// matters reaches the caller as an error.
		awsconfig.WithLogger(logging.Nop{}),
	}
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS config: %w", err)
	}
	if bc, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient); ok {
		// Freeze it so Close can reach the transport's idle connections.
		awsCfg.HTTPClient = bc.Freeze()
	}
	idle, _ := awsCfg.HTTPClient.(interface{ CloseIdleConnections() })
	if cfg.Requests != nil {
		// Counted below the SDK, so the count is of requests sent: the
		// SDK does not retry, but one Put can be a multipart upload.
		rt := cfg.Requests.Transport(httpDoer(awsCfg.HTTPClient.Do))
		awsCfg.HTTPClient = httpDoer(rt.RoundTrip)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.PathStyle
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	b := &Bucket{cfg: cfg, client: client, idle: idle}

	cctx, cancel := context.WithTimeout(ctx, cfg.CheckTimeout)
	defer cancel()
	if _, err := awsCfg.Credentials.Retrieve(cctx); err != nil {
		return nil, fmt.Errorf("s3: bucket %q: no usable credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile or an instance role): %w", cfg.Bucket, err)
	}
	if !cfg.SkipBucketCheck {
		if _, err := client.HeadBucket(cctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.Bucket)}); err != nil {
			where := "AWS"
			if cfg.Endpoint != "" {
				where = cfg.Endpoint
			}
			return nil, fmt.Errorf("s3: check bucket %q at %s (region %s): %w", cfg.Bucket, where, awsCfg.Region, mapErr(err))
		}
	}
	return b, nil
}

// httpDoer is an HTTP client's Do as a client and as a transport.
type httpDoer func(*http.Request) (*http.Response, error)

func (d httpDoer) Do(req *http.Request) (*http.Response, error)        { return d(req) }
func (d httpDoer) RoundTrip(req *http.Request) (*http.Response, error) { return d(req) }

// Client returns the SDK client, for tests and tools that need calls the
// Bucket interface lacks (creating buckets).
func (b *Bucket) Client() *s3.Client { return b.client }

// mapErr turns an SDK error into one objstore can classify: ErrNotExist,
// ErrInvalidRange, or a StatusError with the status and code.
func mapErr(err error) error {
	var status int
	var hs interface{ HTTPStatusCode() int }
	if errors.As(err, &hs) {
		status = hs.HTTPStatusCode()
	}
	var code string
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	switch {
	case code == "NoSuchKey" || (status == http.StatusNotFound && code != "NoSuchBucket"):
		return fmt.Errorf("%w: %w", objstore.ErrNotExist, err)
	case code == "InvalidRange" || status == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("%w: %w", objstore.ErrInvalidRange, err)
	case status != 0 || code != "":
		return &objstore.StatusError{Status: status, Code: code, Err: err}
	}
	return err
}

func opErr(op, key string, err error) error {
	return fmt.Errorf("s3: %s %q: %w", op, key, mapErr(err))
}

// Get returns the whole object. The body streams from S3 and is tied to
// ctx.
func (b *Bucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	ctx = objstore.WithRequestOp(ctx, "get")
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.cfg.Bucket, Key: &key})
	if err != nil {
		return nil, opErr("get", key, err)
	}
	return out.Body, nil
}

// GetRange returns length bytes at off, per objstore.BucketReader.
func (b *Bucket) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if off < 0 || length == 0 {
		// No Range header can ask for nothing; check the object exists and
		// off is valid.
		info, err := b.Stat(ctx, key)
		if err != nil {
			return nil, err
		}
		if _, err := objstore.ClampRange(info.Size, off, length); err != nil {
			return nil, fmt.Errorf("s3: get range %q: %w", key, err)
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	ctx = objstore.WithRequestOp(ctx, "get_range")
	rng := fmt.Sprintf("bytes=%d-", off)
	if length > 0 {
		rng = fmt.Sprintf("bytes=%d-%d", off, off+length-1)
	}
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.cfg.Bucket, Key: &key, Range: &rng})
	if err != nil {
		err = opErr("get range", key, err)
		if off == 0 && errors.Is(err, objstore.ErrInvalidRange) {
			// S3 refuses every range of an empty object; the contract
			// gives an empty reader.
			if info, serr := b.Stat(ctx, key); serr == nil && info.Size == 0 {
				return io.NopCloser(bytes.NewReader(nil)), nil
			}
		}
		return nil, err
	}
	rc, err := objstore.CheckRangeResponse(out.Body, aws.ToString(out.ContentRange), off, length)
	if err != nil {
		return nil, fmt.Errorf("s3: get range %q: %w", key, err)
	}
	return rc, nil
}

// Stat returns the object's size and modification time (HeadObject).
func (b *Bucket) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	ctx = objstore.WithRequestOp(ctx, "stat")
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.cfg.Bucket, Key: &key})
	if err != nil {
		return objstore.ObjectInfo{}, opErr("stat", key, err)
	}
	return objstore.ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), LastModified: aws.ToTime(out.LastModified)}, nil
}

// List yields the objects under prefix, one ListObjectsV2 page at a time.
func (b *Bucket) List(ctx context.Context, prefix string) iter.Seq2[objstore.ObjectInfo, error] {
	return func(yield func(objstore.ObjectInfo, error) bool) {
		ctx := objstore.WithRequestOp(ctx, "list")
		p := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{
			Bucket:  &b.cfg.Bucket,
			Prefix:  &prefix,
			MaxKeys: aws.Int32(b.cfg.ListPageSize),
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				yield(objstore.ObjectInfo{}, opErr("list", prefix, err))
				return
			}
			for _, o := range page.Contents {
				info := objstore.ObjectInfo{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), LastModified: aws.ToTime(o.LastModified)}
				if !yield(info, nil) {
					return
				}
			}
			if aws.ToBool(page.IsTruncated) && aws.ToString(page.NextContinuationToken) == "" {
				// The SDK's paginator would end here, silently: the
				// orphan sweep would never see the keys after this page.
				yield(objstore.ObjectInfo{}, fmt.Errorf("s3: list %q: a truncated page without a continuation token", prefix))
				return
			}
		}
	}
}

// Put stores size bytes of r under key: one PutObject up to the multipart
// threshold, a multipart upload above it. A body that is an io.ReaderAt
// and io.Seeker (bytes.Reader, os.File) is sent from where it stands
// without copying; any other is read into memory one part at a time.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if size < 0 {
		return fmt.Errorf("s3: put %q: negative size %d", key, size)
	}
	ctx = objstore.WithRequestOp(ctx, "put")
	if size > b.cfg.MultipartThreshold {
		return b.putMultipart(ctx, key, r, size)
	}
	body, err := seekableBody(ctx, r, size)
	if err != nil {
		return fmt.Errorf("s3: put %q: %w", key, err)
	}
	_, err = b.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &b.cfg.Bucket,
		Key:           &key,
		Body:          body,
		ContentLength: aws.Int64(size),
	})
	if err != nil {
		return opErr("put", key, err)
	}
	return nil
}

// Delete removes key. S3 answers a missing key with success.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	ctx = objstore.WithRequestOp(ctx, "delete")
	_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.cfg.Bucket, Key: &key})
	if err != nil {
		err = opErr("delete", key, err)
		if errors.Is(err, objstore.ErrNotExist) {
			return nil
		}
		return err
	}
	return nil
}

// CheckBucket checks the bucket exists and answers (HeadBucket, billed as
// a GET). A missing bucket cannot be told from a missing object by Stat:
// S3 answers a HEAD of an object in a missing bucket 404 with no body.
func (b *Bucket) CheckBucket(ctx context.Context) error {
	_, err := b.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &b.cfg.Bucket})
	var hs interface{ HTTPStatusCode() int }
	switch {
	case err == nil:
		return nil
	case errors.As(err, &hs) && hs.HTTPStatusCode() == http.StatusNotFound:
		// Not mapErr's ErrNotExist: no object is missing.
		return fmt.Errorf("s3: bucket %q: no such bucket: %w", b.cfg.Bucket, err)
	}
	return fmt.Errorf("s3: check bucket %q: %w", b.cfg.Bucket, mapErr(err))
}

// Close drops idle connections.
func (b *Bucket) Close() error {
	if b.idle != nil {
		b.idle.CloseIdleConnections()
	}
	return nil
}
