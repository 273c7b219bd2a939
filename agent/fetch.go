package agent

// Fetch (key 1), versions 4-18; topic ids from v13.
//
// Differences from Kafka:
//   - Fetch sessions (KIP-227) are not kept: every response carries session
//     id 0, which tells clients the broker does not support sessions, so
//     they send full (sessionless) fetches. A request naming a session id
//     gets FETCH_SESSION_ID_NOT_FOUND, one with a positive epoch and no id
//     INVALID_FETCH_SESSION_EPOCH; ForgottenTopics is ignored.
//   - Only whole batches are returned (Kafka may cut the last batch); the
//     first batch of the first non-empty partition is returned even when it
//     is larger than the limits (KIP-74), as in Kafka.
//   - Transactions are not supported, so the last stable offset is the high
//     watermark and there are never aborted transactions; READ_COMMITTED
//     reads the same as READ_UNCOMMITTED.
//   - CurrentLeaderEpoch and LastFetchedEpoch are not checked: any agent
//     serves any partition and the log is never truncated, so there is no
//     stale leader to fence and no divergence to report.
//   - PreferredReadReplica is always -1 (any agent serves the partition).

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore"
)

// fetchMaxResponseBytes caps a response like Kafka's fetch.max.bytes
// (55 MiB), whatever the client asks.
const fetchMaxResponseBytes = 55 << 20

// fetchPart is a resolved request partition.
type fetchPart struct {
	tp       catalog.TopicPartition
	offset   int64
	maxBytes int32
	errCode  int16 // set when the topic or partition is unknown
}

func (a *Agent) handleFetch(ctx context.Context, r *request, req *kmsg.FetchRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	if req.Version >= 7 {
		switch {
		case req.SessionID != 0:
			resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
			return resp, nil
		case req.SessionEpoch > 0:
			resp.ErrorCode = kerr.InvalidFetchSessionEpoch.Code
			return resp, nil
		}
	}
	wait := time.Duration(req.MaxWaitMillis) * time.Millisecond
	wait = min(max(wait, 0), a.cfg.FetchMaxWait)
	deadline := time.Now().Add(wait)
	maxBytes := int64(fetchMaxResponseBytes)
	if req.Version >= 3 {
		maxBytes = min(max(int64(req.MaxBytes), 0), maxBytes)
	}

	parts := a.resolveFetch(ctx, req)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		changed := a.tail.changed()
		resp.Topics = resp.Topics[:0]
		total, anyErr := a.buildFetch(ctx, req, parts, maxBytes, resp)
		if total >= int64(req.MinBytes) || anyErr || !time.Now().Before(deadline) || ctx.Err() != nil {
			a.m.fetchedBytes.Add(float64(total))
			return resp, nil
		}
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
		}
		select {
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
		case <-a.draining:
			deadline = time.Now()
		case <-r.conn.peerDone:
			deadline = time.Now()
		}
	}
}

// resolveFetch looks up each requested topic once.
func (a *Agent) resolveFetch(ctx context.Context, req *kmsg.FetchRequest) [][]fetchPart {
	out := make([][]fetchPart, len(req.Topics))
	for i, rt := range req.Topics {
		var (
			t   catalog.Topic
			err error
		)
		maxPart := int32(0)
		for _, rp := range rt.Partitions {
			maxPart = max(maxPart, rp.Partition+1)
		}
		if req.Version >= 13 {
			t, err = a.topicByID(ctx, rt.TopicID, maxPart)
		} else {
			t, err = a.topic(ctx, rt.Topic, maxPart)
		}
		topicErr := int16(0)
		switch {
		case err == nil:
		case errors.Is(err, catalog.ErrUnknownTopic) && req.Version >= 13:
			topicErr = kerr.UnknownTopicID.Code
		case errors.Is(err, catalog.ErrUnknownTopic):
			topicErr = kerr.UnknownTopicOrPartition.Code
		default:
			a.log.Warn("fetch: topic lookup failed", "topic", rt.Topic, "err", err)
			topicErr = kerr.KafkaStorageError.Code
		}
		out[i] = make([]fetchPart, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			fp := fetchPart{tp: catalog.TopicPartition{TopicID: t.ID, Partition: rp.Partition}, offset: rp.FetchOffset, maxBytes: rp.PartitionMaxBytes, errCode: topicErr}
			if topicErr == 0 && (rp.Partition < 0 || rp.Partition >= t.Partitions) {
				fp.errCode = kerr.UnknownTopicOrPartition.Code
			}
			out[i][j] = fp
		}
	}
	return out
}

// buildFetch fills resp with what is readable now and returns the record
// bytes it holds and whether any partition has an error.
func (a *Agent) buildFetch(ctx context.Context, req *kmsg.FetchRequest, parts [][]fetchPart, maxBytes int64, resp *kmsg.FetchResponse) (int64, bool) {
	var total int64
	anyErr := false
	for i, rt := range req.Topics {
		ot := kmsg.NewFetchResponseTopic()
		ot.Topic, ot.TopicID = rt.Topic, rt.TopicID
		ot.Partitions = make([]kmsg.FetchResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			fp := parts[i][j]
			op := &ot.Partitions[j]
			op.Default()
			op.Partition = fp.tp.Partition
			op.HighWatermark, op.LastStableOffset, op.LogStartOffset = -1, -1, -1
			op.PreferredReadReplica = -1
			// Non-nil: before v12 a nil records field encodes as null,
			// which librdkafka rejects (invalid MessageSetSize -1).
			op.RecordBatches = []byte{}
			if req.IsolationLevel == 1 {
				op.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
			}
			if fp.errCode != 0 {
				op.ErrorCode = fp.errCode
			} else {
				// KIP-74: until some partition returned data, the first
				// batch is returned whatever its size.
				minOne := total == 0
				budget := min(int64(fp.maxBytes), maxBytes-total)
				n := a.fetchPartition(ctx, fp, budget, minOne, op)
				total += n
			}
			if op.ErrorCode != 0 {
				anyErr = true
				a.m.partitionErrs.WithLabelValues("Fetch", errName(op.ErrorCode)).Inc()
			}
		}
		resp.Topics = append(resp.Topics, ot)
	}
	return total, anyErr
}

// fetchPartition reads one partition from its fetch offset, at most budget
// bytes of whole batches (at least one batch when minOne), and returns the
// bytes added.
func (a *Agent) fetchPartition(ctx context.Context, fp fetchPart, budget int64, minOne bool, op *kmsg.FetchResponseTopicPartition) int64 {
	ls, hw, err := a.offsets(ctx, fp.tp, fp.offset, false)
	if err == nil && (fp.offset < ls || fp.offset > hw) {
		// Never declare out of range on cached offsets.
		ls, hw, err = a.offsets(ctx, fp.tp, fp.offset, true)
	}
	if err != nil {
		op.ErrorCode = catalogErrorCode(err)
		if op.ErrorCode == kerr.KafkaStorageError.Code {
			a.log.Warn("fetch: reading offsets failed", "err", err)
		}
		return 0
	}
	op.HighWatermark, op.LastStableOffset, op.LogStartOffset = hw, hw, ls
	if fp.offset < ls || fp.offset > hw {
		op.ErrorCode = kerr.OffsetOutOfRange.Code
		return 0
	}
	if fp.offset == hw || (budget <= 0 && !minOne) {
		return 0
	}
	data, newHW, err := a.readBatches(ctx, fp.tp, fp.offset, budget, minOne)
	if err != nil {
		a.log.Warn("fetch: reading batches failed", "topic_id", fmtTopicID(fp.tp.TopicID), "partition", fp.tp.Partition, "offset", fp.offset, "err", err)
		op.ErrorCode = kerr.KafkaStorageError.Code
		return 0
	}
	if newHW > hw {
		op.HighWatermark, op.LastStableOffset = newHW, newHW
	}
	if data != nil {
		op.RecordBatches = data
	}
	return int64(len(data))
}

// readBatches returns whole batches holding offsets from `from`, their
// base offsets patched, within budget (at least one when minOne), and the
// high watermark the rows it read prove. A row whose object is gone was
// replaced by compaction since it was looked up: the catalog's current
// rows are read once more.
func (a *Agent) readBatches(ctx context.Context, tp catalog.TopicPartition, from, budget int64, minOne bool) ([]byte, int64, error) {
	data, hw, err := a.readBatchesFrom(ctx, tp, from, budget, minOne, true)
	if errors.Is(err, objstore.ErrNotExist) {
		data, hw, err = a.readBatchesFrom(ctx, tp, from, budget, minOne, false)
	}
	return data, hw, err
}

func (a *Agent) readBatchesFrom(ctx context.Context, tp catalog.TopicPartition, from, budget int64, minOne, useTail bool) ([]byte, int64, error) {
	var (
		rows []catalog.BatchRow
		ok   bool
	)
	if useTail {
		rows, ok = a.tail.lookup(tp, from, max(budget, 1))
	}
	if !ok {
		var err error
		rows, err = a.cat.Batches(ctx, tp, from, max(budget, 1))
		if err != nil {
			return nil, 0, err
		}
	}
	var (
		out  []byte
		hw   int64
		full bool
	)
	for _, row := range rows {
		if full {
			break
		}
		hw = max(hw, row.LastOffset+1)
		if row.LastOffset < from {
			continue
		}
		raw, err := a.readRow(ctx, row)
		if err != nil {
			return nil, 0, err
		}
		err = forEachStoredBatch(raw, row.BaseOffset, func(batch []byte, base int64, h batchHeader) bool {
			if base+int64(h.LastOffsetDelta) < from {
				return true // wholly below the fetch offset
			}
			if int64(len(out)+len(batch)) > budget && !(minOne && len(out) == 0) {
				full = true
				return false
			}
			start := len(out)
			out = append(out, batch...)
			patchBaseOffset(out[start:], base)
			return true
		})
		if err != nil {
			return nil, 0, err
		}
	}
	if !ok && hw > 0 {
		a.tail.raiseHW(tp, hw)
	}
	return out, hw, nil
}

// readRow reads a row's bytes through the cache. A missing object means
// compaction replaced the row since it was looked up: the partition's tail
// rows are dropped so the catalog is asked again.
func (a *Agent) readRow(ctx context.Context, row catalog.BatchRow) ([]byte, error) {
	raw, err := a.cache.get(ctx, a.bucket, row.ObjectKey, row.ByteOffset, row.ByteLength)
	if errors.Is(err, objstore.ErrNotExist) {
		a.tail.forget(row.TopicPartition)
	}
	return raw, err
}

// catalogErrorCode maps a catalog error of a partition read.
func catalogErrorCode(err error) int16 {
	switch {
	case errors.Is(err, catalog.ErrUnknownTopic):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, catalog.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return kerr.RequestTimedOut.Code
	}
	return kerr.KafkaStorageError.Code
}
