package fleet

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floebroker/floe/catalog"
)

// TestFollowerSkipsOwnCommits: an agent that is the only writer reads
// none of its own commits back from the catalog. Its tail index has their
// rows from the flush already; at 2,000 partitions reading them again cost
// thousands of rows per commit, in the agent and in PostgreSQL.
func TestFollowerSkipsOwnCommits(t *testing.T) {
	cat, bucket := services(t)
	a := startMember(t, cat, bucket, "a", nil)
	waitFleet(t, a)
	createTopic(t, a.Addr, "own", 8)
	prod := client(t, a.Addr, kgo.ClientID("producer,floe_az=a"), kgo.ProducerLinger(0))
	ctx := context.Background()
	// Warm up: metadata, producer id, the follower at the tail.
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "own", Value: []byte("warm")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)

	flushes0 := counter(t, a.reg, "floe_wal_flushes_total", nil)
	cat.commitsSince.Store(0)
	cat.commitRows.Store(0)
	var records int
	// Produce for 2 s, and on until there are enough commits to judge (a
	// loaded machine makes few in 2 s).
	const enough = 20
	end, limit := time.Now().Add(2*time.Second), time.Now().Add(30*time.Second)
	for time.Now().Before(end) || counter(t, a.reg, "floe_wal_flushes_total", nil)-flushes0 < enough {
		if time.Now().After(limit) {
			break
		}
		rs := make([]*kgo.Record, 16)
		for i := range rs {
			rs[i] = &kgo.Record{Topic: "own", Value: []byte("own commit")}
		}
		if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		records += len(rs)
	}
	commits := counter(t, a.reg, "floe_wal_flushes_total", nil) - flushes0
	calls, rows := cat.commitsSince.Load(), cat.commitRows.Load()
	t.Logf("%d records in %.0f commits; the follower made %d CommitsSince calls reading %d rows", records, commits, calls, rows)
	if commits < enough {
		t.Fatalf("only %.0f commits: the test needs many", commits)
	}
	// A read may still happen now and then (the backstop, or an own
	// commit slower than ownCommitWait to return), never one per commit.
	if float64(calls) > commits/4+4 || rows > int64(records/4) {
		t.Errorf("the follower made %d CommitsSince calls reading %d rows for %.0f own commits of %d records, want nearly none", calls, rows, commits, records)
	}
}

// TestFollowerPassesCommitsWithoutRows: a run of commits that stored no
// rows (every batch rejected) longer than one CommitsSince answer must not
// stop an agent's follower. PostgreSQL's CommitsSince pages by commits, so
// over such a run it answers no rows and, as the position to resume from,
// the last commit it scanned; a follower that advanced only by row commit
// ids read the same empty page forever, and consumers waiting at the tail
// on that agent never saw another agent's records again.
func TestFollowerPassesCommitsWithoutRows(t *testing.T) {
	cat, bucket := services(t)
	a, b := startMember(t, cat, bucket, "a", nil), startMember(t, cat, bucket, "b", nil)
	waitFleet(t, a, b)
	createTopic(t, a.Addr, "rowless", 1)
	prod := client(t, b.Addr, kgo.ClientID("producer,floe_az=b"), kgo.DefaultProduceTopic("rowless"))
	produceN(t, prod, "rowless", 0, 1)
	if p, _ := fetchAt(t, a.Addr, "rowless", 0, time.Second); p.ErrorCode != 0 || p.HighWatermark != 1 {
		t.Fatalf("fetch on A: error %d, high watermark %d", p.ErrorCode, p.HighWatermark)
	}

	// More commits without rows than one follower read pages through: each
	// names a partition that does not exist, so its batch is rejected.
	ctx := context.Background()
	missing := catalog.TopicPartition{TopicID: catalog.TopicID{0xde, 0xad}, Partition: 0}
	for i := range 1100 {
		res, err := cat.CommitSegment(ctx, catalog.Segment{
			Key: fmt.Sprintf("rowless/%d", i), Size: 100,
			Batches: []catalog.BatchRef{{TopicPartition: missing, ByteLength: 100, OffsetSpan: 1, Records: 1, ProducerID: -1}},
		})
		if err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
		if len(res.Results) != 1 || res.Results[0].Err == nil {
			t.Fatalf("commit %d stored its batch: %+v", i, res.Results)
		}
	}

	// B's next record reaches a consumer waiting at the tail on A.
	produceN(t, prod, "rowless", 0, 1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, _ := fetchAt(t, a.Addr, "rowless", 1, 500*time.Millisecond)
		if p.ErrorCode != 0 {
			t.Fatalf("fetch on A at 1: error %d", p.ErrorCode)
		}
		if len(p.RecordBatches) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A's consumer at the tail never saw B's record after the commits without rows (high watermark %d)", p.HighWatermark)
		}
	}
}
