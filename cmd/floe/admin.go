package main

// The operator subcommands: `floe topics`, `floe groups`, `floe cluster` and
// `floe healthcheck`. They speak only the Kafka protocol (franz-go kadm) to
// any agent of a fleet, so they work the same against Floe and against
// Apache Kafka, and need no access to the catalog or the bucket.
//
// Every command prints a table (text/tabwriter) by default and JSON with
// `-o json`; JSON field names are stable and meant for scripts. A command
// exits non-zero when any part of what it was asked to do failed, even if
// other parts succeeded (for example one of three topics failed to create).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// adminCLI holds where the admin commands write, so tests can capture it.
type adminCLI struct {
	out    io.Writer // results: tables or JSON
	errOut io.Writer // usage and diagnostics
}

func newAdminCLI(out, errOut io.Writer) *adminCLI {
	return &adminCLI{out: out, errOut: errOut}
}

// commands returns the operator subcommands (topics, groups, cluster,
// healthcheck) keyed by name. Each takes the arguments after its name.
func (a *adminCLI) commands() map[string]func(ctx context.Context, args []string) error {
	return map[string]func(ctx context.Context, args []string) error{
		"topics":      a.topics,
		"groups":      a.groups,
		"cluster":     a.cluster,
		"healthcheck": a.healthcheck,
	}
}

// defaultBootstrap is where the admin commands connect when neither
// --bootstrap nor FLOE_BOOTSTRAP is given: the address `floe dev` listens on.
const defaultBootstrap = "localhost:9092"

// adminFlags are the flags every Kafka-speaking admin command accepts.
type adminFlags struct {
	bootstrap string
	output    string
	timeout   time.Duration
	clientID  string
	// TLS to agents whose listeners have a certificate (agent --tls-cert).
	tls                    bool
	tlsCA, tlsCert, tlsKey string
}

func (f *adminFlags) register(fs *flag.FlagSet) {
	bootstrap := os.Getenv("FLOE_BOOTSTRAP")
	if bootstrap == "" {
		bootstrap = defaultBootstrap
	}
	fs.StringVar(&f.bootstrap, "bootstrap", bootstrap, "comma-separated `host:port` list of agents to bootstrap from (env FLOE_BOOTSTRAP)")
	fs.StringVar(&f.output, "o", "table", "output `format`: table or json")
	fs.StringVar(&f.output, "output", "table", "output `format`: table or json (same as -o)")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "give up after this long")
	fs.StringVar(&f.clientID, "client-id", "floe-admin", "Kafka client id to send (add floe_az=<zone> to pin a zone)")
	fs.BoolVar(&f.tls, "tls", false, "connect with TLS, verifying the agents' certificates against the system's CAs (implied by --tls-ca and --tls-client-cert)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM `file` of the CA certificates to verify the agents' certificates against")
	fs.StringVar(&f.tlsCert, "tls-client-cert", "", "PEM `file` of the client certificate, for agents that require one (--tls-client-ca)")
	fs.StringVar(&f.tlsKey, "tls-client-key", "", "PEM `file` of the client certificate's key")
}

func (f *adminFlags) validate() error {
	switch f.output {
	case "table", "json":
	default:
		return fmt.Errorf("-o %q: want table or json", f.output)
	}
	if strings.TrimSpace(f.bootstrap) == "" {
		return errors.New("--bootstrap is empty")
	}
	if f.timeout <= 0 {
		return fmt.Errorf("--timeout %v: must be positive", f.timeout)
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return errors.New("--tls-client-cert and --tls-client-key go together")
	}
	return nil
}

// tlsConfig is the client TLS of the admin commands, nil for plaintext.
func (f *adminFlags) tlsConfig() (*tls.Config, error) {
	if !f.tls && f.tlsCA == "" && f.tlsCert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.tlsCA != "" {
		pem, err := os.ReadFile(f.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", f.tlsCA)
		}
	}
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-cert: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// parse parses a subcommand's flags and positional names and validates the
// common flags. noun names what the positional arguments are ("topic");
// at least one is required. An empty noun means the command takes none.
func (f *adminFlags) parse(fs *flag.FlagSet, args []string, noun string) ([]string, error) {
	cmd := "floe " + fs.Name()
	names, err := parseArgs(fs, args)
	if err != nil {
		return nil, err
	}
	switch {
	case noun == "" && len(names) > 0:
		return nil, fmt.Errorf("%w: %s: unexpected arguments %q", errUsage, cmd, names)
	case noun != "" && len(names) == 0:
		fs.Usage()
		return nil, fmt.Errorf("%w: %s: name at least one %s", errUsage, cmd, noun)
	}
	if err := f.validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errUsage, cmd, err)
	}
	return uniqueNames(names), nil
}

// uniqueNames drops repeats of a name, keeping the first: a topic or
// group named twice on the command line means it once, while Kafka
// refuses a request naming it twice (INVALID_REQUEST).
func uniqueNames(names []string) []string {
	seen := make(map[string]bool, len(names))
	out := names[:0:0]
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// open bounds ctx by --timeout and connects. done cancels the context and
// closes the client.
func (f *adminFlags) open(ctx context.Context) (context.Context, *kadm.Client, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	adm, err := f.connect()
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return ctx, adm, func() { adm.Close(); cancel() }, nil
}

// connect opens a kadm client against the bootstrap list. The caller closes
// it. kgo connects lazily, so an unreachable bootstrap shows up as the first
// request's error, bounded by ctx.
func (f *adminFlags) connect() (*kadm.Client, error) {
	cl, err := f.kafkaClient()
	if err != nil {
		return nil, err
	}
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32(min(f.timeout, time.Hour) / time.Millisecond))
	return adm, nil
}

// kafkaClient opens the raw client, for requests kadm does not wrap.
func (f *adminFlags) kafkaClient() (*kgo.Client, error) {
	var seeds []string
	for s := range strings.SplitSeq(f.bootstrap, ",") {
		if s = strings.TrimSpace(s); s != "" {
			seeds = append(seeds, s)
		}
	}
	tlsCfg, err := f.tlsConfig()
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.ClientID(f.clientID),
		kgo.DialTimeout(min(f.timeout, 10*time.Second)),
		// An operator command should fail fast and say why rather than
		// retry for the client's default minute.
		kgo.RetryTimeout(f.timeout),
	}
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", f.bootstrap, err)
	}
	return cl, nil
}

// subcommand is one leaf command such as `topics list`.
type subcommand struct {
	name    string
	usage   string // argument synopsis after the command name
	summary string
	run     func(ctx context.Context, args []string) error
}

// dispatch runs the subcommand named by args[0] of the command group.
func (a *adminCLI) dispatch(ctx context.Context, group string, subs []subcommand, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		a.groupUsage(group, subs)
		if len(args) == 0 {
			return fmt.Errorf("%w: floe %s: missing subcommand", errUsage, group)
		}
		return nil
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(ctx, args[1:])
		}
	}
	a.groupUsage(group, subs)
	return fmt.Errorf("%w: floe %s: unknown subcommand %q", errUsage, group, args[0])
}

func (a *adminCLI) groupUsage(group string, subs []subcommand) {
	fmt.Fprintf(a.errOut, "usage: floe %s <subcommand> [flags]\n\nsubcommands:\n", group)
	tw := tabwriter.NewWriter(a.errOut, 0, 4, 2, ' ', 0)
	for _, s := range subs {
		fmt.Fprintf(tw, "  %s %s\t%s\n", s.name, s.usage, s.summary)
	}
	tw.Flush()
	fmt.Fprintf(a.errOut, "\nRun 'floe %s <subcommand> -h' for its flags.\n", group)
}

// newFlagSet returns a flag set that reports errors instead of exiting and
// prints its usage to errOut.
func (a *adminCLI) newFlagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(a.errOut)
	fs.Usage = func() {
		fmt.Fprintf(a.errOut, "usage: floe %s %s\n\nflags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags that may appear before, between or after the
// positional arguments (`floe topics create orders --partitions 6`), which
// the standard flag package alone does not allow. Everything after "--" is
// positional. A flag the set does not define, or a malformed value, is a
// usage error; -h is flag.ErrHelp (which is also a usage error, and exits 0).
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: floe %s: %w", errUsage, fs.Name(), err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// fs.Parse consumed a "--" if that is what stopped it.
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// parseKeyValues turns k=v strings into a map, rejecting malformed entries.
func parseKeyValues(flagName string, kvs []string) (map[string]string, error) {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: want key=value", flagName, kv)
		}
		m[k] = v
	}
	return m, nil
}

// table writes aligned columns. Headers are upper case, like kafka-topics.sh
// and kubectl, so output is familiar.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(toAny(headers)...)
	return t
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func (t *table) row(cells ...any) {
	for i, c := range cells {
		if i > 0 {
			fmt.Fprint(t.tw, "\t")
		}
		fmt.Fprint(t.tw, c)
	}
	fmt.Fprintln(t.tw)
}

func (t *table) flush() error { return t.tw.Flush() }

// writeJSON prints v as indented JSON followed by a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// errString renders an error for a table cell or JSON field.
func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// statusCell is "ok" or the error, for STATUS columns.
func statusCell(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// explain turns the client's errors into what an operator should read. The
// consumer group APIs in particular are absent from agents that predate them:
// kgo then fails the request before sending it, with a generic message.
func explain(op string, err error) error {
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), "broker is too old") {
		return fmt.Errorf("%s: the broker does not support the Kafka API this command needs (not served by this agent version): %w", op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// sortedKeys returns m's keys in ascending order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// failures joins the errors of a multi-item command so its exit status is
// non-zero when any item failed.
func failures(op string, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %d failed: %w", op, len(errs), errors.Join(errs...))
}
