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
	// Each entry's outcome is decided before any topic is deleted. As in
	// Kafka's controller, a name or id given more than once is answered
	// once with INVALID_REQUEST and nothing is deleted for it (which entry
	// to honour would be a guess), and so is a topic named by name and by
	// id in one request (Kafka answers only the name's entry then).
	names := make(map[string]int, len(topics))
	ids := make(map[[16]byte]int, len(topics))
	for _, rt := range topics {
		switch name := deleteName(rt); {
		case name != "" && !catalog.TopicID(rt.TopicID).IsZero():
		case name != "":
			names[name]++
		case !catalog.TopicID(rt.TopicID).IsZero():
			ids[rt.TopicID]++
		}
	}
	// The topics named by id, found first so that a name and an id of the
	// same topic are refused whichever comes first.
	type lookup struct {
		t   catalog.Topic
		err error
	}
	byID := make(map[[16]byte]lookup, len(ids))
	idNames := make(map[string]bool, len(ids))
	for id := range ids {
		// A repeated id is refused, but its name is still looked up:
		// the topic may be named by name too, and stays then as well.
		t, err := a.cat.TopicByID(ctx, id)
		byID[id] = lookup{t, err}
		if err == nil {
			idNames[t.Name] = true
		}
	}
	refuse := func(ot kmsg.DeleteTopicsResponseTopic, msg string) {
		ot.ErrorCode, ot.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr(msg)
		resp.Topics = append(resp.Topics, ot)
	}
	for _, rt := range topics {
		ot := kmsg.NewDeleteTopicsResponseTopic()
		ot.Topic, ot.TopicID = rt.Topic, rt.TopicID
		name := deleteName(rt)
		var id catalog.TopicID // by id: the topic's; by name: zero
		switch {
		case name != "" && !catalog.TopicID(rt.TopicID).IsZero():
			refuse(ot, "both topic name and id given")
			continue
		case name != "" && names[name] != 1:
			if names[name] > 1 {
				names[name] = -1 // answered once
				refuse(ot, "duplicate topic name")
			}
			continue
		case name != "" && idNames[name]:
			refuse(ot, "topic named both by name and by id")
			continue
		case name != "":
		case catalog.TopicID(rt.TopicID).IsZero():
			refuse(ot, "neither topic name nor id given")
			continue
		case ids[rt.TopicID] != 1:
			if ids[rt.TopicID] > 1 {
				ids[rt.TopicID] = -1
				refuse(ot, "duplicate topic id")
			}
			continue
		case byID[rt.TopicID].err != nil:
			if err := byID[rt.TopicID].err; errors.Is(err, catalog.ErrUnknownTopic) {
				ot.ErrorCode = kerr.UnknownTopicID.Code
			} else {
				ot.ErrorCode, _ = adminErr(err)
			}
			resp.Topics = append(resp.Topics, ot)
			continue
		default:
			t := byID[rt.TopicID].t
			if names[t.Name] != 0 {
				ot.Topic = kmsg.StringPtr(t.Name)
				refuse(ot, "topic named both by name and by id")
				continue
			}
			name, id = t.Name, t.ID
			ot.Topic = kmsg.StringPtr(name)
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

// deleteName is the name a DeleteTopics entry gives, "" for none (Floe
// takes an empty name as none, since no topic can have it).
func deleteName(rt kmsg.DeleteTopicsRequestTopic) string {
	if rt.Topic == nil {
		return ""
	}
	return *rt.Topic
}
