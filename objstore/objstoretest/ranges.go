package objstoretest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/floebroker/floe/objstore"
)

// RangeIgnoringServer is an HTTP server that answers every GET that
// isObject accepts with the whole object "0123456789" whatever its Range
// header, and any other request with 501, for CheckRangeIgnored. It is
// closed when t ends.
func RangeIgnoringServer(t *testing.T, isObject func(*http.Request) bool) *httptest.Server {
	const data = "0123456789"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !isObject(r) {
			w.WriteHeader(http.StatusNotImplemented)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("ETag", `"etag"`)
		_, _ = io.WriteString(w, data)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// CheckRangeIgnored checks a bucket whose server answers every GET of key
// with the whole object "0123456789", as HTTP lets a server or proxy that
// ignores Range do: ranges from offset 0 are cut to their length, and
// ranges at another offset are refused, never answered with the object's
// first bytes.
func CheckRangeIgnored(t *testing.T, b objstore.Bucket, key string) {
	t.Helper()
	for _, tc := range []struct {
		off, length int64
		want        string // "" means an error is expected
	}{
		{0, 4, "0123"},
		{0, -1, "0123456789"},
		{3, 4, ""},
		{3, -1, ""},
	} {
		rc, err := b.GetRange(t.Context(), key, tc.off, tc.length)
		var got []byte
		if err == nil {
			got, err = io.ReadAll(rc)
			rc.Close()
		}
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("GetRange(%d, %d) = %q from a server that ignored Range, want an error", tc.off, tc.length, got)
		case tc.want != "" && (err != nil || string(got) != tc.want):
			t.Errorf("GetRange(%d, %d) = %q, %v, want %q", tc.off, tc.length, got, err, tc.want)
		}
	}
}
