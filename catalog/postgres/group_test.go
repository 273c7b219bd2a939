package postgres

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// TestGroupCommitMatchesOneByOne: a group of segments of one idempotent
// producer over shared partitions, committed together, gets the results,
// rows and offsets that committing them one by one gives a twin topic,
// in one transaction, with consecutive commit ids; the group's keys then
// answer alone, and replaying the group with a new key added commits
// only that one (the group is split: its other keys are committed).
func TestGroupCommitMatchesOneByOne(t *testing.T) {
	url := freshSchema(t)
	c := openTest(t, url, catalog.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	groups := []string{"group", "single"}
	topics := map[string]catalog.Topic{}
	for _, name := range groups {
		topic, err := c.CreateTopic(ctx, catalog.TopicSpec{Name: name, Partitions: 4})
		if err != nil {
			t.Fatal(err)
		}
		topics[name] = topic
	}
	segsOf := func(name string, pid int64, from, n int) []catalog.Segment {
		topic := topics[name]
		seq := make([]int32, 4)
		var segs []catalog.Segment
		for s := range from + n {
			seg := catalog.Segment{Key: fmt.Sprintf("%s/%d", name, s)}
			var off int64
			for p := range int32(4) {
				if s%2 == 1 && p == 2 {
					continue // partition 2 only in every other segment
				}
				for range 2 {
					seg.Batches = append(seg.Batches, catalog.BatchRef{
						TopicPartition: catalog.TopicPartition{TopicID: topic.ID, Partition: p},
						ByteOffset:     off, ByteLength: 100, OffsetSpan: 5, Records: 5,
						FirstTimestamp: 1, MaxTimestamp: int64(s), ProducerID: pid, BaseSequence: seq[p],
					})
					seq[p] += 5
					off += 100
				}
			}
			seg.Size = off
			if s >= from {
				segs = append(segs, seg)
			}
		}
		return segs
	}
	pid, _, err := c.AllocateProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var want []catalog.CommitResult
	for _, seg := range segsOf("single", pid, 0, 3) {
		res, err := c.CommitSegment(ctx, seg)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, res)
	}
	before, _, err := c.CommitsSince(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	last := before[len(before)-1].CommitID
	got, err := c.CommitSegments(ctx, segsOf("group", pid, 0, 3))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i].CommitID != last+int64(i)+1 {
			t.Errorf("segment %d: commit id %d, want %d", i, got[i].CommitID, last+int64(i)+1)
		}
		if !reflect.DeepEqual(got[i].Results, want[i].Results) {
			t.Errorf("segment %d: results\n%+v\nwant\n%+v", i, got[i].Results, want[i].Results)
		}
	}
	rows, _, err := c.CommitsSince(ctx, last, 1000)
	if err != nil {
		t.Fatal(err)
	}
	perKey := map[string]int{}
	for _, r := range rows {
		perKey[r.ObjectKey]++
		if want := got[r.ObjectKey[len(r.ObjectKey)-1]-'0'].CommitID; r.CommitID != want {
			t.Errorf("row %+v: commit id %d, want %d", r, r.CommitID, want)
		}
	}
	if perKey["group/0"] != 4 || perKey["group/1"] != 3 || perKey["group/2"] != 4 {
		t.Errorf("rows per object: %v", perKey)
	}
	for p := range int32(4) {
		g, err := c.Offsets(ctx, catalog.TopicPartition{TopicID: topics["group"].ID, Partition: p})
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.Offsets(ctx, catalog.TopicPartition{TopicID: topics["single"].ID, Partition: p})
		if err != nil {
			t.Fatal(err)
		}
		if g != s {
			t.Errorf("partition %d: offsets %+v, one by one %+v", p, g, s)
		}
	}
	// Each key alone answers as the group did.
	for i, seg := range segsOf("group", pid, 0, 3) {
		res, err := c.CommitSegment(ctx, seg)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(res, got[i]) {
			t.Errorf("segment %d again: %+v, want %+v", i, res, got[i])
		}
	}
	// A replay grouping committed keys with a new one.
	again, err := c.CommitSegments(ctx, segsOf("group", pid, 1, 3))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again[:2], got[1:]) {
		t.Errorf("replayed keys: %+v, want %+v", again[:2], got[1:])
	}
	if r := again[2].Results[0]; r.Err != nil || r.Duplicate || r.BaseOffset != 30 {
		t.Errorf("new segment of the replay: %+v", again[2].Results)
	}
}
