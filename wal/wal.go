// Package wal is the agent's local write-ahead log and flush pipeline. It
// owns the bytes between a produce request and their commit: appends land in
// the open buffer's file, the flusher seals the buffer on a FlushInterval
// cadence, at FlushBytes, or early when the caller says nobody will append
// more before being acknowledged (SealEarly, at most once per
// FlushMinInterval), fsyncs it while a Sink uploads it, has the Sink commit
// buffers strictly in seal order (several at once when they queue behind a
// commit and the Sink is a GroupSink), resolves the appenders' Acks with
// the commit's results, and deletes the file.
//
// Guarantees:
//   - An Ack resolves successfully only after the Sink's Commit (or
//     CommitGroup) of its buffer returned results; the Sink (agent/flush)
//     returns only after the object is in the bucket and its offsets are
//     committed. Nothing on local disk is ever the only copy of an
//     acknowledged record.
//   - Commit calls never overlap and take buffers in seal order (one
//     buffer, or with a GroupSink a run of consecutive uploaded ones), so
//     batches of one producer to one partition never reorder, even with
//     several uploads in flight.
//   - A buffer is committed and deleted only after its file was fsynced.
//     After a crash, Open finds every buffer not yet deleted and hands it to
//     the Sink again (same ID, same Created, same entries) before new data;
//     the Sink's per-ID idempotence makes a repeated commit harmless.
//   - A failed create or write of the open buffer's file (a full disk,
//     too many open files) fails only that buffer: it is discarded, its
//     file removed (durably, before any appender hears of it), and its
//     appends fail with ErrWrite, which a producer may retry, since
//     nothing of them will be committed. The buffers sealed before it go
//     on uploading and committing (which deletes their files and so frees
//     space), and later appends try a new file, after a backoff while
//     writes keep failing.
//   - A failed fsync, close or rename of a buffer being sealed, a failed
//     directory fsync, or a discarded buffer's file that cannot be removed
//     is fatal: the affected acks fail, Healthy reports the cause, later
//     appends fail with ErrFailed, and Run returns. Nothing is retried on a
//     file whose fsync failed.
//   - Replay keeps seal order: the buffers it hands the Sink are the
//     first ones sealed, up to the first it could not replay whole, so a
//     crash never reorders a producer's batches. A buffer's file is
//     removed only after its commit, so no file holds anything
//     acknowledged that is not committed, and nothing replay drops was
//     acknowledged.
//   - Nothing in an unsealed buffer file (".tmp") was acknowledged (a
//     buffer is renamed when sealed, before its commit): replay keeps its
//     records up to the first damaged one (a torn tail, or a hole where a
//     crash lost an earlier page but kept a later one), logs what it
//     drops, and cuts the file there. Every buffer file after it (sealed
//     while its fsync ran, or the open one) is removed, logged as an
//     error: none was committed, and the unsealed one may have lost
//     records. A sealed file (".wal") was fsynced whole: damage to it, or
//     to a file header that is not all zeros, is logged as an error naming
//     the file and offset, and the file is moved aside (renamed with
//     ".corrupt" added, never read again) with every buffer file after it.
//
// Append, Ack.Wait, Healthy and Committing are safe for concurrent use;
// Run is called once.
//
// # On disk
//
// One file per buffer in Config.Dir, named "<seq>-<id>.tmp" while open and
// renamed to "<seq>-<id>.wal" when sealed (after its fsync; the directory is
// fsynced after the rename). seq is 16 hex digits giving the seal order
// across restarts; id is the buffer's ULID. A file replay moved aside is
// named "<seq>-<id>.wal.corrupt" (or ".tmp.corrupt") and is never read
// again. All integers little-endian.
//
//	file header (fileHeaderSize = 48 bytes)
//	  0   [8]byte   magic "FLOEWAL1"
//	  8   uint16    format version (1)
//	  10  uint16    reserved (0)
//	  12  uint64    seq
//	  20  int64     created, Unix nanoseconds
//	  28  [16]byte  buffer id (ULID, binary)
//	  44  uint32    CRC-32C (Castagnoli) of bytes 0..44
//	records, back to back
//	  0   uint32    payload length n (entryFixed <= n <= maxPayload)
//	  4   uint32    CRC-32C of the payload
//	  8   [n]byte   payload:
//	        0   uint8     record type (1 = entry)
//	        1   [16]byte  topic id
//	        17  int32     partition
//	        21  int32     offset span
//	        25  int32     records
//	        29  int64     first timestamp
//	        37  int64     max timestamp
//	        45  int64     producer id
//	        53  int16     producer epoch
//	        55  int32     base sequence
//	        59  [n-59]    record batch, verbatim
package wal

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floebroker/floe/catalog"
)

// Errors returned by Append and Ack.Wait.
var (
	// ErrBackpressure: buffered bytes stayed above MaxBufferedBytes until the
	// caller's ctx ended. The returned error also wraps ctx.Err().
	ErrBackpressure = errors.New("wal: too many bytes waiting to be flushed")
	// ErrClosed: the log has shut down (Run returned).
	ErrClosed = errors.New("wal: closed")
	// ErrFailed: sealing a buffer failed (its fsync, close or rename, or
	// the directory's fsync), or a discarded buffer's file could not be
	// removed for good; the WAL accepts nothing more. The returned error
	// also wraps the cause.
	ErrFailed = errors.New("wal: failed")
	// ErrWrite: the open buffer's file could not be created or written,
	// or could not be lately and the backoff has not passed. The buffer
	// was discarded: neither the failed append nor any earlier one in the
	// same buffer will be committed, so they are safe to send again. The
	// WAL keeps flushing what was sealed before. The returned error also
	// wraps the cause.
	ErrWrite = errors.New("wal: write failed; nothing of the append was kept")
)

// Entry is one record batch to store, with the header fields the commit
// needs (the agent parses them once).
type Entry struct {
	TopicPartition catalog.TopicPartition
	// Batch is one validated Kafka v2 record batch, stored verbatim. The log
	// keeps a reference until the buffer is committed; do not modify it.
	Batch          []byte
	OffsetSpan     int32
	Records        int32
	FirstTimestamp int64
	MaxTimestamp   int64
	// ProducerID < 0 for a non-idempotent batch.
	ProducerID    int64
	ProducerEpoch int16
	BaseSequence  int32
}

// Sealed is a buffer handed to the Sink.
type Sealed struct {
	// ID is unique and stable across replay; the object key derives from it.
	ID string
	// Created is when the buffer opened, stable across replay.
	Created time.Time
	Entries []Entry
	// Bytes is the sum of the entries' batch lengths.
	Bytes int64
	// Replayed is true when this buffer was found on disk by Open, so an
	// earlier process may already have uploaded (and committed) it.
	Replayed bool
}

// Sink uploads and commits sealed buffers. agent/flush implements it.
type Sink interface {
	// Upload makes b durable in the bucket. Called for up to
	// Config.MaxInflight buffers concurrently.
	Upload(ctx context.Context, b *Sealed) error
	// Commit assigns offsets in the catalog. Called one buffer at a time,
	// strictly in seal order, after that buffer's Upload succeeded, and
	// never while another Commit or CommitGroup call runs. Returns one
	// result per entry, in entry order.
	Commit(ctx context.Context, b *Sealed) ([]catalog.BatchResult, error)
}

// GroupSink is a Sink that can commit several buffers in one call (group
// commit). A catalog commit costs in proportion to the partitions it
// touches, so when uploaded buffers queue behind a commit in progress, one
// call that touches each partition once for all of them costs less than a
// call per buffer. The Log uses CommitGroup for every run of two or more
// consecutive buffers already uploaded when it is ready to commit; a
// single buffer still goes to Commit.
type GroupSink interface {
	Sink
	// CommitGroup commits bs (two or more buffers in seal order, each
	// uploaded successfully) as if Commit were called for each in turn,
	// and returns each buffer's results (one per entry, in entry order)
	// in the order of bs. It is called under the same rules as Commit.
	//
	// Any error, or a result of the wrong shape, makes the Log commit
	// every buffer of bs again one by one with Commit, with Commit's
	// retries and permanent errors: so CommitGroup's errors are never
	// final (it need not mark them Permanent, and it may refuse a group
	// it cannot commit cheaply), and a buffer it did commit before
	// failing must get the same results from Commit (the per-ID
	// idempotence Commit already has).
	CommitGroup(ctx context.Context, bs []*Sealed) ([][]catalog.BatchResult, error)
}

// Permanent marks a Sink error as not worth retrying: the buffer's acks fail
// with it and the buffer is dropped. Any other Sink error is retried with
// backoff until it succeeds or the log shuts down.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// CorruptionError reports a WAL file that cannot be replayed. Open
// returns one only for two buffer files of one sequence number (a copy by
// hand); a damaged file is moved aside instead (see the package doc).
type CorruptionError struct {
	File   string
	Offset int64
	Reason string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("wal: corrupt file %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Config configures a Log.
type Config struct {
	// Dir holds the buffer files. Required.
	Dir string
	// FlushInterval paces the seals: a buffer opened within FlushInterval
	// of the previous seal falls due FlushInterval after that seal (a
	// fixed cadence under steady traffic), one opened later falls due
	// FlushInterval after its first append. So an entry waits at most
	// FlushInterval, and the timer never seals twice within one interval.
	// Default 250ms.
	FlushInterval time.Duration
	// FlushMinInterval is the shortest gap between the previous seal and
	// a seal asked for with SealEarly; with it, seals (and PUTs) per
	// second stay at most 1/FlushMinInterval whatever the appenders do.
	// FlushMinInterval >= FlushInterval makes SealEarly do nothing.
	// Default FlushInterval/5.
	FlushMinInterval time.Duration
	// FlushBytes seals the buffer once its batches reach this size.
	// Default 8 MiB.
	FlushBytes int64
	// MaxBufferedBytes bounds the batch bytes held (open, sealed, being
	// uploaded or committed); Append waits beyond it. Default 64 MiB.
	MaxBufferedBytes int64
	// MaxInflight bounds the buffers sealed but not yet committed (and so the
	// concurrent Uploads). Default 4.
	MaxInflight int
	// DrainTimeout bounds how long Run keeps flushing after its ctx ended.
	// Whatever is left stays in the WAL for the next Open. Default 30s.
	DrainTimeout time.Duration
	// RetryBackoff is the first wait after a failed Upload or Commit, and
	// before a new buffer file is tried after a write failed; it doubles up
	// to MaxRetryBackoff. Defaults 50ms and 5s.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration

	// FS is the file system; nil means the operating system's.
	FS FS
	// Logger; nil discards.
	Logger *slog.Logger
	// Registerer for floe_wal_* metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now stamps buffers' Created; nil means time.Now.
	Now func() time.Time
}

// Defaults.
const (
	DefaultFlushInterval = 250 * time.Millisecond
	// DefaultFlushMinIntervalDivisor: FlushMinInterval defaults to
	// FlushInterval divided by it (see docs/operations.md for why).
	DefaultFlushMinIntervalDivisor = 5
	DefaultFlushBytes              = 8 << 20
	DefaultMaxBufferedBytes        = 64 << 20
	DefaultMaxInflight             = 4
	DefaultDrainTimeout            = 30 * time.Second
	DefaultRetryBackoff            = 50 * time.Millisecond
	DefaultMaxRetryBackoff         = 5 * time.Second
)

// RegisterFlags registers the tunables under "wal." with the current values
// (or the defaults for zero values) as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	// A zero FlushMinInterval stays zero, so that it follows a
	// -wal.flush-interval given on the command line.
	derivedMin := c.FlushMinInterval == 0
	c.setDefaults()
	if derivedMin {
		c.FlushMinInterval = 0
	}
	fs.StringVar(&c.Dir, "wal.dir", c.Dir, "directory for the write-ahead log")
	fs.DurationVar(&c.FlushInterval, "wal.flush-interval", c.FlushInterval, "seal and flush the open buffer at least this often")
	fs.DurationVar(&c.FlushMinInterval, "wal.flush-min-interval", c.FlushMinInterval, "shortest gap between seals when every appender waits for its acks (0: flush interval / 5)")
	fs.Int64Var(&c.FlushBytes, "wal.flush-bytes", c.FlushBytes, "seal and flush the open buffer once it holds this many bytes")
	fs.Int64Var(&c.MaxBufferedBytes, "wal.max-buffered-bytes", c.MaxBufferedBytes, "produce waits while this many bytes are not yet committed")
	fs.IntVar(&c.MaxInflight, "wal.max-inflight", c.MaxInflight, "buffers uploading or committing at once")
	fs.DurationVar(&c.DrainTimeout, "wal.drain-timeout", c.DrainTimeout, "how long shutdown keeps flushing before leaving data in the WAL")
}

func (c *Config) setDefaults() {
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.FlushMinInterval == 0 {
		c.FlushMinInterval = c.FlushInterval / DefaultFlushMinIntervalDivisor
	}
	if c.FlushBytes == 0 {
		c.FlushBytes = DefaultFlushBytes
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
	if c.MaxRetryBackoff == 0 {
		c.MaxRetryBackoff = DefaultMaxRetryBackoff
	}
}

// Validate reports the first invalid setting. Zero values mean the default.
func (c Config) Validate() error {
	c.setDefaults()
	switch {
	case c.Dir == "":
		return errors.New("wal: config: dir is required")
	case c.FlushInterval < 0:
		return fmt.Errorf("wal: config: flush interval %v is negative", c.FlushInterval)
	case c.FlushMinInterval < 0:
		return fmt.Errorf("wal: config: flush min interval %v is negative", c.FlushMinInterval)
	case c.FlushBytes < 0:
		return fmt.Errorf("wal: config: flush bytes %d is negative", c.FlushBytes)
	case c.MaxBufferedBytes < c.FlushBytes:
		return fmt.Errorf("wal: config: max buffered bytes %d is below flush bytes %d", c.MaxBufferedBytes, c.FlushBytes)
	case c.MaxInflight < 1:
		return fmt.Errorf("wal: config: max inflight %d is below 1", c.MaxInflight)
	case c.DrainTimeout < 0:
		return fmt.Errorf("wal: config: drain timeout %v is negative", c.DrainTimeout)
	case c.RetryBackoff < 0 || c.MaxRetryBackoff < c.RetryBackoff:
		return fmt.Errorf("wal: config: retry backoff %v..%v invalid", c.RetryBackoff, c.MaxRetryBackoff)
	}
	return nil
}
