package agent

// DeleteTopics (key 20), versions 1-6; by name, and by topic id from v6.
//
// Differences from Kafka: TimeoutMillis is ignored: the topic is gone from
// the catalog when the response is sent (its data is deleted later by
// compaction's garbage collector).

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

func (a *Agent) handleDeleteTopics(ctx context.Context, _ *request, req *kmsg.DeleteTopicsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	topics := req.Topics
	if req.Version < 6 {
		topics = make([]kmsg.DeleteTopicsRequestTopic, len(req.TopicNames))
		for i, n := range req.TopicNames {
			topics[i].Topic = kmsg.StringPtr(n)
		}
	}
	for _, rt := range topics {
		ot := kmsg.NewDeleteTopicsResponseTopic()
		ot.Topic, ot.TopicID = rt.Topic, rt.TopicID
		name := ""
		var id catalog.TopicID // zero: unknown
		switch {
		case rt.Topic != nil && *rt.Topic != "":
			name = *rt.Topic
			if t, err := a.cat.Topic(ctx, name); err == nil {
				id = t.ID
			}
		case !catalog.TopicID(rt.TopicID).IsZero():
			t, err := a.cat.TopicByID(ctx, rt.TopicID)
			if err != nil {
				if errors.Is(err, catalog.ErrUnknownTopic) {
					ot.ErrorCode = kerr.UnknownTopicID.Code
				} else {
					ot.ErrorCode, _ = adminErr(err)
				}
				resp.Topics = append(resp.Topics, ot)
				continue
			}
			name, id = t.Name, t.ID
			ot.Topic = kmsg.StringPtr(name)
		default:
			ot.ErrorCode = kerr.InvalidRequest.Code
			ot.ErrorMessage = kmsg.StringPtr("neither topic name nor id given")
			resp.Topics = append(resp.Topics, ot)
			continue
		}
		if err := a.cat.DeleteTopic(ctx, name); err != nil {
			code, msg := adminErr(err)
			if code == kerr.UnknownServerError.Code {
				a.log.Warn("delete topic failed", "topic", name, "err", err)
			}
			ot.ErrorCode, ot.ErrorMessage = code, kmsg.StringPtr(msg)
		} else {
			a.log.Info("deleted topic", "topic", name)
			if !id.IsZero() {
				a.tail.forgetTopic(id)
				// Kafka names the deleted topic's id whichever way
				// it was asked for (v6+).
				ot.TopicID = id
			}
		}
		a.topics.forget(name)
		a.groups.ForgetTopic(name)
		resp.Topics = append(resp.Topics, ot)
	}
	return resp, nil
}
