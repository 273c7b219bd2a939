// Package minio is the objstore.Bucket for MinIO (and other S3-compatible
// stores) on minio-go, the minio:// URL. It exists beside package s3
// because minio-go is smaller, streams non-seekable bodies without
// buffering whole objects and is what MinIO operators know; both pass the
// same acceptance suite.
//
// Guarantees, beyond objstore.Bucket's:
//   - minio-go does not retry (MaxRetries 1): objstore.WithRetry is the
//     single retry layer. Errors carry the HTTP status and S3 error code
//     (objstore.StatusError) so that layer can classify them.
//   - Objects up to Config.MultipartThreshold (default
//     objstore.DefaultSingleRequestBytes, 128 MiB) are one PUT, so a
//     segment the agents write costs one billed request; larger ones go up
//     as a multipart upload in Config.PartSize parts, which minio-go aborts
//     on failure. A short body fails the upload.
//   - With Config.Requests set, every HTTP request sent is counted
//     (objstore.RequestCounter), by the call it serves.
//   - New checks the bucket exists within Config.CheckTimeout.
//   - A PUT's body is checked by the server against a CRC-32C sent as a
//     trailing checksum (aws-chunked with trailer), not against a SHA-256
//     in the signature: the same protection for a fraction of the CPU.
//     The store must support trailing checksums (MinIO since 2022, AWS S3).
package minio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/floebroker/floe/objstore"
)

// Config says which bucket to use and how. Zero fields take defaults.
type Config struct {
	// Endpoint is host:port. Required.
	Endpoint string
	// Secure uses HTTPS.
	Secure bool
	// Bucket is the bucket name. Required.
	Bucket string
	// Region; empty lets minio-go discover it.
	Region string
	// AccessKey and SecretKey are the credentials. Required.
	AccessKey, SecretKey string
	// MultipartThreshold is the largest object sent as one PUT. Default
	// objstore.DefaultSingleRequestBytes (128 MiB): a multipart upload
	// sends its parts in parallel but costs create + parts + complete
	// requests. A single PUT streams its body; it is not buffered.
	MultipartThreshold int64
	// PartSize is a multipart upload's part size; at least 5 MiB. Default
	// 16 MiB.
	PartSize uint64
	// PartConcurrency is how many parts upload at once. Default 4.
	PartConcurrency uint
	// ListPageSize is the keys asked for per list call, at most 1000.
	// Default 1000.
	ListPageSize int
	// ResponseHeaderTimeout bounds the wait for a response once a request
	// is sent. Default 30s.
	ResponseHeaderTimeout time.Duration
	// CheckTimeout bounds New's bucket check. Default 10s.
	CheckTimeout time.Duration
	// SkipBucketCheck skips New's check that the bucket exists.
	SkipBucketCheck bool
	// Requests, if set, counts the HTTP requests sent.
	Requests *objstore.RequestCounter
}

func (c Config) withDefaults() Config {
	if c.MultipartThreshold == 0 {
		c.MultipartThreshold = objstore.DefaultSingleRequestBytes
	}
	if c.PartSize == 0 {
		c.PartSize = 16 << 20
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
	case c.Endpoint == "":
		return errors.New("minio: no endpoint")
	case c.Bucket == "":
		return errors.New("minio: no bucket name")
	case c.AccessKey == "" || c.SecretKey == "":
		return errors.New("minio: no credentials (set MINIO_ACCESS_KEY and MINIO_SECRET_KEY, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or user:password@ in the URL)")
	case c.MultipartThreshold < 0 || c.MultipartThreshold > 5<<30:
		// 5 GiB is S3's largest single PUT.
		return fmt.Errorf("minio: multipart threshold %d outside [0, 5 GiB]", c.MultipartThreshold)
	case c.PartSize < 5<<20:
		return fmt.Errorf("minio: part size %d < 5 MiB", c.PartSize)
	case c.ListPageSize < 1 || c.ListPageSize > 1000:
		return fmt.Errorf("minio: list page size %d outside [1, 1000]", c.ListPageSize)
	case c.ResponseHeaderTimeout < 0, c.CheckTimeout < 0:
		return errors.New("minio: negative timeout")
	}
	return nil
}

// Bucket is a bucket on MinIO.
type Bucket struct {
	cfg  Config
	core *minio.Core
	tr   *http.Transport
}

var _ objstore.Bucket = (*Bucket)(nil)

// New connects to the bucket and checks that it exists.
func New(ctx context.Context, cfg Config) (*Bucket, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tr, err := minio.DefaultTransport(cfg.Secure)
	if err != nil {
		return nil, fmt.Errorf("minio: transport: %w", err)
	}
	tr.ResponseHeaderTimeout = cfg.ResponseHeaderTimeout
	tr.MaxIdleConnsPerHost = 64
	core, err := minio.NewCore(cfg.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       cfg.Secure,
		Region:       cfg.Region,
		Transport:    cfg.Requests.Transport(tr),
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   1,
		// With trailing headers a PUT carries a CRC-32C of the body in
		// the trailer, which the server verifies (see Put).
		TrailingHeaders: true,
	})
	if err != nil {
		return nil, fmt.Errorf("minio: client for %s: %w", cfg.Endpoint, err)
	}
	b := &Bucket{cfg: cfg, core: core, tr: tr}
	if !cfg.SkipBucketCheck {
		cctx, cancel := context.WithTimeout(ctx, cfg.CheckTimeout)
		defer cancel()
		ok, err := core.BucketExists(cctx, cfg.Bucket)
		if err == nil && !ok {
			err = errors.New("no such bucket")
		}
		if err != nil {
			tr.CloseIdleConnections()
			return nil, fmt.Errorf("minio: check bucket %q at %s: %w", cfg.Bucket, cfg.Endpoint, mapErr(err))
		}
	}
	return b, nil
}

// Client returns the minio-go client, for tests and tools that need calls
// the Bucket interface lacks (creating buckets).
func (b *Bucket) Client() *minio.Client { return b.core.Client }

// mapErr turns a minio-go error into one objstore can classify.
func mapErr(err error) error {
	var er minio.ErrorResponse
	if !errors.As(err, &er) {
		return err
	}
	switch {
	case er.Code == "NoSuchKey" || (er.StatusCode == http.StatusNotFound && er.Code != "NoSuchBucket"):
		return fmt.Errorf("%w: %w", objstore.ErrNotExist, err)
	case er.Code == "InvalidRange" || er.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("%w: %w", objstore.ErrInvalidRange, err)
	}
	return &objstore.StatusError{Status: er.StatusCode, Code: er.Code, Err: err}
}

func opErr(op, key string, err error) error {
	return fmt.Errorf("minio: %s %q: %w", op, key, mapErr(err))
}

// Get returns the whole object, streaming from MinIO.
func (b *Bucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	ctx = objstore.WithRequestOp(ctx, "get")
	rc, _, _, err := b.core.GetObject(ctx, b.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, opErr("get", key, err)
	}
	return rc, nil
}

// GetRange returns length bytes at off, per objstore.BucketReader.
func (b *Bucket) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if off < 0 || length == 0 {
		info, err := b.Stat(ctx, key)
		if err != nil {
			return nil, err
		}
		if _, err := objstore.ClampRange(info.Size, off, length); err != nil {
			return nil, fmt.Errorf("minio: get range %q: %w", key, err)
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	ctx = objstore.WithRequestOp(ctx, "get_range")
	var opts minio.GetObjectOptions
	if length > 0 {
		opts.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+length-1))
	} else {
		opts.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	rc, _, hdr, err := b.core.GetObject(ctx, b.cfg.Bucket, key, opts)
	if err != nil {
		err = opErr("get range", key, err)
		if off == 0 && errors.Is(err, objstore.ErrInvalidRange) {
			// Every range of an empty object is refused; the contract
			// gives an empty reader.
			if info, serr := b.Stat(ctx, key); serr == nil && info.Size == 0 {
				return io.NopCloser(bytes.NewReader(nil)), nil
			}
		}
		return nil, err
	}
	rc, err = objstore.CheckRangeResponse(rc, hdr.Get("Content-Range"), off, length)
	if err != nil {
		return nil, fmt.Errorf("minio: get range %q: %w", key, err)
	}
	return rc, nil
}

// Stat returns the object's size and modification time.
func (b *Bucket) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	ctx = objstore.WithRequestOp(ctx, "stat")
	oi, err := b.core.StatObject(ctx, b.cfg.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return objstore.ObjectInfo{}, opErr("stat", key, err)
	}
	return objstore.ObjectInfo{Key: key, Size: oi.Size, LastModified: oi.LastModified}, nil
}

// List yields the objects under prefix, a page at a time.
func (b *Bucket) List(ctx context.Context, prefix string) iter.Seq2[objstore.ObjectInfo, error] {
	return func(yield func(objstore.ObjectInfo, error) bool) {
		// Cancelling is how minio-go's listing learns the caller stopped.
		ctx, cancel := context.WithCancel(objstore.WithRequestOp(ctx, "list"))
		defer cancel()
		for oi := range b.core.ListObjectsIter(ctx, b.cfg.Bucket, minio.ListObjectsOptions{
			Prefix:    prefix,
			Recursive: true,
			MaxKeys:   b.cfg.ListPageSize,
		}) {
			if oi.Err != nil {
				yield(objstore.ObjectInfo{}, opErr("list", prefix, oi.Err))
				return
			}
			if !yield(objstore.ObjectInfo{Key: oi.Key, Size: oi.Size, LastModified: oi.LastModified}, nil) {
				return
			}
		}
		if err := ctx.Err(); err != nil {
			// minio-go ends the listing quietly on cancellation.
			yield(objstore.ObjectInfo{}, fmt.Errorf("minio: list %q: %w", prefix, err))
		}
	}
}

// Put stores size bytes of r under key. A body that is an io.ReaderAt and
// io.Seeker is checked for length up front and uploaded in parallel parts
// without copying; any other body streams through.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if size < 0 {
		return fmt.Errorf("minio: put %q: negative size %d", key, size)
	}
	body, err := sized(r, size)
	if err != nil {
		return fmt.Errorf("minio: put %q: %w", key, err)
	}
	// Cancelled on return: minio-go's part workers report to PutObject
	// only while it waits, and after a failed part it stops waiting, so
	// the others (each holding the body) would block forever.
	ctx, cancel := context.WithCancel(objstore.WithRequestOp(ctx, "put"))
	defer cancel()
	_, err = b.core.Client.PutObject(ctx, b.cfg.Bucket, key, body, size, minio.PutObjectOptions{
		// minio-go's PartSize is both the part size and the largest single
		// PUT; DisableMultipart separates the two.
		DisableMultipart: size <= b.cfg.MultipartThreshold,
		PartSize:         b.cfg.PartSize,
		NumThreads:       b.cfg.PartConcurrency,
		// Not a SHA-256 of every chunk in the signature: over plain HTTP
		// that hash cost about a sixth of an agent's CPU at full load. The
		// body is still protected end to end: minio-go sends a CRC-32C
		// (hardware-accelerated) as a trailing checksum that the server
		// checks before it stores the object.
		DisableContentSha256: true,
	})
	if err != nil {
		if errors.Is(err, objstore.ErrSizeMismatch) {
			return fmt.Errorf("minio: put %q: %w", key, err)
		}
		return opErr("put", key, err)
	}
	return nil
}

type readerAtSeeker interface {
	io.ReaderAt
	io.Seeker
}

// sized returns a reader of exactly size bytes of r, or ErrSizeMismatch
// when r is seekable and visibly too short.
func sized(r io.Reader, size int64) (io.Reader, error) {
	if ras, ok := r.(readerAtSeeker); ok {
		cur, err1 := ras.Seek(0, io.SeekCurrent)
		end, err2 := ras.Seek(0, io.SeekEnd)
		if err1 == nil && err2 == nil {
			if _, err := ras.Seek(cur, io.SeekStart); err != nil {
				return nil, fmt.Errorf("rewind body: %w", err)
			}
			if end-cur < size {
				return nil, fmt.Errorf("%w: got %d of %d bytes", objstore.ErrSizeMismatch, end-cur, size)
			}
			return io.NewSectionReader(ras, cur, size), nil
		}
	}
	return objstore.ExactReader(r, size), nil
}

// Delete removes key; a missing key is not an error.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	ctx = objstore.WithRequestOp(ctx, "delete")
	if err := b.core.RemoveObject(ctx, b.cfg.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
		err = opErr("delete", key, err)
		if errors.Is(err, objstore.ErrNotExist) {
			return nil
		}
		return err
	}
	return nil
}

// CheckBucket checks the bucket exists and answers (a HEAD of the
// bucket, billed as a GET).
func (b *Bucket) CheckBucket(ctx context.Context) error {
	ok, err := b.core.BucketExists(ctx, b.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("minio: check bucket %q: %w", b.cfg.Bucket, mapErr(err))
	}
	if !ok {
		return fmt.Errorf("minio: bucket %q: no such bucket", b.cfg.Bucket)
	}
	return nil
}

// Close drops idle connections.
func (b *Bucket) Close() error {
	b.tr.CloseIdleConnections()
	return nil
}
