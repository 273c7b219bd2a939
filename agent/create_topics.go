package agent

// CreateTopics (key 19), versions 2-7.
//
// Differences from Kafka: the replication factor is accepted whatever it is
// (-1 or any positive value) and ignored, since durability comes from
// object storage; responses report 1. Manual replica assignments are
// checked as Kafka checks them but for their broker ids (see
// checkReplicas), then ignored but for their partition count. Kafka's
// internal topics are not created (see reservedTopic). TimeoutMillis is
// ignored: the topic exists in the catalog when the response is sent.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

func (a *Agent) handleCreateTopics(ctx context.Context, _ *request, req *kmsg.CreateTopicsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	repeated := repeatedKeys(req.Topics, func(rt kmsg.CreateTopicsRequestTopic) string { return rt.Topic })
	for _, rt := range req.Topics {
		ot := kmsg.NewCreateTopicsResponseTopic()
		ot.Topic = rt.Topic
		ot.NumPartitions, ot.ReplicationFactor = -1, -1
		if unanswered, listed := repeated[rt.Topic]; listed {
			// Answered once, as Kafka does, and not created.
			if unanswered {
				repeated[rt.Topic] = false // answered
				setCreateTopicErr(&ot, kerr.InvalidRequest.Code, fmt.Sprintf("topic %q appears more than once in the request", rt.Topic))
				resp.Topics = append(resp.Topics, ot)
			}
			continue
		}
		if reservedTopic(rt.Topic) {
			// Before the existence check: an ordinary topic of the name
			// made before Floe refused it is still not Kafka's.
			setCreateTopicErr(&ot, kerr.InvalidRequest.Code, reservedTopicMsg(rt.Topic))
			resp.Topics = append(resp.Topics, ot)
			continue
		}
		spec, code, msg := a.topicSpec(rt)
		if code != 0 && code != kerr.InvalidTopicException.Code {
			// Kafka checks whether the topic exists before its partitions,
			// replication factor and configs: "create if missing" code
			// (Connect, Streams, provisioning tools) ignores
			// TOPIC_ALREADY_EXISTS, not INVALID_CONFIG from a config an
			// older tool still sends. Looked up only on this error path.
			if _, err := a.cat.Topic(ctx, rt.Topic); err == nil {
				code, msg = kerr.TopicAlreadyExists.Code, fmt.Sprintf("topic %q already exists", rt.Topic)
			}
		}
		if code != 0 {
			setCreateTopicErr(&ot, code, msg)
			resp.Topics = append(resp.Topics, ot)
			continue
		}
		var t catalog.Topic
		if req.ValidateOnly {
			// Only a topic known not to exist may be created: a
			// catalog error leaves that unknown.
			if _, err := a.cat.Topic(ctx, spec.Name); !errors.Is(err, catalog.ErrUnknownTopic) {
				code, msg := kerr.TopicAlreadyExists.Code, fmt.Sprintf("topic %q already exists", spec.Name)
				if err != nil {
					code, msg = adminErr(err)
				}
				setCreateTopicErr(&ot, code, msg)
				resp.Topics = append(resp.Topics, ot)
				continue
			}
			if err := a.topicCollision(ctx, spec.Name); err != nil {
				code, msg := adminErr(err)
				setCreateTopicErr(&ot, code, msg)
				resp.Topics = append(resp.Topics, ot)
				continue
			}
			t = catalog.Topic{Name: spec.Name, Partitions: spec.Partitions, Configs: spec.Configs}
		} else {
			var err error
			t, err = a.cat.CreateTopic(ctx, spec)
			if err != nil {
				code, msg := adminErr(err)
				if code == kerr.UnknownServerError.Code {
					a.log.Warn("create topic failed", "topic", spec.Name, "err", err)
				}
				setCreateTopicErr(&ot, code, msg)
				resp.Topics = append(resp.Topics, ot)
				continue
			}
			a.cacheTopic(t)
			a.log.Info("created topic", "topic", t.Name, "partitions", t.Partitions)
		}
		ot.TopicID = t.ID
		ot.NumPartitions, ot.ReplicationFactor = t.Partitions, 1
		for _, c := range topicConfigEntries(t, nil) {
			ot.Configs = append(ot.Configs, kmsg.CreateTopicsResponseTopicConfig{
				Name: c.Name, Value: c.Value, ReadOnly: c.ReadOnly, Source: int8(c.Source), IsSensitive: c.IsSensitive,
			})
		}
		resp.Topics = append(resp.Topics, ot)
	}
	return resp, nil
}

// topicCollision returns the error CreateTopic would give name for
// colliding with an existing topic, for a validate-only request.
func (a *Agent) topicCollision(ctx context.Context, name string) error {
	norm := catalog.TopicCollisionName(name)
	if norm == "" {
		return nil
	}
	list, err := a.listTopics(ctx)
	if err != nil {
		return err
	}
	for _, t := range list {
		if t.Name != name && catalog.TopicCollisionName(t.Name) == norm {
			return catalog.TopicCollisionError(name, t.Name)
		}
	}
	return nil
}

func setCreateTopicErr(ot *kmsg.CreateTopicsResponseTopic, code int16, msg string) {
	ot.ErrorCode = code
	if msg != "" {
		ot.ErrorMessage = kmsg.StringPtr(msg)
	}
}

// topicSpec turns a request topic into a validated spec, or an error code
// and message.
func (a *Agent) topicSpec(rt kmsg.CreateTopicsRequestTopic) (catalog.TopicSpec, int16, string) {
	spec := catalog.TopicSpec{Name: rt.Topic, Partitions: rt.NumPartitions}
	switch {
	case len(rt.ReplicaAssignment) > 0 && rt.ReplicationFactor != -1:
		return spec, kerr.InvalidRequest.Code, "both replication factor and replica assignment given"
	case len(rt.ReplicaAssignment) > 0 && rt.NumPartitions != -1:
		return spec, kerr.InvalidRequest.Code, "both partition count and replica assignment given"
	case len(rt.ReplicaAssignment) > 0:
		if code, msg := checkAssignment(rt.ReplicaAssignment); code != 0 {
			return spec, code, msg
		}
		spec.Partitions = int32(len(rt.ReplicaAssignment))
	case rt.NumPartitions == -1:
		spec.Partitions = a.cfg.DefaultPartitions
	}
	if rt.ReplicationFactor == 0 || rt.ReplicationFactor < -1 {
		return spec, kerr.InvalidReplicationFactor.Code, fmt.Sprintf("replication factor %d must be -1 or positive", rt.ReplicationFactor)
	}
	if len(rt.Configs) > 0 {
		spec.Configs = make(map[string]string, len(rt.Configs))
	}
	for _, c := range rt.Configs {
		if c.Value == nil {
			return spec, kerr.InvalidConfig.Code, "Null value not supported for topic configs: " + c.Name
		}
		spec.Configs[c.Name] = *c.Value
	}
	if err := catalog.ValidateTopicSpec(spec); err != nil {
		code, msg := adminErr(err)
		return spec, code, msg
	}
	return spec, 0, ""
}

// checkAssignment checks a CreateTopics manual replica assignment as
// Kafka's controller does: one entry for each partition 0 to n-1, each
// passing checkReplicas. The replicas are then ignored (Floe places none),
// but a request breaking Kafka's rules is not what its sender meant:
// entries for partitions 0 and 5 had made a 2-partition topic.
func checkAssignment(as []kmsg.CreateTopicsRequestTopicReplicaAssignment) (int16, string) {
	seen := make(map[int32]bool, len(as))
	for i, ra := range as {
		if seen[ra.Partition] {
			return kerr.InvalidReplicaAssignment.Code, fmt.Sprintf("Found multiple manual partition assignments for partition %d", ra.Partition)
		}
		seen[ra.Partition] = true
		if code, msg := checkReplicas(ra.Replicas, as[0].Replicas, i); code != 0 {
			return code, msg
		}
	}
	for p := range int32(len(as)) {
		if !seen[p] {
			return kerr.InvalidReplicaAssignment.Code, "partitions should be a consecutive 0-based integer sequence"
		}
	}
	return 0, ""
}

// checkReplicas checks the replica list of a manual assignment, the i-th
// of a request whose first is first, as Kafka's controller does
// (INVALID_REPLICA_ASSIGNMENT, with its messages): not empty, no broker
// twice, as many replicas as the request's other lists. Unlike Kafka's, it
// does not look the broker ids up among the live agents: replicas are not
// placed (the leader is picked by rendezvous hashing), so an id has no
// effect, and the fleet's ids change as agents come and go, so a check
// would only refuse assignments written for another cluster, or in a
// rolling restart, that are ignored anyway.
func checkReplicas(replicas, first []int32, i int) (int16, string) {
	if len(replicas) == 0 {
		return kerr.InvalidReplicaAssignment.Code, "The manual partition assignment includes an empty replica list."
	}
	sorted := slices.Sorted(slices.Values(replicas))
	for j := 1; j < len(sorted); j++ {
		if sorted[j] == sorted[j-1] {
			return kerr.InvalidReplicaAssignment.Code, fmt.Sprintf("The manual partition assignment includes the broker %d more than once.", sorted[j])
		}
	}
	if i > 0 && len(replicas) != len(first) {
		return kerr.InvalidReplicaAssignment.Code, fmt.Sprintf("The manual partition assignment includes a partition with %d replica(s), but this is not consistent with previous partitions, which have %d replica(s).", len(replicas), len(first))
	}
	return 0, ""
}

// reservedTopic reports whether name is one of Kafka's internal topics
// (Topic.INTERNAL_TOPICS in Kafka 4.1) or its KRaft metadata log, which
// Floe never creates: it keeps group offsets and state in the catalog, and
// has no transactions, share groups or metadata log. An ordinary topic of
// such a name, auto-created by a client's Metadata (kcat -L -t
// __consumer_offsets), was listed with the others, matched regex
// subscriptions, and looked empty to tools that read Kafka's (Burrow,
// OffsetsMessageFormatter).
func reservedTopic(name string) bool {
	return kafkaInternalTopic(name) || name == "__cluster_metadata"
}

// kafkaInternalTopic is Kafka's Topic.isInternal, which Metadata reports
// (IsInternal) even for an unknown topic.
func kafkaInternalTopic(name string) bool {
	switch name {
	case "__consumer_offsets", "__transaction_state", "__share_group_state":
		return true
	}
	return false
}

// reservedTopicMsg is Kafka's message refusing to create __cluster_metadata.
func reservedTopicMsg(name string) string {
	return fmt.Sprintf("Creation of internal topic %s is prohibited.", name)
}

// adminErr maps catalog errors of admin requests to a code and message.
func adminErr(err error) (int16, string) {
	switch {
	case errors.Is(err, catalog.ErrTopicExists):
		return kerr.TopicAlreadyExists.Code, err.Error()
	case errors.Is(err, catalog.ErrUnknownTopic):
		return kerr.UnknownTopicOrPartition.Code, err.Error()
	case errors.Is(err, catalog.ErrInvalidTopic):
		return kerr.InvalidTopicException.Code, err.Error()
	case errors.Is(err, catalog.ErrInvalidPartitions):
		return kerr.InvalidPartitions.Code, err.Error()
	case errors.Is(err, catalog.ErrInvalidConfig):
		// Without the package prefix: admin tools show the message as
		// Kafka's ("Invalid value x for configuration y: …").
		return kerr.InvalidConfig.Code, strings.TrimPrefix(err.Error(), catalog.ErrInvalidConfig.Error()+": ")
	case errors.Is(err, catalog.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code, err.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return kerr.RequestTimedOut.Code, err.Error()
	}
	return kerr.UnknownServerError.Code, "catalog error"
}
