package minio

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"go.uber.org/goleak"

	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/objstoretest"
)

// testConfig returns a Config for a fresh bucket on the test MinIO, which
// it creates now and removes when t ends, failing t if a multipart upload
// was left behind.
func testConfig(t testing.TB) Config {
	cfg := Config{
		Endpoint:           objstoretest.Env(t, "FLOE_TEST_MINIO_ENDPOINT"),
		Bucket:             objstoretest.BucketName(t),
		AccessKey:          objstoretest.Env(t, "FLOE_TEST_MINIO_ACCESS_KEY"),
		SecretKey:          objstoretest.Env(t, "FLOE_TEST_MINIO_SECRET_KEY"),
		MultipartThreshold: 6 << 20,
		PartSize:           5 << 20,
		ListPageSize:       7,
	}
	admin := cfg
	admin.SkipBucketCheck = true
	ctx := context.Background()
	ab, err := New(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	c := ab.Client()
	if err := c.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", cfg.Bucket, err)
	}
	t.Cleanup(func() {
		defer ab.Close()
		n := 0
		for u := range c.ListIncompleteUploads(ctx, cfg.Bucket, "", true) {
			if u.Err == nil {
				n++
				_ = c.RemoveIncompleteUpload(ctx, cfg.Bucket, u.Key)
			}
		}
		if n > 0 {
			t.Errorf("%d multipart uploads left behind", n)
		}
		for info, err := range ab.List(ctx, "") {
			if err != nil {
				t.Errorf("cleanup list: %v", err)
				break
			}
			_ = ab.Delete(ctx, info.Key)
		}
		if err := c.RemoveBucket(ctx, cfg.Bucket); err != nil {
			t.Errorf("remove bucket %s: %v", cfg.Bucket, err)
		}
	})
	return cfg
}

func newTestBucket(t testing.TB, mutate func(*Config)) *Bucket {
	cfg := testConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	b, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAcceptance(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Bucket { return newTestBucket(t, nil) })
}

func TestNewChecks(t *testing.T) {
	good := testConfig(t)
	for _, tt := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"missing bucket", func(c *Config) { c.Bucket = "floe-no-such-bucket" }, "no such bucket"},
		{"wrong secret", func(c *Config) { c.SecretKey = "wrong-secret" }, "check bucket"},
		{"no credentials", func(c *Config) { c.AccessKey, c.SecretKey = "", "" }, "no credentials"},
		{"no endpoint", func(c *Config) { c.Endpoint = "" }, "no endpoint"},
		{"nothing listening", func(c *Config) { c.Endpoint = "127.0.0.1:1" }, "connection refused"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.mutate(&cfg)
			b, err := New(t.Context(), cfg)
			if err == nil {
				b.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func BenchmarkPutGet(b *testing.B) {
	bk := newTestBucket(b, func(c *Config) { c.MultipartThreshold, c.PartSize = 0, 0 })
	defer bk.Close()
	objstoretest.BenchmarkPutGet(b, bk)
}

func TestListEarlyStopLeaksNothing(t *testing.T) {
	b := newTestBucket(t, nil)
	ctx := t.Context()
	for i := range 20 {
		if err := b.Put(ctx, fmt.Sprintf("k/%02d", i), strings.NewReader("v"), 1); err != nil {
			t.Fatal(err)
		}
	}
	ignore := goleak.IgnoreCurrent()
	for range 3 {
		for _, err := range b.List(ctx, "k/") {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	b.Close()
	goleak.VerifyNone(t, ignore)
}
