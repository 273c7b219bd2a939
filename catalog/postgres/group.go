package postgres

import (
	"context"
	"fmt"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/internal/commitplan"
)

// CommitSegments commits segs in order. (Placeholder: one transaction per
// segment until group commit lands.)
func (c *Catalog) CommitSegments(ctx context.Context, segs []catalog.Segment) ([]catalog.CommitResult, error) {
	if err := commitplan.ValidateSegments(segs); err != nil {
		return nil, fmt.Errorf("catalog: commit %d segments: %w", len(segs), err)
	}
	out := make([]catalog.CommitResult, len(segs))
	for i, seg := range segs {
		res, err := c.CommitSegment(ctx, seg)
		if err != nil {
			return nil, err
		}
		out[i] = res
	}
	return out, nil
}
