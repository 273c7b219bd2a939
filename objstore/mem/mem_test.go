package mem_test

import (
	"testing"

	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/mem"
	"github.com/floebroker/floe/objstore/objstoretest"
)

func TestAcceptance(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Bucket { return mem.New(nil) })
}

func BenchmarkPutGet(b *testing.B) {
	objstoretest.BenchmarkPutGet(b, mem.New(nil))
}
