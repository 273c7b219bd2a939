package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floebroker/floe/catalog"
)

var _ catalog.Compactor = (*Catalog)(nil)

// CompactionRows returns up to limit rows of tp from `from`, with objects.
func (c *Catalog) CompactionRows(ctx context.Context, tp catalog.TopicPartition, from int64, limit int) ([]catalog.CompactionRow, error) {
	var out []catalog.CompactionRow
	err := c.retry(ctx, func(ctx context.Context) error {
		rows, err := c.pool.Query(ctx, `SELECT `+batchRowCols+`, o.id, o.size, o.created
FROM batches b JOIN objects o ON o.id = b.object_id
WHERE b.topic_id = $1 AND b.partition = $2 AND b.last_offset >= $3
ORDER BY b.last_offset LIMIT $4`, [16]byte(tp.TopicID), tp.Partition, from, max(limit, 1))
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (catalog.CompactionRow, error) {
			var r catalog.CompactionRow
			var id [16]byte
			err := row.Scan(&id, &r.Partition, &r.BaseOffset, &r.LastOffset, &r.ObjectKey,
				&r.ByteOffset, &r.ByteLength, &r.Records, &r.MaxTimestamp, &r.CommitID,
				&r.ObjectID, &r.ObjectSize, &r.ObjectCreated)
			r.TopicID = id
			return r, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: compaction rows of %s from %d: %w", tpString(tp), from, err)
	}
	return out, nil
}

// SwapRows replaces s.Old by s.New in one transaction holding the
// partition's row lock (so it serializes with commits, DeleteRecords and
// other swaps of the partition), only if every old row is unchanged.
func (c *Catalog) SwapRows(ctx context.Context, s catalog.RowSwap) error {
	if err := catalog.ValidateSwap(s); err != nil {
		return fmt.Errorf("catalog: swap rows of %s: %w", tpString(s.TopicPartition), err)
	}
	id := [16]byte(s.TopicID)
	err := c.tx(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM partitions WHERE topic_id = $1 AND partition = $2 FOR UPDATE`,
			id, s.Partition).Scan(&one); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return catalog.ErrSwapConflict
			}
			return err
		}
		bases := make([]int64, len(s.Old))
		lasts := make([]int64, len(s.Old))
		keys := make([]string, len(s.Old))
		offs := make([]int64, len(s.Old))
		lens := make([]int64, len(s.Old))
		for i, r := range s.Old {
			bases[i], lasts[i], keys[i], offs[i], lens[i] = r.BaseOffset, r.LastOffset, r.ObjectKey, r.ByteOffset, r.ByteLength
		}
		rows, err := tx.Query(ctx, `DELETE FROM batches b USING objects o,
    unnest($3::bigint[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[]) AS x(base, last, key, off, len)
WHERE b.topic_id = $1 AND b.partition = $2 AND b.last_offset = x.last AND b.base_offset = x.base
  AND o.id = b.object_id AND o.key = x.key AND b.byte_offset = x.off AND b.byte_length = x.len
RETURNING b.object_id`, id, s.Partition, bases, lasts, keys, offs, lens)
		if err != nil {
			return err
		}
		oldIDs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		if len(oldIDs) != len(s.Old) {
			return catalog.ErrSwapConflict // rolls the deletes back
		}
		var objectID int64
		if err := tx.QueryRow(ctx, `INSERT INTO objects (key, size, created, state, nrows, results, unreferenced)
VALUES ($1, $2, now(), 'live', $3, '\x'::bytea, CASE WHEN $3 = 0 THEN now() END) RETURNING id`,
			s.ObjectKey, s.ObjectSize, len(s.New)).Scan(&objectID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE objects SET commit_id = -id WHERE id = $1`, objectID); err != nil {
			return err
		}
		n := len(s.New)
		nb, nl, no, nn, nr, nt := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int32, n), make([]int64, n)
		for i, r := range s.New {
			nb[i], nl[i], no[i], nn[i], nr[i], nt[i] = r.BaseOffset, r.LastOffset, r.ByteOffset, r.ByteLength, r.Records, r.MaxTimestamp
		}
		if _, err := tx.Exec(ctx, `INSERT INTO batches (topic_id, partition, base_offset, last_offset, object_id,
    byte_offset, byte_length, records, max_timestamp)
SELECT $1, $2, x.base, x.last, $3, x.off, x.len, x.recs, x.ts
FROM unnest($4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::integer[], $9::bigint[]) AS x(base, last, off, len, recs, ts)`,
			id, s.Partition, objectID, nb, nl, no, nn, nr, nt); err != nil {
			return err
		}
		return markUnreferenced(ctx, tx, oldIDs)
	})
	if err != nil {
		return fmt.Errorf("catalog: swap rows of %s into %s: %w", tpString(s.TopicPartition), s.ObjectKey, err)
	}
	return nil
}

// markUnreferenced stamps those of ids that no row references any more.
// The caller has deleted rows of them. Another transaction may be deleting
// the objects' other rows (a swap or trim of another partition); under READ
// COMMITTED each would see the other's rows still there and neither would
// stamp, and GC, which finds objects by the stamp, would never collect the
// object. So the object rows are locked first, in id order:
// removers serialize here, and the last one's check, a statement started
// after the others committed, sees every row gone.
func markUnreferenced(ctx context.Context, tx pgx.Tx, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM objects WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `UPDATE objects o SET unreferenced = now(), state = 'compacted'
WHERE o.id = ANY($1) AND o.unreferenced IS NULL
  AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.object_id = o.id)`, ids)
	return err
}

// RetentionOffsetForBytes finds where retention.bytes lets the log start.
func (c *Catalog) RetentionOffsetForBytes(ctx context.Context, tp catalog.TopicPartition, maxBytes int64) (int64, bool, error) {
	var off int64
	var found bool
	err := c.retry(ctx, func(ctx context.Context) error {
		err := c.pool.QueryRow(ctx, `SELECT base_offset FROM (
    SELECT b.base_offset, sum(b.byte_length) OVER (ORDER BY b.last_offset DESC) AS suffix
    FROM batches b JOIN partitions p ON p.topic_id = b.topic_id AND p.partition = b.partition
    WHERE b.topic_id = $1 AND b.partition = $2 AND b.last_offset >= p.log_start_offset
) s WHERE suffix >= $3 ORDER BY base_offset DESC LIMIT 1`, [16]byte(tp.TopicID), tp.Partition, maxBytes).Scan(&off)
		found = err == nil
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
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
	err := c.tx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM batches b USING partitions p
WHERE b.topic_id = $1 AND b.partition = $2 AND p.topic_id = b.topic_id AND p.partition = b.partition
  AND b.last_offset < p.log_start_offset
RETURNING b.object_id`, [16]byte(tp.TopicID), tp.Partition)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		n = len(ids)
		seen := map[int64]bool{}
		uniq := ids[:0:0]
		for _, id := range ids {
			if !seen[id] {
				seen[id] = true
				uniq = append(uniq, id)
			}
		}
		return markUnreferenced(ctx, tx, uniq)
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: trim rows of %s: %w", tpString(tp), err)
	}
	return n, nil
}

// sqlUnreferencedObjects lists up to $2 objects stamped unreferenced
// before $1, oldest stamp first. Every path that leaves an object without
// rows stamps it (a commit or swap that gives it none, markUnreferenced
// for swaps, trims and topic deletion), so the stamp alone finds them,
// through objects_gc (migration 0007), which holds only stamped objects
// that are not tombstones: the walk costs what is due, not the objects
// table. GC runs this every compaction interval; going by the creation
// time of unstamped objects, as it once did, scanned the whole table and
// probed batches for every live object each time. The NOT EXISTS is a
// second check: a stamped object never gets rows again, but nothing is
// ever listed that has some.
const sqlUnreferencedObjects = `SELECT id, key, size, created FROM objects o
WHERE o.unreferenced < $1 AND o.state <> 'deletable' AND o.commit_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.object_id = o.id)
ORDER BY o.unreferenced LIMIT $2`

// UnreferencedObjects lists objects without rows since before `before`
// (sqlUnreferencedObjects).
func (c *Catalog) UnreferencedObjects(ctx context.Context, before time.Time, limit int) ([]catalog.ObjectRef, error) {
	var out []catalog.ObjectRef
	err := c.retry(ctx, func(ctx context.Context) error {
		rows, err := c.pool.Query(ctx, sqlUnreferencedObjects, before, max(limit, 1))
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (catalog.ObjectRef, error) {
			var r catalog.ObjectRef
			err := row.Scan(&r.ID, &r.Key, &r.Size, &r.Created)
			return r, err
		})
		return err
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
	err := c.retry(ctx, func(ctx context.Context) error {
		tag, err := c.pool.Exec(ctx, `UPDATE objects o SET state = 'deletable', unreferenced = now()
WHERE o.id = $1 AND o.commit_id IS NOT NULL AND o.state <> 'deletable'
  AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.object_id = o.id)`, id)
		done = tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("catalog: forget object %d: %w", id, err)
	}
	return done, nil
}

// sqlPruneTombstones deletes up to $2 tombstones made before $1, oldest
// first, found through objects_tombstones (migration 0007), which holds
// tombstones only, and deleted by primary-key probes: as a join (id IN
// (…)), planned for $2 of them, the delete scanned the whole table.
const sqlPruneTombstones = `DELETE FROM objects WHERE id = ANY(ARRAY(
    SELECT id FROM objects WHERE state = 'deletable' AND unreferenced < $1 ORDER BY unreferenced LIMIT $2))`

// PruneTombstones deletes tombstones stamped before `before`.
func (c *Catalog) PruneTombstones(ctx context.Context, before time.Time, limit int) (int, error) {
	var n int64
	err := c.retry(ctx, func(ctx context.Context) error {
		tag, err := c.pool.Exec(ctx, sqlPruneTombstones, before, max(limit, 1))
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: prune tombstones: %w", err)
	}
	return int(n), nil
}

// sqlExpireStates deletes up to $2 producer states no commit has written
// since $1.
//
// producer_state has no index on updated, on purpose: every commit
// rewrites the state rows of its producers, and those updates are HOT (no
// index entry, the new version on the same page: migration 0003) only
// while no indexed column changes. An index on updated would give every
// commit an index insert per state it writes, and bloat. Expiry runs a
// few times an hour, so it finds idle rows with a sequential scan that
// stops at $2 of them; each batch is its own statement (autocommit), which
// locks only the rows it deletes, never a partition, so commits go on
// meanwhile.
//
// The batch is collected by ctid and deleted by ctid (no index probe).
// updated < $1 is checked again on the row version the DELETE meets, so a
// commit writing one of the rows at the same moment is safe either way:
//   - the commit updated the row first: the DELETE waits for its row lock
//     and then re-evaluates the new version (READ COMMITTED), which is
//     recent (and at another ctid): it stays;
//   - the DELETE got there first: the commit's UPDATE, matching the
//     version its plan read or remembered, waits and then finds no row,
//     so sqlWrite's check fails the commit, which forgets what it
//     remembered and starts over from the stored state (none: the batch
//     is accepted as a producer's first on the partition, as Kafka does).
//
// A state version is the object id of the commit that wrote it, never
// reused, so a state deleted and written again is never mistaken for the
// one a plan read.
const sqlExpireStates = `DELETE FROM producer_state
WHERE ctid = ANY(ARRAY(SELECT ctid FROM producer_state WHERE updated < $1 LIMIT $2))
  AND updated < $1`

// sqlExpireProducers deletes up to $2 producers idle since $1 (neither
// allocated nor bumped) with no state left. EXCEPT is a hashed set
// operation over one scan of each table; it cannot turn into a scan of
// producer_state per producer (producer_state has no index on
// producer_id), as an anti-join under a LIMIT might. updated < $1 is
// checked again on the row deleted, so a concurrent BumpProducerEpoch
// (which locks the row and stamps it) keeps it.
//
// The check for state is the statement's snapshot: a producer idle for
// the whole expiration whose first new commit lands while the statement
// runs may keep that state and lose its epoch row. That is harmless: a
// commit treats a producer without an epoch row as one whose epoch the
// catalog does not know (each state keeps its own epoch, which still
// fences), and InitProducerId naming it gets a new producer id, which is
// what Kafka gives every idempotent producer that asks.
const sqlExpireProducers = `DELETE FROM producers
WHERE producer_id = ANY(ARRAY(
    SELECT producer_id FROM producers WHERE updated < $1
    EXCEPT
    SELECT producer_id FROM producer_state
    LIMIT $2))
  AND updated < $1`

// ExpireProducerStates deletes up to limit producer states idle since
// before (sqlExpireStates).
func (c *Catalog) ExpireProducerStates(ctx context.Context, before time.Time, limit int) (int, error) {
	n, err := c.deleteIdle(ctx, sqlExpireStates, before, limit)
	if err != nil {
		return 0, fmt.Errorf("catalog: expire producer states: %w", err)
	}
	return n, nil
}

// ExpireProducers deletes up to limit producers idle since before that
// have no state left (sqlExpireProducers).
func (c *Catalog) ExpireProducers(ctx context.Context, before time.Time, limit int) (int, error) {
	n, err := c.deleteIdle(ctx, sqlExpireProducers, before, limit)
	if err != nil {
		return 0, fmt.Errorf("catalog: expire producers: %w", err)
	}
	return n, nil
}

// deleteIdle runs one of the expiry statements: a DELETE of rows idle
// since before, safe to repeat.
func (c *Catalog) deleteIdle(ctx context.Context, query string, before time.Time, limit int) (int, error) {
	var n int64
	err := c.retry(ctx, func(ctx context.Context) error {
		tag, err := c.pool.Exec(ctx, query, before.UTC(), max(limit, 1))
		n = tag.RowsAffected()
		return err
	})
	return int(n), err
}

// KnownObjects returns which keys have live (not tombstone) object rows.
func (c *Catalog) KnownObjects(ctx context.Context, keys []string) (map[string]bool, error) {
	out := make(map[string]bool, len(keys))
	err := c.retry(ctx, func(ctx context.Context) error {
		rows, err := c.pool.Query(ctx, `SELECT key FROM objects WHERE key = ANY($1) AND state <> 'deletable'`, keys)
		if err != nil {
			return err
		}
		found, err := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, k := range found {
			out[k] = true
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: known objects: %w", err)
	}
	return out, nil
}

// CompactionStats counts rows and objects.
func (c *Catalog) CompactionStats(ctx context.Context) (catalog.CompactionStats, error) {
	var s catalog.CompactionStats
	err := c.retry(ctx, func(ctx context.Context) error {
		var oldest *time.Time
		err := c.pool.QueryRow(ctx, `SELECT
    (SELECT count(*) FROM batches), (SELECT coalesce(sum(byte_length), 0)::bigint FROM batches),
    (SELECT count(*) FILTER (WHERE state <> 'deletable') FROM objects), (SELECT count(*) FILTER (WHERE state = 'deletable') FROM objects),
    (SELECT min(o.created) FROM objects o WHERE o.commit_id > 0
        AND EXISTS (SELECT 1 FROM batches b WHERE b.object_id = o.id))`).Scan(&s.Rows, &s.LiveBytes, &s.Objects, &s.Tombstones, &oldest)
		if oldest != nil {
			s.OldestFlush = *oldest
		}
		return err
	})
	if err != nil {
		return s, fmt.Errorf("catalog: compaction stats: %w", err)
	}
	return s, nil
}
