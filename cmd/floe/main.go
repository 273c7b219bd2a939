// Command floe is Floe's one binary: the agent, the embedded development
// broker, schema migrations and the operator commands.
//
//	floe dev        one agent with SQLite and a local directory (./floe-data)
//	floe agent      an agent of a fleet (PostgreSQL or SQLite, S3/GCS/MinIO/dir)
//	floe migrate    apply the catalog's schema migrations
//	floe version    print the version
//	floe bench      the benchmark harness (make bench)
//	floe topics|groups|cluster|healthcheck   operator commands (Kafka protocol)
//
// Settings come from flags, then FLOE_* environment variables (the flag name
// upper-cased, '-' and '.' as '_': --flush-interval is FLOE_FLUSH_INTERVAL),
// then a YAML file (--config or FLOE_CONFIG; keys are flag names), then
// defaults. SIGINT and SIGTERM drain: the agent stops accepting, finishes
// in-flight requests, the WAL flushes and commits, and floe exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"syscall"

	"github.com/floebroker/floe/bench"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runMain runs one subcommand and returns the exit code: 0 success, 1
// failure, 2 usage error.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := map[string]func(ctx context.Context, args []string) error{
		"dev":     func(ctx context.Context, args []string) error { return cmdServe(ctx, "dev", args, stderr) },
		"agent":   func(ctx context.Context, args []string) error { return cmdServe(ctx, "agent", args, stderr) },
		"migrate": func(ctx context.Context, args []string) error { return cmdMigrate(ctx, args, stdout, stderr) },
		"version": func(_ context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("%w: floe version: unexpected arguments %q", errUsage, args)
			}
			fmt.Fprintln(stdout, versionString())
			return nil
		},
		"bench": bench.Main,
	}
	for name, f := range newAdminCLI(stdout, stderr).commands() {
		cmds[name] = f
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		fmt.Fprintln(stdout, versionString())
		return 0
	}
	f, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "floe: unknown command %q\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	err := f(ctx, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, err)
		return 2
	}
	fmt.Fprintf(stderr, "floe %s: %v\n", args[0], err)
	return 1
}

// errUsage marks command-line mistakes (exit code 2): an unknown flag or
// subcommand, a missing or unexpected argument, a setting out of range. Wrap
// it (fmt.Errorf("%w: …", errUsage)) wherever such a mistake is found.
var errUsage = errors.New("usage")

func usage(w io.Writer, cmds map[string]func(context.Context, []string) error) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "usage: floe <command> [flags]\n\ncommands:\n")
	for _, n := range names {
		fmt.Fprintf(w, "  %s\n", n)
	}
	fmt.Fprintf(w, "\nRun 'floe <command> -h' for a command's flags.\n")
}

func versionString() string {
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	return fmt.Sprintf("floe %s%s (%s %s/%s)", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
