// Package objstore owns Floe's access to object storage: the Bucket interface
// every backend implements, the sentinel errors backends map their SDK errors
// to, and the wrappers (key prefix, retry, metrics, latency injection) that are
// layered around a backend rather than built into each one.
//
// Guarantees every Bucket gives its callers:
//   - Put is atomic: a reader sees either no object or the whole object, never
//     a prefix of it. When Put returns nil the object is durable in the bucket.
//   - Objects are immutable once written; Floe never overwrites a key with
//     different bytes, so a reader that saw an object can re-read it.
//   - A missing object is reported as ErrNotExist (test with errors.Is),
//     whatever the backend's SDK calls it.
//   - Deleting a missing object succeeds.
//   - All methods are safe for concurrent use and honour ctx cancellation.
//
// Package objstore/bucket opens a Bucket from a URL (s3://, gs://,
// minio://, file://, mem://) and composes the wrappers every Floe bucket
// gets: backend → WithLatency (benchmarks only) → WithPrefix → WithRetry →
// WithMetrics. It is a separate package because it imports every backend
// and every backend imports this one.
//
// What a backend owes the wrappers: map its SDK's not-found to ErrNotExist
// and an unsatisfiable range to ErrInvalidRange; wrap other answers from
// the service in *StatusError (HTTP status and error code) so IsTransient
// can tell throttling from a bad request; turn the SDK's own retries off,
// since WithRetry is the one retry layer; fail a short Put body with
// ErrSizeMismatch (see ExactReader, ReadFull) leaving no object; count the
// requests it sends in a RequestCounter, when given one (the wrappers see
// calls, and a call can be several billed requests); send an object of up
// to DefaultSingleRequestBytes in one request by default; check the
// bucket itself in one request (BucketChecker) where a missing bucket
// looks like a missing object; and pass objstoretest.Run. A wrapper has
// an Unwrap method, so CheckBucket finds the backend's check.
package objstore

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"
)

// ErrNotExist reports that the requested object does not exist.
var ErrNotExist = errors.New("objstore: object does not exist")

// ErrInvalidRange reports a range read that starts at or past the end of
// the object.
var ErrInvalidRange = errors.New("objstore: range not satisfiable")

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key          string
	Size         int64
	LastModified time.Time
}

// BucketReader is the read half of a bucket.
type BucketReader interface {
	// Get returns the whole object. The caller must close the reader.
	Get(ctx context.Context, key string) (io.ReadCloser, error)

	// GetRange returns length bytes starting at off. A range that runs past
	// the end of the object is cut at the end; length < 0 reads to the end.
	// An off at or past the end of the object returns ErrInvalidRange
	// (except off == 0 on an empty object, which returns an empty reader).
	GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error)

	// Stat returns the object's size and modification time.
	Stat(ctx context.Context, key string) (ObjectInfo, error)

	// List yields every object whose key starts with prefix, in ascending
	// key order, fetching pages from the backend as the caller iterates.
	// An error ends the iteration and is yielded with a zero ObjectInfo.
	List(ctx context.Context, prefix string) iter.Seq2[ObjectInfo, error]
}

// BucketWriter is the write half of a bucket.
type BucketWriter interface {
	// Put stores size bytes read from r under key. When it returns nil the
	// object is durable and visible to every reader. r is read exactly once;
	// a short read fails the Put and leaves no object behind.
	Put(ctx context.Context, key string, r io.Reader, size int64) error

	// Delete removes key. Deleting a missing key succeeds.
	Delete(ctx context.Context, key string) error
}

// Bucket is a complete object store.
type Bucket interface {
	BucketReader
	BucketWriter
	// Close releases the backend's resources. It does not delete data.
	Close() error
}
