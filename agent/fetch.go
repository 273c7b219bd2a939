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
//   - PreferredReadReplica (KIP-392) steers consumers to their zone: when a
//     fetch names a rack id (v11+) and its client no zone otherwise (client
//     id, per-zone listener), a partition whose leader among that zone's
//     live agents is another agent is answered with that agent as
//     PreferredReadReplica and no records. Otherwise it is -1: any agent
//     serves any partition.

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
	// preferred is the agent the client should fetch this partition from
	// instead (KIP-392), or -1.
	preferred int32
}

// steerToZone sets the preferred read replica of the partitions whose
// leader in the consumer's rack zone is another agent. Only a rack id
// steers: a client that named its zone otherwise was sent to that zone's
// leader by Metadata already.
func (a *Agent) steerToZone(r *request, req *kmsg.FetchRequest, parts [][]fetchPart) {
	if req.Version < 11 || req.Rack == "" || r.zone() != "" {
		return
	}
	m := a.members.Load()
	if !m.hasZone(req.Rack) {
		return // no agent there: any agent is as good
	}
	for i := range parts {
		for j := range parts[i] {
			fp := &parts[i][j]
			if fp.errCode != 0 {
				continue
			}
			if leader := m.leader(fp.tp.TopicID, fp.tp.Partition, req.Rack); leader != m.self.NodeID {
				fp.preferred = leader
			}
		}
	}
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
	a.steerToZone(r, req, parts)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		changed := a.tail.changed()
		resp.Topics = resp.Topics[:0]
		total, now := a.buildFetch(ctx, req, parts, maxBytes, resp)
		if total >= int64(req.MinBytes) || now || !time.Now().Before(deadline) || ctx.Err() != nil {
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
			fp := fetchPart{tp: catalog.TopicPartition{TopicID: t.ID, Partition: rp.Partition}, offset: rp.FetchOffset, maxBytes: rp.PartitionMaxBytes, errCode: topicErr, preferred: -1}
			if topicErr == 0 && (rp.Partition < 0 || rp.Partition >= t.Partitions) {
				fp.errCode = kerr.UnknownTopicOrPartition.Code
			}
			out[i][j] = fp
		}
	}
	return out
}

// buildFetch fills resp with what is readable now and returns the record
// bytes it holds and whether the response must go at once (a partition has
// an error or a preferred read replica).
func (a *Agent) buildFetch(ctx context.Context, req *kmsg.FetchRequest, parts [][]fetchPart, maxBytes int64, resp *kmsg.FetchResponse) (int64, bool) {
	var total int64
	now := false
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
			switch {
			case fp.errCode != 0:
				op.ErrorCode = fp.errCode
			case fp.preferred >= 0:
				// Answered at once, without records, like an error: the
				// client moves this partition to the preferred agent.
				op.PreferredReadReplica = fp.preferred
				now = true
			default:
				// KIP-74: until some partition returned data, the first
				// batch is returned whatever its size.
				minOne := total == 0
				budget := min(int64(fp.maxBytes), maxBytes-total)
				n := a.fetchPartition(ctx, fp, budget, minOne, op)
				total += n
			}
			if op.ErrorCode != 0 {
				now = true
				a.m.partitionErrs.WithLabelValues("Fetch", errName(op.ErrorCode)).Inc()
			}
		}
		resp.Topics = append(resp.Topics, ot)
	}
	return total, now
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
		tail bool
	)
	if useTail {
		rows, tail = a.tail.lookup(tp, from, max(budget, 1))
	}
	if !tail {
		// A catch-up read: the rows after the ones this fetch needs are
		// read ahead (below) so the consumer's next fetch finds them.
		var err error
		rows, err = a.cat.Batches(ctx, tp, from, max(budget, 1)+a.cfg.CatchUpPrefetchBytes)
		if err != nil {
			return nil, 0, err
		}
	}
	var (
		out  []byte
		hw   int64
		full bool
		next int // rows[next:] were not needed
	)
	// Sized once for the rows this fetch can take: growing it batch by
	// batch copied a catch-up response's megabytes several times over.
	if n := fetchSizeHint(rows, from, budget, minOne); n > 0 {
		out = make([]byte, 0, n)
	}
	for i, row := range rows {
		if full {
			break
		}
		next = i + 1
		hw = max(hw, row.LastOffset+1)
		if row.LastOffset < from {
			continue
		}
		var (
			raw []byte
			err error
		)
		if tail {
			raw, err = a.readTailRow(ctx, row)
		} else {
			// Keep the next rows' reads in flight while this one is
			// read: a catch-up fetch often spans many small objects.
			a.prefetchRows(rows[i+1 : min(len(rows), i+1+a.cfg.CatchUpReads)])
			raw, err = a.readCatchUpRow(ctx, row, rows[i+1:])
		}
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
	if !tail {
		if full {
			next-- // the row that did not fit is the next fetch's first
		}
		a.prefetchRows(rows[next:])
		if hw > 0 {
			a.tail.raiseHW(tp, hw)
		}
	}
	return out, hw, nil
}

// fetchSizeHint bounds the bytes readBatchesFrom returns from rows: those
// of the rows holding offsets from `from`, and at most budget, or the first
// such row when minOne lets one batch exceed the budget.
func fetchSizeHint(rows []catalog.BatchRow, from, budget int64, minOne bool) int64 {
	var total, first int64
	for _, row := range rows {
		if row.LastOffset < from {
			continue
		}
		if first == 0 {
			first = row.ByteLength
		}
		total += row.ByteLength
		if total >= budget && total >= first {
			break
		}
	}
	limit := budget
	if minOne {
		limit = max(limit, first)
	}
	return min(total, limit)
}

// fetchResponseSizeHint bounds the encoded size of resp from above: its
// records plus a generous allowance for every other field.
func fetchResponseSizeHint(resp *kmsg.FetchResponse) int {
	n := 64
	for i := range resp.Topics {
		t := &resp.Topics[i]
		n += 32 + len(t.Topic)
		for j := range t.Partitions {
			p := &t.Partitions[j]
			n += 64 + len(p.RecordBatches) + 24*len(p.AbortedTransactions)
		}
	}
	return n
}

// readTailRow reads a row of the tail index through the tail cache. A
// missing object means compaction replaced the row since it was looked up:
// the partition's tail rows are dropped so the catalog is asked again.
func (a *Agent) readTailRow(ctx context.Context, row catalog.BatchRow) ([]byte, error) {
	raw, err := a.cache.get(ctx, a.bucket, row.ObjectKey, row.ByteOffset, row.ByteLength, row.ByteOffset, row.ByteLength)
	if errors.Is(err, objstore.ErrNotExist) {
		a.tail.forget(row.TopicPartition)
	}
	return raw, err
}

// catchUpSpanBytes caps one catch-up GET that reads a row together with
// the rows stored right after it.
const catchUpSpanBytes = 8 << 20

// readCatchUpRow reads a row found in the catalog: from the tail cache if
// it happens to hold it (without adding to it), else through the catch-up
// cache, in one GET with the following rows when they are stored right
// after it in the same object (a compacted per-partition segment).
func (a *Agent) readCatchUpRow(ctx context.Context, row catalog.BatchRow, following []catalog.BatchRow) ([]byte, error) {
	if raw, ok := a.cache.peek(row.ObjectKey, row.ByteOffset, row.ByteLength); ok {
		a.cache.m.hits.Inc()
		return raw, nil
	}
	spanLen := row.ByteLength
	for _, r := range following {
		if r.ObjectKey != row.ObjectKey || r.ByteOffset != row.ByteOffset+spanLen || spanLen+r.ByteLength > catchUpSpanBytes {
			break
		}
		spanLen += r.ByteLength
	}
	return a.catchup.get(ctx, a.bucket, row.ObjectKey, row.ByteOffset, row.ByteLength, row.ByteOffset, spanLen)
}

// prefetchRows starts reading rows a consumer is expected to fetch next
// into the catch-up cache, adjacent rows of one object in one GET. It
// never waits: with every catch-up read slot taken it reads nothing.
func (a *Agent) prefetchRows(rows []catalog.BatchRow) {
	for i := 0; i < len(rows); {
		r := rows[i]
		spanLen := r.ByteLength
		j := i + 1
		for ; j < len(rows); j++ {
			n := rows[j]
			if n.ObjectKey != r.ObjectKey || n.ByteOffset != r.ByteOffset+spanLen || spanLen+n.ByteLength > catchUpSpanBytes {
				break
			}
			spanLen += n.ByteLength
		}
		if _, ok := a.cache.peek(r.ObjectKey, r.ByteOffset, spanLen); !ok {
			a.catchup.prefetch(a.bucket, r.ObjectKey, r.ByteOffset, spanLen)
		}
		i = j
	}
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
