// Package catalogtest is the conformance suite every catalog backend runs:
// the same named subtests against PostgreSQL and SQLite, so both give the
// guarantees catalog.Catalog documents. It also holds the concurrency
// (Stress) test the backends run with their own parameters.
//
// Use it from a backend's tests:
//
//	func TestConformance(t *testing.T) {
//		catalogtest.Run(t, func(t *testing.T) catalog.Catalog { return openFresh(t) })
//	}
//
// The factory must return a new, empty catalog each call and close it in
// t.Cleanup. One subtest closes its catalog itself, so a second Close must
// not fail (or its error must be ignored by the cleanup).
package catalogtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// Factory returns a fresh, empty catalog and registers its Close with
// t.Cleanup.
type Factory func(t *testing.T) catalog.Catalog

// Run runs every conformance subtest, each on its own fresh catalog.
func Run(t *testing.T, newCatalog Factory) {
	groups := []struct {
		name  string
		tests []namedTest
	}{
		{"Topics", topicTests},
		{"Commit", commitTests},
		{"GroupCommit", groupCommitTests},
		{"Read", readTests},
		{"Follow", followTests},
		{"Producers", producerTests},
		{"Groups", groupTests},
		{"Agents", agentTests},
		{"Leases", leaseTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tt := range g.tests {
				t.Run(tt.name, func(t *testing.T) {
					tt.fn(t, newCatalog(t))
				})
			}
		})
	}
}

type namedTest struct {
	name string
	fn   func(t *testing.T, c catalog.Catalog)
}

// ctx returns a context bounded well below the test timeout, so a hang
// fails one subtest with a useful message.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func uniqueKey(prefix string) string {
	var b [8]byte
	rand.Read(b[:])
	return prefix + "/" + hex.EncodeToString(b[:]) + ".seg"
}

func createTopic(t *testing.T, c catalog.Catalog, name string, partitions int32, configs map[string]string) catalog.Topic {
	t.Helper()
	tp, err := c.CreateTopic(ctx(t), catalog.TopicSpec{Name: name, Partitions: partitions, Configs: configs})
	if err != nil {
		t.Fatalf("CreateTopic(%q): %v", name, err)
	}
	return tp
}

func tpOf(topic catalog.Topic, p int32) catalog.TopicPartition {
	return catalog.TopicPartition{TopicID: topic.ID, Partition: p}
}

// batch is a non-idempotent batch of span offsets and 100 bytes per offset.
func batch(tp catalog.TopicPartition, span int32, ts int64) catalog.BatchRef {
	return catalog.BatchRef{
		TopicPartition: tp, ByteLength: 100 * int64(span), OffsetSpan: span, Records: span,
		FirstTimestamp: ts, MaxTimestamp: ts, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
	}
}

func idemBatch(tp catalog.TopicPartition, span int32, pid int64, epoch int16, seq int32) catalog.BatchRef {
	b := batch(tp, span, 1000)
	b.ProducerID, b.ProducerEpoch, b.BaseSequence = pid, epoch, seq
	return b
}

// segment lays batches out back to back in a new object with a unique key.
func segment(batches ...catalog.BatchRef) catalog.Segment {
	seg := catalog.Segment{Key: uniqueKey("test"), Batches: batches}
	var off int64 = 64 // a header before the first batch
	for i := range seg.Batches {
		seg.Batches[i].ByteOffset = off
		off += seg.Batches[i].ByteLength
	}
	seg.Size = off + 64
	return seg
}

func commit(t *testing.T, c catalog.Catalog, seg catalog.Segment) catalog.CommitResult {
	t.Helper()
	res, err := c.CommitSegment(ctx(t), seg)
	if err != nil {
		t.Fatalf("CommitSegment(%s): %v", seg.Key, err)
	}
	if len(res.Results) != len(seg.Batches) {
		t.Fatalf("CommitSegment: %d results for %d batches", len(res.Results), len(seg.Batches))
	}
	return res
}

func offsets(t *testing.T, c catalog.Catalog, tp catalog.TopicPartition) catalog.PartitionOffsets {
	t.Helper()
	o, err := c.Offsets(ctx(t), tp)
	if err != nil {
		t.Fatalf("Offsets: %v", err)
	}
	return o
}

// allRows reads every row of tp from its log start with Batches.
func allRows(t *testing.T, c catalog.Catalog, tp catalog.TopicPartition) []catalog.BatchRow {
	t.Helper()
	o := offsets(t, c, tp)
	var rows []catalog.BatchRow
	for from := o.LogStart; from < o.HighWatermark; {
		rs, err := c.Batches(ctx(t), tp, from, 1<<30)
		if err != nil {
			t.Fatalf("Batches(%d): %v", from, err)
		}
		if len(rs) == 0 {
			t.Fatalf("Batches(%d) below the high watermark %d returned no rows", from, o.HighWatermark)
		}
		rows = append(rows, rs...)
		from = rs[len(rs)-1].LastOffset + 1
	}
	return rows
}

func wantErr(t *testing.T, err, want error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func noErr(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func describe(r catalog.BatchResult) string {
	return fmt.Sprintf("{base %d dup %v err %v logStart %d}", r.BaseOffset, r.Duplicate, r.Err, r.LogStartOffset)
}
