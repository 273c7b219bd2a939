package compaction_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// startOffset is the partition's log start as a client lists it.
func startOffset(t *testing.T, adm *kadm.Client, topic string, p int32) int64 {
	t.Helper()
	lo, err := adm.ListStartOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := lo.Lookup(topic, p)
	if !ok || o.Err != nil {
		t.Fatalf("list start offset of %s/%d: %v", topic, p, o.Err)
	}
	return o.Offset
}

// Records without a timestamp (-1, which Kafka accepts under CreateTime)
// are kept for retention.ms after they were written: Kafka then ages a
// segment by its file's modification time. Records with timestamps older
// than retention.ms go at the next pass.
func TestRetentionKeepsRecordsWithoutTimestamp(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		cl := e.a.Client(t)
		adm := kadm.NewClient(cl)
		produce := func(topic string, ts time.Time, from, n int) {
			t.Helper()
			var rs []*kgo.Record
			for i := from; i < from+n; i++ {
				rs = append(rs, &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "v%d", i), Timestamp: ts})
			}
			if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		for _, topic := range []string{"untimed", "aged"} {
			createTopic(t, cl, topic, 1, map[string]*string{"retention.ms": kadm.StringPtr("3600000")})
		}
		produce("untimed", time.Now().Add(-2*time.Hour), 0, 10) // expired
		produce("untimed", time.UnixMilli(-1), 10, 10)          // no timestamp, just written
		produce("untimed", time.Now(), 20, 10)

		e.pass(t)
		if got := startOffset(t, adm, "untimed", 0); got != 10 {
			t.Fatalf("log start %d after a pass, want 10 (the expired records go, the untimed ones just written stay)", got)
		}
		got := consumeAll(t, e.a, "untimed", 20)
		if got[0].Offset != 10 || got[0].Ts != -1 || len(got) != 20 {
			t.Fatalf("consumed %d records from offset %d (ts %d), want 20 from 10 with ts -1", len(got), got[0].Offset, got[0].Ts)
		}

		// Untimed records written over retention.ms ago go (the pass above
		// merged "untimed" into one row: a whole row goes or stays).
		produce("aged", time.UnixMilli(-1), 0, 10)
		produce("aged", time.Now().Add(30*time.Minute), 10, 10)
		e.clk.Advance(61 * time.Minute)
		e.pass(t)
		if got := startOffset(t, adm, "aged", 0); got != 10 {
			t.Fatalf("log start %d with untimed records older than retention.ms, want 10", got)
		}
	})
}

// min.compaction.lag.ms holds records without a timestamp for as long
// after they were written (Kafka ages their segment by its file's time).
func TestCompactionLagKeepsRecordsWithoutTimestamp(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		cl := e.a.Client(t)
		createTopic(t, cl, "lag", 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact"), "min.compaction.lag.ms": kadm.StringPtr("3600000")})
		for i := 0; i < 3; i++ {
			r := &kgo.Record{Topic: "lag", Key: []byte("k"), Value: fmt.Appendf(nil, "v%d", i), Timestamp: time.UnixMilli(-1)}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		e.pass(t)
		if got := consumeAll(t, e.reader(t), "lag", -1); len(got) != 3 {
			t.Fatalf("%d records left within min.compaction.lag.ms, want 3: %+v", len(got), got)
		}
	})
}

// After log compaction removed a partition's newest-timestamped record,
// ListOffsets for the max timestamp finds the newest record left, as
// Kafka's cleaner recomputes a rewritten batch's max timestamp.
func TestMaxTimestampAfterCompaction(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		cl := e.a.Client(t)
		createTopic(t, cl, "maxts", 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")})
		base := time.Now().Add(-time.Hour)
		at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
		for _, rs := range [][]*kgo.Record{
			{{Key: []byte("a"), Timestamp: at(1000)}, {Key: []byte("b"), Timestamp: at(2)}}, // one batch: a goes, b stays
			{{Key: []byte("a"), Timestamp: at(3)}},
			{{Key: []byte("c"), Timestamp: at(4)}},
		} {
			for _, r := range rs {
				r.Topic, r.Value = "maxts", []byte("v")
			}
			if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		e.pass(t)
		r := e.reader(t)
		if got := consumeAll(t, r, "maxts", 3); got[0].Offset != 1 {
			t.Fatalf("compaction kept %+v, want offsets 1-3", got)
		}
		adm := kadm.NewClient(r.Client(t))
		lo, err := adm.ListMaxTimestampOffsets(ctx, "maxts")
		if err != nil {
			t.Fatal(err)
		}
		if o, _ := lo.Lookup("maxts", 0); o.Err != nil || o.Offset != 3 || o.Timestamp != at(4).UnixMilli() {
			t.Fatalf("max timestamp: offset %d ts %d (%v), want offset 3 ts %d", o.Offset, o.Timestamp, o.Err, at(4).UnixMilli())
		}
	})
}
