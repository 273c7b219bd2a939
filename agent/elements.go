package agent

import (
	"encoding/binary"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Requests name elements that their handlers work on and answer one by
// one: groups, topics, resources, configs, partitions. An element can be
// a byte or two on the wire (an empty group id in a flexible request is
// one byte) but a 16-byte string header once decoded, a struct of a
// hundred bytes in the answer, and the answer's slice doubles as it
// grows: one DescribeGroups frame of 8 MiB of empty ids took 3 GiB of
// heap, while the request budget (budget.go) counts the frame's 8 MiB.
// So the elements of a request are bounded, far above what any client
// sends (Metadata for 100,000 partitions names topics, or none at all);
// a request over a bound closes its connection, as Kafka closes one for
// a frame over socket.request.max.bytes. Produce has its own bound
// (maxBatchlessEntries): its partitions carry record batches.
const (
	// maxRequestNames bounds the groups, topics, resources, configs,
	// coordinator keys and members a request names, together.
	maxRequestNames = 100_000
	// maxRequestPartitions bounds the partitions a request names, at
	// least 12 bytes each on the wire.
	maxRequestPartitions = 1_000_000
)

// requestElements counts the names and partitions of a decoded request
// (see maxRequestNames).
func requestElements(req kmsg.Request) (names, partitions int) {
	switch r := req.(type) {
	case *kmsg.FetchRequest:
		names = len(r.Topics) + len(r.ForgottenTopics)
		for i := range r.Topics {
			partitions += len(r.Topics[i].Partitions)
		}
		for i := range r.ForgottenTopics {
			partitions += len(r.ForgottenTopics[i].Partitions)
		}
	case *kmsg.ListOffsetsRequest:
		names = len(r.Topics)
		for i := range r.Topics {
			partitions += len(r.Topics[i].Partitions)
		}
	case *kmsg.MetadataRequest:
		names = len(r.Topics)
	case *kmsg.CreateTopicsRequest:
		names = len(r.Topics)
		for i := range r.Topics {
			names += len(r.Topics[i].Configs)
			partitions += len(r.Topics[i].ReplicaAssignment)
		}
	case *kmsg.DeleteTopicsRequest:
		names = len(r.TopicNames) + len(r.Topics)
	case *kmsg.DeleteRecordsRequest:
		names = len(r.Topics)
		for i := range r.Topics {
			partitions += len(r.Topics[i].Partitions)
		}
	case *kmsg.OffsetForLeaderEpochRequest:
		names = len(r.Topics)
		for i := range r.Topics {
			partitions += len(r.Topics[i].Partitions)
		}
	case *kmsg.DescribeConfigsRequest:
		names = len(r.Resources)
		for i := range r.Resources {
			names += len(r.Resources[i].ConfigNames)
		}
	case *kmsg.AlterConfigsRequest:
		names = len(r.Resources)
		for i := range r.Resources {
			names += len(r.Resources[i].Configs)
		}
	case *kmsg.IncrementalAlterConfigsRequest:
		names = len(r.Resources)
		for i := range r.Resources {
			names += len(r.Resources[i].Configs)
		}
	case *kmsg.CreatePartitionsRequest:
		names = len(r.Topics)
		for i := range r.Topics {
			partitions += len(r.Topics[i].Assignment)
		}
	case *kmsg.OffsetCommitRequest:
		names = len(r.Topics)
		for i := range r.Topics {
			partitions += len(r.Topics[i].Partitions)
		}
	case *kmsg.OffsetFetchRequest:
		names = len(r.Topics) + len(r.Groups)
		for i := range r.Topics {
			partitions += len(r.Topics[i].Partitions)
		}
		for i := range r.Groups {
			names += len(r.Groups[i].Topics)
			for j := range r.Groups[i].Topics {
				partitions += len(r.Groups[i].Topics[j].Partitions)
			}
		}
	case *kmsg.OffsetDeleteRequest:
		names = len(r.Topics)
		for i := range r.Topics {
			partitions += len(r.Topics[i].Partitions)
		}
	case *kmsg.FindCoordinatorRequest:
		names = len(r.CoordinatorKeys)
	case *kmsg.JoinGroupRequest:
		names = len(r.Protocols)
	case *kmsg.SyncGroupRequest:
		names = len(r.GroupAssignment)
	case *kmsg.LeaveGroupRequest:
		names = len(r.Members)
	case *kmsg.DescribeGroupsRequest:
		names = len(r.Groups)
	case *kmsg.ListGroupsRequest:
		names = len(r.StatesFilter) + len(r.TypesFilter)
	case *kmsg.DeleteGroupsRequest:
		names = len(r.Groups)
	case *kmsg.ConsumerGroupHeartbeatRequest:
		names = len(r.SubscribedTopicNames) + len(r.Topics)
		for i := range r.Topics {
			partitions += len(r.Topics[i].Partitions)
		}
	case *kmsg.ConsumerGroupDescribeRequest:
		names = len(r.Groups)
	}
	return names, partitions
}

// leadingNames reads the length of the array of names that opens the body
// of requests whose elements are mostly that array (group ids, topics,
// resources), before kmsg decodes it: decoding alone allocates up to 16
// bytes per byte of such a frame (128 MiB for the 8 MiB of empty group
// ids), so an absurd count is refused without it. ok is false when the
// request has no such array or body is too short to hold its length (kmsg
// then refuses it).
func leadingNames(key, version int16, flexible bool, body []byte) (n int, ok bool) {
	skip := 0
	switch kmsg.Key(key) {
	case kmsg.ListOffsets:
		skip = 4 // ReplicaID
		if version >= 2 {
			skip++ // IsolationLevel
		}
	case kmsg.OffsetFetch:
		if version < 8 {
			return 0, false // one group, then its topics
		}
	case kmsg.Metadata, kmsg.CreateTopics, kmsg.DeleteTopics, kmsg.DeleteRecords,
		kmsg.DescribeConfigs, kmsg.AlterConfigs, kmsg.IncrementalAlterConfigs,
		kmsg.CreatePartitions, kmsg.DescribeGroups, kmsg.DeleteGroups, kmsg.ConsumerGroupDescribe:
	default:
		return 0, false
	}
	if len(body) < skip {
		return 0, false
	}
	body = body[skip:]
	if flexible {
		u, size := binary.Uvarint(body)
		if size <= 0 || u == 0 || u > 1<<31 {
			return 0, false // not a length kmsg accepts
		}
		return int(u - 1), true
	}
	if len(body) < 4 {
		return 0, false
	}
	return max(int(int32(binary.BigEndian.Uint32(body))), 0), true
}
