package fleet

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/tests/floetest"
)

// groupOn returns a group name whose coordinator is m, as m answers.
func groupOn(t *testing.T, m *member) string {
	t.Helper()
	for i := range 200 {
		g := fmt.Sprintf("group-%d", i)
		fc := kmsg.NewPtrFindCoordinatorRequest()
		fc.Version, fc.CoordinatorKeys = 4, []string{g}
		co := rawRequest(t, m.Addr, "", fc).(*kmsg.FindCoordinatorResponse).Coordinators[0]
		if co.ErrorCode == 0 && co.NodeID == m.Agent.Agent.NodeID() {
			return g
		}
	}
	t.Fatalf("no group of 200 is coordinated by node %d", m.Agent.Agent.NodeID())
	return ""
}

// commitRaw commits offset for topic's partition 0 as a simple consumer
// through addr itself and returns the partition's error code.
func commitRaw(t *testing.T, addr, group, topic string, offset int64) int16 {
	t.Helper()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 8
	req.Group, req.Generation = group, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 0, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := rawRequest(t, addr, "", req).(*kmsg.OffsetCommitResponse)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("offset commit answered %+v", resp.Topics)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

// TestCommitAfterDeleteThroughOtherAgent: a topic deleted through agent A
// takes its group offsets with it, as in Kafka. A commit for it that
// reaches the group's coordinator on agent B afterwards, while B still
// caches the topic, must be refused (UNKNOWN_TOPIC_OR_PARTITION), not
// stored: a topic created again under the name would otherwise start
// the group at the deleted topic's offset and skip records.
func TestCommitAfterDeleteThroughOtherAgent(t *testing.T) {
	cats := ownCatalogs(t, 2)
	bucket := floetest.MinIOBucket(t)
	a := startMember(t, cats[0], bucket, "", nil)
	b := startMember(t, cats[1], bucket, "", nil)
	waitFleet(t, a, b)
	group := groupOn(t, b)
	createTopic(t, a.Addr, "gone", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(client(t, a.Addr))

	// B's coordinator learns the topic with this commit, and caches it.
	if code := commitRaw(t, b.Addr, group, "gone", 5); code != 0 {
		t.Fatalf("commit 5 through b: %v", kerr.ErrorForCode(code))
	}
	if rs, err := adm.DeleteTopics(ctx, "gone"); err != nil || rs["gone"].Err != nil {
		t.Fatalf("delete through a: %v %v", err, rs["gone"].Err)
	}
	if code := commitRaw(t, b.Addr, group, "gone", 7); code != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("commit 7 through b after the delete: %v, want %v", kerr.ErrorForCode(code), kerr.UnknownTopicOrPartition)
	}

	createTopic(t, a.Addr, "gone", 1)
	fetched, err := kadm.NewClient(client(t, b.Addr)).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetch offsets: %v", err)
	}
	if o, ok := fetched.Lookup("gone", 0); ok {
		t.Errorf("group %s has offset %d for the re-created topic, want none", group, o.At)
	}
}
