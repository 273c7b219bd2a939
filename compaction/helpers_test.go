package compaction_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent/flush"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/postgres"
	"github.com/floebroker/floe/catalog/sqlite"
	"github.com/floebroker/floe/compaction"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/mem"
	"github.com/floebroker/floe/segment"
)

const cluster = "test-cluster"

// clock is a settable clock ahead of the real one by skew, so catalogs
// that stamp with their own (real) clock stay comparable.
type clock struct {
	mu   sync.Mutex
	skew time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.skew)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skew += d
}

type env struct {
	t      *testing.T
	cat    compaction.Catalog
	bucket objstore.Bucket
	clk    *clock
	seq    int
}

// eachBackend runs fn against SQLite and (when FLOE_TEST_POSTGRES_URL is
// set; required under CI=true) PostgreSQL.
func eachBackend(t *testing.T, fn func(t *testing.T, e *env)) { backends(t, false, fn) }

// eachBackendOnClock is eachBackend with catalogs that stamp what they
// write (commits, producer state, leases) with the env's clock instead of
// the real one.
func eachBackendOnClock(t *testing.T, fn func(t *testing.T, e *env)) { backends(t, true, fn) }

func backends(t *testing.T, onClock bool, fn func(t *testing.T, e *env)) {
	options := func(clk *clock) catalog.Options {
		if onClock {
			return catalog.Options{Now: clk.Now}
		}
		return catalog.Options{}
	}
	t.Run("sqlite", func(t *testing.T) {
		ctx := context.Background()
		clk := &clock{}
		c, err := sqlite.Open(ctx, t.TempDir()+"/catalog.db", options(clk))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fn(t, newEnv(t, c, clk))
	})
	t.Run("postgres", func(t *testing.T) {
		u := os.Getenv("FLOE_TEST_POSTGRES_URL")
		if u == "" {
			if os.Getenv("CI") == "true" {
				t.Fatal("FLOE_TEST_POSTGRES_URL is not set (CI=true)")
			}
			t.Skip("FLOE_TEST_POSTGRES_URL is not set: skipping PostgreSQL (eval \"$(scripts/services.sh env)\")")
		}
		clk := &clock{}
		c, err := postgres.Open(context.Background(), freshSchema(t, u), options(clk))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fn(t, newEnv(t, c, clk))
	})
}

func newEnv(t *testing.T, c compaction.Catalog, clk *clock) *env {
	return &env{t: t, cat: c, bucket: mem.New(time.Now), clk: clk}
}

func freshSchema(t *testing.T, base string) string {
	ctx := context.Background()
	var b [6]byte
	rand.Read(b[:])
	schema := "floe_compaction_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
	})
	u, _ := url.Parse(base)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func (e *env) compactor(holder string, mod func(*compaction.Config)) *compaction.Compactor {
	cfg := compaction.Config{Cluster: cluster, Holder: holder, Interval: time.Second, MergeMinAge: time.Minute,
		TargetBytes: 64 << 10, GCGrace: 10 * time.Minute, OrphanInterval: time.Nanosecond, LeaseTTL: time.Minute, Shards: 4}
	if mod != nil {
		mod(&cfg)
	}
	c, err := compaction.New(cfg, e.cat, e.bucket, nil, nil, e.clk.Now)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) topic(name string, parts int32, configs map[string]string) catalog.Topic {
	tp, err := e.cat.(catalog.Catalog).CreateTopic(context.Background(), catalog.TopicSpec{Name: name, Partitions: parts, Configs: configs})
	if err != nil {
		e.t.Fatal(err)
	}
	return tp
}

// makeBatch encodes an uncompressed RecordBatch v2 of n keyed records.
func makeBatch(n int, ts int64, tag string) []byte {
	var recs []byte
	for i := range n {
		r := kmsg.Record{OffsetDelta: int32(i), TimestampDelta: int32(i),
			Key: fmt.Appendf(nil, "k-%s-%d", tag, i), Value: bytes.Repeat([]byte(tag), 20),
			Headers: []kmsg.Header{{Key: "h", Value: []byte(tag)}}}
		r.Length = int32(len(r.AppendTo(nil)) - 1) // what follows the (one byte) zero length
		body := r.AppendTo(nil)
		recs = append(recs, body...)
	}
	rb := kmsg.RecordBatch{Magic: 2, LastOffsetDelta: int32(n - 1), FirstTimestamp: ts, MaxTimestamp: ts + int64(n-1),
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(n), Records: recs}
	raw := encodeBatch(&rb)
	return raw
}

// flushSegment writes one multi-partition segment, as the flusher does:
// batches per partition, put, commit.
func (e *env) flushSegment(tps []catalog.TopicPartition, perPart, recs int, ts int64) {
	e.t.Helper()
	ctx := context.Background()
	e.seq++
	w := segment.NewWriter(segment.Header{AgentID: "t", Created: time.Now()})
	var refs []catalog.BatchRef
	for _, tp := range tps {
		for range perPart {
			b := makeBatch(recs, ts, fmt.Sprintf("%d-%d", e.seq, tp.Partition))
			w.Add(tp, b, segment.BatchMeta{Records: int32(recs), FirstTimestamp: ts, MaxTimestamp: ts + int64(recs-1), ProducerID: -1})
			refs = append(refs, catalog.BatchRef{TopicPartition: tp, OffsetSpan: int32(recs), Records: int32(recs),
				FirstTimestamp: ts, MaxTimestamp: ts + int64(recs-1), ProducerID: -1})
		}
	}
	obj, pl := w.Finish()
	seg := catalog.Segment{Key: flush.ObjectKey(cluster, fmt.Sprintf("seg%06d", e.seq)), Size: int64(len(obj))}
	order := w.Order()
	for _, i := range order {
		r := refs[i]
		r.ByteOffset, r.ByteLength = pl[i].ByteOffset, pl[i].ByteLength
		seg.Batches = append(seg.Batches, r)
	}
	if err := e.bucket.Put(ctx, seg.Key, bytes.NewReader(obj), int64(len(obj))); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.cat.(catalog.Catalog).CommitSegment(ctx, seg); err != nil {
		e.t.Fatal(err)
	}
}

// readBack is what a consumer sees.
type readBatch struct {
	Offset int64
	Bytes  string // the batch, base offset patched
}

// consume reads tp's batches from the first starting at or after its log
// start.
func (e *env) consume(tp catalog.TopicPartition) []readBatch {
	e.t.Helper()
	out, _ := e.read(tp, false)
	return out
}

// read reads tp from its log start the way the agent's fetch does; with
// straddling, the batch holding a log start inside it is read too (a
// consumer skips its records below the log start).
func (e *env) read(tp catalog.TopicPartition, straddling bool) (out []readBatch, logStart int64) {
	e.t.Helper()
	ctx := context.Background()
	o, err := e.cat.Offsets(ctx, tp)
	if err != nil {
		e.t.Fatal(err)
	}
	from := o.LogStart
	for from < o.HighWatermark {
		rows, err := e.cat.(catalog.Catalog).Batches(ctx, tp, from, 1<<20)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(rows) == 0 {
			break
		}
		for _, r := range rows {
			rc, err := e.bucket.GetRange(ctx, r.ObjectKey, r.ByteOffset, r.ByteLength)
			if err != nil {
				e.t.Fatalf("row %+v: %v", r, err)
			}
			var buf bytes.Buffer
			buf.ReadFrom(rc)
			rc.Close()
			b := buf.Bytes()
			off := r.BaseOffset
			for len(b) > 0 {
				n := 12 + int(binary.BigEndian.Uint32(b[8:]))
				batch := append([]byte(nil), b[:n]...)
				binary.BigEndian.PutUint64(batch, uint64(off))
				next := off + int64(binary.BigEndian.Uint32(b[23:])) + 1
				if off >= from || (straddling && next > from) {
					out = append(out, readBatch{off, string(batch)})
				}
				off = next
				b = b[n:]
			}
			if off != r.LastOffset+1 {
				e.t.Fatalf("row %d-%d walks to %d", r.BaseOffset, r.LastOffset, off)
			}
			from = r.LastOffset + 1
		}
	}
	return out, o.LogStart
}

func (e *env) stats() catalog.CompactionStats {
	s, err := e.cat.CompactionStats(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) bucketObjects() (n int, size int64) {
	for o, err := range e.bucket.List(context.Background(), "") {
		if err != nil {
			e.t.Fatal(err)
		}
		n++
		size += o.Size
	}
	return n, size
}

func tps(t catalog.Topic) []catalog.TopicPartition {
	var out []catalog.TopicPartition
	for p := range t.Partitions {
		out = append(out, catalog.TopicPartition{TopicID: t.ID, Partition: p})
	}
	return out
}

func strconvI(n int64) string { return fmt.Sprint(n) }

// encodeBatch encodes rb with its length and CRC-32C filled in, as a
// producer sends it.
func encodeBatch(rb *kmsg.RecordBatch) []byte {
	raw := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return raw
}
