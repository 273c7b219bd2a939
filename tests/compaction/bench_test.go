package compaction_test

import (
	"context"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/sqlite"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/file"
	"github.com/floebroker/floe/tests/floetest"
)

// countingBucket counts GETs.
type countingBucket struct {
	objstore.Bucket
	gets atomic.Int64
}

func (b *countingBucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	b.gets.Add(1)
	return b.Bucket.Get(ctx, key)
}

func (b *countingBucket) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	b.gets.Add(1)
	return b.Bucket.GetRange(ctx, key, off, n)
}

// BenchmarkCatchUp measures a catch-up read of a topic written in small
// flushes, before and after merging, and the merge itself (SQLite, a
// directory bucket; one agent):
//
//	go test -run - -bench CatchUp -benchtime 1x ./tests/compaction/
func BenchmarkCatchUp(b *testing.B) {
	const (
		records = 40000
		size    = 512 // bytes per value: ~20 MiB
		perReq  = 50  // one flush each
		parts   = 4
	)
	for range b.N {
		dir := b.TempDir()
		cat, err := sqlite.Open(context.Background(), filepath.Join(dir, "catalog.db"), catalog.Options{})
		if err != nil {
			b.Fatal(err)
		}
		fb, err := file.New(filepath.Join(dir, "bucket"))
		if err != nil {
			b.Fatal(err)
		}
		bkt := &countingBucket{Bucket: fb}
		e := newEnvB(b, floetest.Options{Catalog: cat, Bucket: bkt})
		cl := e.a.Client(b, kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
		createTopicB(b, cl, "bench", parts)
		val := make([]byte, size)
		ctx := context.Background()
		for i := 0; i < records; i += perReq {
			var rs []*kgo.Record
			for range perReq {
				rs = append(rs, &kgo.Record{Topic: "bench", Value: val})
			}
			if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
				b.Fatal(err)
			}
		}
		s0, _ := e.cat.CompactionStats(ctx)
		mib := float64(s0.LiveBytes) / (1 << 20)
		read := func(label string) {
			e.restart(b)
			g0 := bkt.gets.Load()
			start := time.Now()
			n := consumeCount(b, e.a, "bench", records)
			d := time.Since(start)
			gets := bkt.gets.Load() - g0
			b.ReportMetric(mib/d.Seconds(), label+"_MiB/s")
			b.ReportMetric(float64(gets)/(mib/1024), label+"_GETs/GiB")
			b.Logf("%s: %d records, %.1f MiB in %v (%.1f MiB/s), %d GETs", label, n, mib, d, mib/d.Seconds(), gets)
		}
		read("unmerged")
		start := time.Now()
		if err := e.c.RunOnce(ctx); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		s1, _ := e.cat.CompactionStats(ctx)
		b.ReportMetric(mib/d.Seconds(), "merge_MiB/s")
		b.Logf("merge: %.1f MiB in %v (%.1f MiB/s), rows %d -> %d", mib, d, mib/d.Seconds(), s0.Rows, s1.Rows)
		read("merged")
		e.a.Stop()
		cat.Close()
		fb.Close()
	}
}
