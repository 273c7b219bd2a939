package segment

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func tp(topic byte, part int32) catalog.TopicPartition {
	return catalog.TopicPartition{TopicID: catalog.TopicID{topic}, Partition: part}
}

// sample writes the small segment the golden file holds: three partitions
// added out of order, one of them twice, one idempotent batch.
func sample() (*Writer, []byte, []Placement) {
	w := NewWriter(Header{AgentID: "agent-1", Created: time.Unix(1700000000, 123456789).UTC()})
	w.Add(tp(2, 0), []byte("bbbb"), BatchMeta{Records: 2, FirstTimestamp: 20, MaxTimestamp: 21, ProducerID: -1})
	w.Add(tp(1, 1), []byte("aa"), BatchMeta{Records: 1, FirstTimestamp: 10, MaxTimestamp: 10, ProducerID: 7})
	w.Add(tp(2, 0), []byte("ccc"), BatchMeta{Records: 3, FirstTimestamp: 15, MaxTimestamp: 30, ProducerID: 5})
	w.Add(tp(1, 0), []byte("d"), BatchMeta{Records: 1, FirstTimestamp: 5, MaxTimestamp: 6, ProducerID: -1})
	obj, pl := w.Finish()
	return w, obj, pl
}

func TestGolden(t *testing.T) {
	_, obj, _ := sample()
	path := filepath.Join("testdata", "sample.seg")
	if *update {
		if err := os.WriteFile(path, obj, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./segment -update to create it)", err)
	}
	if !bytes.Equal(obj, want) {
		t.Fatalf("writer output differs from %s (format change? bump Version and run with -update)\n got %x\nwant %x", path, obj, want)
	}
}

func TestWriterLayout(t *testing.T) {
	w, obj, pl := sample()
	wantPl := []Placement{
		{TopicPartition: tp(2, 0), ByteOffset: HeaderSize + 3, ByteLength: 4},
		{TopicPartition: tp(1, 1), ByteOffset: HeaderSize + 1, ByteLength: 2},
		{TopicPartition: tp(2, 0), ByteOffset: HeaderSize + 7, ByteLength: 3},
		{TopicPartition: tp(1, 0), ByteOffset: HeaderSize, ByteLength: 1},
	}
	if !reflect.DeepEqual(pl, wantPl) {
		t.Fatalf("placements\n got %+v\nwant %+v", pl, wantPl)
	}
	if got := w.Order(); !reflect.DeepEqual(got, []int{3, 1, 0, 2}) {
		t.Fatalf("Order() = %v", got)
	}
	if body := string(obj[HeaderSize : HeaderSize+10]); body != "daabbbbccc" {
		t.Fatalf("body = %q", body)
	}
	for i, p := range pl {
		if got := obj[p.ByteOffset : p.ByteOffset+p.ByteLength]; !bytes.Equal(got, w.adds[i].batch) {
			t.Fatalf("placement %d points at %q", i, got)
		}
	}
	idx, err := DecodeIndex(obj, int64(len(obj)))
	if err != nil {
		t.Fatal(err)
	}
	want := &Index{
		Header: Header{AgentID: "agent-1", Created: time.Unix(1700000000, 123456789).UTC()},
		Runs: []Run{
			{TopicPartition: tp(1, 0), ByteOffset: HeaderSize, ByteLength: 1, Batches: 1, Records: 1, FirstTimestamp: 5, LastTimestamp: 6, MinProducerID: -1, MaxProducerID: -1},
			{TopicPartition: tp(1, 1), ByteOffset: HeaderSize + 1, ByteLength: 2, Batches: 1, Records: 1, FirstTimestamp: 10, LastTimestamp: 10, MinProducerID: 7, MaxProducerID: 7},
			{TopicPartition: tp(2, 0), ByteOffset: HeaderSize + 3, ByteLength: 7, Batches: 2, Records: 5, FirstTimestamp: 15, LastTimestamp: 30, MinProducerID: 5, MaxProducerID: 5},
		},
	}
	if !reflect.DeepEqual(idx, want) {
		t.Fatalf("index\n got %+v\nwant %+v", idx, want)
	}
	if r, ok := idx.Run(tp(1, 1)); !ok || r.ByteOffset != HeaderSize+1 {
		t.Fatalf("Run(1/1) = %+v, %v", r, ok)
	}
	if _, ok := idx.Run(tp(9, 9)); ok {
		t.Fatal("Run found a partition the object does not hold")
	}
}

func TestWriterDeterministicAndAgentIndependent(t *testing.T) {
	build := func(agent string) ([]byte, []Placement) {
		w := NewWriter(Header{AgentID: agent, Created: time.Unix(5, 0)})
		for i := range 50 {
			w.Add(tp(byte(i%3), int32(i%4)), bytes.Repeat([]byte{byte(i)}, i+1), BatchMeta{Records: 1, ProducerID: -1})
		}
		return w.Finish()
	}
	a1, p1 := build("a")
	a2, p2 := build("a")
	if !bytes.Equal(a1, a2) {
		t.Fatal("same input, different bytes")
	}
	b, pb := build("a-much-longer-agent-id")
	if !reflect.DeepEqual(p1, pb) || !reflect.DeepEqual(p1, p2) {
		t.Fatal("agent id changed placements")
	}
	if !bytes.Equal(a1[:p1[len(p1)-1].ByteOffset], b[:pb[len(pb)-1].ByteOffset]) {
		t.Fatal("agent id changed header or body bytes")
	}
}

func TestEmptySegment(t *testing.T) {
	obj, pl := NewWriter(Header{}).Finish()
	if len(pl) != 0 {
		t.Fatal("placements for no adds")
	}
	idx, err := DecodeIndex(obj, int64(len(obj)))
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Runs) != 0 || idx.Header.AgentID != "" {
		t.Fatalf("index %+v", idx)
	}
}

// countingBucket is the read half of an in-memory bucket that counts range
// reads.
type countingBucket struct {
	objs   map[string][]byte
	ranges int
}

func (b *countingBucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return b.GetRange(ctx, key, 0, -1)
}

func (b *countingBucket) GetRange(_ context.Context, key string, off, length int64) (io.ReadCloser, error) {
	b.ranges++
	o, ok := b.objs[key]
	if !ok {
		return nil, objstore.ErrNotExist
	}
	if off >= int64(len(o)) && !(off == 0 && len(o) == 0) {
		return nil, objstore.ErrInvalidRange
	}
	end := int64(len(o))
	if length >= 0 && off+length < end {
		end = off + length
	}
	return io.NopCloser(bytes.NewReader(o[off:end])), nil
}

func (b *countingBucket) Stat(_ context.Context, key string) (objstore.ObjectInfo, error) {
	o, ok := b.objs[key]
	if !ok {
		return objstore.ObjectInfo{}, objstore.ErrNotExist
	}
	return objstore.ObjectInfo{Key: key, Size: int64(len(o))}, nil
}

func (b *countingBucket) List(context.Context, string) iter.Seq2[objstore.ObjectInfo, error] {
	return func(func(objstore.ObjectInfo, error) bool) {}
}

var _ objstore.BucketReader = (*countingBucket)(nil)

func TestReadIndexRangeReads(t *testing.T) {
	for _, tc := range []struct {
		name       string
		partitions int
		batchBytes int
		wantReads  int
	}{
		{"small object one read", 3, 10, 1},
		{"large body small index one read", 2, 100 << 10, 1},
		{"index larger than the guess two reads", 1000, 10, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWriter(Header{AgentID: "x", Created: time.Unix(1, 0)})
			for p := range tc.partitions {
				w.Add(tp(1, int32(p)), make([]byte, tc.batchBytes), BatchMeta{Records: 1, ProducerID: -1})
			}
			obj, _ := w.Finish()
			b := &countingBucket{objs: map[string][]byte{"k": obj}}
			idx, err := ReadIndex(context.Background(), b, "k", int64(len(obj)))
			if err != nil {
				t.Fatal(err)
			}
			if len(idx.Runs) != tc.partitions {
				t.Fatalf("%d runs", len(idx.Runs))
			}
			if b.ranges != tc.wantReads {
				t.Fatalf("%d range reads, want %d", b.ranges, tc.wantReads)
			}
		})
	}
}

func TestReadIndexErrors(t *testing.T) {
	_, obj, _ := sample()
	b := &countingBucket{objs: map[string][]byte{"k": obj}}
	ctx := context.Background()
	if _, err := ReadIndex(ctx, b, "missing", int64(len(obj))); !errors.Is(err, objstore.ErrNotExist) {
		t.Fatalf("missing object: %v", err)
	}
	// A size larger than the object: the footer is not where the caller
	// says, which is corruption of the catalog or the object.
	_, err := ReadIndex(ctx, b, "k", int64(len(obj))+5)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Key != "k" {
		t.Fatalf("wrong size: %v", err)
	}
	if _, err := ReadIndex(ctx, b, "k", 3); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tiny size: %v", err)
	}
}

// corruptions are edits of the sample object that DecodeIndex must reject.
func corruptions() []struct {
	name string
	edit func(o []byte) []byte
} {
	put64 := func(at func(o []byte) int, v uint64) func(o []byte) []byte {
		return func(o []byte) []byte { le.PutUint64(o[at(o):], v); return o }
	}
	foot := func(off int) func(o []byte) int { return func(o []byte) int { return len(o) - FooterSize + off } }
	return []struct {
		name string
		edit func(o []byte) []byte
	}{
		{"bad magic", func(o []byte) []byte { o[len(o)-1] ^= 1; return o }},
		{"bad version", func(o []byte) []byte { o[len(o)-12] = 9; return o }},
		{"index crc", func(o []byte) []byte { o[len(o)-FooterSize-1] ^= 1; return o }},
		{"index offset huge", put64(foot(0), 1<<63)},
		{"index offset in header", put64(foot(0), 3)},
		{"index length huge", put64(foot(8), 1<<62)},
		{"index length short", put64(foot(8), 4)},
		{"truncated", func(o []byte) []byte { return o[:len(o)-1] }},
		{"too short", func(o []byte) []byte { return o[:20] }},
	}
}

func TestDecodeIndexCorrupt(t *testing.T) {
	for _, tc := range corruptions() {
		t.Run(tc.name, func(t *testing.T) {
			_, obj, _ := sample()
			o := tc.edit(obj)
			_, err := DecodeIndex(o, int64(len(o)))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

// resealed rewrites the index CRC so edits of the index itself reach the
// structural checks.
func resealed(o []byte) []byte {
	ioff := le.Uint64(o[len(o)-FooterSize:])
	le.PutUint32(o[len(o)-FooterSize+16:], crc32Index(o[ioff:len(o)-FooterSize]))
	return o
}

func TestDecodeIndexStructure(t *testing.T) {
	_, base, _ := sample()
	ioff := int(le.Uint64(base[len(base)-FooterSize:]))
	runs := ioff + indexFixed + len("agent-1") // first run
	for _, tc := range []struct {
		name string
		edit func(o []byte)
	}{
		{"agent id overruns", func(o []byte) { le.PutUint16(o[ioff+8:], 60000) }},
		{"run count too large", func(o []byte) { le.PutUint32(o[runs-4:], 1<<31) }},
		{"run count too small", func(o []byte) { le.PutUint32(o[runs-4:], 2) }},
		{"negative partition", func(o []byte) { le.PutUint32(o[runs+16:], 1<<31) }},
		{"run in header", func(o []byte) { le.PutUint64(o[runs+20:], 0) }},
		{"run past body", func(o []byte) { le.PutUint64(o[runs+28:], 1<<40) }},
		{"run length overflow", func(o []byte) { le.PutUint64(o[runs+28:], 1<<63-1) }},
		{"zero batches", func(o []byte) { le.PutUint32(o[runs+36:], 0) }},
		{"negative records", func(o []byte) { le.PutUint64(o[runs+40:], 1<<63) }},
		{"half producer range", func(o []byte) { le.PutUint64(o[runs+64:], 3) }},
		{"runs out of order", func(o []byte) { o[runs+RunSize] = 0 }},
		{"runs overlap", func(o []byte) { le.PutUint64(o[runs+RunSize+20:], HeaderSize) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := bytes.Clone(base)
			tc.edit(o)
			o = resealed(o)
			_, err := DecodeIndex(o, int64(len(o)))
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want *CorruptError", err)
			}
			if ce.Offset < int64(ioff) {
				t.Fatalf("offset %d before the index at %d: %v", ce.Offset, ioff, err)
			}
		})
	}
}

func TestCorruptErrorMessage(t *testing.T) {
	err := &CorruptError{Key: "v1/ab/c/x.seg", Offset: 42, Reason: "bad magic"}
	if got, want := err.Error(), "segment: corrupt object v1/ab/c/x.seg at offset 42: bad magic"; got != want {
		t.Fatalf("%q", got)
	}
	if !errors.Is(fmt.Errorf("wrap: %w", err), ErrCorrupt) {
		t.Fatal("not ErrCorrupt")
	}
}
