package gcs

import (
	"net/http"
	"strings"
	"testing"

	"github.com/floebroker/floe/objstore/objstoretest"
)

// TestGetRangeIgnoredByServer: a server or proxy may ignore Range and
// answer 200 with the whole object. The SDK refuses that answer for a
// range that does not start at 0; one from 0 must be cut to the range,
// never handed on whole.
func TestGetRangeIgnoredByServer(t *testing.T) {
	srv := objstoretest.RangeIgnoringServer(t, func(r *http.Request) bool { return strings.Contains(r.URL.Path, "seg") })
	b, err := New(t.Context(), Config{Bucket: "fake", Endpoint: srv.URL, SkipBucketCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	objstoretest.CheckRangeIgnored(t, b, "seg")
}
