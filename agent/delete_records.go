package agent

// DeleteRecords (key 21), versions 0-2: advances a partition's log start
// offset; offset -1 means the high watermark. The records become
// unreadable through every agent by the time the response is sent;
// compaction deletes their bytes later.
//
// As in Kafka, a topic whose cleanup.policy lacks "delete" (compacted
// only: a schema registry's or Kafka Connect's topics) refuses it with
// POLICY_VIOLATION: such topics are read from the start to rebuild state,
// and truncating them loses that state.
//
// Kafka answers once every replica's log start has moved
// (DelayedDeleteRecords). An agent serves fetches at the tail on a log
// start it read up to maxLogStartAge ago (logstart.go) and cannot tell
// when the others have read the new one, so a response with deleted
// partitions waits maxLogStartAge after the new log starts are committed:
// by then no agent serves the deleted records. The wait is the request's
// handler's, as a long-polling fetch's: the connection's other requests
// are handled meanwhile (their responses follow in request order, as
// Kafka's do, which reads a connection's next request only once it has
// answered). If TimeoutMillis is shorter, the response is sent when it
// ends, those partitions answered REQUEST_TIMED_OUT with their new low
// watermark, as Kafka answers partitions whose replicas have not caught
// up in time: the log start has moved all the same, and a retry (of the
// same offset) waits again.
//
// Differences from Kafka: a successful answer always takes maxLogStartAge
// (2 s), where Kafka's takes as long as its followers' next fetch, and a
// TimeoutMillis below it always times out.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

func (a *Agent) handleDeleteRecords(ctx context.Context, _ *request, req *kmsg.DeleteRecordsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	deleted := false
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
				deleted = deleted || op.ErrorCode == 0
			}
			ot.Partitions = append(ot.Partitions, op)
		}
		resp.Topics = append(resp.Topics, ot)
	}
	if deleted && !waitLogStartsSeen(ctx, time.Duration(req.TimeoutMillis)*time.Millisecond) {
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				if op := &resp.Topics[i].Partitions[j]; op.ErrorCode == 0 {
					op.ErrorCode = kerr.RequestTimedOut.Code
				}
			}
		}
	}
	return resp, nil
}

// waitLogStartsSeen waits until every agent serves fetches on log starts
// committed before it was called, maxLogStartAge, and reports whether it
// did: false when timeout is shorter (after waiting it out) or ctx ends.
func waitLogStartsSeen(ctx context.Context, timeout time.Duration) bool {
	wait := min(max(timeout, 0), maxLogStartAge)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return wait == maxLogStartAge
	case <-ctx.Done():
		return false
	}
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
	readAt := a.tail.now()
	ls, err := a.cat.DeleteRecords(ctx, tp, offset)
	if err != nil {
		a.log.Warn("delete records failed", "err", err)
		return -1, catalogErrorCode(err)
	}
	a.tail.storeOffsets(tp, catalog.PartitionOffsets{LogStart: ls, HighWatermark: hw}, readAt)
	return ls, 0
}
