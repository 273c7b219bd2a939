package agent

// Metadata (key 3), versions 0-13.
//
// Differences from Kafka: the brokers are the live agents; every
// partition's leader is chosen by rendezvous hashing over the live agents
// of the client's zone (named in the client id as floe_az=<zone>, or the
// zone of the per-zone listener the client connected to, whose addresses
// the brokers are then given with), falling back to all agents when the
// zone has none; its replicas, all in sync, are the leader and the leader
// of every other zone, the agents a rack-aware fetch may be steered to
// (see fetch.go); its leader epoch is the fleet's membership generation.
// A client of a per-zone listener is told only of the agents with a
// listener for that zone, and partitions are led among them, as Kafka
// leaves out brokers without the client's listener (see
// membership.onListener). A stopping agent leaves itself out (see Agent.Serve). Any agent
// accepts produce and fetch for any partition, so stale metadata never
// fails a client. The controller id is the answering agent (any agent
// serves admin requests). Auto-created topics are created synchronously and
// returned at once, without Kafka's transient LEADER_NOT_AVAILABLE; Kafka's
// internal topics are never auto-created (see reservedTopic).
// Authorized operations are not computed (reported as unknown).

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

// authorizedOperationsUnknown is Kafka's "not requested / unknown".
const authorizedOperationsUnknown = math.MinInt32

// Authorized operations, as bitfields of ACL operation codes: Floe has no
// authorizer, so, as Kafka without one, every operation the resource type
// supports (Kafka's AclEntry.supportedOperations).
const (
	// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS,
	// ALTER_CONFIGS.
	authorizedTopicOps int32 = 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<10 | 1<<11
	// CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS,
	// ALTER_CONFIGS, IDEMPOTENT_WRITE.
	authorizedClusterOps int32 = 1<<5 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 | 1<<12
)

func (a *Agent) handleMetadata(ctx context.Context, r *request, req *kmsg.MetadataRequest) (kmsg.Response, error) {
	resp, err := a.metadata(ctx, r, req)
	if err != nil {
		return nil, err
	}
	if req.Version >= 8 && req.IncludeTopicAuthorizedOperations {
		for i := range resp.Topics {
			if resp.Topics[i].Topic != nil { // not for an unknown topic id, as Kafka
				resp.Topics[i].AuthorizedOperations = authorizedTopicOps
			}
		}
	}
	if req.Version >= 8 && req.Version <= 10 && req.IncludeClusterAuthorizedOperations {
		resp.AuthorizedOperations = authorizedClusterOps
	}
	return resp, nil
}

func (a *Agent) metadata(ctx context.Context, r *request, req *kmsg.MetadataRequest) (*kmsg.MetadataResponse, error) {
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	m := a.members.Load().onListener(r.conn.listenerZone)
	for _, ag := range m.agents {
		host, port := agentAddr(ag, r.conn.listenerZone)
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID, b.Host, b.Port = ag.NodeID, host, port
		if ag.Zone != "" {
			b.Rack = kmsg.StringPtr(ag.Zone)
		}
		resp.Brokers = append(resp.Brokers, b)
	}
	resp.ClusterID = kmsg.StringPtr(a.cfg.ClusterID)
	resp.ControllerID = m.controller()
	resp.AuthorizedOperations = authorizedOperationsUnknown

	zone := r.zone()
	allowCreate := req.Version < 4 || req.AllowAutoTopicCreation
	all := req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0)
	if all {
		topics, err := a.listTopics(ctx)
		switch last := a.allTopics.Load(); {
		case err == nil:
			a.allTopics.Store(&topics)
		case last != nil:
			// Serve the last list, as a Kafka broker serves its metadata
			// cache: an empty one would tell clients every topic is gone,
			// and a regex subscriber would drop all its partitions for the
			// length of a catalog outage.
			a.allTopicsWarn.Do(func() {
				a.log.Warn("metadata: listing topics failed; serving the last list", "err", err)
			})
			topics = *last
		default:
			// No list to serve (nothing listed since the start). An
			// answer without topics would tell clients that every topic
			// is gone: the Java client takes it as it is (Admin
			// listTopics shows an empty cluster, a pattern subscriber
			// drops its partitions), and only REBOOTSTRAP_REQUIRED is a
			// top-level error to it. A closed connection makes every
			// client retry, on this agent or another.
			a.allTopicsWarn.Do(func() {
				a.log.Warn("metadata: listing topics failed and none were listed before; closing the connection", "err", err)
			})
			return nil, fmt.Errorf("%w: metadata: listing topics: %w", errCloseConn, err)
		}
		for _, t := range topics {
			a.cacheTopic(t)
			resp.Topics = append(resp.Topics, a.topicMetadata(m, t, zone))
		}
		return resp, nil
	}
	// Topics named or given by id are read from the catalog (see
	// metadataTopic); many of them with one query rather than one each.
	var (
		listed     map[string]catalog.Topic
		listedByID map[catalog.TopicID]catalog.Topic
	)
	if len(req.Topics) > metadataTopicReads {
		if topics, err := a.listTopics(ctx); err == nil {
			listed = make(map[string]catalog.Topic, len(topics))
			listedByID = make(map[catalog.TopicID]catalog.Topic, len(topics))
			for _, t := range topics {
				listed[t.Name] = t
				listedByID[t.ID] = t
			}
		}
	}
	// Each topic is answered once however often the request names it, as
	// Kafka answers the set of names (and of ids) it was given: answering
	// every entry let a frame of a few KiB, naming one topic of thousands
	// of partitions thousands of times, build an answer of millions of
	// partitions.
	var seen map[any]struct{}
	if len(req.Topics) > 1 {
		seen = make(map[any]struct{}, len(req.Topics))
	}
	for _, rt := range req.Topics {
		if seen != nil {
			var k any
			switch {
			case rt.Topic != nil && *rt.Topic != "":
				k = *rt.Topic
			case !catalog.TopicID(rt.TopicID).IsZero():
				k = rt.TopicID
			}
			if k != nil {
				if _, dup := seen[k]; dup {
					continue
				}
				seen[k] = struct{}{}
			}
		}
		var (
			t   catalog.Topic
			err error
		)
		switch {
		case rt.Topic != nil && *rt.Topic != "":
			if lt, ok := listed[*rt.Topic]; ok {
				a.cacheTopic(lt)
				t = lt
				break
			}
			t, err = a.metadataTopic(ctx, *rt.Topic, allowCreate)
			if errors.Is(err, catalog.ErrUnknownTopic) {
				// Kafka answers a name no topic can have
				// INVALID_TOPIC_EXCEPTION (not retriable) rather
				// than UNKNOWN_TOPIC_OR_PARTITION, so clients
				// fail at once instead of waiting for it.
				if verr := catalog.ValidateTopicName(*rt.Topic); verr != nil {
					err = verr
				}
			}
		case !catalog.TopicID(rt.TopicID).IsZero():
			t, err = a.metadataTopicByID(ctx, rt.TopicID, listedByID)
		default:
			err = catalog.ErrInvalidTopic
		}
		if err != nil {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic, mt.TopicID = rt.Topic, rt.TopicID
			mt.AuthorizedOperations = authorizedOperationsUnknown
			// As Kafka, which tells an unknown topic's IsInternal
			// from its name.
			mt.IsInternal = rt.Topic != nil && kafkaInternalTopic(*rt.Topic)
			mt.ErrorCode = metadataTopicError(err, rt.Topic == nil)
			if mt.ErrorCode == kerr.UnknownServerError.Code {
				a.log.Warn("metadata: topic lookup failed", "err", err)
			}
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		resp.Topics = append(resp.Topics, a.topicMetadata(m, t, zone))
	}
	return resp, nil
}

func metadataTopicError(err error, byID bool) int16 {
	switch {
	case errors.Is(err, catalog.ErrUnknownTopic) && byID:
		return kerr.UnknownTopicID.Code
	case errors.Is(err, catalog.ErrUnknownTopic):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, catalog.ErrInvalidTopic):
		return kerr.InvalidTopicException.Code
	case errors.Is(err, catalog.ErrInvalidPartitions), errors.Is(err, catalog.ErrInvalidConfig):
		return kerr.InvalidRequest.Code
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return kerr.RequestTimedOut.Code
	}
	return kerr.UnknownServerError.Code
}

func (a *Agent) topicMetadata(m *membership, t catalog.Topic, zone string) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	mt.Topic = kmsg.StringPtr(t.Name)
	mt.TopicID = t.ID
	mt.AuthorizedOperations = authorizedOperationsUnknown
	epoch := m.leaderEpoch()
	var buf [32]uint64
	reps := m.replicas(t.ID, zone, buf[:0])
	mt.Partitions = make([]kmsg.MetadataResponseTopicPartition, t.Partitions)
	// Every partition's replicas and ISR, in one array rather than two
	// each: an all-topics answer has a partition for every one of the
	// cluster's. A partition has at most a replica per zone and one more
	// (the leader of a client of no zone may be an agent of none), and
	// never more than the agents.
	width := min(m.zoneCount()+1, max(len(m.agents), 1))
	nodes := make([]int32, 0, 2*width*int(t.Partitions))
	for p := int32(0); p < t.Partitions; p++ {
		start := len(nodes)
		nodes = reps.replicas(p, nodes)
		n := len(nodes) - start
		nodes = append(nodes, nodes[start:]...)
		mp := &mt.Partitions[p]
		mp.Default()
		mp.Partition = p
		mp.Leader = nodes[start]
		mp.LeaderEpoch = epoch
		mp.Replicas = nodes[start : start+n : start+n]
		mp.ISR = nodes[start+n : start+2*n : start+2*n]
		mp.OfflineReplicas = []int32{}
	}
	return mt
}

// metadataTopicReads is how many named topics a Metadata request reads
// one by one; more are read with one ListTopics.
const metadataTopicReads = 8

// metadataTopic is topicOrCreate reading the catalog rather than the
// cache, as the all-topics answer does: a client works from the topic ids
// and partition counts of its metadata until its next refresh, minutes
// later, and franz-go takes a topic id that changes under it for a topic
// deleted and created again, which it then fails for good. An id that
// another agent's DeleteTopics and CreateTopics replaced seconds ago must
// not be handed to a client that starts now. The cached topic answers only
// while the catalog cannot.
func (a *Agent) metadataTopic(ctx context.Context, name string, allowCreate bool) (catalog.Topic, error) {
	t, err := a.readTopic(ctx, name)
	switch {
	case err == nil:
		return t, nil
	case errors.Is(err, catalog.ErrUnknownTopic):
		return a.autoCreate(ctx, name, allowCreate, err)
	}
	if t, _, found := a.topics.get(name); found {
		return t, nil
	}
	return catalog.Topic{}, err
}

// metadataTopicByID is metadataTopic for a topic id: the catalog's answer,
// the cached topic only while the catalog cannot answer. A deleted topic's
// id, which a client may hold on to after the topic was created again
// under its name, is UNKNOWN_TOPIC_ID at once, as in Kafka, not described
// from the cache until the entry ages. listed, when not nil, is every topic
// by id, listed after the request came: an id not in it has no topic.
func (a *Agent) metadataTopicByID(ctx context.Context, id catalog.TopicID, listed map[catalog.TopicID]catalog.Topic) (catalog.Topic, error) {
	if listed != nil {
		if t, ok := listed[id]; ok {
			a.cacheTopic(t)
			return t, nil
		}
		// Forgetting an id scans the tail index: for a cached one
		// only, as a request may name many unknown ids.
		if _, _, found := a.topics.get(id); found {
			a.topicGone(id)
		}
		return catalog.Topic{}, fmt.Errorf("metadata: topic %x: %w", id[:], catalog.ErrUnknownTopic)
	}
	t, err := a.readTopicByID(ctx, id)
	if err == nil || errors.Is(err, catalog.ErrUnknownTopic) {
		return t, err
	}
	if t, _, found := a.topics.get(id); found {
		return t, nil
	}
	return catalog.Topic{}, err
}
