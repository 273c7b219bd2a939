package agent

// Produce (key 0), versions 3-13 (ApiVersions lists 0-13, see
// api_versions.go; v0-v2 requests close the connection, as in Kafka 4).
//
// Differences from Kafka:
//   - acks=1 and acks=-1 both answer only after the batch's segment object
//     is in the bucket and its offsets are committed (the one rule), so a
//     produce waits for its buffer's seal: up to one flush interval, less
//     when every producer with data in the buffer has its in-flight window
//     full (sealWatch below), then one PUT and one commit.
//   - The batch is validated without decompressing it: header, lengths,
//     CRC-32C, count against lastOffsetDelta, and (uncompressed batches
//     only) that the records parse with offset deltas 0 to
//     lastOffsetDelta in order. Kafka also decompresses and checks
//     every record; a compressed batch with corrupt records inside is
//     stored as sent and fails on the consumer. A compacted topic's
//     batches are decompressed and parsed, because every record needs a
//     key there, as in Kafka. Kafka keeps an uncompressed batch's offset
//     deltas as sent and renumbers a compressed one's; Floe, which
//     stores batches as sent, refuses both (INVALID_RECORD).
//   - Bytes that cannot change on a retry (a truncated batch, magic 0 or
//     1, records that do not parse) get INVALID_RECORD, as in Kafka 4,
//     never CORRUPT_MESSAGE, which clients retry until their delivery
//     timeout. CORRUPT_MESSAGE is for bad CRCs, lengths and unknown
//     magic values, as Kafka's batch reader answers them.
//   - Timestamps are checked against message.timestamp.{before,after}.max.ms
//     using the batch header's first and max timestamps only.
//   - Transactions are not supported: a transactional id or batch gets
//     TRANSACTIONAL_ID_AUTHORIZATION_FAILED / INVALID_TXN_STATE.
//   - Unknown topics are auto-created here too when auto-creation is on
//     (Kafka creates them only from Metadata).
//   - A WAL that is shutting down answers NOT_LEADER_OR_FOLLOWER so the
//     client refreshes metadata and moves to a live agent.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/wal"
)

// maxBatchlessEntries is how many partition entries a produce request may
// have beyond what its bytes could fill with record batches.
const maxBatchlessEntries = 10_000

// noLeaderEpoch is -1 as a batch's partitionLeaderEpoch field.
const noLeaderEpoch = 0xffffffff

// produceTopicKey names a topic of a produce request: by name, or by id
// from v13.
type produceTopicKey struct {
	name string
	id   [16]byte
}

// producedTopic is a produce request's lookup of one topic.
type producedTopic struct {
	topic  catalog.Topic
	err    int16 // the lookup's error code, for every partition
	lim    topicLimits
	reread bool // read again for a partition past its count
}

// producePart is one partition of a produce request on its way to the WAL.
type producePart struct {
	out      *kmsg.ProduceResponseTopicPartition
	entry    int // index into entries, or -1 when already answered
	appendTS int64
}

func (a *Agent) handleProduce(ctx context.Context, r *request, req *kmsg.ProduceRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	timeout := time.Duration(req.TimeoutMillis) * time.Millisecond
	if timeout <= 0 || timeout > a.cfg.ProduceTimeout {
		timeout = a.cfg.ProduceTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	// Whole-request refusals answer every partition with one code.
	reqErr := int16(0)
	switch {
	case req.Acks != 0 && req.Acks != 1 && req.Acks != -1:
		reqErr = kerr.InvalidRequiredAcks.Code
	case req.TransactionID != nil:
		reqErr = kerr.TransactionalIDAuthorizationFailed.Code
	}

	nparts := 0
	for _, rt := range req.Topics {
		nparts += len(rt.Partitions)
	}
	if nparts > maxBatchlessEntries && nparts*batchHeaderSize > r.p.frameSize {
		// Every partition of a produce request carries a record batch,
		// at least a batch header: entries without one (a null record
		// set is 6 bytes at v9) each cost hundreds of bytes in answers
		// and state, and 2,000,000 of them in a 12 MB frame took
		// 1.3 GB. No Kafka client sends them; a few are answered one by
		// one (INVALID_RECORD).
		a.badInputLog.Do(func() {
			a.log.Warn("closing connection: produce request with more partitions than record batches could fill", "remote", r.conn.remote, "partitions", nparts, "bytes", r.p.frameSize)
		})
		return nil, fmt.Errorf("%w: produce request of %d bytes names %d partitions", errCloseConn, r.p.frameSize, nparts)
	}
	now := a.now().UnixMilli()
	resp.Topics = make([]kmsg.ProduceResponseTopic, 0, len(req.Topics))
	for _, rt := range req.Topics {
		ot := kmsg.NewProduceResponseTopic()
		ot.Topic, ot.TopicID = rt.Topic, rt.TopicID
		ot.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		resp.Topics = append(resp.Topics, ot)
	}
	// A topic named by several of the request's entries is looked up, and
	// read again for a partition past its count, once per request: a
	// request can repeat a topic, or name unknown ones, thousands of times
	// in a few bytes each.
	resolved := make(map[produceTopicKey]*producedTopic, len(req.Topics))
	parts := make([]producePart, 0, nparts)
	entries := make([]wal.Entry, 0, nparts)
	for ti, rt := range req.Topics {
		ot := &resp.Topics[ti]
		pt := &producedTopic{}
		if reqErr == 0 {
			key := produceTopicKey{name: rt.Topic}
			if req.Version >= 13 {
				key = produceTopicKey{id: rt.TopicID}
			}
			if pt = resolved[key]; pt == nil {
				pt = &producedTopic{}
				pt.topic, pt.err = a.produceTopic(ctx, req.Version, rt)
				pt.lim = limitsOf(pt.topic)
				resolved[key] = pt
			}
		}
		topicErr := pt.err
		for pi, rp := range rt.Partitions {
			out := &ot.Partitions[pi]
			out.Default()
			out.Partition = rp.Partition
			out.BaseOffset, out.LogAppendTime, out.LogStartOffset = -1, -1, -1
			pp := producePart{out: out, entry: -1}
			switch {
			case reqErr != 0:
				out.ErrorCode = reqErr
			case topicErr != 0:
				out.ErrorCode = topicErr
			case rp.Partition < 0 || rp.Partition >= pt.topic.Partitions:
				// The topic may have grown on another agent.
				if rp.Partition >= 0 && !pt.reread {
					pt.reread = true
					if t, err := a.topic(ctx, pt.topic.Name, rp.Partition+1); err == nil && t.ID == pt.topic.ID {
						pt.topic, pt.lim = t, limitsOf(t)
					}
				}
				if rp.Partition >= 0 && rp.Partition < pt.topic.Partitions {
					pp = a.producePartition(ctx, req.Version, pt.topic, &pt.lim, rp, out, now, &entries)
				} else {
					out.ErrorCode = kerr.UnknownTopicOrPartition.Code
				}
			default:
				pp = a.producePartition(ctx, req.Version, pt.topic, &pt.lim, rp, out, now, &entries)
			}
			parts = append(parts, pp)
		}
	}

	detachBatches(entries, r.p.frameSize)

	var ack *wal.Ack
	var appendErr error
	waiting := false // counted in r.conn.produce until answered
	idempotent := allIdempotent(entries)
	r.inOrder(func() {
		if len(entries) > 0 {
			// With the request's time already gone (a slow topic
			// lookup, a key check waiting for the decompression slot),
			// Append appends nothing: REQUEST_TIMED_OUT is then true
			// for every partition.
			ack, appendErr = a.wal.Append(ctx, entries)
			if appendErr == nil && req.Acks != 0 {
				waiting = true
				if buf := ack.Buffer(); a.seal.appended(r.conn, buf, idempotent) {
					a.wal.SealEarly(buf)
				}
			}
		}
	})
	if waiting {
		defer a.seal.answered(r.conn, idempotent)
	}

	var results []catalog.BatchResult
	var waitErr error
	switch {
	case len(entries) == 0:
	case appendErr != nil:
		waitErr = appendErr
	case req.Acks == 0:
		// Nothing waits for the commit; the data is in the WAL.
	default:
		results, waitErr = ack.Wait(ctx)
		if waitErr == nil && len(results) != len(entries) {
			waitErr = fmt.Errorf("agent: WAL returned %d results for %d entries", len(results), len(entries))
		}
	}
	if waitErr != nil && !errors.Is(waitErr, context.Canceled) {
		a.log.Warn("produce not acknowledged", "err", waitErr, "entries", len(entries))
	}

	anyErr := false
	var produced producedCount
	for _, pp := range parts {
		if pp.entry >= 0 && req.Acks != 0 {
			a.answerProduced(pp, entries[pp.entry], results, waitErr, &produced)
		}
		if pp.out.ErrorCode != 0 {
			anyErr = true
			a.m.partitionErrs.WithLabelValues("Produce", errName(pp.out.ErrorCode)).Inc()
		}
	}
	if produced.batches > 0 {
		a.m.producedBytes.Add(float64(produced.bytes))
		a.m.producedBatches.Add(float64(produced.batches))
	}
	if req.Acks == 0 {
		if anyErr || waitErr != nil {
			// Kafka closes an acks=0 connection on any error so the
			// client notices and refreshes its metadata.
			return nil, fmt.Errorf("%w: acks=0 produce failed", errCloseConn)
		}
		return nil, nil
	}
	return resp, nil
}

// produceWindow is how many produce requests an idempotent producer keeps
// in flight on one connection: franz-go, the Java client and librdkafka
// all stop at 5, the most a Kafka broker deduplicates (it remembers the
// last five batches per producer and partition). A connection with this
// many idempotent produce requests waiting for their acks sends no more
// produce data until one is answered.
const produceWindow = 5

// produceWaits is one connection's produce requests waiting for their
// acks (appended to the WAL, not yet answered; acks=0 requests never
// wait). plain counts those with a non-idempotent batch; answered is set
// once one of its produce requests has been answered.
type produceWaits struct {
	waiting, plain int
	answered       bool
	// blockedAt is when the connection last became blocked; held is set
	// when it was then blocked for a whole flush interval, until its next
	// produce request (see sealWatch).
	blockedAt time.Time
	held      bool
}

// blocked reports whether the connection will send no more produce data
// before an answer: its window is full. Only idempotent producers are known
// to stop at produceWindow; others may allow any number (librdkafka a
// million), so they are never blocked. Before its first answer the window
// counts as one request: franz-go sends a single produce request on a new
// connection until it is answered (it learns from the answer that the
// broker deduplicates five), so holding that request for the flush interval
// would stall the producer's start. A client that does send more loses
// nothing but one extra PUT per connection.
func (p produceWaits) blocked() bool {
	if p.plain > 0 {
		return false
	}
	return p.waiting >= produceWindow || (!p.answered && p.waiting > 0)
}

// sealWatch decides when the WAL's open buffer is worth sealing before its
// flush interval ends. A producer whose window is full waits for acks, and
// those come only once the buffer holding its data is sealed, uploaded and
// committed. When every connection with data in the open buffer is
// blocked like that, nothing more will arrive from them, so holding the
// buffer open only adds latency: sealWatch says so and the produce handler
// asks the WAL to seal it (wal.Log.SealEarly), which the WAL does no
// sooner than its minimum flush interval after the previous seal, keeping
// PUTs per second bounded. A producer that is not blocked (a trickle, a
// big window, a client still filling its window) keeps the buffer open
// for the flush interval, as before. acks=0 data is not tracked: nobody
// waits for it, so it neither holds a buffer open nor seals one.
//
// A producer held blocked for a whole flush interval (a slow PUT held its
// window) has kept back everything produced meanwhile, and its first
// request once answered carries that backlog, which has already waited
// longer than any buffer should stay open. That request's buffer is sealed
// at once rather than when the window fills again: the flush interval
// bounds the wait before a seal counted from the client, not from the
// agent. The rest of the window goes into the next buffer, so this costs
// one extra PUT, and only after a slow cycle.
//
// It follows the newest buffer an append landed in, the connections with
// data in it and how many of them are not blocked; each connection's
// produceWaits changes under its mutex. The zero value is ready to use
// and never seals for a held producer; set holdLimit and now for that.
type sealWatch struct {
	holdLimit time.Duration // the flush interval; 0: no held-producer seals
	now       func() time.Time

	mu    sync.Mutex
	buf   uint64             // newest buffer an append landed in
	conns map[*conn]struct{} // connections with data in buf
	open  int                // of conns, those not blocked
	asked bool               // appended returned true for buf
}

// appended counts c's produce request, just appended to buffer buf, as
// waiting for its ack, and reports whether buf should be sealed now. Call
// it in the connection's request order; call answered once the request
// stops waiting.
func (w *sealWatch) appended(c *conn, buf uint64, idempotent bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conns == nil || buf > w.buf {
		// A newer buffer: the previous one has been sealed.
		if w.conns == nil {
			w.conns = make(map[*conn]struct{})
		}
		clear(w.conns)
		w.buf, w.open, w.asked = buf, 0, false
	}
	w.update(c, func(p *produceWaits) {
		p.waiting++
		if !idempotent {
			p.plain++
		}
	})
	if buf < w.buf {
		return false // sealed already: a later buffer has data
	}
	if _, ok := w.conns[c]; !ok {
		w.conns[c] = struct{}{}
		if !c.produce.blocked() {
			w.open++
		}
	}
	held := c.produce.held && idempotent
	c.produce.held = false
	if (w.open > 0 && !held) || w.asked {
		return false
	}
	w.asked = true
	return true
}

// answered counts c's produce request as no longer waiting.
func (w *sealWatch) answered(c *conn, idempotent bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.update(c, func(p *produceWaits) {
		p.waiting--
		if !idempotent {
			p.plain--
		}
		p.answered = true
	})
}

// update applies f to c's counts and keeps open right if c has data in the
// newest buffer.
func (w *sealWatch) update(c *conn, f func(*produceWaits)) {
	was := c.produce.blocked()
	f(&c.produce)
	now := c.produce.blocked()
	if w.holdLimit > 0 && was != now {
		t := w.now()
		if now {
			c.produce.blockedAt = t
		} else if t.Sub(c.produce.blockedAt) >= w.holdLimit {
			c.produce.held = true
		}
	}
	if _, ok := w.conns[c]; !ok || was == now {
		return
	}
	if now {
		w.open--
	} else {
		w.open++
	}
}

// detachBatches copies the batches out of their request's frame when the
// frame is more than twice their size. A batch is a slice of the frame,
// so the WAL keeps the whole frame reachable until the batch's flush
// commits, while it counts only the batch against MaxBufferedBytes; and
// the frame's reservation in the request budget ends when the handler
// returns, at once for acks=0, at the produce timeout otherwise. A frame
// mostly made of something else (padding the decoder skips, unknown
// tagged fields, refused batches) would pin memory nothing counts.
func detachBatches(entries []wal.Entry, frameSize int) {
	kept := 0
	for i := range entries {
		kept += len(entries[i].Batch)
	}
	if frameSize <= 2*kept {
		return
	}
	buf := make([]byte, 0, kept)
	for i := range entries {
		n := len(buf)
		buf = append(buf, entries[i].Batch...)
		entries[i].Batch = buf[n:len(buf):len(buf)]
	}
}

// allIdempotent reports whether every entry carries a producer id.
func allIdempotent(entries []wal.Entry) bool {
	for i := range entries {
		if entries[i].ProducerID < 0 {
			return false
		}
	}
	return len(entries) > 0
}

// produceTopic resolves a request topic by name (v0-12) or id (v13+),
// auto-creating it by name when allowed.
func (a *Agent) produceTopic(ctx context.Context, version int16, rt kmsg.ProduceRequestTopic) (catalog.Topic, int16) {
	var (
		t   catalog.Topic
		err error
	)
	if version >= 13 {
		t, err = a.topicByID(ctx, rt.TopicID, 0)
	} else {
		t, err = a.topicOrCreate(ctx, rt.Topic, 0, true)
	}
	switch {
	case err == nil:
		return t, 0
	case errors.Is(err, catalog.ErrUnknownTopic) && version >= 13:
		return t, kerr.UnknownTopicID.Code
	case errors.Is(err, catalog.ErrUnknownTopic):
		return t, kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, catalog.ErrInvalidTopic):
		return t, kerr.InvalidTopicException.Code
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return t, kerr.RequestTimedOut.Code
	}
	a.log.Warn("produce: topic lookup failed", "topic", rt.Topic, "err", err)
	return t, kerr.KafkaStorageError.Code
}

// topicLimits are the topic configs the produce path applies to every
// batch, read once per topic and request: a request spreading small
// batches over thousands of partitions would otherwise look up and parse
// them per batch (half its per-batch work).
type topicLimits struct {
	maxBytes      int // max.message.bytes, at most wal.MaxBatchBytes
	logAppendTime bool
	before, after int64 // message.timestamp.{before,after}.max.ms
	// compacted (cleanup.policy has compact): every record needs a key.
	compacted bool
}

func limitsOf(t catalog.Topic) topicLimits {
	return topicLimits{
		maxBytes:      min(int(t.MaxMessageBytes()), wal.MaxBatchBytes),
		logAppendTime: t.LogAppendTime(),
		before:        t.TimestampBeforeMaxMs(),
		after:         t.TimestampAfterMaxMs(),
		compacted:     t.CleanupPolicy().Compact,
	}
}

// producePartition validates one partition's batch and, if it is
// acceptable, adds its WAL entry. lim is limitsOf(t).
func (a *Agent) producePartition(ctx context.Context, version int16, t catalog.Topic, lim *topicLimits, rp kmsg.ProduceRequestTopicPartition, out *kmsg.ProduceResponseTopicPartition, now int64, entries *[]wal.Entry) producePart {
	pp := producePart{out: out, entry: -1}
	b := rp.Records
	if len(b) > lim.maxBytes {
		out.ErrorCode = kerr.MessageTooLarge.Code
		return pp
	}
	h, err := validateProduceBatch(b, version)
	if err == nil && lim.compacted {
		// As Kafka: log compaction keeps the latest record per key, so a
		// record without one could never be cleaned up. Only compacted
		// topics pay for decompressing on produce.
		if h.compression() != 0 {
			err = a.decompressing(ctx, func() (err error) {
				h.Keyless, err = keylessCompressed(b, h)
				return err
			})
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				out.ErrorCode = kerr.RequestTimedOut.Code
				return pp
			}
		}
		if err == nil && h.Keyless >= 0 {
			msg := fmt.Sprintf("compacted topic cannot accept message without key in topic partition %s-%d", t.Name, rp.Partition)
			// Kafka names the record in the response's record errors
			// (Produce v8+), which clients report with the error.
			rec := kmsg.NewProduceResponseTopicPartitionErrorRecord()
			rec.RelativeOffset, rec.ErrorMessage = h.Keyless, kmsg.StringPtr(msg)
			out.ErrorRecords = append(out.ErrorRecords, rec)
			err = invalidRecord("%s (record %d of the batch)", msg, h.Keyless)
		}
	}
	if err != nil {
		var be *batchError
		if errors.As(err, &be) {
			out.ErrorCode = be.err.Code
			out.ErrorMessage = kmsg.StringPtr(be.msg)
		} else {
			out.ErrorCode = kerr.CorruptMessage.Code
		}
		return pp
	}
	// The batch's partition leader epoch is the broker's to set, as
	// Kafka stamps its leader's epoch on append: a producer's value (a
	// tool copying raw batches writes its source cluster's) was stored
	// and served, and a Java consumer took it for the partition's epoch,
	// then ignored Metadata from Floe's lower one as stale. Floe stamps
	// -1, "no epoch": its leader epoch is the fleet's generation, which
	// differs between agents while a change propagates.
	binary.BigEndian.PutUint32(b[batchPLEOffset:], noLeaderEpoch)
	if lim.logAppendTime {
		setLogAppendTime(b, now)
		h.MaxTimestamp = now
		pp.appendTS = now
	} else {
		pp.appendTS = -1
		if msg := checkTimestamps(lim, h, now); msg != "" {
			out.ErrorCode = kerr.InvalidTimestamp.Code
			out.ErrorMessage = kmsg.StringPtr(msg)
			return pp
		}
	}
	pp.entry = len(*entries)
	*entries = append(*entries, wal.Entry{
		TopicPartition: catalog.TopicPartition{TopicID: t.ID, Partition: rp.Partition},
		Batch:          b,
		OffsetSpan:     h.LastOffsetDelta + 1,
		Records:        h.Records,
		FirstTimestamp: h.FirstTimestamp,
		MaxTimestamp:   h.MaxTimestamp,
		ProducerID:     h.ProducerID,
		ProducerEpoch:  h.ProducerEpoch,
		BaseSequence:   h.BaseSequence,
	})
	return pp
}

// checkTimestamps applies message.timestamp.before/after.max.ms to the
// batch's first and max timestamps (CreateTime topics).
func checkTimestamps(lim *topicLimits, h batchHeader, now int64) string {
	before, after := lim.before, lim.after
	if h.MaxTimestamp >= 0 && h.MaxTimestamp-now > after {
		return fmt.Sprintf("timestamp %d is more than %d ms after the broker time %d (message.timestamp.after.max.ms)", h.MaxTimestamp, after, now)
	}
	if h.FirstTimestamp >= 0 && now-h.FirstTimestamp > before {
		return fmt.Sprintf("timestamp %d is more than %d ms before the broker time %d (message.timestamp.before.max.ms)", h.FirstTimestamp, before, now)
	}
	return ""
}

// producedCount sums a request's newly stored batches for the metrics,
// which are updated once per request rather than per partition.
type producedCount struct{ bytes, batches int }

// answerProduced fills a partition's answer from its commit result and
// counts a newly stored batch in n.
func (a *Agent) answerProduced(pp producePart, e wal.Entry, results []catalog.BatchResult, waitErr error, n *producedCount) {
	out := pp.out
	if waitErr != nil {
		out.ErrorCode = walErrorCode(waitErr)
		return
	}
	res := results[pp.entry]
	switch {
	case res.Err == nil:
		out.BaseOffset = res.BaseOffset
		out.LogStartOffset = res.LogStartOffset
		out.LogAppendTime = pp.appendTS
		if !res.Duplicate {
			n.bytes += len(e.Batch)
			n.batches++
		}
	case errors.Is(res.Err, catalog.ErrOutOfOrderSequence):
		out.ErrorCode = kerr.OutOfOrderSequenceNumber.Code
	case errors.Is(res.Err, catalog.ErrInvalidProducerEpoch):
		out.ErrorCode = kerr.InvalidProducerEpoch.Code
	case errors.Is(res.Err, catalog.ErrUnknownProducerID):
		out.ErrorCode = kerr.UnknownProducerID.Code
	case errors.Is(res.Err, catalog.ErrUnknownTopic):
		// Deleted since it was cached, maybe through another agent.
		a.topicGone(e.TopicPartition.TopicID)
		out.ErrorCode = kerr.UnknownTopicOrPartition.Code
	default:
		a.log.Warn("produce: commit rejected a batch", "err", res.Err)
		out.ErrorCode = kerr.KafkaStorageError.Code
	}
}

// walErrorCode maps a failed append or commit wait to a retriable code.
// Everything else, wal.ErrWrite (the open buffer's file could not be
// written, a full disk: nothing of the append is kept, so a retry stores it
// once) among it, is KAFKA_STORAGE_ERROR, which every client retries.
func walErrorCode(err error) int16 {
	switch {
	case errors.Is(err, wal.ErrClosed):
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, wal.ErrBackpressure),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return kerr.RequestTimedOut.Code
	}
	return kerr.KafkaStorageError.Code
}

// errName is the metrics label of a Kafka error code.
func errName(code int16) string {
	if err := kerr.ErrorForCode(code); err != nil {
		var ke *kerr.Error
		if errors.As(err, &ke) {
			return ke.Message
		}
	}
	return "UNKNOWN"
}
