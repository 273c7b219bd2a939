package minio

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
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
	for _, tc := range []struct {
		off, length int64
		want        string // "" means an error is expected
	}{
		{0, 4, "0123"},
		{0, -1, "0123456789"},
		{3, 4, ""},
		{3, -1, ""},
	} {
		rc, err := b.GetRange(t.Context(), "seg", tc.off, tc.length)
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
