package agent

// InitProducerId (key 22), versions 0-5, for idempotent producers: a null
// transactional id allocates a producer id (epoch 0); v3+ requests naming
// their current id and epoch get the epoch bumped (KIP-360), fencing the
// old one; an id the catalog does not know, or an exhausted epoch
// (franz-go bumps locally up to MaxInt16-1, then asks), gets a fresh id.
//
// Differences from Kafka: transactions are not supported. A transactional
// id gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED (clients normally stop
// before, at FindCoordinator, which answers their transactional id the
// same); an empty one INVALID_REQUEST, as in Kafka.

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

func (a *Agent) handleInitProducerID(ctx context.Context, _ *request, req *kmsg.InitProducerIDRequest) (kmsg.Response, error) {
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
		case errors.Is(err, catalog.ErrInvalidProducerEpoch):
			resp.ErrorCode = kerr.InvalidProducerEpoch.Code
			return resp, nil
		case errors.Is(err, catalog.ErrUnknownProducerID):
			// Fall through to a fresh id, as Kafka does for idempotent
			// producers.
		default:
			a.log.Warn("bumping producer epoch failed", "producer_id", req.ProducerID, "err", err)
			resp.ErrorCode = producerIDErrCode(err)
			return resp, nil
		}
	}
	id, epoch, err := a.cat.AllocateProducerID(ctx)
	if err != nil {
		a.log.Warn("allocating a producer id failed", "err", err)
		resp.ErrorCode = producerIDErrCode(err)
		return resp, nil
	}
	resp.ProducerID, resp.ProducerEpoch = id, epoch
	return resp, nil
}

// producerIDErrCode is a retriable code for a catalog failure: the
// coordinator is "not available" until the catalog answers again.
func producerIDErrCode(err error) int16 {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return kerr.RequestTimedOut.Code
	}
	return kerr.CoordinatorNotAvailable.Code
}
