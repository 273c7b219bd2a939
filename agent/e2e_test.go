package agent_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floebroker/floe/tests/floetest"
)

// bulkRecords and bulkPartitions size the end-to-end round trip.
const (
	bulkRecords    = 200_000
	bulkPartitions = 16
)

func TestBulkRoundTripSQLiteFile(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})
	bulkRoundTrip(t, a, bulkRecords, bulkPartitions)
}

func TestBulkRoundTripPostgresMinIO(t *testing.T) {
	a := floetest.Start(t, floetest.Options{
		Catalog:       floetest.PostgresCatalog(t),
		Bucket:        floetest.MinIOBucket(t),
		FlushInterval: 10 * time.Millisecond,
	})
	bulkRoundTrip(t, a, bulkRecords, bulkPartitions)
}

// bulkRoundTrip produces n small records over parts partitions with an
// idempotent acks=all producer, then reads everything back and checks
// offsets are contiguous from 0, per-partition order is the produce order,
// and keys, values, headers and timestamps are intact.
func bulkRoundTrip(t *testing.T, a *floetest.Agent, n, parts int) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const topic = "bulk"
	adm := kadm.NewClient(a.Client(t))
	if _, err := adm.CreateTopic(ctx, int32(parts), -1, nil, topic); err != nil {
		t.Fatalf("create topic: %v", err)
	}

	base := time.Now().Add(-time.Hour).UnixMilli()
	prod := a.Client(t,
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(2*time.Millisecond),
	)
	start := time.Now()
	var (
		wg      sync.WaitGroup
		failed  atomic.Int64
		errOnce sync.Once
	)
	for i := 0; i < n; i++ {
		r := &kgo.Record{
			Partition: int32(i % parts),
			Key:       []byte(fmt.Sprintf("k%07d", i)),
			Value:     binary.BigEndian.AppendUint64(nil, uint64(i)),
			Headers:   []kgo.RecordHeader{{Key: "i", Value: []byte(fmt.Sprint(i))}},
			Timestamp: time.UnixMilli(base + int64(i)),
		}
		wg.Add(1)
		prod.Produce(ctx, r, func(r *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				failed.Add(1)
				errOnce.Do(func() { t.Errorf("produce: %v", err) })
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d produces failed", failed.Load())
	}
	produced := time.Since(start)

	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("list end offsets: %v", err)
	}
	per := int64(n / parts)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset != per {
			t.Errorf("partition %d end offset %d (%v), want %d", o.Partition, o.Offset, o.Err, per)
		}
	})

	cons := a.Client(t,
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond),
	)
	next := make([]int64, parts) // next expected offset per partition
	got := 0
	for got < n {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records: %v", got, n, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			p := r.Partition
			if r.Offset != next[p] {
				t.Fatalf("partition %d: offset %d, want %d", p, r.Offset, next[p])
			}
			i := int(next[p])*parts + int(p) // produce order within the partition
			next[p]++
			got++
			if want := fmt.Sprintf("k%07d", i); string(r.Key) != want {
				t.Fatalf("partition %d offset %d: key %q, want %q", p, r.Offset, r.Key, want)
			}
			if len(r.Value) != 8 || binary.BigEndian.Uint64(r.Value) != uint64(i) {
				t.Fatalf("partition %d offset %d: value %x, want %d", p, r.Offset, r.Value, i)
			}
			if len(r.Headers) != 1 || r.Headers[0].Key != "i" || string(r.Headers[0].Value) != fmt.Sprint(i) {
				t.Fatalf("partition %d offset %d: headers %v", p, r.Offset, r.Headers)
			}
			if r.Timestamp.UnixMilli() != base+int64(i) {
				t.Fatalf("partition %d offset %d: timestamp %d, want %d", p, r.Offset, r.Timestamp.UnixMilli(), base+int64(i))
			}
		})
	}
	t.Logf("%d records over %d partitions: produced in %v, read back in %v", n, parts, produced.Round(time.Millisecond), (time.Since(start) - produced).Round(time.Millisecond))
}
