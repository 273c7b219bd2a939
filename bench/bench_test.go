package bench

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	in := []float64{3, 1, 2}
	median(in)
	if in[0] != 3 || in[1] != 1 {
		t.Errorf("median reordered its input: %v", in)
	}
}

func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(101-i)*time.Millisecond)
	}
	if got := quantile(ds, 0.5); got != 50*time.Millisecond {
		t.Errorf("p50 = %v", got)
	}
	if got := quantile(ds, 0.99); got != 99*time.Millisecond {
		t.Errorf("p99 = %v", got)
	}
	if got := quantile(nil, 0.99); got != 0 {
		t.Errorf("p99 of nothing = %v", got)
	}
}

func TestPairRatios(t *testing.T) {
	got := pairRatios([]float64{100, 0, 200, 50}, []float64{80, 10, 100})
	want := []float64{80, 50} // the zero side is dropped, the unpaired one too
	if len(got) != len(want) {
		t.Fatalf("pairRatios = %v, want %v", got, want)
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			t.Errorf("pairRatios[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestFormatValue(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		prec int
		want string
	}{
		{0, 0, "0"},
		{999, 0, "999"},
		{1000, 0, "1,000"},
		{1234567.6, 0, "1,234,568"},
		{-12345, 0, "-12,345"},
		{1.005, 2, "1.00"},
		{52.19, 1, "52.2"},
	} {
		if got := formatValue(tc.v, tc.prec); got != tc.want {
			t.Errorf("formatValue(%v, %d) = %q, want %q", tc.v, tc.prec, got, tc.want)
		}
	}
	if got := formatValues([]float64{79.4, 43, 88}, 0); got != "79; 43; 88" {
		t.Errorf("formatValues = %q", got)
	}
}

func TestFleetMarkdown(t *testing.T) {
	o := DefaultOptions()
	o.Runs = 2
	if got := FleetMarkdown(nil, o); got != "" {
		t.Errorf("no rows: %q, want nothing", got)
	}
	md := FleetMarkdown([]FleetRow{
		{Part: partGets, Figure: "GETs per GiB", Target: "0", Values: []float64{0, 0}},
		{Part: partPartitions, Figure: "2,000 vs 16", Target: "≥ 80%", Unit: "%", Values: []float64{90, 70, 85}},
		{Part: partLatency, Skipped: "PostgreSQL/MinIO not configured"},
		{Part: partLatency, Figure: "p99", Target: "–", Unit: " ms", Prec: 1},
		{Part: partLatency, Failed: "run 2 failed: a | b\nc"},
	}, o)
	for _, want := range []string{
		"| part | figure | target | measured | values |",
		"| fleet-gets | GETs per GiB | 0 | 0 | 0; 0 |",
		"| fleet-partitions | 2,000 vs 16 | ≥ 80% | 85% | 90; 70; 85 |",
		"| fleet-latency | skipped: PostgreSQL/MinIO not configured |",
		"| fleet-latency | p99 | – | – |  |",
		"| fleet-latency | run 2 failed: a / b c |",
		"- **fleet-partitions**: ",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("fleet table lacks %q:\n%s", want, md)
		}
	}
}

func TestUnknownSetups(t *testing.T) {
	o := DefaultOptions()
	o.Setups = []string{"kfake", "fleet-gets", "fleet-latency", "fleet-partitions", "floe-pg-minio", "nope"}
	if got := unknownSetups(o); len(got) != 1 || got[0] != "nope" {
		t.Errorf("unknownSetups = %v, want [nope]", got)
	}
}

func TestMetricsSum(t *testing.T) {
	const text = `# TYPE floe_objstore_operations_total counter
floe_objstore_operations_total{op="get"} 3
floe_objstore_operations_total{op="get_range"} 4
floe_objstore_operations_total{op="put"} 10
# TYPE floe_agent_live_agents gauge
floe_agent_live_agents 3
# TYPE floe_flush_commit_duration_seconds histogram
floe_flush_commit_duration_seconds_bucket{le="+Inf"} 7
floe_flush_commit_duration_seconds_sum 0.5
floe_flush_commit_duration_seconds_count 7
`
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics(fams)
	for _, tc := range []struct {
		name string
		kv   []string
		want float64
	}{
		{"floe_objstore_operations_total", nil, 17},
		{"floe_objstore_operations_total", []string{"op", "put"}, 10},
		{"floe_agent_live_agents", nil, 3},
		{"floe_flush_commit_duration_seconds", nil, 7},
		{"floe_missing_total", nil, 0},
	} {
		if got := m.sum(tc.name, tc.kv...); got != tc.want {
			t.Errorf("sum(%s, %v) = %v, want %v", tc.name, tc.kv, got, tc.want)
		}
	}
	if got := m.bucketGets(); got != 7 {
		t.Errorf("bucketGets = %v, want 7", got)
	}
}
