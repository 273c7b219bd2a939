package agent

// OffsetForLeaderEpoch (key 23), versions 2-4.
//
// Floe's leader epochs are the fleet's membership generation and its logs
// are never truncated, so every epoch a client knows ends at the current
// high watermark: the answer is (requested epoch, high watermark), and a
// KIP-320 consumer validating its position never detects truncation.
// An epoch newer than this agent's view (it heard of a newer generation
// elsewhere) is answered the same way. CurrentLeaderEpoch is not checked.

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

func (a *Agent) handleOffsetForLeaderEpoch(ctx context.Context, _ *request, req *kmsg.OffsetForLeaderEpochRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, rt := range req.Topics {
		ot := kmsg.NewOffsetForLeaderEpochResponseTopic()
		ot.Topic = rt.Topic
		// A partition past the cached count (added through another
		// agent) re-reads the topic, as ListOffsets and Fetch do.
		maxPart := int32(0)
		for _, rp := range rt.Partitions {
			maxPart = max(maxPart, rp.Partition+1)
		}
		t, err := a.topic(ctx, rt.Topic, maxPart)
		for _, rp := range rt.Partitions {
			op := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			op.Partition, op.LeaderEpoch, op.EndOffset = rp.Partition, -1, -1
			switch {
			case err != nil:
				op.ErrorCode = catalogErrorCode(err)
			case rp.Partition < 0 || rp.Partition >= t.Partitions:
				op.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				_, hw, oerr := a.offsets(ctx, catalog.TopicPartition{TopicID: t.ID, Partition: rp.Partition}, -1, true)
				if errors.Is(oerr, catalog.ErrUnknownTopic) {
					// The cached topic was deleted and maybe created
					// again under its name, as in ListOffsets: the
					// request's later partitions are the new topic's.
					if nt, ok := a.topicRecreated(ctx, rt.Topic, t.ID); ok {
						t = nt
						if rp.Partition < t.Partitions {
							_, hw, oerr = a.offsets(ctx, catalog.TopicPartition{TopicID: t.ID, Partition: rp.Partition}, -1, true)
						}
					}
				}
				if oerr != nil {
					op.ErrorCode = catalogErrorCode(oerr)
					break
				}
				op.LeaderEpoch, op.EndOffset = rp.LeaderEpoch, hw
			}
			ot.Partitions = append(ot.Partitions, op)
		}
		resp.Topics = append(resp.Topics, ot)
	}
	return resp, nil
}
