package flush

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/sqlite"
	"github.com/floebroker/floe/internal/testenv"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/mem"
	"github.com/floebroker/floe/wal"
)

// heldCatalog holds the first CommitSegment until release is closed.
type heldCatalog struct {
	catalog.Catalog
	first   sync.Once
	held    chan struct{} // closed when the first commit is held
	release chan struct{}
}

func (c *heldCatalog) CommitSegment(ctx context.Context, seg catalog.Segment) (catalog.CommitResult, error) {
	hold := false
	c.first.Do(func() { hold = true })
	if hold {
		close(c.held)
		select {
		case <-c.release:
		case <-ctx.Done():
			return catalog.CommitResult{}, ctx.Err()
		}
	}
	return c.Catalog.CommitSegment(ctx, seg)
}

// puttingBucket counts Puts.
type puttingBucket struct {
	objstore.Bucket
	puts atomic.Int64
}

func (b *puttingBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	err := b.Bucket.Put(ctx, key, r, size)
	b.puts.Add(1)
	return err
}

// TestWALGroupCommitSQLite runs the WAL on this Sink and the SQLite
// catalog: buffers uploaded while the first commit is held are committed
// with one CommitSegments, each segment under its own commit id, and
// every append gets the offsets of its place in seal order.
func TestWALGroupCommitSQLite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "catalog.db"), catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	topic, err := db.CreateTopic(ctx, catalog.TopicSpec{Name: "t", Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	cat := &heldCatalog{Catalog: db, held: make(chan struct{}), release: make(chan struct{})}
	bucket := &puttingBucket{Bucket: mem.New(nil)}
	var mu sync.Mutex
	var commitIDs []int64 // of OnCommitted's rows, in call order
	sink := New(Config{Cluster: "c", AgentID: "a", OnCommitted: func(_ string, _ []byte, rows []catalog.BatchRow) {
		mu.Lock()
		defer mu.Unlock()
		commitIDs = append(commitIDs, rows[0].CommitID)
		for _, r := range rows[1:] {
			if r.CommitID != rows[0].CommitID {
				t.Errorf("rows of one object with commit ids %d and %d", rows[0].CommitID, r.CommitID)
			}
		}
	}}, bucket, cat, nil, nil)
	reg := prometheus.NewRegistry()
	l, err := wal.Open(wal.Config{Dir: "/wal", FS: wal.NewMemFS(), FlushInterval: time.Millisecond, FlushBytes: 1, Registerer: reg}, sink)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- l.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	const n = 4 // wal.DefaultMaxInflight: all sealed while the first commit is held
	var acks []*wal.Ack
	for i := range n {
		tp := catalog.TopicPartition{TopicID: topic.ID, Partition: int32(i % 2)}
		ack, err := l.Append(ctx, []wal.Entry{
			{TopicPartition: tp, Batch: []byte(fmt.Sprintf("batch-%d", i)), OffsetSpan: int32(i + 1), Records: int32(i + 1), ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
		})
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack)
		if i == 0 {
			<-cat.held
		}
		for bucket.puts.Load() < int64(i+1) {
			time.Sleep(time.Millisecond)
		}
	}
	// The WAL records an upload after the Put returns and the file's fsync:
	// wait until it has timed every upload and fsync (it marks the buffer
	// uploaded right after), so that the buffers queue together.
	uploads := func() uint64 { c, _ := testenv.Histogram(t, reg, "floe_wal_upload_duration_seconds"); return c }
	fsyncs := func() uint64 { c, _ := testenv.Histogram(t, reg, "floe_wal_fsync_duration_seconds"); return c }
	for uploads() < n || fsyncs() < n {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(5 * time.Millisecond)
	close(cat.release)
	// Partition 0 holds appends 0 and 2 (spans 1, 3), partition 1 appends
	// 1 and 3 (spans 2, 4).
	want := []int64{0, 0, 1, 2}
	for i, a := range acks {
		res, err := a.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 || res[0].Err != nil || res[0].BaseOffset != want[i] {
			t.Fatalf("append %d: %+v, want offset %d", i, res, want[i])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(commitIDs) != n {
		t.Fatalf("%d OnCommitted calls", len(commitIDs))
	}
	for i := 1; i < n; i++ {
		if commitIDs[i] <= commitIDs[i-1] {
			t.Fatalf("commit ids %v do not ascend", commitIDs)
		}
	}
	// Normally 2 calls: the held one, then the rest together.
	calls, buffers := testenv.Histogram(t, reg, "floe_wal_commit_group_buffers")
	if calls >= n || buffers != n {
		t.Fatalf("%d commit calls for %v buffers, want fewer calls than buffers", calls, buffers)
	}
}
