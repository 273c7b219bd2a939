package commitplan

import (
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/floebroker/floe/catalog"
)

var (
	tpA = catalog.TopicPartition{TopicID: catalog.TopicID{1}, Partition: 0}
	tpB = catalog.TopicPartition{TopicID: catalog.TopicID{1}, Partition: 1}
	tpX = catalog.TopicPartition{TopicID: catalog.TopicID{9}, Partition: 0} // unknown
)

func ref(tp catalog.TopicPartition, off, length int64, span int32) catalog.BatchRef {
	return catalog.BatchRef{TopicPartition: tp, ByteOffset: off, ByteLength: length, OffsetSpan: span,
		Records: span, FirstTimestamp: 10, MaxTimestamp: 10 + off, ProducerID: -1}
}

func idem(b catalog.BatchRef, pid int64, epoch int16, seq int32) catalog.BatchRef {
	b.ProducerID, b.ProducerEpoch, b.BaseSequence = pid, epoch, seq
	return b
}

func TestBuildOffsetsAndRows(t *testing.T) {
	in := Input{
		Segment: catalog.Segment{Key: "k", Size: 100, Batches: []catalog.BatchRef{
			ref(tpA, 0, 10, 3),
			ref(tpA, 10, 10, 2), // contiguous: coalesced with the first
			ref(tpB, 20, 10, 1),
			ref(tpX, 30, 10, 1), // unknown partition
			ref(tpB, 40, 10, 4), // not byte-contiguous: own row
		}},
		Partitions: map[catalog.TopicPartition]Partition{
			tpA: {NextOffset: 100, LogStart: 7},
			tpB: {NextOffset: 0, LogStart: 0},
		},
	}
	p := Build(in)
	wantRes := []catalog.BatchResult{
		{BaseOffset: 100, LogStartOffset: 7},
		{BaseOffset: 103, LogStartOffset: 7},
		{BaseOffset: 0},
		{BaseOffset: -1, LogStartOffset: -1, Err: catalog.ErrUnknownTopic},
		{BaseOffset: 1},
	}
	if !reflect.DeepEqual(p.Results, wantRes) {
		t.Fatalf("results\n got %+v\nwant %+v", p.Results, wantRes)
	}
	wantRows := []Row{
		{TopicPartition: tpA, BaseOffset: 100, LastOffset: 104, ByteOffset: 0, ByteLength: 20, Records: 5, MaxTimestamp: 20},
		{TopicPartition: tpB, BaseOffset: 0, LastOffset: 0, ByteOffset: 20, ByteLength: 10, Records: 1, MaxTimestamp: 30},
		{TopicPartition: tpB, BaseOffset: 1, LastOffset: 4, ByteOffset: 40, ByteLength: 10, Records: 4, MaxTimestamp: 50},
	}
	if !reflect.DeepEqual(p.Rows, wantRows) {
		t.Fatalf("rows\n got %+v\nwant %+v", p.Rows, wantRows)
	}
	wantParts := []PartitionUpdate{{tpA, 105}, {tpB, 5}}
	if !reflect.DeepEqual(p.Partitions, wantParts) {
		t.Fatalf("partitions got %+v want %+v", p.Partitions, wantParts)
	}
}

func TestBuildIdempotence(t *testing.T) {
	const pid = 42
	st := func(epoch int16, entries ...SeqEntry) map[ProducerKey]ProducerState {
		return map[ProducerKey]ProducerState{{pid, tpA}: {Epoch: epoch, Entries: entries}}
	}
	five := []SeqEntry{{0, 0, 10}, {1, 1, 11}, {2, 2, 12}, {3, 3, 13}, {4, 4, 14}}
	tests := []struct {
		name    string
		states  map[ProducerKey]ProducerState
		epochs  map[int64]int16
		batches []catalog.BatchRef
		want    []catalog.BatchResult
		entries []SeqEntry // final state on tpA, nil: no update expected
	}{
		{
			name:    "new producer any sequence",
			batches: []catalog.BatchRef{idem(ref(tpA, 0, 1, 2), pid, 0, 77)},
			want:    []catalog.BatchResult{{BaseOffset: 100}},
			entries: []SeqEntry{{77, 78, 100}},
		},
		{
			name:    "in sequence",
			states:  st(0, SeqEntry{0, 9, 50}),
			batches: []catalog.BatchRef{idem(ref(tpA, 0, 1, 5), pid, 0, 10)},
			want:    []catalog.BatchResult{{BaseOffset: 100}},
			entries: []SeqEntry{{0, 9, 50}, {10, 14, 100}},
		},
		{
			name:    "duplicate of an older retained batch",
			states:  st(0, five...),
			batches: []catalog.BatchRef{idem(ref(tpA, 0, 1, 1), pid, 0, 1)},
			want:    []catalog.BatchResult{{BaseOffset: 11, Duplicate: true}},
		},
		{
			name:    "gap",
			states:  st(0, SeqEntry{0, 9, 50}),
			batches: []catalog.BatchRef{idem(ref(tpA, 0, 1, 1), pid, 0, 12)},
			want:    []catalog.BatchResult{{BaseOffset: -1, LogStartOffset: -1, Err: catalog.ErrOutOfOrderSequence}},
		},
		{
			name:    "older than retained",
			states:  st(0, SeqEntry{5, 5, 15}, SeqEntry{6, 6, 16}),
			batches: []catalog.BatchRef{idem(ref(tpA, 0, 1, 1), pid, 0, 0)},
			want:    []catalog.BatchResult{{BaseOffset: -1, LogStartOffset: -1, Err: catalog.ErrOutOfOrderSequence}},
		},
		{
			name:    "stale epoch on partition",
			states:  st(3, SeqEntry{0, 0, 1}),
			batches: []catalog.BatchRef{idem(ref(tpA, 0, 1, 1), pid, 2, 1)},
			want:    []catalog.BatchResult{{BaseOffset: -1, LogStartOffset: -1, Err: catalog.ErrInvalidProducerEpoch}},
		},
		{
			name:    "fenced by bumped epoch",
			epochs:  map[int64]int16{pid: 5},
			batches: []catalog.BatchRef{idem(ref(tpA, 0, 1, 1), pid, 4, 0)},
			want:    []catalog.BatchResult{{BaseOffset: -1, LogStartOffset: -1, Err: catalog.ErrInvalidProducerEpoch}},
		},
		{
			name:    "new epoch starts at zero",
			states:  st(1, SeqEntry{0, 9, 50}),
			batches: []catalog.BatchRef{idem(ref(tpA, 0, 1, 3), pid, 2, 0)},
			want:    []catalog.BatchResult{{BaseOffset: 100}},
			entries: []SeqEntry{{0, 2, 100}},
		},
		{
			name:    "new epoch not at zero",
			states:  st(1, SeqEntry{0, 9, 50}),
			batches: []catalog.BatchRef{idem(ref(tpA, 0, 1, 3), pid, 2, 10)},
			want:    []catalog.BatchResult{{BaseOffset: -1, LogStartOffset: -1, Err: catalog.ErrOutOfOrderSequence}},
		},
		{
			name:   "retry inside one segment",
			states: st(0, SeqEntry{0, 0, 10}),
			batches: []catalog.BatchRef{
				idem(ref(tpA, 0, 1, 2), pid, 0, 1),
				idem(ref(tpA, 1, 1, 2), pid, 0, 1),
				idem(ref(tpA, 2, 1, 1), pid, 0, 3),
			},
			want: []catalog.BatchResult{
				{BaseOffset: 100}, {BaseOffset: 100, Duplicate: true}, {BaseOffset: 102},
			},
			entries: []SeqEntry{{0, 0, 10}, {1, 2, 100}, {3, 3, 102}},
		},
		{
			name:    "keeps the last five",
			states:  st(0, five...),
			batches: []catalog.BatchRef{idem(ref(tpA, 0, 1, 1), pid, 0, 5)},
			want:    []catalog.BatchResult{{BaseOffset: 100}},
			entries: []SeqEntry{{1, 1, 11}, {2, 2, 12}, {3, 3, 13}, {4, 4, 14}, {5, 5, 100}},
		},
		{
			name:    "sequence wraps",
			states:  st(0, SeqEntry{math.MaxInt32 - 1, math.MaxInt32, 50}),
			batches: []catalog.BatchRef{idem(ref(tpA, 0, 1, 2), pid, 0, 0)},
			want:    []catalog.BatchResult{{BaseOffset: 100}},
			entries: []SeqEntry{{math.MaxInt32 - 1, math.MaxInt32, 50}, {0, 1, 100}},
		},
		{
			name:    "negative sequence",
			batches: []catalog.BatchRef{idem(ref(tpA, 0, 1, 2), pid, 0, -1)},
			want:    []catalog.BatchResult{{BaseOffset: -1, LogStartOffset: -1, Err: catalog.ErrOutOfOrderSequence}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Build(Input{
				Segment:    catalog.Segment{Key: "k", Batches: tt.batches},
				Partitions: map[catalog.TopicPartition]Partition{tpA: {NextOffset: 100}},
				States:     tt.states,
				Epochs:     tt.epochs,
			})
			if !reflect.DeepEqual(p.Results, tt.want) {
				t.Fatalf("results\n got %+v\nwant %+v", p.Results, tt.want)
			}
			var got []SeqEntry
			for _, s := range p.States {
				if s.ProducerKey == (ProducerKey{pid, tpA}) {
					got = s.Entries
				}
			}
			if !reflect.DeepEqual(got, tt.entries) {
				t.Fatalf("entries\n got %+v\nwant %+v", got, tt.entries)
			}
		})
	}
}

func TestLastSequence(t *testing.T) {
	tests := []struct{ first, span, want int32 }{
		{0, 1, 0},
		{0, 10, 9},
		{math.MaxInt32, 1, math.MaxInt32},
		{math.MaxInt32, 2, 0},
		{math.MaxInt32 - 1, 4, 1},
	}
	for _, tt := range tests {
		if got := LastSequence(tt.first, tt.span); got != tt.want {
			t.Errorf("LastSequence(%d, %d) = %d, want %d", tt.first, tt.span, got, tt.want)
		}
	}
}

func TestValidateSegment(t *testing.T) {
	ok := catalog.Segment{Key: "k", Size: 10, Batches: []catalog.BatchRef{ref(tpA, 0, 10, 1)}}
	if err := ValidateSegment(ok); err != nil {
		t.Fatal(err)
	}
	bad := []catalog.Segment{
		{Key: ""},
		{Key: "k", Batches: []catalog.BatchRef{ref(tpA, 0, 1, 0)}},
		{Key: "k", Size: 5, Batches: []catalog.BatchRef{ref(tpA, 0, 10, 1)}},
		{Key: "k", Batches: []catalog.BatchRef{ref(tpA, -1, 10, 1)}},
	}
	for i, s := range bad {
		if ValidateSegment(s) == nil {
			t.Errorf("segment %d: no error", i)
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	entries := []SeqEntry{{0, 9, 0}, {math.MaxInt32, 3, 1 << 40}, {-5, -1, -1}, {7, 8, RelBase + 5}}
	got, err := DecodeEntries(EncodeEntries(entries), 1000)
	want := append(entries[:3:3], SeqEntry{7, 8, 1005})
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("entries: %v %+v", err, got)
	}
	if got, err := DecodeEntries(EncodeEntries(nil), 0); err != nil || len(got) != 0 {
		t.Fatalf("empty entries: %v %+v", err, got)
	}

	seg := catalog.Segment{Key: "k", Batches: []catalog.BatchRef{
		ref(tpB, 0, 1, 1), ref(tpA, 1, 1, 1), ref(tpA, 2, 1, 1), ref(tpX, 3, 1, 1), ref(tpA, 4, 1, 1), ref(tpB, 5, 1, 1),
	}}
	results := []catalog.BatchResult{
		{BaseOffset: RelBase + 3},              // tpB, relative
		{BaseOffset: 17, Duplicate: true},      // tpA, absolute duplicate
		{BaseOffset: RelBase, Duplicate: true}, // tpA, duplicate of a batch of this commit
		{BaseOffset: -1, Err: catalog.ErrUnknownTopic},
		{BaseOffset: -1, Err: catalog.ErrOutOfOrderSequence},
		{BaseOffset: -1, Err: catalog.ErrInvalidProducerEpoch},
	}
	// Partitions(seg) order: tpA, tpB, tpX.
	table := []PartitionState{{NextOffset: 100, LogStart: 7}, {NextOffset: 50, LogStart: 0}, {NextOffset: -1, LogStart: -1}}
	b := AppendPartitionTable(EncodeResults(seg, results), table)
	gotR, err := DecodeResults(b)
	wantR := []catalog.BatchResult{
		{BaseOffset: 53, LogStartOffset: 0},
		{BaseOffset: 17, Duplicate: true, LogStartOffset: 7},
		{BaseOffset: 100, Duplicate: true, LogStartOffset: 7},
		{BaseOffset: -1, LogStartOffset: -1, Err: catalog.ErrUnknownTopic},
		{BaseOffset: -1, LogStartOffset: -1, Err: catalog.ErrOutOfOrderSequence},
		{BaseOffset: -1, LogStartOffset: -1, Err: catalog.ErrInvalidProducerEpoch},
	}
	if err != nil || !reflect.DeepEqual(gotR, wantR) {
		t.Fatalf("results: %v\n got %+v\nwant %+v", err, gotR, wantR)
	}
	resolved := Resolve(seg, results, Positions(seg, Partitions(seg)), table)
	if !reflect.DeepEqual(resolved, wantR) {
		t.Fatalf("Resolve\n got %+v\nwant %+v", resolved, wantR)
	}
	for _, bad := range [][]byte{b[:len(b)-1], append(b, 0), {2}, {}} {
		if _, err := DecodeResults(bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("corrupt %x: %v", bad, err)
		}
	}
}

func FuzzDecodeResults(f *testing.F) {
	seg := catalog.Segment{Key: "k", Batches: []catalog.BatchRef{ref(tpA, 0, 1, 1), ref(tpB, 1, 1, 1), ref(tpX, 2, 1, 1)}}
	f.Add(AppendPartitionTable(EncodeResults(catalog.Segment{Key: "k"}, nil), nil))
	f.Add(AppendPartitionTable(EncodeResults(seg, []catalog.BatchResult{
		{BaseOffset: RelBase + 1}, {BaseOffset: 3, Duplicate: true}, {Err: catalog.ErrUnknownTopic},
	}), []PartitionState{{5, 1}, {6, 0}, {-1, -1}}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := DecodeResults(b)
		if err != nil {
			return
		}
		for _, r := range res {
			if r.Err != nil && (r.BaseOffset != -1 || r.Duplicate) {
				t.Fatalf("failed result with an offset: %+v", r)
			}
		}
	})
}

func FuzzDecodeEntries(f *testing.F) {
	f.Add(EncodeEntries(nil), int64(0))
	f.Add(EncodeEntries([]SeqEntry{{0, 4, 100}, {5, 9, RelBase + 5}}), int64(10))
	f.Add([]byte{1, 6}, int64(0))
	f.Fuzz(func(t *testing.T, b []byte, pending int64) {
		es, err := DecodeEntries(b, pending)
		if err != nil {
			return
		}
		if len(es) > MaxEntries {
			t.Fatalf("%d entries", len(es))
		}
		if _, err := DecodeEntries(EncodeEntries(es), pending); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
	})
}

func TestIndex(t *testing.T) {
	tps := []catalog.TopicPartition{tpA, tpB, tpX}
	x := NewIndex(tps)
	for _, tt := range []struct {
		tp   catalog.TopicPartition
		want int
	}{
		{tpA, 0}, {tpB, 1}, {tpX, 2}, // in order
		{tpB, 1}, {tpA, 0}, // out of order
		{catalog.TopicPartition{TopicID: catalog.TopicID{1}, Partition: 7}, -1}, // absent
		{tpX, 2}, {tpX, 2}, // repeated
		{tpA, 0}, {tpA, 0}, {tpB, 1},
	} {
		if got := x.Of(tt.tp); got != tt.want {
			t.Errorf("Of(%v) = %d, want %d", tt.tp, got, tt.want)
		}
	}
	seg := catalog.Segment{Batches: []catalog.BatchRef{ref(tpX, 0, 1, 1), ref(tpA, 1, 1, 1), ref(tpX, 2, 1, 1)}}
	if got := Positions(seg, Partitions(seg)); !reflect.DeepEqual(got, []int32{1, 0, 1}) {
		t.Errorf("Positions = %v", got)
	}
}

// TestBuildGroupRowsPerObject: a group's segments joined by Concat are
// decided as one segment (offsets and producer state carry from one into
// the next), but each is its own object, so a row never spans two — even
// when the next object's batch happens to sit at the byte offset where the
// previous object's row ends.
func TestBuildGroupRowsPerObject(t *testing.T) {
	segs := []catalog.Segment{
		{Key: "a", Size: 20, Batches: []catalog.BatchRef{idem(ref(tpA, 0, 10, 3), 7, 0, 0), ref(tpB, 10, 10, 1)}},
		{Key: "b", Size: 30, Batches: []catalog.BatchRef{ref(tpB, 20, 10, 2), idem(ref(tpA, 30, 10, 2), 7, 0, 3)}},
		{Key: "c", Size: 10, Batches: []catalog.BatchRef{idem(ref(tpA, 0, 10, 2), 7, 0, 3)}}, // repeats b's batch
	}
	joined, starts := Concat(segs)
	if joined.Key != "a" || len(joined.Batches) != 5 || !reflect.DeepEqual(starts, []int{0, 2, 4}) {
		t.Fatalf("Concat: %+v, starts %v", joined, starts)
	}
	l := NewLayout(joined)
	in := NewLayoutInput(joined, l)
	in.Starts = starts
	for i := range l.TPs {
		in.Partitions[i], in.Exists[i] = Partition{NextOffset: 50}, true
	}
	p := BuildLayout(in)
	wantBase := []int64{50, 50, 51, 53, 53}
	for i, r := range p.Results {
		if r.Err != nil || r.BaseOffset != wantBase[i] || r.Duplicate != (i == 4) {
			t.Errorf("batch %d: %+v, want base %d", i, r, wantBase[i])
		}
	}
	// b's tpB batch starts where a's tpB row ends (bytes 10+10 = 20,
	// offset 51): still a row of its own, in its own object.
	wantRows := []struct {
		tp       catalog.TopicPartition
		base, bo int64
		seg      int32
	}{{tpA, 50, 0, 0}, {tpB, 50, 10, 0}, {tpB, 51, 20, 1}, {tpA, 53, 30, 1}}
	if len(p.Rows) != len(wantRows) {
		t.Fatalf("rows %+v", p.Rows)
	}
	for i, w := range wantRows {
		r := p.Rows[i]
		if r.TopicPartition != w.tp || r.BaseOffset != w.base || r.ByteOffset != w.bo || p.RowSeg[i] != w.seg {
			t.Errorf("row %d: %+v in segment %d, want %+v", i, r, p.RowSeg[i], w)
		}
	}
}
