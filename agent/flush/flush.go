// Package flush turns the WAL's sealed buffers into segment objects and
// catalog commits: it is the wal.Sink of an agent.
//
// Guarantees:
//   - Upload returns nil only once the whole segment object is durable in
//     the bucket (objstore.Put's contract).
//   - The object's key and bytes are a pure function of the cluster, the
//     agent id and the buffer (its ID, Created and entries), so a buffer
//     replayed after a crash is put under the same key with the same bytes,
//     and CommitSegment's per-key idempotence returns the first commit's
//     results instead of committing twice. A replay by an agent with
//     another id re-puts the object already in the bucket if its size
//     differs (see adoptExisting), so the size a commit recorded holds.
//   - Commit returns one catalog.BatchResult per entry, in entry order, once
//     the catalog transaction has committed. catalog.ErrCommitUnknown is
//     returned as is; the WAL retries the commit with the same key.
//     CommitGroup does the same for several buffers with one catalog call
//     (CommitSegments), each segment with its own commit id.
//   - Upload, Commit and CommitGroup are safe for concurrent use (the WAL
//     calls Upload for several buffers at once, Commit or CommitGroup one
//     call at a time).
package flush

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/segment"
	"github.com/floebroker/floe/wal"
)

// Config configures a Sink.
type Config struct {
	// Cluster names the cluster in object keys. Required.
	Cluster string
	// AgentID is written into each segment's index. It does not change any
	// batch's byte offset, so replay by an agent with another id is safe.
	AgentID string
	// OnCommitted, if set, is called after each successful commit with the
	// object's key, its bytes and the batch rows this commit added (in object
	// order; failed and duplicate batches have no row), so the agent can warm
	// its read cache and tail index. It runs on the commit path: keep it
	// fast, and do not modify obj.
	OnCommitted func(key string, obj []byte, rows []catalog.BatchRow)
	// OnUploaded, if set, is called after each successful Put of an object,
	// before its commit, with the object's key and bytes, so the agent can
	// cache the object before any agent (itself included) learns of the
	// commit and reads it. Do not modify obj.
	OnUploaded func(key string, obj []byte)
	// MaxUploadAge bounds how old an upload may be when its commit is
	// attempted: an older one (the catalog was unreachable for a while, or
	// the upload happened in a previous process) is put again first; and
	// it bounds each commit call (see commitDeadline). The garbage
	// collector deletes uncommitted objects once they are older than its
	// grace period, which must be at least 4×MaxUploadAge; re-putting
	// restarts the object's age, so an object is never collected while a
	// commit that will reference it is on its way. Default 30s.
	MaxUploadAge time.Duration
	// MaxReplayAge bounds how old a buffer (by its Created) may be when
	// it is committed. Garbage collection keeps a collected object's
	// catalog row as a tombstone only for a bounded time (compaction's
	// TombstoneRetention, at least this long); an older buffer may have
	// been committed already with no tombstone left to say so, and
	// committing it would duplicate its batches. Such a buffer (normally
	// one replayed from a WAL directory left alone for days) is dropped
	// with a permanent error, logged loudly. Default
	// catalog.DefaultTombstoneRetention.
	MaxReplayAge time.Duration
	// PutTimeout bounds one Put of a segment object, retries and hedges
	// included, plus PutTimeoutPerMiB for each MiB of it: a transfer that
	// stalls (a connection that stops acknowledging mid-body is otherwise
	// only given up when TCP gives up, after many minutes) holds every
	// later buffer's commit, as commits go in seal order. The WAL retries
	// an upload that timed out. The checks of a replayed buffer's object
	// are bounded likewise: its Stat by PutTimeout, the read of an earlier
	// object under its key as a Put of that size. Defaults 1m and 1s.
	PutTimeout, PutTimeoutPerMiB time.Duration
	// ProducerExpiration is how long the catalog keeps an idempotent
	// producer's state on a partition without a new batch (compaction's
	// --compaction.producer-expiration). A buffer holding idempotent
	// batches is dropped, with a permanent error logged loudly, once it is
	// nine tenths that old: the producer's state may be gone, and a batch
	// the client meanwhile sent again through another agent (its retry was
	// committed and acknowledged) would be accepted as new and stored a
	// second time. Such a buffer was never acknowledged from here (its
	// commit is what acknowledges it), so dropping it loses nothing a
	// client was told is stored. 0: no such bound.
	ProducerExpiration time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// DefaultMaxUploadAge is Config.MaxUploadAge's default.
const DefaultMaxUploadAge = 30 * time.Second

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	switch {
	case ValidCluster(c.Cluster) != nil:
		return fmt.Errorf("flush: config: %w", ValidCluster(c.Cluster))
	case len(c.AgentID) > segment.MaxAgentIDLen:
		return fmt.Errorf("flush: config: agent id of %d bytes is too long", len(c.AgentID))
	case c.MaxUploadAge < 0:
		return errors.New("flush: config: max upload age must not be negative")
	case c.MaxReplayAge < 0:
		return errors.New("flush: config: max replay age must not be negative")
	case c.ProducerExpiration < 0:
		return errors.New("flush: config: producer expiration must not be negative")
	case c.PutTimeout < 0 || c.PutTimeoutPerMiB < 0:
		return errors.New("flush: config: put timeouts must not be negative")
	}
	return nil
}

// ObjectKey is the one function that names segment objects:
// "v1/<4 hex>/<cluster>/<id>.seg". The hash prefix spreads keys over the
// bucket's key space (S3 partitions request rates by key prefix).
func ObjectKey(cluster, id string) string {
	h := fnv.New32a()
	h.Write([]byte(id))
	return fmt.Sprintf("v1/%04x/%s/%s.seg", h.Sum32()>>16, cluster, id)
}

// IsClusterObject reports whether key is exactly a key ObjectKey makes for
// cluster: the orphan sweep deletes what this says is its own. A looser
// test (the cluster's name anywhere in the key) took other clusters'
// objects sharing the bucket: one named like a hash directory ("beef"),
// one named "prod" those of "team/prod", one without a prefix those of a
// cluster whose prefix starts with "v1/".
func IsClusterObject(key, cluster string) bool {
	id, ok := strings.CutSuffix(key[strings.LastIndexByte(key, '/')+1:], ".seg")
	return ok && id != "" && key == ObjectKey(cluster, id)
}

// ValidCluster checks a cluster id for use in object keys: 1 to 64 of
// A-Z a-z 0-9 . _ -, not "." or "..". Each cluster sharing a bucket (and
// prefix) must have its own.
func ValidCluster(cluster string) error {
	if cluster == "" || len(cluster) > 64 || cluster == "." || cluster == ".." {
		return fmt.Errorf("cluster id %q: want 1 to 64 characters, not . or ..", cluster)
	}
	for _, r := range cluster {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("cluster id %q: only A-Z a-z 0-9 . _ - (it names the cluster's objects)", cluster)
		}
	}
	return nil
}

// Sink implements wal.GroupSink on a bucket and a catalog.
type Sink struct {
	cfg    Config
	bucket objstore.Bucket
	cat    catalog.Catalog
	log    *slog.Logger
	m      *metrics

	mu struct {
		sync.Mutex
		// built holds each uploaded buffer's object until its commit, for
		// the placements and OnCommitted.
		built map[string]*built
	}
}

var _ wal.GroupSink = (*Sink)(nil)

type built struct {
	key      string
	obj      []byte
	refs     []catalog.BatchRef // object order
	order    []int              // refs[k] is entry order[k]
	uploaded time.Time          // zero: not put by this Sink
	// reput: the object may have been in the bucket, old, before this
	// Sink put it (a replay, or a put again before a late commit), so an
	// orphan sweep may have judged the old one (see ensureStored).
	reput bool
}

// New returns a Sink. cfg must be valid (see Config.Validate); an invalid
// one panics, as the agent validates configuration at start. logger and reg
// may be nil.
func New(cfg Config, bucket objstore.Bucket, cat catalog.Catalog, logger *slog.Logger, reg prometheus.Registerer) *Sink {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxUploadAge == 0 {
		cfg.MaxUploadAge = DefaultMaxUploadAge
	}
	if cfg.MaxReplayAge == 0 {
		cfg.MaxReplayAge = catalog.DefaultTombstoneRetention
	}
	if cfg.PutTimeout == 0 {
		cfg.PutTimeout = objstore.DefaultBounds.Call
	}
	if cfg.PutTimeoutPerMiB == 0 {
		cfg.PutTimeoutPerMiB = objstore.DefaultBounds.PutPerMiB
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Sink{cfg: cfg, bucket: bucket, cat: cat, log: logger, m: newMetrics(reg)}
	s.mu.built = make(map[string]*built)
	return s
}

// build lays out b's segment object. It depends only on cfg and b.
func (s *Sink) build(b *wal.Sealed) *built {
	w := segment.NewWriter(segment.Header{AgentID: s.cfg.AgentID, Created: b.Created})
	w.Grow(len(b.Entries))
	for _, e := range b.Entries {
		w.Add(e.TopicPartition, e.Batch, segment.BatchMeta{
			Records:        e.Records,
			FirstTimestamp: e.FirstTimestamp,
			MaxTimestamp:   e.MaxTimestamp,
			ProducerID:     e.ProducerID,
		})
	}
	order := w.Order()
	obj, placements := w.Finish()
	refs := make([]catalog.BatchRef, len(order))
	for k, i := range order {
		e := &b.Entries[i]
		refs[k] = catalog.BatchRef{
			TopicPartition: e.TopicPartition,
			ByteOffset:     placements[i].ByteOffset,
			ByteLength:     placements[i].ByteLength,
			OffsetSpan:     e.OffsetSpan,
			Records:        e.Records,
			FirstTimestamp: e.FirstTimestamp,
			MaxTimestamp:   e.MaxTimestamp,
			ProducerID:     e.ProducerID,
			ProducerEpoch:  e.ProducerEpoch,
			BaseSequence:   e.BaseSequence,
		}
	}
	return &built{key: ObjectKey(s.cfg.Cluster, b.ID), obj: obj, refs: refs, order: order}
}

// Upload builds b's segment object and puts it. A replayed buffer is put
// again even if a previous process already put it: the batch bytes and
// offsets are identical (only the index's agent id may differ), and the
// fresh put restarts the object's age so the garbage collector cannot take
// it before the commit that follows.
func (s *Sink) Upload(ctx context.Context, b *wal.Sealed) error {
	if err := s.checkAge(b); err != nil {
		return err
	}
	bu := s.build(b)
	if b.Replayed {
		if err := s.adoptExisting(ctx, bu); err != nil {
			return err
		}
		bu.reput = true
	}
	if err := s.put(ctx, bu); err != nil {
		return err
	}
	s.remember(b.ID, bu)
	return nil
}

// adoptExisting makes bu's bytes those of the object an earlier process
// put under its key, if there is one of another size. Only the index's
// agent id differs, but an id of another length changes the object's size,
// and if that process committed too, the catalog keeps its size (the
// commit is idempotent per key) while readers trust it: a whole-object
// read of that size would be cut short, the footer would not be where the
// size puts it. The batches sit at the same offsets in both, so bu's refs
// stand; an object whose body differs is not adopted.
func (s *Sink) adoptExisting(ctx context.Context, bu *built) error {
	info, err := s.stat(ctx, bu.key)
	if errors.Is(err, objstore.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("flush: stat %s: %w", bu.key, err)
	}
	if info.Size == int64(len(bu.obj)) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.bounds().Put(info.Size))
	defer cancel()
	rc, err := s.bucket.Get(ctx, bu.key)
	if errors.Is(err, objstore.ErrNotExist) {
		return nil // collected since the Stat: nothing to adopt
	}
	if err != nil {
		return fmt.Errorf("flush: get %s: %w", bu.key, err)
	}
	old, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("flush: get %s: %w", bu.key, err)
	}
	bodyEnd := int64(segment.HeaderSize)
	for _, r := range bu.refs {
		bodyEnd = max(bodyEnd, r.ByteOffset+r.ByteLength)
	}
	if _, err := segment.DecodeIndex(old, int64(len(old))); err != nil || int64(len(old)) < bodyEnd || !bytes.Equal(old[:bodyEnd], bu.obj[:bodyEnd]) {
		s.log.Warn("flush: a replayed buffer's object in the bucket differs from its rebuild; putting the rebuild", "key", bu.key, "err", err)
		return nil
	}
	bu.obj = old
	return nil
}

// bounds are the bounds of the Sink's calls on the bucket: without them a
// call on a store that stopped answering waits as long as the backend's
// client lets it (on GCS, no bound at all), and an upload or a commit,
// and so every later buffer's commit and produce ack, with it.
func (s *Sink) bounds() objstore.Bounds {
	return objstore.Bounds{Call: s.cfg.PutTimeout, PutPerMiB: s.cfg.PutTimeoutPerMiB}
}

// stat is a bounded Stat.
func (s *Sink) stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, s.bounds().Call)
	defer cancel()
	return s.bucket.Stat(ctx, key)
}

func (s *Sink) put(ctx context.Context, bu *built) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.bounds().Put(int64(len(bu.obj))))
	defer cancel()
	if err := s.bucket.Put(ctx, bu.key, bytes.NewReader(bu.obj), int64(len(bu.obj))); err != nil {
		s.m.putErrors.Inc()
		return fmt.Errorf("flush: put %s: %w", bu.key, err)
	}
	s.m.putSeconds.Observe(time.Since(start).Seconds())
	s.m.objectBytes.Observe(float64(len(bu.obj)))
	bu.uploaded = s.cfg.Now()
	if s.cfg.OnUploaded != nil {
		s.cfg.OnUploaded(bu.key, bu.obj)
	}
	return nil
}

func (s *Sink) remember(id string, bu *built) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.built[id] = bu
}

// Commit commits b's uploaded object in one catalog transaction and returns
// the results in entry order.
func (s *Sink) Commit(ctx context.Context, b *wal.Sealed) ([]catalog.BatchResult, error) {
	if err := s.checkAge(b); err != nil {
		s.Forget(b.ID)
		return nil, err
	}
	s.mu.Lock()
	bu := s.mu.built[b.ID]
	s.mu.Unlock()
	if bu == nil {
		// Upload ran in another Sink (or process); the layout is
		// deterministic, so rebuild it.
		bu = s.build(b)
		if err := s.adoptExisting(ctx, bu); err != nil {
			return nil, err
		}
	}
	if bu.uploaded.IsZero() || s.cfg.Now().Sub(bu.uploaded) > s.cfg.MaxUploadAge {
		// See Config.MaxUploadAge: never commit an object that may be
		// old enough for the garbage collector to take.
		if err := s.put(ctx, bu); err != nil {
			return nil, err
		}
		bu.reput = true
	}
	start := time.Now()
	cctx, cancel := s.commitDeadline(ctx)
	defer cancel()
	res, err := s.cat.CommitSegment(cctx, bu.segment())
	if err != nil {
		s.m.commitErrors.Inc()
		err = fmt.Errorf("flush: commit segment %s: %w", bu.key, err)
		if errors.Is(err, catalog.ErrInvalidSegment) {
			// Retrying the same segment cannot succeed: it would hold
			// every buffer sealed after it until shutdown. Its appends
			// fail instead, and the buffers behind it commit.
			s.Forget(b.ID)
			return nil, wal.Permanent(err)
		}
		return nil, err
	}
	s.m.commitSeconds.Observe(time.Since(start).Seconds())
	// Committed (or never retried again): the WAL will not call Commit for
	// this buffer again in this process.
	s.Forget(b.ID)
	if err := bu.checkResults(res); err != nil {
		return nil, wal.Permanent(err)
	}
	if bu.reput {
		s.ensureStored(ctx, bu)
	}
	return s.committed(bu, res), nil
}

// ensureStored puts bu's object once more if it is missing after its
// commit. An orphan sweep (of any agent) that found the old object of a
// key put again here unknown to the catalog, and then old enough, may
// delete it after it looked at the object one last time — and so after
// the put again, which its delete then removes. Once committed the object
// is known, so no sweep takes it again: putting it back restores what the
// commit references. (Readers meanwhile get the object's absence, a
// retriable error.)
func (s *Sink) ensureStored(ctx context.Context, bu *built) {
	_, err := s.stat(ctx, bu.key)
	switch {
	case err == nil:
		return
	case !errors.Is(err, objstore.ErrNotExist):
		s.log.Warn("flush: could not check that a committed object put again is still stored", "key", bu.key, "err", err)
		return
	}
	s.log.Warn("flush: a committed object put again was deleted by an orphan sweep meanwhile; putting it back", "key", bu.key)
	if err := s.put(ctx, bu); err != nil {
		s.log.Error("flush: putting back a committed object failed; its records are unreadable until it is put", "key", bu.key, "err", err)
	}
}

// CommitGroup commits the uploaded objects of bs in one CommitSegments
// call and returns each buffer's results in entry order. It takes only
// buffers on Commit's fast path: uploaded by this Sink recently enough
// and young enough to commit. For any other it returns an error without
// touching the catalog, and the WAL's per-buffer Commit calls that follow
// rebuild, re-put or drop it as Commit does; those calls get the results
// of whatever a failed CommitSegments did commit (it is idempotent per
// key).
func (s *Sink) CommitGroup(ctx context.Context, bs []*wal.Sealed) ([][]catalog.BatchResult, error) {
	if len(bs) == 0 {
		return nil, nil
	}
	bus := make([]*built, len(bs))
	segs := make([]catalog.Segment, len(bs))
	now := s.cfg.Now()
	s.mu.Lock()
	for i, b := range bs {
		bus[i] = s.mu.built[b.ID]
	}
	s.mu.Unlock()
	for i, b := range bs {
		bu := bus[i]
		switch {
		case now.Sub(b.Created) > s.cfg.MaxReplayAge, s.idempotentTooOld(b, now.Sub(b.Created)):
			// Commit refuses it (checkAge), logging why.
			return nil, fmt.Errorf("flush: commit group: buffer %s is too old to commit", b.ID)
		case bu == nil:
			return nil, fmt.Errorf("flush: commit group: buffer %s was not uploaded by this sink", b.ID)
		case bu.uploaded.IsZero() || now.Sub(bu.uploaded) > s.cfg.MaxUploadAge:
			return nil, fmt.Errorf("flush: commit group: object %s must be put again first", bu.key)
		}
		segs[i] = bu.segment()
	}
	start := time.Now()
	cctx, cancel := s.commitDeadline(ctx)
	defer cancel()
	res, err := s.cat.CommitSegments(cctx, segs)
	if err != nil {
		s.m.commitErrors.Inc()
		return nil, fmt.Errorf("flush: commit %d segments from %s: %w", len(segs), segs[0].Key, err)
	}
	s.m.commitSeconds.Observe(time.Since(start).Seconds())
	if len(res) != len(bs) {
		return nil, fmt.Errorf("flush: commit %d segments from %s: catalog returned %d results", len(segs), segs[0].Key, len(res))
	}
	// Check every result before running any hook: on an error the WAL
	// commits each buffer again, and Commit reports the bad one.
	for i, bu := range bus {
		if err := bu.checkResults(res[i]); err != nil {
			return nil, err
		}
	}
	out := make([][]catalog.BatchResult, len(bs))
	for i, b := range bs {
		s.Forget(b.ID)
		if bus[i].reput {
			s.ensureStored(ctx, bus[i])
		}
		out[i] = s.committed(bus[i], res[i])
	}
	return out, nil
}

func (bu *built) segment() catalog.Segment {
	return catalog.Segment{Key: bu.key, Size: int64(len(bu.obj)), Batches: bu.refs}
}

// checkResults checks that res has a result for each of bu's batches.
func (bu *built) checkResults(res catalog.CommitResult) error {
	if len(res.Results) != len(bu.refs) {
		return fmt.Errorf("flush: commit segment %s: catalog returned %d results for %d batches", bu.key, len(res.Results), len(bu.refs))
	}
	return nil
}

// committed delivers the commit res of bu (checked by checkResults): it
// counts the batches, passes the rows it stored to OnCommitted and
// returns the results in entry order.
func (s *Sink) committed(bu *built, res catalog.CommitResult) []catalog.BatchResult {
	out := make([]catalog.BatchResult, len(res.Results))
	var rows []catalog.BatchRow
	if s.cfg.OnCommitted != nil {
		rows = make([]catalog.BatchRow, 0, len(res.Results))
	}
	var failed, dups int
	for k := range res.Results {
		r := &res.Results[k]
		out[bu.order[k]] = *r
		switch {
		case r.Err != nil:
			failed++
		case r.Duplicate:
			dups++
		default:
			if s.cfg.OnCommitted != nil {
				ref := &bu.refs[k]
				rows = append(rows, catalog.BatchRow{
					TopicPartition: ref.TopicPartition,
					BaseOffset:     r.BaseOffset,
					LastOffset:     r.BaseOffset + int64(ref.OffsetSpan) - 1,
					ObjectKey:      bu.key,
					ByteOffset:     ref.ByteOffset,
					ByteLength:     ref.ByteLength,
					Records:        ref.Records,
					MaxTimestamp:   ref.MaxTimestamp,
					CommitID:       res.CommitID,
					ObjectSize:     int64(len(bu.obj)),
				})
			}
		}
	}
	// Counted per commit, not per batch: a flush may hold thousands.
	s.m.batchesOK.Add(float64(len(res.Results) - failed - dups))
	s.m.batchesDup.Add(float64(dups))
	s.m.batchesErr.Add(float64(failed))
	if s.cfg.OnCommitted != nil {
		s.cfg.OnCommitted(bu.key, bu.obj, rows)
	}
	return out
}

// commitDeadline bounds one commit call, retries inside the catalog
// included, to MaxUploadAge: the objects it commits were put at most
// MaxUploadAge ago, so the commit lands within twice that of their put,
// well inside the garbage collector's grace for objects the catalog does
// not know (which must be at least 4×MaxUploadAge). Without the bound a
// catalog retrying for minutes could commit an object the orphan sweep
// had already deleted. A commit cut short is retried by the WAL, which
// puts the object again first.
func (s *Sink) commitDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.MaxUploadAge)
}

// checkAge refuses a buffer older than MaxReplayAge, or holding idempotent
// batches and older than nine tenths of ProducerExpiration (see there).
func (s *Sink) checkAge(b *wal.Sealed) error {
	age := s.cfg.Now().Sub(b.Created)
	if s.idempotentTooOld(b, age) {
		pe := s.cfg.ProducerExpiration
		s.log.Error("flush: refusing a WAL buffer of idempotent batches older than the producer expiration allows: their producers' state may be gone, and a batch retried through another agent would be stored twice; its batches are dropped (none was acknowledged unless this buffer was committed before, and then they are stored already)",
			"buffer", b.ID, "created", b.Created, "age", age, "producer_expiration", pe, "replayed", b.Replayed, "entries", len(b.Entries))
		return wal.Permanent(fmt.Errorf("flush: buffer %s of idempotent batches is %s old, too old for the producer expiration %s", b.ID, age.Round(time.Second), pe))
	}
	if age <= s.cfg.MaxReplayAge {
		return nil
	}
	s.log.Error("flush: refusing a WAL buffer older than the max replay age: its commit may already have happened and no longer be recognisable; its batches are dropped",
		"buffer", b.ID, "created", b.Created, "age", age, "max_replay_age", s.cfg.MaxReplayAge, "replayed", b.Replayed, "entries", len(b.Entries))
	return wal.Permanent(fmt.Errorf("flush: buffer %s is %s old, older than the max replay age %s", b.ID, age.Round(time.Second), s.cfg.MaxReplayAge))
}

// idempotentTooOld reports whether b, age old, holds idempotent batches
// and is older than nine tenths of ProducerExpiration (see there).
func (s *Sink) idempotentTooOld(b *wal.Sealed, age time.Duration) bool {
	pe := s.cfg.ProducerExpiration
	return pe > 0 && age > pe/10*9 && hasIdempotent(b)
}

// hasIdempotent reports whether b holds a batch of an idempotent producer.
func hasIdempotent(b *wal.Sealed) bool {
	for _, e := range b.Entries {
		if e.ProducerID >= 0 {
			return true
		}
	}
	return false
}

// Forget drops what Upload kept for buffer id. Commit does it; an owner
// that abandons a buffer between Upload and Commit can call it to free the
// object's memory.
func (s *Sink) Forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mu.built, id)
}
