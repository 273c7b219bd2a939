package objstore_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floebroker/floe/internal/testenv"
	"github.com/floebroker/floe/objstore"
)

func requests(t *testing.T, reg *prometheus.Registry, op string) float64 {
	t.Helper()
	return testenv.Metric(t, reg, "floe_objstore_requests_total", map[string]string{"op": op})
}

func TestRequestCounterTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	rc := objstore.NewRequestCounter(reg)
	if again := objstore.NewRequestCounter(reg); again == nil {
		t.Fatal("second registration failed")
	}
	client := &http.Client{Transport: rc.Transport(http.DefaultTransport)}
	do := func(ctx context.Context) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL, strings.NewReader("x"))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	put := objstore.WithRequestOp(t.Context(), "put")
	do(put)
	do(put)
	do(t.Context())
	if n := requests(t, reg, "put"); n != 2 {
		t.Errorf("put requests = %v, want 2", n)
	}
	if n := requests(t, reg, "other"); n != 1 {
		t.Errorf("other requests = %v, want 1", n)
	}
	var nilRC *objstore.RequestCounter
	if rt := nilRC.Transport(http.DefaultTransport); rt != http.DefaultTransport {
		t.Error("a nil counter wrapped the transport")
	}
	nilRC.Add("put", 1) // counts nothing, does not panic
}

// TestRequestCountBelowRetry checks that WithRequestCount, innermost,
// counts every attempt a retried call makes, while the metrics wrapper
// counts the caller's one call.
func TestRequestCountBelowRetry(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFlaky()
	f.fail["put"] = []error{errSlowDown, errSlowDown}
	b := objstore.WithRequestCount(f, objstore.NewRequestCounter(reg))
	b = objstore.WithRetry(b, objstore.RetryConfig{InitialBackoff: 1, MaxBackoff: 1})
	b = objstore.WithMetrics(b, reg)
	ctx := t.Context()
	if err := b.Put(ctx, "k", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	rc, err := b.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, rc)
	rc.Close()
	for range b.List(ctx, "") {
	}
	if n := requests(t, reg, "put"); n != 3 {
		t.Errorf("put requests = %v, want 3 (two failed attempts and the one that succeeded)", n)
	}
	if n := testenv.Metric(t, reg, "floe_objstore_operations_total", map[string]string{"op": "put"}); n != 1 {
		t.Errorf("put calls = %v, want 1", n)
	}
	for _, op := range []string{"get", "list"} {
		if n := requests(t, reg, op); n != 1 {
			t.Errorf("%s requests = %v, want 1", op, n)
		}
	}
}
