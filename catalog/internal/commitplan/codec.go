package commitplan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/floebroker/floe/catalog"
)

// RelBase marks offsets that are relative to a partition's next offset at
// commit time: a backend that assigns offsets in SQL (catalog/postgres)
// builds its plan with every partition's NextOffset set to RelBase, so each
// offset the plan produces is RelBase + (position within the commit). Real
// offsets stay far below 2^62, so the two ranges never meet.
const RelBase int64 = 1 << 62

// IsRelative reports whether v is a RelBase-relative offset.
func IsRelative(v int64) bool { return v >= RelBase }

// Two small binary encodings live in catalog columns; both backends share
// them. Varints are encoding/binary's (zig-zag for signed).
//
// Producer entries (producer_state.entries), version 1:
//
//	version  byte   = 1
//	count    uvarint  (≤ MaxEntries)
//	count × { first_seq varint, last_seq varint, base_offset varint }
//
// A base_offset ≥ RelBase is relative to the row's pending_base column (the
// partition's next offset when the entry was written); ResolveEntries turns
// them absolute.
//
// Commit results (objects.results), version 1, so a re-commit of a key
// returns exactly what the first commit returned:
//
//	version   byte   = 1
//	nparts    uvarint   distinct partitions of the segment (sorted order)
//	nresults  uvarint   one per BatchRef of the segment
//	nresults × { code byte, part uvarint, base_offset varint }
//	nparts   × { next_offset int64 big-endian, log_start int64 big-endian }
//
// code: 0 stored, 1 duplicate, 2 unknown topic, 3 out-of-order sequence,
// 4 invalid producer epoch, 5 unknown producer id. part indexes the
// partition table; a base_offset ≥ RelBase is relative to that partition's
// next_offset (its value before the commit). The fixed-width partition
// table comes last so PostgreSQL can append it in SQL (int8send) from the
// rows it locked; -1 marks a partition that did not exist.

const codecVersion = 1

// ErrCorrupt reports a stored encoding that cannot be decoded.
var ErrCorrupt = errors.New("commitplan: corrupt encoding")

// EncodeEntries encodes a producer's recent batches.
func EncodeEntries(entries []SeqEntry) []byte {
	return AppendEntries(make([]byte, 0, 2+len(entries)*12), entries)
}

// AppendEntries appends EncodeEntries(entries) to buf.
func AppendEntries(buf []byte, entries []SeqEntry) []byte {
	buf = append(buf, codecVersion)
	buf = binary.AppendUvarint(buf, uint64(len(entries)))
	for _, e := range entries {
		buf = binary.AppendVarint(buf, int64(e.FirstSeq))
		buf = binary.AppendVarint(buf, int64(e.LastSeq))
		buf = binary.AppendVarint(buf, e.BaseOffset)
	}
	return buf
}

// DecodeEntries decodes EncodeEntries' output and resolves relative base
// offsets against pendingBase.
func DecodeEntries(b []byte, pendingBase int64) ([]SeqEntry, error) {
	d := decoder{b: b}
	if v := d.byte(); v != codecVersion {
		return nil, fmt.Errorf("%w: producer entries version %d", ErrCorrupt, v)
	}
	n := d.uvarint()
	if n > MaxEntries {
		return nil, fmt.Errorf("%w: %d producer entries", ErrCorrupt, n)
	}
	entries := make([]SeqEntry, 0, n)
	for range n {
		e := SeqEntry{
			FirstSeq:   d.int32(),
			LastSeq:    d.int32(),
			BaseOffset: d.varint(),
		}
		if IsRelative(e.BaseOffset) {
			e.BaseOffset = e.BaseOffset - RelBase + pendingBase
		}
		entries = append(entries, e)
	}
	if err := d.finish(); err != nil {
		return nil, fmt.Errorf("producer entries: %w", err)
	}
	return entries, nil
}

var resultErrs = []error{
	2: catalog.ErrUnknownTopic,
	3: catalog.ErrOutOfOrderSequence,
	4: catalog.ErrInvalidProducerEpoch,
	5: catalog.ErrUnknownProducerID,
}

func errCode(err error) byte {
	for c, e := range resultErrs {
		if e != nil && err == e {
			return byte(c)
		}
	}
	panic(fmt.Sprintf("commitplan: cannot encode result error %v", err))
}

// EncodeResults encodes the results of seg without the partition table,
// which the caller appends (AppendPartitionTable, or SQL). Errors other
// than the sentinels a commit produces cannot be encoded and panic: Build
// never returns them.
func EncodeResults(seg catalog.Segment, results []catalog.BatchResult) []byte {
	parts := Partitions(seg)
	return EncodeResultsAt(results, len(parts), Positions(seg, parts))
}

// EncodeResultsAt is EncodeResults given the number of distinct partitions
// and each batch's position among them (Positions).
func EncodeResultsAt(results []catalog.BatchResult, nparts int, pos []int32) []byte {
	buf := make([]byte, 0, 4+len(results)*8+nparts*16)
	buf = append(buf, codecVersion)
	buf = binary.AppendUvarint(buf, uint64(nparts))
	buf = binary.AppendUvarint(buf, uint64(len(results)))
	for i, r := range results {
		code := byte(0)
		switch {
		case r.Err != nil:
			code = errCode(r.Err)
		case r.Duplicate:
			code = 1
		}
		buf = append(buf, code)
		buf = binary.AppendUvarint(buf, uint64(pos[i]))
		buf = binary.AppendVarint(buf, r.BaseOffset)
	}
	return buf
}

// PartitionState is one partition's entry in the results' partition table.
type PartitionState struct {
	NextOffset int64 // before the commit; -1: the partition did not exist
	LogStart   int64
}

// AppendPartitionTable appends the partition table, in Partitions(seg)
// order, to an EncodeResults buffer.
func AppendPartitionTable(buf []byte, table []PartitionState) []byte {
	for _, p := range table {
		buf = binary.BigEndian.AppendUint64(buf, uint64(p.NextOffset))
		buf = binary.BigEndian.AppendUint64(buf, uint64(p.LogStart))
	}
	return buf
}

// DecodeResults decodes a complete results encoding and resolves relative
// offsets and log starts from its partition table.
func DecodeResults(b []byte) ([]catalog.BatchResult, error) {
	d := decoder{b: b}
	if v := d.byte(); v != codecVersion {
		return nil, fmt.Errorf("%w: results version %d", ErrCorrupt, v)
	}
	nparts, n := d.uvarint(), d.uvarint()
	// Each result takes at least 3 bytes and each partition 16; refuse
	// counts the input cannot hold before allocating.
	if nparts > uint64(len(b))/16 || n > uint64(len(b))/3 {
		return nil, fmt.Errorf("%w: %d results and %d partitions in %d bytes", ErrCorrupt, n, nparts, len(b))
	}
	type raw struct {
		code byte
		part uint64
		base int64
	}
	raws := make([]raw, 0, n)
	for range n {
		r := raw{code: d.byte(), part: d.uvarint(), base: d.varint()}
		if r.part >= nparts {
			d.fail(fmt.Errorf("%w: partition index %d of %d", ErrCorrupt, r.part, nparts))
		}
		raws = append(raws, r)
	}
	if d.err == nil && uint64(len(d.b)) != nparts*16 {
		d.fail(fmt.Errorf("%w: partition table of %d bytes for %d partitions", ErrCorrupt, len(d.b), nparts))
	}
	if d.err != nil {
		return nil, fmt.Errorf("results: %w", d.err)
	}
	table := make([]PartitionState, nparts)
	for i := range table {
		table[i].NextOffset = int64(binary.BigEndian.Uint64(d.b[16*i:]))
		table[i].LogStart = int64(binary.BigEndian.Uint64(d.b[16*i+8:]))
	}
	results := make([]catalog.BatchResult, len(raws))
	for i, r := range raws {
		res := &results[i]
		p := table[r.part]
		switch {
		case r.code == 0 || r.code == 1:
			res.Duplicate = r.code == 1
			res.LogStartOffset = p.LogStart
			res.BaseOffset = r.base
			if IsRelative(r.base) {
				if p.NextOffset < 0 || r.base-RelBase > math.MaxInt64-p.NextOffset {
					return nil, fmt.Errorf("%w: relative offset on partition %d without a base", ErrCorrupt, r.part)
				}
				res.BaseOffset = r.base - RelBase + p.NextOffset
			}
		case int(r.code) < len(resultErrs) && resultErrs[r.code] != nil:
			res.Err = resultErrs[r.code]
			res.BaseOffset, res.LogStartOffset = -1, -1
		default:
			return nil, fmt.Errorf("%w: result code %d", ErrCorrupt, r.code)
		}
	}
	return results, nil
}

// Resolve turns a plan's relative offsets absolute and fills log starts,
// given each batch's partition position (Positions) and the partitions'
// states at commit time in that order.
func Resolve(seg catalog.Segment, results []catalog.BatchResult, pos []int32, table []PartitionState) []catalog.BatchResult {
	out := make([]catalog.BatchResult, len(results))
	for i, r := range results {
		if r.Err == nil {
			p := table[pos[i]]
			if IsRelative(r.BaseOffset) {
				r.BaseOffset = r.BaseOffset - RelBase + p.NextOffset
			}
			r.LogStartOffset = p.LogStart
		} else {
			r.BaseOffset, r.LogStartOffset = -1, -1
		}
		out[i] = r
	}
	return out
}

// decoder reads varints, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail(fmt.Errorf("%w: truncated", ErrCorrupt))
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(fmt.Errorf("%w: bad uvarint", ErrCorrupt))
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(fmt.Errorf("%w: bad varint", ErrCorrupt))
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int32() int32 {
	v := d.varint()
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail(fmt.Errorf("%w: %d overflows int32", ErrCorrupt, v))
		return 0
	}
	return int32(v)
}

func (d *decoder) finish() error {
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	return nil
}
