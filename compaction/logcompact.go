package compaction

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent/flush"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/internal/batchcodec"
	"github.com/floebroker/floe/segment"
)

// Log compaction (cleanup.policy=compact, and compact,delete after
// retention) keeps the latest record per key. It works as Kafka's log
// cleaner does:
//
//   - The cleanable range is a prefix of the partition's rows from the log
//     start: it stops at the first row younger than min.compaction.lag.ms
//     (by its max timestamp; a row without timestamps by its object's
//     creation time, as Kafka falls back to the segment file's time; with
//     no min lag, timestamps are not looked at) or held in an object
//     younger than MergeMinAge. Merging rolls rows as Kafka rolls
//     segments (see rollMs), so a row's max timestamp ages. The partition's last
//     batch is the active tail (Kafka never compacts its active segment;
//     kfake keeps the last batch): its records are kept and supersede
//     nothing.
//   - The Compactor remembers per partition the offset D it has cleaned
//     up to (cleanState.cleaned, Kafka's cleaner checkpoint, kept in
//     memory only: another Compactor taking the shard over starts from
//     the log start, which costs work, never correctness). Every key
//     appears at most once in [log start, D) (the clean region); [D, end
//     of the cleanable range) is dirty.
//   - A pass runs when the dirty bytes are at least min.cleanable.dirty.
//     ratio of the cleanable bytes (from the rows' metadata: a quiet
//     partition costs no read), when a dirty row is older than
//     max.compaction.lag.ms, or when a tombstone kept in the clean region
//     is half its delete.retention.ms past its delete horizon (so a
//     steady stream of deletes costs a full pass at most every
//     delete.retention.ms/2).
//   - It reads the dirty rows in order, one at a time, recording each
//     key's last offset at or past D (full keys: no hash, so no collision
//     can drop a live record; record by record, as D at the log start may
//     fall inside a batch) until the map holds TargetBytes (key bytes
//     plus mapEntryOverhead per key), then stops at the row's end, or at
//     the active tail: E. It then rewrites [log start, E) in groups of rows of
//     up to TargetBytes, one group in memory at a time: a keyed record is
//     dropped if the map holds its key at a larger offset (in [D, E) every
//     key is in the map, so only each key's last survives), a surviving
//     tombstone (null value) once its batch's delete horizon has passed
//     (see cleaner: the first pass to keep a tombstone sets the horizon
//     to its time plus delete.retention.ms, as Kafka does since KIP-534).
//     Records without a key and control batches are kept. A group that
//     loses nothing and sets no horizon is left as it is. On success D = E.
//   - Dropping a tombstone is safe because the earlier records of its key
//     are gone with it: below D the clean region holds the key only once;
//     for a tombstone in [D, E) the map makes this pass drop the key's
//     earlier records, which lie in its group or an earlier one, swapped
//     in offset order. So a pass stops at its first swap conflict, D
//     unchanged (what it worked out from the rows may no longer hold).
//     Another Compactor only removes records, which keeps [log start, D)
//     free of repeated keys.
//   - Offsets never change. A batch keeping all its records is copied byte
//     for byte unless it is given a delete horizon, which sets attribute
//     bit 6 and puts the horizon in the first timestamp field, the
//     records' timestamp deltas re-encoded from it so their timestamps
//     stay. One keeping some is re-encoded with the same codec,
//     keeping baseOffset, lastOffsetDelta (so its offset span), the
//     records' offset and timestamp deltas, the first timestamp,
//     producer id, epoch and base sequence, partition leader epoch and
//     attributes, with a new record count, CRC-32C and max timestamp
//     (the kept records' largest, as Kafka's cleaner writes it, so the
//     row's max timestamp, which timestamp lookups and retention.ms use,
//     is that of records still there).
//   - A batch keeping no record is dropped whole, and the catalog row
//     holding it is split around it: the agent's fetch walks a row's
//     batches assuming each spans lastOffsetDelta+1 offsets back to back,
//     so a gap must fall between rows, never inside one. Floe keeps
//     idempotent producers' state in the catalog, not in the log, so an
//     empty batch need not be kept for it.
//   - The new rows replace the old ones in one SwapRows per group, as a
//     merge does, so a consumer sees either the old records or the
//     compacted ones.
//
// Per pass: the map holds at most TargetBytes plus one row's keys; the
// rewrite holds one group (TargetBytes, or one larger row) and its
// output. It GETs the rows of [D, E) twice and those of [log start, D)
// once.

// mapEntryOverhead is what a key costs in the offset map beyond its bytes
// (Go map slot, string header, offset, allocation rounding), roughly.
const mapEntryOverhead = 64

// cleanState is what a Compactor remembers of a compacted partition
// between passes.
type cleanState struct {
	// cleaned is D: [log start, cleaned) holds each key at most once.
	cleaned int64
	// tailHW is the high watermark at which the pass that set cleaned
	// stopped at the active tail (0: it did not). While the high
	// watermark stays, nothing beyond cleaned but the tail is dirty.
	tailHW int64
	// oldestHorizon is the earliest delete horizon of a tombstone that
	// pass kept below cleaned (math.MaxInt64: none).
	oldestHorizon int64
}

type storedBatch struct {
	raw        []byte
	base, last int64 // its first and last offsets
}

// compactLog runs one log compaction pass over p.
func (c *Compactor) compactLog(ctx context.Context, p partition, renew func() error) error {
	o, err := c.cat.Offsets(ctx, p.tp)
	if err != nil {
		return fmt.Errorf("compaction: log compaction of %s/%d: %w", p.topic.Name, p.tp.Partition, err)
	}
	now := c.now()
	rows, err := c.cleanableRows(ctx, p, o.LogStart, now)
	if err != nil {
		return err
	}
	st, ok := c.cleaned[p.tp]
	if !ok || st.cleaned < o.LogStart {
		st = cleanState{cleaned: o.LogStart, oldestHorizon: math.MaxInt64}
	}
	if len(rows) == 0 {
		return nil
	}

	// The gate, from the rows' metadata.
	nowMs := now.UnixMilli()
	retention := max(p.topic.DeleteRetentionMs(), 0)
	// (Only once the cleanable rows reach D again, after a merge's young
	// output in the clean region cut them short: the rewrite must see
	// every tombstone below D to know the oldest left.)
	tombstonesDue := st.oldestHorizon != math.MaxInt64 && st.oldestHorizon < minus(nowMs, retention/2) &&
		rows[len(rows)-1].LastOffset+1 >= st.cleaned
	dirtyEmpty := rows[len(rows)-1].LastOffset < st.cleaned || st.tailHW == o.HighWatermark
	if !tombstonesDue && (dirtyEmpty || !dirtyEnough(p.topic, rows, st.cleaned, nowMs)) {
		return nil
	}

	// Each key's last offset in the dirty rows, one row at a time, until
	// the map is full or the active tail (the partition's last batch).
	latest := map[string]int64{}
	var used int64
	end, atTail := st.cleaned, false
	for _, r := range rows {
		if dirtyEmpty || used >= c.cfg.TargetBytes || atTail {
			break
		}
		if r.LastOffset < st.cleaned {
			continue
		}
		batches, err := c.readBatches(ctx, r, renew)
		if err != nil {
			return err
		}
		last := r.LastOffset+1 >= o.HighWatermark
		end = r.LastOffset + 1
		for i, sb := range batches {
			// D need not fall between batches: the log start, where a
			// pass starts without a D of its own, is wherever
			// DeleteRecords put it. So the records are looked at one by
			// one, as Kafka's cleaner does: those of a batch straddling D
			// at or past it are dirty, and a key of theirs left out of
			// the map would be kept twice (the tombstone going at its
			// horizon, the value it deleted staying).
			if sb.last < st.cleaned {
				continue
			}
			if last && i == len(batches)-1 {
				end, atTail = max(sb.base, st.cleaned), true
				break
			}
			if err := eachRecord(sb.raw, func(rec *record, _ []byte) {
				off := sb.base + rec.offsetDelta
				if rec.key == nil || rec.misnumbered || off < st.cleaned {
					return
				}
				if _, ok := latest[string(rec.key)]; !ok {
					used += int64(len(rec.key)) + mapEntryOverhead
				}
				latest[string(rec.key)] = off
			}); err != nil {
				return fmt.Errorf("compaction: log compaction: batch at %d: %w", sb.base, err)
			}
		}
	}
	next := cleanState{cleaned: end, tailHW: st.tailHW, oldestHorizon: st.oldestHorizon}
	switch {
	case atTail:
		next.tailHW = o.HighWatermark
	case end > st.cleaned:
		next.tailHW = 0
	}
	if len(latest) == 0 && !tombstonesDue {
		// The dirty rows hold no key: nothing below end can lose a record.
		c.cleaned[p.tp] = next
		return nil
	}

	// Rewrite [log start, end) group by group.
	cl := &cleaner{now: nowMs, horizon: plus(nowMs, retention), oldest: math.MaxInt64}
	cl.classify = func(rec *record, base int64) verdict {
		if rec.key == nil || rec.misnumbered || base >= end {
			return keepRecord
		}
		if m, ok := latest[string(rec.key)]; ok && m > base+rec.offsetDelta {
			return dropRecord
		}
		if rec.value == nil {
			return keepTombstone
		}
		return keepRecord
	}
	n := 0
	for n < len(rows) && rows[n].BaseOffset < end {
		n++
	}
	rows = rows[:n]
	for start := 0; start < len(rows); {
		stop, bytes := start, int64(0)
		for stop < len(rows) && (stop == start || bytes+rows[stop].ByteLength <= c.cfg.TargetBytes) {
			bytes += rows[stop].ByteLength
			stop++
		}
		data := make([][]storedBatch, 0, stop-start)
		for _, r := range rows[start:stop] {
			batches, err := c.readBatches(ctx, r, renew)
			if err != nil {
				return err
			}
			data = append(data, batches)
		}
		if err := c.compactGroup(ctx, p.tp, rows[start:stop], data, cl, renew); err != nil {
			if errors.Is(err, catalog.ErrSwapConflict) {
				// The rows changed under this pass, so what it worked out
				// from them (each key's latest record) may no longer hold:
				// a later group could drop a tombstone whose superseded
				// records this group failed to drop. D stays; the next
				// pass starts afresh.
				return nil
			}
			return err
		}
		start = stop
	}
	next.oldestHorizon = cl.oldest
	c.cleaned[p.tp] = next
	return nil
}

// dirtyEnough reports whether the cleanable rows' bytes at or past
// cleaned are at least min.cleanable.dirty.ratio of them all, or any of
// those rows is older than max.compaction.lag.ms.
func dirtyEnough(t catalog.Topic, rows []catalog.CompactionRow, cleaned, nowMs int64) bool {
	var clean, dirty float64
	maxLagCutoff := nowMs - max(t.MaxCompactionLagMs(), 0)
	for _, r := range rows {
		switch {
		case r.LastOffset < cleaned:
			clean += float64(r.ByteLength)
			continue
		case r.BaseOffset >= cleaned:
			dirty += float64(r.ByteLength)
		default: // straddles D (a merge joined rows around it): pro rata
			d := float64(r.ByteLength) * float64(r.LastOffset+1-cleaned) / float64(r.LastOffset+1-r.BaseOffset)
			dirty += d
			clean += float64(r.ByteLength) - d
		}
		if rowTime(r) <= maxLagCutoff {
			return true
		}
	}
	return dirty >= t.MinCleanableDirtyRatio()*(clean+dirty)
}

// rowTime is the time in Unix milliseconds by which a row ages: its max
// timestamp, or for a row without timestamps its object's creation, as
// Kafka ages such a segment by its file's modification time.
func rowTime(r catalog.CompactionRow) int64 {
	if r.MaxTimestamp < 0 {
		return r.ObjectCreated.UnixMilli()
	}
	return r.MaxTimestamp
}

// plus is a+b (b ≥ 0), saturating at math.MaxInt64.
func plus(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// minus is a-b (b ≥ 0), saturating at math.MinInt64.
func minus(a, b int64) int64 {
	if a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}

// cleanableRows pages through p's rows from the log start up to the first
// one not cleanable yet (see above).
func (c *Compactor) cleanableRows(ctx context.Context, p partition, from int64, now time.Time) ([]catalog.CompactionRow, error) {
	minLag := max(p.topic.MinCompactionLagMs(), 0)
	lagCutoff := now.UnixMilli() - minLag
	ageCutoff := now.Add(-c.cfg.MergeMinAge)
	var out []catalog.CompactionRow
	for {
		rows, err := c.cat.CompactionRows(ctx, p.tp, from, mergeRowsPerPass)
		if err != nil {
			return nil, fmt.Errorf("compaction: log compaction of %s/%d: %w", p.topic.Name, p.tp.Partition, err)
		}
		for _, r := range rows {
			// Without a min lag Kafka does not look at timestamps: a
			// batch stamped in the future must not hold back the rest.
			if (minLag > 0 && rowTime(r) > lagCutoff) || !r.ObjectCreated.Before(ageCutoff) {
				return out, nil
			}
			out = append(out, r)
		}
		if len(rows) < mergeRowsPerPass {
			return out, nil
		}
		from = rows[len(rows)-1].LastOffset + 1
	}
}

// readBatches reads a row and splits it into its batches.
func (c *Compactor) readBatches(ctx context.Context, r catalog.CompactionRow, renew func() error) ([]storedBatch, error) {
	if err := renew(); err != nil {
		return nil, err
	}
	raw, err := c.readRow(ctx, r.BatchRow)
	if err != nil {
		return nil, err
	}
	var out []storedBatch
	off := r.BaseOffset
	if err := eachBatch(raw, func(b []byte) {
		last := off + int64(int32(binary.BigEndian.Uint32(b[batchLastDeltaOff:])))
		out = append(out, storedBatch{raw: b, base: off, last: last})
		off = last + 1
	}); err != nil {
		return nil, fmt.Errorf("compaction: log compaction: row %d-%d of %s: %w", r.BaseOffset, r.LastOffset, r.ObjectKey, err)
	}
	return out, nil
}

// compactGroup filters the rows' batches and, if any record goes, writes
// the survivors to a new object and swaps the rows. A lost race returns
// catalog.ErrSwapConflict (its upload deleted).
func (c *Compactor) compactGroup(ctx context.Context, tp catalog.TopicPartition, rows []catalog.CompactionRow, data [][]storedBatch,
	cl *cleaner, renew func() error) error {
	w := segment.NewWriter(segment.Header{AgentID: c.cfg.Holder, Created: c.now()})
	type out struct {
		base, last int64
		records    int32
		maxTs      int64
	}
	var outs []out
	removed, horizons := 0, 0
	for _, batches := range data {
		for _, sb := range batches {
			// Renewed as the batches go (renew asks the catalog only once
			// a third of the lease has passed): a group of tens of
			// thousands of small compressed batches takes longer to
			// re-encode than a lease lasts, and a lease lapsed by the
			// swap dropped the group's work at every pass, for ever.
			if err := renew(); err != nil {
				return err
			}
			f, err := cl.filter(sb.raw, sb.base)
			if err != nil {
				return fmt.Errorf("compaction: log compaction: batch at %d: %w", sb.base, err)
			}
			removed += f.dropped
			if f.horizonSet {
				horizons++
			}
			if f.kept == 0 {
				continue
			}
			nb := f.batch
			meta := segment.BatchMeta{
				Records:        int32(f.kept),
				FirstTimestamp: f.firstTs,
				MaxTimestamp:   int64(binary.BigEndian.Uint64(nb[batchMaxTsOff:])),
				ProducerID:     int64(binary.BigEndian.Uint64(nb[batchProducerOff:])),
			}
			w.Add(tp, nb, meta)
			last := sb.base + int64(int32(binary.BigEndian.Uint32(nb[batchLastDeltaOff:])))
			outs = append(outs, out{base: sb.base, last: last, records: int32(f.kept), maxTs: meta.MaxTimestamp})
		}
	}
	if removed == 0 && horizons == 0 {
		return nil // nothing to gain here; merge may still coalesce it
	}
	obj, placements := w.Finish()
	var newRows []catalog.BatchRow
	for i, o := range outs {
		pl := placements[i]
		if k := len(newRows) - 1; k >= 0 && newRows[k].LastOffset+1 == o.base && newRows[k].ByteLength+pl.ByteLength <= maxRowBytes {
			newRows[k].LastOffset = o.last
			newRows[k].ByteLength += pl.ByteLength
			newRows[k].Records += o.records
			newRows[k].MaxTimestamp = max(newRows[k].MaxTimestamp, o.maxTs)
			continue
		}
		newRows = append(newRows, catalog.BatchRow{TopicPartition: tp, BaseOffset: o.base, LastOffset: o.last,
			ByteOffset: pl.ByteOffset, ByteLength: pl.ByteLength, Records: o.records, MaxTimestamp: o.maxTs})
	}
	old := make([]catalog.BatchRow, len(rows))
	inputs := map[int64]bool{}
	for i, r := range rows {
		old[i] = r.BatchRow
		inputs[r.ObjectID] = true
	}
	key := flush.ObjectKey(c.cfg.Cluster, ulid.Make().String())
	put := c.now()
	if err := c.putObject(ctx, key, obj); err != nil {
		return fmt.Errorf("compaction: log compaction: put %s: %w", key, err)
	}
	if err := renew(); err != nil {
		c.dropUpload(ctx, key)
		return err
	}
	err := c.swapRows(ctx, catalog.RowSwap{TopicPartition: tp, Old: old, ObjectKey: key, ObjectSize: int64(len(obj)), New: newRows}, obj, put)
	if errors.Is(err, catalog.ErrSwapConflict) {
		c.m.swapConflicts.Inc()
		c.dropUpload(ctx, key)
		return err
	}
	if err != nil {
		return fmt.Errorf("compaction: log compaction: %w", err)
	}
	c.m.bytesCompacted.Add(float64(len(obj)))
	c.m.objectsCompacted.Add(float64(len(inputs)))
	c.m.rowsBefore.Add(float64(len(rows)))
	c.m.rowsAfter.Add(float64(len(newRows)))
	c.m.recordsRemoved.Add(float64(removed))
	c.m.horizonsSet.Add(float64(horizons))
	return nil
}

const (
	batchLastDeltaOff = 23 // int32
	batchAttrOff      = 21 // int16
	batchCRCOff       = 17 // uint32, over the bytes from batchAttrOff on
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// verdict is what a log compaction pass does with one record.
type verdict int8

const (
	keepRecord    verdict = iota
	dropRecord            // superseded by a later record of its key
	keepTombstone         // its key's latest, with a null value: goes at its batch's delete horizon
)

// batchDeleteHorizonFlag is the record batch attribute (bit 6, KIP-534)
// saying that the batch's first timestamp field holds its delete horizon:
// the time in Unix milliseconds after which log compaction may drop the
// batch's tombstones. Records still carry their own timestamps, as deltas
// from that field.
const batchDeleteHorizonFlag = 0x40

// cleaner is one log compaction pass's record filter.
//
// A tombstone is kept until delete.retention.ms after the first pass that
// kept it, as Kafka's cleaner does since KIP-534: that pass writes the
// horizon (its time plus delete.retention.ms) into the tombstone's batch,
// and a later pass past the horizon drops it. Counting from the record's
// own timestamp instead would drop at once a tombstone whose timestamp is
// old (replicated from another cluster, or set by the producer), before
// consumers reading a little behind have seen the delete; counting from
// its object's creation would restart whenever compaction rewrites it.
type cleaner struct {
	classify func(rec *record, base int64) verdict
	now      int64 // the pass's time, Unix ms
	horizon  int64 // the delete horizon of tombstones first kept by this pass
	oldest   int64 // the earliest delete horizon of a tombstone kept so far
}

// filtered is one batch after cleaning.
type filtered struct {
	batch         []byte // the input itself when nothing changed
	kept, dropped int
	horizonSet    bool  // the pass gave the batch its delete horizon
	firstTs       int64 // the earliest kept record's timestamp, for the segment index
}

// filter returns the batch with the records the pass keeps: superseded
// records go, tombstones past the batch's delete horizon go, and a batch
// keeping a tombstone gets a delete horizon if it has none.
func (cl *cleaner) filter(b []byte, base int64) (filtered, error) {
	attrs := int16(binary.BigEndian.Uint16(b[batchAttrOff:]))
	firstTs := int64(binary.BigEndian.Uint64(b[batchFirstTsOff:]))
	if attrs&0x20 != 0 { // a control batch
		return filtered{batch: b, kept: int(int32(binary.BigEndian.Uint32(b[batchRecordsOff:]))), firstTs: firstTs}, nil
	}
	maxTs := int64(binary.BigEndian.Uint64(b[batchMaxTsOff:]))
	logAppend := attrs&0x08 != 0 // the batch's max timestamp is every record's
	hasHorizon := attrs&batchDeleteHorizonFlag != 0
	f := filtered{firstTs: math.MaxInt64}
	recs, n, err := batchRecords(b)
	if err != nil {
		return filtered{}, err
	}
	// The kept records' bytes, as they are: at most what the batch
	// decompresses to (batchcodec's bound), never a structure per record.
	body := make([]byte, 0, len(recs))
	keptTombstone := false
	keptMaxTs := int64(-1) // Kafka's "no timestamp"
	err = walkRecords(recs, n, lastDelta(b), func(rec *record, raw []byte) {
		ts := firstTs + rec.tsDelta
		if logAppend {
			ts = maxTs
		}
		switch cl.classify(rec, base) {
		case dropRecord:
			f.dropped++
			return
		case keepTombstone:
			// Kafka's rule: kept while the horizon is later than now.
			if hasHorizon && firstTs <= cl.now {
				f.dropped++
				return
			}
			keptTombstone = true
		}
		f.kept++
		body = append(body, raw...)
		keptMaxTs = max(keptMaxTs, ts)
		f.firstTs = min(f.firstTs, ts)
	})
	if err != nil {
		return filtered{}, err
	}
	if !hasHorizon && !keptTombstone {
		// The first timestamp field is a record's: as the index had it.
		f.firstTs = firstTs
	} else if f.kept == 0 {
		f.firstTs = -1
	}
	horizon := firstTs
	if keptTombstone {
		if !hasHorizon {
			horizon = cl.horizon
			f.horizonSet = true
		}
		cl.oldest = min(cl.oldest, horizon)
	}
	if f.kept == 0 || (f.dropped == 0 && !f.horizonSet) {
		f.batch = b
		return f, nil
	}
	if f.horizonSet && !logAppend {
		// The records' timestamps become deltas from the horizon.
		kept := body
		body = make([]byte, 0, len(kept)+len(kept)/8)
		for len(kept) > 0 {
			l, vn := binary.Varint(kept) // checked by eachRecord
			raw := kept[:vn+int(l)]
			rec, err := parseRecord(raw[vn:])
			if err != nil {
				return filtered{}, err
			}
			rec.bodyOff = vn
			body = appendWithDelta(body, raw, &rec, firstTs+rec.tsDelta-horizon)
			kept = kept[len(raw):]
		}
	}
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(b); err != nil {
		return filtered{}, err
	}
	codec := kgo.CompressionCodecType(attrs & 0x07)
	if codec != kgo.CodecNone {
		comp, err := compressorFor(codec)
		if err != nil {
			return filtered{}, err
		}
		var buf bytes.Buffer
		out, used := comp.Compress(&buf, body)
		if used != codec {
			return filtered{}, fmt.Errorf("codec %d compressed as %d", codec, used)
		}
		body = append([]byte(nil), out...)
	}
	rb.Records = body
	rb.NumRecords = int32(f.kept)
	if f.dropped > 0 {
		// The max timestamp is the kept records' (for LogAppendTime it
		// is theirs already), as Kafka's cleaner writes it: a timestamp
		// lookup must not be sent to a batch for a record that is gone.
		rb.MaxTimestamp = keptMaxTs
	}
	if f.horizonSet {
		rb.Attributes |= batchDeleteHorizonFlag
		rb.FirstTimestamp = horizon
	}
	nb := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(nb[batchLengthOff:], uint32(len(nb)-12))
	binary.BigEndian.PutUint32(nb[batchCRCOff:], crc32.Checksum(nb[batchAttrOff:], crcTable))
	f.batch = nb
	return f, nil
}

// earliestTimestamp is the earliest timestamp of a batch's records (-1
// when it has none).
func earliestTimestamp(b []byte) (int64, error) {
	firstTs := int64(binary.BigEndian.Uint64(b[batchFirstTsOff:]))
	if binary.BigEndian.Uint16(b[batchAttrOff:])&0x08 != 0 { // LogAppendTime
		return int64(binary.BigEndian.Uint64(b[batchMaxTsOff:])), nil
	}
	out := int64(math.MaxInt64)
	err := eachRecord(b, func(rec *record, _ []byte) { out = min(out, firstTs+rec.tsDelta) })
	if out == math.MaxInt64 {
		out = -1
	}
	return out, err
}

// compressors are the codecs' compressors, made once and shared by every
// pass: a kgo compressor keeps its encoders in a sync.Pool and is safe for
// concurrent use. One made per re-encoded batch started a new encoder each
// time: 2.1 ms and 1.6 MiB for zstd, 1.4 ms and 1.1 MiB for gzip, against
// 12 µs for a small batch, so a group of tens of thousands of small
// batches took minutes (a variable for tests).
var compressors = sync.OnceValue(func() map[kgo.CompressionCodecType]kgo.Compressor {
	out := map[kgo.CompressionCodecType]kgo.Compressor{}
	for codec, cc := range map[kgo.CompressionCodecType]kgo.CompressionCodec{kgo.CodecGzip: kgo.GzipCompression(),
		kgo.CodecSnappy: kgo.SnappyCompression(), kgo.CodecLz4: kgo.Lz4Compression(), kgo.CodecZstd: kgo.ZstdCompression()} {
		c, err := kgo.DefaultCompressor(cc)
		if err != nil {
			panic(fmt.Sprintf("compaction: compressor for codec %d: %v", codec, err)) // known codecs only
		}
		out[codec] = c
	}
	return out
})

func compressorFor(codec kgo.CompressionCodecType) (kgo.Compressor, error) {
	c, ok := compressors()[codec]
	if !ok {
		return nil, fmt.Errorf("unknown compression codec %d", codec)
	}
	return c, nil
}

// eachRecord decodes a batch's records (decompressing them) and hands each
// to fn with its encoded bytes, length prefix included. fn must not keep
// rec, which the next record reuses.
func eachRecord(b []byte, fn func(rec *record, raw []byte)) error {
	recs, n, err := batchRecords(b)
	if err != nil {
		return err
	}
	return walkRecords(recs, n, lastDelta(b), fn)
}

// lastDelta is a batch's last offset delta.
func lastDelta(b []byte) int64 { return int64(int32(binary.BigEndian.Uint32(b[batchLastDeltaOff:]))) }

// batchRecords returns the bytes of a batch's records, decompressed, and
// how many the batch says they are (none for a control batch: control
// records carry no user key).
func batchRecords(b []byte) (recs []byte, n int, err error) {
	if len(b) < batchHeaderLength {
		return nil, 0, errBadBatch
	}
	attrs := int16(binary.BigEndian.Uint16(b[batchAttrOff:]))
	if attrs&0x20 != 0 {
		return nil, 0, nil
	}
	// Bounded: a compression bomb a producer stored (produce never
	// decompresses) fails this partition's pass, not the process.
	recs, err = batchcodec.Decompress(int8(attrs&0x07), b[batchHeaderLength:])
	if err != nil {
		return nil, 0, fmt.Errorf("decompress: %w", err)
	}
	return recs, int(int32(binary.BigEndian.Uint32(b[batchRecordsOff:]))), nil
}

// walkRecords hands each of the n records encoded in recs, of a batch
// whose last offset delta is last, to fn (see eachRecord); recs must hold
// exactly them.
func walkRecords(recs []byte, n int, last int64, fn func(rec *record, raw []byte)) error {
	var rec record // one for all
	var err error
	prev := int64(-1)
	for i := 0; i < n; i++ {
		l, vn := binary.Varint(recs)
		if vn <= 0 || l < 0 || int64(len(recs)-vn) < l {
			return errBadBatch
		}
		raw := recs[:vn+int(l)]
		if rec, err = parseRecord(raw[vn:]); err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
		rec.bodyOff = vn
		// A cleaned batch keeps its records' deltas, gaps and all, so
		// the deltas need only increase within the batch's range.
		rec.misnumbered = rec.offsetDelta <= prev || rec.offsetDelta > last
		if !rec.misnumbered {
			prev = rec.offsetDelta
		}
		fn(&rec, raw)
		recs = recs[len(raw):]
	}
	if len(recs) != 0 {
		return errBadBatch
	}
	return nil
}

// record is what log compaction reads of one record, its key and value
// borrowed from the batch's records. The headers are stepped over, not
// decoded: kmsg.Record.ReadFrom allocates for the header count a record
// claims before reading any header, so a stored record claiming tens of
// millions of them cost gigabytes, and compaction needs none of them.
type record struct {
	offsetDelta int64
	// misnumbered: the offset delta is not above the previous record's,
	// or is past the batch's last offset delta (so any outside int32).
	// Clients number records 0, 1, 2..., and log compaction keeps the
	// deltas of the records it keeps; produce refuses other deltas in
	// the batches it reads, but stores a compressed batch of a
	// delete-policy topic unread, and the topic may become compacted
	// later (or the batch predate the check). Where such a record sits
	// in the log is unclear, so it is kept as it is, like a keyless
	// record: it supersedes nothing and nothing supersedes it. Refused
	// as malformed, it failed every pass of its partition, for good.
	misnumbered bool
	tsDelta     int64
	key, value  []byte // nil when null
	// bodyOff is where the record's body (after its length) starts in
	// its encoding, and tsEnd where its timestamp delta ends in the body:
	// the bytes a new delta replaces.
	bodyOff, tsEnd int
}

var errBadRecord = errors.New("malformed record")

// parseRecord reads the body of a record (its encoding after the length),
// which must hold exactly the record, as Kafka requires.
func parseRecord(body []byte) (record, error) {
	var rec record
	if len(body) < 1 {
		return rec, errBadRecord
	}
	p := 1 // attributes
	varint := func() (int64, bool) {
		v, n := binary.Varint(body[p:])
		if n <= 0 {
			return 0, false
		}
		p += n
		return v, true
	}
	bytesField := func(nullable bool) ([]byte, bool) {
		l, ok := varint()
		switch {
		case !ok || (l < 0 && !nullable) || l > int64(len(body)-p):
			return nil, false
		case l < 0:
			// Any negative length is null, as Kafka's record reader and
			// produce (which stores such records) take it: refused here,
			// one record with a value length of -2 failed every later
			// pass of its partition at its batch.
			return nil, true
		}
		v := body[p : p+int(l) : p+int(l)]
		p += int(l)
		return v, true
	}
	var ok bool
	if rec.tsDelta, ok = varint(); !ok {
		return rec, errBadRecord
	}
	rec.tsEnd = p
	// Any varint: one outside int32 is misnumbered (see record), not
	// malformed.
	if rec.offsetDelta, ok = varint(); !ok {
		return rec, errBadRecord
	}
	if rec.key, ok = bytesField(true); !ok {
		return rec, errBadRecord
	}
	if rec.value, ok = bytesField(true); !ok {
		return rec, errBadRecord
	}
	headers, ok := varint()
	if !ok || headers < 0 {
		return rec, errBadRecord
	}
	// Each header takes at least two bytes, so the loop ends within the
	// body whatever the count claims.
	for range headers {
		if _, ok := bytesField(false); !ok {
			return rec, errBadRecord
		}
		if _, ok := bytesField(true); !ok {
			return rec, errBadRecord
		}
	}
	if p != len(body) {
		return rec, errBadRecord
	}
	return rec, nil
}

// appendWithDelta appends the record encoded as raw (rec read from it)
// with its timestamp delta replaced by delta.
func appendWithDelta(dst, raw []byte, rec *record, delta int64) []byte {
	body := raw[rec.bodyOff:]
	var head [1 + binary.MaxVarintLen64]byte
	head[0] = body[0] // attributes
	n := 1 + binary.PutVarint(head[1:], delta)
	dst = binary.AppendVarint(dst, int64(n+len(body)-rec.tsEnd))
	dst = append(dst, head[:n]...)
	return append(dst, body[rec.tsEnd:]...)
}
