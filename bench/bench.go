// Package bench is Floe's benchmark harness (`make bench`, `floe bench`).
//
// In one run it starts franz-go's in-memory kfake cluster as the baseline and
// Floe in several setups, drives the same franz-go workload at each, and
// reports, per setup: produce throughput (1 KiB records of random bytes,
// uncompressed, 16 partitions, idempotent, acks=all), ack and end-to-end
// latency p50/p99 at a fixed rate (from each record's due time, so a harness
// that falls behind does not leave its delays out), catch-up consume
// throughput, billed PUT requests per GiB and per flush (compaction's
// excluded) and while idle, catalog commits per flush,
// and the agent's peak RSS. Every figure is the median of several runs, and
// throughputs are also given as a ratio to kfake measured in the same run,
// because the machines this runs on are shared and noisy.
//
// Floe runs as a subprocess (the floe binary), so the harness measures what an
// operator runs and reads the agent's own Prometheus metrics for object and
// catalog counts.
//
// The fleet parts (fleet.go; -setups fleet-gets, fleet-latency,
// fleet-partitions) follow the Go benchmarks of tests/fleet with `floe agent`
// subprocesses on a fresh PostgreSQL schema and MinIO bucket: bucket GETs per
// GiB served and per object to three consumers tailing at the writer, at
// another agent and catching up on a third (targets 0 at the writer, at most
// one GET per object per agent); end-to-end latency p50/p99 with the consumer
// on the producer's agent and on a different one; and one agent's produce
// throughput with 2,000 partitions against 16 (target at least 80%), measured
// in alternating pairs of fixed-time rounds, with kfake's ratio as the
// baseline. They are reported in a second table, each row with its target.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// Options configure a harness run.
type Options struct {
	FloeBin  string // path of the floe binary to run
	Runs     int    // repetitions per setup; medians are reported
	Records  int    // records produced in the throughput phase
	RecordSz int    // record value size in bytes
	Rate     int    // records/s in the latency phase
	LatencyD time.Duration
	Setups   []string // setups and fleet parts to run; empty = all available
	Out      io.Writer
	Logger   *slog.Logger
	// Services (from scripts/services.sh env); setups needing a missing
	// service are reported as skipped.
	PostgresURL string
	MinIOAddr   string
	MinIOKey    string
	MinIOSecret string
}

// DefaultOptions returns the workload the issue specifies.
func DefaultOptions() Options {
	return Options{
		Runs:        3,
		Records:     200_000,
		RecordSz:    1024,
		Rate:        2000,
		LatencyD:    20 * time.Second,
		Out:         os.Stdout,
		Logger:      slog.Default(),
		PostgresURL: os.Getenv("FLOE_TEST_POSTGRES_URL"),
		MinIOAddr:   os.Getenv("FLOE_TEST_MINIO_ENDPOINT"),
		MinIOKey:    os.Getenv("FLOE_TEST_MINIO_ACCESS_KEY"),
		MinIOSecret: os.Getenv("FLOE_TEST_MINIO_SECRET_KEY"),
	}
}

// Result is one setup's medians.
type Result struct {
	Setup   string
	Skipped string // why, if the setup could not run

	ProduceMiBs  float64
	ConsumeMiBs  float64
	AckP50       time.Duration
	AckP99       time.Duration
	E2EP50       time.Duration
	E2EP99       time.Duration
	PutsPerGiB   float64 // billed PUT requests per GiB produced, compaction's excluded (Floe only)
	IdlePuts     float64 // billed PUT requests during an idle window (Floe only)
	CommitsFlush float64 // catalog commits per flush (Floe only)
	PeakRSSMiB   float64 // agent peak RSS (Floe only)
	Note         string

	// Billed PUT requests (retries, hedges and multipart requests
	// included), compaction's excluded, per flush, in the throughput phase
	// and at the fixed rate (Floe only).
	PutsFlush, LatPutsFlush float64
}

// run is one repetition's raw figures.
type run struct {
	produceMiBs, consumeMiBs float64
	ack, e2e                 []time.Duration
	puts, flushes, commits   float64
	latPuts, latFlushes      float64 // during the fixed-rate phase
	idlePuts                 float64
	producedBytes            float64
	rssMiB                   float64
}

// Run executes the harness and returns one Result per setup.
func Run(ctx context.Context, o Options) ([]Result, error) {
	if o.Runs < 1 {
		o.Runs = 1
	}
	var (
		results []Result
		active  []setup
		slot    []int // active[k]'s index in results
	)
	for _, s := range allSetups(o) {
		if len(o.Setups) > 0 && !contains(o.Setups, s.name) {
			continue
		}
		if why := s.unavailable(); why != "" {
			results = append(results, Result{Setup: s.name, Skipped: why})
			continue
		}
		active = append(active, s)
		slot = append(slot, len(results))
		results = append(results, Result{Setup: s.name})
	}
	// Rounds run every setup once, so each setup's runs and kfake's are
	// spread over the same minutes: on a shared machine, load that comes
	// and goes then affects the ratios to kfake far less than when every
	// kfake run came first.
	runs := make([][]run, len(active))
	summarizeAll := func() {
		for k, s := range active {
			if len(runs[k]) == 0 {
				results[slot[k]].Skipped = "not run: an earlier run failed"
				continue
			}
			results[slot[k]] = summarize(s, runs[k])
		}
	}
	for i := 0; i < o.Runs; i++ {
		for k, s := range active {
			o.Logger.Info("bench: run", "setup", s.name, "run", i+1, "of", o.Runs)
			r, err := runOnce(ctx, o, s)
			if err != nil {
				summarizeAll()
				return results, fmt.Errorf("bench: %s run %d: %w", s.name, i+1, err)
			}
			runs[k] = append(runs[k], r)
		}
	}
	summarizeAll()
	return results, nil
}

func runOnce(ctx context.Context, o Options, s setup) (run, error) {
	t, err := s.start(ctx)
	if err != nil {
		return run{}, err
	}
	defer t.stop()
	return drive(ctx, o, t, s)
}

func summarize(s setup, runs []run) Result {
	r := Result{Setup: s.name, Note: s.note}
	var prod, cons, puts, idle, cpf, rss, ppf, lppf []float64
	// Latency quantiles are taken over every run's records together, as
	// merged histograms are: a run's p99 is made by its few slowest PUT
	// cycles (a 20 s run holds 80 to 160 PUTs), so the median of three
	// runs' p99s swings by tens of milliseconds with which runs drew a slow
	// PUT, while the pooled p99 counts every slow cycle of every run once.
	var ack, e2e []time.Duration
	for _, x := range runs {
		prod = append(prod, x.produceMiBs)
		cons = append(cons, x.consumeMiBs)
		ack = append(ack, x.ack...)
		e2e = append(e2e, x.e2e...)
		if x.producedBytes > 0 {
			puts = append(puts, x.puts/(x.producedBytes/(1<<30)))
		}
		idle = append(idle, x.idlePuts)
		if x.flushes > 0 {
			cpf = append(cpf, x.commits/x.flushes)
			ppf = append(ppf, x.puts/x.flushes)
		}
		if x.latFlushes > 0 {
			lppf = append(lppf, x.latPuts/x.latFlushes)
		}
		rss = append(rss, x.rssMiB)
	}
	r.ProduceMiBs = median(prod)
	r.ConsumeMiBs = median(cons)
	r.AckP50 = Quantile(ack, 0.50)
	r.AckP99 = Quantile(ack, 0.99)
	r.E2EP50 = Quantile(e2e, 0.50)
	r.E2EP99 = Quantile(e2e, 0.99)
	r.PutsPerGiB = median(puts)
	r.IdlePuts = median(idle)
	r.CommitsFlush = median(cpf)
	r.PutsFlush = median(ppf)
	r.LatPutsFlush = median(lppf)
	r.PeakRSSMiB = median(rss)
	return r
}

// Markdown renders results as the table BENCHMARKS.md holds.
func Markdown(results []Result, o Options, started time.Time) string {
	var b strings.Builder
	var base *Result
	for i := range results {
		if results[i].Setup == "kfake" && results[i].Skipped == "" {
			base = &results[i]
		}
	}
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	if len(results) == 0 {
		fmt.Fprintf(&b, "Measured by `floe bench` on %s.\n", started.UTC().Format("2006-01-02 15:04 MST"))
		return b.String()
	}
	fmt.Fprintf(&b, "Measured by `make bench` on %s (%d runs per setup: medians of the runs, latency quantiles over the records of all runs together; %d records of %d random (incompressible) bytes, uncompressed, over %d partitions, idempotent, acks=all, timed after a warm-up record per partition, then read back from the start; latency at %d records/s for %s (longer where a setup's note says so), measured from each record's slot in the fixed-rate schedule, so a harness that falls behind counts the delay; PUTs/GiB and PUTs/flush count the PUT requests the store bills (floe_objstore_requests_total{op=put}, counted by the backend: every retry attempt, hedge and multipart request), less compaction's puts (floe_compaction_puts_total), per GiB produced and per segment flushed, in the throughput phase / at the fixed rate; idle PUTs are all billed PUT requests, compaction's included, over %v without traffic; peak RSS of the agent process).\n\n",
		started.UTC().Format("2006-01-02 15:04 MST"), o.Runs, o.Records, o.RecordSz, partitions, o.Rate, o.LatencyD, idleWindow)
	fmt.Fprintf(&b, "| setup | produce MiB/s | × kfake | catch-up MiB/s | × kfake | ack p50 | ack p99 | e2e p50 | e2e p99 | PUTs/GiB | PUTs/flush | idle PUTs | commits/flush | peak RSS MiB |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		if r.Skipped != "" {
			fmt.Fprintf(&b, "| %s | skipped: %s ||||||||||||| \n", r.Setup, r.Skipped)
			continue
		}
		pr, cr := "–", "–"
		if base != nil && base.ProduceMiBs > 0 {
			pr = fmt.Sprintf("%.2f", r.ProduceMiBs/base.ProduceMiBs)
		}
		if base != nil && base.ConsumeMiBs > 0 {
			cr = fmt.Sprintf("%.2f", r.ConsumeMiBs/base.ConsumeMiBs)
		}
		dash := func(v float64, f string) string {
			if r.Setup == "kfake" {
				return "–"
			}
			return fmt.Sprintf(f, v)
		}
		ppf := "–"
		if r.Setup != "kfake" {
			ppf = fmt.Sprintf("%.2f / %.2f", r.PutsFlush, r.LatPutsFlush)
		}
		fmt.Fprintf(&b, "| %s | %.1f | %s | %.1f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Setup, r.ProduceMiBs, pr, r.ConsumeMiBs, cr,
			ms(r.AckP50), ms(r.AckP99), ms(r.E2EP50), ms(r.E2EP99),
			dash(r.PutsPerGiB, "%.0f"), ppf, dash(r.IdlePuts, "%.0f"), dash(r.CommitsFlush, "%.2f"), dash(r.PeakRSSMiB, "%.0f"))
	}
	fmt.Fprintf(&b, "\nSetups:\n\n")
	for _, s := range allSetups(o) {
		fmt.Fprintf(&b, "- **%s**: %s\n", s.name, s.note)
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// Quantile returns the q-quantile of ds by the nearest-rank method: the
// smallest sample that at least a fraction q of the samples do not exceed
// (p99 of 150 samples is the 149th smallest). 0 without samples.
// tests/fleet's benchmarks share it.
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	slices.Sort(s)
	// The rank is ⌈q·n⌉; the tolerance keeps a q·n that floating point
	// puts just above an integer (0.07·100 is 7.000000000000001) from
	// rounding up a rank.
	rank := int(math.Ceil(q*float64(len(s)) - 1e-9))
	return s[min(max(rank, 1), len(s))-1]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
