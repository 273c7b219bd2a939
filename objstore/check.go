package objstore

import (
	"context"
	"errors"
)

// BucketChecker is a backend that can check the bucket itself, in one
// request.
type BucketChecker interface {
	// CheckBucket fails unless the bucket exists and answers.
	CheckBucket(ctx context.Context) error
}

// CheckBucket checks that b's bucket exists and answers, as a readiness
// probe does: with the backend's CheckBucket, found under b's wrappers
// (so one request, not retried), or else a Stat of a key that never
// exists, whose not-found proves the bucket answers. A Stat cannot stand
// for the check on S3 and GCS: a missing bucket answers a HEAD of an
// object, or any read on GCS, as a missing object.
func CheckBucket(ctx context.Context, b BucketReader) error {
	for r := b; ; {
		if c, ok := r.(BucketChecker); ok {
			return c.CheckBucket(ctx)
		}
		u, ok := r.(interface{ Unwrap() Bucket })
		if !ok {
			break
		}
		r = u.Unwrap()
	}
	if _, err := b.Stat(ctx, "floe-readiness-probe"); err != nil && !errors.Is(err, ErrNotExist) {
		return err
	}
	return nil
}
