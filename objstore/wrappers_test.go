package objstore_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/mem"
	"github.com/floebroker/floe/objstore/objstoretest"
)

func TestAcceptanceWrapped(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Bucket {
		var b objstore.Bucket = mem.New(nil)
		lat, err := objstore.ParseLatency("put=p50:1us;get=p50:1us")
		if err != nil {
			t.Fatal(err)
		}
		b = objstore.WithLatency(b, lat)
		b = objstore.WithPrefix(b, "/tenant/a/")
		b = objstore.WithRetry(b, objstore.RetryConfig{})
		b = objstore.WithBounds(b, objstore.DefaultBounds)
		return objstore.WithMetrics(b, prometheus.NewRegistry())
	})
}

func TestPrefix(t *testing.T) {
	ctx := t.Context()
	inner := mem.New(nil)
	if b := objstore.WithPrefix(inner, "//"); b != objstore.Bucket(inner) {
		t.Error("empty prefix should return the bucket itself")
	}
	b := objstore.WithPrefix(inner, "/env/prod/")
	if err := b.Put(ctx, "k/1", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if err := inner.Put(ctx, "env/prodx", strings.NewReader("y"), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := inner.Stat(ctx, "env/prod/k/1"); err != nil {
		t.Errorf("inner key: %v", err)
	}
	info, err := b.Stat(ctx, "k/1")
	if err != nil || info.Key != "k/1" {
		t.Errorf("Stat = %+v, %v", info, err)
	}
	var keys []string
	for info, err := range b.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	if !slices.Equal(keys, []string{"k/1"}) {
		t.Errorf("List = %q (a sibling prefix leaked?)", keys)
	}
}

func TestMetrics(t *testing.T) {
	ctx := t.Context()
	reg := prometheus.NewRegistry()
	b := objstore.WithMetrics(mem.New(nil), reg)
	// A second bucket on the same registry shares the collectors.
	b2 := objstore.WithMetrics(mem.New(nil), reg)

	if err := b.Put(ctx, "k", strings.NewReader("hello"), 5); err != nil {
		t.Fatal(err)
	}
	if err := b2.Put(ctx, "k", strings.NewReader("hi"), 2); err != nil {
		t.Fatal(err)
	}
	rc, err := b.GetRange(ctx, "k", 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(rc)
	rc.Close()
	if _, err := b.Get(ctx, "missing"); !errors.Is(err, objstore.ErrNotExist) {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	b.Delete(canceled, "k")
	for range b.List(ctx, "") {
	}

	want := map[string]float64{
		`floe_objstore_operations_total{op="put"}`:                          2,
		`floe_objstore_operations_total{op="get"}`:                          1,
		`floe_objstore_operations_total{op="get_range"}`:                    1,
		`floe_objstore_operations_total{op="delete"}`:                       1,
		`floe_objstore_operations_total{op="list"}`:                         1,
		`floe_objstore_bytes_total{op="put"}`:                               7,
		`floe_objstore_bytes_total{op="get_range"}`:                         3,
		`floe_objstore_operation_errors_total{kind="not_found",op="get"}`:   1,
		`floe_objstore_operation_errors_total{kind="canceled",op="delete"}`: 1,
	}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			name := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			if c := m.GetCounter(); c != nil {
				got[name] = c.GetValue()
			}
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if n := testutil.CollectAndCount(reg, "floe_objstore_operation_duration_seconds"); n != 5 {
		t.Errorf("duration series = %d, want 5 (one per op used)", n)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(""), "floe_objstore_nonexistent"); err != nil {
		t.Error(err)
	}
}

func TestParseLatency(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		spec    string
		want    objstore.LatencyConfig
		wantErr string
	}{
		{"", objstore.LatencyConfig{}, ""},
		{"none", objstore.LatencyConfig{}, ""},
		{"put=p50:100ms,p99:400ms;get=p50:20ms,p99:80ms", objstore.LatencyConfig{
			Put: objstore.Dist{P50: 100 * ms, P99: 400 * ms}, Get: objstore.Dist{P50: 20 * ms, P99: 80 * ms},
			Stat: objstore.Dist{P50: 20 * ms, P99: 80 * ms}, List: objstore.Dist{P50: 20 * ms, P99: 80 * ms}, Delete: objstore.Dist{P50: 20 * ms, P99: 80 * ms},
		}, ""},
		{"put=p50:5ms; delete=p50:1ms", objstore.LatencyConfig{Put: objstore.Dist{P50: 5 * ms}, Delete: objstore.Dist{P50: ms}}, ""},
		{"put", objstore.LatencyConfig{}, "want op="},
		{"head=p50:1ms", objstore.LatencyConfig{}, "unknown op"},
		{"put=p90:1ms", objstore.LatencyConfig{}, "unknown percentile"},
		{"put=p50:1ms,p99:fast", objstore.LatencyConfig{}, "bad duration"},
		{"put=p99:1ms", objstore.LatencyConfig{}, "p99 without p50"},
		{"put=p50:10ms,p99:1ms", objstore.LatencyConfig{}, "below p50"},
		{"put=p50:1ms;put=p50:2ms", objstore.LatencyConfig{}, "twice"},
		{"put=p50:-1ms", objstore.LatencyConfig{}, "bad duration"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := objstore.ParseLatency(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseLatency = %v, want error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Put != tt.want.Put || got.Get != tt.want.Get || got.Stat != tt.want.Stat || got.List != tt.want.List || got.Delete != tt.want.Delete {
				t.Errorf("ParseLatency =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
	for _, preset := range []string{"s3-standard", "s3-express"} {
		c, err := objstore.ParseLatency(preset)
		if err != nil || c.Put.P50 == 0 || c.Get.P50 == 0 || c.Get.P99 <= c.Get.P50 {
			t.Errorf("preset %s = %+v, %v", preset, c, err)
		}
	}
}

func FuzzParseLatency(f *testing.F) {
	for _, s := range []string{"s3-standard", "put=p50:100ms,p99:400ms;get=p50:20ms,p99:80ms", "put=p50:1ms;", ";;", "get=p99:1h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		c, err := objstore.ParseLatency(spec)
		if err != nil {
			return
		}
		for _, d := range []objstore.Dist{c.Put, c.Get, c.Stat, c.List, c.Delete} {
			if d.P50 < 0 || (d.P99 != 0 && d.P99 < d.P50) {
				t.Fatalf("%q parsed to invalid %+v", spec, d)
			}
			if s := d.Sample(3); s < 0 {
				t.Fatalf("%q: negative sample %v", spec, s)
			}
		}
	})
}

func TestDistFitsPercentiles(t *testing.T) {
	d := objstore.Dist{P50: 100 * time.Millisecond, P99: 400 * time.Millisecond}
	r := rand.New(rand.NewPCG(1, 2))
	const n = 20000
	samples := make([]time.Duration, n)
	for i := range samples {
		samples[i] = d.Sample(r.NormFloat64())
	}
	slices.Sort(samples)
	p50, p99 := samples[n/2], samples[n*99/100]
	if p50 < 95*time.Millisecond || p50 > 105*time.Millisecond {
		t.Errorf("p50 = %s, want ~100ms", p50)
	}
	if p99 < 360*time.Millisecond || p99 > 440*time.Millisecond {
		t.Errorf("p99 = %s, want ~400ms", p99)
	}
	if c := (objstore.Dist{P50: 7 * time.Millisecond}); c.Sample(2) != 7*time.Millisecond {
		t.Errorf("constant dist sampled %s", c.Sample(2))
	}
	if (objstore.Dist{}).Sample(1) != 0 {
		t.Error("zero dist adds delay")
	}
}

func TestLatencyInjection(t *testing.T) {
	ctx := t.Context()
	var mu sync.Mutex
	slept := map[time.Duration]int{}
	cfg := objstore.LatencyConfig{
		Put:    objstore.Dist{P50: 100 * time.Millisecond},
		Get:    objstore.Dist{P50: 30 * time.Millisecond},
		Stat:   objstore.Dist{P50: 20 * time.Millisecond},
		List:   objstore.Dist{P50: 50 * time.Millisecond},
		Delete: objstore.Dist{P50: 40 * time.Millisecond},
		Rand:   rand.New(rand.NewPCG(1, 1)),
		Sleep: func(ctx context.Context, d time.Duration) error {
			mu.Lock()
			slept[d]++
			mu.Unlock()
			return ctx.Err()
		},
		// The backend takes no time: every sample is slept in full.
		Now: func() time.Time { return time.Unix(0, 0) },
	}
	b := objstore.WithLatency(mem.New(nil), cfg)
	if err := b.Put(ctx, "k", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	rc, err := b.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	rc, err = b.GetRange(ctx, "k", 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	b.Stat(ctx, "k")
	for range b.List(ctx, "") {
	}
	b.Delete(ctx, "k")
	want := map[time.Duration]int{100 * time.Millisecond: 1, 30 * time.Millisecond: 2, 20 * time.Millisecond: 1, 50 * time.Millisecond: 1, 40 * time.Millisecond: 1}
	for d, n := range want {
		if slept[d] != n {
			t.Errorf("slept %s %d times, want %d (all: %v)", d, slept[d], n, slept)
		}
	}

	// The backend's own time counts towards the sample: a Put whose
	// backend took 30 ms waits 70 ms more, one that took longer than the
	// sample does not wait.
	for _, tc := range []struct{ backend, want time.Duration }{
		{30 * time.Millisecond, 70 * time.Millisecond},
		{150 * time.Millisecond, 0},
	} {
		clock := time.Unix(0, 0)
		var waited time.Duration
		slow := objstore.WithLatency(mem.New(nil), objstore.LatencyConfig{
			Put:   objstore.Dist{P50: 100 * time.Millisecond},
			Now:   func() time.Time { return clock },
			Sleep: func(ctx context.Context, d time.Duration) error { waited += d; return nil },
		})
		if err := slow.Put(ctx, "k", &clockReader{r: strings.NewReader("v"), tick: func() { clock = clock.Add(tc.backend) }}, 1); err != nil {
			t.Fatal(err)
		}
		if waited != tc.want {
			t.Errorf("backend %v: waited %v, want %v", tc.backend, waited, tc.want)
		}
	}

	// A real sleep honours cancellation.
	real := objstore.WithLatency(mem.New(nil), objstore.LatencyConfig{Get: objstore.Dist{P50: time.Hour}})
	if err := real.Put(ctx, "k", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := real.Get(cctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get during hour-long latency = %v", err)
	}
}

// clockReader calls tick when read from: the time a backend takes to
// consume an upload.
type clockReader struct {
	r    io.Reader
	tick func()
}

func (c *clockReader) Read(p []byte) (int, error) {
	if c.tick != nil {
		c.tick()
		c.tick = nil
	}
	return c.r.Read(p)
}
