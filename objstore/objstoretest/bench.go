package objstoretest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/floebroker/floe/objstore"
)

// BenchmarkPutGet measures a Put of a whole object followed by a Get that
// reads it back, for 1 MiB and 8 MiB objects (sub-benchmarks "1MiB" and
// "8MiB"). MB/s counts each object once per Put+Get round trip. Objects
// are deleted as the benchmark goes, so the bucket stays small.
func BenchmarkPutGet(b *testing.B, bucket objstore.Bucket) {
	for _, size := range []int{1 << 20, 8 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			data := randBytes(size, 42)
			ctx := context.Background()
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				key := fmt.Sprintf("bench/%d", i)
				if err := bucket.Put(ctx, key, bytes.NewReader(data), int64(size)); err != nil {
					b.Fatal(err)
				}
				rc, err := bucket.Get(ctx, key)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, rc)
				rc.Close()
				if err != nil || n != int64(size) {
					b.Fatalf("Get read %d bytes: %v", n, err)
				}
				if err := bucket.Delete(ctx, key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
