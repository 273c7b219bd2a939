package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Settings layering: a flag given on the command line wins over its FLOE_*
// environment variable, which wins over the YAML file, which wins over the
// flag's default. The environment variable and the YAML key of every flag
// are derived from its name, so a new flag needs no extra wiring.

// envName is the environment variable of a flag: FLOE_ and the name
// upper-cased with '-' and '.' as '_'.
func envName(flagName string) string {
	return "FLOE_" + strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToUpper(flagName))
}

// parseLayered parses args into fs, then fills every flag not given on the
// command line from its environment variable, then from the YAML file named
// by the flag configFlag (or its environment variable). Unknown YAML keys
// are errors, as unknown flags are.
func parseLayered(fs *flag.FlagSet, args []string, configFlag string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || envErr != nil {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%w: %s=%q: %v", errUsage, envName(f.Name), v, err)
				return
			}
			set[f.Name] = true
		}
	})
	if envErr != nil {
		return envErr
	}

	path := ""
	if f := fs.Lookup(configFlag); f != nil {
		path = f.Value.String()
	}
	if path == "" {
		return nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config file: %w", err)
	}
	values, err := flattenYAML(raw)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if fs.Lookup(k) == nil {
			return fmt.Errorf("%w: config file %s: unknown setting %q", errUsage, path, k)
		}
		if set[k] || k == configFlag {
			continue
		}
		if err := fs.Set(k, values[k]); err != nil {
			return fmt.Errorf("%w: config file %s: %s: %v", errUsage, path, k, err)
		}
	}
	return nil
}

// flattenYAML reads a YAML mapping of settings. Nested mappings join their
// keys with '.', so `catalog: {max-conns: 4}` is catalog.max-conns; lists
// become comma-separated values.
func flattenYAML(raw []byte) (map[string]string, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	out := map[string]string{}
	var walk func(prefix string, v any) error
	walk = func(prefix string, v any) error {
		switch x := v.(type) {
		case map[string]any:
			for k, vv := range x {
				if err := walk(joinKey(prefix, k), vv); err != nil {
					return err
				}
			}
		case []any:
			parts := make([]string, len(x))
			for i, e := range x {
				parts[i] = fmt.Sprint(e)
			}
			out[prefix] = strings.Join(parts, ",")
		case nil:
			out[prefix] = ""
		default:
			out[prefix] = fmt.Sprint(x)
		}
		return nil
	}
	return out, walk("", map[string]any(doc))
}

func joinKey(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}
