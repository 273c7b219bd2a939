package agent

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

// TestTailIndexAgesOut: log compaction's swaps are not commits, so
// followers never learn of them, and the tail index with the read cache
// behind it would serve a quiet compacted partition's replaced rows —
// records compaction removed — for as long as they stay cached. A
// compacted topic's rows older than TailMaxAge (half compaction's merge
// age, younger than any row compaction rewrites) are read through the
// catalog instead.
func TestTailIndexAgesOut(t *testing.T) {
	var ag *Agent
	addr := startInternalAgent(t, func(a *Agent) {
		ag = a
		a.cfg.TailMaxAge = 300 * time.Millisecond
		a.topics = newTopicCache(10*time.Millisecond, a.now) // sees the policy change below at once
	})
	nc := dialAgent(t, addr)
	createInternalTopic(t, nc, "aged", 1)
	for i := range 3 {
		req := produceReq("aged", 1, makeBatch(t, testBatch{records: 2, firstTS: time.Now().UnixMilli()}))
		if _, err := roundTrip(t, nc, req, 9, int32(10+i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := t.Context()
	top, err := ag.topic(ctx, "aged", 1)
	if err != nil {
		t.Fatal(err)
	}
	tp := catalog.TopicPartition{TopicID: top.ID}
	for deadline := time.Now().Add(5 * time.Second); !ag.tail.covers(tp, 0) || !ag.tail.covers(tp, 5); {
		if time.Now().After(deadline) {
			t.Fatal("the tail index does not hold the rows just committed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A consumer at the tail reads them: the read cache holds them now
	// (in production the writer's cache holds its objects from the put).
	if _, err := roundTrip(t, nc, fetchReq("aged", 1, 0, 0, 1<<20), 12, 50); err != nil {
		t.Fatal(err)
	}
	// The topic becomes compacted (produce would refuse these keyless
	// records on one; compaction keeps them, but this swap stands for a
	// pass that removed superseded records), and compaction drops the
	// middle batch (offsets 2-3): its rows are swapped for ones in a new
	// object, and the old objects go.
	if _, err := ag.cat.AlterTopicConfigs(ctx, "aged", []catalog.ConfigOp{{Key: catalog.ConfigCleanupPolicy, Value: "compact"}}); err != nil {
		t.Fatal(err)
	}
	swapRowsInto(t, ag, tp, 3, "compacted", 1)
	time.Sleep(400 * time.Millisecond) // past the index's max age
	if _, ok := ag.tail.lookup(tp, 2, 1, ag.cfg.TailMaxAge); ok {
		t.Fatal("the tail index still serves a row older than its max age")
	}
	resp, err := roundTrip(t, nc, fetchReq("aged", 1, 2, 0, 1<<20), 12, 100)
	if err != nil {
		t.Fatal(err)
	}
	p := resp.(*kmsg.FetchResponse).Topics[0].Partitions[0]
	if p.ErrorCode != 0 || len(p.RecordBatches) < 8 {
		t.Fatalf("fetch at 2: error %d, %d bytes", p.ErrorCode, len(p.RecordBatches))
	}
	if first := int64(binary.BigEndian.Uint64(p.RecordBatches)); first != 4 {
		t.Fatalf("fetch at 2 answered the batch at %d, want 4 (compaction removed 2-3)", first)
	}
}
