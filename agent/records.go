package agent

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/floebroker/floe/internal/batchcodec"
)

// Reading the records inside stored batches. Only ListOffsets by timestamp
// needs this (to find the first record at or after a timestamp inside a
// batch); the produce and fetch paths never decompress. batchcodec bounds
// what a batch may decompress to.

// decompressing runs f, which decompresses a batch, holding a.decompress:
// one decompression at a time per agent (the produce key check of
// compacted topics, timestamp lookups), so that hostile batches cost at
// most one bounded decompression of memory (batchcodec's 64 MiB and the
// read's growth, a few hundred MiB at worst) whatever the connections,
// where legitimate batches take milliseconds. It gives up with ctx's
// error while waiting; the slot is released even if f panics (a handler
// panic fails its request only).
func (a *Agent) decompressing(ctx context.Context, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err // select would pick at random with the slot free
	}
	select {
	case a.decompress <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-a.decompress }()
	return f()
}

// recordTimes calls fn with the offset delta and absolute timestamp of each
// record of a batch, in order, until fn returns false. For a LogAppendTime
// batch every record carries the batch's max timestamp. A record whose
// offset delta lies outside the batch's offset range (its producer wrote
// it so: produce does not look inside the compressed batches of topics
// that are not compacted) is skipped: its offset would be past the high
// watermark or another batch's.
func recordTimes(batch []byte, h batchHeader, fn func(offsetDelta int32, ts int64) bool) error {
	body, err := batchcodec.Decompress(h.compression(), batch[batchHeaderSize:h.Length])
	if err != nil {
		return err
	}
	for i := int32(0); i < h.Records && len(body) > 0; i++ {
		l, n := binary.Varint(body)
		if n <= 0 || l < 0 || l > int64(len(body)-n) {
			return fmt.Errorf("%w: record %d length", errBadStoredBatch, i)
		}
		rec := body[n : n+int(l)]
		body = body[n+int(l):]
		if len(rec) < 1 {
			return fmt.Errorf("%w: record %d is empty", errBadStoredBatch, i)
		}
		rec = rec[1:] // attributes
		tsDelta, n1 := binary.Varint(rec)
		if n1 <= 0 {
			return fmt.Errorf("%w: record %d timestamp", errBadStoredBatch, i)
		}
		offDelta, n2 := binary.Varint(rec[n1:])
		if n2 <= 0 {
			return fmt.Errorf("%w: record %d offset delta", errBadStoredBatch, i)
		}
		if offDelta < 0 || offDelta > int64(h.LastOffsetDelta) {
			continue
		}
		ts := h.FirstTimestamp + tsDelta
		if h.logAppendTime() {
			ts = h.MaxTimestamp
		}
		if !fn(int32(offDelta), ts) {
			return nil
		}
	}
	return nil
}
