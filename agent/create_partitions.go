package agent

// CreatePartitions (key 37), versions 0-3: grows a topic to Count
// partitions.
//
// Differences from Kafka: manual assignments are checked as Kafka checks
// them (their count must match the partitions added, see checkReplicas for
// each), but their broker ids are not looked up, and they are then ignored:
// there are no replicas to place. TimeoutMillis is ignored: the partitions
// exist when the response is sent.

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

func (a *Agent) handleCreatePartitions(ctx context.Context, _ *request, req *kmsg.CreatePartitionsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	repeated := repeatedKeys(req.Topics, func(rt kmsg.CreatePartitionsRequestTopic) string { return rt.Topic })
	for _, rt := range req.Topics {
		rep, listed := repeated[rt.Topic]
		if listed && !rep {
			continue // a repeated topic is answered once, as in Kafka
		}
		if rep {
			repeated[rt.Topic] = false // answered
		}
		ot := kmsg.NewCreatePartitionsResponseTopic()
		ot.Topic = rt.Topic
		code, msg := a.createPartitions(ctx, rt, req.ValidateOnly, rep)
		ot.ErrorCode = code
		if msg != "" {
			ot.ErrorMessage = kmsg.StringPtr(msg)
		}
		resp.Topics = append(resp.Topics, ot)
	}
	return resp, nil
}

func (a *Agent) createPartitions(ctx context.Context, rt kmsg.CreatePartitionsRequestTopic, validateOnly, duplicate bool) (int16, string) {
	if duplicate {
		return kerr.InvalidRequest.Code, fmt.Sprintf("topic %q appears more than once in the request", rt.Topic)
	}
	// Kafka's order: an unknown topic first, then the count, then the
	// assignments.
	t, err := a.cat.Topic(ctx, rt.Topic)
	if err != nil {
		return adminErr(err)
	}
	if rt.Count <= t.Partitions {
		return kerr.InvalidPartitions.Code, fmt.Sprintf("topic %q has %d partitions; the count can only grow", rt.Topic, t.Partitions)
	}
	if err := catalog.ValidatePartitionCount(rt.Count); err != nil {
		return adminErr(err)
	}
	if add := rt.Count - t.Partitions; rt.Assignment != nil && len(rt.Assignment) != int(add) {
		// The replicas named are ignored, but a count that does not
		// match says the request is not what its sender meant.
		return kerr.InvalidReplicaAssignment.Code, fmt.Sprintf("%d partitions added but %d assignments given", add, len(rt.Assignment))
	}
	for i, as := range rt.Assignment {
		if code, msg := checkReplicas(as.Replicas, rt.Assignment[0].Replicas, i); code != 0 {
			return code, msg
		}
	}
	if validateOnly {
		return 0, ""
	}
	if err := a.cat.CreatePartitions(ctx, rt.Topic, rt.Count); err != nil {
		return adminErr(err)
	}
	a.topics.forget(rt.Topic)
	a.log.Info("created partitions", "topic", rt.Topic, "partitions", rt.Count)
	return 0, ""
}
