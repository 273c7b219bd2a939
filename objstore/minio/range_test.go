package minio

import (
	"net/http"
	"strings"
	"testing"

	"github.com/floebroker/floe/objstore/objstoretest"
)

// TestGetRangeIgnoredByServer: a server or proxy may ignore Range and
// answer 200 with the whole object (HTTP allows it). Readers take the
// body's first length bytes as the range, so that answer must be cut to
// the range or refused, never passed on as the bytes at off.
func TestGetRangeIgnoredByServer(t *testing.T) {
	srv := objstoretest.RangeIgnoringServer(t, func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/fake/seg") })
	b, err := New(t.Context(), Config{
		Endpoint: strings.TrimPrefix(srv.URL, "http://"), Bucket: "fake", Region: "us-east-1",
		AccessKey: "k", SecretKey: "s", SkipBucketCheck: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	objstoretest.CheckRangeIgnored(t, b, "seg")
}
