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
		var id catalog.TopicID // by id: the topic's; by name: zero
		switch {
		case rt.Topic != nil && *rt.Topic != "":
			name = *rt.Topic
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
		// By id, the delete removes that topic only: another created
		// under the name since the lookup stays.
		deleted, err := a.cat.DeleteTopic(ctx, name, id)
		switch {
		case errors.Is(err, catalog.ErrUnknownTopic) && !id.IsZero():
			ot.Topic, ot.ErrorCode = nil, kerr.UnknownTopicID.Code
		case err != nil:
			code, msg := adminErr(err)
			if code == kerr.UnknownServerError.Code {
				a.log.Warn("delete topic failed", "topic", name, "err", err)
			}
			ot.ErrorCode, ot.ErrorMessage = code, kmsg.StringPtr(msg)
		default:
			a.log.Info("deleted topic", "topic", name, "id", fmtTopicID(deleted))
			a.tail.forgetTopic(deleted)
			// Kafka names the deleted topic's id whichever way it was
			// asked for (v6+).
			ot.TopicID = deleted
		}
		a.topics.forget(name)
		a.groups.ForgetTopic(name)
		resp.Topics = append(resp.Topics, ot)
	}
	return resp, nil
}
