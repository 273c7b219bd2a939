package postgres

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// commitCase commits one idempotent batch per segment through one of
// several handles on the same schema, as agents sharing a catalog do.
type commitCase struct {
	t     *testing.T
	tp    catalog.TopicPartition
	pid   int64
	n     int
	admin *Catalog
}

func newCommitCase(t *testing.T, url string) *commitCase {
	t.Helper()
	admin := openTest(t, url, catalog.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic, err := admin.CreateTopic(ctx, catalog.TopicSpec{Name: "t", Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	pid, _, err := admin.AllocateProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &commitCase{t: t, tp: catalog.TopicPartition{TopicID: topic.ID, Partition: 1}, pid: pid, admin: admin}
}

func (cc *commitCase) commit(c *Catalog, epoch int16, seq int32) catalog.BatchResult {
	cc.t.Helper()
	cc.n++
	seg := catalog.Segment{Key: fmt.Sprintf("case/%d", cc.n), Size: 1000, Batches: []catalog.BatchRef{{
		TopicPartition: cc.tp, ByteOffset: 0, ByteLength: 1000, OffsetSpan: 10, Records: 10,
		FirstTimestamp: 1, MaxTimestamp: 2, ProducerID: cc.pid, ProducerEpoch: epoch, BaseSequence: seq,
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.CommitSegment(ctx, seg)
	if err != nil {
		cc.t.Fatalf("commit %d: %v", cc.n, err)
	}
	return res.Results[0]
}

// TestCommitStaleRememberedState: a handle remembers the producer state its
// commits verified and skips reading it; when another handle has written
// it meanwhile, the commit notices under the locks, writes nothing, reads
// afresh and decides on the current state.
func TestCommitStaleRememberedState(t *testing.T) {
	url := freshSchema(t)
	cc := newCommitCase(t, url)
	a, b := openTest(t, url, catalog.Options{}), openTest(t, url, catalog.Options{})

	if r := cc.commit(a, 0, 0); r.Err != nil || r.BaseOffset != 0 {
		t.Fatalf("first batch: %+v", r)
	}
	if r := cc.commit(b, 0, 10); r.Err != nil || r.BaseOffset != 10 {
		t.Fatalf("second batch, through b: %+v", r)
	}
	// a remembers the state after the first batch, after which the second
	// batch is in sequence: a must find the state stale, and the second
	// batch a duplicate of offset 10.
	if r := cc.commit(a, 0, 10); r.Err != nil || !r.Duplicate || r.BaseOffset != 10 {
		t.Fatalf("second batch again, through a: %+v", r)
	}
	if a.CommitConflicts() == 0 {
		t.Fatal("a did not notice its remembered state was stale")
	}
	if r := cc.commit(b, 0, 20); r.Err != nil || r.Duplicate || r.BaseOffset != 20 {
		t.Fatalf("third batch, through b: %+v", r)
	}
	// Stale again, and now the batch is out of sequence for a's state.
	if r := cc.commit(a, 0, 30); r.Err != nil || r.Duplicate || r.BaseOffset != 30 {
		t.Fatalf("fourth batch, through a: %+v", r)
	}
	if r := cc.commit(b, 0, 50); !errors.Is(r.Err, catalog.ErrOutOfOrderSequence) {
		t.Fatalf("sequence gap, through b: %+v", r)
	}
}

// TestCommitStaleRememberedEpoch: a commit does not trust the epoch it
// remembers: a bump through another handle fences the old epoch at once.
func TestCommitStaleRememberedEpoch(t *testing.T) {
	url := freshSchema(t)
	cc := newCommitCase(t, url)
	a := openTest(t, url, catalog.Options{})

	if r := cc.commit(a, 0, 0); r.Err != nil {
		t.Fatalf("first batch: %+v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	next, err := cc.admin.BumpProducerEpoch(ctx, cc.pid, 0)
	if err != nil || next != 1 {
		t.Fatalf("bump: %d, %v", next, err)
	}
	if r := cc.commit(a, 0, 10); !errors.Is(r.Err, catalog.ErrInvalidProducerEpoch) {
		t.Fatalf("old epoch after the bump: %+v", r)
	}
	if r := cc.commit(a, 1, 0); r.Err != nil || r.BaseOffset != 10 {
		t.Fatalf("new epoch: %+v", r)
	}
}

// TestCommitKeyCommittedMeanwhile: a commit that skips round trip 1 does
// not check its key first; if the key was committed meanwhile, the write
// finds it under the locks and the commit returns the first answer.
func TestCommitKeyCommittedMeanwhile(t *testing.T) {
	url := freshSchema(t)
	cc := newCommitCase(t, url)
	a, b := openTest(t, url, catalog.Options{}), openTest(t, url, catalog.Options{})
	plain := func(key string) catalog.Segment {
		return catalog.Segment{Key: key, Size: 1000, Batches: []catalog.BatchRef{{
			TopicPartition: cc.tp, ByteLength: 1000, OffsetSpan: 10, Records: 10,
			FirstTimestamp: 1, MaxTimestamp: 2, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
		}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// a learns the partition exists: its next commit of plain batches
	// needs no read.
	if _, err := a.CommitSegment(ctx, plain("first")); err != nil {
		t.Fatal(err)
	}
	first, err := b.CommitSegment(ctx, plain("same"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := a.CommitSegment(ctx, plain("same"))
	if err != nil {
		t.Fatal(err)
	}
	if again.CommitID != first.CommitID || again.Results[0] != first.Results[0] {
		t.Fatalf("re-commit of the key through a: %+v, first %+v", again, first)
	}
	next, err := b.CommitSegment(ctx, plain("next"))
	if err != nil || next.Results[0].BaseOffset != 20 {
		t.Fatalf("next commit: %+v, %v (want base offset 20: the re-commit wrote nothing)", next, err)
	}
}

// TestBinaryArrays: the hand-encoded array parameters mean to PostgreSQL
// what pgx's generic encoding of the same slices means.
func TestBinaryArrays(t *testing.T) {
	c := openTest(t, freshSchema(t), catalog.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	useBinaryArrays(conn.Conn().TypeMap())
	useBinaryArrays(conn.Conn().TypeMap()) // idempotent
	if n := len(conn.Conn().TypeMap().TryWrapEncodePlanFuncs); n < 2 || reflect.ValueOf(conn.Conn().TypeMap().TryWrapEncodePlanFuncs[1]).Pointer() == reflect.ValueOf(tryWrapBinaryArray).Pointer() {
		t.Fatal("useBinaryArrays registered twice")
	}
	for _, tt := range []struct {
		typ  string
		fast binaryArray
	}{
		{"int8[]", int8Array{0, -1, 1 << 62, -1 << 63}},
		{"int8[]", int8Array{}},
		{"int4[]", int4Array{7, -7, 1 << 30}},
		{"int2[]", int2Array{1, -1, 32767}},
		{"bool[]", boolArray{true, false, true}},
		{"uuid[]", uuidArray{{1, 2, 3}, {15: 0xff}}},
		{"bytea[]", byteaArray{{1, 2}, nil, {}, {0xff}}},
		{"bytea[]", byteaArray{}},
	} {
		var same bool
		q := fmt.Sprintf("SELECT $1::%s IS NOT DISTINCT FROM $2::%s", tt.typ, tt.typ)
		if err := conn.QueryRow(ctx, q, tt.fast, tt.fast.plain()).Scan(&same); err != nil || !same {
			t.Errorf("%s %v: same %v, %v", tt.typ, tt.fast, same, err)
		}
	}
}

// TestCommitNewProducerOneRoundTrip: the first commit of a producer this
// handle allocated, on a topic it created, reads nothing first (however
// many partitions it spans); when another handle has written the
// producer's state meanwhile, the commit notices under the locks and
// decides on the current state.
func TestCommitNewProducerOneRoundTrip(t *testing.T) {
	url := freshSchema(t)
	cc := newCommitCase(t, url) // cc.admin created the topic and the producer
	if r := cc.commit(cc.admin, 0, 0); r.Err != nil || r.BaseOffset != 0 {
		t.Fatalf("first batch: %+v", r)
	}
	if n := cc.admin.reads.Load(); n != 0 {
		t.Fatalf("the first commit of a new producer on a new topic read first (%d round trips 1)", n)
	}

	// A second producer allocated by a, whose first batch goes through b:
	// a's "no state yet" is stale, and a's commit of the next batch must
	// find it so.
	a, b := cc.admin, openTest(t, url, catalog.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pid, _, err := a.AllocateProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cc.pid = pid
	if r := cc.commit(b, 0, 0); r.Err != nil || r.BaseOffset != 10 {
		t.Fatalf("new producer's first batch, through b: %+v", r)
	}
	if r := cc.commit(a, 0, 0); r.Err != nil || !r.Duplicate || r.BaseOffset != 10 {
		t.Fatalf("the same batch again, through a: %+v", r)
	}
	if a.CommitConflicts() == 0 {
		t.Fatal("a did not notice its new producer had state")
	}
	if r := cc.commit(a, 0, 10); r.Err != nil || r.Duplicate || r.BaseOffset != 20 {
		t.Fatalf("next batch, through a: %+v", r)
	}

	// A handle that has read the topic (as an agent does before it
	// accepts a produce) knows its partitions too.
	d := openTest(t, url, catalog.Options{})
	if _, err := d.Topic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if cc.pid, _, err = d.AllocateProducerID(ctx); err != nil {
		t.Fatal(err)
	}
	if r := cc.commit(d, 0, 0); r.Err != nil || r.BaseOffset != 30 {
		t.Fatalf("third producer's first batch, through d: %+v", r)
	}
	if n := d.reads.Load(); n != 0 {
		t.Fatalf("a commit to a topic read by name read first (%d round trips 1)", n)
	}
}
