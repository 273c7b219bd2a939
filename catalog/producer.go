package catalog

import (
	"fmt"
	"math"
)

// NextProducerEpoch is the rule every backend's BumpProducerEpoch applies
// to a producer whose stored epoch is cur, asked to fence given:
//   - given ≥ cur: clients may have bumped locally (KIP-360), so the next
//     epoch is given+1;
//   - given == cur-1: a retry of a bump whose answer was lost; cur again;
//   - older: fenced, ErrInvalidProducerEpoch.
//
// Near the end of the epoch space it fails with ErrInvalidProducerEpoch and
// the caller allocates a new producer id, as Kafka does.
func NextProducerEpoch(cur, given int16) (int16, error) {
	switch {
	case given >= cur:
		if EpochExhausted(given) {
			return 0, fmt.Errorf("%w: epoch %d exhausted; allocate a new producer id", ErrInvalidProducerEpoch, given)
		}
		return given + 1, nil
	case given == cur-1:
		return cur, nil
	default:
		return 0, fmt.Errorf("%w: epoch %d is older than the current %d", ErrInvalidProducerEpoch, given, cur)
	}
}

// EpochExhausted reports whether a producer at epoch has no epoch left to
// move to (Kafka's isProducerEpochExhausted): NextProducerEpoch refuses it,
// and an InitProducerId naming it gets a new producer id instead.
func EpochExhausted(epoch int16) bool { return epoch >= math.MaxInt16-1 }
