package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/tests/floetest"
)

// TestCommitAfterDeleteTopic: a group member still committing the topic
// right after it was deleted (an auto-commit a moment after the delete)
// must not bring its offsets back: the topic created again under the name
// would be read from the old topic's offsets, skipping records. Kafka
// answers the commit UNKNOWN_TOPIC_OR_PARTITION.
func TestCommitAfterDeleteTopic(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	createTopic(t, a, "reborn", 1, nil)
	c := floetest.Dial(t, a.Addr)
	defer c.Close()
	commit := func(offset int64) int16 {
		t.Helper()
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Version = 8
		req.Group, req.Generation = "g", -1
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = "reborn"
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = 0, offset
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := c.Request(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
	}
	wantCode(t, "commit", commit(5), nil)

	adm := kadm.NewClient(a.Client(t))
	if _, err := adm.DeleteTopic(ctx, "reborn"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "commit after the delete", commit(7), kerr.UnknownTopicOrPartition)

	createTopic(t, a, "reborn", 1, nil)
	offs, err := adm.FetchOffsets(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("reborn", 0); ok && o.At >= 0 {
		t.Fatalf("the re-created topic has the old topic's offset %d", o.At)
	}
}
