package compaction

import (
	"context"
	"fmt"
)

// retain advances the partition's log start for retention.ms and
// retention.bytes (cleanup.policy including delete), whole rows at a time
// as Kafka deletes whole segments (a row without timestamps ages from its
// object's creation, see untimedStart), then removes the rows below the log
// start (also those DeleteRecords left behind, whatever the policy).
func (c *Compactor) retain(ctx context.Context, p partition) error {
	if p.topic.CleanupPolicy().Delete {
		start, err := c.retentionStart(ctx, p)
		if err != nil {
			return err
		}
		if start > 0 {
			if _, err := c.cat.DeleteRecords(ctx, p.tp, start); err != nil {
				return fmt.Errorf("compaction: retention of %s/%d: %w", p.topic.Name, p.tp.Partition, err)
			}
		}
	}
	n, err := c.cat.TrimRows(ctx, p.tp)
	if err != nil {
		return fmt.Errorf("compaction: trim %s/%d: %w", p.topic.Name, p.tp.Partition, err)
	}
	c.m.rowsTrimmed.Add(float64(n))
	return nil
}

// retentionStart returns the log start retention asks for (0: none).
func (c *Compactor) retentionStart(ctx context.Context, p partition) (int64, error) {
	var start int64
	if ms := p.topic.RetentionMs(); ms >= 0 {
		// The high watermark is read first: every row below it that the
		// timestamp search skips is older than the cutoff, while rows
		// committed after it are never deleted by this pass.
		o, err := c.cat.Offsets(ctx, p.tp)
		if err != nil {
			return 0, fmt.Errorf("compaction: retention of %s/%d: %w", p.topic.Name, p.tp.Partition, err)
		}
		cutoff := c.now().UnixMilli() - ms
		row, _, found, err := c.cat.BatchForTimestamp(ctx, p.tp, cutoff, 0)
		if err != nil {
			return 0, fmt.Errorf("compaction: retention of %s/%d: %w", p.topic.Name, p.tp.Partition, err)
		}
		start = o.HighWatermark
		if found {
			start = min(row.BaseOffset, o.HighWatermark)
		}
		if start > o.LogStart {
			if start, err = c.untimedStart(ctx, p, o.LogStart, start, cutoff); err != nil {
				return 0, err
			}
		}
		if start <= o.LogStart {
			start = 0
		}
	}
	if b := p.topic.RetentionBytes(); b >= 0 {
		off, found, err := c.cat.RetentionOffsetForBytes(ctx, p.tp, b)
		if err != nil {
			return 0, fmt.Errorf("compaction: retention of %s/%d: %w", p.topic.Name, p.tp.Partition, err)
		}
		if found {
			start = max(start, off)
		}
	}
	return start, nil
}

// untimedStart lowers start, the log start the timestamps ask for, to the
// first row below it whose records have no timestamp (-1, which Kafka
// accepts under CreateTime) and whose object was written after cutoff.
// The timestamp search sees such a row as older than any cutoff, but
// Kafka ages a segment without timestamps by its file's modification
// time: the object's creation time is that here (a merge makes it later,
// which only keeps the records longer). Rows from logStart are read a
// page at a time; start is lowered to the page's end when the page does
// not reach it, and the next pass goes on from there.
func (c *Compactor) untimedStart(ctx context.Context, p partition, logStart, start, cutoff int64) (int64, error) {
	rows, err := c.cat.CompactionRows(ctx, p.tp, logStart, mergeRowsPerPass)
	if err != nil {
		return 0, fmt.Errorf("compaction: retention of %s/%d: %w", p.topic.Name, p.tp.Partition, err)
	}
	for _, r := range rows {
		if r.BaseOffset >= start {
			return start, nil
		}
		if r.MaxTimestamp < 0 && r.ObjectCreated.UnixMilli() >= cutoff {
			return r.BaseOffset, nil
		}
	}
	if len(rows) == mergeRowsPerPass {
		return min(start, rows[len(rows)-1].LastOffset+1), nil
	}
	return start, nil
}
