package agent

// InitProducerId (key 22), versions 0-5, for idempotent producers: a null
// transactional id allocates a producer id (epoch 0); v3+ requests naming
// their current id and epoch get the epoch bumped (KIP-360), fencing the
// old one; an id the catalog does not know, an epoch older than the
// catalog's, or an exhausted epoch (franz-go bumps locally up to
// MaxInt16-1, then asks) gets a fresh id. Kafka gives every idempotent
// producer a fresh id and never refuses one: an error from InitProducerId
// is final for franz-go and for the Java producer, whose every later send
// then fails.
//
// A catalog that fails or does not answer in time is
// COORDINATOR_LOAD_IN_PROGRESS, the one error Kafka's coordinator returns
// for an idempotent producer (its producer id manager has no block yet),
// and one every client retries. The Java producer treats REQUEST_TIMED_OUT
// there as fatal, and answers COORDINATOR_NOT_AVAILABLE by looking up a
// transaction coordinator for a null key, which fails fatally too.
//
// Differences from Kafka: transactions are not supported. A transactional
// id gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED (clients normally stop
// before, at FindCoordinator, which answers their transactional id the
// same); an empty one INVALID_REQUEST, as in Kafka.

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

// initProducerIDTimeout bounds the catalog calls of one InitProducerId:
// a client is better served by a retriable error it retries with backoff
// than by a request that waits out its own timeout (a variable for tests).
var initProducerIDTimeout = 5 * time.Second

func (a *Agent) handleInitProducerID(ctx context.Context, _ *request, req *kmsg.InitProducerIDRequest) (kmsg.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, initProducerIDTimeout)
	defer cancel()
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	switch {
	case req.TransactionalID != nil && *req.TransactionalID == "":
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp, nil
	case req.TransactionalID != nil:
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp, nil
	}
	// An exhausted epoch cannot be bumped: a new id, as Kafka gives. An
	// error here would be the producer's last answer: franz-go keeps a
	// non-retriable InitProducerId error and fails every later record.
	if req.Version >= 3 && req.ProducerID >= 0 && !catalog.EpochExhausted(req.ProducerEpoch) {
		epoch, err := a.cat.BumpProducerEpoch(ctx, req.ProducerID, req.ProducerEpoch)
		switch {
		case err == nil:
			resp.ProducerID, resp.ProducerEpoch = req.ProducerID, epoch
			return resp, nil
		case errors.Is(err, catalog.ErrInvalidProducerEpoch), errors.Is(err, catalog.ErrUnknownProducerID):
			// Fall through to a fresh id, as Kafka does for idempotent
			// producers. (The old epoch stays fenced: the id it belongs
			// to is not handed out again.)
		default:
			a.log.Warn("bumping producer epoch failed", "producer_id", req.ProducerID, "err", err)
			resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
			return resp, nil
		}
	}
	id, epoch, err := a.cat.AllocateProducerID(ctx)
	if err != nil {
		a.log.Warn("allocating a producer id failed", "err", err)
		resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		return resp, nil
	}
	resp.ProducerID, resp.ProducerEpoch = id, epoch
	return resp, nil
}
