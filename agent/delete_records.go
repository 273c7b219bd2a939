package agent

// DeleteRecords (key 21), versions 0-2: advances a partition's log start
// offset; offset -1 means the high watermark. The records become
// unreadable at once; compaction deletes their bytes later.
//
// As in Kafka, a topic whose cleanup.policy lacks "delete" (compacted
// only: a schema registry's or Kafka Connect's topics) refuses it with
// POLICY_VIOLATION: such topics are read from the start to rebuild state,
// and truncating them loses that state.
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
		// Read from the catalog, not the topic cache: the policy checked
		// may have changed through another agent a moment ago, and a
		// delete is not undone.
		t, err := a.readTopic(ctx, rt.Topic)
		for _, rp := range rt.Partitions {
			op := kmsg.NewDeleteRecordsResponseTopicPartition()
			op.Partition, op.LowWatermark = rp.Partition, -1
			switch {
			case err != nil:
				op.ErrorCode = catalogErrorCode(err)
			case rp.Partition < 0 || rp.Partition >= t.Partitions:
				op.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case !t.CleanupPolicy().Delete:
				op.ErrorCode = kerr.PolicyViolation.Code
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
