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
//   - A response holds at most 2 MiB of records (Config.FetchMaxBytes, --fetch-max-bytes)
//     beyond that first batch, where Kafka's broker default is 55 MiB:
//     clients decode faster from smaller responses. A MinBytes above the
//     cap is met by a full response.
//   - Records are written from the read caches with writev, not copied into
//     the response (fetch_records.go); the bytes on the wire are the same.
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
//     PreferredReadReplica and no records (unless the fetch offset is out
//     of range: see inRange). Otherwise it is -1: any agent serves any
//     partition. Metadata lists every zone's leader among the partition's
//     replicas, so that the agent named is always one (see
//     partitionReplicas).

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/objstore"
)

// DefaultFetchMaxBytes is Config.FetchMaxBytes's default: it caps the
// records of one response, whatever the client asks, like Kafka's broker
// setting fetch.max.bytes — but Kafka's default is 55 MiB. A client decodes a whole response before it fetches
// again and holds all of its records at once: 11 MB of snappy batches
// inflate to some 200 MiB of fresh memory in franz-go, and page faults on
// that memory, not the broker, then bound a catch-up read. With responses
// of a few MiB the client reuses its memory: catching up 200,000 1 KiB
// records from 16 partitions went from ~1,050 MiB/s with 11 MB responses
// to ~1,320 MiB/s with 2 MiB ones (1 MiB: the same; 4 MiB: ~1,250).
// The cost is a round trip per 2 MiB: a consumer at round-trip time r
// reads at most 2 MiB per r on one connection (200 MiB/s at 10 ms), which
// matters only across regions. The first batch is returned whatever its
// size (KIP-74).
const DefaultFetchMaxBytes = 2 << 20

// fetchPart is a resolved request partition.
type fetchPart struct {
	tp       catalog.TopicPartition
	offset   int64
	maxBytes int32
	errCode  int16 // set when the topic or partition is unknown
	// preferred is the agent the client should fetch this partition from
	// instead (KIP-392), or -1.
	preferred int32
	// compacted: the topic's cleanup.policy includes compact, whose
	// rewrites the tail index never learns of (see tailIndex.freshLocked).
	compacted bool
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
	var (
		buf     [32]uint64
		leaders partitionLeaders
		topic   catalog.TopicID
		picking bool
	)
	for i := range parts {
		for j := range parts[i] {
			fp := &parts[i][j]
			if fp.errCode != 0 {
				continue
			}
			if !picking || fp.tp.TopicID != topic {
				leaders, topic, picking = m.leaders(fp.tp.TopicID, req.Rack, buf[:0]), fp.tp.TopicID, true
			}
			if leader := leaders.leader(fp.tp.Partition); leader != m.self.NodeID {
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
	if r.p.prevLarge != nil {
		// Built only once the connection's previous large response is
		// sent (see pending.written).
		select {
		case <-r.p.prevLarge:
		case <-ctx.Done():
			return resp, nil
		}
	}
	wait := time.Duration(req.MaxWaitMillis) * time.Millisecond
	wait = min(max(wait, 0), a.cfg.FetchMaxWait)
	deadline := time.Now().Add(wait)
	maxBytes := a.cfg.FetchMaxBytes
	if req.Version >= 3 {
		maxBytes = min(max(int64(req.MaxBytes), 0), maxBytes)
	}

	parts := a.resolveFetch(ctx, req)
	a.steerToZone(r, req, parts)
	fr := &fetchResponse{FetchResponse: resp, hold: responseHold{b: a.respBudget, ctx: ctx, deadline: deadline,
		drain: a.draining, peer: r.conn.peerDone}}
	var (
		timer *time.Timer
		w     *tailWaiter
		// refresh ticks while a long poll longer than offsetsTTL waits:
		// see keepLogStartsFresh.
		refresh *time.Ticker
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		if refresh != nil {
			refresh.Stop()
		}
		if w != nil {
			a.tail.unwatch(w)
		}
		if fr.stop == nil { // not handed to the connection (a panic)
			fr.hold.release()
		}
	}()
	topics := fetchTopicIDs(parts)
	for {
		w = a.tail.watch(topics)
		resp.Topics = resp.Topics[:0]
		total, now := a.buildFetch(ctx, req, parts, maxBytes, fr)
		if fr.hold.want > 0 {
			// The first batch found no room: this build holds nothing
			// and is void. Wait for the room with nothing read in hand
			// (see responseBudget), then build again — at once if a
			// partition's answer must go now, without waiting.
			fr.recs = nil
			a.tail.unwatch(w)
			w = nil
			if now {
				fr.hold.want, fr.hold.refused = 0, true
			} else {
				fr.hold.await()
			}
			continue
		}
		fr.hold.trim(total)
		// A MinBytes above the response cap is met by a full response.
		if total >= min(int64(req.MinBytes), maxBytes) || now || !time.Now().Before(deadline) || ctx.Err() != nil {
			a.m.fetchedBytes.Add(float64(total))
			a.countPartitionErrors(resp)
			fr.unpin()
			fr.keep(r.conn.ctx)
			return fr, nil
		}
		// Woken, the response is built anew: hold nothing meanwhile.
		fr.recs = nil
		fr.hold.release()
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
			if time.Until(deadline) > offsetsTTL {
				refresh = time.NewTicker(logStartTick)
			}
		}
		var refreshC <-chan time.Time
		if refresh != nil {
			refreshC = refresh.C
		}
	wait:
		for {
			select {
			case <-w.ch:
			case <-timer.C:
			case <-ctx.Done():
			case <-a.draining:
				deadline = time.Now()
			case <-r.conn.peerDone:
				deadline = time.Now()
			case <-refreshC:
				a.keepLogStartsFresh(parts)
				continue wait
			}
			break
		}
		fr.hold.deadline = deadline
		a.tail.unwatch(w)
	}
}

// keepLogStartsFresh queues the background read of the log starts of a
// waiting long poll's partitions once they are offsetsTTL old. A log start
// is served only up to maxLogStartAge old (see offsets), and a long poll
// at the high watermark queues its read only when it is built: with a
// MaxWait above a few seconds (franz-go's default is 5 s), the records
// that wake it would otherwise find the log start too old, and every wake
// of a partition written less often than every couple of seconds would
// read the catalog itself.
func (a *Agent) keepLogStartsFresh(parts [][]fetchPart) {
	for _, ps := range parts {
		for i := range ps {
			if ps[i].errCode != 0 {
				continue
			}
			if ls, _, age := a.tail.cachedOffsets(ps[i].tp); ls >= 0 && age >= offsetsTTL {
				a.tail.queueRefresh(ps[i].tp)
			}
		}
	}
}

// countPartitionErrors counts the partition errors of the response sent
// (not of builds discarded before it).
func (a *Agent) countPartitionErrors(resp *kmsg.FetchResponse) {
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			if code := resp.Topics[i].Partitions[j].ErrorCode; code != 0 {
				a.m.partitionErrs.WithLabelValues("Fetch", errName(code)).Inc()
			}
		}
	}
}

// fetchTopicIDs returns the ids of the fetch's known topics, each once:
// the topics whose commits wake its long poll. Repeats are dropped by
// sorting, in place: searching the ids so far for each topic was
// quadratic in the fetch's topics (12.5 million comparisons for a
// consumer of 5,000), and a set would allocate for every fetch.
func fetchTopicIDs(parts [][]fetchPart) []catalog.TopicID {
	var ids []catalog.TopicID
	for i := range parts {
		for j := range parts[i] {
			if fp := parts[i][j]; fp.errCode == 0 {
				ids = append(ids, fp.tp.TopicID)
				break
			}
		}
	}
	slices.SortFunc(ids, func(a, b catalog.TopicID) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(ids)
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
			fp := fetchPart{tp: catalog.TopicPartition{TopicID: t.ID, Partition: rp.Partition}, offset: rp.FetchOffset, maxBytes: rp.PartitionMaxBytes, errCode: topicErr, preferred: -1,
				compacted: topicErr == 0 && t.CleanupPolicy().Compact}
			if topicErr == 0 && (rp.Partition < 0 || rp.Partition >= t.Partitions) {
				fp.errCode = kerr.UnknownTopicOrPartition.Code
			}
			out[i][j] = fp
		}
	}
	return out
}

// buildFetch fills resp with what is readable now and returns the record
// bytes it holds and whether the response must go at once (a partition's
// read failed or it has a preferred read replica, or no partition of the
// request exists).
//
// A partition that does not exist (unknown topic, topic id or partition)
// is answered in the response but, as in Kafka, does not end the long poll
// of the others: a consumer still assigned a deleted topic's partitions
// would otherwise fetch in a tight loop until its metadata caught up.
func (a *Agent) buildFetch(ctx context.Context, req *kmsg.FetchRequest, parts [][]fetchPart, maxBytes int64, resp *fetchResponse) (int64, bool) {
	var total int64
	now, exists := false, false
	resp.recs = make([][]records, len(req.Topics))
	for i, rt := range req.Topics {
		ot := kmsg.NewFetchResponseTopic()
		ot.Topic, ot.TopicID = rt.Topic, rt.TopicID
		ot.Partitions = make([]kmsg.FetchResponseTopicPartition, len(rt.Partitions))
		resp.recs[i] = make([]records, len(rt.Partitions))
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
			case fp.errCode == kerr.UnknownTopicOrPartition.Code || fp.errCode == kerr.UnknownTopicID.Code:
				op.ErrorCode = fp.errCode
				continue
			case fp.errCode != 0:
				op.ErrorCode = fp.errCode
			case fp.preferred >= 0 && a.inRange(ctx, fp, op):
				// Answered at once, without records, like an error: the
				// client moves this partition to the preferred agent.
				op.PreferredReadReplica = fp.preferred
				now = true
			default:
				// KIP-74: until some partition returned data, the first
				// batch is returned whatever its size.
				minOne := total == 0
				budget := min(int64(fp.maxBytes), maxBytes-total)
				total += a.fetchPartition(ctx, fp, budget, minOne, op, &resp.recs[i][j], &resp.hold)
				if op.ErrorCode == kerr.UnknownTopicOrPartition.Code && req.Version >= 13 {
					// The topic was deleted since this agent cached
					// it: as for any topic id no topic has.
					op.ErrorCode = kerr.UnknownTopicID.Code
				}
			}
			exists = true
			if op.ErrorCode != 0 {
				now = true
			}
		}
		resp.Topics = append(resp.Topics, ot)
	}
	return total, now || !exists
}

// inRange reports whether fp's offset is within its partition's log (true
// when the offsets cannot be read: the preferred agent will say). Kafka's
// leader names as preferred read replica only a replica holding the fetch
// offset, so an offset out of range gets OFFSET_OUT_OF_RANGE from the
// leader and the client resets. Every agent holds the same log: steered
// anyway, the client would get out of range from the preferred agent, go
// back to the leader (KIP-392) and be steered again, never resetting.
// The partition's offsets, when read, go into op, as Kafka fills them in
// a preferred-replica answer (lag exporters read them).
func (a *Agent) inRange(ctx context.Context, fp fetchPart, op *kmsg.FetchResponseTopicPartition) bool {
	ls, hw, err := a.offsets(ctx, fp.tp, fp.offset, false)
	if err == nil && (fp.offset < ls || fp.offset > hw) {
		ls, hw, err = a.offsets(ctx, fp.tp, fp.offset, true)
	}
	if err != nil {
		return true
	}
	op.HighWatermark, op.LastStableOffset, op.LogStartOffset = hw, hw, ls
	return fp.offset >= ls && fp.offset <= hw
}

// fetchPartition reads one partition from its fetch offset into rec, at
// most budget bytes of whole batches (at least one batch when minOne) that
// hold has room for, and returns the bytes added.
func (a *Agent) fetchPartition(ctx context.Context, fp fetchPart, budget int64, minOne bool, op *kmsg.FetchResponseTopicPartition, rec *records, hold *responseHold) int64 {
	ls, hw, err := a.offsets(ctx, fp.tp, fp.offset, false)
	if err == nil && (fp.offset < ls || fp.offset > hw) {
		// Never declare out of range on cached offsets.
		ls, hw, err = a.offsets(ctx, fp.tp, fp.offset, true)
	}
	if err != nil {
		op.ErrorCode = catalogErrorCode(err)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// A catalog too slow to answer in time. Kafka never puts
			// REQUEST_TIMED_OUT on a fetched partition, and the Java
			// consumer throws on it out of poll() (an unexpected error
			// code); KAFKA_STORAGE_ERROR it retries after refreshing its
			// metadata.
			op.ErrorCode = kerr.KafkaStorageError.Code
		}
		if op.ErrorCode == kerr.KafkaStorageError.Code && ctx.Err() == nil {
			a.log.Warn("fetch: reading offsets failed", "err", err)
		}
		if errors.Is(err, catalog.ErrUnknownTopic) {
			a.topicGone(fp.tp.TopicID)
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
	var tailAge time.Duration // how old a tail index row may be to serve
	if fp.compacted {
		tailAge = a.cfg.TailMaxAge
	}
	newHW, err := a.readBatches(ctx, fp.tp, fp.offset, budget, minOne, tailAge, rec, hold)
	if errors.Is(err, catalog.ErrOffsetOutOfRange) {
		// The log start moved past the offset since it was cached
		// (retention, or DeleteRecords through another agent): the
		// client resets at once on the catalog's bounds, where a storage
		// error would have it retry until the cached log start aged.
		*rec = records{}
		op.ErrorCode = kerr.OffsetOutOfRange.Code
		if ls, hw, err := a.offsets(ctx, fp.tp, fp.offset, true); err == nil {
			op.HighWatermark, op.LastStableOffset, op.LogStartOffset = hw, hw, ls
		}
		return 0
	}
	if err != nil {
		if ctx.Err() == nil { // else the client is gone: nothing failed
			a.log.Warn("fetch: reading batches failed", "topic_id", fmtTopicID(fp.tp.TopicID), "partition", fp.tp.Partition, "offset", fp.offset, "err", err)
		}
		op.ErrorCode = kerr.KafkaStorageError.Code
		*rec = records{}
		return 0
	}
	if newHW > hw {
		op.HighWatermark, op.LastStableOffset = newHW, newHW
	}
	return rec.n
}

// readBatches adds to rec the whole batches holding offsets from `from`,
// their base offsets patched, within budget (at least one when minOne) and
// what hold can reserve, and returns the high watermark the rows it read
// prove. A row whose object is gone was replaced by compaction since it was
// looked up: the catalog's current rows are read once more.
func (a *Agent) readBatches(ctx context.Context, tp catalog.TopicPartition, from, budget int64, minOne bool, tailAge time.Duration, rec *records, hold *responseHold) (int64, error) {
	hw, err := a.readBatchesFrom(ctx, tp, from, budget, minOne, true, tailAge, rec, hold)
	if errors.Is(err, objstore.ErrNotExist) {
		*rec = records{}
		hw, err = a.readBatchesFrom(ctx, tp, from, budget, minOne, false, 0, rec, hold)
	}
	return hw, err
}

// readBatchesFrom is readBatches, through the tail index if useTail
// (serving its rows up to tailAge old; 0: any).
func (a *Agent) readBatchesFrom(ctx context.Context, tp catalog.TopicPartition, from, budget int64, minOne, useTail bool, tailAge time.Duration, rec *records, hold *responseHold) (int64, error) {
	var (
		rows []catalog.BatchRow
		tail bool
	)
	// behind: rows of the tail index far behind the partition's newest
	// that the tail cache no longer holds. They are read through the
	// catch-up cache, or a consumer minutes behind would sweep its
	// backlog through the tail cache, evicting what consumers at the tail
	// read.
	behind := false
	if useTail {
		rows, tail = a.tail.lookup(tp, from, max(budget, 1), tailAge)
		behind = tail && !a.tail.near(rows[0]) && !a.cache.holds(rows[0].ObjectKey, rows[0].ByteOffset, rows[0].ByteLength)
	}
	var ahead int64 // how far a catch-up read reads ahead
	if !tail {
		// A catch-up read: the rows after the ones this fetch needs are
		// read ahead (below) so the consumer's next fetch finds them.
		ahead = a.catchUpAhead(tp)
		var err error
		rows, err = a.cat.Batches(ctx, tp, from, max(budget, 1)+ahead)
		if err != nil {
			return 0, err
		}
	}
	var (
		hw   int64
		full bool
		next int // rows[next:] were not needed
	)
	// What this partition read may bring into the cache whole.
	win := a.cache.window()
	if !tail || behind {
		win = a.catchup.window()
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
		if rec.n+batchHeaderSize > budget && !(minOne && rec.n == 0) {
			// No batch of the row can fit: it is not read. A fetch
			// that filled its budget read the next row anyway, only
			// to find its first batch did not fit.
			full = true
			break
		}
		var (
			v   view
			err error
		)
		switch {
		case behind:
			v, err = a.readCatchUpRowIn(ctx, row, rows[i+1:], &win)
			if errors.Is(err, objstore.ErrNotExist) {
				a.tail.forget(row.TopicPartition) // as readTailRow
			}
		case tail:
			v, err = a.readTailRow(ctx, row, &win)
		default:
			// The row's own read, which spans the read-ahead, starts
			// first; then the reads of the next rows this fetch needs
			// (a catch-up fetch often spans many small objects) are
			// kept in flight while it is read. Started the other way
			// round, the row's read read again the rows the prefetch
			// was reading, and queued behind it for a read slot.
			var r pendingRead
			r, err = a.startCatchUpRow(ctx, row, rows[i+1:], max(budget, 1)+ahead, &win)
			if err == nil {
				need, j := budget-rec.n-row.ByteLength, i+1
				for ; j < len(rows) && j <= i+a.cfg.CatchUpReads && need > 0; j++ {
					need -= rows[j].ByteLength
				}
				a.prefetchRows(rows[i+1:j], &win)
				v, err = r.wait(ctx)
			}
		}
		if err != nil {
			return 0, err
		}
		err = forEachStoredBatch(v.data, row.BaseOffset, func(batch []byte, base int64, h batchHeader) bool {
			if base+int64(h.LastOffsetDelta) < from {
				return true // wholly below the fetch offset
			}
			if rec.n+int64(len(batch)) > budget && !(minOne && rec.n == 0) || !hold.reserve(len(batch)) {
				full = true
				return false
			}
			rec.add(batch, base, v.buf)
			return true
		})
		if err != nil {
			return 0, err
		}
	}
	if !tail {
		if full {
			next-- // the row that did not fit is the next fetch's first
		}
		a.readAhead(rows[next:], ahead, &win)
		if hw > 0 {
			a.tail.raiseHW(tp, hw)
		}
	}
	return hw, nil
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

// readTailRow reads a row of the tail index through the tail cache, on a
// miss with the whole object if win allows; a row the catch-up cache holds
// or is reading is taken from there instead. A missing object means
// compaction replaced the row since it was looked up: the partition's tail
// rows are dropped so the catalog is asked again.
func (a *Agent) readTailRow(ctx context.Context, row catalog.BatchRow, win *wholeWindow) (view, error) {
	if !a.cache.holds(row.ObjectKey, row.ByteOffset, row.ByteLength) {
		if v, ok, err := a.catchup.held(ctx, row.ObjectKey, row.ByteOffset, row.ByteLength); ok || err != nil {
			return v, err // a catch-up read brought it
		}
	}
	spanOff, spanLen, _ := win.span(row)
	v, err := a.cache.get(ctx, a.bucket, row.ObjectKey, row.ByteOffset, row.ByteLength, spanOff, spanLen)
	if errors.Is(err, objstore.ErrNotExist) {
		a.tail.forget(row.TopicPartition)
	}
	return v, err
}

// catchUpSpanBytes caps one catch-up GET that reads a row together with
// the rows stored right after it.
const catchUpSpanBytes = 8 << 20

// readCatchUpRow reads a row found in the catalog: from the tail cache if
// it holds it or a tail read in flight brings it (without adding to it),
// else through the catch-up
// cache, in one GET with the following rows when they are stored right
// after it in the same object (a compacted per-partition segment).
func (a *Agent) readCatchUpRow(ctx context.Context, row catalog.BatchRow, following []catalog.BatchRow) ([]byte, error) {
	v, err := a.readCatchUpRowIn(ctx, row, following, nil)
	return v.data, err
}

// readCatchUpRowIn is readCatchUpRow that, on a miss, reads the whole
// object instead if win allows.
func (a *Agent) readCatchUpRowIn(ctx context.Context, row catalog.BatchRow, following []catalog.BatchRow, win *wholeWindow) (view, error) {
	r, err := a.startCatchUpRow(ctx, row, following, catchUpSpanBytes, win)
	if err != nil {
		return view{}, err
	}
	return r.wait(ctx)
}

// startCatchUpRow starts readCatchUpRowIn's read, spanning at most
// spanMax bytes, and returns it to wait for (having waited only for a
// tail read in flight that brings the row).
func (a *Agent) startCatchUpRow(ctx context.Context, row catalog.BatchRow, following []catalog.BatchRow, spanMax int64, win *wholeWindow) (pendingRead, error) {
	if v, ok := a.cache.peek(row.ObjectKey, row.ByteOffset, row.ByteLength); ok {
		a.cache.m.hits.Inc()
		return pendingRead{v: v}, nil
	}
	if !a.catchup.holds(row.ObjectKey, row.ByteOffset, row.ByteLength) {
		if v, ok, err := a.cache.held(ctx, row.ObjectKey, row.ByteOffset, row.ByteLength); ok || err != nil {
			return pendingRead{v: v}, err // a tail read brought it
		}
	}
	spanOff, spanLen, whole := win.span(row)
	if !whole {
		spanLen = a.catchUpSpan(row, following, spanMax)
	}
	return a.catchup.start(a.bucket, row.ObjectKey, row.ByteOffset, row.ByteLength, spanOff, spanLen), nil
}

// catchUpSpan is the length of row together with the rows stored right
// after it in the same object that the catch-up cache neither holds nor
// is reading, up to spanMax bytes (and catchUpSpanBytes).
func (a *Agent) catchUpSpan(row catalog.BatchRow, following []catalog.BatchRow, spanMax int64) int64 {
	spanMax = min(spanMax, catchUpSpanBytes)
	spanLen := row.ByteLength
	for _, r := range following {
		if r.ObjectKey != row.ObjectKey || r.ByteOffset != row.ByteOffset+spanLen || spanLen+r.ByteLength > spanMax ||
			a.catchup.heldFrom(r.ObjectKey, r.ByteOffset) > r.ByteOffset {
			break
		}
		spanLen += r.ByteLength
	}
	return spanLen
}

// rowHeld reports whether either cache holds the row or is reading it.
func (a *Agent) rowHeld(r catalog.BatchRow) bool {
	return a.catchup.holds(r.ObjectKey, r.ByteOffset, r.ByteLength) || a.cache.holds(r.ObjectKey, r.ByteOffset, r.ByteLength)
}

// prefetchRows starts reading the rows a consumer is expected to fetch
// next into the catch-up cache: whole objects where win allows, else
// adjacent rows of one object in one GET, from the first row neither
// cache holds or is reading (an earlier span may hold the first rows of
// this one). It never waits: with every catch-up read slot taken it reads
// nothing.
func (a *Agent) prefetchRows(rows []catalog.BatchRow, win *wholeWindow) {
	for i := 0; i < len(rows); {
		r := rows[i]
		if end := a.catchup.heldFrom(r.ObjectKey, r.ByteOffset); end >= r.ByteOffset+r.ByteLength || a.cache.holds(r.ObjectKey, r.ByteOffset, r.ByteLength) {
			i++
			continue
		}
		off, n, whole := win.span(r)
		j := i + 1
		if whole {
			for j < len(rows) && rows[j].ObjectKey == r.ObjectKey {
				j++
			}
		} else {
			n = a.catchUpSpan(r, rows[j:], catchUpSpanBytes)
			for end := r.ByteOffset + n; j < len(rows) && rows[j].ObjectKey == r.ObjectKey && rows[j].ByteOffset < end; {
				j++
			}
		}
		if !a.cache.holds(r.ObjectKey, off, n) {
			a.catchup.prefetch(a.bucket, r.ObjectKey, off, n)
		}
		i = j
	}
}

// readAhead prefetches the first rows of rows — those a consumer's next
// fetches are expected to read — within ahead bytes, but only once the
// rows the caches hold or are reading at their front make up less than
// half of that: a partition read in order then refills its read-ahead by
// half of it or more in one GET, where topping it up on every fetch read
// a row per fetch.
func (a *Agent) readAhead(rows []catalog.BatchRow, ahead int64, win *wholeWindow) {
	var held int64
	i := 0
	for ; i < len(rows) && a.rowHeld(rows[i]); i++ {
		held += rows[i].ByteLength
	}
	if held >= ahead/2 {
		return
	}
	j := i
	for ; j < len(rows) && held+rows[j].ByteLength <= ahead; j++ {
		held += rows[j].ByteLength
	}
	a.prefetchRows(rows[i:j], win)
}

// catchUpPeriod is how long a partition read through the catalog counts
// as catching up (one to two periods after its last read).
const catchUpPeriod = 5 * time.Second

// catchUpAhead returns how far a catch-up read of tp reads ahead:
// CatchUpPrefetchBytes, but at most a quarter of tp's share of the
// catch-up cache among the partitions catching up, so that every
// partition's read-ahead stays cached until its consumer reads it (the
// rest of the share holds the rows being served and the span being
// read). Past a dozen partitions (at the defaults: a group reset to the
// earliest offsets), each one's read-ahead otherwise evicted another's
// before it was read, and catching up read the same bytes many times.
func (a *Agent) catchUpAhead(tp catalog.TopicPartition) int64 {
	n := a.catchingUp.add(tp, a.now())
	return min(a.cfg.CatchUpPrefetchBytes, a.cfg.CatchUpCacheBytes/(4*int64(n)))
}

// catchUpPartitions counts the partitions read through the catalog in
// the current and the previous catchUpPeriod. The zero value is ready.
type catchUpPartitions struct {
	mu struct {
		sync.Mutex
		cur, prev map[catalog.TopicPartition]struct{}
		since     time.Time // when cur began
		n         int       // partitions in cur or prev
	}
}

// add counts tp as catching up at now and returns the partitions that
// are.
func (p *catchUpPartitions) add(tp catalog.TopicPartition, now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := now.Sub(p.mu.since); d >= catchUpPeriod || p.mu.cur == nil {
		p.mu.prev, p.mu.cur = p.mu.cur, make(map[catalog.TopicPartition]struct{})
		if d >= 2*catchUpPeriod {
			p.mu.prev = nil
		}
		p.mu.since, p.mu.n = now, len(p.mu.prev)
	}
	if _, ok := p.mu.cur[tp]; !ok {
		p.mu.cur[tp] = struct{}{}
		if _, ok := p.mu.prev[tp]; !ok {
			p.mu.n++
		}
	}
	return p.mu.n
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
