package objstoretest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/floebroker/floe/objstore"
)

// ListStallingServer is an S3-compatible HTTP server whose every
// ListObjectsV2 answer sends 200, its headers and the start of a page,
// then stops until the request or the test ends, as a store whose
// connection stops moving mid-page does; HEAD answers 200 (a bucket
// check) and anything else 501. It is closed when t ends.
func ListStallingServer(t *testing.T) *httptest.Server {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodHead:
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2":
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>fake</Name><Prefix>v1/</Prefix><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated><Contents><Key>v1/a`)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		default:
			w.WriteHeader(http.StatusNotImplemented)
		}
	}))
	// Closed in this order: stop the handlers, then the server.
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) })
	return srv
}

// CheckListStallBounded lists "v1/" on raw, a bucket on a
// ListStallingServer, wrapped as compaction wraps its bucket, and checks
// that the listing fails with ErrStalled soon after the bound rather than
// waiting on the page.
func CheckListStallBounded(t *testing.T, raw objstore.Bucket) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	const call = 300 * time.Millisecond
	b := objstore.WithBounds(objstore.WithRetry(raw, objstore.RetryConfig{}), objstore.Bounds{Call: call})
	start := time.Now()
	var lerr error
	for o, err := range b.List(ctx, "v1/") {
		if err != nil {
			lerr = err
			break
		}
		t.Errorf("listed %q from a page that never ended", o.Key)
	}
	took := time.Since(start)
	if !errors.Is(lerr, objstore.ErrStalled) {
		t.Errorf("list of a stalled page: err = %v after %v, want ErrStalled", lerr, took)
	}
	if took > 3*time.Second {
		t.Errorf("list of a stalled page took %v with a %v bound", took, call)
	}
}
