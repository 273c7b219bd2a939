package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/floebroker/floe/wal"
)

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{
		"catalog":           "FLOE_CATALOG",
		"flush-interval":    "FLOE_FLUSH_INTERVAL",
		"catalog.max-conns": "FLOE_CATALOG_MAX_CONNS",
		"admin-listen":      "FLOE_ADMIN_LISTEN",
	} {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSettingsPrecedence: flags > FLOE_* environment > YAML file > defaults.
func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	yamlPath := filepath.Join(dir, "floe.yaml")
	// Nested mappings and dotted keys both name catalog.* settings.
	yamlText := `
bucket: mem://
listen: yaml:1
zone: yaml-zone
flush-interval: 77ms
auto-create-topics: true
default-partitions: 6
catalog:
  statement-timeout: 9s
`
	if err := os.WriteFile(yamlPath, []byte(yamlText), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"FLOE_CATALOG":           "sqlite:///from-env.db",
		"FLOE_LISTEN":            "env:2",
		"FLOE_ZONE":              "env-zone",
		"FLOE_CONFIG":            yamlPath,
		"FLOE_CATALOG_MAX_CONNS": "5",
	}
	fs, c := newServeFlags("agent", io.Discard)
	err := parseLayered(fs, []string{"--listen", "flag:3"}, "config", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen from flag", c.agent.Listen, "flag:3"},
		{"zone from env over yaml", c.agent.Zone, "env-zone"},
		{"catalog from env", c.catalogURL, "sqlite:///from-env.db"},
		{"bucket from yaml", c.bucketURL, "mem://"},
		{"flush interval from yaml", c.flushInterval, 77 * time.Millisecond},
		{"auto create from yaml", c.agent.AutoCreateTopics, true},
		{"partitions from yaml", c.agent.DefaultPartitions, int32(6)},
		{"nested key from yaml", c.catalog.StatementTimeout, 9 * time.Second},
		{"dotted flag from env", c.catalog.MaxConns, int32(5)},
		{"default kept", c.agent.ClusterID, "floe"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s: %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestSettingsErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("no-such-setting: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	none := func(string) string { return "" }
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"unknown yaml key", []string{"--config", bad}, nil},
		{"bad env value", nil, map[string]string{"FLOE_FLUSH_INTERVAL": "soon"}},
		{"positional argument", []string{"extra"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, _ := newServeFlags("agent", io.Discard)
			getenv := none
			if tc.env != nil {
				getenv = func(k string) string { return tc.env[k] }
			}
			if err := parseLayered(fs, tc.args, "config", getenv); !errors.Is(err, errUsage) {
				t.Fatalf("got %v, want a usage error", err)
			}
		})
	}
	fs, c := newServeFlags("agent", io.Discard)
	if err := parseLayered(fs, nil, "config", none); err != nil {
		t.Fatal(err)
	}
	if err := c.finish(); !errors.Is(err, errUsage) {
		t.Fatalf("agent without --catalog/--bucket: %v, want a usage error", err)
	}
	// Settings that would let the garbage collector or a replay lose or
	// repeat acknowledged records.
	for _, tc := range []struct{ flag, value string }{
		{"compaction.gc-grace", "90s"},            // under 4 × --upload-max-age
		{"compaction.producer-expiration", "5m"},  // under 20 × --upload-max-age
		{"compaction.tombstone-retention", "48h"}, // under the 7-day replay age
		// Settings with which an agent started but could not work.
		{"upload-max-age", "1ns"},
		{"heartbeat-interval", "1ns"},
		{"agent-ttl", "5s"}, // under 2 × the 3 s heartbeat
	} {
		fs, c := newServeFlags("agent", io.Discard)
		args := []string{"--catalog", "postgres://x", "--bucket", "file:///tmp/x", "--data", dir, "--" + tc.flag, tc.value}
		if err := parseLayered(fs, args, "config", none); err != nil {
			t.Fatal(err)
		}
		if err := c.finish(); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.flag) {
			t.Fatalf("--%s %s: %v, want a usage error about it", tc.flag, tc.value, err)
		}
	}
}

// TestSettingsYAMLScalarsVerbatim: a YAML value reaches its flag as
// written, as it would from the command line or the environment, not as
// YAML's reading of it as a number (0123 is octal 83 to YAML, a large
// integer becomes a float).
func TestSettingsYAMLScalarsVerbatim(t *testing.T) {
	path := filepath.Join(t.TempDir(), "floe.yaml")
	yamlText := `
cluster: 0123
agent-id: 123456789012345678901234
zone: 1.10
advertise: "quoted:9092"
flush-interval: 1m
auto-create-topics: True
zone-listeners: [a=localhost:1, b=localhost:2]
`
	if err := os.WriteFile(path, []byte(yamlText), 0o644); err != nil {
		t.Fatal(err)
	}
	fs, c := newServeFlags("agent", io.Discard)
	if err := parseLayered(fs, []string{"--config", path}, "config", func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"cluster", c.agent.ClusterID, "0123"},
		{"agent-id", c.agent.AgentID, "123456789012345678901234"},
		{"zone", c.agent.Zone, "1.10"},
		{"advertise", c.agent.Advertise, "quoted:9092"},
		{"flush-interval", c.flushInterval, time.Minute},
		{"auto-create-topics", c.agent.AutoCreateTopics, true},
		{"zone-listeners", len(c.agent.ZoneListeners), 2},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s: %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestFlattenYAMLErrors(t *testing.T) {
	for name, text := range map[string]string{
		"not a mapping":       "- listen: x\n",
		"dotted and nested":   "catalog.max-conns: 3\ncatalog:\n  max-conns: 4\n",
		"repeated key":        "zone: a\nzone: b\n",
		"list of mappings":    "zone-listeners:\n  - a: b\n",
		"mapping as key name": "? {a: b}\n: c\n",
		"alias of a mapping":  "catalog: &c {max-conns: 4}\nother: *c\n",
		// Read as one document, the second was ignored without a word.
		"second document": "zone: a\n---\nflush-interval: 1s\n",
	} {
		if got, err := flattenYAML([]byte(text)); err == nil {
			t.Errorf("%s: %v, want an error", name, got)
		}
	}
	if got, err := flattenYAML(nil); err != nil || len(got) != 0 {
		t.Errorf("empty file: %v, %v", got, err)
	}
	if got, err := flattenYAML([]byte("# settings\n---\nzone: a\n")); err != nil || got["zone"] != "a" {
		t.Errorf("one document after ---: %v, %v", got, err)
	}
}

// TestFlattenYAMLAliasBomb: an alias may not name a mapping. Each was
// walked again, so levels of ten aliases to the level below multiplied
// the settings by ten per level: seven levels, 663 bytes, made 11 million
// in 4 minutes. Four levels here (11,111 settings before) keep the old
// expansion quick to see. Aliases of values and lists still work.
func TestFlattenYAMLAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("l0: &l0 {zone: a}\n")
	for l := 1; l <= 4; l++ {
		fmt.Fprintf(&b, "l%d: &l%d {", l, l)
		for k := range 10 {
			fmt.Fprintf(&b, "k%d: *l%d, ", k, l-1)
		}
		b.WriteString("}\n")
	}
	if got, err := flattenYAML([]byte(b.String())); err == nil || !strings.Contains(err.Error(), "may not name a mapping") {
		t.Fatalf("%d settings, err %v; want a refused alias", len(got), err)
	}

	got, err := flattenYAML([]byte("zone: &z a\nrack: *z\nx: &l [p, q]\ny: *l\nz: [*z, b]\n"))
	if want := map[string]string{"zone": "a", "rack": "a", "x": "p,q", "y": "p,q", "z": "a,b"}; err != nil || !maps.Equal(got, want) {
		t.Fatalf("aliases of values: %v, %v; want %v", got, err, want)
	}
}

// TestDevIgnoresBucketAndCatalogEnv: `floe dev` (and `make run`) takes its
// bucket and catalog from flags only: a shell set up for production would
// have run it on the production bucket with a new catalog knowing none of
// its objects, which dev's orphan sweep then deleted. Other variables
// still apply, and `floe agent` reads these two as before.
func TestDevIgnoresBucketAndCatalogEnv(t *testing.T) {
	t.Setenv("FLOE_BUCKET", "s3://prod-segments")
	t.Setenv("FLOE_CATALOG", "postgres://prod/floe")
	t.Setenv("FLOE_CLUSTER", "dev-env")
	data := t.TempDir()
	var stderr strings.Builder
	fs, c := newServeFlags("dev", io.Discard)
	if err := parseLayered(fs, []string{"--data", data}, "config", devGetenv(&stderr)); err != nil {
		t.Fatal(err)
	}
	if err := c.finish(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.bucketURL, "file://") || !strings.HasPrefix(c.catalogURL, "sqlite://") {
		t.Fatalf("floe dev with FLOE_BUCKET and FLOE_CATALOG set uses %s and %s", c.bucketURL, c.catalogURL)
	}
	if c.agent.ClusterID != "dev-env" {
		t.Errorf("cluster %q: other FLOE_ variables must still apply", c.agent.ClusterID)
	}
	if !strings.Contains(stderr.String(), "FLOE_BUCKET") {
		t.Errorf("nothing said about the ignored FLOE_BUCKET: %q", stderr.String())
	}

	fs, c = newServeFlags("agent", io.Discard)
	if err := parseLayered(fs, nil, "config", os.Getenv); err != nil {
		t.Fatal(err)
	}
	if c.bucketURL != "s3://prod-segments" {
		t.Errorf("floe agent bucket %q, want FLOE_BUCKET's", c.bucketURL)
	}
}

// TestWALDrainTimeoutSetting: --wal-drain-timeout (the docs named a
// --wal.drain-timeout no command took) reaches the WAL from a flag, the
// environment or the YAML file — the drain was a fixed 30 s whatever
// --produce-timeout and the orchestrator's SIGKILL delay were — and must be
// positive.
func TestWALDrainTimeoutSetting(t *testing.T) {
	dir := t.TempDir()
	yamlPath := filepath.Join(dir, "floe.yaml")
	if err := os.WriteFile(yamlPath, []byte("wal-drain-timeout: 7s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"--catalog", "postgres://x", "--bucket", "file:///tmp/x", "--data", dir}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want time.Duration
	}{
		{"default", nil, nil, wal.DefaultDrainTimeout},
		{"flag", []string{"--wal-drain-timeout", "90s"}, nil, 90 * time.Second},
		{"env", nil, map[string]string{"FLOE_WAL_DRAIN_TIMEOUT": "45s"}, 45 * time.Second},
		{"yaml", []string{"--config", yamlPath}, nil, 7 * time.Second},
	} {
		fs, c := newServeFlags("agent", io.Discard)
		if err := parseLayered(fs, append(base, tc.args...), "config", func(k string) string { return tc.env[k] }); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := c.finish(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := c.walConfig(nil, nil).DrainTimeout; got != tc.want {
			t.Errorf("%s: WAL drain timeout %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, v := range []string{"0s", "-1s"} {
		fs, c := newServeFlags("agent", io.Discard)
		if err := parseLayered(fs, append(base, "--wal-drain-timeout", v), "config", func(string) string { return "" }); err != nil {
			t.Fatal(err)
		}
		if err := c.finish(); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "wal-drain-timeout") {
			t.Errorf("--wal-drain-timeout %s: %v, want a usage error about it", v, err)
		}
	}
}
