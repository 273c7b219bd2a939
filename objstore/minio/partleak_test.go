package minio

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestFailedPartLeavesNoWorkers: when one part of a multipart upload
// fails, minio-go's PutObject returns while its other part workers are
// still uploading; they report only to a PutObject that is waiting, so
// unless Put cancels their context on return they block for good, each
// holding the whole body.
func TestFailedPartLeavesNoWorkers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case r.Method == http.MethodPost && q.Has("uploads"):
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>`)
		case r.Method == http.MethodPut && q.Has("partNumber"):
			_, _ = io.ReadAll(r.Body)
			if q.Get("partNumber") == "1" {
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>BadDigest</Code><Message>x</Message></Error>`)
				return
			}
			time.Sleep(300 * time.Millisecond) // the others finish after part 1 failed
			w.Header().Set("ETag", `"e"`)
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotImplemented)
		}
	}))
	defer srv.Close()
	b, err := New(t.Context(), Config{Endpoint: strings.TrimPrefix(srv.URL, "http://"), Bucket: "bkt", Region: "us-east-1",
		AccessKey: "k", SecretKey: "s", MultipartThreshold: 5 << 20, PartSize: 5 << 20, SkipBucketCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// A caller's context that outlives the Put, as the WAL's does.
	if err := b.Put(context.Background(), "k", bytes.NewReader(make([]byte, 20<<20)), 20<<20); err == nil {
		t.Fatal("a put whose part failed succeeded")
	}
	const worker = "created by github.com/minio/minio-go/v7.(*Client).putObjectMultipartStreamFromReadAt"
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		stuck := strings.Count(string(buf[:n]), worker)
		if stuck == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d part workers still running 5 s after Put returned", stuck)
		}
	}
}
