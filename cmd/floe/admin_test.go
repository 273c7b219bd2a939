package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/floebroker/floe/internal/testenv"
)

// The admin commands are tested against kfake, franz-go's in-process Kafka:
// they speak plain Kafka, so what passes here passes against any broker
// that serves the same APIs. The e2e scripts (scripts/compose-local.sh) run
// them against real Floe agents.

func newFake(t *testing.T, opts ...kfake.Opt) string {
	t.Helper()
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return strings.Join(c.ListenAddrs(), ",")
}

// run executes `floe <args...>` and returns stdout and the error.
func run(t *testing.T, bootstrap string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cli := newAdminCLI(&out, &errOut)
	cmd, ok := cli.commands()[args[0]]
	if !ok {
		t.Fatalf("no command %q", args[0])
	}
	full := append(slices.Clone(args[1:]), "--timeout", "10s")
	if bootstrap != "" {
		full = append(full, "--bootstrap", bootstrap)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := cmd(ctx, full)
	t.Logf("floe %s\n%s%s", strings.Join(args, " "), out.String(), errOut.String())
	return out.String(), err
}

func mustRun(t *testing.T, bootstrap string, args ...string) string {
	t.Helper()
	out, err := run(t, bootstrap, args...)
	if err != nil {
		t.Fatalf("floe %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

func TestTopicsLifecycle(t *testing.T) {
	bs := newFake(t)

	out := mustRun(t, bs, "topics", "create", "orders", "--partitions", "3", "--config", "retention.ms=3600000", "payments")
	if !strings.Contains(out, "orders") || !strings.Contains(out, "payments") || strings.Count(out, " ok") != 2 {
		t.Fatalf("create table: %q", out)
	}
	if _, err := run(t, bs, "topics", "create", "orders"); err == nil {
		t.Fatal("creating an existing topic succeeded")
	}

	list := decode[[]topicListJSON](t, mustRun(t, bs, "topics", "list", "-o", "json"))
	if len(list) != 2 || list[0].Name != "orders" || list[0].Partitions != 3 || list[1].Name != "payments" {
		t.Fatalf("list: %+v", list)
	}
	if table := mustRun(t, bs, "topics", "list"); !strings.HasPrefix(table, "TOPIC") || !strings.Contains(table, "orders") {
		t.Fatalf("list table: %q", table)
	}

	produce(t, bs, "orders", 10)
	descs := decode[[]topicDescJSON](t, mustRun(t, bs, "topics", "describe", "orders", "-o", "json"))
	if len(descs) != 1 || len(descs[0].Partitions) != 3 {
		t.Fatalf("describe: %+v", descs)
	}
	var records int64
	for _, p := range descs[0].Partitions {
		records += p.HighWatermark - p.LogStartOffset
	}
	if records != 10 {
		t.Fatalf("describe: %d records across partitions, want 10: %+v", records, descs[0].Partitions)
	}
	if !slices.ContainsFunc(descs[0].Configs, func(c configJSON) bool {
		return c.Name == "retention.ms" && c.Value == "3600000" && c.Source == "TOPIC"
	}) {
		t.Fatalf("describe configs: %+v", descs[0].Configs)
	}
	if table := mustRun(t, bs, "topics", "describe", "orders"); !strings.Contains(table, "HIGH-WATERMARK") || !strings.Contains(table, "retention.ms") {
		t.Fatalf("describe table: %q", table)
	}

	mustRun(t, bs, "topics", "alter", "orders", "--partitions", "5", "--set", "cleanup.policy=compact", "--delete", "retention.ms")
	descs = decode[[]topicDescJSON](t, mustRun(t, bs, "topics", "describe", "orders", "-o", "json"))
	if len(descs[0].Partitions) != 5 {
		t.Fatalf("after alter: %d partitions, want 5", len(descs[0].Partitions))
	}
	var names []string
	for _, c := range descs[0].Configs {
		names = append(names, c.Name+"="+c.Value)
	}
	if !slices.Equal(names, []string{"cleanup.policy=compact"}) {
		t.Fatalf("after alter configs: %v", names)
	}
	if _, err := run(t, bs, "topics", "alter", "orders", "--partitions", "2"); err == nil {
		t.Fatal("shrinking partitions succeeded")
	}

	mustRun(t, bs, "topics", "delete", "payments")
	if _, err := run(t, bs, "topics", "describe", "payments"); err == nil {
		t.Fatal("describe of a deleted topic succeeded")
	}
	if _, err := run(t, bs, "topics", "delete", "payments"); err == nil {
		t.Fatal("deleting a missing topic succeeded")
	}
}

func produce(t *testing.T, bs, topic string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bs, ",")...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range n {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte{byte(i)}, Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
}

func TestGroups(t *testing.T) {
	bs := newFake(t)
	mustRun(t, bs, "topics", "create", "events", "--partitions", "2")
	produce(t, bs, "events", 20)

	// A consumer group that commits everything, then leaves.
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bs, ",")...),
		kgo.ConsumerGroup("billing"), kgo.ConsumeTopics("events"), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for got := 0; got < 20; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("poll: %v", err)
		}
		got += fs.NumRecords()
	}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}

	// While the consumer is in the group, resets are refused.
	if _, err := run(t, bs, "groups", "reset-offsets", "billing", "--all-topics", "--to-earliest", "--execute"); err == nil || !strings.Contains(err.Error(), "stop its consumers") {
		t.Fatalf("reset of an active group: %v", err)
	}
	cl.Close()

	groups := decode[[]groupListJSON](t, mustRun(t, bs, "groups", "list", "-o", "json"))
	if len(groups) != 1 || groups[0].Group != "billing" {
		t.Fatalf("groups list: %+v", groups)
	}
	desc := decode[[]groupDescJSON](t, mustRun(t, bs, "groups", "describe", "billing", "-o", "json"))
	if len(desc) != 1 || desc[0].TotalLag != 0 || len(desc[0].Offsets) != 2 {
		t.Fatalf("groups describe: %+v", desc)
	}

	// Dry run changes nothing; --execute rewinds to the start.
	dry := decode[resetJSON](t, mustRun(t, bs, "groups", "reset-offsets", "billing", "--topic", "events", "--to-earliest", "-o", "json"))
	if dry.Executed || len(dry.Offsets) != 2 || dry.Offsets[0].New != 0 {
		t.Fatalf("dry run: %+v", dry)
	}
	if d := decode[[]groupDescJSON](t, mustRun(t, bs, "groups", "describe", "billing", "-o", "json")); d[0].TotalLag != 0 {
		t.Fatalf("dry run moved offsets: lag %d", d[0].TotalLag)
	}
	mustRun(t, bs, "groups", "reset-offsets", "billing", "--topic", "events:0,1", "--to-earliest", "--execute")
	if d := decode[[]groupDescJSON](t, mustRun(t, bs, "groups", "describe", "billing", "-o", "json")); d[0].TotalLag != 20 {
		t.Fatalf("after reset to earliest: lag %d, want 20", d[0].TotalLag)
	}
	mustRun(t, bs, "groups", "reset-offsets", "billing", "--all-topics", "--shift-by", "100", "--execute")
	if d := decode[[]groupDescJSON](t, mustRun(t, bs, "groups", "describe", "billing", "-o", "json")); d[0].TotalLag != 0 {
		t.Fatalf("after shift past the end (clamped): lag %d, want 0", d[0].TotalLag)
	}
	if table := mustRun(t, bs, "groups", "describe", "billing"); !strings.Contains(table, "LOG-END-OFFSET") {
		t.Fatalf("describe table: %q", table)
	}

	mustRun(t, bs, "groups", "delete", "billing")
	if groups := decode[[]groupListJSON](t, mustRun(t, bs, "groups", "list", "-o", "json")); len(groups) != 0 {
		t.Fatalf("after delete: %+v", groups)
	}
}

// An agent without the consumer group APIs (they arrive in a later Floe
// version) must produce a clear error, not a hang or a panic.
func TestGroupsUnsupported(t *testing.T) {
	v := kversion.V4_1_0()
	for _, k := range []int16{8, 9, 10, 11, 12, 13, 14, 15, 16, 42, 47, 68, 69} {
		v.SetMaxKeyVersion(k, -1)
	}
	bs := newFake(t, kfake.MaxVersions(v))
	for _, args := range [][]string{
		{"groups", "list"},
		{"groups", "describe", "g"},
		{"groups", "delete", "g"},
		{"groups", "reset-offsets", "g", "--all-topics", "--to-latest"},
	} {
		_, err := run(t, bs, args...)
		if err == nil || !strings.Contains(err.Error(), "does not support") {
			t.Errorf("floe %s: got %v, want a 'does not support' error", strings.Join(args, " "), err)
		}
	}
}

func TestCluster(t *testing.T) {
	bs := newFake(t, kfake.NumBrokers(2), kfake.ClusterID("floe-test"))
	res := decode[clusterJSON](t, mustRun(t, bs, "cluster", "-o", "json"))
	if res.ClusterID != "floe-test" || len(res.Agents) != 2 {
		t.Fatalf("cluster: %+v", res)
	}
	for _, ag := range res.Agents {
		if ag.Error != "" || len(ag.APIs) == 0 {
			t.Fatalf("agent: %+v", ag)
		}
	}
	out := mustRun(t, bs, "cluster", "--apis")
	if !strings.Contains(out, "Cluster: floe-test") || !strings.Contains(out, "ApiVersions") || !strings.Contains(out, "v3-v") {
		t.Fatalf("cluster table: %q", out)
	}
}

func TestUnreachableBootstrapFails(t *testing.T) {
	var out bytes.Buffer
	cmd := newAdminCLI(&out, io.Discard).commands()["topics"]
	start := time.Now()
	err := cmd(context.Background(), []string{"list", "--bootstrap", "127.0.0.1:1", "--timeout", "1s"})
	if err == nil {
		t.Fatal("list against a closed port succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v to fail with --timeout 1s", d)
	}
}

func TestHealthcheck(t *testing.T) {
	healthy := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz" && healthy:
			io.WriteString(w, "ok")
		case r.URL.Path == "/readyz":
			http.Error(w, "catalog unreachable", http.StatusServiceUnavailable)
		default:
			http.Error(w, "wal failed", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	hc := newAdminCLI(io.Discard, io.Discard).commands()["healthcheck"]
	ctx := context.Background()
	if err := hc(ctx, []string{"--url", srv.URL + "/healthz"}); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	if err := hc(ctx, []string{"--url", srv.URL + "/healthz", "--ready"}); err == nil || !strings.Contains(err.Error(), "catalog unreachable") {
		t.Fatalf("not ready: %v", err)
	}
	healthy = false
	if err := hc(ctx, []string{"--url", srv.URL + "/healthz"}); err == nil {
		t.Fatal("unhealthy agent passed")
	}
}

func TestDefaultHealthURL(t *testing.T) {
	for _, tc := range []struct{ env, want string }{
		{"", "http://127.0.0.1:9644/healthz"},
		{":9700", "http://127.0.0.1:9700/healthz"},
		{"0.0.0.0:9700", "http://127.0.0.1:9700/healthz"},
		{"10.1.2.3:80", "http://10.1.2.3:80/healthz"},
		{"garbage", "http://127.0.0.1:9644/healthz"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv("FLOE_ADMIN_LISTEN", tc.env)
			if got := defaultHealthURL(); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantPos []string
		wantN   int
	}{
		{"flags first", []string{"--n", "3", "a", "b"}, []string{"a", "b"}, 3},
		{"flags last", []string{"a", "b", "--n", "3"}, []string{"a", "b"}, 3},
		{"interleaved", []string{"a", "--n", "3", "b"}, []string{"a", "b"}, 3},
		{"double dash", []string{"a", "--", "--n", "b"}, []string{"a", "--n", "b"}, 0},
		{"none", nil, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			n := fs.Int("n", 0, "")
			pos, err := parseArgs(fs, tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pos, tc.wantPos) || *n != tc.wantN {
				t.Fatalf("got %q n=%d, want %q n=%d", pos, *n, tc.wantPos, tc.wantN)
			}
		})
	}
}

func TestParseTopicPartitions(t *testing.T) {
	got, err := parseTopicPartitions([]string{"a", "b:0,2", "b:5"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["a"] != nil || !slices.Equal(got["b"], []int32{0, 2, 5}) {
		t.Fatalf("got %v", got)
	}
	for _, bad := range []string{":1", "a:x", "a:-1", "a:"} {
		if _, err := parseTopicPartitions([]string{bad}); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestResetTarget(t *testing.T) {
	lo := func(off int64) kadm.ListedOffsets {
		return kadm.ListedOffsets{"t": {0: {Topic: "t", Offset: off}}}
	}
	starts, ends := lo(10), lo(100)
	for _, tc := range []struct {
		name    string
		spec    resetSpec
		current int64
		byTime  kadm.ListedOffsets
		want    int64
		wantErr bool
	}{
		{"earliest", resetSpec{earliest: true, toOffset: -1}, 50, nil, 10, false},
		{"latest", resetSpec{latest: true, toOffset: -1}, 50, nil, 100, false},
		{"to offset", resetSpec{toOffset: 42}, 50, nil, 42, false},
		{"to offset below start", resetSpec{toOffset: 0}, 50, nil, 10, false},
		{"to offset past end", resetSpec{toOffset: 1000}, 50, nil, 100, false},
		{"shift back", resetSpec{shiftBy: -45, toOffset: -1}, 50, nil, 10, false},
		{"shift forward", resetSpec{shiftBy: 5, toOffset: -1}, 50, nil, 55, false},
		{"shift without commit", resetSpec{shiftBy: 5, toOffset: -1}, -1, nil, 0, true},
		{"datetime", resetSpec{toDatetime: "x", toOffset: -1}, 50, lo(70), 70, false},
		{"datetime after last record", resetSpec{toDatetime: "x", toOffset: -1}, 50, lo(-1), 100, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resetTarget(tc.spec, tc.current, starts, ends, tc.byTime, "t", 0)
			if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
				t.Fatalf("got %d, %v; want %d, err=%v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	cmds := newAdminCLI(io.Discard, io.Discard).commands()
	ctx := context.Background()
	for _, tc := range []struct {
		cmd  string
		args []string
	}{
		{"topics", nil},
		{"topics", []string{"nope"}},
		{"topics", []string{"create"}},
		{"topics", []string{"create", "x", "--partitions", "0"}},
		{"topics", []string{"create", "x", "--config", "novalue"}},
		// Beyond the wire's int32 and int16: they wrapped (to 1 and to
		// a negative count).
		{"topics", []string{"create", "x", "--partitions", "4294967297"}},
		{"topics", []string{"create", "x", "--partitions", "2147483648"}},
		{"topics", []string{"create", "x", "--replication-factor", "65539"}},
		{"topics", []string{"create", "x", "--replication-factor", "0"}},
		{"topics", []string{"alter", "x", "--partitions", "4294967297"}},
		{"topics", []string{"alter", "x"}},
		{"topics", []string{"list", "-o", "yaml"}},
		{"topics", []string{"list", "--bogus"}},
		{"groups", []string{"reset-offsets", "g", "--all-topics"}},
		{"groups", []string{"reset-offsets", "g", "--to-latest"}},
		{"groups", []string{"reset-offsets", "g", "--all-topics", "--to-latest", "--to-earliest"}},
		{"groups", []string{"reset-offsets", "g", "--all-topics", "--to-datetime", "yesterday"}},
		{"groups", []string{"reset-offsets", "g", "--topic", ":1", "--to-latest"}},
		{"cluster", []string{"extra"}},
		{"cluster", []string{"--timeout", "soon"}},
		{"healthcheck", []string{"extra"}},
	} {
		if err := cmds[tc.cmd](ctx, tc.args); !errors.Is(err, errUsage) {
			t.Errorf("floe %s %q: %v, want a usage error", tc.cmd, tc.args, err)
		}
	}
	if err := cmds["topics"](ctx, []string{"--help"}); err != nil {
		t.Errorf("topics --help: %v", err)
	}
}

// TestExitCodes: the documented contract of runMain, 0 success (and -h), 1
// failure, 2 usage error, whichever layer finds the mistake.
func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 2},
		{[]string{"nope"}, 2},
		{[]string{"agent", "--bogus"}, 2},
		{[]string{"agent", "extra"}, 2},
		{[]string{"migrate"}, 2},
		{[]string{"migrate", "--bogus"}, 2},
		{[]string{"topics"}, 2},
		{[]string{"topics", "bogus"}, 2},
		{[]string{"topics", "create"}, 2},
		{[]string{"topics", "create", "x", "--partitions", "4294967297"}, 2},
		{[]string{"topics", "list", "--bogus"}, 2},
		{[]string{"groups", "describe"}, 2},
		{[]string{"healthcheck", "extra"}, 2},
		{[]string{"version", "extra"}, 2},
		// Compaction's settings are checked with the others, before the
		// catalog, the bucket and the WAL are opened (exit 1 from
		// compaction.New).
		{[]string{"agent", "--catalog", "sqlite://" + filepath.Join(t.TempDir(), "c.db"), "--bucket", "mem://",
			"--data", t.TempDir(), "--listen", "127.0.0.1:0", "--admin-listen", "", "--compaction.interval=-1s"}, 2},
		{[]string{"help"}, 0},
		{[]string{"agent", "-h"}, 0},
		{[]string{"topics", "--help"}, 0},
		{[]string{"topics", "create", "-h"}, 0},
		// Nothing listens there: a failure, not a usage error.
		{[]string{"healthcheck", "--url", "http://127.0.0.1:1/healthz", "--timeout", "2s"}, 1},
	} {
		var out, errb bytes.Buffer
		if code := runMain(context.Background(), tc.args, &out, &errb); code != tc.want {
			t.Errorf("floe %q: exit %d, want %d\n%s", tc.args, code, tc.want, errb.String())
		}
	}
}

// TestAdminTLS: the admin commands reach agents over TLS, with a client
// certificate where the agents require one, and refuse half-given client
// certificates.
func TestAdminTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testenv.NewCA(t, dir, "admin")
	srvCert, srvKey := filepath.Join(dir, "srv.pem"), filepath.Join(dir, "srv.key")
	cliCert, cliKey := filepath.Join(dir, "cli.pem"), filepath.Join(dir, "cli.key")
	ca.Issue(t, "agent", true, srvCert, srvKey)
	ca.Issue(t, "admin", false, cliCert, cliKey)
	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	bs := newFake(t, kfake.ClusterID("floe-tls"), kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{pair}, ClientCAs: ca.Pool, ClientAuth: tls.RequireAndVerifyClientCert,
	}))
	// kfake listens on 127.0.0.1, which the server certificate names.
	res := decode[clusterJSON](t, mustRun(t, bs, "cluster", "-o", "json", "--tls-ca", ca.File,
		"--tls-client-cert", cliCert, "--tls-client-key", cliKey))
	if res.ClusterID != "floe-tls" {
		t.Fatalf("cluster over TLS: %+v", res)
	}
	cmd := newAdminCLI(io.Discard, io.Discard).commands()["cluster"]
	if err := cmd(context.Background(), []string{"--bootstrap", bs, "--tls-ca", ca.File, "--timeout", "1s"}); err == nil {
		t.Fatal("connected without the client certificate the agent requires")
	}
	if _, err := run(t, bs, "cluster", "--tls-ca", ca.File, "--tls-client-cert", cliCert); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("a client certificate without its key: %v", err)
	}
}
