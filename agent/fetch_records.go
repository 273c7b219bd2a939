package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A catch-up fetch returns megabytes of record batches that already sit in
// the read caches. Copying them into the response and again into the
// encoded frame cost more than everything else a fetch does, so a Fetch
// response refers to the cached bytes instead: each partition's records
// are a list of slices (records), kmsg encodes every other field, and the
// connection writes the frame with writev (net.Buffers), the records
// straight from the cache. (A TLS connection copies them through a
// record-sized buffer instead, conn.tlsw: TLS copies every byte anyway.)

// records is one partition's record batches as slices to send in order:
// the cached bytes of each batch after its base offset, and small pieces
// (patched base offsets, small batches whole) in an arena of its own.
// Referenced slices are never modified.
type records struct {
	segs  [][]byte
	n     int64
	arena []byte // segs may refer into it: it is never reallocated
	// bufs are the read buffers segs refer into, each once: a reference
	// keeps its whole buffer reachable (see fetchResponse.unpin).
	bufs [][]byte
}

// recordsCopyBelow is the size under which a batch is copied (patched)
// rather than referenced: copying a few KiB costs less than the two
// slices, the arena piece and the iovec a reference takes.
const recordsCopyBelow = 4 << 10

// An arena grows by chunks from recordsArenaMin to recordsArenaMax bytes,
// doubling: a fetch of thousands of partitions with a small batch each
// must not allocate a large chunk for every one.
const (
	recordsArenaMin = 512
	recordsArenaMax = 32 << 10
)

// add appends one stored batch, served at base offset base (the first 8
// bytes, outside the CRC), that buf, the buffer the batch was read into,
// holds.
func (r *records) add(batch []byte, base int64, buf []byte) {
	r.n += int64(len(batch))
	switch {
	case binary.BigEndian.Uint64(batch) == uint64(base):
		r.ref(batch)
		r.pin(buf)
	case len(batch) < recordsCopyBelow:
		p := r.alloc(len(batch))
		copy(p, batch)
		patchBaseOffset(p, base)
	default:
		patchBaseOffset(r.alloc(8), base)
		r.ref(batch[8:])
		r.pin(buf)
	}
}

// pin notes that segs refer into buf.
func (r *records) pin(buf []byte) {
	if k := len(r.bufs) - 1; len(buf) == 0 || k >= 0 && &r.bufs[k][0] == &buf[0] {
		return // a partition's batches mostly come from one buffer
	}
	r.bufs = append(r.bufs, buf)
}

// detach copies the records into one buffer of their own.
func (r *records) detach() {
	if len(r.bufs) == 0 {
		return
	}
	out := make([]byte, 0, r.n)
	for _, s := range r.segs {
		out = append(out, s...)
	}
	*r = records{segs: [][]byte{out}, n: r.n}
}

// ref appends b, extending the last slice when b follows it in memory.
func (r *records) ref(b []byte) {
	if k := len(r.segs) - 1; k >= 0 {
		last := r.segs[k]
		if len(last) < cap(last) && len(b) > 0 && &last[:len(last)+1][len(last)] == &b[0] && len(last)+len(b) <= cap(last) {
			r.segs[k] = last[:len(last)+len(b)]
			return
		}
	}
	r.segs = append(r.segs, b)
}

// alloc returns n arena bytes appended to the records.
func (r *records) alloc(n int) []byte {
	if cap(r.arena)-len(r.arena) < n {
		r.arena = make([]byte, 0, max(n, min(max(2*cap(r.arena), recordsArenaMin), recordsArenaMax)))
	}
	start := len(r.arena)
	r.arena = r.arena[:start+n]
	p := r.arena[start : start+n : start+n]
	r.ref(r.arena[start : start+n])
	return p
}

// bytes returns the records as one slice (a copy unless they are one).
func (r *records) bytes() []byte {
	if len(r.segs) == 1 {
		return r.segs[0]
	}
	out := make([]byte, 0, r.n)
	for _, s := range r.segs {
		out = append(out, s...)
	}
	return out
}

// fetchResponse is a Fetch response whose partitions' record batches are
// held as records (recs[i][j] for Topics[i].Partitions[j]) while its
// RecordBatches fields stay empty. writeFrame sends it without copying
// them; AppendTo, for any other writer, copies them in first.
type fetchResponse struct {
	*kmsg.FetchResponse
	recs [][]records

	// hold reserves the records in the response budget until the
	// connection's writer has sent them (sent) or the connection ends,
	// whichever comes first; stop is set by keep (see there).
	hold responseHold
	stop func() bool
}

// pinnedPerByte bounds the read buffers a response may keep reachable,
// per byte of records it holds: more, and its records are copied into a
// buffer of their own. A response referring to a few batches of a large
// buffer (a cached object of up to 16 MiB, a catch-up span of 8 MiB)
// keeps all of it for as long as its client takes to read it, up to
// WriteTimeout, after the caches evicted it; the response budget counts
// the records only. A client fetching one small batch from each of many
// objects, over many connections it then did not read, pinned gigabytes
// with a few megabytes of budget. The copy costs at most the records'
// size, and only for a response that is small beside its buffers.
const pinnedPerByte = 2

// unpin copies the response's records into buffers of their own if the
// read buffers they refer into are more than pinnedPerByte times their
// size.
func (r *fetchResponse) unpin() {
	var n, pinned int64
	seen := map[*byte]bool{}
	for i := range r.recs {
		for j := range r.recs[i] {
			rec := &r.recs[i][j]
			n += rec.n
			for _, b := range rec.bufs {
				if !seen[&b[0]] {
					seen[&b[0]] = true
					pinned += int64(len(b))
				}
			}
		}
	}
	if pinned <= pinnedPerByte*n {
		return
	}
	for i := range r.recs {
		for j := range r.recs[i] {
			r.recs[i][j].detach()
		}
	}
}

// keep hands the response's reservation to its connection, whose context
// is ctx: the writer releases it once it has written the response, and a
// connection that ends first — a failed write, or a response it never
// reaches — releases it then.
func (r *fetchResponse) keep(ctx context.Context) {
	if r.hold.n > 0 {
		r.stop = context.AfterFunc(ctx, r.hold.release)
	}
}

// sent releases the reservation once the writer is done with the
// response, unless the connection's end did already.
func (r *fetchResponse) sent() {
	if r.stop != nil && r.stop() {
		r.hold.release()
	}
}

var _ kmsg.Response = (*fetchResponse)(nil)

// AppendTo encodes the response with its records copied in.
func (r *fetchResponse) AppendTo(dst []byte) []byte {
	r.materialize()
	return r.FetchResponse.AppendTo(dst)
}

// materialize moves the records into the RecordBatches fields.
func (r *fetchResponse) materialize() {
	for i := range r.recs {
		for j := range r.recs[i] {
			if rec := &r.recs[i][j]; rec.n > 0 {
				r.Topics[i].Partitions[j].RecordBatches = rec.bytes()
			}
		}
	}
	r.recs = nil
}

// markerSize is the length of the placeholder each partition's records
// are encoded as before they are spliced in.
const markerSize = 16

// appendFrame returns the whole response frame (size, header from
// appendResponseHeader, body) as buffers to write in order: head holds
// what kmsg encoded, with each partition's records referenced where kmsg
// wrote a placeholder. head is built from dst.
//
// Each non-empty partition's RecordBatches is set to a marker unique to
// this call (random, with the partition's index) while kmsg encodes; the
// marker's length prefix is then replaced by the records' (a uvarint of
// length+1 for flexible versions, an int32 before), and the marker by the
// records. Markers are found in order, each after the one before, and their
// prefixes checked: anything unexpected falls back to copying.
func (r *fetchResponse) appendFrame(dst []byte, hdr requestHeader) net.Buffers {
	var seed [12]byte
	for i := 0; i < len(seed); i += 8 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], rand.Uint64())
		copy(seed[i:], b[:])
	}
	marker := func(k int) []byte {
		m := make([]byte, markerSize)
		copy(m, seed[:])
		binary.BigEndian.PutUint32(m[12:], uint32(k))
		return m
	}
	var order []*records
	for i := range r.recs {
		for j := range r.recs[i] {
			if rec := &r.recs[i][j]; rec.n > 0 {
				r.Topics[i].Partitions[j].RecordBatches = marker(len(order))
				order = append(order, rec)
			}
		}
	}
	head := appendResponseHeader(dst, hdr, r.FetchResponse)
	head = r.FetchResponse.AppendTo(head)
	for i := range r.recs {
		for j := range r.recs[i] {
			if r.recs[i][j].n > 0 {
				r.Topics[i].Partitions[j].RecordBatches = []byte{}
			}
		}
	}

	flexible := r.IsFlexible()
	prefixes := make([]byte, 0, 5*len(order)) // never reallocated: bufs refer into it
	bufs := make(net.Buffers, 0, 2*len(order)+1)
	pos := 0
	for k, rec := range order {
		m := marker(k)
		at := bytes.Index(head[pos:], m)
		if at < 0 {
			return r.copyFrame(head[:0], hdr)
		}
		at += pos
		var p int
		if flexible {
			p = at - 1
			if p < pos || head[p] != markerSize+1 {
				return r.copyFrame(head[:0], hdr)
			}
		} else {
			p = at - 4
			if p < pos || binary.BigEndian.Uint32(head[p:]) != markerSize {
				return r.copyFrame(head[:0], hdr)
			}
		}
		bufs = append(bufs, head[pos:p])
		start := len(prefixes)
		if flexible {
			prefixes = kbin.AppendUvarint(prefixes, uint32(rec.n+1))
		} else {
			prefixes = kbin.AppendInt32(prefixes, int32(rec.n))
		}
		bufs = append(bufs, prefixes[start:])
		bufs = append(bufs, rec.segs...)
		pos = at + markerSize
	}
	bufs = append(bufs, head[pos:])
	var total int
	for _, b := range bufs {
		total += len(b)
	}
	binary.BigEndian.PutUint32(head, uint32(total-4))
	return bufs
}

// copyFrame is appendFrame by copying: one buffer.
func (r *fetchResponse) copyFrame(dst []byte, hdr requestHeader) net.Buffers {
	r.materialize()
	return net.Buffers{appendResponse(dst, hdr, r.FetchResponse)}
}
