package flush

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore/mem"
	"github.com/floebroker/floe/segment"
	"github.com/floebroker/floe/wal"
)

// randomSealed is a buffer of n entries over a few partitions of topic ids
// that differ in their high bytes (so signed and bytewise orders differ),
// from several producers interleaved. Batches have random bytes and
// lengths, some repeat another entry's bytes exactly (a mix-up between
// entries of one partition would not show in the bytes alone), and every
// entry's BaseSequence is its entry index, so a result or ref attributed to
// the wrong entry is detected.
func randomSealed(r *rand.Rand, n int) *wal.Sealed {
	topics := []catalog.TopicID{{0x00, 1}, {0x7f, 2}, {0x80, 3}, {0xff, 4}}
	b := &wal.Sealed{ID: fmt.Sprintf("01J%023d", r.IntN(1e9)), Created: testCreated}
	for i := range n {
		t := catalog.TopicPartition{TopicID: topics[r.IntN(len(topics))], Partition: int32(r.IntN(3))}
		var batch []byte
		if i > 0 && r.IntN(4) == 0 {
			batch = b.Entries[r.IntN(i)].Batch
		} else {
			batch = make([]byte, 1+r.IntN(300))
			for j := range batch {
				batch[j] = byte(r.Uint32())
			}
		}
		pid := int64(r.IntN(4)) - 1 // -1: not idempotent
		b.Entries = append(b.Entries, wal.Entry{
			TopicPartition: t, Batch: batch, OffsetSpan: 1 + int32(r.IntN(5)), Records: int32(r.IntN(5)),
			FirstTimestamp: r.Int64N(1000), MaxTimestamp: 1000 + r.Int64N(1000),
			ProducerID: pid, ProducerEpoch: int16(r.IntN(3)), BaseSequence: int32(i),
		})
		b.Bytes += int64(len(batch))
	}
	return b
}

// seqCatalog answers each ref with its BaseSequence (the entry index in
// randomSealed) as the base offset, so Commit's mapping back to entry
// order can be checked result by result.
type seqCatalog struct{ catalog.Catalog }

func (seqCatalog) CommitSegment(_ context.Context, seg catalog.Segment) (catalog.CommitResult, error) {
	res := catalog.CommitResult{CommitID: 1}
	for _, b := range seg.Batches {
		res.Results = append(res.Results, catalog.BatchResult{BaseOffset: int64(b.BaseSequence)})
	}
	return res, nil
}

// TestBuildRoundTrip builds random buffers and reads every batch back: via
// the refs' byte ranges, via the object's own index, and through Commit's
// results, each of which must name the entry it came from.
func TestBuildRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for iter := range 200 {
		b := randomSealed(r, r.IntN(60))
		s := New(Config{Cluster: "c", AgentID: "agent"}, mem.New(nil), seqCatalog{}, nil, nil)
		bu := s.build(b)
		obj := bu.obj
		if len(bu.refs) != len(b.Entries) || len(bu.order) != len(b.Entries) {
			t.Fatalf("iter %d: %d refs, %d order for %d entries", iter, len(bu.refs), len(bu.order), len(b.Entries))
		}

		// Refs: in object order, contiguous from the header, each slicing
		// its own entry's bytes and carrying its fields.
		seen := make([]bool, len(b.Entries))
		off := int64(segment.HeaderSize)
		for k, ref := range bu.refs {
			i := bu.order[k]
			e := b.Entries[i]
			if seen[i] {
				t.Fatalf("iter %d: entry %d placed twice", iter, i)
			}
			seen[i] = true
			if k > 0 {
				prev := bu.refs[k-1]
				if segment.Less(ref.TopicPartition, prev.TopicPartition) ||
					(ref.TopicPartition == prev.TopicPartition && ref.BaseSequence < prev.BaseSequence) {
					t.Fatalf("iter %d: ref %d out of object order", iter, k)
				}
			}
			want := catalog.BatchRef{TopicPartition: e.TopicPartition, ByteOffset: off, ByteLength: int64(len(e.Batch)),
				OffsetSpan: e.OffsetSpan, Records: e.Records, FirstTimestamp: e.FirstTimestamp, MaxTimestamp: e.MaxTimestamp,
				ProducerID: e.ProducerID, ProducerEpoch: e.ProducerEpoch, BaseSequence: e.BaseSequence}
			if ref != want {
				t.Fatalf("iter %d: ref %d = %+v, want %+v", iter, k, ref, want)
			}
			if !bytes.Equal(obj[ref.ByteOffset:ref.ByteOffset+ref.ByteLength], e.Batch) {
				t.Fatalf("iter %d: ref %d does not slice entry %d's batch", iter, k, i)
			}
			off += ref.ByteLength
		}

		// The index: one run per partition, holding its entries' batches
		// back to back in entry order, with their counts and ranges.
		idx, err := segment.DecodeIndex(obj, int64(len(obj)))
		if err != nil {
			t.Fatalf("iter %d: %v", iter, err)
		}
		if end := int64(len(obj)) - segment.FooterSize; off > end {
			t.Fatalf("iter %d: body ends at %d, past the footer at %d", iter, off, end)
		}
		want := map[catalog.TopicPartition]*segment.Run{}
		var body = map[catalog.TopicPartition][]byte{}
		for _, e := range b.Entries {
			run := want[e.TopicPartition]
			if run == nil {
				run = &segment.Run{FirstTimestamp: e.FirstTimestamp, LastTimestamp: e.MaxTimestamp, MinProducerID: -1, MaxProducerID: -1}
				want[e.TopicPartition] = run
			}
			run.Batches++
			run.Records += int64(e.Records)
			run.FirstTimestamp = min(run.FirstTimestamp, e.FirstTimestamp)
			run.LastTimestamp = max(run.LastTimestamp, e.MaxTimestamp)
			if e.ProducerID >= 0 {
				if run.MinProducerID < 0 || e.ProducerID < run.MinProducerID {
					run.MinProducerID = e.ProducerID
				}
				run.MaxProducerID = max(run.MaxProducerID, e.ProducerID)
			}
			body[e.TopicPartition] = append(body[e.TopicPartition], e.Batch...)
		}
		if len(idx.Runs) != len(want) {
			t.Fatalf("iter %d: %d runs, want %d", iter, len(idx.Runs), len(want))
		}
		for _, run := range idx.Runs {
			w := want[run.TopicPartition]
			if w == nil {
				t.Fatalf("iter %d: run of unknown partition %+v", iter, run.TopicPartition)
			}
			got := obj[run.ByteOffset : run.ByteOffset+run.ByteLength]
			if !bytes.Equal(got, body[run.TopicPartition]) {
				t.Fatalf("iter %d: run %+v does not hold its entries' batches in entry order", iter, run.TopicPartition)
			}
			if run.Batches != w.Batches || run.Records != w.Records || run.FirstTimestamp != w.FirstTimestamp ||
				run.LastTimestamp != w.LastTimestamp || run.MinProducerID != w.MinProducerID || run.MaxProducerID != w.MaxProducerID {
				t.Fatalf("iter %d: run %+v, want %+v", iter, run, *w)
			}
			if r2, ok := idx.Run(run.TopicPartition); !ok || r2 != run {
				t.Fatalf("iter %d: Index.Run does not find %+v", iter, run.TopicPartition)
			}
		}

		// Commit maps every result back to the entry it belongs to.
		if err := s.Upload(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		res, err := s.Commit(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range res {
			if x.BaseOffset != int64(i) {
				t.Fatalf("iter %d: entry %d got the result of entry %d", iter, i, x.BaseOffset)
			}
		}
	}
}
