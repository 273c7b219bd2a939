package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
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
}
