package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/mem"
)

// rowsCatalog serves Batches from a fixed list of rows per partition, with
// PostgreSQL's semantics: the rows holding offsets ≥ from that start
// before maxBytes are covered (so at least the first), at most 1,000.
// Offsets are those of the rows, and batchesErr, if set, is Batches'
// error.
type rowsCatalog struct {
	catalog.Catalog
	rows       map[catalog.TopicPartition][]catalog.BatchRow
	batchesErr func(ctx context.Context) error
}

func (c *rowsCatalog) Offsets(_ context.Context, tp catalog.TopicPartition) (catalog.PartitionOffsets, error) {
	o := catalog.PartitionOffsets{}
	if rows := c.rows[tp]; len(rows) > 0 {
		o.LogStart, o.HighWatermark = rows[0].BaseOffset, rows[len(rows)-1].LastOffset+1
	}
	return o, nil
}

func (c *rowsCatalog) Batches(ctx context.Context, tp catalog.TopicPartition, from, maxBytes int64) ([]catalog.BatchRow, error) {
	if c.batchesErr != nil {
		if err := c.batchesErr(ctx); err != nil {
			return nil, err
		}
	}
	var (
		out    []catalog.BatchRow
		before int64
	)
	for _, r := range c.rows[tp] {
		if r.LastOffset < from {
			continue
		}
		if before >= max(maxBytes, 1) || len(out) == 1000 {
			break
		}
		out = append(out, r)
		before += r.ByteLength
	}
	return out, nil
}

// oneObject reads key's bytes whatever object is asked for, so that many
// partitions' objects cost the memory of one.
type oneObject struct {
	objstore.BucketReader
	key string
}

func (b oneObject) GetRange(ctx context.Context, _ string, off, n int64) (io.ReadCloser, error) {
	return b.BucketReader.GetRange(ctx, b.key, off, n)
}

// catchUpRig is an agent with the default read configuration whose
// partitions are read only through the catalog (nothing in the tail
// index): partition p's rows are rows 0… of object "p<p>", each a single
// one-record batch of rowBytes at offset k of the partition.
type catchUpRig struct {
	t      *testing.T
	a      *Agent
	cat    *rowsCatalog
	b      *countingBucket
	served int64
}

const catchUpRowBytes = 1 << 20

func newCatchUpRig(t *testing.T, partitions, rows int) *catchUpRig {
	t.Helper()
	batch := makeBatch(t, testBatch{records: 1})
	row := make([]byte, catchUpRowBytes)
	copy(row, batch) // the record bytes past the header are not read
	binary.BigEndian.PutUint32(row[batchLengthOffset:], uint32(len(row)-12))
	// Objects of over 8 MiB, an eighth of the catch-up cache, are read
	// by range, as compaction's merges are.
	obj := bytes.Repeat(row, max(rows, 9))
	mb := mem.New(nil)
	if err := mb.Put(context.Background(), "obj", bytes.NewReader(obj), int64(len(obj))); err != nil {
		t.Fatal(err)
	}
	cat := &rowsCatalog{rows: map[catalog.TopicPartition][]catalog.BatchRow{}}
	for p := range partitions {
		tp := catalog.TopicPartition{Partition: int32(p)}
		for k := range int64(rows) {
			cat.rows[tp] = append(cat.rows[tp], catalog.BatchRow{TopicPartition: tp, BaseOffset: k, LastOffset: k,
				ObjectKey: fmt.Sprint("p", p), ByteOffset: k * catchUpRowBytes, ByteLength: catchUpRowBytes, ObjectSize: int64(len(obj))})
		}
	}
	cfg := Config{}.withDefaults()
	m := newMetrics(nil)
	b := &countingBucket{BucketReader: oneObject{BucketReader: mb, key: "obj"}}
	a := &Agent{cfg: cfg, cat: cat, bucket: b, now: time.Now, m: m, tail: newTailIndex(time.Now),
		respBudget: newResponseBudget(1<<30, m),
		cache:      newRangeCache(cfg.ReadCacheBytes, 0, m.cache("tail")),
		catchup:    newRangeCache(cfg.CatchUpCacheBytes, cfg.CatchUpReads, m.cache("catchup"))}
	return &catchUpRig{t: t, a: a, cat: cat, b: b}
}

// fetch reads partition p from offset from as a consumer's fetch with the
// default 1 MiB per-partition budget does, checks that it got the row of
// that offset, and waits for the reads it started to land (as they would
// between a consumer's fetches).
func (r *catchUpRig) fetch(p int, from int64) {
	r.t.Helper()
	ctx := context.Background()
	var rec records
	hold := responseHold{b: r.a.respBudget, ctx: ctx, deadline: time.Now().Add(time.Second)}
	defer hold.release()
	tp := catalog.TopicPartition{Partition: int32(p)}
	if _, err := r.a.readBatches(ctx, tp, from, 1<<20, true, 0, &rec, &hold); err != nil {
		r.t.Fatalf("partition %d from %d: %v", p, from, err)
	}
	if got := rec.bytes(); len(got) != catchUpRowBytes || int64(binary.BigEndian.Uint64(got)) != from {
		r.t.Fatalf("partition %d from %d: %d bytes", p, from, len(got))
	}
	r.served += rec.n
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		r.a.catchup.mu.Lock()
		n := len(r.a.catchup.mu.inflight)
		r.a.catchup.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			r.t.Fatal("catch-up reads still in flight after 5s")
		}
	}
}

func (r *catchUpRig) report(rows int) (gets int64, ratio float64) {
	gets, read := r.b.gets.Load(), r.b.bytes.Load()
	ratio = float64(read) / float64(r.served)
	r.t.Logf("%d rows: %d MiB served, %d GETs (%.2f a row), %d MiB read (%.2f× served)",
		rows, r.served>>20, gets, float64(gets)/float64(rows), read>>20, ratio)
	return gets, ratio
}

// TestCatchUpReadsReadOnce: a consumer catching up on compacted objects
// (1 MiB rows of 40 MiB objects) reads about what it is served, in GETs of
// several rows, with the default catch-up settings. A cold read was two
// overlapping GETs (the prefetch of the next rows, then the row's own read
// spanning them again: 9 MiB read for 1 MiB served), each later fetch
// read its 4 MiB read-ahead of which 3 were cached (37 GETs and 149 MiB
// for 40 rows), and 40 partitions catching up together evicted each
// other's read-ahead before it was used (736 GETs and 2,776 MiB for 400
// rows).
func TestCatchUpReadsReadOnce(t *testing.T) {
	t.Run("cold", func(t *testing.T) {
		r := newCatchUpRig(t, 1, 10)
		r.fetch(0, 0)
		// The row and the 4 MiB read-ahead, in one GET.
		if gets, read := r.b.gets.Load(), r.b.bytes.Load(); gets != 1 || read != 5<<20 {
			t.Fatalf("a cold fetch made %d GETs of %d MiB, want one of 5 MiB", gets, read>>20)
		}
	})
	t.Run("sequential", func(t *testing.T) {
		const rows = 40
		r := newCatchUpRig(t, 1, rows)
		for k := range int64(rows) {
			r.fetch(0, k)
		}
		gets, ratio := r.report(rows)
		if ratio > 1.3 || float64(gets) > 0.5*rows {
			t.Fatalf("%d GETs and %.2f× the bytes served for %d rows, want at most %d and 1.3×", gets, ratio, rows, rows/2)
		}
	})
	t.Run("40 partitions", func(t *testing.T) {
		// A group reset to earliest: every partition is read in turn.
		const parts, rows = 40, 10
		r := newCatchUpRig(t, parts, rows)
		for k := range int64(rows) {
			for p := range parts {
				r.fetch(p, k)
			}
		}
		gets, ratio := r.report(parts * rows)
		if ratio > 1.3 || gets > parts*rows*11/10 {
			t.Fatalf("%d GETs and %.2f× the bytes served for %d rows, want at most %d and 1.3×", gets, ratio, parts*rows, parts*rows*11/10)
		}
	})
}

// TestCatchUpPartitionsCounted: a partition counts as catching up for one
// to two periods after its last catch-up read.
func TestCatchUpPartitionsCounted(t *testing.T) {
	var c catchUpPartitions
	t0 := time.Unix(1000, 0)
	tp := func(p int32) catalog.TopicPartition { return catalog.TopicPartition{Partition: p} }
	for p := range int32(4) {
		if n := c.add(tp(p), t0); n != int(p)+1 {
			t.Fatalf("%d partitions counted after adding %d", n, p+1)
		}
	}
	if n := c.add(tp(0), t0.Add(catchUpPeriod+time.Second)); n != 4 {
		t.Fatalf("%d partitions counted a period on, want 4", n)
	}
	if n := c.add(tp(0), t0.Add(2*catchUpPeriod+2*time.Second)); n != 1 {
		t.Fatalf("%d partitions counted two periods on, want 1 (the one read since)", n)
	}
	if n := c.add(tp(1), t0.Add(10*catchUpPeriod)); n != 1 {
		t.Fatalf("%d partitions counted after a long pause, want 1", n)
	}
}
