package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The fleet parts of the harness: figures that need several agents sharing
// one catalog and bucket (GETs at the tail and on catch-up, end-to-end
// latency across agents), or one agent under many partitions. They follow
// the Go benchmarks of tests/fleet (bench_test.go), which run the agents
// in-process with counting buckets; here the agents are `floe agent`
// subprocesses and every count comes from their own /metrics.

// Fleet part names, as -setups takes them.
const (
	partGets       = "fleet-gets"
	partLatency    = "fleet-latency"
	partPartitions = "fleet-partitions"
)

// Workload constants of the fleet parts; tests/fleet/bench_test.go
// documents why each is what it is.
const (
	getsPartitions  = 4
	getsRecordSize  = 4 << 10
	getsTail        = 3 * time.Second // production per tail phase
	getsConsumers   = 3
	latencyRecords  = 400
	latencySpacing  = 10 * time.Millisecond
	partsRecordSize = 1 << 10
	partsWarm       = time.Second     // production per side before the measured window
	partsRound      = 2 * time.Second // the measured window per side of a pair
	partsPairs      = 4               // paired rounds per run
	partsFew        = 16
	partsMany       = 2000
	// Fleet agents heartbeat often, so the fleet forms and a stopping agent's
	// shutdown grace (1.25 heartbeats) passes quickly. Not a flush setting:
	// the flush settings stay `floe agent`'s defaults.
	fleetHeartbeat = "250ms"
	fleetAgentTTL  = "3s"
)

// FleetRow is one figure of the fleet table.
type FleetRow struct {
	Part    string
	Figure  string
	Target  string
	Unit    string    // printed after the value
	Prec    int       // decimals of the value
	Values  []float64 // one per run, or per paired round; the median is reported
	Skipped string    // why the part did not run (then Figure is empty)
	Failed  string    // why the part stopped after some runs (then Figure is empty)
}

// Median is the reported value.
func (r FleetRow) Median() float64 { return median(r.Values) }

// fleetPart is one fleet figure group: its rows (templates keyed by id)
// and one run of its workload, which returns values by row id.
type fleetPart struct {
	name, note  string
	rows        []fleetRowSpec
	unavailable func() string
	run         func(ctx context.Context, o Options) (map[string][]float64, error)
}

type fleetRowSpec struct {
	id, figure, target, unit string
	prec                     int
}

func allFleetParts(o Options) []fleetPart {
	needServices := func() string {
		if o.FloeBin == "" {
			return "no floe binary"
		}
		if o.PostgresURL == "" || o.MinIOAddr == "" {
			return "PostgreSQL/MinIO not configured (run scripts/services.sh start)"
		}
		return ""
	}
	return []fleetPart{
		{
			name: partGets,
			note: fmt.Sprintf("three `floe agent`s (zones a, b, c) on one fresh PostgreSQL schema and MinIO bucket, default flush (250 ms / 8 MiB); clients name their zone in the client id (`floe_az=<zone>`) and bootstrap at their zone's agent. "+
				"A %d-partition topic; a producer at agent a sends batches of 8 incompressible %d KiB records (linger 0, uncompressed) with a 5 ms pause for %v while %d consumers tail every partition at a (the writer), then again with %d consumers tailing at b; "+
				"then %d consumers on c, which has served nothing yet, read the whole topic from the start. GETs are the serving agent's `floe_objstore_operations_total{op=get|get_range}`, bytes its `floe_agent_fetched_bytes_total` (all consumers together), objects the segment objects the writer flushed meanwhile (`floe_wal_flushes_total`).",
				getsPartitions, getsRecordSize>>10, getsTail, getsConsumers, getsConsumers, getsConsumers),
			rows: []fleetRowSpec{
				{"tail-writer", "GETs per GiB served, consumers tailing at the writer", "0", "", 0},
				{"tail-other", "GETs per object, consumers tailing at another agent", "≤ 1", "", 2},
				{"tail-other-gib", "GETs per GiB served, consumers tailing at another agent", "–", "", 0},
				{"catchup", "GETs per object, consumers catching up on a fresh agent", "≤ 1", "", 2},
				{"catchup-gib", "GETs per GiB served, consumers catching up on a fresh agent", "–", "", 0},
			},
			unavailable: needServices,
			run:         runFleetGets,
		},
		{
			name: partLatency,
			note: fmt.Sprintf("three agents as in fleet-gets, default flush; a 1-partition topic; a producer at a (linger 0) sends %d records %v apart, each carrying its send time, while one consumer at a (the same agent) and one at b (a different agent) tail it; end-to-end latency is receipt minus send time, both consumers measuring the same records.",
				latencyRecords, latencySpacing),
			rows: []fleetRowSpec{
				{"p50-same", "e2e p50, consumer on the producer's agent", "–", " ms", 1},
				{"p50-other", "e2e p50, consumer on a different agent", "–", " ms", 1},
				{"p99-same", "e2e p99, consumer on the producer's agent", "–", " ms", 1},
				{"p99-other", "e2e p99, consumer on a different agent", "–", " ms", 1},
			},
			unavailable: needServices,
			run:         runFleetLatency,
		},
		{
			name: partPartitions,
			note: fmt.Sprintf("one `floe agent` on PostgreSQL + MinIO, default flush (250 ms / 8 MiB); a new idempotent producer (acks=all, 5 ms linger, uncompressed, records spread round-robin over the partitions) produces %d B records to a new topic, keeping franz-go's record buffer full; after %v of warm-up (the topic's first commits create its producer state) the rate is measured over about the next %v: from the first ack after the warm-up to the first after the window, the acks between those two instants over the time between them (acks come in bursts, a commit's worth at once, so acks counted at two fixed instants were off by up to a burst, ±25%%). The first ack rows give what the warm-up leaves out: the time from the producer's start to its first ack, most of it franz-go's first request (everything buffered by then, tens of MB at 2,000 partitions) and its PUT. "+
				"%d and %s partitions alternate (%d pairs per run, the order flipped every pair); each pair gives a ratio and the table reports the median ratio over all pairs of all runs, so a burst of load elsewhere on the machine decides at most one pair. "+
				"The same pairs against franz-go's in-process kfake, run between Floe's, give the baseline: the ratio the client allows on this machine.",
				partsRecordSize, partsWarm, partsRound, partsFew, thousands(partsMany), partsPairs),
			rows: []fleetRowSpec{
				{"few", fmt.Sprintf("records/s, %d partitions", partsFew), "–", "", 0},
				{"many", fmt.Sprintf("records/s, %s partitions", thousands(partsMany)), "–", "", 0},
				{"ratio", fmt.Sprintf("%s vs %d partitions", thousands(partsMany), partsFew), "≥ 80%", "%", 0},
				{"kfake-few", fmt.Sprintf("kfake records/s, %d partitions", partsFew), "–", "", 0},
				{"kfake-many", fmt.Sprintf("kfake records/s, %s partitions", thousands(partsMany)), "–", "", 0},
				{"kfake-ratio", fmt.Sprintf("kfake %s vs %d partitions (baseline)", thousands(partsMany), partsFew), "–", "%", 0},
				{"first-few", fmt.Sprintf("first ack on a new topic, %d partitions", partsFew), "–", " ms", 0},
				{"first-many", fmt.Sprintf("first ack on a new topic, %s partitions", thousands(partsMany)), "–", " ms", 0},
				{"kfake-first-few", fmt.Sprintf("kfake first ack, %d partitions", partsFew), "–", " ms", 0},
				{"kfake-first-many", fmt.Sprintf("kfake first ack, %s partitions", thousands(partsMany)), "–", " ms", 0},
			},
			unavailable: needServices,
			run:         runFleetPartitions,
		},
	}
}

// RunFleet runs the fleet parts o.Setups selects (all when empty) o.Runs
// times each, a round running every part once, and returns their rows. A
// part whose run fails keeps the values of its earlier runs and runs no
// more; the other parts go on, and the errors are returned together.
func RunFleet(ctx context.Context, o Options) ([]FleetRow, error) {
	if o.Runs < 1 {
		o.Runs = 1
	}
	type state struct {
		part   fleetPart
		values map[string][]float64
		failed string
	}
	var (
		rows   []FleetRow
		active []*state
		errs   []error
	)
	for _, p := range allFleetParts(o) {
		if len(o.Setups) > 0 && !contains(o.Setups, p.name) {
			continue
		}
		if why := p.unavailable(); why != "" {
			rows = append(rows, FleetRow{Part: p.name, Skipped: why})
			continue
		}
		active = append(active, &state{part: p, values: map[string][]float64{}})
	}
	for i := 0; i < o.Runs && ctx.Err() == nil; i++ {
		for _, s := range active {
			if s.failed != "" || ctx.Err() != nil {
				continue
			}
			o.Logger.Info("bench: run", "setup", s.part.name, "run", i+1, "of", o.Runs)
			vals, err := s.part.run(ctx, o)
			if err != nil {
				s.failed = fmt.Sprintf("run %d failed: %v", i+1, err)
				errs = append(errs, fmt.Errorf("bench: %s run %d: %w", s.part.name, i+1, err))
				continue
			}
			for id, v := range vals {
				s.values[id] = append(s.values[id], v...)
			}
		}
	}
	for _, s := range active {
		if len(s.values) == 0 {
			why := s.failed
			if why == "" {
				why = "not run"
			}
			rows = append(rows, FleetRow{Part: s.part.name, Skipped: why})
			continue
		}
		for _, spec := range s.part.rows {
			rows = append(rows, FleetRow{Part: s.part.name, Figure: spec.figure, Target: spec.target,
				Unit: spec.unit, Prec: spec.prec, Values: s.values[spec.id]})
		}
		if s.failed != "" {
			rows = append(rows, FleetRow{Part: s.part.name, Failed: s.failed})
		}
	}
	return rows, errors.Join(errs...)
}

// FleetMarkdown renders the fleet table and its notes; empty without rows.
func FleetMarkdown(rows []FleetRow, o Options) string {
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Fleet\n\n")
	fmt.Fprintf(&b, "Several agents sharing one catalog and bucket, and one agent under many partitions (%d runs per part; the measured value is the median of the values listed, one per run, or one per paired round for fleet-partitions).\n\n", o.Runs)
	fmt.Fprintf(&b, "| part | figure | target | measured | values |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|\n")
	for _, r := range rows {
		if r.Skipped != "" {
			fmt.Fprintf(&b, "| %s | skipped: %s |||| \n", r.Part, cell(r.Skipped))
			continue
		}
		if r.Failed != "" {
			fmt.Fprintf(&b, "| %s | %s |||| \n", r.Part, cell(r.Failed))
			continue
		}
		measured := "–"
		if len(r.Values) > 0 {
			measured = formatValue(r.Median(), r.Prec) + r.Unit
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.Part, r.Figure, r.Target, measured, formatValues(r.Values, r.Prec))
	}
	fmt.Fprintf(&b, "\nFleet parts:\n\n")
	for _, p := range allFleetParts(o) {
		if slices.ContainsFunc(rows, func(r FleetRow) bool { return r.Part == p.name }) {
			fmt.Fprintf(&b, "- **%s**: %s\n", p.name, p.note)
		}
	}
	return b.String()
}

// formatValue prints v with prec decimals, thousands separated when it has
// none.
func formatValue(v float64, prec int) string {
	if prec == 0 {
		s := strconv.FormatFloat(v, 'f', 0, 64)
		neg := strings.HasPrefix(s, "-")
		s = strings.TrimPrefix(s, "-")
		var out []byte
		for i := range len(s) {
			if i > 0 && (len(s)-i)%3 == 0 {
				out = append(out, ',')
			}
			out = append(out, s[i])
		}
		if neg {
			return "-" + string(out)
		}
		return string(out)
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

// cell makes s one markdown table cell: one line, no column breaks.
func cell(s string) string {
	return strings.NewReplacer("\n", " ", "|", "/").Replace(s)
}

func formatValues(vs []float64, prec int) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = formatValue(v, prec)
	}
	return strings.Join(parts, "; ")
}

func thousands(n int) string { return formatValue(float64(n), 0) }

// pairRatios returns 100·many[i]/few[i] for each pair with a positive few.
func pairRatios(few, many []float64) []float64 {
	var out []float64
	for i := range min(len(few), len(many)) {
		if few[i] > 0 {
			out = append(out, 100*many[i]/few[i])
		}
	}
	return out
}

// unknownSetups returns the names of -setups that name no setup or fleet
// part.
func unknownSetups(o Options) []string {
	known := map[string]bool{}
	for _, s := range allSetups(o) {
		known[s.name] = true
	}
	for _, p := range allFleetParts(o) {
		known[p.name] = true
	}
	var out []string
	for _, n := range o.Setups {
		if !known[n] {
			out = append(out, n)
		}
	}
	return out
}

// fleet is a set of `floe agent`s sharing one catalog schema and bucket.
type fleet struct {
	agents []*target
	env    *s3Env
}

// startFleet starts one agent per zone ("" for none) on a fresh
// environment and waits until every agent counts all of them live.
func startFleet(ctx context.Context, o Options, zones ...string) (*fleet, error) {
	e, err := newS3Env(ctx, o, "")
	if err != nil {
		return nil, err
	}
	f := &fleet{env: e, agents: make([]*target, len(zones))}
	errs := make([]error, len(zones))
	var wg sync.WaitGroup
	for i, z := range zones {
		wg.Go(func() {
			extra := []string{"--heartbeat-interval", fleetHeartbeat, "--agent-ttl", fleetAgentTTL}
			if z != "" {
				extra = append(extra, "--zone", z)
			}
			f.agents[i], errs[i] = e.start(ctx, o, extra...)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		f.stop()
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		live := 0
		for _, a := range f.agents {
			if m, err := scrapeMetrics(a.metricsURL); err == nil && int(m.sum("floe_agent_live_agents")) == len(zones) {
				live++
			}
		}
		if live == len(zones) {
			return f, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			f.stop()
			return nil, fmt.Errorf("the %d agents do not all count each other live after 30s", len(zones))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop stops the agents together (each waits out its shutdown grace) and
// drops the schema.
func (f *fleet) stop() {
	var wg sync.WaitGroup
	for _, a := range f.agents {
		if a != nil {
			wg.Go(a.stop)
		}
	}
	wg.Wait()
	f.env.drop()
}
