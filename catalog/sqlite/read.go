package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/floebroker/floe/catalog"
)

// MaxBatchRows caps the rows one Batches call returns, whatever maxBytes
// asks for; callers continue from the last row.
const MaxBatchRows = 1000

// DefaultCommitsLimit is CommitsSince's limit when the caller passes ≤ 0.
const DefaultCommitsLimit = 1000

const batchRowCols = `b.topic_id, b.partition, b.base_offset, b.last_offset, o.key,
	b.byte_offset, b.byte_length, b.records, b.max_timestamp, b.commit_id`

func scanBatchRow(row scanner) (catalog.BatchRow, error) {
	var r catalog.BatchRow
	var id []byte
	if err := row.Scan(&id, &r.Partition, &r.BaseOffset, &r.LastOffset, &r.ObjectKey,
		&r.ByteOffset, &r.ByteLength, &r.Records, &r.MaxTimestamp, &r.CommitID); err != nil {
		return r, err
	}
	var err error
	r.TopicID, err = topicID(id)
	return r, err
}

func queryBatchRows(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]catalog.BatchRow, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
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

func partitionOffsets(ctx context.Context, tx *sql.Tx, tp catalog.TopicPartition) (catalog.PartitionOffsets, error) {
	var o catalog.PartitionOffsets
	err := tx.QueryRowContext(ctx, `SELECT log_start_offset, next_offset FROM partitions WHERE topic_id = ?1 AND partition = ?2`,
		tp.TopicID[:], tp.Partition).Scan(&o.LogStart, &o.HighWatermark)
	if errors.Is(err, sql.ErrNoRows) {
		err = catalog.ErrUnknownTopic
	}
	return o, err
}

// Offsets returns tp's log start and high watermark.
func (c *Catalog) Offsets(ctx context.Context, tp catalog.TopicPartition) (catalog.PartitionOffsets, error) {
	var o catalog.PartitionOffsets
	err := c.read(ctx, func(tx *sql.Tx) error {
		var err error
		o, err = partitionOffsets(ctx, tx, tp)
		return err
	})
	if err != nil {
		return o, fmt.Errorf("catalog: offsets of %s: %w", tpString(tp), err)
	}
	return o, nil
}

// Batches returns tp's rows holding offsets ≥ from, ascending, at least one
// if any exist, until maxBytes are covered or MaxBatchRows rows. from
// below the log start or above the high watermark is ErrOffsetOutOfRange;
// from at the high watermark returns no rows.
func (c *Catalog) Batches(ctx context.Context, tp catalog.TopicPartition, from int64, maxBytes int64) ([]catalog.BatchRow, error) {
	var out []catalog.BatchRow
	err := c.read(ctx, func(tx *sql.Tx) error {
		o, err := partitionOffsets(ctx, tx, tp)
		if err != nil {
			return err
		}
		if from < o.LogStart || from > o.HighWatermark {
			return fmt.Errorf("%w: %d is outside [%d, %d]", catalog.ErrOffsetOutOfRange, from, o.LogStart, o.HighWatermark)
		}
		out, err = queryBatchRows(ctx, tx, `SELECT `+batchRowCols+`
FROM (
    SELECT l.*, sum(l.byte_length) OVER (ORDER BY l.last_offset) - l.byte_length AS before
    FROM (
        SELECT * FROM batches
        WHERE topic_id = ?1 AND partition = ?2 AND last_offset >= ?3
        ORDER BY last_offset LIMIT ?4
    ) l
) b
JOIN objects o ON o.id = b.object_id
WHERE b.before < ?5
ORDER BY b.last_offset`, tp.TopicID[:], tp.Partition, from, MaxBatchRows, max(maxBytes, 1))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: batches of %s from %d: %w", tpString(tp), from, err)
	}
	return out, nil
}

func (c *Catalog) rowAboveLogStart(ctx context.Context, op string, tp catalog.TopicPartition, cond, order string, args ...any) (catalog.BatchRow, bool, error) {
	var row catalog.BatchRow
	var found bool
	err := c.read(ctx, func(tx *sql.Tx) error {
		o, err := partitionOffsets(ctx, tx, tp)
		if err != nil {
			return err
		}
		row, err = scanBatchRow(tx.QueryRowContext(ctx, `SELECT `+batchRowCols+`
FROM batches b JOIN objects o ON o.id = b.object_id
WHERE b.topic_id = ?1 AND b.partition = ?2 AND b.last_offset >= ?3 `+cond+`
ORDER BY `+order+` LIMIT 1`, append([]any{tp.TopicID[:], tp.Partition, o.LogStart}, args...)...))
		found = err == nil
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return catalog.BatchRow{}, false, fmt.Errorf("catalog: %s of %s: %w", op, tpString(tp), err)
	}
	return row, found, nil
}

// BatchForTimestamp returns the first row (by offset, at or above the log
// start) whose MaxTimestamp ≥ ts.
func (c *Catalog) BatchForTimestamp(ctx context.Context, tp catalog.TopicPartition, ts int64) (catalog.BatchRow, bool, error) {
	return c.rowAboveLogStart(ctx, "batch for timestamp", tp, `AND b.max_timestamp >= ?4`, `b.last_offset`, ts)
}

// MaxTimestampBatch returns the row holding the largest timestamp (the
// earliest such row on ties), at or above the log start.
func (c *Catalog) MaxTimestampBatch(ctx context.Context, tp catalog.TopicPartition) (catalog.BatchRow, bool, error) {
	return c.rowAboveLogStart(ctx, "max timestamp batch", tp, ``, `b.max_timestamp DESC, b.last_offset`)
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
		rows, err = queryBatchRows(ctx, tx, `SELECT `+batchRowCols+`
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
			rows, err = queryBatchRows(ctx, tx, `SELECT `+batchRowCols+`
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
