package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/internal/commitplan"
)

// How a commit works
//
// A commit's decisions depend on which of the segment's partitions exist,
// whether its key is already committed, and the producer state (each row
// versioned by the commit that last wrote it) and epochs. The catalog
// remembers the partitions of the topics it has created or read and of its
// commits, the producer state and epochs its own commits verified, and
// that the producers it allocated have no state yet (commitplan.StateCache);
// when every one a segment needs is remembered, the commit is one round
// trip — so is the first commit of a new producer on a new topic, however
// many partitions it spans (round trip 1 cost it ~10 ms at 2,000). Otherwise
// round trip 1 reads them first, without locks. commitplan.BuildLayout
// then decides every batch with offsets relative to each partition's next
// offset (commitplan.RelBase). Everything a commit handles — what it read
// or remembered, the plan, the statements' arrays — is held by position in
// the segment's commitplan.Layout (its partitions in lock order, its
// producer keys sorted), not in maps: a commit of 2,000 partitions runs on
// every produce's path, and hashing each key several times cost more
// client CPU than its round trip.
//
// The (last) round trip is one pipeline: BEGIN; sqlPlanSettings; lock the
// partitions in (topic id, partition) order by moving their next offsets
// (sqlAdvance: the UPDATE is the lock); one statement (sqlWrite) that —
// in a snapshot taken after the locks, so it sees every commit that held
// them before — turns the relative offsets absolute, writes every row and
// verifies that what the plan assumed still holds, failing (and so rolling
// the transaction back) if not; one statement that takes the next commit
// id (in commit order) and NOTIFYs it; COMMIT. No client round trip happens
// while the locks are held, so contended partitions pass from commit to
// commit at server speed.
//
// A group of segments (CommitSegments: uploaded WAL buffers that queued
// behind a commit) is planned as one segment of their batches joined, so
// it costs what one commit does per partition and producer key — one lock
// and one move of each partition, one write of each producer state — plus
// each segment's object and batch rows, which never span two objects.
// Each object keeps its own results (relative to the group's partition
// table, which every one of them stores) and its own commit id, given in
// order, so a key of the group answers alone as if committed alone.
//
// If the check fails (a concurrent commit of the same producer on the same
// partition, a topic created or deleted, the key committed meanwhile, a
// remembered state gone stale, a state or epoch deleted by producer expiry:
// sqlExpireStates) nothing is written, the catalog forgets what it
// remembered about the segment, and the commit starts over with round
// trip 1. After a few such conflicts it runs in locked mode instead: round
// trip 1 opens the transaction and takes the locks before reading, so the
// check cannot fail for lack of isolation and the commit makes progress
// whatever the load. (Expiry takes no partition lock and can still fail a
// locked commit, but once per state: the state it deleted is not there to
// delete again, and the one the commit then writes is new.)

const (
	sqlBegin = `BEGIN ISOLATION LEVEL READ COMMITTED`

	// sqlPlanSettings opens every commit transaction (and round trip 1's
	// implicit one): statements prepared after it in the transaction are
	// planned to find rows by primary-key probes only. Generic plans assume
	// 10 elements per array, so on a table of a few hundred rows a hash
	// join over a scan of the whole table looks cheaper than 10 probes,
	// and the plan, made once per connection while the tables were small,
	// would keep scanning them as they grow: with 2,000 producer states a
	// commit of 16 partitions took a quarter more server CPU. Probes cost
	// what the commit touches, whatever the table's size. The settings are
	// local to the transaction (SET LOCAL), so other statements on the
	// pooled connection are planned as usual.
	sqlPlanSettings = `SELECT set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true),
       set_config('enable_mergejoin', 'off', true)`

	// sqlPartitions lists which requested partitions exist and sqlLock
	// also locks them. The requested
	// partitions are distinct, so a join (probing the primary key) finds
	// them; ORDER BY runs below the row locking, so rows are locked in
	// sorted order and two commits never wait on each other in a cycle.
	sqlPartitions = `SELECT p.topic_id, p.partition
FROM unnest($1::uuid[], $2::int4[]) AS u(t, p)
JOIN partitions p ON p.topic_id = u.t AND p.partition = u.p
ORDER BY p.topic_id, p.partition`
	sqlLock = sqlPartitions + `
FOR UPDATE OF p`

	sqlFindObjects = `SELECT key, commit_id, results FROM objects WHERE key = ANY($1::text[])`

	sqlProducerState = `SELECT s.producer_id, s.topic_id, s.partition, s.epoch, s.entries, s.pending_base, s.version
FROM unnest($1::int8[], $2::uuid[], $3::int4[]) AS u(pid, t, p)
CROSS JOIN LATERAL (
    SELECT * FROM producer_state s
    WHERE s.topic_id = u.t AND s.partition = u.p AND s.producer_id = u.pid
) s`

	sqlProducerEpochs = `SELECT producer_id, epoch FROM producers WHERE producer_id = ANY($1::int8[])`

	sqlCommit = `COMMIT`
)

// sqlAdvance locks the commit's partitions and moves their next offsets
// in one pass: the UPDATE is the lock (a separate SELECT … FOR UPDATE
// would write every row, and a WAL record, once more). $1, $2 are the
// request's distinct partitions in lock order; every other array names
// one by its 1-based position i. $3 holds how far each one's next offset
// moves (0: none of its batches is stored, and the row is only locked), $4
// whether the plan assumed it exists and $5 how many the plan assumed to
// exist. Rows are locked in the order the join produces them: the sorted
// subquery (one with ORDER BY is never flattened) drives a nested loop of
// primary-key probes, the only join commit transactions allow
// (sqlPlanSettings); TestAdvanceLockOrder checks the plan. Arrays are
// expanded by set-returning functions in a select list, which step
// through them together without first copying every row into a
// tuplestore as unnest in FROM does.
//
// The statement fails with codeCommitConflict unless exactly the
// partitions the plan assumed exist. It hands what sqlWrite needs — each
// partition's next offset before the commit (-1 where none exists), as an
// array and as the results' partition table (16 bytes per partition) —
// to the next statement in transaction-local settings: reading the
// partitions again would cost an index probe per partition. (It returns
// only their lengths, not the values, to the client.)
const sqlAdvance = `WITH moved AS (
    UPDATE partitions p SET next_offset = p.next_offset + u.n
    FROM (SELECT unnest($1::uuid[]) AS t, unnest($2::int4[]) AS p, unnest($3::int8[]) AS n,
                 generate_series(1, cardinality($1::uuid[])) AS i
          ORDER BY 1, 2) u
    WHERE p.topic_id = u.t AND p.partition = u.p
    RETURNING u.i, p.next_offset - u.n AS base, p.log_start_offset AS ls
), agg AS (
    SELECT array_agg(x.base ORDER BY x.i) AS base,
           string_agg(int8send(x.base) || int8send(x.ls), ''::bytea ORDER BY x.i) AS tbl
    FROM (SELECT m.i, m.base, m.ls FROM moved m
          UNION ALL
          SELECT e.i, -1, -1 FROM unnest($4::bool[]) WITH ORDINALITY AS e(x, i) WHERE NOT e.x) x
)
SELECT floe_commit_check((SELECT count(*) FROM moved) = $5
        AND ($5 = cardinality($4::bool[]) OR NOT EXISTS (SELECT 1 FROM moved m WHERE NOT ($4::bool[])[m.i]))),
    length(set_config('floe.commit_base', coalesce(agg.base, '{}')::text, true)),
    length(set_config('floe.commit_table', encode(coalesce(agg.tbl, ''::bytea), 'base64'), true))
FROM agg`

// sqlWrite writes the commit's rows and, in the same statement, verifies
// what the plan assumed; if any of it no longer holds, floe_commit_check
// (migration 0003) fails the statement with codeCommitConflict and the
// transaction rolls back whole. It runs after sqlAdvance, so its snapshot
// is taken under the partition locks. Checking in the writes themselves
// costs one index probe per row instead of two: a producer state UPDATE
// matches only the version the plan assumed, and an INSERT of a state the
// plan assumed absent, or of the object, does nothing if one exists.
//
// $1, $2, $4 and $21 hold each object's key, size, Go-encoded results
// and row count: one object, or a group committed together
// (CommitSegments), whose rows name their object by its 1-based position
// ($25). Producer states written carry the last object's id as their
// version. $5, $6 are sqlAdvance's $1, $2 and every other array names a
// partition by its position i; agg is what sqlAdvance handed over. Producer keys
// ($14–$18) carry the state version the plan assumed (0: no row) and, when
// the commit writes the state, the new epoch and entries (NULL entries:
// verify only). $22–$24 are how many states it updates, inserts and only
// verifies: the parts of the statement that have nothing to do (the common
// case) are skipped. The partition table is appended to the Go-encoded
// results and returned to the client.
//
// An object that gets no rows (every batch of its segment a duplicate or
// refused) is stamped unreferenced at its creation, as a swap's object
// without rows is: garbage collection finds objects by that stamp alone
// (UnreferencedObjects), and no reader can have looked a row of it up.
// Objects with rows are left out of the stamp's index (migration 0007).
const sqlWrite = `WITH agg AS (
    SELECT current_setting('floe.commit_base')::int8[] AS base,
           decode(current_setting('floe.commit_table'), 'base64') AS tbl
), obj AS (
    INSERT INTO objects (key, size, created, nrows, results, unreferenced)
    SELECT o.key, o.size, $3, o.nrows, o.res || coalesce(agg.tbl, ''::bytea),
           CASE WHEN o.nrows = 0 THEN $3::timestamptz END
    FROM agg, unnest($1::text[], $2::int8[], $21::int4[], $4::bytea[]) AS o(key, size, nrows, res)
    ON CONFLICT (key) DO NOTHING
    RETURNING id, key
), ids AS (
    -- Every object inserted, or nothing is written (the check fails).
    SELECT array_agg(o.id ORDER BY array_position($1::text[], o.key)) AS id, max(o.id) AS last,
           count(*) = cardinality($1::text[]) AS ok
    FROM obj o
), new_rows AS (
    INSERT INTO batches (topic_id, partition, base_offset, last_offset, object_id,
                         byte_offset, byte_length, records, max_timestamp)
    SELECT ($5::uuid[])[r.i], ($6::int4[])[r.i],
           ((SELECT base FROM agg))[r.i] + r.bo, ((SELECT base FROM agg))[r.i] + r.lo,
           ((SELECT id FROM ids))[r.o], r.off, r.len, r.n, r.ts
    FROM (SELECT unnest($7::int4[]) AS i, unnest($8::int8[]) AS bo, unnest($9::int8[]) AS lo,
                 unnest($10::int8[]) AS off, unnest($11::int8[]) AS len, unnest($12::int4[]) AS n,
                 unnest($13::int8[]) AS ts, unnest($25::int4[]) AS o) r
    WHERE (SELECT ok FROM ids)
), upd AS (
    UPDATE producer_state s SET epoch = k.e, entries = k.en, pending_base = ((SELECT base FROM agg))[k.i],
        version = (SELECT last FROM ids), updated = $3
    FROM (SELECT unnest($14::int8[]) AS pid, unnest($15::int4[]) AS i, unnest($16::int8[]) AS v,
                 unnest($17::int2[]) AS e, unnest($18::bytea[]) AS en) k
    WHERE k.en IS NOT NULL AND k.v <> 0
      AND s.topic_id = ($5::uuid[])[k.i] AND s.partition = ($6::int4[])[k.i] AND s.producer_id = k.pid
      AND s.version = k.v AND (SELECT ok FROM ids)
    RETURNING 1
), ins AS (
    INSERT INTO producer_state (topic_id, partition, producer_id, epoch, entries, pending_base, version, updated)
    SELECT ($5::uuid[])[k.i], ($6::int4[])[k.i], k.pid, k.e, k.en, ((SELECT base FROM agg))[k.i],
           (SELECT last FROM ids), $3
    FROM (SELECT unnest($14::int8[]) AS pid, unnest($15::int4[]) AS i, unnest($16::int8[]) AS v,
                 unnest($17::int2[]) AS e, unnest($18::bytea[]) AS en) k
    WHERE $23 > 0 AND k.en IS NOT NULL AND k.v = 0 AND (SELECT ok FROM ids)
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT floe_commit_check(
        (SELECT ok FROM ids)
        AND (SELECT count(*) FROM upd) = $22
        AND (SELECT count(*) FROM ins) = $23
        AND ($24 = 0 OR NOT EXISTS (
            SELECT 1 FROM unnest($14::int8[], $15::int4[], $16::int8[], $18::bytea[]) AS k(pid, i, v, en)
            WHERE k.en IS NULL AND k.v <> coalesce((
                SELECT s.version FROM producer_state s
                WHERE s.topic_id = ($5::uuid[])[k.i] AND s.partition = ($6::int4[])[k.i] AND s.producer_id = k.pid), 0)))
        AND NOT EXISTS (
            SELECT 1 FROM unnest($19::int8[], $20::int2[]) AS y(pid, e)
            WHERE y.e <> coalesce((SELECT pr.epoch FROM producers pr WHERE pr.producer_id = y.pid), -1))),
    (SELECT last FROM ids), (SELECT tbl FROM agg)`

// sqlFinish takes the next commit ids for the objects sqlWrite inserted,
// one each in the order of $1 (a group's objects get consecutive ids), and
// NOTIFYs the last: a follower reads every commit up to the one it is
// told of. It is the last statement before COMMIT: the commit_seq row
// lock, which hands out ids in commit order, is held only for it and the
// COMMIT. (The objects are there: sqlWrite fails the transaction without
// them.) It returns each object's position in $1 and commit id.
const sqlFinish = `WITH o AS (
    SELECT id, array_position($1::text[], key) AS i FROM objects WHERE key = ANY($1::text[]) AND commit_id IS NULL
), n AS (
    SELECT count(*) AS n FROM o
), seq AS (
    UPDATE commit_seq SET id = id + (SELECT n FROM n) WHERE EXISTS (SELECT 1 FROM o) RETURNING id
), note AS (
    SELECT pg_notify($2, seq.id::text) FROM seq
)
UPDATE objects SET commit_id = seq.id - (SELECT n FROM n) + o.i FROM seq, o WHERE objects.id = o.id
RETURNING o.i, objects.commit_id, (SELECT count(*) FROM note)`

// errConflict reports that what a plan assumed (read in round trip 1, or
// remembered) no longer held under the locks; nothing was written.
var errConflict = errors.New("catalog: commit read stale state")

// codeCommitConflict is the SQLSTATE floe_commit_check (migration 0003)
// fails sqlWrite with when what the plan assumed no longer holds.
const codeCommitConflict = "FL001"

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
	res, err := c.commit(ctx, []catalog.Segment{seg})
	if err != nil {
		return catalog.CommitResult{}, fmt.Errorf("catalog: commit segment %s: %w", seg.Key, err)
	}
	return res[0], nil
}

// CommitSegments commits a group of segments in one transaction: the
// partitions of all of them are locked and moved once, each producer
// state is written once, and each segment gets its own object row, batch
// rows and commit id, in order. If some key of the group is already
// committed (a WAL replayed after a crash can group buffers differently
// than before), the segments are committed one by one instead, each key
// answering as CommitSegment does.
func (c *Catalog) CommitSegments(ctx context.Context, segs []catalog.Segment) ([]catalog.CommitResult, error) {
	if err := commitplan.ValidateSegments(segs); err != nil {
		return nil, fmt.Errorf("catalog: commit %d segments: %w", len(segs), err)
	}
	if err := c.checkOpen(); err != nil {
		return nil, fmt.Errorf("catalog: commit %d segments: %w", len(segs), err)
	}
	res, err := c.commit(ctx, segs)
	if errors.Is(err, errGroupCommitted) {
		res = make([]catalog.CommitResult, len(segs))
		for i, seg := range segs {
			if res[i], err = c.CommitSegment(ctx, seg); err != nil {
				return nil, err
			}
		}
		return res, nil
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: commit %d segments from %s: %w", len(segs), segs[0].Key, err)
	}
	return res, nil
}

// errGroupCommitted reports that a key of a group of several segments is
// already committed: the group is committed segment by segment instead.
var errGroupCommitted = errors.New("catalog: a key of the group is already committed")

// commit commits segs (one, or a group) with retries.
func (c *Catalog) commit(ctx context.Context, segs []catalog.Segment) ([]catalog.CommitResult, error) {
	in := newCommitInput(segs)
	cache := c.states
	conflicts := 0
	for attempt := 1; ; attempt++ {
		res, err := c.commitOnce(ctx, in, c.alwaysLock || conflicts >= optimisticTries, cache)
		if err == nil {
			c.hub.Publish(res[len(res)-1].CommitID)
			return res, nil
		}
		if errors.Is(err, errGroupCommitted) {
			return nil, err
		}
		// Whatever went wrong, read afresh next time.
		cache.Forget(in.keys, in.pids)
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
			return nil, err
		}
		if berr := backoff(ctx, attempt); berr != nil {
			return nil, err
		}
	}
}

// CommitConflicts returns how many commit attempts found what they had
// read without locks, or remembered, stale (a measure of contention on
// producer state, for tests and benchmarks).
func (c *Catalog) CommitConflicts() int64 { return c.conflicts.Load() }

// maxCachedStates bounds a catalog's StateCache: 65,536 producer states
// (a few MB), e.g. 2,000 partitions × 32 producers.
const maxCachedStates = 1 << 16

type commitInput struct {
	// seg is the segment, or a group's segments joined (commitplan.Concat)
	// with starts where each begins; objects has each segment's object.
	seg     catalog.Segment
	starts  []int
	objects []catalog.Segment
	objKeys []string // the objects' keys, in order
	lay     *commitplan.Layout
	// The layout's lists, named for the statements.
	tps  []catalog.TopicPartition // distinct, sorted: the lock order
	pos  []int32                  // each batch's position in tps
	keys []commitplan.ProducerKey // distinct, sorted
	pids []int64                  // distinct, sorted
	// ids and parts are tps's topic ids and partitions, the statements'
	// lock-order arrays.
	ids   [][16]byte
	parts []int32
}

func newCommitInput(segs []catalog.Segment) commitInput {
	seg, starts := commitplan.Concat(segs)
	l := commitplan.NewLayout(seg)
	in := commitInput{seg: seg, starts: starts, objects: segs, lay: l, tps: l.TPs, pos: l.Pos, keys: l.Keys, pids: l.PIDs}
	in.objKeys = make([]string, len(segs))
	for i, o := range segs {
		in.objKeys[i] = o.Key
	}
	in.ids, in.parts = topicIDs(in.tps)
	return in
}

// readState is what the plan is built on: read in round trip 1 or
// remembered.
type readState struct {
	plan     commitplan.LayoutInput
	versions []int64               // each key's state version (0: no row), by position
	existing *catalog.CommitResult // the key (of a single segment) is already committed
}

func newReadState(in commitInput) readState {
	rs := readState{
		plan:     commitplan.NewLayoutInput(in.seg, in.lay),
		versions: make([]int64, len(in.keys)),
	}
	rs.plan.Starts = in.starts
	return rs
}

// relativeToAll marks every partition as existing, planned relative to its
// next offset: offsets are assigned in SQL.
func (rs *readState) relativeToAll() {
	for i := range rs.plan.Partitions {
		rs.plan.Partitions[i] = commitplan.Partition{NextOffset: commitplan.RelBase}
		rs.plan.Exists[i] = true
	}
}

// rememberedState returns the read state of in from what the catalog
// remembers, or false if something is missing and round trip 1 must run.
func (c *Catalog) rememberedState(in commitInput, cache *commitplan.StateCache) (readState, bool) {
	if !c.knownPartitions(in.tps) {
		return readState{}, false
	}
	rs := newReadState(in)
	if !cache.Lookup(&rs.plan, rs.versions) {
		return readState{}, false
	}
	rs.relativeToAll()
	return rs, true
}

// commitOnce is one attempt. Errors from before COMMIT was sent leave
// nothing behind; errors after it wrap ErrCommitUnknown.
func (c *Catalog) commitOnce(ctx context.Context, in commitInput, locked bool, cache *commitplan.StateCache) (res []catalog.CommitResult, err error) {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return res, safeErr{err} // nothing was sent
	}
	defer func() { releaseConn(conn) }()
	useBinaryArrays(conn.Conn().TypeMap())

	rs, ok := readState{}, false
	if !locked {
		rs, ok = c.rememberedState(in, cache)
	}
	if !ok {
		if rs, err = c.readForCommit(ctx, conn, in, locked); err != nil {
			return res, readErr(err)
		}
	}
	if rs.existing != nil {
		return []catalog.CommitResult{*rs.existing}, nil // in locked mode, the deferred release rolls back
	}
	plan := commitplan.BuildLayout(rs.plan)

	advance, write := c.writeArgs(in, rs, plan)
	w := &pgx.Batch{}
	if !locked {
		w.Queue(sqlBegin)
		w.Queue(sqlPlanSettings)
	}
	w.Queue(sqlAdvance, advance...)
	w.Queue(sqlWrite, write...)
	w.Queue(sqlFinish, in.objKeys, c.channel)
	w.Queue(sqlCommit)
	br := conn.SendBatch(ctx, w)
	defer br.Close()
	steps := 1 // sqlAdvance
	if !locked {
		steps = 3
	}
	for range steps {
		_, err := br.Exec()
		if pgCode(err) == codeCommitConflict {
			return res, errConflict // nothing was written: the transaction failed
		}
		if err != nil {
			return res, commitErr(err, false)
		}
	}
	var checked bool
	var objectID int64
	var table []byte
	err = br.QueryRow().Scan(&checked, &objectID, &table)
	if pgCode(err) == codeCommitConflict {
		return res, errConflict // nothing was written: the transaction failed
	}
	if err != nil {
		return res, commitErr(err, false)
	}
	if !checked {
		// floe_commit_check fails rather than return false; if it ever
		// did, the pipeline's COMMIT would keep writes made on stale reads.
		return res, fmt.Errorf("%w: the commit check returned false", catalog.ErrCommitUnknown)
	}
	states, err := partitionTable(table, len(in.tps))
	if err != nil {
		return res, commitErr(err, false)
	}
	commitIDs := make([]int64, len(in.objects))
	var pos int32
	var commitID, notified int64
	if _, err := pgx.ForEachRow(mustRows(br.Query()), []any{&pos, &commitID, &notified}, func() error {
		if pos < 1 || int(pos) > len(commitIDs) {
			return fmt.Errorf("commit id for object %d of %d", pos, len(commitIDs))
		}
		commitIDs[pos-1] = commitID
		return nil
	}); err != nil {
		return res, commitErr(err, false)
	}
	for i, id := range commitIDs {
		if id == 0 {
			// Cannot happen (sqlWrite inserted every object in this
			// transaction). The pipeline's COMMIT runs anyway, so the
			// outcome is unknown: the caller commits the key again and
			// reads what is stored.
			return res, fmt.Errorf("%w: no commit id for object %s", catalog.ErrCommitUnknown, in.objects[i].Key)
		}
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
	// COMMIT's CommandComplete arrived: the commit is durable whatever
	// happens to the connection now.
	remember(cache, in, rs, plan, states, objectID)
	res = make([]catalog.CommitResult, len(in.objects))
	for i := range res {
		from, to := in.span(i)
		res[i] = catalog.CommitResult{CommitID: commitIDs[i], Results: commitplan.Resolve(in.objects[i], plan.Results[from:to], in.pos[from:to], states)}
	}
	return res, nil
}

// span returns where the i-th object's batches lie in in.seg.Batches.
func (in commitInput) span(i int) (from, to int) {
	if in.starts == nil {
		return 0, len(in.seg.Batches)
	}
	from, to = in.starts[i], len(in.seg.Batches)
	if i+1 < len(in.starts) {
		to = in.starts[i+1]
	}
	return from, to
}

// remember stores in cache what a commit verified: the producer states it
// read and kept, the ones it wrote (version: its last object's id), and
// the epochs.
func remember(cache *commitplan.StateCache, in commitInput, rs readState, plan commitplan.LayoutPlan, parts []commitplan.PartitionState, objectID int64) {
	for k := range in.keys {
		if plan.Changed[k] {
			commitplan.ResolveEntries(plan.States[k].Entries, parts[in.lay.KeyTP[k]].NextOffset)
		}
	}
	state := func(k int) commitplan.CachedState {
		if plan.Changed[k] {
			return commitplan.CachedState{State: plan.States[k], Has: true, Version: objectID}
		}
		return commitplan.CachedState{State: rs.plan.States[k], Has: rs.plan.HasState[k], Version: rs.versions[k]}
	}
	epochs := make([]int16, len(in.pids))
	for i := range in.pids {
		epochs[i] = commitplan.NoEpoch
		if rs.plan.KnownEpoch[i] {
			epochs[i] = rs.plan.Epochs[i]
		}
	}
	cache.StoreEach(in.keys, state, in.pids, epochs)
}

// readForCommit sends round trip 1. In locked mode it opens the
// transaction and locks the partitions first.
func (c *Catalog) readForCommit(ctx context.Context, conn *pgxpool.Conn, in commitInput, locked bool) (readState, error) {
	c.reads.Add(1)
	// Unlocked, the partitions' existence may come from the cache.
	askParts := locked || !c.knownPartitions(in.tps)
	b := &pgx.Batch{}
	if locked {
		b.Queue(sqlBegin)
	}
	b.Queue(sqlPlanSettings)
	if locked {
		b.Queue(sqlLock, uuidArray(in.ids), int4Array(in.parts))
	} else if askParts {
		b.Queue(sqlPartitions, uuidArray(in.ids), int4Array(in.parts))
	}
	b.Queue(sqlFindObjects, in.objKeys)
	if len(in.keys) > 0 {
		pids := make([]int64, len(in.keys))
		kt := make([]catalog.TopicPartition, len(in.keys))
		for i, k := range in.keys {
			pids[i], kt[i] = k.ProducerID, k.TopicPartition
		}
		kids, kparts := topicIDs(kt)
		b.Queue(sqlProducerState, int8Array(pids), uuidArray(kids), int4Array(kparts))
		b.Queue(sqlProducerEpochs, int8Array(in.pids))
	}
	br := conn.SendBatch(ctx, b)
	defer br.Close()
	if locked {
		if _, err := br.Exec(); err != nil {
			return readState{}, err
		}
	}
	if _, err := br.Exec(); err != nil {
		return readState{}, err
	}
	rs := newReadState(in)
	// Offsets are assigned in SQL: plan relative to every partition.
	rel := commitplan.Partition{NextOffset: commitplan.RelBase}
	var id [16]byte
	if askParts {
		var tp catalog.TopicPartition
		var exist []catalog.TopicPartition
		x := commitplan.NewIndex(in.tps)
		if _, err := pgx.ForEachRow(mustRows(br.Query()), []any{&id, &tp.Partition}, func() error {
			tp.TopicID = id
			if i := x.Of(tp); i >= 0 {
				rs.plan.Partitions[i], rs.plan.Exists[i] = rel, true
			}
			exist = append(exist, tp)
			return nil
		}); err != nil {
			return readState{}, err
		}
		c.learnPartitions(exist)
	} else {
		rs.relativeToAll()
	}

	var key string
	var commitID int64
	var stored []byte
	found := 0
	if _, err := pgx.ForEachRow(mustRows(br.Query()), []any{&key, &commitID, &stored}, func() error {
		found++
		if len(in.objects) > 1 {
			return nil
		}
		results, err := commitplan.DecodeResults(stored)
		if err != nil {
			return fmt.Errorf("stored results: %w", err)
		}
		rs.existing = &catalog.CommitResult{CommitID: commitID, Results: results}
		return nil
	}); err != nil {
		return readState{}, err
	}
	switch {
	case found > 0 && len(in.objects) > 1:
		return readState{}, errGroupCommitted
	case found > 0:
		return rs, nil
	}

	if len(in.keys) > 0 {
		var k commitplan.ProducerKey
		var epoch int16
		var entries []byte
		var pending, version int64
		x := commitplan.NewKeyIndex(in.keys)
		if _, err := pgx.ForEachRow(mustRows(br.Query()), []any{&k.ProducerID, &id, &k.Partition, &epoch, &entries, &pending, &version}, func() error {
			k.TopicID = id
			es, err := commitplan.DecodeEntries(entries, pending)
			if err != nil {
				return fmt.Errorf("producer %d state: %w", k.ProducerID, err)
			}
			if i := x.Of(k); i >= 0 {
				rs.plan.States[i], rs.plan.HasState[i] = commitplan.ProducerState{Epoch: epoch, Entries: es}, true
				rs.versions[i] = version
			}
			return nil
		}); err != nil {
			return readState{}, err
		}
		var pid int64
		if _, err := pgx.ForEachRow(mustRows(br.Query()), []any{&pid, &epoch}, func() error {
			if i, ok := slices.BinarySearch(in.pids, pid); ok {
				rs.plan.Epochs[i], rs.plan.KnownEpoch[i] = epoch, true
			}
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

// partitionTable decodes the partition table sqlWrite returns: each
// partition's state before the commit, in lock order.
func partitionTable(b []byte, n int) ([]commitplan.PartitionState, error) {
	if len(b) != 16*n {
		return nil, fmt.Errorf("partition table of %d bytes for %d partitions", len(b), n)
	}
	table := make([]commitplan.PartitionState, n)
	for i := range table {
		table[i] = commitplan.PartitionState{
			NextOffset: int64(binary.BigEndian.Uint64(b[16*i:])),
			LogStart:   int64(binary.BigEndian.Uint64(b[16*i+8:])),
		}
	}
	return table, nil
}

// writeArgs flattens a plan and what it assumed into the arguments of
// sqlAdvance and sqlWrite. Positions are 1-based, as SQL arrays are.
func (c *Catalog) writeArgs(in commitInput, rs readState, plan commitplan.LayoutPlan) (advance, write []any) {
	req := len(in.tps)
	var nexist int64
	for _, e := range rs.plan.Exists {
		if e {
			nexist++
		}
	}
	n, k, y := len(plan.Rows), len(in.keys), len(in.pids)
	// One allocation per element type: moveBy, five row columns, two key
	// columns, one producer column.
	i64 := make([]int64, req+5*n+2*k+y)
	i32 := make([]int32, 2*n+2*k)
	i16 := make([]int16, k+y)
	take64 := func(m int) []int64 { s := i64[:m:m]; i64 = i64[m:]; return s }
	take32 := func(m int) []int32 { s := i32[:m:m]; i32 = i32[m:]; return s }
	take16 := func(m int) []int16 { s := i16[:m:m]; i16 = i16[m:]; return s }

	moveBy := take64(req)
	for i, moved := range plan.Moved {
		if moved {
			moveBy[i] = plan.Next[i] - commitplan.RelBase
		}
	}

	ri, recs, ro := take32(n), take32(n), make([]int32, n)
	bo, lo, off, ln, ts := take64(n), take64(n), take64(n), take64(n), take64(n)
	nrows := make([]int32, len(in.objects))
	for i, r := range plan.Rows {
		ri[i], ro[i] = plan.RowPos[i]+1, plan.RowSeg[i]+1
		nrows[plan.RowSeg[i]]++
		bo[i], lo[i] = r.BaseOffset-commitplan.RelBase, r.LastOffset-commitplan.RelBase
		off[i], ln[i], recs[i], ts[i] = r.ByteOffset, r.ByteLength, r.Records, r.MaxTimestamp
	}

	// Every producer key is verified; the ones the plan changes are also
	// written. Their entries are encoded into one buffer.
	kid, kv, ki, ke := take64(k), take64(k), take32(k), take16(k)
	ken := make([][]byte, k)
	var enc []byte
	ends := take32(k)
	var nupd, nins, nverify int64
	for i, key := range in.keys {
		kid[i], ki[i], kv[i] = key.ProducerID, in.lay.KeyTP[i]+1, rs.versions[i]
		if plan.Changed[i] {
			st := plan.States[i]
			ke[i] = st.Epoch
			if enc == nil {
				enc = make([]byte, 0, 48*k) // 5 entries take 20-80 bytes
			}
			enc = commitplan.AppendEntries(enc, st.Entries)
			if kv[i] != 0 {
				nupd++
			} else {
				nins++
			}
		} else {
			nverify++
		}
		ends[i] = int32(len(enc))
	}
	start := int32(0)
	for i := range in.keys {
		if plan.Changed[i] {
			ken[i] = enc[start:ends[i]:ends[i]]
		}
		start = ends[i]
	}
	yid, ye := take64(y), take16(y)
	for i, pid := range in.pids {
		yid[i], ye[i] = pid, commitplan.NoEpoch
		if rs.plan.KnownEpoch[i] {
			ye[i] = rs.plan.Epochs[i]
		}
	}
	advance = []any{uuidArray(in.ids), int4Array(in.parts), int8Array(moveBy), boolArray(rs.plan.Exists), nexist}
	sizes := make([]int64, len(in.objects))
	results := make([][]byte, len(in.objects))
	for i, o := range in.objects {
		from, to := in.span(i)
		sizes[i] = o.Size
		results[i] = commitplan.EncodeResultsAt(plan.Results[from:to], req, in.pos[from:to])
	}
	write = []any{
		in.objKeys, int8Array(sizes), c.now().UTC(), byteaArray(results),
		uuidArray(in.ids), int4Array(in.parts),
		int4Array(ri), int8Array(bo), int8Array(lo), int8Array(off), int8Array(ln), int4Array(recs), int8Array(ts),
		int8Array(kid), int4Array(ki), int8Array(kv), int2Array(ke), byteaArray(ken),
		int8Array(yid), int2Array(ye),
		int4Array(nrows), nupd, nins, nverify, int4Array(ro),
	}
	reserveArrays(advance)
	reserveArrays(write)
	return advance, write
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
