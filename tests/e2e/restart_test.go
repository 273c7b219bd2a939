package e2e

import (
	"context"
	"encoding/binary"
	"io/fs"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func newClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// consumeAll reads topic from the start until it has want records or the
// end offsets are reached, and returns the values by partition in order,
// failing on any gap in the offsets.
func consumeAll(t *testing.T, ctx context.Context, addr, topic string) map[int32][]uint64 {
	t.Helper()
	adm := kadm.NewClient(newClient(t, addr))
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("list end offsets: %v", err)
	}
	want := map[int32]int64{}
	var total int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset %d: %v", o.Partition, o.Err)
		}
		want[o.Partition] = o.Offset
		total += o.Offset
	})
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	out := map[int32][]uint64{}
	var got int64
	for got < total {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d: %v", got, total, ctx.Err())
		}
		fs.EachError(func(_ string, p int32, err error) { t.Fatalf("fetch partition %d: %v", p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset != int64(len(out[r.Partition])) {
				t.Fatalf("partition %d: offset %d after %d records (gap)", r.Partition, r.Offset, len(out[r.Partition]))
			}
			out[r.Partition] = append(out[r.Partition], binary.BigEndian.Uint64(r.Value))
			got++
		})
	}
	return out
}

// TestDevRestartKeepsData stops `floe dev` with SIGTERM and starts it again
// on the same --data: every acknowledged record is still there.
func TestDevRestartKeepsData(t *testing.T) {
	data := t.TempDir()
	ctx := testCtx(t, 2*time.Minute)
	p := startDev(t, data, "127.0.0.1:0")
	adm := kadm.NewClient(newClient(t, p.Addr))
	if _, err := adm.CreateTopic(ctx, 3, -1, nil, "keep"); err != nil {
		t.Fatal(err)
	}
	prod := newClient(t, p.Addr, kgo.DefaultProduceTopic("keep"))
	const n = 3000
	for i := 0; i < n; i++ {
		r := &kgo.Record{Key: binary.BigEndian.AppendUint32(nil, uint32(i)), Value: binary.BigEndian.AppendUint64(nil, uint64(i))}
		if i%500 == 0 {
			if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		prod.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	prod.Close()
	adm.Close()
	p.Stop()
	checkOwnerOnly(t, data)

	for round := 0; round < 2; round++ {
		p = startDev(t, data, "127.0.0.1:0")
		got := consumeAll(t, ctx, p.Addr, "keep")
		seen := make(map[uint64]bool, n)
		for _, vs := range got {
			for _, v := range vs {
				if seen[v] {
					t.Fatalf("value %d stored twice", v)
				}
				seen[v] = true
			}
		}
		if len(seen) != n {
			t.Fatalf("after restart %d: %d of %d records", round+1, len(seen), n)
		}
		p.Stop()
	}
}

// checkOwnerOnly fails t if anything floe created under data (the WAL,
// the file bucket's objects, the SQLite catalog) is open to other users:
// they hold every record and the catalog.
func checkOwnerOnly(t *testing.T, data string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == data {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: open to other users", path, info.Mode().Perm())
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("only %d entries under %s", n, data)
	}
}

// TestKillDuringIdempotentProduce kills the agent with SIGKILL while an
// idempotent producer runs, restarts it on the same data and address, and
// lets the producer retry: every acknowledged record is read back, and no
// record is stored twice.
func TestKillDuringIdempotentProduce(t *testing.T) {
	data := t.TempDir()
	addr := freePort(t)
	ctx := testCtx(t, 3*time.Minute)
	p := startDev(t, data, addr)
	adm := kadm.NewClient(newClient(t, addr))
	if _, err := adm.CreateTopic(ctx, 4, -1, nil, "kill"); err != nil {
		t.Fatal(err)
	}
	adm.Close()

	prod := newClient(t, addr,
		kgo.DefaultProduceTopic("kill"),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
	)
	const n = 200000
	var (
		mu       sync.Mutex
		acked    = make(map[uint64]bool)
		failures []error
		wg       sync.WaitGroup
	)
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; i < n; i++ {
			r := &kgo.Record{Key: binary.BigEndian.AppendUint32(nil, uint32(i%97)), Value: binary.BigEndian.AppendUint64(nil, uint64(i))}
			wg.Add(1)
			prod.Produce(ctx, r, func(r *kgo.Record, err error) {
				defer wg.Done()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failures = append(failures, err)
					return
				}
				acked[binary.BigEndian.Uint64(r.Value)] = true
			})
		}
	}()
	// Kill mid-stream, once some records are acknowledged and more are in
	// flight.
	for {
		mu.Lock()
		k := len(acked)
		mu.Unlock()
		if k > 20000 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("nothing acknowledged")
		}
		time.Sleep(100 * time.Microsecond)
	}
	p.Kill()
	mu.Lock()
	ackedAtKill := len(acked)
	mu.Unlock()
	t.Logf("killed with %d of %d records acknowledged", ackedAtKill, n)
	if ackedAtKill == n {
		t.Fatal("everything was acknowledged before the kill; the test proves nothing")
	}
	p = startDev(t, data, addr)
	<-produced
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("producer did not finish after the restart")
	}
	mu.Lock()
	if len(failures) > 0 {
		t.Errorf("%d produces failed after retries; first: %v", len(failures), failures[0])
	}
	ackedCount := len(acked)
	mu.Unlock()

	got := consumeAll(t, ctx, addr, "kill")
	seen := make(map[uint64]int, n)
	for part, vs := range got {
		// The key (i%97) decides the partition; per key, the stored order
		// must be the produce order.
		last := map[uint64]uint64{}
		for _, v := range vs {
			seen[v]++
			if l, ok := last[v%97]; ok && v <= l {
				t.Errorf("partition %d: value %d stored after %d (same key)", part, v, l)
			}
			last[v%97] = v
		}
	}
	for v, c := range seen {
		if c > 1 {
			t.Errorf("value %d stored %d times", v, c)
		}
	}
	missing := 0
	for v := range acked {
		if seen[v] == 0 {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d acknowledged records missing after the restart", missing)
	}
	t.Logf("%d acknowledged, %d stored, none duplicated", ackedCount, len(seen))
	p.Stop()
}
