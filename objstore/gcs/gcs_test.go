package gcs

import (
	"context"
	"strings"
	"testing"

	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/objstoretest"
)

// testConfig returns a Config for a fresh bucket on the test
// fake-gcs-server, which it creates now and removes when t ends.
func testConfig(t testing.TB) Config {
	cfg := Config{
		Bucket:       objstoretest.BucketName(t),
		Endpoint:     objstoretest.Env(t, "FLOE_TEST_GCS_ENDPOINT"),
		ChunkSize:    4 << 20,
		ListPageSize: 7,
	}
	admin := cfg
	admin.SkipBucketCheck = true
	ctx := context.Background()
	ab, err := New(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if err := ab.Client().Bucket(cfg.Bucket).Create(ctx, "floe-test", nil); err != nil {
		t.Fatalf("create bucket %s: %v", cfg.Bucket, err)
	}
	t.Cleanup(func() {
		defer ab.Close()
		for info, err := range ab.List(ctx, "") {
			if err != nil {
				t.Errorf("cleanup list: %v", err)
				break
			}
			_ = ab.Delete(ctx, info.Key)
		}
		if err := ab.Client().Bucket(cfg.Bucket).Delete(ctx); err != nil {
			t.Errorf("delete bucket %s: %v", cfg.Bucket, err)
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
		{"no bucket name", func(c *Config) { c.Bucket = "" }, "no bucket name"},
		{"endpoint without scheme", func(c *Config) { c.Endpoint = "127.0.0.1:1" }, "want http"},
		{"nothing listening", func(c *Config) { c.Endpoint = "http://127.0.0.1:1" }, "connection refused"},
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
	bk := newTestBucket(b, func(c *Config) { c.ChunkSize = 0 })
	defer bk.Close()
	objstoretest.BenchmarkPutGet(b, bk)
}
