package flush

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/wal"
)

// discardBucket accepts every Put and keeps nothing.
type discardBucket struct{ objstore.Bucket }

func (discardBucket) Put(_ context.Context, _ string, r io.Reader, _ int64) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

// answeringCatalog answers every CommitSegment with offset 0 for each batch,
// so a benchmark measures the Sink, not a catalog.
type answeringCatalog struct{ catalog.Catalog }

func (answeringCatalog) CommitSegment(_ context.Context, seg catalog.Segment) (catalog.CommitResult, error) {
	return catalog.CommitResult{CommitID: 1, Results: make([]catalog.BatchResult, len(seg.Batches))}, nil
}

// BenchmarkUploadCommit is the Sink's work for one buffer of small batches
// (100 bytes) over 2,000 partitions, with a registry and an OnCommitted
// hook as in an agent: per-batch costs, not bytes, dominate.
func BenchmarkUploadCommit(b *testing.B) {
	const partitions = 2000
	s := New(Config{Cluster: "c", AgentID: "a", OnCommitted: func(string, []byte, []catalog.BatchRow) {}},
		discardBucket{}, answeringCatalog{}, nil, prometheus.NewRegistry())
	buf := &wal.Sealed{Created: time.Now()}
	batch := make([]byte, 100)
	for i := range partitions {
		buf.Entries = append(buf.Entries, wal.Entry{TopicPartition: tp(1, int32(i*7%partitions)), Batch: batch,
			OffsetSpan: 6, Records: 6, ProducerID: 3, BaseSequence: int32(i)})
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		buf.ID = fmt.Sprintf("01J%023d", i)
		i++
		if err := s.Upload(ctx, buf); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Commit(ctx, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommit is the Sink's Commit alone (the objects are uploaded
// before the timer runs) for a buffer of 2,400 small batches over 2,000
// partitions with an OnCommitted hook, against a catalog that answers at
// once: the Go work on the WAL committer's path besides the catalog's.
func BenchmarkCommit(b *testing.B) {
	const partitions, batches = 2000, 2400
	s := New(Config{Cluster: "c", AgentID: "a", OnCommitted: func(string, []byte, []catalog.BatchRow) {}},
		discardBucket{}, answeringCatalog{}, nil, prometheus.NewRegistry())
	batch := make([]byte, 100)
	ctx := context.Background()
	const ahead = 64 // buffers uploaded per timer stop
	bufs := make([]*wal.Sealed, 0, ahead)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if len(bufs) == 0 {
			b.StopTimer()
			for range ahead {
				buf := &wal.Sealed{ID: fmt.Sprintf("01J%023d", i), Created: time.Now()}
				i++
				for k := range batches {
					buf.Entries = append(buf.Entries, wal.Entry{TopicPartition: tp(1, int32(k*partitions/batches)), Batch: batch,
						OffsetSpan: 6, Records: 6, ProducerID: 3, BaseSequence: int32(k)})
				}
				if err := s.Upload(ctx, buf); err != nil {
					b.Fatal(err)
				}
				bufs = append(bufs, buf)
			}
			b.StartTimer()
		}
		buf := bufs[0]
		bufs = bufs[1:]
		if _, err := s.Commit(ctx, buf); err != nil {
			b.Fatal(err)
		}
	}
}
