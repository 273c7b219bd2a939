package flush

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/mem"
	"github.com/floebroker/floe/segment"
	"github.com/floebroker/floe/wal"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func tp(topic byte, part int32) catalog.TopicPartition {
	return catalog.TopicPartition{TopicID: catalog.TopicID{topic}, Partition: part}
}

// fakeCatalog implements CommitSegment and CommitSegments like a catalog:
// offsets per partition, idempotent per key. Other methods are not used by
// Sink.
type fakeCatalog struct {
	catalog.Catalog
	mu       sync.Mutex
	next     map[catalog.TopicPartition]int64
	byKey    map[string]catalog.CommitResult
	segments []catalog.Segment
	commitID int64
	err      error // returned by the next CommitSegment(s) call, once
	short    bool  // return one result too few
	// failAfter > 0 makes the next CommitSegments commit that many
	// segments and then fail with err, once.
	failAfter int
	groups    []int // segments per CommitSegments call
}

func newFakeCatalog() *fakeCatalog {
	return &fakeCatalog{next: map[catalog.TopicPartition]int64{}, byKey: map[string]catalog.CommitResult{}}
}

func (c *fakeCatalog) CommitSegment(_ context.Context, seg catalog.Segment) (catalog.CommitResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.err; err != nil {
		c.err = nil
		return catalog.CommitResult{}, err
	}
	return c.commitLocked(seg), nil
}

func (c *fakeCatalog) CommitSegments(_ context.Context, segs []catalog.Segment) ([]catalog.CommitResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.groups = append(c.groups, len(segs))
	if err := c.err; err != nil && c.failAfter == 0 {
		c.err = nil
		return nil, err
	}
	out := make([]catalog.CommitResult, len(segs))
	for i, seg := range segs {
		if c.failAfter > 0 && i == c.failAfter {
			err := c.err
			c.err, c.failAfter = nil, 0
			return nil, err
		}
		out[i] = c.commitLocked(seg)
	}
	return out, nil
}

func (c *fakeCatalog) commitLocked(seg catalog.Segment) catalog.CommitResult {
	if r, ok := c.byKey[seg.Key]; ok {
		return r
	}
	c.commitID++
	r := catalog.CommitResult{CommitID: c.commitID}
	for _, b := range seg.Batches {
		if b.ProducerID == 99 { // the test's fenced producer
			r.Results = append(r.Results, catalog.BatchResult{Err: catalog.ErrInvalidProducerEpoch})
			continue
		}
		r.Results = append(r.Results, catalog.BatchResult{BaseOffset: c.next[b.TopicPartition]})
		c.next[b.TopicPartition] += int64(b.OffsetSpan)
	}
	if c.short {
		r.Results = r.Results[1:]
	}
	c.byKey[seg.Key] = r
	c.segments = append(c.segments, seg)
	return r
}

// countingBucket counts Puts.
type countingBucket struct {
	objstore.Bucket
	mu   sync.Mutex
	puts int
	err  error
}

func (b *countingBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	b.mu.Lock()
	b.puts++
	err := b.err
	b.mu.Unlock()
	if err != nil {
		return err
	}
	return b.Bucket.Put(ctx, key, r, size)
}

func entry(t catalog.TopicPartition, batch string, span int32, pid int64) wal.Entry {
	return wal.Entry{TopicPartition: t, Batch: []byte(batch), OffsetSpan: span, Records: span,
		FirstTimestamp: 10, MaxTimestamp: 20, ProducerID: pid, ProducerEpoch: 0, BaseSequence: 0}
}

// testCreated is the fixture buffers' creation time: fixed within a run,
// recent enough for Config.MaxReplayAge.
var testCreated = time.Now().UTC().Truncate(time.Second)

func sealed() *wal.Sealed {
	return &wal.Sealed{
		ID:      "01J0000000000000000000000A",
		Created: testCreated,
		Entries: []wal.Entry{
			entry(tp(2, 0), "two-zero", 3, -1),
			entry(tp(1, 5), "one-five", 1, 7),
			entry(tp(2, 0), "two-zero-again", 2, -1),
			entry(tp(1, 5), "fenced", 1, 99),
		},
		Bytes: 36,
	}
}

func TestObjectKey(t *testing.T) {
	k := ObjectKey("prod", "01J0000000000000000000000A")
	if !regexp.MustCompile(`^v1/[0-9a-f]{4}/prod/01J0000000000000000000000A\.seg$`).MatchString(k) {
		t.Fatalf("key %q", k)
	}
	if k != ObjectKey("prod", "01J0000000000000000000000A") {
		t.Fatal("not deterministic")
	}
	prefixes := map[string]bool{}
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		prefixes[ObjectKey("c", id)[:7]] = true
	}
	if len(prefixes) < 6 {
		t.Fatalf("hash prefixes do not spread: %v", prefixes)
	}
}

func TestUploadCommit(t *testing.T) {
	ctx := context.Background()
	bucket := mem.New(nil)
	cat := newFakeCatalog()
	var gotKey string
	var gotObj []byte
	var gotRows []catalog.BatchRow
	s := New(Config{Cluster: "c1", AgentID: "agent-a", OnCommitted: func(key string, obj []byte, rows []catalog.BatchRow) {
		gotKey, gotObj, gotRows = key, obj, rows
	}}, bucket, cat, nil, prometheus.NewRegistry())
	b := sealed()
	if err := s.Upload(ctx, b); err != nil {
		t.Fatal(err)
	}
	key := ObjectKey("c1", b.ID)
	info, err := bucket.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := segment.ReadIndex(ctx, bucket, key, info.Size)
	if err != nil {
		t.Fatal(err)
	}
	if idx.Header.AgentID != "agent-a" || !idx.Header.Created.Equal(b.Created) || len(idx.Runs) != 2 {
		t.Fatalf("index %+v", idx)
	}

	res, err := s.Commit(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	// Entry order: tp(2,0) "two-zero" 0, tp(1,5) 0, tp(2,0) 3, fenced.
	want := []catalog.BatchResult{{BaseOffset: 0}, {BaseOffset: 0}, {BaseOffset: 3}, {Err: catalog.ErrInvalidProducerEpoch}}
	if !slices.Equal(res, want) {
		t.Fatalf("results %+v, want %+v", res, want)
	}
	seg := cat.segments[0]
	if seg.Key != key || seg.Size != info.Size {
		t.Fatalf("segment %s %d", seg.Key, seg.Size)
	}
	obj, _ := readAll(ctx, bucket, key)
	// Object order, and every ref slices out its batch.
	wantBatches := []string{"one-five", "fenced", "two-zero", "two-zero-again"}
	for k, ref := range seg.Batches {
		if got := string(obj[ref.ByteOffset : ref.ByteOffset+ref.ByteLength]); got != wantBatches[k] {
			t.Fatalf("ref %d slices %q, want %q", k, got, wantBatches[k])
		}
	}
	if r := seg.Batches[0]; r.ProducerID != 7 || r.OffsetSpan != 1 || r.MaxTimestamp != 20 {
		t.Fatalf("ref fields %+v", r)
	}
	// The hook saw the object and the rows it added (not the fenced batch).
	if gotKey != key || !bytes.Equal(gotObj, obj) || len(gotRows) != 3 {
		t.Fatalf("OnCommitted(%q, %d bytes, %+v)", gotKey, len(gotObj), gotRows)
	}
	if r := gotRows[2]; r.TopicPartition != tp(2, 0) || r.BaseOffset != 3 || r.LastOffset != 4 || r.CommitID != 1 || r.ObjectKey != key {
		t.Fatalf("row %+v", r)
	}
	if len(s.mu.built) != 0 {
		t.Fatal("upload state kept after commit")
	}
}

func readAll(ctx context.Context, b objstore.Bucket, key string) ([]byte, error) {
	rc, err := b.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestDeterministicObject(t *testing.T) {
	ctx := context.Background()
	b1, b2 := mem.New(nil), mem.New(nil)
	New(Config{Cluster: "c", AgentID: "x"}, b1, newFakeCatalog(), nil, nil).Upload(ctx, sealed())
	New(Config{Cluster: "c", AgentID: "x"}, b2, newFakeCatalog(), nil, nil).Upload(ctx, sealed())
	key := ObjectKey("c", sealed().ID)
	o1, err1 := readAll(ctx, b1, key)
	o2, err2 := readAll(ctx, b2, key)
	if err1 != nil || err2 != nil || !bytes.Equal(o1, o2) {
		t.Fatalf("replayed upload differs (%v, %v)", err1, err2)
	}
}

// A replayed buffer whose object an earlier process (with another agent
// id) already put is put again (restarting its age for the garbage
// collector) and re-commits to the first commit's results.
func TestReplayedUploadPutsAgainAndRecommitsOnce(t *testing.T) {
	ctx := context.Background()
	bucket := &countingBucket{Bucket: mem.New(nil)}
	cat := newFakeCatalog()
	first := New(Config{Cluster: "c", AgentID: "old-agent"}, bucket, cat, nil, nil)
	if err := first.Upload(ctx, sealed()); err != nil {
		t.Fatal(err)
	}
	res1, err := first.Commit(ctx, sealed())
	if err != nil {
		t.Fatal(err)
	}

	second := New(Config{Cluster: "c", AgentID: "a-new-and-longer-agent-id"}, bucket, cat, nil, nil)
	b := sealed()
	b.Replayed = true
	if err := second.Upload(ctx, b); err != nil {
		t.Fatal(err)
	}
	if bucket.puts != 2 {
		t.Fatalf("%d puts, want 2", bucket.puts)
	}
	res2, err := second.Commit(ctx, b)
	if err != nil || !slices.Equal(res1, res2) {
		t.Fatalf("re-commit %v %v, want %v", res2, err, res1)
	}
	if len(cat.segments) != 1 {
		t.Fatal("committed twice")
	}
	if bucket.puts != 2 {
		t.Fatalf("%d puts after a fresh upload's commit, want 2", bucket.puts)
	}
}

// A commit attempted long after its upload puts the object again first.
func TestStaleUploadIsPutAgainBeforeCommit(t *testing.T) {
	ctx := context.Background()
	bucket := &countingBucket{Bucket: mem.New(nil)}
	now := time.Unix(1000, 0)
	s := New(Config{Cluster: "c", AgentID: "x", MaxUploadAge: time.Minute, Now: func() time.Time { return now }}, bucket, newFakeCatalog(), nil, nil)
	if err := s.Upload(ctx, sealed()); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := s.Commit(ctx, sealed()); err != nil {
		t.Fatal(err)
	}
	if bucket.puts != 2 {
		t.Fatalf("%d puts, want 2", bucket.puts)
	}
}

func TestCommitWithoutUploadRebuilds(t *testing.T) {
	ctx := context.Background()
	cat := newFakeCatalog()
	a := New(Config{Cluster: "c", AgentID: "x"}, mem.New(nil), cat, nil, nil)
	b := New(Config{Cluster: "c", AgentID: "x"}, mem.New(nil), newFakeCatalog(), nil, nil)
	a.Upload(ctx, sealed())
	b.Upload(ctx, sealed())
	c := New(Config{Cluster: "c", AgentID: "x"}, mem.New(nil), cat, nil, nil)
	if _, err := c.Commit(ctx, sealed()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit(ctx, sealed()); err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(cat.segments[0].Batches, b.cat.(*fakeCatalog).segments[0].Batches, func(x, y catalog.BatchRef) bool { return x == y }) {
		t.Fatal("rebuilt refs differ")
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("503")
	bucket := &countingBucket{Bucket: mem.New(nil), err: boom}
	cat := newFakeCatalog()
	s := New(Config{Cluster: "c"}, bucket, cat, nil, nil)
	if err := s.Upload(ctx, sealed()); !errors.Is(err, boom) || wal.IsPermanent(err) {
		t.Fatalf("put error: %v", err)
	}
	bucket.err = nil
	cat.err = catalog.ErrCommitUnknown
	if _, err := s.Commit(ctx, sealed()); !errors.Is(err, catalog.ErrCommitUnknown) || wal.IsPermanent(err) {
		t.Fatalf("commit error: %v", err)
	}
	// A segment the catalog refuses as invalid fails its appends rather
	// than being retried, holding up every buffer behind it, forever.
	cat.err = fmt.Errorf("%w: batch 0: offset span 0 < 1", catalog.ErrInvalidSegment)
	if _, err := s.Commit(ctx, sealed()); !errors.Is(err, catalog.ErrInvalidSegment) || !wal.IsPermanent(err) {
		t.Fatalf("invalid segment: %v, want a permanent error", err)
	}
	cat.err = nil
	cat.short = true
	if _, err := s.Commit(ctx, sealed()); !wal.IsPermanent(err) {
		t.Fatalf("short results: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if (Config{}).Validate() == nil {
		t.Fatal("empty cluster accepted")
	}
	if err := (Config{Cluster: "c"}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// The WAL and the sink together: an append is acknowledged with offsets
// once its object is in the bucket and committed.
func TestWithWAL(t *testing.T) {
	bucket := mem.New(nil)
	cat := newFakeCatalog()
	sink := New(Config{Cluster: "c", AgentID: "a"}, bucket, cat, nil, nil)
	l, err := wal.Open(wal.Config{Dir: "/w", FS: wal.NewMemFS(), FlushInterval: 5 * time.Millisecond}, sink)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	ack, err := l.Append(ctx, []wal.Entry{entry(tp(1, 0), "hello", 2, -1), entry(tp(1, 0), "world", 1, -1)})
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	res, err := ack.Wait(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].BaseOffset != 0 || res[1].BaseOffset != 2 {
		t.Fatalf("results %+v", res)
	}
	seg := cat.segments[0]
	obj, err := readAll(ctx, bucket, seg.Key)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(obj[seg.Batches[1].ByteOffset:][:seg.Batches[1].ByteLength]); got != "world" {
		t.Fatalf("batch 1 is %q", got)
	}
}

// OnUploaded sees the object, whole, before the commit that references it,
// so an agent can cache it before anyone learns of the commit.
func TestOnUploadedRunsBeforeCommit(t *testing.T) {
	ctx := context.Background()
	cat := newFakeCatalog()
	var events []string
	var cached []byte
	s := New(Config{
		Cluster: "c", AgentID: "x",
		OnUploaded: func(key string, obj []byte) {
			events = append(events, "uploaded")
			cached = obj
		},
		OnCommitted: func(string, []byte, []catalog.BatchRow) {
			if len(cat.segments) != 1 {
				t.Error("OnCommitted before the catalog commit")
			}
			events = append(events, "committed")
		},
	}, mem.New(nil), cat, nil, nil)
	if err := s.Upload(ctx, sealed()); err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || len(cat.segments) != 0 {
		t.Fatalf("after Upload: events %v, %d commits", events, len(cat.segments))
	}
	if _, err := s.Commit(ctx, sealed()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(events, []string{"uploaded", "committed"}) {
		t.Fatalf("events %v", events)
	}
	if want := s.build(sealed()).obj; !bytes.Equal(cached, want) {
		t.Fatal("OnUploaded got other bytes than the object put")
	}
}

// A buffer replayed after its commit, by an agent whose id has another
// length, builds an object of another size than the one the catalog
// recorded. The object in the bucket must keep the committed size: readers
// take the size from the catalog (a whole-object read of the recorded size
// would be cut short, ReadIndex would miss the footer).
func TestReplayAfterCommitKeepsCommittedSize(t *testing.T) {
	for _, ids := range [][2]string{{"a-long-original-agent-id", "short"}, {"short", "a-long-replaying-agent-id"}} {
		ctx := context.Background()
		bucket := &countingBucket{Bucket: mem.New(nil)}
		cat := newFakeCatalog()
		first := New(Config{Cluster: "c", AgentID: ids[0]}, bucket, cat, nil, nil)
		if err := first.Upload(ctx, sealed()); err != nil {
			t.Fatal(err)
		}
		res1, err := first.Commit(ctx, sealed())
		if err != nil {
			t.Fatal(err)
		}
		var cached []byte
		second := New(Config{Cluster: "c", AgentID: ids[1], OnCommitted: func(_ string, obj []byte, _ []catalog.BatchRow) { cached = obj }}, bucket, cat, nil, nil)
		b := sealed()
		b.Replayed = true
		if err := second.Upload(ctx, b); err != nil {
			t.Fatal(err)
		}
		res2, err := second.Commit(ctx, b)
		if err != nil || !slices.Equal(res1, res2) {
			t.Fatalf("re-commit %v %v, want %v", res2, err, res1)
		}
		if bucket.puts != 2 {
			t.Fatalf("%d puts, want 2 (a replay puts again)", bucket.puts)
		}
		seg := cat.segments[0]
		obj, err := readAll(ctx, bucket, seg.Key)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(obj)) != seg.Size || int64(len(cached)) != seg.Size {
			t.Fatalf("%s then %s: catalog size %d, object %d bytes, cached %d bytes", ids[0], ids[1], seg.Size, len(obj), len(cached))
		}
		if _, err := segment.ReadIndex(ctx, bucket, seg.Key, seg.Size); err != nil {
			t.Fatalf("%s then %s: %v", ids[0], ids[1], err)
		}
		for k, ref := range seg.Batches {
			if e := sealed().Entries; !slices.ContainsFunc(e, func(e wal.Entry) bool {
				return string(e.Batch) == string(obj[ref.ByteOffset:ref.ByteOffset+ref.ByteLength])
			}) {
				t.Fatalf("ref %d slices %q", k, obj[ref.ByteOffset:ref.ByteOffset+ref.ByteLength])
			}
		}
	}
}

// hangingCatalog's commits wait until their context ends, as a catalog
// retrying a lost connection for minutes does.
type hangingCatalog struct{ *fakeCatalog }

func (c hangingCatalog) CommitSegment(ctx context.Context, _ catalog.Segment) (catalog.CommitResult, error) {
	<-ctx.Done()
	return catalog.CommitResult{}, ctx.Err()
}

func (c hangingCatalog) CommitSegments(ctx context.Context, _ []catalog.Segment) ([]catalog.CommitResult, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestCommitCallBounded: one commit call lasts at most MaxUploadAge, so
// it lands within twice that of its object's put, inside the garbage
// collector's grace for objects the catalog does not know; a commit cut
// short is retried by the WAL, which puts the object again first.
func TestCommitCallBounded(t *testing.T) {
	// Bounded here too, so that a Sink without the bound fails the test
	// instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s := New(Config{Cluster: "c", AgentID: "x", MaxUploadAge: 100 * time.Millisecond}, mem.New(nil), hangingCatalog{newFakeCatalog()}, nil, nil)
	b := sealed()
	if err := s.Upload(ctx, b); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := s.CommitGroup(ctx, []*wal.Sealed{b}); err == nil || time.Since(start) > time.Second {
		t.Fatalf("group commit against a hanging catalog: %v after %v", err, time.Since(start))
	}
	start = time.Now()
	if _, err := s.Commit(ctx, b); err == nil || time.Since(start) > time.Second {
		t.Fatalf("commit against a hanging catalog: %v after %v", err, time.Since(start))
	}
}

// sweepingCatalog deletes the committed object from the bucket just before
// committing it, as an orphan sweep whose last look predates the put again
// would.
type sweepingCatalog struct {
	*fakeCatalog
	bucket objstore.Bucket
}

func (c sweepingCatalog) CommitSegment(ctx context.Context, seg catalog.Segment) (catalog.CommitResult, error) {
	if err := c.bucket.Delete(ctx, seg.Key); err != nil {
		return catalog.CommitResult{}, err
	}
	return c.fakeCatalog.CommitSegment(ctx, seg)
}

// TestObjectPutAgainIsRestoredAfterCommit: a replayed buffer's object,
// deleted by an orphan sweep between its put again and its commit, is put
// back once the commit makes it known, so the committed records keep
// their bytes.
func TestObjectPutAgainIsRestoredAfterCommit(t *testing.T) {
	ctx := context.Background()
	bucket := mem.New(nil)
	s := New(Config{Cluster: "c", AgentID: "x", Now: func() time.Time { return testCreated }}, bucket, sweepingCatalog{newFakeCatalog(), bucket}, nil, nil)
	b := sealed()
	b.Replayed = true
	if err := s.Upload(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := bucket.Stat(ctx, ObjectKey("c", b.ID)); err != nil {
		t.Fatalf("the committed object after a sweep deleted it: %v", err)
	}
}

// sweepingGroupCatalog is sweepingCatalog for group commits.
type sweepingGroupCatalog struct{ sweepingCatalog }

func (c sweepingGroupCatalog) CommitSegments(ctx context.Context, segs []catalog.Segment) ([]catalog.CommitResult, error) {
	for _, seg := range segs {
		if err := c.bucket.Delete(ctx, seg.Key); err != nil {
			return nil, err
		}
	}
	return c.fakeCatalog.CommitSegments(ctx, segs)
}

// TestGroupCommitRestoresObjectPutAgain: as TestObjectPutAgainIsRestoredAfterCommit,
// for a replayed buffer committed in a group.
func TestGroupCommitRestoresObjectPutAgain(t *testing.T) {
	ctx := context.Background()
	bucket := mem.New(nil)
	s := New(Config{Cluster: "c", AgentID: "x", Now: func() time.Time { return testCreated }}, bucket,
		sweepingGroupCatalog{sweepingCatalog{newFakeCatalog(), bucket}}, nil, nil)
	b := sealed()
	b.Replayed = true
	if err := s.Upload(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CommitGroup(ctx, []*wal.Sealed{b}); err != nil {
		t.Fatal(err)
	}
	if _, err := bucket.Stat(ctx, ObjectKey("c", b.ID)); err != nil {
		t.Fatalf("the committed object after a sweep deleted it: %v", err)
	}
}

// stallingBucket's Puts hang until their context ends, as a transfer
// whose connection stopped acknowledging does.
type stallingBucket struct{ objstore.Bucket }

func (stallingBucket) Put(ctx context.Context, _ string, _ io.Reader, _ int64) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestPutBounded: a stalled upload is given up after PutTimeout (plus its
// per-MiB allowance), so the WAL retries it instead of every later
// buffer's commit waiting for TCP to give up.
func TestPutBounded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second) // fails instead of hanging without the bound
	defer cancel()
	s := New(Config{Cluster: "c", AgentID: "x", PutTimeout: 100 * time.Millisecond}, stallingBucket{mem.New(nil)}, newFakeCatalog(), nil, nil)
	start := time.Now()
	if err := s.Upload(ctx, sealed()); err == nil || time.Since(start) > time.Second {
		t.Fatalf("upload to a stalled bucket: %v after %v", err, time.Since(start))
	}
}

// stallingChecks' Stat and Get hang until their context ends when set, as
// calls on a store that accepts requests and never answers do.
type stallingChecks struct {
	objstore.Bucket
	stat, get atomic.Bool
}

func (b *stallingChecks) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	if b.stat.Load() {
		<-ctx.Done()
		return objstore.ObjectInfo{}, ctx.Err()
	}
	return b.Bucket.Stat(ctx, key)
}

func (b *stallingChecks) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if b.get.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return b.Bucket.Get(ctx, key)
}

// TestReplayChecksBounded: the checks of a replayed buffer's object (the
// Stat and read of an earlier object under its key before the put, the
// Stat after the commit) give up after PutTimeout as the put does. They
// were bounded only by the backend's client, and on GCS not at all: a
// hang in the Stat after the commit held the commit loop and every
// produce ack behind it.
func TestReplayChecksBounded(t *testing.T) {
	mb := mem.New(nil)
	cat := newFakeCatalog()
	first := New(Config{Cluster: "c", AgentID: "old-agent"}, mb, cat, nil, nil)
	if err := first.Upload(t.Context(), sealed()); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Commit(t.Context(), sealed()); err != nil {
		t.Fatal(err)
	}
	bucket := &stallingChecks{Bucket: mb}
	s := New(Config{Cluster: "c", AgentID: "a-new-and-longer-agent-id", PutTimeout: 100 * time.Millisecond}, bucket, cat, nil, nil)
	replayed := func() *wal.Sealed {
		b := sealed()
		b.Replayed = true
		return b
	}
	bounded := func(what string, f func(ctx context.Context) error, wantErr bool) {
		t.Helper()
		// Bounded here too, so that the test fails instead of hanging.
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		start := time.Now()
		err := f(ctx)
		if ctx.Err() != nil || time.Since(start) > time.Second || (err != nil) != wantErr {
			t.Errorf("%s against a store that never answers: err = %v after %v", what, err, time.Since(start))
		}
	}
	upload := func(ctx context.Context) error { return s.Upload(ctx, replayed()) }

	bucket.stat.Store(true)
	bounded("upload's stat", upload, true)
	bucket.stat.Store(false)
	bucket.get.Store(true)
	bounded("upload's get", upload, true)
	bucket.get.Store(false)

	if err := s.Upload(t.Context(), replayed()); err != nil {
		t.Fatal(err)
	}
	bucket.stat.Store(true)
	bounded("commit's stat", func(ctx context.Context) error { _, err := s.Commit(ctx, replayed()); return err }, false)
}
