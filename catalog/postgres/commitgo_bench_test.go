package postgres

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/internal/commitplan"
)

// BenchmarkCommitGo runs the client-side (Go) steps of one commit without
// PostgreSQL: what CommitSegment does before and after its round trip,
// with the statements' arguments encoded as pgx encodes them for the
// wire. The shape is an agent leading 2,000 partitions with one idempotent
// producer whose states are all remembered (the steady state: one round
// trip): 2,400 batches, a fifth of the partitions with two contiguous
// batches, in object order.
func BenchmarkCommitGo(b *testing.B) {
	for _, shape := range []struct {
		name           string
		parts, batches int
	}{{"parts=16", 16, 20}, {"parts=2000", 2000, 2400}} {
		b.Run(shape.name, func(b *testing.B) {
			commit := commitGoSteps(b, shape.parts, shape.batches)
			b.ReportAllocs()
			for b.Loop() {
				commit()
			}
		})
	}
}

// TestCommitGoSteps keeps BenchmarkCommitGo's hand-made statement
// descriptions in step with writeArgs: benchmarks do not run in CI, and a
// parameter added to a statement once left the benchmark failing unseen.
func TestCommitGoSteps(t *testing.T) {
	commit := commitGoSteps(t, 2000, 2400)
	commit()
}

// commitGoSteps sets up BenchmarkCommitGo's shape, makes the producer's
// first commit, and returns a function making the next one.
func commitGoSteps(tb testing.TB, nparts, nbatches int) func() {
	topic := catalog.TopicID{9, 8, 7}
	c := &Catalog{now: time.Now, states: commitplan.NewStateCache(maxCachedStates)}
	c.known.parts = map[catalog.TopicID]int32{topic: int32(nparts)}
	const pid = 7
	c.states.NewProducer(pid, 0)

	seg := catalog.Segment{Key: "v1/abcd/cluster/01J000000000000000000000.seg"}
	seq := make([]int32, nparts)
	for i := range nbatches {
		p := int32(i * nparts / nbatches)
		seg.Batches = append(seg.Batches, catalog.BatchRef{
			TopicPartition: catalog.TopicPartition{TopicID: topic, Partition: p},
			ByteOffset:     seg.Size, ByteLength: 700, OffsetSpan: 7, Records: 7,
			FirstTimestamp: 1, MaxTimestamp: 2, ProducerID: pid,
		})
		seg.Size += 700
	}
	table := make([]byte, 16*nparts)
	for i := range nparts {
		binary.BigEndian.PutUint64(table[16*i:], uint64(1000*i))
	}

	m := pgtype.NewMap()
	useBinaryArrays(m)
	const (
		uuidArr  = 2951
		int4Arr  = 1007
		int8Arr  = 1016
		int2Arr  = 1005
		boolArr  = 1000
		byteaArr = 1001
		textArr  = 1009
	)
	advanceSD := &pgconn.StatementDescription{ParamOIDs: []uint32{uuidArr, int4Arr, int8Arr, boolArr, pgtype.Int8OID}}
	// sqlWrite's parameters, $1–$25 (writeArgs).
	writeSD := &pgconn.StatementDescription{ParamOIDs: []uint32{
		textArr, int8Arr, pgtype.TimestamptzOID, byteaArr,
		uuidArr, int4Arr,
		int4Arr, int8Arr, int8Arr, int8Arr, int8Arr, int4Arr, int8Arr,
		int8Arr, int4Arr, int8Arr, int2Arr, byteaArr,
		int8Arr, int2Arr,
		int4Arr, pgtype.Int8OID, pgtype.Int8OID, pgtype.Int8OID, int4Arr,
	}}
	var eqb pgx.ExtendedQueryBuilder

	objectID := int64(0)
	commit := func() {
		for i := range seg.Batches {
			r := &seg.Batches[i]
			r.BaseSequence = seq[r.Partition]
			seq[r.Partition] += r.OffsetSpan
		}
		objectID++
		res, err := goCommitSteps(c, seg, m, &eqb, advanceSD, writeSD, table, objectID)
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil || r.Duplicate {
				tb.Fatalf("result %+v", r)
			}
		}
	}
	commit() // the first commit of the new producer: from now on, remembered
	return commit
}

// goCommitSteps is CommitSegment's Go work around its one round trip, in
// order: the commit's input, its remembered state, the plan, the
// arguments (encoded), the returned partition table, remembering what it
// verified, and the results.
func goCommitSteps(c *Catalog, seg catalog.Segment, m *pgtype.Map, eqb *pgx.ExtendedQueryBuilder,
	advanceSD, writeSD *pgconn.StatementDescription, table []byte, objectID int64) ([]catalog.BatchResult, error) {
	if err := commitplan.ValidateSegment(seg); err != nil {
		return nil, err
	}
	in := newCommitInput([]catalog.Segment{seg})
	rs, ok := c.rememberedState(in, c.states)
	if !ok {
		return nil, errConflict
	}
	plan := commitplan.BuildLayout(rs.plan)
	advance, write := c.writeArgs(in, rs, plan)
	if err := eqb.Build(m, advanceSD, advance); err != nil {
		return nil, err
	}
	if err := eqb.Build(m, writeSD, write); err != nil {
		return nil, err
	}
	states, err := partitionTable(table, len(in.tps))
	if err != nil {
		return nil, err
	}
	remember(c.states, in, rs, plan, states, objectID)
	return commitplan.Resolve(in.seg, plan.Results, in.pos, states), nil
}
