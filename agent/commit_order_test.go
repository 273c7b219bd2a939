package agent_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/sqlite"
	"github.com/floebroker/floe/tests/floetest"
)

// slowFirstCommit delays the write of offset 1, the first of the test's
// commits.
type slowFirstCommit struct{ catalog.Catalog }

func (c slowFirstCommit) CommitOffsets(ctx context.Context, group string, offsets []catalog.GroupOffset) ([]catalog.GroupPartition, error) {
	if len(offsets) == 1 && offsets[0].Offset == 1 {
		time.Sleep(300 * time.Millisecond)
	}
	return c.Catalog.CommitOffsets(ctx, group, offsets)
}

// TestPipelinedCommitsLandInOrder: two OffsetCommits pipelined on one
// connection (a consumer committing asynchronously after each poll) are
// written in order, so the later offset stands even when the earlier
// write is slow; handled concurrently, the committed offset went back.
func TestPipelinedCommitsLandInOrder(t *testing.T) {
	dir := t.TempDir()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "catalog.db"), catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	a := floetest.Start(t, floetest.Options{Dir: dir, Catalog: slowFirstCommit{db}})
	createTopic(t, a, "c", 1, nil)
	c := floetest.Dial(t, a.Addr)
	find := kmsg.NewPtrFindCoordinatorRequest()
	find.Version, find.CoordinatorKey = 3, "pipelined"
	if _, err := c.Request(find); err != nil {
		t.Fatal(err)
	}
	commit := func(offset int64) *kmsg.OffsetCommitRequest {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Version, req.Group, req.Generation = 8, "pipelined", -1
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = "c"
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = 0, offset
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return req
	}
	var reqs []kmsg.Request
	var corrs []int32
	for _, off := range []int64{1, 2} {
		req := commit(off)
		corr, err := c.Send(req)
		if err != nil {
			t.Fatal(err)
		}
		reqs, corrs = append(reqs, req), append(corrs, corr)
	}
	for i := range reqs {
		resp, err := c.Receive(reqs[i], corrs[i])
		if err != nil {
			t.Fatal(err)
		}
		if ec := resp.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode; ec != 0 {
			t.Fatalf("commit %d: error %d", i+1, ec)
		}
	}
	fetch := kmsg.NewPtrOffsetFetchRequest()
	fetch.Version, fetch.Group = 7, "pipelined"
	ft := kmsg.NewOffsetFetchRequestTopic()
	ft.Topic, ft.Partitions = "c", []int32{0}
	fetch.Topics = append(fetch.Topics, ft)
	resp, err := c.Request(fetch)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.(*kmsg.OffsetFetchResponse).Topics[0].Partitions[0].Offset; got != 2 {
		t.Fatalf("committed offset %d after commits of 1 then 2, want 2", got)
	}
}
