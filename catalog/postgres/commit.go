package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/internal/commitplan"
)

// How a commit works
//
// Round trip 1 reads, without locks, what the decisions depend on: which
// of the segment's partitions exist, whether the key is already committed,
// and the producer state (each row versioned by the commit that last wrote
// it) and epochs. commitplan.Build then decides every batch with offsets
// relative to each partition's next offset (commitplan.RelBase).
//
// Round trip 2 is one pipeline: BEGIN; lock the partitions FOR UPDATE in
// (topic id, partition) order; one statement that — in a snapshot taken
// after the locks, so it sees every commit that held them before — checks
// that what round trip 1 read still holds, and only then turns the
// relative offsets absolute and writes every row; one statement that takes
// the next commit id (in commit order) and NOTIFYs it; COMMIT. No client round trip happens while the locks are
// held, so contended partitions pass from commit to commit at server speed.
//
// If the check fails (a concurrent commit of the same producer on the same
// partition, a topic created or deleted, the key committed meanwhile) the
// statement writes nothing and the commit starts over. After a few such
// conflicts it runs in locked mode instead: round trip 1 opens the
// transaction and takes the locks before reading, so the check cannot fail
// for lack of isolation and the commit makes progress whatever the load.

const (
	sqlBegin = `BEGIN ISOLATION LEVEL READ COMMITTED`

	// sqlPartitions lists which requested partitions exist; sqlLock also
	// locks them. ORDER BY runs below the row locking, so rows are locked
	// in sorted order and two commits never wait on each other in a cycle.
	sqlPartitions = `SELECT topic_id, partition FROM partitions
WHERE (topic_id, partition) IN (SELECT t, p FROM unnest($1::uuid[], $2::int4[]) AS u(t, p))
ORDER BY topic_id, partition`
	sqlLock = sqlPartitions + `
FOR UPDATE`

	sqlFindObject = `SELECT commit_id, results FROM objects WHERE key = $1`

	// Correlated lookups: one primary-key probe per key, whatever the
	// table's size (a join may be planned as a scan of the whole table).
	sqlProducerState = `SELECT s.producer_id, s.topic_id, s.partition, s.epoch, s.entries, s.pending_base, s.version
FROM unnest($1::int8[], $2::uuid[], $3::int4[]) AS u(pid, t, p)
CROSS JOIN LATERAL (
    SELECT * FROM producer_state s
    WHERE s.topic_id = u.t AND s.partition = u.p AND s.producer_id = u.pid
) s`

	sqlProducerEpochs = `SELECT producer_id, epoch FROM producers WHERE producer_id = ANY($1::int8[])`

	sqlCommit = `COMMIT`
)

// sqlWrite checks round trip 1's reads (chk) and, only if they hold, writes
// the commit's rows. cur is read in this statement's snapshot, after the
// locks: the partitions' next offsets before this commit. The results'
// partition table is appended to the Go-encoded results with int8send.
const sqlWrite = `WITH req AS (
    SELECT u.t, u.p, u.e, u.ord
    FROM unnest($5::uuid[], $6::int4[], $7::bool[]) WITH ORDINALITY AS u(t, p, e, ord)
), cur AS (
    SELECT p.topic_id, p.partition, p.next_offset, p.log_start_offset, req.ord
    FROM partitions p JOIN req ON p.topic_id = req.t AND p.partition = req.p
), chk AS (
    SELECT NOT EXISTS (SELECT 1 FROM objects WHERE key = $1)
       AND (SELECT count(*) FROM cur) = (SELECT count(*) FROM req WHERE req.e)
       AND NOT EXISTS (SELECT 1 FROM cur JOIN req USING (ord) WHERE NOT req.e)
       AND NOT EXISTS (
           SELECT 1 FROM unnest($24::int8[], $25::uuid[], $26::int4[], $27::int8[]) AS x(pid, t, p, v)
           WHERE x.v <> coalesce((SELECT s.version FROM producer_state s
                                  WHERE s.topic_id = x.t AND s.partition = x.p AND s.producer_id = x.pid), 0))
       AND NOT EXISTS (
           SELECT 1 FROM unnest($28::int8[], $29::int2[]) AS y(pid, e)
           WHERE y.e <> coalesce((SELECT pr.epoch FROM producers pr WHERE pr.producer_id = y.pid), -1)) AS ok
), obj AS (
    INSERT INTO objects (key, size, created, nrows, results)
    SELECT $1, $2, $3, $30, $4::bytea || coalesce((
        SELECT string_agg(int8send(coalesce(cur.next_offset, -1)) || int8send(coalesce(cur.log_start_offset, -1)), ''::bytea ORDER BY req.ord)
        FROM req LEFT JOIN cur ON cur.topic_id = req.t AND cur.partition = req.p), ''::bytea)
    WHERE (SELECT ok FROM chk)
    RETURNING id
), new_rows AS (
    INSERT INTO batches (topic_id, partition, base_offset, last_offset, object_id,
                         byte_offset, byte_length, records, max_timestamp)
    SELECT r.t, r.p, cur.next_offset + r.bo, cur.next_offset + r.lo, obj.id, r.off, r.len, r.n, r.ts
    FROM obj, unnest($8::uuid[], $9::int4[], $10::int8[], $11::int8[], $12::int8[],
                     $13::int8[], $14::int4[], $15::int8[]) AS r(t, p, bo, lo, off, len, n, ts)
    JOIN cur ON cur.topic_id = r.t AND cur.partition = r.p
), moved AS (
    UPDATE partitions SET next_offset = partitions.next_offset + u.n
    FROM obj, unnest($16::uuid[], $17::int4[], $18::int8[]) AS u(t, p, n)
    WHERE partitions.topic_id = u.t AND partitions.partition = u.p
), states AS (
    INSERT INTO producer_state (topic_id, partition, producer_id, epoch, entries, pending_base, version, updated)
    SELECT s.t, s.p, s.pid, s.e, s.en, cur.next_offset, obj.id, $3
    FROM obj, unnest($19::int8[], $20::uuid[], $21::int4[], $22::int2[], $23::bytea[]) AS s(pid, t, p, e, en)
    JOIN cur ON cur.topic_id = s.t AND cur.partition = s.p
    ON CONFLICT (topic_id, partition, producer_id) DO UPDATE SET
        epoch = excluded.epoch, entries = excluded.entries, pending_base = excluded.pending_base,
        version = excluded.version, updated = excluded.updated
)
SELECT chk.ok, cur.topic_id, cur.partition, cur.next_offset, cur.log_start_offset
FROM chk LEFT JOIN cur ON true`

// sqlFinish takes the next commit id for the object sqlWrite inserted and
// NOTIFYs it. It is the last statement before COMMIT: the commit_seq row
// lock, which hands out ids in commit order, is held only for it and the
// COMMIT. Without an object (the check failed) it does nothing.
const sqlFinish = `WITH o AS (
    SELECT id FROM objects WHERE key = $1 AND commit_id IS NULL
), seq AS (
    UPDATE commit_seq SET id = id + 1 WHERE EXISTS (SELECT 1 FROM o) RETURNING id
), note AS (
    SELECT pg_notify($2, seq.id::text) FROM seq
)
UPDATE objects SET commit_id = seq.id FROM seq, o WHERE objects.id = o.id
RETURNING objects.commit_id, (SELECT count(*) FROM note)`

// errConflict reports that round trip 1's reads no longer held under the
// locks; nothing was written.
var errConflict = errors.New("catalog: commit read stale state")

// optimisticTries is how many conflicts a commit tolerates before it
// switches to locked mode.
const optimisticTries = 2

// CommitSegment assigns offsets to seg's batches in one transaction (see
// "How a commit works" above). It is idempotent per seg.Key.
func (c *Catalog) CommitSegment(ctx context.Context, seg catalog.Segment) (catalog.CommitResult, error) {
	if err := commitplan.ValidateSegment(seg); err != nil {
		return catalog.CommitResult{}, fmt.Errorf("catalog: commit segment %s: %w", seg.Key, err)
	}
	if err := c.checkOpen(); err != nil {
		return catalog.CommitResult{}, fmt.Errorf("catalog: commit segment %s: %w", seg.Key, err)
	}
	in := commitInput{
		seg:  seg,
		tps:  commitplan.Partitions(seg),
		keys: commitplan.ProducerKeys(seg),
		pids: commitplan.ProducerIDs(seg),
	}
	conflicts := 0
	for attempt := 1; ; attempt++ {
		res, err := c.commitOnce(ctx, in, c.alwaysLock || conflicts >= optimisticTries)
		if err == nil {
			c.hub.Publish(res.CommitID)
			return res, nil
		}
		if errors.Is(err, errConflict) {
			c.forgetPartitions(in.tps)
			c.conflicts.Add(1)
			conflicts++
			if conflicts <= optimisticTries+maxAttempts {
				attempt-- // conflicts have their own budget
				continue
			}
		}
		// A duplicate key means a concurrent commit of the same segment
		// won: the next attempt finds its row and returns its results.
		again := retryable(err) || pgCode(err) == codeUniqueViolated
		if errors.Is(err, catalog.ErrCommitUnknown) || !again || attempt >= maxAttempts {
			return catalog.CommitResult{}, fmt.Errorf("catalog: commit segment %s: %w", seg.Key, err)
		}
		if berr := backoff(ctx, attempt); berr != nil {
			return catalog.CommitResult{}, fmt.Errorf("catalog: commit segment %s: %w", seg.Key, err)
		}
	}
}

// CommitConflicts returns how many commit attempts found their unlocked
// reads stale (a measure of contention on producer state, for tests and
// benchmarks).
func (c *Catalog) CommitConflicts() int64 { return c.conflicts.Load() }

type commitInput struct {
	seg  catalog.Segment
	tps  []catalog.TopicPartition
	keys []commitplan.ProducerKey
	pids []int64
}

// readState is what round trip 1 read.
type readState struct {
	plan     commitplan.Input
	versions map[commitplan.ProducerKey]int64
	existing *catalog.CommitResult // the key is already committed
}

// commitOnce is one attempt. Errors from before COMMIT was sent leave
// nothing behind; errors after it wrap ErrCommitUnknown.
func (c *Catalog) commitOnce(ctx context.Context, in commitInput, locked bool) (res catalog.CommitResult, err error) {
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return res, safeErr{err} // nothing was sent
	}
	defer func() { releaseConn(conn) }()
	ids, parts := topicIDs(in.tps)

	rs, err := c.readForCommit(ctx, conn, in, ids, parts, locked)
	if err != nil {
		return res, readErr(err)
	}
	if rs.existing != nil {
		return *rs.existing, nil // in locked mode, the deferred release rolls back
	}
	plan := commitplan.Build(rs.plan)

	w := &pgx.Batch{}
	if !locked {
		w.Queue(sqlBegin)
		w.Queue(sqlLock, ids, parts)
	}
	w.Queue(sqlWrite, c.writeArgs(in, rs, plan)...)
	w.Queue(sqlFinish, in.seg.Key, c.channel)
	w.Queue(sqlCommit)
	br := conn.SendBatch(ctx, w)
	defer br.Close()
	if !locked {
		for range 2 {
			if _, err := br.Exec(); err != nil {
				return res, commitErr(err, false)
			}
		}
	}
	ok, states, err := scanWrite(br)
	if err != nil {
		return res, commitErr(err, false)
	}
	var commitID, notified int64
	if err := br.QueryRow().Scan(&commitID, &notified); err != nil && (ok || !errors.Is(err, pgx.ErrNoRows)) {
		return res, commitErr(err, false)
	}
	tag, err := br.Exec()
	if err != nil {
		return res, commitErr(err, true)
	}
	if tag.String() != "COMMIT" {
		// Cannot happen after successful statements; never report a
		// rolled-back transaction as committed.
		return res, fmt.Errorf("transaction ended with %q instead of COMMIT", tag.String())
	}
	if !ok {
		return res, errConflict
	}
	// COMMIT's CommandComplete arrived: the commit is durable whatever
	// happens to the connection now.
	return catalog.CommitResult{CommitID: commitID, Results: commitplan.Resolve(in.seg, plan.Results, states)}, nil
}

// readForCommit sends round trip 1. In locked mode it opens the
// transaction and locks the partitions first.
func (c *Catalog) readForCommit(ctx context.Context, conn *pgxpool.Conn, in commitInput, ids [][16]byte, parts []int32, locked bool) (readState, error) {
	// Unlocked, the partitions' existence may come from the cache.
	askParts := locked || !c.knownPartitions(in.tps)
	b := &pgx.Batch{}
	if locked {
		b.Queue(sqlBegin)
		b.Queue(sqlLock, ids, parts)
	} else if askParts {
		b.Queue(sqlPartitions, ids, parts)
	}
	b.Queue(sqlFindObject, in.seg.Key)
	if len(in.keys) > 0 {
		pids := make([]int64, len(in.keys))
		kt := make([]catalog.TopicPartition, len(in.keys))
		for i, k := range in.keys {
			pids[i], kt[i] = k.ProducerID, k.TopicPartition
		}
		kids, kparts := topicIDs(kt)
		b.Queue(sqlProducerState, pids, kids, kparts)
		b.Queue(sqlProducerEpochs, in.pids)
	}
	br := conn.SendBatch(ctx, b)
	defer br.Close()
	if locked {
		if _, err := br.Exec(); err != nil {
			return readState{}, err
		}
	}
	rs := readState{
		plan: commitplan.Input{
			Segment:    in.seg,
			Partitions: make(map[catalog.TopicPartition]commitplan.Partition, len(in.tps)),
			States:     make(map[commitplan.ProducerKey]commitplan.ProducerState, len(in.keys)),
			Epochs:     make(map[int64]int16, len(in.pids)),
		},
		versions: make(map[commitplan.ProducerKey]int64, len(in.keys)),
	}
	// Offsets are assigned in SQL: plan relative to every partition.
	rel := commitplan.Partition{NextOffset: commitplan.RelBase}
	var id [16]byte
	if askParts {
		var tp catalog.TopicPartition
		var exist []catalog.TopicPartition
		if _, err := pgx.ForEachRow(mustRows(br.Query()), []any{&id, &tp.Partition}, func() error {
			tp.TopicID = id
			rs.plan.Partitions[tp] = rel
			exist = append(exist, tp)
			return nil
		}); err != nil {
			return readState{}, err
		}
		c.learnPartitions(exist)
	} else {
		for _, tp := range in.tps {
			rs.plan.Partitions[tp] = rel
		}
	}

	var commitID int64
	var stored []byte
	switch err := br.QueryRow().Scan(&commitID, &stored); {
	case err == nil:
		results, err := commitplan.DecodeResults(stored)
		if err != nil {
			return readState{}, fmt.Errorf("stored results: %w", err)
		}
		rs.existing = &catalog.CommitResult{CommitID: commitID, Results: results}
		return rs, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return readState{}, err
	}

	if len(in.keys) > 0 {
		var k commitplan.ProducerKey
		var epoch int16
		var entries []byte
		var pending, version int64
		if _, err := pgx.ForEachRow(mustRows(br.Query()), []any{&k.ProducerID, &id, &k.Partition, &epoch, &entries, &pending, &version}, func() error {
			k.TopicID = id
			es, err := commitplan.DecodeEntries(entries, pending)
			if err != nil {
				return fmt.Errorf("producer %d state: %w", k.ProducerID, err)
			}
			rs.plan.States[k] = commitplan.ProducerState{Epoch: epoch, Entries: es}
			rs.versions[k] = version
			return nil
		}); err != nil {
			return readState{}, err
		}
		var pid int64
		if _, err := pgx.ForEachRow(mustRows(br.Query()), []any{&pid, &epoch}, func() error {
			rs.plan.Epochs[pid] = epoch
			return nil
		}); err != nil {
			return readState{}, err
		}
	}
	return rs, nil
}

// mustRows adapts BatchResults.Query for ForEachRow: a query error is
// reported by the returned rows.
func mustRows(rows pgx.Rows, err error) pgx.Rows {
	if err != nil {
		return errRows{rows, err}
	}
	return rows
}

type errRows struct {
	pgx.Rows
	err error
}

func (r errRows) Next() bool { return false }
func (r errRows) Err() error { return r.err }
func (r errRows) Close()     {}

// scanWrite reads sqlWrite's rows: the check's outcome and the partitions'
// state before the commit.
func scanWrite(br pgx.BatchResults) (bool, map[catalog.TopicPartition]commitplan.PartitionState, error) {
	var ok bool
	var id *[16]byte
	var part *int32
	var next, logStart *int64
	states := map[catalog.TopicPartition]commitplan.PartitionState{}
	_, err := pgx.ForEachRow(mustRows(br.Query()), []any{&ok, &id, &part, &next, &logStart}, func() error {
		if id != nil {
			states[catalog.TopicPartition{TopicID: *id, Partition: *part}] = commitplan.PartitionState{NextOffset: *next, LogStart: *logStart}
		}
		return nil
	})
	return ok, states, err
}

// writeArgs flattens a plan and the expectations of round trip 1 into
// sqlWrite's arrays.
func (c *Catalog) writeArgs(in commitInput, rs readState, plan commitplan.Plan) []any {
	req := len(in.tps)
	reqIDs, reqParts := topicIDs(in.tps)
	exists := make([]bool, req)
	for i, tp := range in.tps {
		_, exists[i] = rs.plan.Partitions[tp]
	}

	n := len(plan.Rows)
	rt, rp := make([][16]byte, n), make([]int32, n)
	bo, lo, off, ln := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	recs, ts := make([]int32, n), make([]int64, n)
	for i, r := range plan.Rows {
		rt[i], rp[i] = r.TopicID, r.Partition
		bo[i], lo[i] = r.BaseOffset-commitplan.RelBase, r.LastOffset-commitplan.RelBase
		off[i], ln[i], recs[i], ts[i] = r.ByteOffset, r.ByteLength, r.Records, r.MaxTimestamp
	}
	m := len(plan.Partitions)
	pt, pp, pn := make([][16]byte, m), make([]int32, m), make([]int64, m)
	for i, p := range plan.Partitions {
		pt[i], pp[i], pn[i] = p.TopicID, p.Partition, p.NextOffset-commitplan.RelBase
	}
	k := len(plan.States)
	sid, st, sp := make([]int64, k), make([][16]byte, k), make([]int32, k)
	se, sen := make([]int16, k), make([][]byte, k)
	for i, s := range plan.States {
		sid[i], st[i], sp[i] = s.ProducerID, s.TopicID, s.Partition
		se[i], sen[i] = s.Epoch, commitplan.EncodeEntries(s.Entries)
	}
	x := len(in.keys)
	xid, xt, xp, xv := make([]int64, x), make([][16]byte, x), make([]int32, x), make([]int64, x)
	for i, key := range in.keys {
		xid[i], xt[i], xp[i], xv[i] = key.ProducerID, key.TopicID, key.Partition, rs.versions[key]
	}
	y := len(in.pids)
	yid, ye := make([]int64, y), make([]int16, y)
	for i, pid := range in.pids {
		yid[i], ye[i] = pid, -1
		if e, ok := rs.plan.Epochs[pid]; ok {
			ye[i] = e
		}
	}
	return []any{
		in.seg.Key, in.seg.Size, c.now().UTC(), commitplan.EncodeResults(in.seg, plan.Results),
		reqIDs, reqParts, exists,
		rt, rp, bo, lo, off, ln, recs, ts,
		pt, pp, pn,
		sid, st, sp, se, sen,
		xid, xt, xp, xv,
		yid, ye,
		int32(len(plan.Rows)),
	}
}

// safeErr marks an error after which the transaction certainly did not
// commit, so the whole commit may run again.
type safeErr struct{ error }

func (e safeErr) SafeToRetry() bool { return true }
func (e safeErr) Unwrap() error     { return e.error }

// readErr classifies an error of the first round trip: no COMMIT was sent,
// so nothing happened. A server ERROR keeps its SQLSTATE for the caller's
// classification (a lock timeout is not worth repeating); anything else
// (a dropped or terminated connection) is safe to retry.
func readErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Severity == "ERROR" {
		return err
	}
	return safeErr{err}
}

// commitErr classifies an error of the second round trip. A server ERROR
// proves the transaction failed: PostgreSQL skips the rest of the pipeline
// and the transaction can only roll back (an ERROR answering COMMIT means
// it rolled back too). A FATAL answering a statement before COMMIT means
// the backend died before running COMMIT. Anything else — a dropped
// connection, a cancelled context, a FATAL while committing — leaves the
// outcome unknown.
func commitErr(err error, atCommit bool) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if pe.Severity == "ERROR" {
			return err
		}
		if !atCommit {
			return safeErr{err}
		}
	}
	return fmt.Errorf("%w: %w", catalog.ErrCommitUnknown, err)
}

// releaseConn returns conn to the pool after rolling back whatever
// transaction an early return left open; a connection in an unknown state
// is closed instead.
func releaseConn(conn *pgxpool.Conn) {
	pc := conn.Conn().PgConn()
	if !pc.IsClosed() && !pc.IsBusy() && pc.TxStatus() != 'I' {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
			conn.Conn().Close(ctx)
		}
		cancel()
	}
	conn.Release()
}
