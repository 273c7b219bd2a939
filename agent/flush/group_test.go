package flush

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore/mem"
	"github.com/floebroker/floe/wal"
)

// groupSealed is sealed() and two more buffers over the same partitions,
// whose entries are not in object order either.
func groupSealed() []*wal.Sealed {
	b2 := &wal.Sealed{ID: "01J0000000000000000000000B", Created: testCreated, Entries: []wal.Entry{
		entry(tp(2, 0), "b2-two-zero", 1, -1),
		entry(tp(1, 5), "b2-one-five", 2, 7),
	}}
	b3 := &wal.Sealed{ID: "01J0000000000000000000000C", Created: testCreated, Entries: []wal.Entry{
		entry(tp(1, 5), "b3-one-five", 4, 7),
	}}
	return []*wal.Sealed{sealed(), b2, b3}
}

type committedCall struct {
	key  string
	rows []catalog.BatchRow
}

func TestCommitGroup(t *testing.T) {
	ctx := context.Background()
	cat := newFakeCatalog()
	var calls []committedCall
	s := New(Config{Cluster: "c", AgentID: "a", OnCommitted: func(key string, _ []byte, rows []catalog.BatchRow) {
		calls = append(calls, committedCall{key, rows})
	}}, mem.New(nil), cat, nil, prometheus.NewRegistry())
	bs := groupSealed()
	for _, b := range bs {
		if err := s.Upload(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.CommitGroup(ctx, bs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cat.groups, []int{3}) || len(cat.segments) != 3 {
		t.Fatalf("CommitSegments calls %v, %d segments committed", cat.groups, len(cat.segments))
	}
	// Each buffer's results in its entry order, its offsets following
	// the buffers before it: tp(2,0) takes 0..2, 3..4, 5; tp(1,5) 0,
	// (fenced), 1..2, 3..6.
	want := [][]catalog.BatchResult{
		{{BaseOffset: 0}, {BaseOffset: 0}, {BaseOffset: 3}, {Err: catalog.ErrInvalidProducerEpoch}},
		{{BaseOffset: 5}, {BaseOffset: 1}},
		{{BaseOffset: 3}},
	}
	if !slices.EqualFunc(res, want, slices.Equal) {
		t.Fatalf("results %+v, want %+v", res, want)
	}
	// One OnCommitted per buffer, in order, each row carrying its own
	// segment's key and commit id.
	if len(calls) != 3 {
		t.Fatalf("%d OnCommitted calls", len(calls))
	}
	wantRows := []int{3, 2, 1}
	for i, c := range calls {
		key := ObjectKey("c", bs[i].ID)
		if c.key != key || len(c.rows) != wantRows[i] {
			t.Fatalf("OnCommitted %d: %s with %d rows, want %s with %d", i, c.key, len(c.rows), key, wantRows[i])
		}
		for _, r := range c.rows {
			if r.ObjectKey != key || r.CommitID != int64(i+1) {
				t.Fatalf("OnCommitted %d: row %+v, want key %s, commit id %d", i, r, key, i+1)
			}
		}
	}
	if r := calls[1].rows[0]; r.TopicPartition != tp(1, 5) || r.BaseOffset != 1 || r.LastOffset != 2 {
		t.Fatalf("row %+v", r)
	}
	if len(s.mu.built) != 0 {
		t.Fatal("upload state kept after commit")
	}
	var m dto.Metric
	if err := s.m.commitSeconds.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetHistogram().GetSampleCount(); n != 1 {
		t.Fatalf("commit duration: %d samples, want one per catalog call", n)
	}
	if ok, failed := testutil.ToFloat64(s.m.batchesOK), testutil.ToFloat64(s.m.batchesErr); ok != 6 || failed != 1 {
		t.Fatalf("batches: %v ok, %v failed", ok, failed)
	}
}

// TestCommitGroupRefuses: a group with a buffer off Commit's fast path is
// refused without a catalog call, and a failed catalog call keeps the
// uploads; either way Commit, buffer by buffer, then commits each once
// with the results it would have had.
func TestCommitGroupRefuses(t *testing.T) {
	boom := errors.New("catalog unreachable")
	for _, tc := range []struct {
		name    string
		prepare func(s *Sink, cat *fakeCatalog, now *time.Time, bs []*wal.Sealed)
		calls   int // CommitSegments calls expected
	}{
		{"not uploaded here", func(s *Sink, _ *fakeCatalog, _ *time.Time, bs []*wal.Sealed) { s.Forget(bs[1].ID) }, 0},
		{"stale upload", func(_ *Sink, _ *fakeCatalog, now *time.Time, _ []*wal.Sealed) { *now = now.Add(2 * time.Minute) }, 0},
		{"too old", func(_ *Sink, _ *fakeCatalog, _ *time.Time, bs []*wal.Sealed) {
			bs[2].Created = bs[2].Created.Add(-48 * time.Hour)
		}, 0},
		{"catalog error", func(_ *Sink, cat *fakeCatalog, _ *time.Time, _ []*wal.Sealed) { cat.err = boom }, 1},
		{"catalog error after a prefix", func(_ *Sink, cat *fakeCatalog, _ *time.Time, _ []*wal.Sealed) {
			cat.err, cat.failAfter = catalog.ErrCommitUnknown, 2
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			cat := newFakeCatalog()
			now := testCreated.Add(time.Second)
			bucket := &countingBucket{Bucket: mem.New(nil)}
			s := New(Config{Cluster: "c", MaxUploadAge: time.Minute, MaxReplayAge: 24 * time.Hour, Now: func() time.Time { return now }},
				bucket, cat, nil, prometheus.NewRegistry())
			bs := groupSealed()
			for _, b := range bs {
				if err := s.Upload(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
			tc.prepare(s, cat, &now, bs)
			if _, err := s.CommitGroup(ctx, bs); err == nil {
				t.Fatal("group committed")
			}
			if len(cat.groups) != tc.calls {
				t.Fatalf("%d CommitSegments calls, want %d", len(cat.groups), tc.calls)
			}
			if n := testutil.ToFloat64(s.m.commitErrors); n != float64(tc.calls) {
				t.Fatalf("commit errors %v", n)
			}
			// The WAL's fallback.
			var offs []int64
			for i, b := range bs {
				res, err := s.Commit(ctx, b)
				if tc.name == "too old" && i == 2 {
					if !wal.IsPermanent(err) {
						t.Fatalf("too old buffer: %v", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("commit %d: %v", i, err)
				}
				for _, r := range res {
					offs = append(offs, r.BaseOffset)
				}
			}
			wantOffs, wantSegs := []int64{0, 0, 3, 0, 5, 1, 3}, 3
			if tc.name == "too old" {
				wantOffs, wantSegs = wantOffs[:6], 2
			}
			if !slices.Equal(offs, wantOffs) {
				t.Fatalf("offsets %v, want %v", offs, wantOffs)
			}
			if n := len(cat.segments); n != wantSegs {
				t.Fatalf("%d segments committed, want %d", n, wantSegs)
			}
		})
	}
}
