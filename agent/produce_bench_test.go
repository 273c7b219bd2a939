package agent

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/wal"
)

// BenchmarkProducePartitions is the per-partition work of one produce
// request spreading small batches (six records each) over 2,000
// partitions of a topic with an explicit max.message.bytes: validation,
// the topic's limits and the WAL entry. Per-batch costs dominate here.
func BenchmarkProducePartitions(b *testing.B) {
	const partitions = 2000
	batch := makeBatch(b, testBatch{records: 6, firstTS: time.Now().UnixMilli(), producerID: 7, producerEpoch: 1})
	topic := catalog.Topic{Name: "t", Partitions: partitions, Configs: map[string]string{catalog.ConfigMaxMessageBytes: "1048588"}}
	rt := kmsg.NewProduceRequestTopic()
	rt.Partitions = make([]kmsg.ProduceRequestTopicPartition, partitions)
	for i := range rt.Partitions {
		rt.Partitions[i].Partition = int32(i)
		rt.Partitions[i].Records = batch
	}
	outs := make([]kmsg.ProduceResponseTopicPartition, partitions)
	entries := make([]wal.Entry, 0, partitions)
	a := &Agent{}
	b.ReportAllocs()
	for b.Loop() {
		entries = produceTopicPartitions(a, topic, rt, outs, entries[:0])
		if len(entries) != partitions {
			b.Fatalf("%d entries for %d partitions", len(entries), partitions)
		}
	}
}

func produceTopicPartitions(a *Agent, topic catalog.Topic, rt kmsg.ProduceRequestTopic, outs []kmsg.ProduceResponseTopicPartition, entries []wal.Entry) []wal.Entry {
	now := time.Now().UnixMilli()
	lim := limitsOf(topic)
	for i, rp := range rt.Partitions {
		a.producePartition(context.Background(), 12, topic, &lim, rp, &outs[i], now, &entries)
	}
	return entries
}
