package gcs

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floebroker/floe/internal/testenv"
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

// TestRequestCount checks the per-call request counts: one request up to
// ChunkSize, an initiation and a request per piece above it, a request per
// list page.
func TestRequestCount(t *testing.T) {
	reg, wire := prometheus.NewRegistry(), prometheus.NewRegistry()
	// The emulator needs no credentials, so the client's transport can be
	// wrapped here to count what really goes out (as "other": no op is
	// marked on the context).
	hc := &http.Client{Transport: objstore.NewRequestCounter(wire).Transport(http.DefaultTransport)}
	b := newTestBucket(t, func(c *Config) {
		c.Requests = objstore.NewRequestCounter(reg)
		c.HTTPClient = hc
	})
	defer b.Close()
	ctx := t.Context()
	sent := func() float64 {
		return testenv.Metric(t, wire, "floe_objstore_requests_total", map[string]string{"op": "other"})
	}
	for i, size := range []int{1 << 20, 9 << 20} { // 1, then 1 + 3 pieces of 4 MiB
		before := sent()
		if err := b.Put(ctx, fmt.Sprint("k/", i), bytes.NewReader(make([]byte, size)), int64(size)); err != nil {
			t.Fatal(err)
		}
		if want := float64(1 + 3*i); sent()-before != want {
			t.Errorf("put of %d bytes sent %v requests, want %v", size, sent()-before, want)
		}
	}
	for i := range 12 {
		if err := b.Put(ctx, fmt.Sprint("l/", i), strings.NewReader("v"), 1); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, err := range b.List(ctx, "l/") { // pages of 7: two
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 12 {
		t.Fatalf("listed %d objects, want 12", n)
	}
	for op, want := range map[string]float64{"put": 5 + 12, "list": 2} {
		if got := testenv.Metric(t, reg, "floe_objstore_requests_total", map[string]string{"op": op}); got != want {
			t.Errorf("%s requests = %v, want %v", op, got, want)
		}
	}
}
