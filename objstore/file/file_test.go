package file_test

import (
	"testing"

	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/file"
	"github.com/floebroker/floe/objstore/objstoretest"
)

func newBucket(t *testing.T) *file.Bucket {
	b, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAcceptance(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Bucket { return newBucket(t) })
}
