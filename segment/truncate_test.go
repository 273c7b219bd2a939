package segment

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// TestTruncatedOrConcatenatedObject: an object cut anywhere, or two objects
// back to back (with or without trailing garbage), must fail with
// ErrCorrupt, never decode as something else, and never panic; so must
// ReadIndex when the catalog's size is longer than what the bucket holds.
func TestTruncatedOrConcatenatedObject(t *testing.T) {
	_, obj, _ := sample()
	empty, _ := NewWriter(Header{Created: time.Unix(0, 0)}).Finish()
	for n := range len(obj) {
		cut := bytes.Clone(obj[:n])
		if _, err := DecodeIndex(cut, int64(n)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cut to %d bytes: %v", n, err)
		}
		b := &countingBucket{objs: map[string][]byte{"k": cut}}
		if _, err := ReadIndex(context.Background(), b, "k", int64(len(obj))); err == nil {
			t.Fatalf("ReadIndex of an object cut to %d bytes succeeded", n)
		}
	}
	for _, o := range [][]byte{
		append(bytes.Clone(obj), obj...),
		append(bytes.Clone(obj), empty...),
		append(bytes.Clone(empty), obj...),
		append(bytes.Clone(obj), "trailing"...),
	} {
		if _, err := DecodeIndex(o, int64(len(o))); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("concatenation of %d bytes: %v", len(o), err)
		}
	}
}
