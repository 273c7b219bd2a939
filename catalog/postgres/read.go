package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/floebroker/floe/catalog"
)

// MaxBatchRows caps the rows one Batches call returns, whatever maxBytes
// asks for; callers continue from the last row.
const MaxBatchRows = 1000

// DefaultCommitsLimit is CommitsSince's limit when the caller passes ≤ 0.
const DefaultCommitsLimit = 1000

const batchRowCols = `b.topic_id, b.partition, b.base_offset, b.last_offset, o.key,
	b.byte_offset, b.byte_length, b.records, b.max_timestamp, o.commit_id`

// lookupCols are the columns scanBatchRow reads: batchRowCols (which
// compaction's queries extend with their own object columns) and the
// object's size.
const lookupCols = batchRowCols + `, o.size`

func scanBatchRow(row pgx.Row) (catalog.BatchRow, error) {
	var r catalog.BatchRow
	var id [16]byte
	err := row.Scan(&id, &r.Partition, &r.BaseOffset, &r.LastOffset, &r.ObjectKey,
		&r.ByteOffset, &r.ByteLength, &r.Records, &r.MaxTimestamp, &r.CommitID, &r.ObjectSize)
	r.TopicID = id
	return r, err
}

func collectBatchRows(rows pgx.Rows) ([]catalog.BatchRow, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.BatchRow, error) { return scanBatchRow(r) })
}

const sqlOffsets = `SELECT log_start_offset, next_offset FROM partitions WHERE topic_id = $1 AND partition = $2`

// Offsets returns tp's log start and high watermark.
func (c *Catalog) Offsets(ctx context.Context, tp catalog.TopicPartition) (catalog.PartitionOffsets, error) {
	var o catalog.PartitionOffsets
	err := c.retry(ctx, func(ctx context.Context) error {
		return c.pool.QueryRow(ctx, sqlOffsets, [16]byte(tp.TopicID), tp.Partition).Scan(&o.LogStart, &o.HighWatermark)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		err = catalog.ErrUnknownTopic
	}
	if err != nil {
		return o, fmt.Errorf("catalog: offsets of %s: %w", tpString(tp), err)
	}
	return o, nil
}

// sqlOffsetsOf reads the offsets of the partitions listed by $1 and $2,
// probing the primary key once each; the missing ones give no row. The
// lateral subquery's LIMIT keeps it from being flattened into a join:
// knowing the arrays' length, the planner otherwise hashes the whole
// partitions table for a few thousand partitions (60 ms instead of 3 ms
// for 2,000 of 200,000), and the cost would grow with the fleet's
// partitions, not with those asked for.
const sqlOffsetsOf = `SELECT u.t, u.p, p.log_start_offset, p.next_offset
FROM unnest($1::uuid[], $2::int4[]) AS u(t, p)
CROSS JOIN LATERAL (
    SELECT log_start_offset, next_offset FROM partitions
    WHERE topic_id = u.t AND partition = u.p
    LIMIT 1
) p`

// OffsetsOf returns the log start and high watermark of each of tps that
// exists, in one statement.
func (c *Catalog) OffsetsOf(ctx context.Context, tps []catalog.TopicPartition) (map[catalog.TopicPartition]catalog.PartitionOffsets, error) {
	out := make(map[catalog.TopicPartition]catalog.PartitionOffsets, len(tps))
	if len(tps) == 0 {
		return out, nil
	}
	ids := make([][16]byte, len(tps))
	parts := make([]int32, len(tps))
	for i, tp := range tps {
		ids[i], parts[i] = tp.TopicID, tp.Partition
	}
	err := c.retry(ctx, func(ctx context.Context) error {
		clear(out)
		rows, err := c.pool.Query(ctx, sqlOffsetsOf, ids, parts)
		if err != nil {
			return err
		}
		var (
			tp catalog.TopicPartition
			id [16]byte
			o  catalog.PartitionOffsets
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &tp.Partition, &o.LogStart, &o.HighWatermark}, func() error {
			tp.TopicID = id
			out[tp] = o
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: offsets of %d partitions: %w", len(tps), err)
	}
	return out, nil
}

// sqlBatches reads the first $6 rows from offset $3 on, or, if those do
// not cover $5 bytes and more may follow, the first $4, and keeps those
// that start before $5 bytes are covered (so always the first). The
// window runs over the rows read, not the whole partition tail. The first
// page is what keeps a lookup's cost that of the rows it returns: the
// running sum and its filter sit above the LIMIT, so with one LIMIT of $4
// every lookup read 1,000 rows to return a handful (five rows of a
// compacted object for a fetch's 5 MiB: 995 read and discarded). The
// second page runs only when the first falls short (a one-time filter),
// in the same statement, so a lookup is one round trip and one snapshot.
const sqlBatches = `WITH first AS (
    SELECT * FROM batches
    WHERE topic_id = $1 AND partition = $2 AND last_offset >= $3
    ORDER BY last_offset LIMIT $6
), short AS (
    SELECT count(*) = $6 AND $6 < $4 AND sum(byte_length) < $5 AS v FROM first
), l AS (
    SELECT * FROM first WHERE NOT (SELECT v FROM short)
    UNION ALL
    (SELECT * FROM batches
    WHERE topic_id = $1 AND partition = $2 AND last_offset >= $3 AND (SELECT v FROM short)
    ORDER BY last_offset LIMIT $4)
)
SELECT ` + lookupCols + `
FROM (
    SELECT l.*, sum(l.byte_length) OVER (ORDER BY l.last_offset) - l.byte_length AS before
    FROM l
) b
JOIN objects o ON o.id = b.object_id
WHERE b.before < $5
ORDER BY b.last_offset`

// batchesFirstPage is sqlBatches' first page for maxBytes: enough rows to
// cover it with rows of 256 KiB on average, as compaction's merges write
// them (joined up to 1 MiB): a catch-up fetch's 5 MiB is 28 rows.
func batchesFirstPage(maxBytes int64) int64 {
	return min(MaxBatchRows, 8+maxBytes>>18)
}

// batchesArgs are sqlBatches' arguments.
func batchesArgs(tp catalog.TopicPartition, from, maxBytes int64) []any {
	maxBytes = max(maxBytes, 1)
	return []any{[16]byte(tp.TopicID), tp.Partition, from, MaxBatchRows, maxBytes, batchesFirstPage(maxBytes)}
}

// Batches returns tp's rows holding offsets ≥ from, ascending, at least one
// if any exist, until maxBytes are covered or MaxBatchRows rows. from
// below the log start or above the high watermark is ErrOffsetOutOfRange;
// from at the high watermark returns no rows.
func (c *Catalog) Batches(ctx context.Context, tp catalog.TopicPartition, from int64, maxBytes int64) ([]catalog.BatchRow, error) {
	var out []catalog.BatchRow
	err := c.retry(ctx, func(ctx context.Context) error {
		b := &pgx.Batch{}
		b.Queue(sqlOffsets, [16]byte(tp.TopicID), tp.Partition)
		b.Queue(sqlBatches, batchesArgs(tp, from, maxBytes)...)
		br := c.pool.SendBatch(ctx, b)
		defer br.Close()
		var o catalog.PartitionOffsets
		if err := br.QueryRow().Scan(&o.LogStart, &o.HighWatermark); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		out, err = collectBatchRows(rows)
		if err != nil {
			return err
		}
		if from < o.LogStart || from > o.HighWatermark {
			return fmt.Errorf("%w: %d is outside [%d, %d]", catalog.ErrOffsetOutOfRange, from, o.LogStart, o.HighWatermark)
		}
		return nil
	})
	if errors.Is(err, pgx.ErrNoRows) {
		err = catalog.ErrUnknownTopic
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: batches of %s from %d: %w", tpString(tp), from, err)
	}
	return out, nil
}

// rowAboveLogStart reads one row of tp holding offsets ≥ from and at or
// above its log start, chosen by order, and the log start it filtered
// with, and reports ErrUnknownTopic for a missing partition. The log start
// comes from the row's statement, so from the same snapshot: a caller
// searching the row's records from it skips exactly the records the
// catalog's choice of row skipped.
func (c *Catalog) rowAboveLogStart(ctx context.Context, op string, tp catalog.TopicPartition, from int64, cond, order string, args ...any) (catalog.BatchRow, int64, bool, error) {
	// The log start is a scalar subquery (read once, as an init plan),
	// not a join: joined, the rows would not come in the index's order,
	// and the first by offset would be found by sorting all of them.
	const sqlLogStart = `(SELECT log_start_offset FROM partitions p WHERE p.topic_id = $1 AND p.partition = $2)`
	q := `SELECT ` + sqlLogStart + `, ` + lookupCols + `
FROM batches b JOIN objects o ON o.id = b.object_id
WHERE b.topic_id = $1 AND b.partition = $2
  AND b.last_offset >= GREATEST($3, ` + sqlLogStart + `)
  ` + cond + `
ORDER BY ` + order + ` LIMIT 1`
	var (
		row      catalog.BatchRow
		logStart int64
		found    bool
	)
	err := c.retry(ctx, func(ctx context.Context) error {
		b := &pgx.Batch{}
		b.Queue(sqlOffsets, [16]byte(tp.TopicID), tp.Partition)
		b.Queue(q, append([]any{[16]byte(tp.TopicID), tp.Partition, from}, args...)...)
		br := c.pool.SendBatch(ctx, b)
		defer br.Close()
		var o catalog.PartitionOffsets
		if err := br.QueryRow().Scan(&o.LogStart, &o.HighWatermark); err != nil {
			return err
		}
		logStart = o.LogStart // when no row is found
		var id [16]byte
		err := br.QueryRow().Scan(&logStart, &id, &row.Partition, &row.BaseOffset, &row.LastOffset, &row.ObjectKey,
			&row.ByteOffset, &row.ByteLength, &row.Records, &row.MaxTimestamp, &row.CommitID, &row.ObjectSize)
		row.TopicID = id
		found = err == nil
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		err = catalog.ErrUnknownTopic
	}
	if err != nil {
		return catalog.BatchRow{}, 0, false, fmt.Errorf("catalog: %s of %s: %w", op, tpString(tp), err)
	}
	return row, logStart, found, nil
}

// BatchForTimestamp returns the first row (by offset, holding offsets ≥
// from and at or above the log start) whose MaxTimestamp ≥ ts, where
// ListOffsets by timestamp starts or goes on, and that log start.
func (c *Catalog) BatchForTimestamp(ctx context.Context, tp catalog.TopicPartition, ts, from int64) (catalog.BatchRow, int64, bool, error) {
	return c.rowAboveLogStart(ctx, "batch for timestamp", tp, from, `AND b.max_timestamp >= $4`, `b.last_offset`, ts)
}

// MaxTimestampBatch returns the row holding the largest timestamp (the
// earliest such row on ties) among those holding offsets ≥ from, at or
// above the log start, and that log start.
func (c *Catalog) MaxTimestampBatch(ctx context.Context, tp catalog.TopicPartition, from int64) (catalog.BatchRow, int64, bool, error) {
	return c.rowAboveLogStart(ctx, "max timestamp batch", tp, from, ``, `b.max_timestamp DESC, b.last_offset`)
}

// DeleteRecords advances tp's log start to offset, clamped to the high
// watermark; offset -1 means the high watermark (Kafka's DeleteRecords).
// The log start never moves back.
func (c *Catalog) DeleteRecords(ctx context.Context, tp catalog.TopicPartition, offset int64) (int64, error) {
	if offset < -1 {
		return 0, fmt.Errorf("catalog: delete records of %s to %d: %w", tpString(tp), offset, catalog.ErrOffsetOutOfRange)
	}
	var start int64
	err := c.retry(ctx, func(ctx context.Context) error {
		return c.pool.QueryRow(ctx, `UPDATE partitions
SET log_start_offset = GREATEST(log_start_offset, CASE WHEN $3 < 0 THEN next_offset ELSE LEAST($3, next_offset) END)
WHERE topic_id = $1 AND partition = $2
RETURNING log_start_offset`, [16]byte(tp.TopicID), tp.Partition, offset).Scan(&start)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		err = catalog.ErrUnknownTopic
	}
	if err != nil {
		return 0, fmt.Errorf("catalog: delete records of %s to %d: %w", tpString(tp), offset, err)
	}
	return start, nil
}

// sqlCommitsSince reads the counter and the rows in one statement, so in
// one snapshot: every commit ≤ the counter is complete in the rows. It
// scans at most $2 commits (an index range on objects.commit_id) and joins
// the rows only of commits that start within $3 rows, so a follower far
// behind costs one page, not the whole backlog.
const sqlCommitsSince = `SELECT s.id, c.commit_id, c.upto, c.nrows,
    b.topic_id, b.partition, b.base_offset, b.last_offset, c.key,
    b.byte_offset, b.byte_length, b.records, b.max_timestamp, c.size
FROM commit_seq s
LEFT JOIN LATERAL (
    SELECT o.id, o.commit_id, o.key, o.size, o.nrows, sum(o.nrows) OVER (ORDER BY o.commit_id) AS upto
    FROM (SELECT id, commit_id, key, size, nrows FROM objects WHERE commit_id > $1 ORDER BY commit_id LIMIT $2) o
) c ON true
LEFT JOIN LATERAL (
    -- OFFSET 0 keeps this a per-commit index probe: flattened into a join,
    -- it may be planned as a scan of the whole batches table.
    SELECT * FROM batches b WHERE b.object_id = c.id AND c.upto - c.nrows < $3 OFFSET 0
) b ON true
ORDER BY c.commit_id, b.topic_id, b.partition, b.last_offset`

// CommitsSince returns rows of commits with id > after, whole commits only
// (one commit larger than limit is returned whole), and the id to pass as
// after next time: the last returned commit when the answer was cut short,
// otherwise the latest commit id, read in the same snapshot as the rows, so
// no commit between the two is skipped.
func (c *Catalog) CommitsSince(ctx context.Context, after int64, limit int) ([]catalog.BatchRow, int64, error) {
	if limit <= 0 {
		limit = DefaultCommitsLimit
	}
	var rows []catalog.BatchRow
	var latest int64
	err := c.retry(ctx, func(ctx context.Context) error {
		r, err := c.pool.Query(ctx, sqlCommitsSince, after, limit+1, limit)
		if err != nil {
			return err
		}
		defer r.Close()
		rows = rows[:0]
		var counter int64
		var commits int
		var lastIncluded, lastSeen int64 = -1, -1
		cut := false
		for r.Next() {
			var commit, upto *int64
			var nrows *int32
			var id *[16]byte
			var part, recs *int32
			var base, last, off, length, ts, size *int64
			var key *string
			if err := r.Scan(&counter, &commit, &upto, &nrows, &id, &part, &base, &last, &key, &off, &length, &recs, &ts, &size); err != nil {
				return err
			}
			if commit == nil || cut {
				continue // no commits after after, or past the cut
			}
			if *commit != lastSeen {
				lastSeen = *commit
				commits++
				start := *upto - int64(*nrows)
				// Whole commits only: stop before one that would overflow
				// limit, unless it is the first.
				if start >= int64(limit) || (*upto > int64(limit) && lastIncluded >= 0) {
					cut = true
					continue
				}
				lastIncluded = *commit
			}
			if id != nil {
				rows = append(rows, catalog.BatchRow{
					TopicPartition: catalog.TopicPartition{TopicID: *id, Partition: *part},
					BaseOffset:     *base, LastOffset: *last, ObjectKey: *key,
					ByteOffset: *off, ByteLength: *length, Records: *recs, MaxTimestamp: *ts, CommitID: *commit,
					ObjectSize: *size,
				})
			}
		}
		if err := r.Err(); err != nil {
			return err
		}
		switch {
		case cut || commits > limit:
			// More commits follow: resume after the last one returned.
			latest = lastIncluded
		default:
			latest = counter
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("catalog: commits since %d: %w", after, err)
	}
	return rows, latest, nil
}

func tpString(tp catalog.TopicPartition) string {
	return fmt.Sprintf("%x/%d", tp.TopicID[:], tp.Partition)
}
