// Package gcs is the objstore.Bucket for Google Cloud Storage, on
// cloud.google.com/go/storage, the gs:// URL.
//
// Credentials are Application Default Credentials (GOOGLE_APPLICATION_
// CREDENTIALS, gcloud's, or the VM's service account). An emulator such as
// fake-gcs-server is used when STORAGE_EMULATOR_HOST or Config.Endpoint
// names it, without authentication.
//
// Guarantees, beyond objstore.Bucket's:
//   - An object is created only when its upload completes: a short body or
//     a cancelled context cancels the upload, never finalizes a truncated
//     object. Objects up to Config.ChunkSize (default
//     objstore.DefaultSingleRequestBytes, 128 MiB) are one request, so a
//     segment the agents write costs one billed request; larger ones a
//     resumable upload in ChunkSize pieces (an initiation and a request per
//     piece).
//   - With Config.Requests set, the requests sent are counted
//     (objstore.RequestCounter), by the call they serve. The client's
//     transport is not wrapped (it carries the credentials), so they are
//     counted per call: a resumable upload as its initiation and pieces, a
//     listing per page fetched.
//   - The client does not retry (storage.RetryNever): objstore.WithRetry is
//     the single retry layer. Errors carry the HTTP status and reason
//     (objstore.StatusError) so that layer can classify them.
//   - A request whose answer does not start within
//     Config.ResponseHeaderTimeout fails (the client library sets no such
//     bound, so a call without a deadline of the caller's waited for a
//     hung service forever).
//   - New checks the bucket is reachable within Config.CheckTimeout.
package gcs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"os"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/api/option/internaloption"
	htransport "google.golang.org/api/transport/http"

	"github.com/floebroker/floe/objstore"
)

// Config says which bucket to use and how. Zero fields take defaults.
type Config struct {
	// Bucket is the bucket name. Required.
	Bucket string
	// Endpoint is an emulator's base URL ("http://127.0.0.1:4443"); empty
	// means Google (or STORAGE_EMULATOR_HOST when set).
	Endpoint string
	// ChunkSize is the largest object sent in one request and the piece
	// size of larger, resumable uploads. Default
	// objstore.DefaultSingleRequestBytes (128 MiB), so every segment the
	// flusher writes (at most the WAL's 64 MiB of buffered bytes plus one
	// produce request) and every merged segment of the default target size
	// is one billed request, and an abandoned single-request upload can
	// never leave an object behind, while an abandoned resumable upload was
	// seen to be finalised with partial content by fake-gcs-server. A
	// single-request upload holds a copy of the object while it is sent; a
	// resumable one a ChunkSize buffer.
	ChunkSize int
	// ListPageSize is the objects asked for per list call. Default 1000.
	ListPageSize int
	// ResponseHeaderTimeout bounds the wait for a response once a request
	// is sent, so a hung service fails the call instead of blocking it.
	// Default 30s.
	ResponseHeaderTimeout time.Duration
	// CheckTimeout bounds New's bucket check. Default 10s.
	CheckTimeout time.Duration
	// SkipBucketCheck skips New's check.
	SkipBucketCheck bool
	// ClientOptions are added to the storage client's options (credentials
	// files). Not an HTTP client: see HTTPClient.
	ClientOptions []option.ClientOption
	// HTTPClient replaces the client New builds, which authenticates as
	// ClientOptions say and bounds the wait for an answer; it must carry
	// its own credentials.
	HTTPClient *http.Client
	// Requests, if set, counts the requests sent.
	Requests *objstore.RequestCounter
}

func (c Config) withDefaults() Config {
	if c.ChunkSize == 0 {
		c.ChunkSize = objstore.DefaultSingleRequestBytes
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
		return errors.New("gcs: no bucket name")
	case c.ChunkSize < 256<<10:
		return fmt.Errorf("gcs: chunk size %d < 256 KiB", c.ChunkSize)
	case c.ListPageSize < 1:
		return fmt.Errorf("gcs: list page size %d < 1", c.ListPageSize)
	case c.CheckTimeout < 0, c.ResponseHeaderTimeout < 0:
		return errors.New("gcs: negative timeout")
	case c.Endpoint != "" && !strings.HasPrefix(c.Endpoint, "http://") && !strings.HasPrefix(c.Endpoint, "https://"):
		return fmt.Errorf("gcs: endpoint %q: want http:// or https://", c.Endpoint)
	}
	return nil
}

// Bucket is a GCS bucket.
type Bucket struct {
	cfg    Config
	client *storage.Client
	bucket *storage.BucketHandle
}

var _ objstore.Bucket = (*Bucket)(nil)

// New connects to the bucket and checks it is reachable with the
// credentials found.
func New(ctx context.Context, cfg Config) (*Bucket, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	hc := cfg.HTTPClient
	if hc == nil {
		var err error
		if hc, err = httpClient(ctx, cfg); err != nil {
			return nil, fmt.Errorf("gcs: client: %w", err)
		}
	}
	opts := append([]option.ClientOption{option.WithHTTPClient(hc)}, cfg.ClientOptions...)
	if cfg.Endpoint != "" {
		opts = append(opts,
			option.WithEndpoint(strings.TrimSuffix(cfg.Endpoint, "/")+"/storage/v1/"),
			option.WithoutAuthentication(),
			// Emulators implement the JSON API more fully than XML.
			storage.WithJSONReads())
	}
	client, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("gcs: client: %w", err)
	}
	client.SetRetry(storage.WithPolicy(storage.RetryNever))
	b := &Bucket{cfg: cfg, client: client, bucket: client.Bucket(cfg.Bucket)}
	if !cfg.SkipBucketCheck {
		cctx, cancel := context.WithTimeout(ctx, cfg.CheckTimeout)
		defer cancel()
		if _, err := b.bucket.Attrs(cctx); err != nil {
			_ = client.Close()
			if errors.Is(err, storage.ErrBucketNotExist) {
				return nil, fmt.Errorf("gcs: check bucket %q: no such bucket", cfg.Bucket)
			}
			return nil, fmt.Errorf("gcs: check bucket %q (credentials: GOOGLE_APPLICATION_CREDENTIALS, gcloud or the VM's service account): %w", cfg.Bucket, mapErr(err))
		}
	}
	return b, nil
}

// httpClient is the client the storage library would build, on a
// transport with cfg.ResponseHeaderTimeout: the library's own sets none.
// Given an HTTP client the library adds no credentials, so they are added
// here as it would (Application Default Credentials, or those
// cfg.ClientOptions name), except for an emulator, which takes none.
func httpClient(ctx context.Context, cfg Config) (*http.Client, error) {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.ResponseHeaderTimeout = cfg.ResponseHeaderTimeout
	// As the library's transport: more idle connections than the default
	// 2 per host, and dead HTTP/2 connections found by a ping.
	base.MaxIdleConnsPerHost = 100
	base.HTTP2 = &http.HTTP2Config{SendPingTimeout: 31 * time.Second}
	if cfg.Endpoint != "" || os.Getenv("STORAGE_EMULATOR_HOST") != "" {
		return &http.Client{Transport: base}, nil
	}
	tr, err := htransport.NewTransport(ctx, base, append([]option.ClientOption{
		// storage.NewClient's defaults.
		option.WithScopes(storage.ScopeFullControl, "https://www.googleapis.com/auth/cloud-platform"),
		internaloption.WithDefaultEndpointTemplate("https://storage.UNIVERSE_DOMAIN/storage/v1/"),
		internaloption.WithDefaultMTLSEndpoint("https://storage.mtls.googleapis.com/storage/v1/"),
		internaloption.WithDefaultUniverseDomain("googleapis.com"),
		internaloption.EnableNewAuthLibrary(),
	}, cfg.ClientOptions...)...)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: tr}, nil
}

// Client returns the storage client, for tests and tools that need calls
// the Bucket interface lacks (creating buckets).
func (b *Bucket) Client() *storage.Client { return b.client }

// mapErr turns a storage error into one objstore can classify.
func mapErr(err error) error {
	if errors.Is(err, storage.ErrObjectNotExist) {
		return fmt.Errorf("%w: %w", objstore.ErrNotExist, err)
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		if ge.Code == 416 {
			return fmt.Errorf("%w: %w", objstore.ErrInvalidRange, err)
		}
		var reason string
		if len(ge.Errors) > 0 {
			reason = ge.Errors[0].Reason
		}
		return &objstore.StatusError{Status: ge.Code, Code: reason, Err: err}
	}
	return err
}

func opErr(op, key string, err error) error {
	return fmt.Errorf("gcs: %s %q: %w", op, key, mapErr(err))
}

// Get returns the whole object, streaming from GCS.
func (b *Bucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	b.cfg.Requests.Add("get", 1)
	r, err := b.bucket.Object(key).NewReader(ctx)
	if err != nil {
		return nil, opErr("get", key, err)
	}
	return r, nil
}

// GetRange returns length bytes at off, per objstore.BucketReader.
func (b *Bucket) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if off < 0 || length == 0 {
		info, err := b.Stat(ctx, key)
		if err != nil {
			return nil, err
		}
		if _, err := objstore.ClampRange(info.Size, off, length); err != nil {
			return nil, fmt.Errorf("gcs: get range %q: %w", key, err)
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	if length < 0 {
		length = -1
	}
	b.cfg.Requests.Add("get_range", 1)
	r, err := b.bucket.Object(key).NewRangeReader(ctx, off, length)
	if err != nil {
		err = opErr("get range", key, err)
		if off == 0 && errors.Is(err, objstore.ErrInvalidRange) {
			if info, serr := b.Stat(ctx, key); serr == nil && info.Size == 0 {
				return io.NopCloser(bytes.NewReader(nil)), nil
			}
		}
		return nil, err
	}
	if off > 0 && r.Remain() == 0 {
		// Some servers answer a range past the end with an empty body
		// rather than 416.
		r.Close()
		return nil, fmt.Errorf("gcs: get range %q: %w: offset %d", key, objstore.ErrInvalidRange, off)
	}
	if length >= 0 {
		// A server that ignores the range from offset 0 answers the whole
		// object (the SDK refuses that only for other offsets): never
		// hand back more than was asked for.
		return limitedReadCloser{Reader: io.LimitReader(r, length), Closer: r}, nil
	}
	return r, nil
}

type limitedReadCloser struct {
	io.Reader
	io.Closer
}

// Stat returns the object's size and modification time.
func (b *Bucket) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	b.cfg.Requests.Add("stat", 1)
	a, err := b.bucket.Object(key).Attrs(ctx)
	if err != nil {
		return objstore.ObjectInfo{}, opErr("stat", key, err)
	}
	return objstore.ObjectInfo{Key: key, Size: a.Size, LastModified: a.Updated}, nil
}

// List yields the objects under prefix, a page at a time.
func (b *Bucket) List(ctx context.Context, prefix string) iter.Seq2[objstore.ObjectInfo, error] {
	return func(yield func(objstore.ObjectInfo, error) bool) {
		q := &storage.Query{Prefix: prefix}
		if err := q.SetAttrSelection([]string{"Name", "Size", "Updated"}); err != nil {
			yield(objstore.ObjectInfo{}, fmt.Errorf("gcs: list %q: %w", prefix, err))
			return
		}
		it := b.bucket.Objects(ctx, q)
		pi := it.PageInfo()
		pi.MaxSize = b.cfg.ListPageSize
		started := false
		for {
			if pi.Remaining() == 0 && (!started || pi.Token != "") {
				// This Next fetches a page.
				b.cfg.Requests.Add("list", 1)
				started = true
			}
			a, err := it.Next()
			if err == iterator.Done {
				return
			}
			if err != nil {
				yield(objstore.ObjectInfo{}, opErr("list", prefix, err))
				return
			}
			if !yield(objstore.ObjectInfo{Key: a.Name, Size: a.Size, LastModified: a.Updated}, nil) {
				return
			}
		}
	}
}

// Put stores size bytes of r under key. The object is created when the
// upload completes; a short body or cancelled ctx cancels the upload.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if size < 0 {
		return fmt.Errorf("gcs: put %q: negative size %d", key, size)
	}
	if size <= int64(b.cfg.ChunkSize) {
		return b.putOneRequest(ctx, key, r, size)
	}
	// Cancelling the writer's context is the only way to abandon an
	// upload: Close would create the object from whatever was written.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := b.bucket.Object(key).NewWriter(wctx)
	w.ChunkSize = b.cfg.ChunkSize
	// The initiation, then a request per piece sent (the last on Close),
	// counted up front: whether a failed upload sent its pieces is not
	// known here.
	b.cfg.Requests.Add("put", 1+int((size+int64(w.ChunkSize)-1)/int64(w.ChunkSize)))
	if _, err := io.Copy(w, objstore.ExactReader(r, size)); err != nil {
		cancel()
		_ = w.Close()
		if errors.Is(err, objstore.ErrSizeMismatch) || ctx.Err() != nil {
			return fmt.Errorf("gcs: put %q: %w", key, errors.Join(ctx.Err(), err))
		}
		return opErr("put", key, err)
	}
	if err := ctx.Err(); err != nil {
		cancel()
		_ = w.Close()
		return fmt.Errorf("gcs: put %q: %w", key, err)
	}
	if err := w.Close(); err != nil {
		return opErr("put", key, err)
	}
	return nil
}

// putOneRequest reads the whole body before the upload starts, so a body
// that fails or is cancelled halfway never reaches GCS: abandoning a
// streaming single-request upload raced with the client ending the request
// body cleanly, and fake-gcs-server then created the object from the
// truncated body. Objects this small are in memory in the flusher anyway.
func (b *Bucket) putOneRequest(ctx context.Context, key string, r io.Reader, size int64) error {
	data := make([]byte, size)
	if _, err := io.ReadFull(objstore.ExactReader(r, size), data); err != nil {
		return fmt.Errorf("gcs: put %q: %w", key, errors.Join(ctx.Err(), err))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("gcs: put %q: %w", key, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.cfg.Requests.Add("put", 1)
	w := b.bucket.Object(key).NewWriter(wctx)
	w.ChunkSize = 0 // one request, no buffer
	if _, err := w.Write(data); err != nil {
		cancel()
		_ = w.Close()
		return opErr("put", key, err)
	}
	if err := w.Close(); err != nil {
		return opErr("put", key, err)
	}
	return nil
}

// Delete removes key; a missing key is not an error.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	b.cfg.Requests.Add("delete", 1)
	if err := b.bucket.Object(key).Delete(ctx); err != nil {
		if errors.Is(err, storage.ErrObjectNotExist) {
			return nil
		}
		return opErr("delete", key, err)
	}
	return nil
}

// CheckBucket checks the bucket exists and answers (buckets.get, a class
// B operation as an object's Stat is). A missing bucket cannot be told
// from a missing object by Stat or a read: the library takes every 404 of
// an object for ErrObjectNotExist.
func (b *Bucket) CheckBucket(ctx context.Context) error {
	b.cfg.Requests.Add("other", 1)
	if _, err := b.bucket.Attrs(ctx); err != nil {
		if errors.Is(err, storage.ErrBucketNotExist) {
			return fmt.Errorf("gcs: bucket %q: no such bucket: %w", b.cfg.Bucket, err)
		}
		return fmt.Errorf("gcs: check bucket %q: %w", b.cfg.Bucket, mapErr(err))
	}
	return nil
}

// Close releases the client.
func (b *Bucket) Close() error {
	if err := b.client.Close(); err != nil {
		return fmt.Errorf("gcs: close: %w", err)
	}
	return nil
}
