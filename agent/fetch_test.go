package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

// The hint must cover the encoded response, or the encoder grows the
// buffer (correct, but the copy the hint exists to avoid).
func TestFetchResponseSizeHintCoversEncoding(t *testing.T) {
	for _, version := range []int16{4, 11, 12, 13, 16, 18} {
		resp := kmsg.NewPtrFetchResponse()
		resp.SetVersion(version)
		for ti := 0; ti < 3; ti++ {
			rt := kmsg.NewFetchResponseTopic()
			rt.Topic = "a-topic-with-a-rather-long-name-" + string(rune('a'+ti))
			for p := 0; p < 5; p++ {
				rp := kmsg.NewFetchResponseTopicPartition()
				rp.Partition = int32(p)
				rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = 1<<40, 1<<40, 1<<39
				rp.RecordBatches = make([]byte, p*1000)
				rp.AbortedTransactions = make([]kmsg.FetchResponseTopicPartitionAbortedTransaction, p)
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		hint := fetchResponseSizeHint(resp)
		hdr := requestHeader{key: 1, version: version, correlationID: 7}
		if n := len(appendResponse(nil, hdr, resp)); n > hint {
			t.Errorf("v%d: encoded %d bytes, hint %d", version, n, hint)
		}
	}
}

// TestFetchFrame: a Fetch response whose records refer to cached bytes is
// written as exactly the frame kmsg encodes with the records copied in,
// at every version (int32 and uvarint length prefixes), with each batch's
// base offset patched and the cached bytes left as they were.
func TestFetchFrame(t *testing.T) {
	small := makeBatch(t, testBatch{records: 3})
	big := makeBatch(t, testBatch{records: 1000})
	if len(big) < recordsCopyBelow || len(small) >= recordsCopyBelow {
		t.Fatalf("batches of %d and %d bytes do not cover both sides of %d", len(small), len(big), recordsCopyBelow)
	}
	var stored []byte
	for _, b := range [][]byte{small, big, small, big, big} {
		stored = append(stored, b...)
	}
	orig := bytes.Clone(stored)

	// fill adds the stored row (served from base) to rec and returns the
	// bytes it must serve.
	fill := func(rec *records, base int64) []byte {
		var want []byte
		err := forEachStoredBatch(stored, base, func(batch []byte, off int64, _ batchHeader) bool {
			rec.add(batch, off, stored)
			c := bytes.Clone(batch)
			patchBaseOffset(c, off)
			want = append(want, c...)
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		return want
	}
	for _, version := range []int16{4, 7, 11, 12, 13, 16, 18} {
		fr := &fetchResponse{FetchResponse: kmsg.NewPtrFetchResponse()}
		fr.SetVersion(version)
		want := kmsg.NewPtrFetchResponse()
		want.SetVersion(version)
		for ti, bases := range [][]int64{{100, -1, 0}, {-1}, {5000}} {
			ot := kmsg.NewFetchResponseTopic()
			ot.Topic = fmt.Sprintf("topic-%d", ti)
			ot.TopicID[0] = byte(ti + 1)
			fr.recs = append(fr.recs, make([]records, len(bases)))
			for pi, base := range bases {
				op := kmsg.NewFetchResponseTopicPartition()
				op.Partition = int32(pi)
				op.HighWatermark, op.LastStableOffset, op.LogStartOffset = 1<<20, 1<<20, 3
				op.RecordBatches = []byte{}
				wp := op
				if base >= 0 {
					wp.RecordBatches = fill(&fr.recs[ti][pi], base)
				} else {
					op.ErrorCode, wp.ErrorCode = 1, 1
				}
				ot.Partitions = append(ot.Partitions, op)
				wt := &want.Topics
				if len(*wt) == ti {
					*wt = append(*wt, kmsg.FetchResponseTopic{Topic: ot.Topic, TopicID: ot.TopicID})
				}
				(*wt)[ti].Partitions = append((*wt)[ti].Partitions, wp)
			}
			fr.Topics = append(fr.Topics, ot)
		}
		hdr := requestHeader{key: 1, version: version, correlationID: 42}
		bufs := fr.appendFrame(nil, hdr)
		got := bytes.Join(bufs, nil)
		if exp := appendResponse(nil, hdr, want); !bytes.Equal(got, exp) {
			t.Fatalf("v%d: frame of %d bytes differs from kmsg's encoding of %d bytes", version, len(got), len(exp))
		}
		if len(bufs) < 4 {
			t.Errorf("v%d: %d buffers: records were copied, not referenced", version, len(bufs))
		}
		// The response still encodes (copying) for any other writer.
		if exp := appendResponse(nil, hdr, want); !bytes.Equal(appendResponse(nil, hdr, fr), exp) {
			t.Fatalf("v%d: AppendTo differs from kmsg's encoding", version)
		}
	}
	if !bytes.Equal(stored, orig) {
		t.Fatal("serving the records modified the cached bytes")
	}
}

// TestUnpinSparseResponse: a response referring to a small part of large
// read buffers copies its records, so that a client that does not read it
// keeps no more than about the records reachable (the response budget
// counts those); one that uses most of its buffers still refers to them.
func TestUnpinSparseResponse(t *testing.T) {
	big := makeBatch(t, testBatch{records: 1000})
	buf := make([]byte, 64*len(big)) // a cached object or span
	stored := buf[10*len(big) : 11*len(big)]
	copy(stored, big)
	sparse := &fetchResponse{recs: [][]records{make([]records, 2)}}
	sparse.recs[0][0].add(stored, 0, buf)
	sparse.recs[0][1].add(stored, 0, buf) // the same buffer counts once
	sparse.unpin()
	for j, rec := range sparse.recs[0] {
		if len(rec.bufs) != 0 || len(rec.segs) != 1 || !bytes.Equal(rec.segs[0], big) {
			t.Fatalf("partition %d: %d pinned buffers, %d slices after unpin", j, len(rec.bufs), len(rec.segs))
		}
		if &rec.segs[0][0] == &stored[0] {
			t.Fatalf("partition %d still refers into the read buffer", j)
		}
	}

	dense := &fetchResponse{recs: [][]records{make([]records, 1)}}
	whole := make([]byte, 0, 2*len(big))
	whole = append(append(whole, big...), big...)
	dense.recs[0][0].add(whole[:len(big)], 0, whole)
	dense.recs[0][0].add(whole[len(big):], 0, whole)
	dense.unpin()
	if rec := dense.recs[0][0]; len(rec.segs) != 1 || &rec.segs[0][0] != &whole[0] {
		t.Fatal("a response using its whole buffer was copied")
	}
}

// TestRecordsAdd: batches whose base offset is already right are
// referenced, small ones copied, large ones referenced after a patched
// base offset, and adjacent pieces merge.
func TestRecordsAdd(t *testing.T) {
	small := makeBatch(t, testBatch{records: 2})
	big := makeBatch(t, testBatch{records: 1000})
	var r records
	r.add(big, 0, big) // stored base 0: referenced whole
	r.add(small, 9, small)
	r.add(small, 11, small) // copied after the previous copy: one arena piece
	r.add(big, 13, big)     // patched base, then the rest referenced
	want := []int{len(big), 2*len(small) + 8, len(big) - 8}
	if len(r.segs) != len(want) {
		t.Fatalf("%d slices, want %d", len(r.segs), len(want))
	}
	for i, s := range r.segs {
		if len(s) != want[i] {
			t.Errorf("slice %d: %d bytes, want %d", i, len(s), want[i])
		}
	}
	if r.n != int64(2*len(big)+2*len(small)) || int64(len(r.bytes())) != r.n {
		t.Fatalf("n = %d, bytes %d", r.n, len(r.bytes()))
	}
	if got := int64(binary.BigEndian.Uint64(r.segs[1][len(small):])); got != 11 {
		t.Fatalf("second copied batch has base %d, want 11", got)
	}
}

// TestFetchClientGoneNotLogged: a fetch whose client went away while its
// batches were read logs nothing — it logged a warning per partition, as
// if the read had failed — while a read that fails is still logged.
func TestFetchClientGoneNotLogged(t *testing.T) {
	r := newCatchUpRig(t, 1, 10)
	var logged bytes.Buffer
	r.a.log = slog.New(slog.NewTextHandler(&logged, nil))
	fetch := func(ctx context.Context) int16 {
		t.Helper()
		fp := fetchPart{tp: catalog.TopicPartition{}, maxBytes: 1 << 20, preferred: -1}
		var (
			op  kmsg.FetchResponseTopicPartition
			rec records
		)
		op.Default()
		hold := responseHold{b: r.a.respBudget, ctx: ctx, deadline: time.Now().Add(time.Second)}
		defer hold.release()
		r.a.fetchPartition(ctx, fp, 1<<20, true, &op, &rec, &hold)
		return op.ErrorCode
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cat.batchesErr = func(context.Context) error {
		cancel() // the connection closes during the lookup
		return fmt.Errorf("catalog: batches: %w", context.Canceled)
	}
	fetch(ctx)
	if logged.Len() > 0 {
		t.Fatalf("a fetch whose client went away logged:\n%s", logged.String())
	}
	r.cat.batchesErr = func(context.Context) error { return errors.New("catalog: batches: broken") }
	if code := fetch(context.Background()); code != kerr.KafkaStorageError.Code || !strings.Contains(logged.String(), "reading batches failed") {
		t.Fatalf("a failed read: error code %d, logged %q", code, logged.String())
	}
}
