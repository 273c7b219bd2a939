package agent_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/tests/floetest"
)

// TestInitProducerIDEpochExhausted: franz-go bumps an idempotent
// producer's epoch locally after a produce error and asks the broker only
// once the epoch reaches MaxInt16-1, sending its id and that epoch
// (KIP-360). The answer must be a new producer id at epoch 0, as Kafka
// gives: an error there is stored as the producer's permanent failure,
// and every later record fails with it.
func TestInitProducerIDEpochExhausted(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})
	createTopic(t, a, "exhausted", 1, nil)
	cl := a.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	first := kmsg.NewPtrInitProducerIDRequest()
	resp, err := first.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, "InitProducerId", resp.ErrorCode, nil)
	pid := resp.ProducerID

	for _, epoch := range []int16{math.MaxInt16 - 1, math.MaxInt16} {
		// What franz-go's doInitProducerID sends: its id and epoch.
		req := kmsg.NewPtrInitProducerIDRequest()
		req.ProducerID, req.ProducerEpoch = pid, epoch
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, "InitProducerId at an exhausted epoch", resp.ErrorCode, nil)
		if resp.ProducerID < 0 || resp.ProducerID == pid || resp.ProducerEpoch != 0 {
			t.Fatalf("epoch %d: got producer %d/%d, want a new id at epoch 0", epoch, resp.ProducerID, resp.ProducerEpoch)
		}
		// The new id produces from sequence 0.
		c := floetest.Dial(t, a.Addr)
		b := floetest.Batch(floetest.BatchSpec{Records: 2, Idempotent: true, ProducerID: resp.ProducerID, ProducerEpoch: resp.ProducerEpoch})
		ps := produce(t, c, produceReq("exhausted", -1, b))
		wantCode(t, "produce with the new id", ps[0].ErrorCode, nil)
	}
}
