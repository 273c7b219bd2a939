package minio

import (
	"strings"
	"testing"

	"github.com/floebroker/floe/objstore/objstoretest"
)

// TestListStallBounded: a listing page that stops midway, after its
// headers (where ResponseHeaderTimeout no longer applies), fails after the
// bound of the bucket compaction builds; it hung the orphan sweep, and the
// agent's whole compaction loop, until TCP gave up.
func TestListStallBounded(t *testing.T) {
	srv := objstoretest.ListStallingServer(t)
	b, err := New(t.Context(), Config{
		Endpoint: strings.TrimPrefix(srv.URL, "http://"), Bucket: "fake", Region: "us-east-1",
		AccessKey: "k", SecretKey: "s", SkipBucketCheck: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	objstoretest.CheckListStallBounded(t, b)
}
