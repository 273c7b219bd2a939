package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
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
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
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
	if commits < 20 {
		t.Fatalf("only %.0f commits: the test needs many", commits)
	}
	// A read may still happen now and then (the backstop, or an own
	// commit slower than ownCommitWait to return), never one per commit.
	if float64(calls) > commits/4+4 || rows > int64(records/4) {
		t.Errorf("the follower made %d CommitsSince calls reading %d rows for %.0f own commits of %d records, want nearly none", calls, rows, commits, records)
	}
}
