package agent

// ListOffsets (key 2), versions 1-10.
//
// Timestamps: -2 earliest (the log start offset), -1 latest (the high
// watermark), -3 the record with the largest timestamp (v7+), -4 the local
// log start (v8+; the same as earliest: all data is in object storage), -5
// the last tiered offset (v9+; no offset, as Kafka answers for a topic
// without tiered storage), and any other timestamp: the first record whose
// timestamp is at or after it, found through the catalog's batch index and
// then by reading that batch's records (decompressing it if needed; the
// next such batches' when it holds none at or after the log start), a
// negative one included; no such record is offset -1, timestamp -1. A
// special value below the version that introduced it is UNSUPPORTED_VERSION
// for that partition, as in Kafka 4.
//
// Differences from Kafka: CurrentLeaderEpoch is not checked (see fetch.go);
// READ_COMMITTED returns the high watermark (no transactions). The returned
// leader epoch is the fleet's membership generation.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

// ListOffsets special timestamps.
const (
	listLatest        = -1
	listEarliest      = -2
	listMaxTimestamp  = -3
	listEarliestLocal = -4
	listLatestTiered  = -5
)

// listTimestampUnsupported reports whether ts is a special value below the
// version that introduced it: Kafka answers such a partition
// UNSUPPORTED_VERSION (ReplicaManager.isListOffsetsTimestampUnsupported,
// 4.0 on). Any other negative value is a timestamp to search for, as in
// Kafka 4.1 (whose data may hold negative timestamps).
func listTimestampUnsupported(ts int64, version int16) bool {
	switch ts {
	case listMaxTimestamp:
		return version < 7
	case listEarliestLocal:
		return version < 8
	case listLatestTiered:
		return version < 9
	}
	return false
}

func (a *Agent) handleListOffsets(ctx context.Context, _ *request, req *kmsg.ListOffsetsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	epoch := a.members.Load().leaderEpoch()
	var work []listOffsetsWork
	// As Kafka's ReplicaManager.fetchOffset, which keeps one answer per
	// partition: a topic named by several entries is answered once, a
	// partition asked for more than once is answered once, with
	// INVALID_REQUEST (which of its timestamps would the answer be for?).
	type namedPartition struct {
		topic     string
		partition int32
	}
	mentions := make(map[namedPartition]int)
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			mentions[namedPartition{rt.Topic, rp.Partition}]++
		}
	}
	answered := make(map[namedPartition]bool, len(mentions))
	topicIdx := make(map[string]int, len(req.Topics))
	for _, rt := range req.Topics {
		ti, ok := topicIdx[rt.Topic]
		if !ok {
			ti = len(resp.Topics)
			topicIdx[rt.Topic] = ti
			ot := kmsg.NewListOffsetsResponseTopic()
			ot.Topic = rt.Topic
			resp.Topics = append(resp.Topics, ot)
		}
		maxPart := int32(0)
		for _, rp := range rt.Partitions {
			maxPart = max(maxPart, rp.Partition+1)
		}
		t, err := a.topic(ctx, rt.Topic, maxPart)
		for _, rp := range rt.Partitions {
			np := namedPartition{rt.Topic, rp.Partition}
			if answered[np] {
				continue
			}
			answered[np] = true
			op := kmsg.NewListOffsetsResponseTopicPartition()
			op.Partition = rp.Partition
			op.Timestamp, op.Offset = -1, -1
			switch {
			case mentions[np] > 1:
				op.ErrorCode = kerr.InvalidRequest.Code
			case listTimestampUnsupported(rp.Timestamp, req.Version):
				op.ErrorCode = kerr.UnsupportedVersion.Code
			case err != nil:
				op.ErrorCode = catalogErrorCode(err)
			case rp.Partition < 0 || rp.Partition >= t.Partitions:
				op.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				work = append(work, listOffsetsWork{
					tp: catalog.TopicPartition{TopicID: t.ID, Partition: rp.Partition},
					ts: rp.Timestamp, topic: rt.Topic, topicIdx: ti, partIdx: len(resp.Topics[ti].Partitions),
				})
			}
			resp.Topics[ti].Partitions = append(resp.Topics[ti].Partitions, op)
		}
	}
	// Every partition is a catalog read (latest and earliest must see
	// other agents' commits, so the tail index does not answer them); a
	// consumer group or lag exporter asks for thousands at once. A few
	// run at a time: enough to overlap round trips, too few to crowd the
	// catalog pool that commits need.
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(listOffsetsParallel, len(work)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(work) {
					return
				}
				w := &work[i]
				op := &resp.Topics[w.topicIdx].Partitions[w.partIdx]
				off, ts, err := a.listOffset(ctx, w.tp, w.ts)
				if errors.Is(err, catalog.ErrUnknownTopic) {
					// The cached topic was deleted, maybe through
					// another agent, and maybe created again under
					// its name: answer for what the name is now. A
					// consumer asks this before it fetches by name,
					// so it does not start on the old topic's rows.
					if t, ok := a.topicRecreated(ctx, w.topic, w.tp.TopicID); ok && w.tp.Partition < t.Partitions {
						w.tp.TopicID = t.ID
						off, ts, err = a.listOffset(ctx, w.tp, w.ts)
					}
				}
				if err != nil {
					op.ErrorCode = catalogErrorCode(err)
					if op.ErrorCode == kerr.KafkaStorageError.Code {
						a.log.Warn("list offsets failed", "topic", w.topic, "partition", w.tp.Partition, "err", err)
					}
					continue
				}
				op.Offset, op.Timestamp = off, ts
				if off >= 0 {
					op.LeaderEpoch = epoch
				}
			}
		})
	}
	wg.Wait()
	return resp, nil
}

// listOffsetsParallel is how many partitions of one ListOffsets request
// are looked up at a time.
const listOffsetsParallel = 4

// listOffsetsWork is one partition of a ListOffsets request to look up,
// and where its answer goes in the response.
type listOffsetsWork struct {
	tp                catalog.TopicPartition
	ts                int64
	topic             string
	topicIdx, partIdx int
}

// listOffset answers one partition: the offset and the timestamp found.
func (a *Agent) listOffset(ctx context.Context, tp catalog.TopicPartition, ts int64) (int64, int64, error) {
	// ts is a special value the request's version knows or a timestamp
	// (listTimestampUnsupported): a search for the first record at or
	// after it.
	switch ts {
	case listLatest:
		_, hw, err := a.offsets(ctx, tp, -1, true)
		return hw, -1, err
	case listEarliest, listEarliestLocal:
		ls, _, err := a.offsets(ctx, tp, -1, true)
		return ls, -1, err
	case listLatestTiered:
		return -1, -1, nil
	case listMaxTimestamp:
		return a.maxTimestampOffset(ctx, tp)
	}
	return a.offsetForTimestamp(ctx, tp, ts)
}

// offsetForTimestamp returns the offset and timestamp of the first record
// at or after the log start (Kafka searches from the log start too) whose
// timestamp is at or after ts, or -1, -1. The catalog points at the first
// row whose batches' largest timestamp is; when none of its records from
// the log start on is (DeleteRecords put the log start inside the row,
// after its late records, or a batch header overstates its records'
// timestamps), the search goes on with the next such row, as Kafka's reads
// on through its segment. Answering the row's end with timestamp -1
// instead, as Floe did, made a Java consumer's offsetsForTimes throw
// ("Invalid negative timestamp").
//
// The log start searched from is the one the catalog chose the row by,
// read with it, not the one the agent cached for its fetches (which may
// be older than offsetsTTL): DeleteRecords through another agent, or
// retention, may have put it inside the row since, and a client must not
// be sent to the records below it.
func (a *Agent) offsetForTimestamp(ctx context.Context, tp catalog.TopicPartition, ts int64) (int64, int64, error) {
	for from := int64(0); ; {
		row, ls, ok, err := a.cat.BatchForTimestamp(ctx, tp, ts, from)
		if err != nil || !ok {
			return -1, -1, err
		}
		from = max(from, ls)
		foundOff, foundTS := int64(-1), int64(-1)
		err = a.scanRow(ctx, row, from, func(maxTS int64) bool { return maxTS >= ts }, func(off, recTS int64) bool {
			if recTS >= ts {
				foundOff, foundTS = off, recTS
				return false
			}
			return true
		})
		if err != nil || foundOff >= 0 {
			return foundOff, foundTS, err
		}
		from = row.LastOffset + 1
	}
}

// maxTimestampOffset returns the offset and timestamp of the record with
// the largest timestamp (the first on ties) at or after the log start (the
// catalog's, as in offsetForTimestamp), or -1, -1. The catalog points at
// the row whose batches' largest timestamp is the largest. When no record
// of it from the log start on carries that timestamp (it lies below a log
// start inside the row, or a batch header overstates it), the row's
// largest from the log start on is a candidate, and the rows after it are
// searched for a larger one (rows before one whose header overstates are
// not).
func (a *Agent) maxTimestampOffset(ctx context.Context, tp catalog.TopicPartition) (int64, int64, error) {
	bestOff, bestTS := int64(-1), int64(-1)
	for from := int64(0); ; {
		row, ls, ok, err := a.cat.MaxTimestampBatch(ctx, tp, from)
		if err != nil {
			return -1, -1, err
		}
		if !ok || (bestOff >= 0 && row.MaxTimestamp <= bestTS) {
			return bestOff, bestTS, nil // nothing later is larger
		}
		from = max(from, ls)
		rowOff, rowTS := int64(-1), int64(-1)
		err = a.scanRow(ctx, row, from, func(maxTS int64) bool { return rowOff < 0 || maxTS > rowTS }, func(off, recTS int64) bool {
			if rowOff < 0 || recTS > rowTS {
				rowOff, rowTS = off, recTS
			}
			return rowTS != row.MaxTimestamp
		})
		if err != nil {
			return -1, -1, err
		}
		if rowOff >= 0 && (bestOff < 0 || rowTS > bestTS) {
			bestOff, bestTS = rowOff, rowTS
		}
		if rowOff >= 0 && rowTS == row.MaxTimestamp {
			return bestOff, bestTS, nil
		}
		from = row.LastOffset + 1
	}
}

// scanRow calls fn with the offset and timestamp of each record of row at
// or above from, in offset order, until fn returns false. It reads only
// the batches whose header's largest timestamp want accepts (no other
// can hold a record the caller looks for), decompressing them if needed.
// A batch whose records cannot be read is passed over, but its error is
// returned if it was the last batch read and fn never stopped the scan.
func (a *Agent) scanRow(ctx context.Context, row catalog.BatchRow, from int64, want func(maxTS int64) bool, fn func(off, ts int64) bool) error {
	raw, err := a.readCatchUpRow(ctx, row, nil)
	if err != nil {
		return err
	}
	stopped := false
	var recErr error
	err = forEachStoredBatch(raw, row.BaseOffset, func(batch []byte, base int64, h batchHeader) bool {
		if base+int64(h.LastOffsetDelta) < from || !want(h.MaxTimestamp) {
			return true
		}
		read := func() error {
			return recordTimes(batch, h, func(delta int32, recTS int64) bool {
				if off := base + int64(delta); off >= from && !fn(off, recTS) {
					stopped = true
					return false
				}
				return true
			})
		}
		if h.compression() != 0 {
			recErr = a.decompressing(ctx, read)
		} else {
			recErr = read()
		}
		if errors.Is(recErr, context.Canceled) || errors.Is(recErr, context.DeadlineExceeded) {
			return false // the request is over: never answer from a later batch
		}
		return !stopped
	})
	switch {
	case err != nil:
		return err
	case stopped:
		return nil
	}
	return recErr
}
