package compaction

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent/flush"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/segment"
)

// Log compaction (cleanup.policy=compact, and compact,delete after
// retention) keeps the latest record per key:
//
//   - The cleanable range is a prefix of the partition's rows from the log
//     start: it stops at the first row younger than min.compaction.lag.ms
//     (by its max timestamp) or held in an object younger than
//     MergeMinAge. The partition's last batch is the active tail (Kafka
//     never compacts its active segment; kfake keeps the last batch):
//     its records are kept and supersede nothing. A pass reads at most
//     2×TargetBytes of the range; what lies beyond waits for the next
//     pass (records superseded only beyond it are kept until then).
//   - Within the range, a keyed record survives if it is its key's last
//     record in the range. A surviving tombstone (null value) is dropped
//     once its timestamp is older than delete.retention.ms. Records
//     without a key and control batches are kept.
//   - Offsets never change. A batch keeping all its records is copied byte
//     for byte; one keeping some is re-encoded with the same codec,
//     keeping baseOffset, lastOffsetDelta (so its offset span), the
//     records' offset and timestamp deltas, the batch timestamps,
//     producer id, epoch and base sequence, partition leader epoch and
//     attributes, with a new record count and CRC-32C.
//   - A batch keeping no record is dropped whole, and the catalog row
//     holding it is split around it: the agent's fetch walks a row's
//     batches assuming each spans lastOffsetDelta+1 offsets back to back,
//     so a gap must fall between rows, never inside one. Floe keeps
//     idempotent producers' state in the catalog, not in the log, so an
//     empty batch need not be kept for it.
//   - The new rows replace the old ones in one SwapRows, as a merge does,
//     so a consumer sees either the old records or the compacted ones.

// maxCleanableFactor × TargetBytes bounds the bytes one pass reads.
const maxCleanableFactor = 2

type storedBatch struct {
	raw  []byte
	base int64
}

// compactLog runs one log compaction pass over p.
func (c *Compactor) compactLog(ctx context.Context, p partition, renew func() error) error {
	o, err := c.cat.Offsets(ctx, p.tp)
	if err != nil {
		return fmt.Errorf("compaction: log compaction of %s/%d: %w", p.topic.Name, p.tp.Partition, err)
	}
	rows, err := c.cat.CompactionRows(ctx, p.tp, o.LogStart, mergeRowsPerPass)
	if err != nil {
		return fmt.Errorf("compaction: log compaction of %s/%d: %w", p.topic.Name, p.tp.Partition, err)
	}
	now := c.now()
	lagCutoff := now.UnixMilli() - max(p.topic.MinCompactionLagMs(), 0)
	ageCutoff := now.Add(-c.cfg.MergeMinAge)
	var total int64
	end := 0
	for end < len(rows) {
		r := rows[end]
		if r.MaxTimestamp > lagCutoff || !r.ObjectCreated.Before(ageCutoff) || total+r.ByteLength > maxCleanableFactor*c.cfg.TargetBytes && end > 0 {
			break
		}
		total += r.ByteLength
		end++
	}
	rows = rows[:end]
	if len(rows) == 0 {
		return nil
	}

	// Pass 1: read the rows; then each key's last offset in the range,
	// the active tail (the partition's last batch) left out.
	data := make([][]storedBatch, len(rows))
	for i, r := range rows {
		if err := renew(); err != nil {
			return err
		}
		raw, err := c.readRow(ctx, r.BatchRow)
		if err != nil {
			return err
		}
		off := r.BaseOffset
		if err := eachBatch(raw, func(b []byte, _ segment.BatchMeta) {
			data[i] = append(data[i], storedBatch{raw: b, base: off})
			off += int64(int32(binary.BigEndian.Uint32(b[batchLastDeltaOff:]))) + 1
		}); err != nil {
			return fmt.Errorf("compaction: log compaction: row %d-%d of %s: %w", r.BaseOffset, r.LastOffset, r.ObjectKey, err)
		}
	}
	tailStart := int64(math.MaxInt64)
	if last := rows[len(rows)-1]; last.LastOffset+1 >= o.HighWatermark && len(data[len(rows)-1]) > 0 {
		bs := data[len(rows)-1]
		tailStart = bs[len(bs)-1].base
	}
	latest := map[string]int64{}
	for _, batches := range data {
		for _, sb := range batches {
			if sb.base >= tailStart {
				continue
			}
			if err := eachRecord(sb.raw, func(rec *kmsg.Record, _ []byte) {
				if rec.Key != nil {
					latest[string(rec.Key)] = sb.base + int64(rec.OffsetDelta)
				}
			}); err != nil {
				return fmt.Errorf("compaction: log compaction: batch at %d: %w", sb.base, err)
			}
		}
	}

	// Pass 2: rewrite groups of rows up to TargetBytes that lose records.
	tombstoneCutoff := now.UnixMilli() - max(p.topic.DeleteRetentionMs(), 0)
	keep := func(rec *kmsg.Record, base, ts int64) bool {
		if rec.Key == nil || base >= tailStart {
			return true
		}
		if latest[string(rec.Key)] != base+int64(rec.OffsetDelta) {
			return false
		}
		return rec.Value != nil || ts >= tombstoneCutoff
	}
	for start := 0; start < len(rows); {
		stop, bytes := start, int64(0)
		for stop < len(rows) && (stop == start || bytes+rows[stop].ByteLength <= c.cfg.TargetBytes) {
			bytes += rows[stop].ByteLength
			stop++
		}
		if err := c.compactGroup(ctx, p.tp, rows[start:stop], data[start:stop], keep, renew); err != nil {
			if errors.Is(err, catalog.ErrSwapConflict) {
				// The rows changed under this pass, so what it worked out
				// from them (each key's latest record) may no longer hold:
				// a later group could drop a tombstone whose superseded
				// records this group failed to drop. The next pass starts
				// afresh.
				return nil
			}
			return err
		}
		start = stop
	}
	return nil
}

// compactGroup filters the rows' batches and, if any record goes, writes
// the survivors to a new object and swaps the rows. A lost race returns
// catalog.ErrSwapConflict (its upload deleted).
func (c *Compactor) compactGroup(ctx context.Context, tp catalog.TopicPartition, rows []catalog.CompactionRow, data [][]storedBatch,
	keep func(rec *kmsg.Record, base, ts int64) bool, renew func() error) error {
	w := segment.NewWriter(segment.Header{AgentID: c.cfg.Holder, Created: c.now()})
	type out struct {
		base, last int64
		records    int32
		maxTs      int64
	}
	var outs []out
	removed := 0
	for _, batches := range data {
		for _, sb := range batches {
			nb, kept, dropped, err := filterBatch(sb.raw, sb.base, keep)
			if err != nil {
				return fmt.Errorf("compaction: log compaction: batch at %d: %w", sb.base, err)
			}
			removed += dropped
			if kept == 0 {
				continue
			}
			meta := segment.BatchMeta{
				Records:        int32(kept),
				FirstTimestamp: int64(binary.BigEndian.Uint64(nb[batchFirstTsOff:])),
				MaxTimestamp:   int64(binary.BigEndian.Uint64(nb[batchMaxTsOff:])),
				ProducerID:     int64(binary.BigEndian.Uint64(nb[batchProducerOff:])),
			}
			w.Add(tp, nb, meta)
			last := sb.base + int64(int32(binary.BigEndian.Uint32(nb[batchLastDeltaOff:])))
			outs = append(outs, out{base: sb.base, last: last, records: int32(kept), maxTs: meta.MaxTimestamp})
		}
	}
	if removed == 0 {
		return nil // nothing to gain here; merge may still coalesce it
	}
	obj, placements := w.Finish()
	var newRows []catalog.BatchRow
	for i, o := range outs {
		pl := placements[i]
		if k := len(newRows) - 1; k >= 0 && newRows[k].LastOffset+1 == o.base {
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
	if err := c.bucket.Put(ctx, key, bytes.NewReader(obj), int64(len(obj))); err != nil {
		return fmt.Errorf("compaction: log compaction: put %s: %w", key, err)
	}
	if err := renew(); err != nil {
		c.dropUpload(ctx, key)
		return err
	}
	err := c.cat.SwapRows(ctx, catalog.RowSwap{TopicPartition: tp, Old: old, ObjectKey: key, ObjectSize: int64(len(obj)), New: newRows})
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
	return nil
}

const (
	batchLastDeltaOff = 23 // int32
	batchAttrOff      = 21 // int16
	batchCRCOff       = 17 // uint32, over the bytes from batchAttrOff on
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// filterBatch returns the batch with only the records keep accepts (b
// itself when it keeps all), and how many it kept and dropped.
func filterBatch(b []byte, base int64, keep func(rec *kmsg.Record, base, ts int64) bool) (nb []byte, kept, dropped int, err error) {
	attrs := int16(binary.BigEndian.Uint16(b[batchAttrOff:]))
	if attrs&0x20 != 0 { // a control batch
		return b, int(int32(binary.BigEndian.Uint32(b[batchRecordsOff:]))), 0, nil
	}
	firstTs := int64(binary.BigEndian.Uint64(b[batchFirstTsOff:]))
	maxTs := int64(binary.BigEndian.Uint64(b[batchMaxTsOff:]))
	var body []byte
	err = eachRecord(b, func(rec *kmsg.Record, raw []byte) {
		ts := firstTs + rec.TimestampDelta64
		if attrs&0x08 != 0 { // LogAppendTime: the batch's max timestamp is every record's
			ts = maxTs
		}
		if keep(rec, base, ts) {
			kept++
			body = append(body, raw...)
		} else {
			dropped++
		}
	})
	if err != nil || dropped == 0 || kept == 0 {
		return b, kept, dropped, err
	}
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(b); err != nil {
		return nil, 0, 0, err
	}
	codec := kgo.CompressionCodecType(attrs & 0x07)
	if codec != kgo.CodecNone {
		comp, err := compressorFor(codec)
		if err != nil {
			return nil, 0, 0, err
		}
		var buf bytes.Buffer
		out, used := comp.Compress(&buf, body)
		if used != codec {
			return nil, 0, 0, fmt.Errorf("codec %d compressed as %d", codec, used)
		}
		body = append([]byte(nil), out...)
	}
	rb.Records = body
	rb.NumRecords = int32(kept)
	nb = rb.AppendTo(nil)
	binary.BigEndian.PutUint32(nb[batchLengthOff:], uint32(len(nb)-12))
	binary.BigEndian.PutUint32(nb[batchCRCOff:], crc32.Checksum(nb[batchAttrOff:], crcTable))
	return nb, kept, dropped, nil
}

var decompressor = kgo.DefaultDecompressor()

func compressorFor(codec kgo.CompressionCodecType) (kgo.Compressor, error) {
	var cc kgo.CompressionCodec
	switch codec {
	case kgo.CodecGzip:
		cc = kgo.GzipCompression()
	case kgo.CodecSnappy:
		cc = kgo.SnappyCompression()
	case kgo.CodecLz4:
		cc = kgo.Lz4Compression()
	case kgo.CodecZstd:
		cc = kgo.ZstdCompression()
	default:
		return nil, fmt.Errorf("unknown compression codec %d", codec)
	}
	return kgo.DefaultCompressor(cc)
}

// eachRecord decodes a batch's records (decompressing them) and hands each
// to fn with its encoded bytes, length prefix included.
func eachRecord(b []byte, fn func(rec *kmsg.Record, raw []byte)) error {
	attrs := int16(binary.BigEndian.Uint16(b[batchAttrOff:]))
	if attrs&0x20 != 0 {
		return nil // control records carry no user key
	}
	if len(b) < batchHeaderLength {
		return errBadBatch
	}
	n := int(int32(binary.BigEndian.Uint32(b[batchRecordsOff:])))
	recs := b[batchHeaderLength:]
	if codec := kgo.CompressionCodecType(attrs & 0x07); codec != kgo.CodecNone {
		var err error
		if recs, err = decompressor.Decompress(recs, codec); err != nil {
			return fmt.Errorf("decompress: %w", err)
		}
	}
	for i := 0; i < n; i++ {
		l, vn := binary.Varint(recs)
		if vn <= 0 || l < 0 || int64(len(recs)-vn) < l {
			return errBadBatch
		}
		raw := recs[:vn+int(l)]
		var rec kmsg.Record
		if err := rec.ReadFrom(raw); err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
		fn(&rec, raw)
		recs = recs[len(raw):]
	}
	if len(recs) != 0 {
		return errBadBatch
	}
	return nil
}
