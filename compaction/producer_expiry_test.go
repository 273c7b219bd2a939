package compaction_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/compaction"
)

// The GC pass expires an idempotent producer's state on a partition once
// no commit has written it for ProducerExpiration (then the producer, left
// without state), looking at most every 10 minutes: the producer's next
// batch there is accepted at any sequence and a retry of an old one is
// stored again, as on a Kafka broker past producer.id.expiration.ms.
func TestGCExpiresIdleProducers(t *testing.T) {
	eachBackendOnClock(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		cat := e.cat.(catalog.Catalog)
		top := e.topic("idem", 4, nil)
		pid, epoch, err := cat.AllocateProducerID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		// produce commits one batch of pid at seq on each of parts and
		// reports whether each was stored as new (not a duplicate).
		produce := func(seq int32, parts ...int32) []bool {
			t.Helper()
			n++
			seg := catalog.Segment{Key: fmt.Sprintf("v1/%s/idem-%d.seg", cluster, n), Size: 1 << 10}
			for i, p := range parts {
				seg.Batches = append(seg.Batches, catalog.BatchRef{TopicPartition: catalog.TopicPartition{TopicID: top.ID, Partition: p},
					ByteOffset: int64(100 * i), ByteLength: 100, OffsetSpan: 1, Records: 1,
					ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq})
			}
			res, err := cat.CommitSegment(ctx, seg)
			if err != nil {
				t.Fatal(err)
			}
			stored := make([]bool, len(parts))
			for i, r := range res.Results {
				if r.Err != nil {
					t.Fatalf("seq %d on partition %d: %v", seq, parts[i], r.Err)
				}
				stored[i] = !r.Duplicate
			}
			return stored
		}
		produce(0, 0, 1, 2, 3)

		reg := prometheus.NewRegistry()
		// The segments named above are not in the bucket: leave them
		// unmerged.
		c, err := compaction.New(compaction.Config{Cluster: cluster, Holder: "a", Interval: time.Second,
			MergeMinAge: 1000 * time.Hour, TargetBytes: 64 << 10, GCGrace: 10 * time.Minute, OrphanInterval: time.Hour,
			LeaseTTL: time.Minute, Shards: 4}, e.cat, e.bucket, nil, reg, e.clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		run := func() {
			t.Helper()
			if err := c.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
		}
		expired := func() (states, producers float64) {
			t.Helper()
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				switch mf.GetName() {
				case "floe_compaction_producer_states_expired_total":
					states = mf.GetMetric()[0].GetCounter().GetValue()
				case "floe_compaction_producers_expired_total":
					producers = mf.GetMetric()[0].GetCounter().GetValue()
				}
			}
			return states, producers
		}

		// Idle for less than the default expiration (a day): kept.
		e.clk.Advance(23 * time.Hour)
		run()
		if s, p := expired(); s != 0 || p != 0 {
			t.Fatalf("expired %v states and %v producers idle for 23h", s, p)
		}
		if stored := produce(0, 1); stored[0] {
			t.Fatal("a retry was stored again: the state expired early")
		}
		produce(1, 3) // partition 3 is written at 23h

		// Past it: partitions 0-2's states expire; partition 3's and the
		// producer (which has state) stay.
		e.clk.Advance(time.Hour + time.Minute) // 24h01
		run()
		if s, p := expired(); s != 3 || p != 0 {
			t.Fatalf("at 24h01: expired %v states and %v producers, want 3 and 0 (partition 3 was written at 23h)", s, p)
		}
		if stored := produce(1, 3); stored[0] {
			t.Fatal("partition 3's retry was stored again: its state expired")
		}
		// A retry after expiry is a new batch; a gap is accepted (KIP-360).
		if stored := produce(0, 0); !stored[0] {
			t.Fatal("a retry after expiry was recognised: the state did not expire")
		}
		if stored := produce(7, 2); !stored[0] {
			t.Fatal("sequence 7 after expiry was not stored")
		}

		// Partition 3's state goes idle at 47h, just after a look at
		// 46h58: the next look is 10 minutes later.
		e.clk.Advance(22*time.Hour + 57*time.Minute) // 46h58
		run()
		e.clk.Advance(3 * time.Minute) // 47h01
		run()
		if s, _ := expired(); s != 3 {
			t.Fatalf("expired %v states, want 3: expiry looked again within 10 minutes", s)
		}
		e.clk.Advance(7 * time.Minute) // 47h08
		run()
		if s, p := expired(); s != 4 || p != 0 {
			t.Fatalf("at 47h08: expired %v states and %v producers, want 4 and 0", s, p)
		}

		// The states written at 24h01 go at 48h10, and the producer with
		// them.
		e.clk.Advance(62 * time.Minute)
		run()
		if s, p := expired(); s != 6 || p != 1 {
			t.Fatalf("at 48h10: expired %v states and %v producers, want 6 and 1", s, p)
		}
		if _, err := cat.BumpProducerEpoch(ctx, pid, epoch); !errors.Is(err, catalog.ErrUnknownProducerID) {
			t.Fatalf("bump of the expired producer: %v, want ErrUnknownProducerID", err)
		}
	})
}
