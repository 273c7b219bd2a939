package agent_test

import (
	"context"
	"math"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/sqlite"
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

// producerIDCatalog fails producer id allocation and epoch bumps while
// down is set.
type producerIDCatalog struct {
	catalog.Catalog
	down *atomic.Bool
	slow *atomic.Bool // block until the call's context ends
}

func (p producerIDCatalog) gate(ctx context.Context) error {
	if p.slow.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	if p.down.Load() {
		return errCatalogDown
	}
	return nil
}

func (p producerIDCatalog) AllocateProducerID(ctx context.Context) (int64, int16, error) {
	if err := p.gate(ctx); err != nil {
		return 0, 0, err
	}
	return p.Catalog.AllocateProducerID(ctx)
}

func (p producerIDCatalog) BumpProducerEpoch(ctx context.Context, id int64, epoch int16) (int16, error) {
	if err := p.gate(ctx); err != nil {
		return 0, err
	}
	return p.Catalog.BumpProducerEpoch(ctx, id, epoch)
}

// TestInitProducerIDCatalogDown: while the catalog fails or does not
// answer, InitProducerId is COORDINATOR_LOAD_IN_PROGRESS, which every
// client retries, as Kafka's coordinator answers while it has no producer
// id block. The Java producer treats REQUEST_TIMED_OUT and
// COORDINATOR_NOT_AVAILABLE there as fatal. An idempotent franz-go
// producer started during the outage produces once the catalog is back.
func TestInitProducerIDCatalogDown(t *testing.T) {
	defer agent.SetInitProducerIDTimeout(200 * time.Millisecond)()
	var down, slow atomic.Bool
	dir := t.TempDir()
	base, err := sqlite.Open(context.Background(), filepath.Join(dir, "catalog.db"), catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { base.Close() })
	a := floetest.Start(t, floetest.Options{Dir: dir, Catalog: producerIDCatalog{Catalog: base, down: &down, slow: &slow}})
	createTopic(t, a, "pid-outage", 1, nil)
	c := floetest.Dial(t, a.Addr)
	ask := func(_ string, id int64, epoch int16) *kmsg.InitProducerIDResponse {
		return initProducerID(t, c, id, epoch)
	}
	down.Store(true)
	wantCode(t, "allocate, catalog down", ask("allocate", -1, -1).ErrorCode, kerr.CoordinatorLoadInProgress)
	wantCode(t, "bump, catalog down", ask("bump", 7, 0).ErrorCode, kerr.CoordinatorLoadInProgress)
	down.Store(false)
	slow.Store(true)
	wantCode(t, "allocate, catalog slow", ask("allocate", -1, -1).ErrorCode, kerr.CoordinatorLoadInProgress)
	slow.Store(false)

	// A producer that starts while the catalog is down gets through once
	// it is back.
	down.Store(true)
	cl := a.Client(t, kgo.DefaultProduceTopic("pid-outage"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr() }()
	time.Sleep(500 * time.Millisecond)
	down.Store(false)
	if err := <-res; err != nil {
		t.Fatalf("produce after the outage: %v", err)
	}
}

// TestInitProducerIDOlderEpoch: an idempotent producer naming an epoch
// older than the catalog's gets a fresh producer id, as Kafka gives every
// idempotent producer, not INVALID_PRODUCER_EPOCH, which clients treat as
// fatal.
func TestInitProducerIDOlderEpoch(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})
	c := floetest.Dial(t, a.Addr)
	ask := func(id int64, epoch int16) *kmsg.InitProducerIDResponse {
		t.Helper()
		r := initProducerID(t, c, id, epoch)
		wantCode(t, "InitProducerId", r.ErrorCode, nil)
		return r
	}
	first := ask(-1, -1)
	pid := first.ProducerID
	for _, want := range []int16{1, 2, 3} {
		if r := ask(pid, want-1); r.ProducerID != pid || r.ProducerEpoch != want {
			t.Fatalf("bump to %d: got %d/%d", want, r.ProducerID, r.ProducerEpoch)
		}
	}
	if r := ask(pid, 0); r.ProducerID == pid || r.ProducerID < 0 || r.ProducerEpoch != 0 {
		t.Fatalf("older epoch: got %d/%d, want a new id at epoch 0", r.ProducerID, r.ProducerEpoch)
	}
}

// initProducerID sends a v4 InitProducerId naming id and epoch on c.
func initProducerID(t *testing.T, c *floetest.Conn, id int64, epoch int16) *kmsg.InitProducerIDResponse {
	t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.Version = 4
	req.ProducerID, req.ProducerEpoch = id, epoch
	resp, err := c.Request(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.(*kmsg.InitProducerIDResponse)
}
