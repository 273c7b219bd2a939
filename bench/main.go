package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Main is `floe bench`: parse args, run the harness, print the table and
// write it to -out.
func Main(ctx context.Context, args []string) error {
	o := DefaultOptions()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	out := fs.String("out", "", "also write the markdown table to this file (e.g. BENCHMARKS.md)")
	setups := fs.String("setups", "", "comma-separated setups and fleet parts to run (default all): kfake,floe-embedded,floe-pg-minio,floe-pg-minio-10ms,floe-s3-standard,fleet-gets,fleet-latency,fleet-partitions")
	fs.StringVar(&o.FloeBin, "floe", "", "floe binary to benchmark (default: this executable)")
	fs.IntVar(&o.Runs, "runs", o.Runs, "runs per setup (medians are reported)")
	fs.IntVar(&o.Records, "records", o.Records, "records in the throughput phase")
	fs.IntVar(&o.RecordSz, "record-size", o.RecordSz, "record value bytes")
	fs.IntVar(&o.Rate, "rate", o.Rate, "records/s in the latency phase")
	fs.DurationVar(&o.LatencyD, "latency-duration", o.LatencyD, "length of the latency phase")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *setups != "" {
		o.Setups = strings.Split(*setups, ",")
		if bad := unknownSetups(o); len(bad) > 0 {
			return fmt.Errorf("bench: unknown -setups %s", strings.Join(bad, ","))
		}
	}
	if o.FloeBin == "" {
		exe, err := os.Executable()
		if err != nil || strings.Contains(exe, filepath.Join("go-build")) {
			// Under `go run` the executable is temporary but still runnable;
			// build a stable copy so subprocesses outlive nothing surprising.
			exe, err = buildFloe(ctx)
			if err != nil {
				return err
			}
		}
		o.FloeBin = exe
	}
	started := time.Now()
	results, err := Run(ctx, o)
	var fleet []FleetRow
	if ctx.Err() == nil {
		var ferr error
		fleet, ferr = RunFleet(ctx, o)
		err = errors.Join(err, ferr)
	}
	md := Markdown(results, o, started) + FleetMarkdown(fleet, o)
	fmt.Print(md)
	if *out != "" {
		if werr := os.WriteFile(*out, []byte(md), 0o644); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

func buildFloe(ctx context.Context) (string, error) {
	dir, err := os.MkdirTemp("", "floe-bench-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "floe")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/floebroker/floe/cmd/floe")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("bench: build floe: %w", err)
	}
	return bin, nil
}
