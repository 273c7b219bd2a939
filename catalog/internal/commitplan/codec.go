package commitplan

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/floebroker/floe/catalog"
)

// Two small binary encodings live in catalog columns; both backends share
// them.
//
// Producer entries (producer_state.entries), version 1:
//
//	version  byte   = 1
//	count    uvarint  (≤ MaxEntries)
//	count × { first_seq varint, last_seq varint, base_offset varint }
//
// Commit results (objects.results), version 1, so a re-commit of a key
// returns exactly what the first commit returned:
//
//	version  byte   = 1
//	count    uvarint  (one per BatchRef of the segment)
//	count × { code byte, base_offset varint, log_start_offset varint }
//
// code: 0 stored, 1 duplicate, 2 unknown topic, 3 out-of-order sequence,
// 4 invalid producer epoch, 5 unknown producer id. Varints are
// encoding/binary's (zig-zag for signed).

const codecVersion = 1

// ErrCorrupt reports a stored encoding that cannot be decoded.
var ErrCorrupt = errors.New("commitplan: corrupt encoding")

// EncodeEntries encodes a producer's recent batches.
func EncodeEntries(entries []SeqEntry) []byte {
	buf := make([]byte, 0, 2+len(entries)*12)
	buf = append(buf, codecVersion)
	buf = binary.AppendUvarint(buf, uint64(len(entries)))
	for _, e := range entries {
		buf = binary.AppendVarint(buf, int64(e.FirstSeq))
		buf = binary.AppendVarint(buf, int64(e.LastSeq))
		buf = binary.AppendVarint(buf, e.BaseOffset)
	}
	return buf
}

// DecodeEntries decodes EncodeEntries' output.
func DecodeEntries(b []byte) ([]SeqEntry, error) {
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

// EncodeResults encodes a commit's results. Errors other than the sentinels
// a commit produces cannot be encoded and panic: Build never returns them.
func EncodeResults(results []catalog.BatchResult) []byte {
	buf := make([]byte, 0, 2+len(results)*8)
	buf = append(buf, codecVersion)
	buf = binary.AppendUvarint(buf, uint64(len(results)))
	for _, r := range results {
		code := byte(0)
		switch {
		case r.Err != nil:
			code = errCode(r.Err)
		case r.Duplicate:
			code = 1
		}
		buf = append(buf, code)
		buf = binary.AppendVarint(buf, r.BaseOffset)
		buf = binary.AppendVarint(buf, r.LogStartOffset)
	}
	return buf
}

func errCode(err error) byte {
	for c, e := range resultErrs {
		if e != nil && err == e {
			return byte(c)
		}
	}
	panic(fmt.Sprintf("commitplan: cannot encode result error %v", err))
}

// DecodeResults decodes EncodeResults' output.
func DecodeResults(b []byte) ([]catalog.BatchResult, error) {
	d := decoder{b: b}
	if v := d.byte(); v != codecVersion {
		return nil, fmt.Errorf("%w: results version %d", ErrCorrupt, v)
	}
	n := d.uvarint()
	// Each result takes at least 3 bytes; refuse counts the input cannot
	// hold before allocating.
	if n > uint64(len(b))/3 {
		return nil, fmt.Errorf("%w: %d results in %d bytes", ErrCorrupt, n, len(b))
	}
	results := make([]catalog.BatchResult, 0, n)
	for range n {
		var r catalog.BatchResult
		switch code := d.byte(); {
		case code == 0:
		case code == 1:
			r.Duplicate = true
		case int(code) < len(resultErrs) && resultErrs[code] != nil:
			r.Err = resultErrs[code]
		default:
			d.fail(fmt.Errorf("%w: result code %d", ErrCorrupt, code))
		}
		r.BaseOffset = d.varint()
		r.LogStartOffset = d.varint()
		results = append(results, r)
	}
	if err := d.finish(); err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	return results, nil
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
	if v < -1<<31 || v > 1<<31-1 {
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
