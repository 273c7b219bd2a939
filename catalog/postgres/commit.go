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

// The first round trip of a commit: open the transaction, lock the touched
// partitions in (topic id, partition) order, then — under those locks, with
// a fresh READ COMMITTED snapshot per statement — look for the key and read
// the producer state. ORDER BY runs below the row locking, so rows are
// locked in sorted order and two commits never wait on each other in a
// cycle.
const (
	sqlBegin = `BEGIN ISOLATION LEVEL READ COMMITTED`

	sqlLockPartitions = `SELECT topic_id, partition, next_offset, log_start_offset
FROM partitions
WHERE (topic_id, partition) IN (SELECT t, p FROM unnest($1::uuid[], $2::int4[]) AS u(t, p))
ORDER BY topic_id, partition
FOR UPDATE`

	sqlFindObject = `SELECT commit_id, results FROM objects WHERE key = $1`

	sqlProducerState = `SELECT s.producer_id, s.topic_id, s.partition, s.epoch, s.entries
FROM producer_state s
JOIN unnest($1::int8[], $2::uuid[], $3::int4[]) AS u(pid, t, p)
  ON s.producer_id = u.pid AND s.topic_id = u.t AND s.partition = u.p`

	sqlProducerEpochs = `SELECT producer_id, epoch FROM producers WHERE producer_id = ANY($1::int8[])`
)

// The second round trip: one statement writes everything and takes the
// next commit id. The commit_seq row lock is the last lock a commit takes
// and is held only for this statement and the COMMIT behind it in the same
// pipeline, with no client round trip in between.
const (
	sqlWrite = `WITH seq AS (
    UPDATE commit_seq SET id = id + 1 RETURNING id
), obj AS (
    INSERT INTO objects (key, size, created, commit_id, results)
    SELECT $1, $2, $3, seq.id, $4 FROM seq
    RETURNING id, commit_id
), rows AS (
    INSERT INTO batches (topic_id, partition, base_offset, last_offset, object_id,
                         byte_offset, byte_length, records, max_timestamp, commit_id)
    SELECT r.t, r.p, r.bo, r.lo, obj.id, r.off, r.len, r.n, r.ts, obj.commit_id
    FROM obj, unnest($5::uuid[], $6::int4[], $7::int8[], $8::int8[], $9::int8[],
                     $10::int8[], $11::int4[], $12::int8[]) AS r(t, p, bo, lo, off, len, n, ts)
), parts AS (
    UPDATE partitions SET next_offset = u.n, last_commit_id = obj.commit_id
    FROM obj, unnest($13::uuid[], $14::int4[], $15::int8[]) AS u(t, p, n)
    WHERE partitions.topic_id = u.t AND partitions.partition = u.p
), states AS (
    INSERT INTO producer_state (producer_id, topic_id, partition, epoch, entries, updated)
    SELECT s.pid, s.t, s.p, s.e, s.en, $3
    FROM unnest($16::int8[], $17::uuid[], $18::int4[], $19::int2[], $20::bytea[]) AS s(pid, t, p, e, en)
    ON CONFLICT (topic_id, partition, producer_id)
    DO UPDATE SET epoch = excluded.epoch, entries = excluded.entries, updated = excluded.updated
)
SELECT commit_id FROM obj`

	sqlNotify = `SELECT pg_notify($1, id::text) FROM commit_seq`
	sqlCommit = `COMMIT`
)

// CommitSegment assigns offsets to seg's batches in one transaction; see
// the package doc for how. It is idempotent per seg.Key.
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
	for attempt := 1; ; attempt++ {
		res, err := c.commitOnce(ctx, in)
		if err == nil {
			c.hub.Publish(res.CommitID)
			return res, nil
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

type commitInput struct {
	seg  catalog.Segment
	tps  []catalog.TopicPartition
	keys []commitplan.ProducerKey
	pids []int64
}

// commitOnce is one attempt. Errors from before COMMIT was sent leave
// nothing behind; errors after it wrap ErrCommitUnknown.
func (c *Catalog) commitOnce(ctx context.Context, in commitInput) (res catalog.CommitResult, err error) {
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return res, err
	}
	defer func() { releaseConn(conn) }()

	// Round trip 1: begin, lock, read.
	b := &pgx.Batch{}
	b.Queue(sqlBegin)
	ids, parts := topicIDs(in.tps)
	b.Queue(sqlLockPartitions, ids, parts)
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
	plan, existing, err := c.readForCommit(ctx, conn, b, in)
	if err != nil {
		return res, readErr(err)
	}
	if existing != nil {
		return *existing, nil // deferred release rolls back
	}

	// Round trip 2: write, notify, commit.
	w := &pgx.Batch{}
	w.Queue(sqlWrite, writeArgs(in.seg, plan, c.now())...)
	w.Queue(sqlNotify, c.channel)
	w.Queue(sqlCommit)
	br := conn.SendBatch(ctx, w)
	defer br.Close()
	var commitID int64
	if err := br.QueryRow().Scan(&commitID); err != nil {
		return res, commitErr(err, false)
	}
	if _, err := br.Exec(); err != nil {
		return res, commitErr(err, false)
	}
	tag, err := br.Exec()
	if err != nil {
		return res, commitErr(err, true)
	}
	if tag.String() != "COMMIT" {
		// Cannot happen after two successful statements; never report a
		// rolled-back transaction as committed.
		return res, fmt.Errorf("transaction ended with %q instead of COMMIT", tag.String())
	}
	// COMMIT's CommandComplete arrived: the commit is durable whatever
	// happens to the connection now.
	return catalog.CommitResult{CommitID: commitID, Results: plan.Results}, nil
}

// readForCommit sends the first round trip and builds the plan, or returns
// the stored results if the key is already committed.
func (c *Catalog) readForCommit(ctx context.Context, conn *pgxpool.Conn, b *pgx.Batch, in commitInput) (commitplan.Plan, *catalog.CommitResult, error) {
	br := conn.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return commitplan.Plan{}, nil, err
	}
	pin := commitplan.Input{
		Segment:    in.seg,
		Partitions: make(map[catalog.TopicPartition]commitplan.Partition, len(in.tps)),
		States:     make(map[commitplan.ProducerKey]commitplan.ProducerState, len(in.keys)),
		Epochs:     make(map[int64]int16, len(in.pids)),
	}
	rows, err := br.Query()
	if err != nil {
		return commitplan.Plan{}, nil, err
	}
	for rows.Next() {
		var id [16]byte
		var tp catalog.TopicPartition
		var p commitplan.Partition
		if err := rows.Scan(&id, &tp.Partition, &p.NextOffset, &p.LogStart); err != nil {
			rows.Close()
			return commitplan.Plan{}, nil, err
		}
		tp.TopicID = id
		pin.Partitions[tp] = p
	}
	if err := rows.Err(); err != nil {
		return commitplan.Plan{}, nil, err
	}

	var commitID int64
	var stored []byte
	switch err := br.QueryRow().Scan(&commitID, &stored); {
	case err == nil:
		results, err := commitplan.DecodeResults(stored)
		if err != nil {
			return commitplan.Plan{}, nil, fmt.Errorf("stored results of %s: %w", in.seg.Key, err)
		}
		return commitplan.Plan{}, &catalog.CommitResult{CommitID: commitID, Results: results}, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return commitplan.Plan{}, nil, err
	}

	if len(in.keys) > 0 {
		rows, err := br.Query()
		if err != nil {
			return commitplan.Plan{}, nil, err
		}
		for rows.Next() {
			var k commitplan.ProducerKey
			var id [16]byte
			var st commitplan.ProducerState
			var entries []byte
			if err := rows.Scan(&k.ProducerID, &id, &k.Partition, &st.Epoch, &entries); err != nil {
				rows.Close()
				return commitplan.Plan{}, nil, err
			}
			k.TopicID = id
			if st.Entries, err = commitplan.DecodeEntries(entries); err != nil {
				rows.Close()
				return commitplan.Plan{}, nil, fmt.Errorf("producer %d state: %w", k.ProducerID, err)
			}
			pin.States[k] = st
		}
		if err := rows.Err(); err != nil {
			return commitplan.Plan{}, nil, err
		}
		rows, err = br.Query()
		if err != nil {
			return commitplan.Plan{}, nil, err
		}
		for rows.Next() {
			var pid int64
			var epoch int16
			if err := rows.Scan(&pid, &epoch); err != nil {
				rows.Close()
				return commitplan.Plan{}, nil, err
			}
			pin.Epochs[pid] = epoch
		}
		if err := rows.Err(); err != nil {
			return commitplan.Plan{}, nil, err
		}
	}
	return commitplan.Build(pin), nil, nil
}

// writeArgs flattens a plan into sqlWrite's arrays.
func writeArgs(seg catalog.Segment, plan commitplan.Plan, now time.Time) []any {
	n := len(plan.Rows)
	rt, rp := make([][16]byte, n), make([]int32, n)
	bo, lo, off, ln := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	recs, ts := make([]int32, n), make([]int64, n)
	for i, r := range plan.Rows {
		rt[i], rp[i] = r.TopicID, r.Partition
		bo[i], lo[i], off[i], ln[i] = r.BaseOffset, r.LastOffset, r.ByteOffset, r.ByteLength
		recs[i], ts[i] = r.Records, r.MaxTimestamp
	}
	m := len(plan.Partitions)
	pt, pp, pn := make([][16]byte, m), make([]int32, m), make([]int64, m)
	for i, p := range plan.Partitions {
		pt[i], pp[i], pn[i] = p.TopicID, p.Partition, p.NextOffset
	}
	k := len(plan.States)
	sid, st, sp := make([]int64, k), make([][16]byte, k), make([]int32, k)
	se, sen := make([]int16, k), make([][]byte, k)
	for i, s := range plan.States {
		sid[i], st[i], sp[i] = s.ProducerID, s.TopicID, s.Partition
		se[i], sen[i] = s.Epoch, commitplan.EncodeEntries(s.Entries)
	}
	return []any{
		seg.Key, seg.Size, now.UTC(), commitplan.EncodeResults(plan.Results),
		rt, rp, bo, lo, off, ln, recs, ts,
		pt, pp, pn,
		sid, st, sp, se, sen,
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
// it rolled back too). A FATAL answering the write or notify statement
// means the backend died before running COMMIT. Anything else — a dropped
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
