package minio

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/floebroker/floe/objstore/objstoretest"
)

// TestGetRangeIgnoredByServer: a server or proxy may ignore Range and
// answer 200 with the whole object (HTTP allows it). Readers take the
// body's first length bytes as the range, so that answer must be cut to
// the range or refused, never passed on as the bytes at off.
func TestGetRangeIgnoredByServer(t *testing.T) {
	data := "0123456789"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/fake/seg") {
			w.WriteHeader(http.StatusNotImplemented)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("ETag", `"etag"`)
		io.WriteString(w, data)
	}))
	defer srv.Close()
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
