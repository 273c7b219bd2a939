package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/floebroker/floe/catalog"
)

// MaxBatchRows caps the rows one Batches call returns, whatever maxBytes
// asks for; callers continue from the last row.
const MaxBatchRows = 1000

// DefaultCommitsLimit is CommitsSince's limit when the caller passes ≤ 0.
const DefaultCommitsLimit = 1000

const batchRowCols = `b.topic_id, b.partition, b.base_offset, b.last_offset, o.key,
	b.byte_offset, b.byte_length, b.records, b.max_timestamp, b.commit_id`

// lookupCols are the columns scanBatchRow reads: batchRowCols (which
// compaction's queries extend with their own object columns) and the
// object's size.
const lookupCols = batchRowCols + `, o.size`

func scanBatchRow(row scanner) (catalog.BatchRow, error) {
	var r catalog.BatchRow
	var id []byte
	if err := row.Scan(&id, &r.Partition, &r.BaseOffset, &r.LastOffset, &r.ObjectKey,
		&r.ByteOffset, &r.ByteLength, &r.Records, &r.MaxTimestamp, &r.CommitID, &r.ObjectSize); err != nil {
		return r, err
	}
	var err error
	r.TopicID, err = topicID(id)
	return r, err
}

// stmtCache holds statements prepared once on the reader pool. The
// driver parses and plans a statement on every Query otherwise, which was
// most of what a catch-up fetch's Batches call cost.
type stmtCache struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// lockShared serializes a read outside read() with writers when readers
// and writers share one connection (":memory:", as read does); it returns
// the unlock, or ctx's error if ctx ended while waiting.
func (c *Catalog) lockShared(ctx context.Context) (func(), error) {
	if c.r != c.w {
		return func() {}, nil
	}
	if err := c.wmu.lock(ctx); err != nil {
		return nil, err
	}
	return c.wmu.unlock, nil
}

// prepared returns query prepared on the reader pool (each connection
// prepares it once). Call it before taking lockShared or starting a
// transaction: preparing may need a connection of its own (":memory:" has
// only one).
func (c *Catalog) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	c.stmts.mu.Lock()
	st, ok := c.stmts.m[query]
	c.stmts.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := c.r.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.stmts.mu.Lock()
	defer c.stmts.mu.Unlock()
	if prev, ok := c.stmts.m[query]; ok {
		st.Close()
		return prev, nil
	}
	if c.stmts.m == nil {
		c.stmts.m = make(map[string]*sql.Stmt)
	}
	c.stmts.m[query] = st
	return st, nil
}

func queryBatchRows(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]catalog.BatchRow, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return collectBatchRows(rows)
}

func collectBatchRows(rows *sql.Rows) ([]catalog.BatchRow, error) {
	defer rows.Close()
	var out []catalog.BatchRow
	for rows.Next() {
		r, err := scanBatchRow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

const sqlOffsets = `SELECT log_start_offset, next_offset FROM partitions WHERE topic_id = ?1 AND partition = ?2`

func partitionOffsets(ctx context.Context, tx *sql.Tx, tp catalog.TopicPartition) (catalog.PartitionOffsets, error) {
	var o catalog.PartitionOffsets
	err := tx.QueryRowContext(ctx, sqlOffsets, tp.TopicID[:], tp.Partition).Scan(&o.LogStart, &o.HighWatermark)
	if errors.Is(err, sql.ErrNoRows) {
		err = catalog.ErrUnknownTopic
	}
	return o, err
}

// Offsets returns tp's log start and high watermark: one statement, so no
// transaction of its own.
func (c *Catalog) Offsets(ctx context.Context, tp catalog.TopicPartition) (catalog.PartitionOffsets, error) {
	var o catalog.PartitionOffsets
	st, err := c.prepared(ctx, sqlOffsets)
	var unlock func()
	if err == nil {
		unlock, err = c.lockShared(ctx)
	}
	if err == nil {
		err = st.QueryRowContext(ctx, tp.TopicID[:], tp.Partition).Scan(&o.LogStart, &o.HighWatermark)
		unlock()
		if errors.Is(err, sql.ErrNoRows) {
			err = catalog.ErrUnknownTopic
		}
	}
	if err != nil {
		return o, fmt.Errorf("catalog: offsets of %s: %w", tpString(tp), err)
	}
	return o, nil
}

// OffsetsOf returns the log start and high watermark of each of tps that
// exists, all read in one transaction (one snapshot) by the statement
// Offsets uses: SQLite runs in the process, so a lookup per partition
// costs no round trip.
func (c *Catalog) OffsetsOf(ctx context.Context, tps []catalog.TopicPartition) (map[catalog.TopicPartition]catalog.PartitionOffsets, error) {
	out := make(map[catalog.TopicPartition]catalog.PartitionOffsets, len(tps))
	if len(tps) == 0 {
		return out, nil
	}
	st, err := c.prepared(ctx, sqlOffsets)
	if err == nil {
		err = c.read(ctx, func(tx *sql.Tx) error {
			txst := tx.StmtContext(ctx, st)
			defer txst.Close()
			for _, tp := range tps {
				var o catalog.PartitionOffsets
				err := txst.QueryRowContext(ctx, tp.TopicID[:], tp.Partition).Scan(&o.LogStart, &o.HighWatermark)
				switch {
				case err == nil:
					out[tp] = o
				case !errors.Is(err, sql.ErrNoRows):
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: offsets of %d partitions: %w", len(tps), err)
	}
	return out, nil
}

// sqlBatches reads the partition's offsets and, in the same statement (so
// in one snapshot, without a transaction of its own), its rows from offset
// ?3 on, at most ?4, in offset order straight from the primary key: the
// caller stops reading once it has the bytes it wants, so a call costs the
// rows it returns, not MaxBatchRows. Every row carries the offsets; a
// partition without such rows gives one row whose topic id is NULL (and
// other batch columns zero), and an unknown partition none.
const sqlBatches = `SELECT p.log_start_offset, p.next_offset, b.topic_id,
    coalesce(b.partition, 0), coalesce(b.base_offset, 0), coalesce(b.last_offset, 0), coalesce(o.key, ''),
    coalesce(b.byte_offset, 0), coalesce(b.byte_length, 0), coalesce(b.records, 0), coalesce(b.max_timestamp, 0),
    coalesce(b.commit_id, 0), coalesce(o.size, 0)
FROM partitions p
LEFT JOIN batches b ON b.topic_id = p.topic_id AND b.partition = p.partition AND b.last_offset >= ?3
LEFT JOIN objects o ON o.id = b.object_id
WHERE p.topic_id = ?1 AND p.partition = ?2
ORDER BY b.last_offset
LIMIT ?4`

// Batches returns tp's rows holding offsets ≥ from, ascending, at least one
// if any exist, until maxBytes are covered or MaxBatchRows rows. from
// below the log start or above the high watermark is ErrOffsetOutOfRange;
// from at the high watermark returns no rows.
func (c *Catalog) Batches(ctx context.Context, tp catalog.TopicPartition, from int64, maxBytes int64) ([]catalog.BatchRow, error) {
	out, err := c.batches(ctx, tp, from, maxBytes)
	if err != nil {
		return nil, fmt.Errorf("catalog: batches of %s from %d: %w", tpString(tp), from, err)
	}
	return out, nil
}

func (c *Catalog) batches(ctx context.Context, tp catalog.TopicPartition, from int64, maxBytes int64) ([]catalog.BatchRow, error) {
	st, err := c.prepared(ctx, sqlBatches)
	if err != nil {
		return nil, err
	}
	unlock, err := c.lockShared(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rows, err := st.QueryContext(ctx, tp.TopicID[:], tp.Partition, from, MaxBatchRows)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		out     []catalog.BatchRow
		o       catalog.PartitionOffsets
		found   bool
		covered int64
	)
	// Rows that start before maxBytes are covered: always the first.
	for covered < max(maxBytes, 1) && rows.Next() {
		var (
			r  catalog.BatchRow
			id []byte
		)
		if err := rows.Scan(&o.LogStart, &o.HighWatermark, &id, &r.Partition, &r.BaseOffset, &r.LastOffset, &r.ObjectKey,
			&r.ByteOffset, &r.ByteLength, &r.Records, &r.MaxTimestamp, &r.CommitID, &r.ObjectSize); err != nil {
			return nil, err
		}
		found = true
		if id == nil {
			continue // the partition, without rows
		}
		if r.TopicID, err = topicID(id); err != nil {
			return nil, err
		}
		out = append(out, r)
		covered += r.ByteLength
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if !found {
		return nil, catalog.ErrUnknownTopic
	}
	if from < o.LogStart || from > o.HighWatermark {
		return nil, fmt.Errorf("%w: %d is outside [%d, %d]", catalog.ErrOffsetOutOfRange, from, o.LogStart, o.HighWatermark)
	}
	return out, nil
}

// rowAboveLogStart reads one row of tp holding offsets ≥ from and at or
// above its log start, chosen by order, and the log start it filtered
// with (read in the same transaction), and reports ErrUnknownTopic for a
// missing partition.
func (c *Catalog) rowAboveLogStart(ctx context.Context, op string, tp catalog.TopicPartition, from int64, cond, order string, args ...any) (catalog.BatchRow, int64, bool, error) {
	var row catalog.BatchRow
	var logStart int64
	var found bool
	err := c.read(ctx, func(tx *sql.Tx) error {
		o, err := partitionOffsets(ctx, tx, tp)
		if err != nil {
			return err
		}
		logStart = o.LogStart
		row, err = scanBatchRow(tx.QueryRowContext(ctx, `SELECT `+lookupCols+`
FROM batches b JOIN objects o ON o.id = b.object_id
WHERE b.topic_id = ?1 AND b.partition = ?2 AND b.last_offset >= ?3 `+cond+`
ORDER BY `+order+` LIMIT 1`, append([]any{tp.TopicID[:], tp.Partition, max(from, o.LogStart)}, args...)...))
		found = err == nil
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return catalog.BatchRow{}, 0, false, fmt.Errorf("catalog: %s of %s: %w", op, tpString(tp), err)
	}
	return row, logStart, found, nil
}

// BatchForTimestamp returns the first row (by offset, holding offsets ≥
// from and at or above the log start) whose MaxTimestamp ≥ ts, and that
// log start.
func (c *Catalog) BatchForTimestamp(ctx context.Context, tp catalog.TopicPartition, ts, from int64) (catalog.BatchRow, int64, bool, error) {
	return c.rowAboveLogStart(ctx, "batch for timestamp", tp, from, `AND b.max_timestamp >= ?4`, `b.last_offset`, ts)
}

// MaxTimestampBatch returns the row holding the largest timestamp (the
// earliest such row on ties) among those holding offsets ≥ from, at or
// above the log start, and that log start.
func (c *Catalog) MaxTimestampBatch(ctx context.Context, tp catalog.TopicPartition, from int64) (catalog.BatchRow, int64, bool, error) {
	return c.rowAboveLogStart(ctx, "max timestamp batch", tp, from, ``, `b.max_timestamp DESC, b.last_offset`)
}

// DeleteRecords advances tp's log start to offset, clamped to the high
// watermark; offset -1 means the high watermark. It never moves back.
func (c *Catalog) DeleteRecords(ctx context.Context, tp catalog.TopicPartition, offset int64) (int64, error) {
	if offset < -1 {
		return 0, fmt.Errorf("catalog: delete records of %s to %d: %w", tpString(tp), offset, catalog.ErrOffsetOutOfRange)
	}
	var start int64
	err := c.write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `UPDATE partitions
SET log_start_offset = max(log_start_offset, CASE WHEN ?3 < 0 THEN next_offset ELSE min(?3, next_offset) END)
WHERE topic_id = ?1 AND partition = ?2
RETURNING log_start_offset`, tp.TopicID[:], tp.Partition, offset).Scan(&start)
		if errors.Is(err, sql.ErrNoRows) {
			return catalog.ErrUnknownTopic
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: delete records of %s to %d: %w", tpString(tp), offset, err)
	}
	return start, nil
}

// CommitsSince returns rows of commits with id > after, whole commits only
// (one commit larger than limit is returned whole), and the id to pass as
// after next time, all read in one snapshot.
func (c *Catalog) CommitsSince(ctx context.Context, after int64, limit int) ([]catalog.BatchRow, int64, error) {
	if limit <= 0 {
		limit = DefaultCommitsLimit
	}
	var rows []catalog.BatchRow
	var latest int64
	err := c.read(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT id FROM commit_seq`).Scan(&latest); err != nil {
			return err
		}
		var err error
		rows, err = queryBatchRows(ctx, tx, `SELECT `+lookupCols+`
FROM batches b JOIN objects o ON o.id = b.object_id
WHERE b.commit_id > ?1
ORDER BY b.commit_id, b.topic_id, b.partition, b.last_offset
LIMIT ?2`, after, limit+1)
		if err != nil || len(rows) <= limit {
			return err
		}
		last := rows[limit].CommitID
		rows = rows[:limit]
		for len(rows) > 0 && rows[len(rows)-1].CommitID == last {
			rows = rows[:len(rows)-1]
		}
		if len(rows) == 0 {
			rows, err = queryBatchRows(ctx, tx, `SELECT `+lookupCols+`
FROM batches b JOIN objects o ON o.id = b.object_id
WHERE b.commit_id = ?1
ORDER BY b.topic_id, b.partition, b.last_offset`, last)
			if err != nil {
				return err
			}
		}
		latest = rows[len(rows)-1].CommitID
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("catalog: commits since %d: %w", after, err)
	}
	return rows, latest, nil
}

// Watch delivers the ids of commits made through this Catalog.
func (c *Catalog) Watch(ctx context.Context) (<-chan int64, error) {
	if err := c.checkOpen(); err != nil {
		return nil, fmt.Errorf("catalog: watch: %w", err)
	}
	ch, ok := c.hub.Subscribe(ctx)
	if !ok {
		return nil, fmt.Errorf("catalog: watch: %w", catalog.ErrClosed)
	}
	return ch, nil
}

func tpString(tp catalog.TopicPartition) string {
	return fmt.Sprintf("%x/%d", tp.TopicID[:], tp.Partition)
}
