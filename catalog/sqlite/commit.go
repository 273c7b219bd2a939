package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/internal/commitplan"
)

// CommitSegment assigns offsets to seg's batches in one IMMEDIATE
// transaction. It is idempotent per seg.Key. An error from COMMIT itself
// wraps ErrCommitUnknown.
func (c *Catalog) CommitSegment(ctx context.Context, seg catalog.Segment) (catalog.CommitResult, error) {
	if err := commitplan.ValidateSegment(seg); err != nil {
		return catalog.CommitResult{}, fmt.Errorf("catalog: commit segment %s: %w", seg.Key, err)
	}
	res, err := c.commit(ctx, seg)
	if err != nil {
		return catalog.CommitResult{}, fmt.Errorf("catalog: commit segment %s: %w", seg.Key, err)
	}
	c.hub.Publish(res.CommitID)
	return res, nil
}

// CommitSegments commits segs in order in one IMMEDIATE transaction: one
// fsync for the group. Keys already committed get their stored results.
func (c *Catalog) CommitSegments(ctx context.Context, segs []catalog.Segment) ([]catalog.CommitResult, error) {
	if err := commitplan.ValidateSegments(segs); err != nil {
		return nil, fmt.Errorf("catalog: commit %d segments: %w", len(segs), err)
	}
	if err := c.checkOpen(); err != nil {
		return nil, fmt.Errorf("catalog: commit %d segments: %w", len(segs), err)
	}
	out, err := c.commitGroup(ctx, segs)
	if err != nil {
		return nil, fmt.Errorf("catalog: commit %d segments from %s: %w", len(segs), segs[0].Key, err)
	}
	// The newest commit need not be the last segment's: that key may have
	// been committed before the others.
	var newest int64
	for _, r := range out {
		newest = max(newest, r.CommitID)
	}
	c.hub.Publish(newest)
	return out, nil
}

func (c *Catalog) commitGroup(ctx context.Context, segs []catalog.Segment) ([]catalog.CommitResult, error) {
	if err := c.wmu.lock(ctx); err != nil {
		return nil, err
	}
	defer c.wmu.unlock()
	tx, err := c.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	out := make([]catalog.CommitResult, len(segs))
	for i, seg := range segs {
		// An already committed key (done) changes nothing: the others
		// still commit.
		if out[i], _, err = c.commitTx(ctx, tx, seg); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("%w: %w", catalog.ErrCommitUnknown, err)
	}
	return out, nil
}

func (c *Catalog) commit(ctx context.Context, seg catalog.Segment) (catalog.CommitResult, error) {
	if err := c.checkOpen(); err != nil {
		return catalog.CommitResult{}, err
	}
	if err := c.wmu.lock(ctx); err != nil {
		return catalog.CommitResult{}, err
	}
	defer c.wmu.unlock()
	tx, err := c.w.BeginTx(ctx, nil)
	if err != nil {
		return catalog.CommitResult{}, err
	}
	res, done, err := c.commitTx(ctx, tx, seg)
	if err != nil || done {
		tx.Rollback()
		return res, err
	}
	if err := tx.Commit(); err != nil {
		return catalog.CommitResult{}, fmt.Errorf("%w: %w", catalog.ErrCommitUnknown, err)
	}
	return res, nil
}

// commitTx does the work inside the transaction; done reports an already
// committed key whose stored results are returned.
func (c *Catalog) commitTx(ctx context.Context, tx *sql.Tx, seg catalog.Segment) (res catalog.CommitResult, done bool, err error) {
	var stored []byte
	switch err := tx.QueryRowContext(ctx, `SELECT commit_id, results FROM objects WHERE key = ?1`, seg.Key).Scan(&res.CommitID, &stored); {
	case err == nil:
		res.Results, err = commitplan.DecodeResults(stored)
		if err != nil {
			return res, false, fmt.Errorf("stored results: %w", err)
		}
		return res, true, nil
	case !errors.Is(err, sql.ErrNoRows):
		return res, false, err
	}

	in := commitplan.Input{
		Segment:    seg,
		Partitions: map[catalog.TopicPartition]commitplan.Partition{},
		States:     map[commitplan.ProducerKey]commitplan.ProducerState{},
		Epochs:     map[int64]int16{},
	}
	if err := eachRow(ctx, tx, `SELECT next_offset, log_start_offset FROM partitions WHERE topic_id = ?1 AND partition = ?2`,
		commitplan.Partitions(seg), func(tp catalog.TopicPartition) []any { return []any{tp.TopicID[:], tp.Partition} },
		func(tp catalog.TopicPartition, row scanner) error {
			var p commitplan.Partition
			if err := row.Scan(&p.NextOffset, &p.LogStart); err != nil {
				return err
			}
			in.Partitions[tp] = p
			return nil
		}); err != nil {
		return res, false, err
	}
	if err := eachRow(ctx, tx, `SELECT epoch, entries FROM producer_state WHERE topic_id = ?1 AND partition = ?2 AND producer_id = ?3`,
		commitplan.ProducerKeys(seg), func(k commitplan.ProducerKey) []any { return []any{k.TopicID[:], k.Partition, k.ProducerID} },
		func(k commitplan.ProducerKey, row scanner) error {
			var st commitplan.ProducerState
			var entries []byte
			if err := row.Scan(&st.Epoch, &entries); err != nil {
				return err
			}
			var err error
			if st.Entries, err = commitplan.DecodeEntries(entries, 0); err != nil {
				return fmt.Errorf("producer %d state: %w", k.ProducerID, err)
			}
			in.States[k] = st
			return nil
		}); err != nil {
		return res, false, err
	}
	if err := eachRow(ctx, tx, `SELECT epoch FROM producers WHERE producer_id = ?1`,
		commitplan.ProducerIDs(seg), func(id int64) []any { return []any{id} },
		func(id int64, row scanner) error {
			var e int16
			if err := row.Scan(&e); err != nil {
				return err
			}
			in.Epochs[id] = e
			return nil
		}); err != nil {
		return res, false, err
	}

	plan := commitplan.Build(in)
	parts := commitplan.Partitions(seg)
	table := make([]commitplan.PartitionState, len(parts))
	for i, tp := range parts {
		table[i] = commitplan.PartitionState{NextOffset: -1, LogStart: -1}
		if p, ok := in.Partitions[tp]; ok {
			table[i] = commitplan.PartitionState{NextOffset: p.NextOffset, LogStart: p.LogStart}
		}
	}
	encoded := commitplan.AppendPartitionTable(commitplan.EncodeResults(seg, plan.Results), table)
	now := micros(c.now())
	if err := tx.QueryRowContext(ctx, `UPDATE commit_seq SET id = id + 1 RETURNING id`).Scan(&res.CommitID); err != nil {
		return res, false, err
	}
	// An object that gets no rows (every batch a duplicate or refused) is
	// stamped unreferenced at its creation: garbage collection finds
	// objects by that stamp alone (UnreferencedObjects).
	var unreferenced sql.NullInt64
	if len(plan.Rows) == 0 {
		unreferenced = sql.NullInt64{Int64: now, Valid: true}
	}
	var objectID int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO objects (key, size, created, commit_id, results, unreferenced)
VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id`, seg.Key, seg.Size, now, res.CommitID, encoded, unreferenced).Scan(&objectID); err != nil {
		return res, false, err
	}
	if err := execEach(ctx, tx, `INSERT INTO batches (topic_id, partition, base_offset, last_offset, object_id,
    byte_offset, byte_length, records, max_timestamp, commit_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)`,
		plan.Rows, func(r commitplan.Row) []any {
			return []any{r.TopicID[:], r.Partition, r.BaseOffset, r.LastOffset, objectID,
				r.ByteOffset, r.ByteLength, r.Records, r.MaxTimestamp, res.CommitID}
		}); err != nil {
		return res, false, err
	}
	if err := execEach(ctx, tx, `UPDATE partitions SET next_offset = ?3, last_commit_id = ?4 WHERE topic_id = ?1 AND partition = ?2`,
		plan.Partitions, func(p commitplan.PartitionUpdate) []any {
			return []any{p.TopicID[:], p.Partition, p.NextOffset, res.CommitID}
		}); err != nil {
		return res, false, err
	}
	if err := execEach(ctx, tx, `INSERT INTO producer_state (topic_id, partition, producer_id, epoch, entries, updated)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (topic_id, partition, producer_id) DO UPDATE SET epoch = excluded.epoch, entries = excluded.entries, updated = excluded.updated`,
		plan.States, func(s commitplan.StateUpdate) []any {
			return []any{s.TopicID[:], s.Partition, s.ProducerID, s.Epoch, commitplan.EncodeEntries(s.Entries), now}
		}); err != nil {
		return res, false, err
	}
	res.Results = plan.Results
	return res, false, nil
}

// eachRow runs one prepared single-row query per key and hands found rows
// to fn; missing rows are skipped.
func eachRow[K any](ctx context.Context, tx *sql.Tx, query string, keys []K, args func(K) []any, fn func(K, scanner) error) error {
	if len(keys) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, query)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, k := range keys {
		row := stmt.QueryRowContext(ctx, args(k)...)
		if err := fn(k, row); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
	}
	return nil
}

// execEach runs one prepared statement per item.
func execEach[T any](ctx context.Context, tx *sql.Tx, query string, items []T, args func(T) []any) error {
	if len(items) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, query)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, it := range items {
		if _, err := stmt.ExecContext(ctx, args(it)...); err != nil {
			return err
		}
	}
	return nil
}
