package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/floebroker/floe/catalog"
)

var _ catalog.Compactor = (*Catalog)(nil)

// CompactionRows returns up to limit rows of tp from `from`, with objects.
func (c *Catalog) CompactionRows(ctx context.Context, tp catalog.TopicPartition, from int64, limit int) ([]catalog.CompactionRow, error) {
	var out []catalog.CompactionRow
	err := c.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+batchRowCols+`, o.id, o.size, o.created
FROM batches b JOIN objects o ON o.id = b.object_id
WHERE b.topic_id = ?1 AND b.partition = ?2 AND b.last_offset >= ?3
ORDER BY b.last_offset LIMIT ?4`, tp.TopicID[:], tp.Partition, from, max(limit, 1))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r catalog.CompactionRow
			var id []byte
			var created int64
			if err := rows.Scan(&id, &r.Partition, &r.BaseOffset, &r.LastOffset, &r.ObjectKey,
				&r.ByteOffset, &r.ByteLength, &r.Records, &r.MaxTimestamp, &r.CommitID,
				&r.ObjectID, &r.ObjectSize, &created); err != nil {
				return err
			}
			if r.TopicID, err = topicID(id); err != nil {
				return err
			}
			r.ObjectCreated = fromMicros(created)
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: compaction rows of %s from %d: %w", tpString(tp), from, err)
	}
	return out, nil
}

// SwapRows replaces s.Old by s.New in one IMMEDIATE transaction, only if
// every old row is unchanged.
func (c *Catalog) SwapRows(ctx context.Context, s catalog.RowSwap) error {
	if err := catalog.ValidateSwap(s); err != nil {
		return fmt.Errorf("catalog: swap rows of %s: %w", tpString(s.TopicPartition), err)
	}
	now := micros(c.now())
	err := c.write(ctx, func(tx *sql.Tx) error {
		var oldIDs []int64
		for _, r := range s.Old {
			var id int64
			err := tx.QueryRowContext(ctx, `SELECT b.object_id FROM batches b JOIN objects o ON o.id = b.object_id
WHERE b.topic_id = ?1 AND b.partition = ?2 AND b.last_offset = ?3 AND b.base_offset = ?4
  AND o.key = ?5 AND b.byte_offset = ?6 AND b.byte_length = ?7`,
				s.TopicID[:], s.Partition, r.LastOffset, r.BaseOffset, r.ObjectKey, r.ByteOffset, r.ByteLength).Scan(&id)
			if err == sql.ErrNoRows {
				return catalog.ErrSwapConflict
			}
			if err != nil {
				return err
			}
			oldIDs = append(oldIDs, id)
		}
		var objectID int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO objects (key, size, created, state, commit_id, results)
VALUES (?1, ?2, ?3, 'live', 0, x'') RETURNING id`, s.ObjectKey, s.ObjectSize, now).Scan(&objectID); err != nil {
			return err
		}
		commitID := -objectID
		if _, err := tx.ExecContext(ctx, `UPDATE objects SET commit_id = ?1 WHERE id = ?2`, commitID, objectID); err != nil {
			return err
		}
		if err := execEach(ctx, tx, `DELETE FROM batches WHERE topic_id = ?1 AND partition = ?2 AND last_offset = ?3`,
			s.Old, func(r catalog.BatchRow) []any { return []any{s.TopicID[:], s.Partition, r.LastOffset} }); err != nil {
			return err
		}
		if err := execEach(ctx, tx, `INSERT INTO batches (topic_id, partition, base_offset, last_offset, object_id,
    byte_offset, byte_length, records, max_timestamp, commit_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)`,
			s.New, func(r catalog.BatchRow) []any {
				return []any{s.TopicID[:], s.Partition, r.BaseOffset, r.LastOffset, objectID,
					r.ByteOffset, r.ByteLength, r.Records, r.MaxTimestamp, commitID}
			}); err != nil {
			return err
		}
		if len(s.New) == 0 {
			if _, err := tx.ExecContext(ctx, `UPDATE objects SET unreferenced = ?2 WHERE id = ?1`, objectID, now); err != nil {
				return err
			}
		}
		return markUnreferenced(ctx, tx, oldIDs, now)
	})
	if err != nil {
		return fmt.Errorf("catalog: swap rows of %s into %s: %w", tpString(s.TopicPartition), s.ObjectKey, err)
	}
	return nil
}

// markUnreferenced stamps those of ids that no row references any more.
func markUnreferenced(ctx context.Context, tx *sql.Tx, ids []int64, now int64) error {
	return execEach(ctx, tx, `UPDATE objects SET unreferenced = ?2, state = 'compacted'
WHERE id = ?1 AND unreferenced IS NULL AND NOT EXISTS (SELECT 1 FROM batches WHERE object_id = ?1)`,
		ids, func(id int64) []any { return []any{id, now} })
}

// RetentionOffsetForBytes finds where retention.bytes lets the log start.
func (c *Catalog) RetentionOffsetForBytes(ctx context.Context, tp catalog.TopicPartition, maxBytes int64) (int64, bool, error) {
	var off int64
	var found bool
	err := c.read(ctx, func(tx *sql.Tx) error {
		o, err := partitionOffsets(ctx, tx, tp)
		if err != nil {
			return err
		}
		err = tx.QueryRowContext(ctx, `SELECT base_offset FROM (
    SELECT base_offset, sum(byte_length) OVER (ORDER BY last_offset DESC) AS suffix
    FROM batches WHERE topic_id = ?1 AND partition = ?2 AND last_offset >= ?3
) WHERE suffix >= ?4 ORDER BY base_offset DESC LIMIT 1`, tp.TopicID[:], tp.Partition, o.LogStart, maxBytes).Scan(&off)
		if err == sql.ErrNoRows {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("catalog: retention offset of %s for %d bytes: %w", tpString(tp), maxBytes, err)
	}
	return off, found, nil
}

// TrimRows deletes tp's rows wholly below its log start.
func (c *Catalog) TrimRows(ctx context.Context, tp catalog.TopicPartition) (int, error) {
	var n int
	now := micros(c.now())
	err := c.write(ctx, func(tx *sql.Tx) error {
		o, err := partitionOffsets(ctx, tx, tp)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `DELETE FROM batches WHERE topic_id = ?1 AND partition = ?2 AND last_offset < ?3
RETURNING object_id`, tp.TopicID[:], tp.Partition, o.LogStart)
		if err != nil {
			return err
		}
		seen := map[int64]bool{}
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			n++
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		return markUnreferenced(ctx, tx, ids, now)
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: trim rows of %s: %w", tpString(tp), err)
	}
	return n, nil
}

// sqlUnreferencedObjects lists up to ?2 objects stamped unreferenced
// before ?1, oldest stamp first, through objects_gc (migration 0005),
// which holds only stamped objects that are not tombstones. Every path
// that leaves an object without rows stamps it (a commit or swap that
// gives it none, markUnreferenced), so GC never scans the objects table
// (see the PostgreSQL backend). The NOT EXISTS is a second check: nothing
// with rows is ever listed.
const sqlUnreferencedObjects = `SELECT id, key, size, created FROM objects o
WHERE o.unreferenced < ?1 AND o.state <> 'deletable'
  AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.object_id = o.id)
ORDER BY o.unreferenced LIMIT ?2`

// UnreferencedObjects lists objects without rows since before `before`
// (sqlUnreferencedObjects).
func (c *Catalog) UnreferencedObjects(ctx context.Context, before time.Time, limit int) ([]catalog.ObjectRef, error) {
	var out []catalog.ObjectRef
	err := c.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, sqlUnreferencedObjects, micros(before), max(limit, 1))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r catalog.ObjectRef
			var created int64
			if err := rows.Scan(&r.ID, &r.Key, &r.Size, &created); err != nil {
				return err
			}
			r.Created = fromMicros(created)
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: unreferenced objects: %w", err)
	}
	return out, nil
}

// ForgetObject turns an object row nothing references into a tombstone:
// state 'deletable', results kept for CommitSegment, unreferenced
// re-stamped with the time of death for PruneTombstones.
func (c *Catalog) ForgetObject(ctx context.Context, id int64) (bool, error) {
	var done bool
	now := micros(c.now())
	err := c.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE objects SET state = 'deletable', unreferenced = ?2
WHERE id = ?1 AND state <> 'deletable' AND NOT EXISTS (SELECT 1 FROM batches WHERE object_id = ?1)`, id, now)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		done = n == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("catalog: forget object %d: %w", id, err)
	}
	return done, nil
}

// sqlPruneTombstones deletes up to ?2 tombstones made before ?1, oldest
// first, through objects_tombstones (migration 0005).
const sqlPruneTombstones = `DELETE FROM objects WHERE id IN (
    SELECT id FROM objects WHERE state = 'deletable' AND unreferenced < ?1 ORDER BY unreferenced LIMIT ?2)`

// PruneTombstones deletes tombstones stamped before `before`.
func (c *Catalog) PruneTombstones(ctx context.Context, before time.Time, limit int) (int, error) {
	var n int64
	err := c.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, sqlPruneTombstones, micros(before), max(limit, 1))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: prune tombstones: %w", err)
	}
	return int(n), nil
}

// ExpireProducerStates deletes up to limit producer states no commit has
// written since before. Commits and expiry are both writes, which SQLite
// runs one at a time, so a commit reads either the state or its absence.
// There is no index on updated (commits rewrite it every time, see the
// PostgreSQL backend): a rare scan that stops after limit rows is cheaper.
func (c *Catalog) ExpireProducerStates(ctx context.Context, before time.Time, limit int) (int, error) {
	n, err := c.deleteIdle(ctx, `DELETE FROM producer_state WHERE (topic_id, partition, producer_id) IN (
    SELECT topic_id, partition, producer_id FROM producer_state WHERE updated < ?1 LIMIT ?2)`, before, limit)
	if err != nil {
		return 0, fmt.Errorf("catalog: expire producer states: %w", err)
	}
	return n, nil
}

// ExpireProducers deletes up to limit producers neither allocated nor
// bumped since before that have no state left. Producer ids are never
// reused (AUTOINCREMENT), so an expired id cannot come back as another
// producer's.
func (c *Catalog) ExpireProducers(ctx context.Context, before time.Time, limit int) (int, error) {
	n, err := c.deleteIdle(ctx, `DELETE FROM producers WHERE producer_id IN (
    SELECT producer_id FROM producers WHERE updated < ?1
    EXCEPT
    SELECT producer_id FROM producer_state
    LIMIT ?2)`, before, limit)
	if err != nil {
		return 0, fmt.Errorf("catalog: expire producers: %w", err)
	}
	return n, nil
}

// deleteIdle runs a DELETE of up to limit rows idle since before.
func (c *Catalog) deleteIdle(ctx context.Context, query string, before time.Time, limit int) (int, error) {
	var n int64
	err := c.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, micros(before), max(limit, 1))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// KnownObjects returns which keys have live (not tombstone) object rows.
func (c *Catalog) KnownObjects(ctx context.Context, keys []string) (map[string]bool, error) {
	out := make(map[string]bool, len(keys))
	err := c.read(ctx, func(tx *sql.Tx) error {
		for len(keys) > 0 {
			chunk := keys[:min(len(keys), 500)]
			keys = keys[len(chunk):]
			args := make([]any, len(chunk))
			for i, k := range chunk {
				args[i] = k
			}
			rows, err := tx.QueryContext(ctx, `SELECT key FROM objects WHERE state <> 'deletable' AND key IN (?`+strings.Repeat(",?", len(chunk)-1)+`)`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var k string
				if err := rows.Scan(&k); err != nil {
					rows.Close()
					return err
				}
				out[k] = true
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: known objects: %w", err)
	}
	return out, nil
}

// CompactionStats counts rows and objects.
func (c *Catalog) CompactionStats(ctx context.Context) (catalog.CompactionStats, error) {
	var s catalog.CompactionStats
	err := c.read(ctx, func(tx *sql.Tx) error {
		var oldest sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(byte_length), 0) FROM batches`).Scan(&s.Rows, &s.LiveBytes); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE state <> 'deletable'), count(*) FILTER (WHERE state = 'deletable') FROM objects`).Scan(&s.Objects, &s.Tombstones); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT min(o.created) FROM objects o
WHERE o.commit_id > 0 AND EXISTS (SELECT 1 FROM batches b WHERE b.object_id = o.id)`).Scan(&oldest); err != nil {
			return err
		}
		if oldest.Valid {
			s.OldestFlush = fromMicros(oldest.Int64)
		}
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("catalog: compaction stats: %w", err)
	}
	return s, nil
}
