package agent

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

func TestFetchSizeHint(t *testing.T) {
	rows := []catalog.BatchRow{
		{BaseOffset: 0, LastOffset: 9, ByteLength: 100},
		{BaseOffset: 10, LastOffset: 19, ByteLength: 200},
		{BaseOffset: 20, LastOffset: 29, ByteLength: 300},
	}
	for _, tc := range []struct {
		name   string
		from   int64
		budget int64
		minOne bool
		want   int64
	}{
		{"all fit", 0, 1 << 20, false, 600},
		{"from skips rows below", 10, 1 << 20, false, 500},
		{"budget caps", 0, 250, false, 250},
		{"zero budget", 0, 0, false, 0},
		{"min one over budget", 10, 50, true, 200},
		{"min one within budget", 0, 350, true, 350},
		{"past the rows", 30, 1 << 20, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fetchSizeHint(rows, tc.from, tc.budget, tc.minOne); got != tc.want {
				t.Fatalf("fetchSizeHint(from %d, budget %d, minOne %v) = %d, want %d", tc.from, tc.budget, tc.minOne, got, tc.want)
			}
		})
	}
}

// The hint must cover the encoded response, or the encoder grows the
// buffer (correct, but the copy the hint exists to avoid).
func TestFetchResponseSizeHintCoversEncoding(t *testing.T) {
	for _, version := range []int16{4, 11, 12, 13, 16, 18} {
		resp := kmsg.NewPtrFetchResponse()
		resp.SetVersion(version)
		for ti := 0; ti < 3; ti++ {
			rt := kmsg.NewFetchResponseTopic()
			rt.Topic = "a-topic-with-a-rather-long-name-" + string(rune('a'+ti))
			for p := 0; p < 5; p++ {
				rp := kmsg.NewFetchResponseTopicPartition()
				rp.Partition = int32(p)
				rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = 1<<40, 1<<40, 1<<39
				rp.RecordBatches = make([]byte, p*1000)
				rp.AbortedTransactions = make([]kmsg.FetchResponseTopicPartitionAbortedTransaction, p)
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		hint := fetchResponseSizeHint(resp)
		hdr := requestHeader{key: 1, version: version, correlationID: 7}
		if n := len(appendResponse(nil, hdr, resp)); n > hint {
			t.Errorf("v%d: encoded %d bytes, hint %d", version, n, hint)
		}
	}
}
