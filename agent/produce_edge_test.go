package agent_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/sqlite"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/file"
	"github.com/floebroker/floe/tests/floetest"
)

// countingCatalog counts topic reads by name.
type countingCatalog struct {
	catalog.Catalog
	topicReads atomic.Int64
}

func (c *countingCatalog) Topic(ctx context.Context, name string) (catalog.Topic, error) {
	c.topicReads.Add(1)
	return c.Catalog.Topic(ctx, name)
}

// TestProduceUnknownPartitionsReadTheCatalogOnce: a produce naming many
// partitions past the topic's count (a few bytes each, no records needed)
// re-reads the topic at most once, not once per partition entry, which
// would let one small request queue thousands of catalog reads.
func TestProduceUnknownPartitionsReadTheCatalogOnce(t *testing.T) {
	dir := t.TempDir()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "catalog.db"), catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	cat := &countingCatalog{Catalog: db}
	a := floetest.Start(t, floetest.Options{Dir: dir, Catalog: cat})
	createTopic(t, a, "few", 1, nil)
	c := floetest.Dial(t, a.Addr)

	const n = 500
	req := produceReq("few", -1, floetest.Batch(floetest.BatchSpec{Records: 1}))
	for i := 0; i < n; i++ {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition = int32(5 + i%3)
		req.Topics[0].Partitions = append(req.Topics[0].Partitions, rp)
	}
	// Warm the cache, then count.
	produce(t, c, produceReq("few", -1, floetest.Batch(floetest.BatchSpec{Records: 1})))
	before := cat.topicReads.Load()
	ps := produce(t, c, req)
	reads := cat.topicReads.Load() - before
	wantCode(t, "partition 0", ps[0].ErrorCode, nil)
	for _, p := range ps[1:] {
		wantCode(t, "unknown partition", p.ErrorCode, kerr.UnknownTopicOrPartition)
	}
	if reads > 2 {
		t.Fatalf("one produce request with %d unknown partitions read the topic %d times", n, reads)
	}

	// Partitions added behind the agent's cache (as by another agent)
	// are still found by that one read.
	if err := db.CreatePartitions(context.Background(), "few", 3); err != nil {
		t.Fatal(err)
	}
	grown := produceReq("few", -1, nil, nil, floetest.Batch(floetest.BatchSpec{Records: 1}))
	grown.Topics[0].Partitions = grown.Topics[0].Partitions[2:]
	grown.Topics[0].Partitions = append(grown.Topics[0].Partitions, req.Topics[0].Partitions[1:]...)
	ps = produce(t, c, grown)
	wantCode(t, "partition 2, added behind the cache", ps[0].ErrorCode, nil)
	for _, p := range ps[1:] {
		wantCode(t, "unknown partition", p.ErrorCode, kerr.UnknownTopicOrPartition)
	}
}

// lyingDeltasBatch is a batch, compressed with codec unless it is
// NoCompression, whose header is consistent (count, lastOffsetDelta,
// timestamps, CRC) but whose records claim the offset deltas given (any
// varint, as a hand-written client may send), with key "k", value "v" and
// timestamps firstTS, firstTS+1, ...
func lyingDeltasBatch(t *testing.T, codec kgo.CompressionCodec, firstTS int64, deltas ...int64) []byte {
	t.Helper()
	var recs []byte
	for i, d := range deltas {
		body := []byte{0} // attributes
		body = binary.AppendVarint(body, int64(i))
		body = binary.AppendVarint(body, d)
		body = append(binary.AppendVarint(body, 1), 'k')
		body = append(binary.AppendVarint(body, 1), 'v')
		body = binary.AppendVarint(body, 0) // headers
		recs = append(binary.AppendVarint(recs, int64(len(body))), body...)
	}
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1, Magic: 2,
		LastOffsetDelta: int32(len(deltas) - 1),
		FirstTimestamp:  firstTS, MaxTimestamp: firstTS + int64(len(deltas)-1),
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: int32(len(deltas)), Records: recs,
	}
	if codec != kgo.NoCompression() {
		comp, err := kgo.DefaultCompressor(codec)
		if err != nil {
			t.Fatal(err)
		}
		out, typ := comp.Compress(new(bytes.Buffer), recs)
		b.Records, b.Attributes = append([]byte(nil), out...), int16(typ)
	}
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	return floetest.FixCRC(raw)
}

// TestProduceRefusesOddOffsetDeltas: a batch whose records are not
// numbered 0, 1, ... lastOffsetDelta is refused with INVALID_RECORD —
// every uncompressed one, and a compressed one on a compacted topic
// (whose batches produce decompresses). Log compaction and timestamp
// lookups take a record's offset from its delta: one beyond int32 made
// every later log compaction pass of its partition fail at that batch,
// and one inside int32 would place the record in another batch's range.
func TestProduceRefusesOddOffsetDeltas(t *testing.T) {
	a := startBadInputAgent(t, false)
	compact := "compact"
	createTopic(t, a, "odd", 1, nil)
	createTopic(t, a, "oddc", 1, map[string]*string{"cleanup.policy": &compact})
	c := floetest.Dial(t, a.Addr)
	odd := [][]int64{{1}, {-1}, {1 << 33}, {math.MinInt64}, {0, 0}, {1, 0}, {0, 2}, {0, 1000}, {0, math.MaxInt32}, {0, 1, 1}}
	for _, topic := range []string{"odd", "oddc"} {
		for _, codec := range []string{"uncompressed", "gzip"} {
			cc := kgo.NoCompression()
			if codec == "gzip" {
				if topic == "odd" {
					continue // stored as sent, not decompressed (COMPATIBILITY.md)
				}
				cc = kgo.GzipCompression()
			}
			for _, deltas := range odd {
				ps := produce(t, c, produceReq(topic, -1, lyingDeltasBatch(t, cc, 1000, deltas...)))
				wantCode(t, fmt.Sprintf("%s, %s, offset deltas %v", topic, codec, deltas), ps[0].ErrorCode, kerr.InvalidRecord)
			}
			ps := produce(t, c, produceReq(topic, -1, lyingDeltasBatch(t, cc, 1000, 0, 1, 2)))
			wantCode(t, fmt.Sprintf("%s, %s, offset deltas 0 1 2", topic, codec), ps[0].ErrorCode, nil)
		}
		end, err := a.Catalog.Offsets(ctxT(t), catalog.TopicPartition{TopicID: topicID(t, a, topic), Partition: 0})
		if want := map[string]int64{"odd": 3, "oddc": 6}[topic]; err != nil || end.HighWatermark != want {
			t.Fatalf("%s: end offset %d (%v), want %d: only the honest batches stored", topic, end.HighWatermark, err, want)
		}
	}
}

// TestListOffsetsIgnoresLyingRecordOffsets: a timestamp lookup answers an
// offset inside the batch's own range (or none), never one a record's
// offset delta claims outside it — past the high watermark or inside
// another producer's batch.
func TestListOffsetsIgnoresLyingRecordOffsets(t *testing.T) {
	a := startBadInputAgent(t, true)
	createTopic(t, a, "liar", 1, nil)
	c := floetest.Dial(t, a.Addr)
	ps := produce(t, c, produceReq("liar", -1, floetest.Batch(floetest.BatchSpec{Records: 2, FirstTimestamp: 1000})))
	wantCode(t, "honest batch", ps[0].ErrorCode, nil)
	for i, deltas := range [][]int64{{0, 1000}, {0, -2}, {0, math.MaxInt32}} {
		ts := 2000 + 10*int64(i)
		// Produce refuses such records in uncompressed batches, but
		// does not decompress other topics' batches to look.
		ps = produce(t, c, produceReq("liar", -1, lyingDeltasBatch(t, kgo.GzipCompression(), ts, deltas...)))
		wantCode(t, "lying batch", ps[0].ErrorCode, nil)
		base := ps[0].BaseOffset
		end := listOffsets(t, c, "liar", 1, -1)[0]
		if got := listOffsets(t, c, "liar", 1, ts+1)[0]; got != -1 && (got < base || got > end) {
			t.Fatalf("deltas %v: the record at timestamp %d of the batch at %d-%d is answered at offset %d", deltas, ts+1, base, end-1, got)
		}
		if got := listOffsets(t, c, "liar", 1, -3)[0]; got < base || got > end {
			t.Fatalf("deltas %v: max timestamp answered at offset %d, outside %d-%d", deltas, got, base, end)
		}
	}
}

// slowBucket delays every Put while slow is set.
type slowBucket struct {
	objstore.Bucket
	slow atomic.Bool
}

func (b *slowBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if b.slow.Load() {
		time.Sleep(time.Second)
	}
	return b.Bucket.Put(ctx, key, r, size)
}

// TestTimedOutProduceRetryIsADuplicate: an idempotent produce answered
// REQUEST_TIMED_OUT (its segment was still uploading) is committed
// anyway; the client's retry of the same batch is then a duplicate
// answered with the original offset, never a second copy.
func TestTimedOutProduceRetryIsADuplicate(t *testing.T) {
	dir := t.TempDir()
	fb, err := file.New(filepath.Join(dir, "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fb.Close() })
	bucket := &slowBucket{Bucket: fb}
	a := floetest.Start(t, floetest.Options{Dir: dir, Bucket: bucket})
	createTopic(t, a, "retry", 1, nil)
	c := floetest.Dial(t, a.Addr)
	pid, epoch := initProducer(t, c)
	batch := func(seq int32) []byte {
		return floetest.Batch(floetest.BatchSpec{Records: 3, Idempotent: true, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq})
	}
	ps := produce(t, c, produceReq("retry", -1, batch(0)))
	wantCode(t, "first batch", ps[0].ErrorCode, nil)

	bucket.slow.Store(true)
	req := produceReq("retry", -1, batch(3))
	req.TimeoutMillis = 100
	ps = produce(t, c, req)
	wantCode(t, "slow batch", ps[0].ErrorCode, kerr.RequestTimedOut)
	bucket.slow.Store(false)
	for range 2 {
		ps = produce(t, c, produceReq("retry", -1, batch(3)))
		wantCode(t, "retry", ps[0].ErrorCode, nil)
		if ps[0].BaseOffset != 3 {
			t.Fatalf("retry answered offset %d, want the original 3", ps[0].BaseOffset)
		}
	}
	if end := listOffsets(t, c, "retry", 1, -1)[0]; end != 6 {
		t.Fatalf("end offset %d, want 6 (one copy of each batch)", end)
	}
}

// TestFailedAcksZeroProduceClosesAfterEarlierResponses: an acks=0 produce
// that fails on a partition gets no response and closes the connection,
// but only after the responses of the requests sent before it; its good
// partition is stored.
func TestFailedAcksZeroProduceClosesAfterEarlierResponses(t *testing.T) {
	a := startBadInputAgent(t, true)
	createTopic(t, a, "zero", 2, nil)
	c := floetest.Dial(t, a.Addr)

	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version = 11
	fetch.MaxWaitMillis = 300
	fetch.MinBytes = 1 << 20
	fetch.MaxBytes = 1 << 20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "zero"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = 1, 0, 1<<20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)

	badCRC := floetest.Batch(floetest.BatchSpec{Records: 1})
	badCRC[len(badCRC)-1] ^= 0x55
	fc, err := c.Send(fetch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(produceReq("zero", 0, floetest.Batch(floetest.BatchSpec{Records: 2}), badCRC)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Receive(fetch, fc); err != nil {
		t.Fatalf("the fetch sent before the failing acks=0 produce got no response: %v", err)
	}
	if !c.WaitClosed(5 * time.Second) {
		t.Fatal("connection still open after a failed acks=0 produce")
	}
	c2 := floetest.Dial(t, a.Addr)
	deadline := time.Now().Add(5 * time.Second)
	for {
		ends := listOffsets(t, c2, "zero", 2, -1)
		if ends[0] == 2 && ends[1] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("end offsets %v, want [2 0]", ends)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCompactedTopicNeedsKeys: a compacted topic refuses a batch holding a
// record without a key (INVALID_RECORD, not retried), compressed or not,
// as Kafka does: compaction keeps the latest record per key, so a keyless
// one could never be cleaned up. Keyed records and tombstones are stored,
// and other topics take keyless records.
func TestCompactedTopicNeedsKeys(t *testing.T) {
	a := floetest.Start(t, floetest.Options{NoAutoCreate: true})
	compact := "compact,delete"
	createTopic(t, a, "keyed", 1, map[string]*string{"cleanup.policy": &compact})
	createTopic(t, a, "plain", 1, nil)
	for _, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.ZstdCompression(), kgo.GzipCompression()} {
		cl := a.Client(t, kgo.ProducerBatchCompression(codec), kgo.RecordRetries(2))
		ctx := ctxT(t)
		// A keyless record among keyed ones in one batch.
		recs := []*kgo.Record{
			{Topic: "keyed", Key: []byte("a"), Value: []byte("1")},
			{Topic: "keyed", Value: []byte("no key")},
		}
		err := cl.ProduceSync(ctx, recs...).FirstErr()
		if !errors.Is(err, kerr.InvalidRecord) {
			t.Fatalf("%v: keyless record on a compacted topic: %v, want INVALID_RECORD", codec, err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "keyed", Key: []byte("a"), Value: []byte("2")},
			&kgo.Record{Topic: "keyed", Key: []byte("b")}).FirstErr(); err != nil {
			t.Fatalf("%v: keyed record and tombstone on a compacted topic: %v", codec, err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "plain", Value: []byte("no key")}).FirstErr(); err != nil {
			t.Fatalf("%v: keyless record on a delete topic: %v", codec, err)
		}
	}
	end, err := a.Catalog.Offsets(ctxT(t), catalog.TopicPartition{TopicID: topicID(t, a, "keyed"), Partition: 0})
	if err != nil || end.HighWatermark != 6 {
		t.Fatalf("compacted topic end offset %d (%v), want 6: only the keyed batches stored", end.HighWatermark, err)
	}
}

func topicID(t *testing.T, a *floetest.Agent, name string) catalog.TopicID {
	t.Helper()
	tp, err := a.Catalog.Topic(ctxT(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return tp.ID
}

// TestCompactedTopicKeylessRecordError: from Produce v8 the refusal names
// the keyless record in the response's record errors, as Kafka's does.
func TestCompactedTopicKeylessRecordError(t *testing.T) {
	a := floetest.Start(t, floetest.Options{NoAutoCreate: true})
	compact := "compact"
	createTopic(t, a, "keyed", 1, map[string]*string{"cleanup.policy": &compact})
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	for _, version := range []int16{7, 9} {
		req := produceReq("keyed", -1, floetest.Batch(floetest.BatchSpec{Records: 3, NullKeys: []int{1}}))
		req.Version = version
		p := produce(t, c, req)[0]
		wantCode(t, "keyless record", p.ErrorCode, kerr.InvalidRecord)
		if version >= 8 && (len(p.ErrorRecords) != 1 || p.ErrorRecords[0].RelativeOffset != 1) {
			t.Fatalf("v%d record errors %+v, want record 1", version, p.ErrorRecords)
		}
	}
}

// TestProduceRepeatedTopicEntriesReadOnce: a request repeating one topic
// in many entries, each naming a partition past its count, or naming a
// few unknown topics many times, reads each topic from the catalog once,
// not once per entry (2,000 entries read it 2,000 times).
func TestProduceRepeatedTopicEntriesReadOnce(t *testing.T) {
	dir := t.TempDir()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "catalog.db"), catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	cat := &countingCatalog{Catalog: db}
	a := floetest.Start(t, floetest.Options{Dir: dir, Catalog: cat, NoAutoCreate: true})
	createTopic(t, a, "few", 1, nil)
	c := floetest.Dial(t, a.Addr)
	produce(t, c, produceReq("few", -1, floetest.Batch(floetest.BatchSpec{Records: 1})))

	const n = 2000
	for _, name := range []func(int) string{
		func(int) string { return "few" },
		func(i int) string { return fmt.Sprintf("nope-%d", i%10) },
	} {
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis = 9, -1, 5000
		for i := range n {
			rt := kmsg.NewProduceRequestTopic()
			rt.Topic = name(i)
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Partition = 7
			rp.Records = floetest.Batch(floetest.BatchSpec{Records: 1})
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
		}
		before := cat.topicReads.Load()
		ps := produce(t, c, req)
		wantCode(t, "unknown partition or topic", ps[0].ErrorCode, kerr.UnknownTopicOrPartition)
		if reads := cat.topicReads.Load() - before; reads > 10 {
			t.Fatalf("%d entries of topics like %q read the catalog %d times", n, name(0), reads)
		}
	}
}

// TestProduceBatchlessPartitionsRefused: a produce request naming far more
// partitions than its bytes could give record batches is refused whole,
// with a disconnect, before answering each (2,000,000 null record sets
// in a 12 MB frame made a 198 MB answer and took 1.3 GB); the agent
// serves others meanwhile.
func TestProduceBatchlessPartitionsRefused(t *testing.T) {
	a := floetest.Start(t, floetest.Options{NoAutoCreate: true})
	createTopic(t, a, "few", 1, nil)
	c := floetest.Dial(t, a.Addr)
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "few"
	rt.Partitions = make([]kmsg.ProduceRequestTopicPartition, 200_000)
	req.Topics = append(req.Topics, rt)
	frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("batchless")).AppendRequest(nil, req, 1)
	if err := c.WriteRaw(frame); err != nil {
		t.Fatal(err)
	}
	if !c.WaitClosed(10 * time.Second) {
		t.Fatal("a produce of 200,000 batchless partitions was answered, not refused")
	}
	witness(t, a)
}

// TestProducePartitionLeaderEpochStamped: the partition leader epoch a
// producer wrote in its batch is not kept: the batch is served with -1,
// "no epoch", so a consumer never takes it for the partition's epoch.
func TestProducePartitionLeaderEpochStamped(t *testing.T) {
	a := floetest.Start(t, floetest.Options{NoAutoCreate: true})
	createTopic(t, a, "ple", 1, nil)
	c := floetest.Dial(t, a.Addr)
	b := floetest.Batch(floetest.BatchSpec{Records: 1})
	binary.BigEndian.PutUint32(b[12:], 1_000_000) // outside the CRC
	wantCode(t, "produce", produce(t, c, produceReq("ple", -1, b))[0].ErrorCode, nil)
	fp := fetchAt(t, c, "ple", 0)
	if got := int32(binary.BigEndian.Uint32(fp.RecordBatches[12:])); got != -1 {
		t.Fatalf("fetched batch has partition leader epoch %d, want -1", got)
	}
}
