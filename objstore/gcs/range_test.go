package gcs

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/floebroker/floe/objstore/objstoretest"
)

// TestGetRangeIgnoredByServer: a server or proxy may ignore Range and
// answer 200 with the whole object. The SDK refuses that answer for a
// range that does not start at 0; one from 0 must be cut to the range,
// never handed on whole.
func TestGetRangeIgnoredByServer(t *testing.T) {
	data := "0123456789"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "seg") {
			w.WriteHeader(http.StatusNotImplemented)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		io.WriteString(w, data)
	}))
	defer srv.Close()
	b, err := New(t.Context(), Config{Bucket: "fake", Endpoint: srv.URL, SkipBucketCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	objstoretest.CheckRangeIgnored(t, b, "seg")
}
