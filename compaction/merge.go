package compaction

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/floebroker/floe/agent/flush"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/segment"
)

// mergeRowsPerPass bounds the rows one pass reads of a partition (a
// variable for tests).
var mergeRowsPerPass = 5000

// maxRowBytes caps the bytes of a row that compaction writes by joining
// adjacent ones (a variable for tests). A fetch reads the row holding its
// offset whole, as the catalog indexes rows, not batches, and the read
// caches refuse a range over half their size: a merged row as large as
// its 64 MiB object was read whole from the bucket, twice and uncached,
// by every catch-up fetch in it, which used a few MiB of it. A row of at
// most a MiB is one catalog row per MiB merged and is cached; a catch-up
// fetch reads the rows after its first in the same GET anyway (up to
// 8 MiB). Rows are never split, so a row written larger by a WAL flush
// stays as large.
var maxRowBytes int64 = 1 << 20

// merge rewrites the partition's rows held in small objects older than
// MergeMinAge into per-partition objects of up to TargetBytes. Each output
// object replaces a run of consecutive candidate rows in one SwapRows.
//
// A pass reads one page of mergeRowsPerPass rows, from where the previous
// pass over the partition stopped (c.mergeFrom), and the pass after the
// last page starts again at the log start, where rows that were too young
// may have aged into candidates since. Always reading from the log start
// would never get past a first page of rows that are not candidates (in
// large objects, or merged already): a partition busy for a while (5,000
// flushes), then quiet, would never have its later small objects merged.
func (c *Compactor) merge(ctx context.Context, p partition, renew func() error) error {
	tp := p.tp
	rows, err := c.cat.CompactionRows(ctx, tp, c.mergeFrom[tp], mergeRowsPerPass)
	if err != nil {
		return fmt.Errorf("compaction: merge: %w", err)
	}
	full := len(rows) == mergeRowsPerPass
	if full {
		c.mergeFrom[tp] = rows[len(rows)-1].LastOffset + 1
	} else {
		delete(c.mergeFrom, tp)
	}
	cutoff := c.now().Add(-c.cfg.MergeMinAge)
	var group []catalog.CompactionRow
	var groupBytes int64
	done := func() error {
		g := group
		group, groupBytes = nil, 0
		if len(g) == 0 || ownObject(g) {
			return nil // rows that already own most of their one object
		}
		return c.mergeGroup(ctx, tp, g, rollMs(p.topic), renew)
	}
	for _, r := range rows {
		candidate := r.ObjectCreated.Before(cutoff) && r.ObjectSize < c.cfg.SmallObjectBytes
		if !candidate || (len(group) > 0 && groupBytes+r.ByteLength > c.cfg.TargetBytes) {
			if err := done(); err != nil {
				return err
			}
		}
		if candidate {
			group = append(group, r)
			groupBytes += r.ByteLength
		}
	}
	// A group cut off by the page's end may go on in the next page: leave
	// it to the next pass, which starts at it, rather than merge a
	// fragment — unless it started the page (it would start the next one
	// too, and never be merged).
	if full && len(group) > 0 && group[0].BaseOffset > rows[0].BaseOffset {
		c.mergeFrom[tp] = group[0].BaseOffset
		return nil
	}
	return done()
}

// ownObject reports whether the rows all lie in one object and hold most
// of it: a previous merge's output, which merging again would only copy.
func ownObject(g []catalog.CompactionRow) bool {
	var bytes int64
	for _, r := range g {
		if r.ObjectID != g[0].ObjectID {
			return false
		}
		bytes += r.ByteLength
	}
	return 2*bytes > g[0].ObjectSize
}

// rollMs is how long a span of time one merged row may cover, as Kafka
// rolls a partition's active segment: segment.ms, and for a compacted
// topic at most max.compaction.lag.ms (LogConfig.maxSegmentMs). Retention
// and compaction age a row by its newest record, so a row that kept
// absorbing a slow partition's new batches would never age: retention.ms
// and min/max.compaction.lag.ms would not bound how long a record stays.
func rollMs(t catalog.Topic) int64 {
	roll := t.SegmentMs()
	if t.CleanupPolicy().Compact {
		roll = min(roll, t.MaxCompactionLagMs())
	}
	return max(roll, 1)
}

// span is how far a row reaches in time, as Kafka measures a segment for
// its roll: from its first batch's max timestamp (from) to the largest max
// timestamp of its batches (to), in Unix milliseconds. known is false when
// no batch has a timestamp. Only the first batch anchors it: a batch
// stamped earlier (a backfill, a client clock behind, or the first
// timestamp a LogAppendTime topic keeps from the producer) does not widen
// it, as it does not roll a Kafka segment.
type span struct {
	from, to int64
	known    bool
}

// join is s followed by o.
func (s span) join(o span) span {
	switch {
	case !s.known:
		return o
	case !o.known:
		return s
	}
	return span{from: s.from, to: max(s.to, o.to), known: true}
}

// batchSpan is a batch's span: its max timestamp (the append time on a
// LogAppendTime topic).
func batchSpan(m segment.BatchMeta) span {
	if m.MaxTimestamp >= 0 {
		return span{from: m.MaxTimestamp, to: m.MaxTimestamp, known: true}
	}
	return span{}
}

// mergeGroup copies the rows' batches into one new object, uploads it and
// swaps the rows. Rows of consecutive offsets become one row unless it
// would cover more than roll milliseconds (see rollMs). A lost race or
// lease deletes the upload again.
func (c *Compactor) mergeGroup(ctx context.Context, tp catalog.TopicPartition, g []catalog.CompactionRow, roll int64, renew func() error) error {
	w := segment.NewWriter(segment.Header{AgentID: c.cfg.Holder, Created: c.now()})
	first := make([]int, len(g)) // index of each row's first Add
	spans := make([]span, len(g))
	n := 0
	inputs := map[int64]bool{}
	for i, r := range g {
		if err := renew(); err != nil {
			return err
		}
		data, err := c.readRow(ctx, r.BatchRow)
		if err != nil {
			return err
		}
		first[i] = n
		if err := eachBatch(data, func(b []byte) {
			m := batchMeta(b)
			spans[i] = spans[i].join(batchSpan(m))
			w.Add(tp, b, m)
			n++
		}); err != nil {
			return fmt.Errorf("compaction: merge: row %d-%d of %s: %w", r.BaseOffset, r.LastOffset, r.ObjectKey, err)
		}
		inputs[r.ObjectID] = true
	}
	obj, placements := w.Finish()
	old := make([]catalog.BatchRow, len(g))
	var out []catalog.BatchRow
	var outSpan span // of out's last row
	for i, r := range g {
		old[i] = r.BatchRow
		end := n
		if i+1 < len(g) {
			end = first[i+1]
		}
		off := placements[first[i]].ByteOffset
		last := placements[end-1]
		nr := catalog.BatchRow{TopicPartition: tp, BaseOffset: r.BaseOffset, LastOffset: r.LastOffset,
			ByteOffset: off, ByteLength: last.ByteOffset + last.ByteLength - off, Records: r.Records, MaxTimestamp: r.MaxTimestamp}
		// Rows of consecutive offsets whose bytes are adjacent become one,
		// unless it would cover more than roll.
		joined := outSpan.join(spans[i])
		if k := len(out) - 1; k >= 0 && out[k].LastOffset+1 == nr.BaseOffset && out[k].ByteOffset+out[k].ByteLength == nr.ByteOffset &&
			out[k].ByteLength+nr.ByteLength <= maxRowBytes && (!joined.known || joined.to-joined.from <= roll) {
			out[k].LastOffset = nr.LastOffset
			out[k].ByteLength += nr.ByteLength
			out[k].Records += nr.Records
			out[k].MaxTimestamp = max(out[k].MaxTimestamp, nr.MaxTimestamp)
			outSpan = joined
			continue
		}
		out = append(out, nr)
		outSpan = spans[i]
	}
	key := flush.ObjectKey(c.cfg.Cluster, ulid.Make().String())
	put := c.now()
	if err := c.putObject(ctx, key, obj); err != nil {
		return fmt.Errorf("compaction: merge: put %s: %w", key, err)
	}
	if err := renew(); err != nil {
		c.dropUpload(ctx, key)
		return err
	}
	err := c.swapRows(ctx, catalog.RowSwap{TopicPartition: tp, Old: old, ObjectKey: key, ObjectSize: int64(len(obj)), New: out}, obj, put)
	if errors.Is(err, catalog.ErrSwapConflict) {
		c.m.swapConflicts.Inc()
		c.dropUpload(ctx, key)
		return nil
	}
	if err != nil {
		// The outcome may be unknown: the object is left for the orphan
		// sweep, which keeps it if the swap did commit.
		return fmt.Errorf("compaction: merge: %w", err)
	}
	c.m.bytesCompacted.Add(float64(len(obj)))
	c.m.objectsCompacted.Add(float64(len(inputs)))
	c.m.rowsBefore.Add(float64(len(g)))
	c.m.rowsAfter.Add(float64(len(out)))
	return nil
}

// dropUpload deletes an output object that no swap registered: nothing
// references it. If this fails, the orphan sweep will.
func (c *Compactor) dropUpload(ctx context.Context, key string) {
	if err := c.bucket.Delete(context.WithoutCancel(ctx), key); err != nil {
		c.log.Warn("deleting a dropped compaction output failed", "key", key, "err", err)
	}
}

func (c *Compactor) readRow(ctx context.Context, r catalog.BatchRow) ([]byte, error) {
	rc, err := c.bucket.GetRange(ctx, r.ObjectKey, r.ByteOffset, r.ByteLength)
	if err != nil {
		return nil, fmt.Errorf("compaction: read %s [%d,+%d): %w", r.ObjectKey, r.ByteOffset, r.ByteLength, err)
	}
	defer rc.Close()
	buf := make([]byte, r.ByteLength)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, fmt.Errorf("compaction: read %s [%d,+%d): %w", r.ObjectKey, r.ByteOffset, r.ByteLength, err)
	}
	return buf, nil
}

// Kafka RecordBatch v2 header fields (big endian) that compaction reads.
const (
	batchLengthOff    = 8  // int32: bytes after this field
	batchMagicOff     = 16 // int8
	batchFirstTsOff   = 27 // int64
	batchMaxTsOff     = 35 // int64
	batchProducerOff  = 43 // int64
	batchRecordsOff   = 57 // int32
	batchHeaderLength = 61
)

var errBadBatch = errors.New("malformed record batch")

// eachBatch splits a row's bytes into its record batches.
func eachBatch(b []byte, fn func(batch []byte)) error {
	for len(b) > 0 {
		if len(b) < batchHeaderLength || b[batchMagicOff] != 2 {
			return errBadBatch
		}
		n := 12 + int64(int32(binary.BigEndian.Uint32(b[batchLengthOff:])))
		if n < batchHeaderLength || n > int64(len(b)) {
			return errBadBatch
		}
		fn(b[:n])
		b = b[n:]
	}
	return nil
}

// batchMeta is what the segment index records of a batch.
func batchMeta(b []byte) segment.BatchMeta {
	firstTs := int64(binary.BigEndian.Uint64(b[batchFirstTsOff:]))
	if attrs := binary.BigEndian.Uint16(b[batchAttrOff:]); attrs&batchDeleteHorizonFlag != 0 && attrs&0x20 == 0 {
		// The field holds the batch's delete horizon: the index wants
		// its earliest record's timestamp. (Merging copies bytes and
		// must not fail on records it cannot read: the index then keeps
		// the field.)
		if ts, err := earliestTimestamp(b); err == nil {
			firstTs = ts
		}
	}
	return segment.BatchMeta{
		Records:        int32(binary.BigEndian.Uint32(b[batchRecordsOff:])),
		FirstTimestamp: firstTs,
		MaxTimestamp:   int64(binary.BigEndian.Uint64(b[batchMaxTsOff:])),
		ProducerID:     int64(binary.BigEndian.Uint64(b[batchProducerOff:])),
	}
}

// swapRows swaps in the rows of an output object put at put, putting it
// again first if that was longer ago than Config.MaxUploadAge: the
// orphan sweep (of any agent) deletes an object the catalog does not know
// once it is GCGrace old, and a pass stalled between its put and its swap
// (a paused process, a catalog retried for minutes) would otherwise swap
// in rows whose object is gone, making committed records unreadable. The
// WAL's commits do the same (flush.Config.MaxUploadAge).
func (c *Compactor) swapRows(ctx context.Context, swap catalog.RowSwap, obj []byte, put time.Time) error {
	reput := c.now().Sub(put) > c.cfg.MaxUploadAge
	if reput {
		if err := c.putObject(ctx, swap.ObjectKey, obj); err != nil {
			return fmt.Errorf("compaction: put %s again before its swap: %w", swap.ObjectKey, err)
		}
	}
	// Bounded as a WAL commit is (flush's commitDeadline): retries inside
	// the catalog must not carry the swap past the grace.
	sctx, cancel := context.WithTimeout(ctx, c.cfg.MaxUploadAge)
	defer cancel()
	if err := c.cat.SwapRows(sctx, swap); err != nil {
		return err
	}
	if reput {
		// A sweep that last looked at the old object before the put again
		// may have deleted it after: once swapped in, the object is
		// known and safe from sweeps, so put it back if it is gone (as
		// flush's ensureStored does for commits).
		if _, err := c.bucket.Stat(ctx, swap.ObjectKey); errors.Is(err, objstore.ErrNotExist) {
			if err := c.putObject(ctx, swap.ObjectKey, obj); err != nil {
				return fmt.Errorf("compaction: put back %s after its swap: %w", swap.ObjectKey, err)
			}
		}
	}
	return nil
}

// putObject puts a merged or log-compacted segment, counting the call
// (floe_compaction_puts_total) so that compaction's PUTs can be told from
// the flushes'.
func (c *Compactor) putObject(ctx context.Context, key string, obj []byte) error {
	c.m.puts.Inc()
	return c.bucket.Put(ctx, key, bytes.NewReader(obj), int64(len(obj)))
}
