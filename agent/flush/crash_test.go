package flush

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/sqlite"
	"github.com/floebroker/floe/objstore/mem"
	"github.com/floebroker/floe/wal"
)

// holdFirstSync holds the fsync of buffer 0's file until release is
// closed, then fails it (the process is dead by then), outside MemFS's
// lock: other buffers are fsynced, renamed and published meanwhile.
type holdFirstSync struct {
	*wal.MemFS
	syncing chan struct{}
	release chan struct{}
}

func (h *holdFirstSync) OpenFile(name string, flag int, perm os.FileMode) (wal.File, error) {
	f, err := h.MemFS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasPrefix(filepath.Base(name), "0000000000000000-") {
		return f, err
	}
	return &heldSync{File: f, h: h}, nil
}

type heldSync struct {
	wal.File
	h *holdFirstSync
}

var errPowerLost = errors.New("power lost")

func (f *heldSync) Sync() error {
	close(f.h.syncing)
	<-f.h.release
	return errPowerLost
}

// An idempotent producer's two batches land in two buffers; the second,
// small, is fsynced and published while the first's fsync still runs,
// and the power goes. Neither was acknowledged, so the client sends both
// again, in order, to the restarted agent: each must be stored once, in
// order (the replay must not commit the second on its own: the retry of
// the first would be OUT_OF_ORDER_SEQUENCE_NUMBER, the retry of the
// second a duplicate).
func TestCrashDuringEarlierFsyncKeepsProducerOrder(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "catalog.db"), catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	topic, err := db.CreateTopic(ctx, catalog.TopicSpec{Name: "t", Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	pid, epoch, err := db.AllocateProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tp := catalog.TopicPartition{TopicID: topic.ID}
	entry := func(seq int32, batch string) wal.Entry {
		return wal.Entry{TopicPartition: tp, Batch: []byte(batch), OffsetSpan: 5, Records: 5,
			FirstTimestamp: 10, MaxTimestamp: 20, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq}
	}
	bucket := mem.New(nil)

	m := wal.NewMemFS()
	sfs := &holdFirstSync{MemFS: m, syncing: make(chan struct{}), release: make(chan struct{})}
	l1, err := wal.Open(wal.Config{Dir: "/wal", FS: sfs, FlushInterval: time.Millisecond}, New(Config{Cluster: "c", AgentID: "a"}, bucket, db, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx1, cancel1 := context.WithCancel(ctx)
	done1 := make(chan error, 1)
	go func() { done1 <- l1.Run(ctx1) }()
	if _, err := l1.Append(ctx, []wal.Entry{entry(0, "b1 seq 0-4")}); err != nil {
		t.Fatal(err)
	}
	<-sfs.syncing
	if _, err := l1.Append(ctx, []wal.Entry{entry(5, "b2 seq 5-9")}); err != nil {
		t.Fatal(err)
	}
	sealed := func() bool {
		names, _ := m.Crash().ReadDir("/wal")
		return slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, ".wal") })
	}
	for deadline := time.Now().Add(5 * time.Second); !sealed(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("buffer 1 not sealed")
		}
	}
	crashed := m.Crash()
	close(sfs.release)
	cancel1()
	if err := <-done1; !errors.Is(err, wal.ErrFailed) {
		t.Fatalf("Run: %v", err)
	}

	l2, err := wal.Open(wal.Config{Dir: "/wal", FS: crashed, FlushInterval: time.Millisecond}, New(Config{Cluster: "c", AgentID: "a"}, bucket, db, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(ctx)
	done2 := make(chan error, 1)
	go func() { done2 <- l2.Run(ctx2) }()
	defer func() {
		cancel2()
		if err := <-done2; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for i, b := range []wal.Entry{entry(0, "b1 seq 0-4"), entry(5, "b2 seq 5-9")} {
		ack, err := l2.Append(ctx, []wal.Entry{b})
		if err != nil {
			t.Fatal(err)
		}
		res, err := ack.Wait(wctx)
		if err != nil {
			t.Fatal(err)
		}
		if r := res[0]; r.Err != nil || r.Duplicate || r.BaseOffset != int64(5*i) {
			t.Fatalf("retry of b%d: offset %d, duplicate %v, err %v; want offset %d", i+1, r.BaseOffset, r.Duplicate, r.Err, 5*i)
		}
	}
}
