package agent

// DeleteRecords (key 21), versions 0-2: advances a partition's log start
// offset; offset -1 means the high watermark. The records become
// unreadable at once; compaction deletes their bytes later.
//
// Differences from Kafka: none visible to clients. TimeoutMillis is
// ignored: the new log start is committed when the response is sent.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

func (a *Agent) handleDeleteRecords(ctx context.Context, _ *request, req *kmsg.DeleteRecordsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range req.Topics {
		ot := kmsg.NewDeleteRecordsResponseTopic()
		ot.Topic = rt.Topic
		// A partition past the cached count (added through another
		// agent) re-reads the topic, as ListOffsets and Fetch do.
		maxPart := int32(0)
		for _, rp := range rt.Partitions {
			maxPart = max(maxPart, rp.Partition+1)
		}
		t, err := a.topic(ctx, rt.Topic, maxPart)
		for _, rp := range rt.Partitions {
			op := kmsg.NewDeleteRecordsResponseTopicPartition()
			op.Partition, op.LowWatermark = rp.Partition, -1
			switch {
			case err != nil:
				op.ErrorCode = catalogErrorCode(err)
			case rp.Partition < 0 || rp.Partition >= t.Partitions:
				op.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				op.LowWatermark, op.ErrorCode = a.deleteRecords(ctx, catalog.TopicPartition{TopicID: t.ID, Partition: rp.Partition}, rp.Offset)
			}
			ot.Partitions = append(ot.Partitions, op)
		}
		resp.Topics = append(resp.Topics, ot)
	}
	return resp, nil
}

func (a *Agent) deleteRecords(ctx context.Context, tp catalog.TopicPartition, offset int64) (int64, int16) {
	_, hw, err := a.offsets(ctx, tp, -1, true)
	if err != nil {
		return -1, catalogErrorCode(err)
	}
	if offset == -1 {
		offset = hw
	}
	if offset < 0 || offset > hw {
		return -1, kerr.OffsetOutOfRange.Code
	}
	ls, err := a.cat.DeleteRecords(ctx, tp, offset)
	if err != nil {
		a.log.Warn("delete records failed", "err", err)
		return -1, catalogErrorCode(err)
	}
	a.tail.storeOffsets(tp, catalog.PartitionOffsets{LogStart: ls, HighWatermark: hw})
	return ls, 0
}
