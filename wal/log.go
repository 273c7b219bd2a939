package wal

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/floebroker/floe/catalog"
)

// Log is an open write-ahead log. Create it with Open, start its flusher
// with Run, and Append from any goroutine.
type Log struct {
	cfg  Config
	fs   FS
	sink Sink
	log  *slog.Logger
	m    *metrics
	now  func() time.Time
	// lock holds the directory (OSFS only) from Open until Run returns.
	lock *dirLock

	running  atomic.Bool
	failedCh chan struct{} // closed when the WAL fails
	// kick wakes Run: a buffer opened (it needs a deadline) or reached
	// FlushBytes. Capacity 1; senders never block.
	kick chan struct{}
	// progress wakes Run when a buffer left the pipeline (a slot freed).
	progress chan struct{}
	// committing is closed when the Sink's Commit or CommitGroup call in
	// progress returns; nil while none is (see Committing).
	committing atomic.Pointer[chan struct{}]

	mu struct {
		sync.Mutex
		entropy  io.Reader // ULID entropy, monotonic within a millisecond
		nextSeq  uint64
		cur      *buffer   // open buffer, nil when nothing is buffered
		lastSeal time.Time // when the previous buffer was sealed (zero: none yet)
		// lastEntries is the previous sealed buffer's entry count, the
		// initial capacity of the next one's.
		lastEntries int
		sealed      []*buffer // sealed, not yet released, in seal order
		started     int       // sealed[:started] are uploading or committing
		buffered    int64     // batch bytes not yet released
		space       chan struct{}
		closed      bool
		failed      error
		// writeErr is why the last open buffer was discarded; while it
		// is set no new buffer file is tried before writeRetry, and the
		// wait doubles (writeBackoff) until a write succeeds.
		writeErr     error
		writeRetry   time.Time
		writeBackoff time.Duration
	}
}

// buffer is one WAL file and the appenders waiting on it.
type buffer struct {
	seq      uint64
	base     string // path without the ".tmp"/".wal" suffix
	file     File   // open while the buffer is; nil once sealed
	sealed   Sealed
	deadline time.Time // seal by then
	// early is set by SealEarly: seal as soon as FlushMinInterval has
	// passed since the previous seal.
	early    bool
	sealedAt time.Time

	uploaded   chan struct{} // closed when upload (and fsync) ended
	uploadErr  error
	uploadedAt time.Time // when uploaded was closed

	once    sync.Once
	done    chan struct{} // closed when resolved
	results []catalog.BatchResult
	err     error
}

func (b *buffer) tmpPath() string { return b.base + ".tmp" }
func (b *buffer) walPath() string { return b.base + ".wal" }

// resolve settles the buffer's acks once; later calls do nothing.
func (b *buffer) resolve(results []catalog.BatchResult, err error) {
	b.once.Do(func() {
		b.results, b.err = results, err
		close(b.done)
	})
}

// framePool recycles Append's encoding buffers (*[]byte, empty), a few
// per concurrent Append. Buffers above maxPooledFrames (only a single
// frame larger than frameChunk makes one) are left to the collector so one
// huge batch does not pin its size.
var framePool sync.Pool

const maxPooledFrames = 16 << 20

// frameChunk is the size of the buffers Append encodes a request into. A
// request is encoded into as many as it needs and written with one write
// call each: at 2,000 partitions one produce request can hold tens of
// megabytes, and a buffer that large, allocated (and zeroed) afresh for
// every request, was the WAL's largest allocation and brought garbage
// collections closer.
const frameChunk = 1 << 20

// getFrames returns an empty buffer for a chunk of size bytes (at most
// frameChunk unless one frame is larger).
func getFrames(size int) *[]byte {
	if p, ok := framePool.Get().(*[]byte); ok && cap(*p) >= size {
		return p
	}
	b := make([]byte, 0, size)
	return &b
}

func putFrames(p *[]byte) {
	if cap(*p) <= maxPooledFrames {
		*p = (*p)[:0]
		framePool.Put(p)
	}
}

// encodeFrames encodes entries (size bytes of frames in all) into chunks
// of about frameChunk bytes, a frame never split across two. The caller
// returns the chunks with putFrames.
func encodeFrames(entries []Entry, size int) []*[]byte {
	var chunks []*[]byte
	if size > frameChunk {
		chunks = make([]*[]byte, 0, size/frameChunk+2)
	}
	var cur *[]byte
	for i := range entries {
		n := frameSize(&entries[i])
		if cur == nil || len(*cur)+n > cap(*cur) {
			cur = getFrames(max(n, min(size, frameChunk)))
			chunks = append(chunks, cur)
		}
		*cur = appendEntry(*cur, &entries[i])
		size -= n
	}
	return chunks
}

// Ack is the receipt of one Append.
type Ack struct {
	b          *buffer
	start, end int
}

// noBuffer is the Buffer of an Append of no entries.
const noBuffer = ^uint64(0)

// Buffer identifies the buffer holding the appended entries, for
// SealEarly. Buffers are numbered in the order they open (and are sealed),
// so a larger number is a later buffer. An Append of no entries has no
// buffer: its Buffer matches none.
func (a *Ack) Buffer() uint64 { return a.b.seq }

// Wait returns one result per appended entry, in order, once that buffer's
// commit returned. A per-entry catalog error (an out-of-order sequence, a
// deleted topic) is in the result; the error is for the whole append: the
// upload or commit failed permanently, a later write to the buffer failed
// and it was discarded (ErrWrite), the WAL failed (ErrFailed), it shut
// down before the data was flushed (ErrClosed), or ctx ended first.
func (a *Ack) Wait(ctx context.Context) ([]catalog.BatchResult, error) {
	select {
	case <-a.b.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if a.b.err != nil {
		return nil, a.b.err
	}
	return slices.Clone(a.b.results[a.start:a.end]), nil
}

// Open opens (creating) cfg.Dir, replays the buffers a previous process left
// there (cutting an unsealed one at its first damaged record) and queues
// them to be uploaded and committed before anything appended now. The
// buffers after an unsealed one are dropped, and a damaged buffer file is
// moved aside with the buffers after it (see the package doc).
func Open(cfg Config, sink Sink) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	l := &Log{
		cfg:      cfg,
		fs:       cfg.FS,
		sink:     sink,
		log:      cfg.Logger,
		now:      cfg.Now,
		failedCh: make(chan struct{}),
		kick:     make(chan struct{}, 1),
		progress: make(chan struct{}, 1),
	}
	if l.fs == nil {
		l.fs = OSFS{}
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	l.m = newMetrics(cfg.Registerer)
	l.mu.entropy = ulid.Monotonic(rand.Reader, 0)
	l.mu.space = make(chan struct{})
	if err := l.fs.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("wal: open %s: %w", cfg.Dir, err)
	}
	if _, onDisk := l.fs.(OSFS); onDisk {
		lk, err := lockDir(cfg.Dir)
		if err != nil {
			return nil, err
		}
		l.lock = lk
	}
	if err := l.replay(); err != nil {
		l.lock.release()
		return nil, err
	}
	return l, nil
}

// Healthy returns nil, or why the WAL has failed.
func (l *Log) Healthy() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.failed != nil {
		return fmt.Errorf("%w: %w", ErrFailed, l.mu.failed)
	}
	return nil
}

// Append writes entries to the open buffer's file and returns the Ack that
// resolves when they are committed. The write is buffered by the OS and
// fsynced when the buffer is sealed; nothing is acknowledged before that.
// All entries of one call land in one buffer, in order. Append waits while
// more than MaxBufferedBytes are not yet committed; if ctx ends first it
// returns an error wrapping ErrBackpressure and ctx.Err(). With ctx
// already done it appends nothing and returns ctx.Err(): a caller whose
// time ran out answers its client with a timeout, and entries appended
// anyway would commit, so a client retrying them would store them twice.
// If the open buffer's file cannot be created or written, Append returns
// an error wrapping ErrWrite, and neither these entries nor any appended
// to that buffer before are committed (see ErrWrite).
func (l *Log) Append(ctx context.Context, entries []Entry) (*Ack, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var n int64
	size := 0
	for i := range entries {
		if len(entries[i].Batch) > MaxBatchBytes {
			return nil, fmt.Errorf("wal: append: batch of %d bytes exceeds %d", len(entries[i].Batch), MaxBatchBytes)
		}
		n += int64(len(entries[i].Batch))
		size += frameSize(&entries[i])
	}
	// Encode outside the lock: copying batches is the expensive part. The
	// frames are garbage once written, so their buffers are reused.
	chunks := encodeFrames(entries, size)
	defer func() {
		for _, c := range chunks {
			putFrames(c)
		}
	}()

	l.mu.Lock()
	for {
		if err := l.unusableLocked(); err != nil {
			l.mu.Unlock()
			return nil, err
		}
		if l.mu.buffered <= l.cfg.MaxBufferedBytes {
			break
		}
		space := l.mu.space
		l.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrBackpressure, ctx.Err())
		}
		if err := ctx.Err(); err != nil {
			// Space and the deadline came together: select chose space.
			return nil, fmt.Errorf("%w: %w", ErrBackpressure, err)
		}
		l.mu.Lock()
	}
	defer l.mu.Unlock()
	if len(entries) == 0 {
		b := &buffer{seq: noBuffer, done: make(chan struct{})}
		b.resolve(nil, nil)
		return &Ack{b: b}, nil
	}
	if l.mu.cur == nil {
		if l.mu.writeErr != nil && time.Now().Before(l.mu.writeRetry) {
			// Writes fail (a full disk, most likely): do not create
			// and remove a file per produce request until it passes.
			return nil, fmt.Errorf("%w: %w", ErrWrite, l.mu.writeErr)
		}
		b, err := l.openBufferLocked()
		if err != nil {
			return nil, l.discardLocked(b, err)
		}
		l.mu.cur = b
		l.wake(l.kick)
	}
	b := l.mu.cur
	if b.sealed.Entries == nil {
		// Sized like the previous buffer: a steady load fills buffers
		// alike, and growing a slice of thousands of entries by doubling
		// copies (and makes the collector scan) each several times.
		b.sealed.Entries = make([]Entry, 0, max(l.mu.lastEntries, len(entries)))
	}
	for _, c := range chunks {
		// A failed write (even of a later chunk) discards the whole
		// buffer, so a request is never half acknowledged.
		if _, err := b.file.Write(*c); err != nil {
			l.mu.cur = nil
			return nil, l.discardLocked(b, fmt.Errorf("wal: write %s: %w", b.tmpPath(), err))
		}
	}
	l.mu.writeErr, l.mu.writeBackoff = nil, 0
	ack := &Ack{b: b, start: len(b.sealed.Entries)}
	b.sealed.Entries = append(b.sealed.Entries, entries...)
	ack.end = len(b.sealed.Entries)
	b.sealed.Bytes += n
	l.mu.buffered += n
	l.m.buffered.Set(float64(l.mu.buffered))
	if b.sealed.Bytes >= l.cfg.FlushBytes {
		l.wake(l.kick)
	}
	return ack, nil
}

func (l *Log) unusableLocked() error {
	if l.mu.failed != nil {
		return fmt.Errorf("%w: %w", ErrFailed, l.mu.failed)
	}
	if l.mu.closed {
		return ErrClosed
	}
	return nil
}

// openBufferLocked creates the next buffer's file and writes its header.
// If the header write fails it returns the buffer too, for discardLocked
// to remove its file.
func (l *Log) openBufferLocked() (*buffer, error) {
	now := l.now()
	id, err := ulid.New(ulid.Timestamp(now), l.mu.entropy)
	if err != nil {
		return nil, fmt.Errorf("wal: new buffer id: %w", err)
	}
	h := fileHeader{seq: l.mu.nextSeq, created: now.UnixNano(), id: id}
	l.mu.nextSeq++
	b := newBuffer(l.cfg.Dir, h)
	// A buffer opened within FlushInterval of the previous seal falls due
	// FlushInterval after that seal, not after its own first append: an
	// appender that waits for its acks before sending more (a Kafka
	// client whose in-flight window is full) appends again only once the
	// previous buffer is committed, and counting the interval from then
	// would add the upload and the commit to every cycle. After a longer
	// pause the interval counts from the first append, so the first
	// records after idle still wait for company (and a burst is not split
	// into a lone first buffer and the rest). Seals stay at least
	// FlushInterval apart either way.
	b.deadline = l.mu.lastSeal.Add(l.cfg.FlushInterval)
	if !now.Before(b.deadline) {
		b.deadline = now.Add(l.cfg.FlushInterval)
	}
	f, err := l.fs.OpenFile(b.tmpPath(), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", b.tmpPath(), err)
	}
	b.file = f
	if _, err := f.Write(appendFileHeader(nil, h)); err != nil {
		return b, fmt.Errorf("wal: write %s: %w", b.tmpPath(), err)
	}
	return b, nil
}

// discardLocked gives up the open buffer b (no longer l.mu.cur, or never
// was; nil if its file was not created) after cause, a failed create or
// write of its file, and returns the error for Append. Nothing in b was
// fsynced, so nothing in it was acknowledged: its appends fail with
// ErrWrite, which a producer retries, and the buffers sealed before it go
// on flushing. Those are what free the disk when it is full; failing the
// whole WAL instead would abandon them (and fail their acks although their
// commits were on their way), and a restart with the disk still full would
// abandon them again at the first produce.
//
// The file is removed, durably, before anyone is told: a crash that left
// it would have replay commit the appends their producers were told had
// failed, and send again. If that removal fails, the WAL fails.
func (l *Log) discardLocked(b *buffer, cause error) error {
	l.m.writeErrors.Inc()
	if b == nil {
		err := l.backOffLocked(cause)
		l.log.Error("wal: cannot create a buffer file; produces fail until one can be", "retry_in", l.mu.writeBackoff, "err", cause)
		return err
	}
	b.file.Close() // the write already failed; the file goes
	b.file = nil
	if err := l.removeDurably(b.tmpPath()); err != nil {
		err = fmt.Errorf("%w (discarding it after: %w)", err, cause)
		b.resolve(nil, fmt.Errorf("%w: %w", ErrFailed, err))
		l.failLocked(err)
		return fmt.Errorf("%w: %w", ErrFailed, err)
	}
	l.mu.buffered -= b.sealed.Bytes
	l.m.buffered.Set(float64(l.mu.buffered))
	l.wakeSpaceLocked()
	err := l.backOffLocked(cause)
	l.log.Error("wal: discarded the open buffer after a write error; its produces failed", "file", b.tmpPath(), "entries", len(b.sealed.Entries), "bytes", b.sealed.Bytes, "retry_in", l.mu.writeBackoff, "err", cause)
	b.resolve(nil, err)
	return err
}

// removeDurably removes the file at path and fsyncs the directory.
func (l *Log) removeDurably(path string) error {
	if err := l.fs.Remove(path); err != nil {
		return fmt.Errorf("wal: remove %s: %w", path, err)
	}
	if err := l.fs.SyncDir(l.cfg.Dir); err != nil {
		return fmt.Errorf("wal: fsync dir %s: %w", l.cfg.Dir, err)
	}
	return nil
}

// backOffLocked records cause as why writes fail and when to try a new
// buffer file, and returns the error wrapping ErrWrite.
func (l *Log) backOffLocked(cause error) error {
	l.mu.writeErr = cause
	l.mu.writeBackoff = min(max(l.mu.writeBackoff*2, l.cfg.RetryBackoff), l.cfg.MaxRetryBackoff)
	l.mu.writeRetry = time.Now().Add(l.mu.writeBackoff)
	return fmt.Errorf("%w: %w", ErrWrite, cause)
}

func newBuffer(dir string, h fileHeader) *buffer {
	return &buffer{
		seq:      h.seq,
		base:     filepath.Join(dir, fmt.Sprintf("%016x-%s", h.seq, h.id)),
		sealed:   Sealed{ID: h.id.String(), Created: h.createdTime()},
		uploaded: make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// failLocked makes the WAL fail with cause: the open buffer's acks fail now,
// Run fails the rest and returns.
func (l *Log) failLocked(cause error) {
	if l.mu.failed != nil {
		return
	}
	l.mu.failed = cause
	l.log.Error("wal failed", "err", cause)
	close(l.failedCh)
	if b := l.mu.cur; b != nil {
		b.resolve(nil, fmt.Errorf("%w: %w", ErrFailed, cause))
	}
	l.wakeSpaceLocked()
}

func (l *Log) fail(cause error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failLocked(cause)
}

func (l *Log) wakeSpaceLocked() {
	close(l.mu.space)
	l.mu.space = make(chan struct{})
}

func (l *Log) wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run is the flusher. It seals the open buffer (never an empty one) once it
// holds FlushBytes; FlushInterval after the previous seal, or after its
// first append if it opened later than that; or FlushMinInterval after the
// previous seal when SealEarly asked for it. It uploads up to
// MaxInflight buffers at once while fsyncing them, commits them in seal
// order, resolves their acks and deletes their files.
//
// When ctx ends, Append starts returning ErrClosed and Run drains: it seals
// and flushes everything appended before, for at most DrainTimeout, and
// returns nil (or an error wrapping ErrClosed if something was left for the
// next Open). On a fatal error (a failed fsync or rename of a buffer being
// sealed) it fails every pending ack and returns an error wrapping
// ErrFailed; a failed write of the open buffer is not fatal (see ErrWrite).
func (l *Log) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("wal: Run called twice")
	}
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var wg sync.WaitGroup
	commitQ := make(chan *buffer, l.cfg.MaxInflight)
	wg.Go(func() { l.committer(workCtx, commitQ) })

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	ctxDone := ctx.Done()
	var drainTimeout <-chan time.Time
	draining := false
	var exitErr error
loop:
	for {
		idle, next := l.step(workCtx, &wg, commitQ, draining)
		if draining && idle {
			break
		}
		if !next.IsZero() {
			timer.Reset(max(next.Sub(l.now()), 0))
		}
		select {
		case <-ctxDone:
			ctxDone = nil
			draining = true
			l.mu.Lock()
			l.mu.closed = true
			l.wakeSpaceLocked()
			l.mu.Unlock()
			t := time.NewTimer(l.cfg.DrainTimeout)
			defer t.Stop()
			drainTimeout = t.C
		case <-l.kick:
		case <-l.progress:
		case <-timer.C:
		case <-l.failedCh:
			exitErr = fmt.Errorf("%w: %w", ErrFailed, l.Healthy())
			break loop
		case <-drainTimeout:
			exitErr = fmt.Errorf("%w: drain timed out after %v; unflushed buffers stay in %s for the next start", ErrClosed, l.cfg.DrainTimeout, l.cfg.Dir)
			break loop
		}
		timer.Stop()
	}
	cancelWork()
	wg.Wait()
	defer l.lock.release()
	return l.shutdown(exitErr)
}

// step seals the open buffer if it is due and starts uploads while slots are
// free. It reports whether nothing is left to flush and when the open buffer
// falls due (zero if not waiting on a deadline).
func (l *Log) step(ctx context.Context, wg *sync.WaitGroup, commitQ chan<- *buffer, draining bool) (idle bool, next time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.failed != nil {
		return false, time.Time{}
	}
	// Replayed buffers wait in sealed[started:]; a new buffer is sealed only
	// behind them, and only when it can start uploading at once, so under
	// back-pressure the open buffer grows (fewer, larger objects).
	if b := l.mu.cur; b != nil {
		now := l.now()
		reason, at := l.dueLocked(b, now, draining)
		if reason == "" {
			next = at
		} else if l.mu.started == len(l.mu.sealed) && l.mu.started < l.cfg.MaxInflight {
			l.mu.cur = nil
			b.sealedAt = now
			l.mu.lastSeal = now
			l.mu.sealed = append(l.mu.sealed, b)
			l.m.seals.WithLabelValues(reason).Inc()
			l.m.flushBytes.Observe(float64(b.sealed.Bytes))
			l.m.flushEntries.Observe(float64(len(b.sealed.Entries)))
			l.mu.lastEntries = len(b.sealed.Entries)
		}
	}
	for l.mu.started < len(l.mu.sealed) && l.mu.started < l.cfg.MaxInflight {
		b := l.mu.sealed[l.mu.started]
		l.mu.started++
		commitQ <- b // never blocks: at most MaxInflight started buffers exist
		wg.Go(func() { l.upload(ctx, b) })
	}
	return l.mu.cur == nil && len(l.mu.sealed) == 0, next
}

// dueLocked says why the open buffer b is due at now ("" if it is not),
// and otherwise when it falls due.
func (l *Log) dueLocked(b *buffer, now time.Time, draining bool) (reason string, at time.Time) {
	at = b.deadline
	if b.early {
		at = minTime(at, l.mu.lastSeal.Add(l.cfg.FlushMinInterval))
	}
	switch {
	case draining:
		return sealDrain, at
	case b.sealed.Bytes >= l.cfg.FlushBytes:
		return sealBytes, at
	case !now.Before(b.deadline):
		return sealInterval, at
	case !now.Before(at):
		return sealEarly, at
	}
	return "", at
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Why a buffer was sealed (the reason label of floe_wal_seals_total).
const (
	sealInterval = "interval"
	sealBytes    = "bytes"
	sealEarly    = "early"
	sealDrain    = "drain"
)

// FlushInterval is how long a buffer may stay open (Config.FlushInterval).
func (l *Log) FlushInterval() time.Duration { return l.cfg.FlushInterval }

// SealEarly asks the flusher to seal buffer buf (an Ack's Buffer) as soon
// as FlushMinInterval has passed since the previous seal, instead of
// waiting for FlushInterval. The caller knows that holding buf open is
// pointless: everyone with entries in it waits for them to be committed
// before appending more. It does nothing if buf is no longer the open
// buffer. The request stands until buf is sealed, even if other appends
// land in buf meanwhile. With FlushMinInterval >= FlushInterval it does
// nothing. Safe for concurrent use; never blocks on I/O.
func (l *Log) SealEarly(buf uint64) {
	if l.cfg.FlushMinInterval >= l.cfg.FlushInterval {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.mu.cur; b != nil && b.seq == buf && !b.early {
		b.early = true
		l.wake(l.kick)
	}
}

// upload fsyncs and publishes b's file while the sink uploads it.
func (l *Log) upload(ctx context.Context, b *buffer) {
	defer close(b.uploaded)
	syncErr := make(chan error, 1)
	if b.file != nil {
		go func() { syncErr <- l.persist(b) }()
	} else {
		syncErr <- nil
	}
	start := time.Now()
	err := l.retry(ctx, "upload", b, func() error { return l.sink.Upload(ctx, &b.sealed) })
	if err == nil {
		l.m.uploadSeconds.Observe(time.Since(start).Seconds())
	}
	if serr := <-syncErr; serr != nil {
		l.fail(serr)
		err = fmt.Errorf("%w: %w", ErrFailed, serr)
	}
	b.uploadErr = err
	b.uploadedAt = time.Now()
}

// persist fsyncs b's file and renames it to its sealed name; the directory
// fsync makes the rename (and earlier removals) durable.
func (l *Log) persist(b *buffer) error {
	start := time.Now()
	f := b.file
	b.file = nil
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("wal: fsync %s: %w", b.tmpPath(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("wal: close %s: %w", b.tmpPath(), err)
	}
	if err := l.fs.Rename(b.tmpPath(), b.walPath()); err != nil {
		return fmt.Errorf("wal: seal %s: %w", b.walPath(), err)
	}
	if err := l.fs.SyncDir(l.cfg.Dir); err != nil {
		return fmt.Errorf("wal: fsync dir %s: %w", l.cfg.Dir, err)
	}
	l.m.fsyncSeconds.Observe(time.Since(start).Seconds())
	return nil
}

// retry calls f until it succeeds, returns a permanent error, or ctx ends.
func (l *Log) retry(ctx context.Context, op string, b *buffer, f func() error) error {
	backoff := l.cfg.RetryBackoff
	for {
		err := f()
		if err == nil || IsPermanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("wal: %s buffer %s: %w", op, b.sealed.ID, ctx.Err())
		}
		l.m.retries.WithLabelValues(op).Inc()
		l.log.Warn("wal: sink call failed; retrying", "op", op, "buffer", b.sealed.ID, "backoff", backoff, "err", err)
		wait := backoff/2 + time.Duration(mrand.Int64N(int64(backoff/2)+1))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wal: %s buffer %s: %w (last error: %w)", op, b.sealed.ID, ctx.Err(), err)
		}
		backoff = min(backoff*2, l.cfg.MaxRetryBackoff)
	}
}

// shutdown settles every unsettled ack with why and closes the open file.
// Buffers that were not committed stay on disk for the next Open.
func (l *Log) shutdown(why error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.closed = true
	l.wakeSpaceLocked()
	var errs []error
	if why != nil {
		errs = append(errs, why)
	}
	ackErr := why
	if ackErr == nil {
		ackErr = ErrClosed
	}
	for _, b := range l.mu.sealed {
		b.resolve(nil, ackErr)
		if b.file != nil { // sealed, upload never started
			errs = append(errs, l.closeUnsealed(b))
		}
	}
	if b := l.mu.cur; b != nil {
		b.resolve(nil, ackErr)
		errs = append(errs, l.closeUnsealed(b))
		l.mu.cur = nil
	}
	if l.mu.failed == nil {
		// Make the removals of committed buffers durable.
		if err := l.fs.SyncDir(l.cfg.Dir); err != nil {
			errs = append(errs, fmt.Errorf("wal: fsync dir %s: %w", l.cfg.Dir, err))
		}
	}
	return errors.Join(errs...)
}

// closeUnsealed syncs and closes an open buffer file at shutdown so its
// entries survive for replay. A failed WAL's files are closed unsynced.
func (l *Log) closeUnsealed(b *buffer) error {
	f := b.file
	b.file = nil
	if l.mu.failed != nil {
		f.Close()
		return nil
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("wal: fsync %s: %w", b.tmpPath(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("wal: close %s: %w", b.tmpPath(), err)
	}
	return nil
}
