package segment

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/floebroker/floe/catalog"
)

// Writer builds one segment object in memory. It is not safe for concurrent
// use. The zero Writer is not usable; call NewWriter.
type Writer struct {
	h    Header
	adds []added
	// order caches Order until the next Add: the flush asks for it and
	// Finish needs it, and sorting thousands of small batches twice is
	// measurable.
	order []int
}

type added struct {
	tp    catalog.TopicPartition
	batch []byte
	meta  BatchMeta
}

// NewWriter starts an object with header h. An agent id longer than
// MaxAgentIDLen bytes is a programmer error and panics in Finish.
func NewWriter(h Header) *Writer {
	return &Writer{h: h}
}

// Add queues one record batch for tp. The writer keeps a reference to batch
// (it is copied once, by Finish); the caller must not modify it until then.
func (w *Writer) Add(tp catalog.TopicPartition, batch []byte, meta BatchMeta) {
	w.adds = append(w.adds, added{tp: tp, batch: batch, meta: meta})
	w.order = nil
}

// Grow makes room for n more Adds without reallocating.
func (w *Writer) Grow(n int) {
	w.adds = slices.Grow(w.adds, n)
}

// Len reports the number of batches added.
func (w *Writer) Len() int { return len(w.adds) }

// Order returns the indexes of the added batches in the order Finish lays
// them out: ascending (TopicID, Partition), batches of one partition in Add
// order. order[k] is the Add index of the k-th batch in the object. The
// slice is shared with the Writer until the next Add: do not modify it.
func (w *Writer) Order() []int {
	if w.order != nil {
		return w.order
	}
	// Sort compact keys rather than indexes into adds: a flush of small
	// batches over thousands of partitions sorts thousands of them. The
	// Add index as the last key makes the order stable.
	keys := make([]orderKey, len(w.adds))
	for i, a := range w.adds {
		keys[i] = orderKey{
			hi:   binary.BigEndian.Uint64(a.tp.TopicID[:8]),
			lo:   binary.BigEndian.Uint64(a.tp.TopicID[8:]),
			part: a.tp.Partition,
			add:  i,
		}
	}
	slices.SortFunc(keys, func(a, b orderKey) int {
		if a.hi != b.hi {
			return cmp.Compare(a.hi, b.hi)
		}
		if a.lo != b.lo {
			return cmp.Compare(a.lo, b.lo)
		}
		if a.part != b.part {
			return cmp.Compare(a.part, b.part)
		}
		return cmp.Compare(a.add, b.add)
	})
	order := make([]int, len(keys))
	for k, key := range keys {
		order[k] = key.add
	}
	w.order = order
	return order
}

// orderKey sorts one added batch: the topic id as two big-endian halves
// (so it compares as its bytes do), the partition, the Add index.
type orderKey struct {
	hi, lo uint64
	part   int32
	add    int
}

// Finish lays the object out and returns it with one Placement per Add, in
// Add order. The result depends only on the header and the added batches.
func (w *Writer) Finish() (obj []byte, placements []Placement) {
	if len(w.h.AgentID) > MaxAgentIDLen {
		panic(fmt.Sprintf("segment: agent id of %d bytes exceeds %d", len(w.h.AgentID), MaxAgentIDLen))
	}
	order := w.Order()
	var bodyLen int64
	for _, a := range w.adds {
		bodyLen += int64(len(a.batch))
	}
	nruns := 0
	for k, i := range order {
		if k == 0 || w.adds[order[k-1]].tp != w.adds[i].tp {
			nruns++
		}
	}
	runs := make([]Run, 0, nruns)
	placements = make([]Placement, len(w.adds))
	off := int64(HeaderSize)
	for _, i := range order {
		a := w.adds[i]
		n := int64(len(a.batch))
		placements[i] = Placement{TopicPartition: a.tp, ByteOffset: off, ByteLength: n}
		if len(runs) == 0 || runs[len(runs)-1].TopicPartition != a.tp {
			runs = append(runs, Run{
				TopicPartition: a.tp,
				ByteOffset:     off,
				FirstTimestamp: a.meta.FirstTimestamp,
				LastTimestamp:  a.meta.MaxTimestamp,
				MinProducerID:  -1,
				MaxProducerID:  -1,
			})
		}
		r := &runs[len(runs)-1]
		r.ByteLength += n
		r.Batches++
		r.Records += int64(a.meta.Records)
		r.FirstTimestamp = min(r.FirstTimestamp, a.meta.FirstTimestamp)
		r.LastTimestamp = max(r.LastTimestamp, a.meta.MaxTimestamp)
		if pid := a.meta.ProducerID; pid >= 0 {
			if r.MinProducerID < 0 || pid < r.MinProducerID {
				r.MinProducerID = pid
			}
			r.MaxProducerID = max(r.MaxProducerID, pid)
		}
		off += n
	}

	indexLen := int64(indexFixed + len(w.h.AgentID) + RunSize*len(runs))
	total := HeaderSize + bodyLen + indexLen + FooterSize
	obj = make([]byte, 0, total)

	created := w.h.Created.UnixNano()
	obj = append(obj, Magic...)
	obj = le.AppendUint16(obj, Version)
	obj = le.AppendUint16(obj, 0)
	obj = le.AppendUint32(obj, HeaderSize)
	obj = le.AppendUint64(obj, uint64(created))
	obj = le.AppendUint32(obj, 0)
	obj = le.AppendUint32(obj, crc32.Checksum(obj[:28], castagnoli))

	for _, i := range order {
		obj = append(obj, w.adds[i].batch...)
	}

	indexOff := int64(len(obj))
	obj = le.AppendUint64(obj, uint64(created))
	obj = le.AppendUint16(obj, uint16(len(w.h.AgentID)))
	obj = append(obj, w.h.AgentID...)
	obj = le.AppendUint32(obj, uint32(len(runs)))
	for _, r := range runs {
		obj = append(obj, r.TopicID[:]...)
		obj = le.AppendUint32(obj, uint32(r.Partition))
		obj = le.AppendUint64(obj, uint64(r.ByteOffset))
		obj = le.AppendUint64(obj, uint64(r.ByteLength))
		obj = le.AppendUint32(obj, uint32(r.Batches))
		obj = le.AppendUint64(obj, uint64(r.Records))
		obj = le.AppendUint64(obj, uint64(r.FirstTimestamp))
		obj = le.AppendUint64(obj, uint64(r.LastTimestamp))
		obj = le.AppendUint64(obj, uint64(r.MinProducerID))
		obj = le.AppendUint64(obj, uint64(r.MaxProducerID))
	}
	indexCRC := crc32.Checksum(obj[indexOff:], castagnoli)

	obj = le.AppendUint64(obj, uint64(indexOff))
	obj = le.AppendUint64(obj, uint64(indexLen))
	obj = le.AppendUint32(obj, indexCRC)
	obj = le.AppendUint16(obj, Version)
	obj = le.AppendUint16(obj, 0)
	obj = append(obj, Magic...)
	return obj, placements
}
