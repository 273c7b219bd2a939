package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
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
// are errors, as unknown flags are; keys that are flags of one of shared
// are skipped, so that one file serves several commands (`floe migrate`
// reads the agent's file, which holds the catalog URL).
func parseLayered(fs *flag.FlagSet, args []string, configFlag string, getenv func(string) string, shared ...*flag.FlagSet) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %s: %w", errUsage, fs.Name(), err)
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
			if slices.ContainsFunc(shared, func(o *flag.FlagSet) bool { return o.Lookup(k) != nil }) {
				continue
			}
			return fmt.Errorf("%w: config file %s: unknown setting %q", errUsage, path, k)
		}
		if set[k] || k == configFlag {
			continue
		}
		if err := fs.Set(k, values[k]); err != nil {
			return fmt.Errorf("%w: config file %s: %s: %q: %v", errUsage, path, k, values[k], err)
		}
	}
	return nil
}

// flattenYAML reads a YAML mapping of settings. Nested mappings join their
// keys with '.', so `catalog: {max-conns: 4}` is catalog.max-conns; lists
// become comma-separated values. Scalars are taken as written, not as YAML
// would type them, so a value means what it means as a flag: `cluster: 0123`
// is "0123", not octal 83, and `zone: 1.10` is not 1.1. An alias may name a
// value or a list but not a mapping: each alias to a mapping is walked
// again, so ten aliases per level to the level below made a 663-byte file
// of 11 million settings (yaml.v3 bounds aliases only when it decodes into
// Go values, not into a yaml.Node), and no setting needs one.
func flattenYAML(raw []byte) (map[string]string, error) {
	// yaml.Unmarshal reads the first document only: settings after a
	// "---" would be ignored without a word.
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return nil, err
	}
	var next yaml.Node
	if err := dec.Decode(&next); err != io.EOF {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("line %d: a second YAML document: want one mapping of settings", next.Line)
	}
	out := map[string]string{}
	if len(doc.Content) == 0 { // an empty file
		return out, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping of settings", root.Line)
	}
	var walk func(prefix string, n *yaml.Node) error
	walk = func(prefix string, n *yaml.Node) error {
		if n.Kind == yaml.AliasNode {
			if n.Alias.Kind == yaml.MappingNode {
				return fmt.Errorf("line %d: %s: an alias (*%s) may not name a mapping", n.Line, prefix, n.Value)
			}
			n = n.Alias
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if k.Kind != yaml.ScalarNode {
					return fmt.Errorf("line %d: want a setting name", k.Line)
				}
				if err := walk(joinKey(prefix, k.Value), n.Content[i+1]); err != nil {
					return err
				}
			}
			return nil
		case yaml.SequenceNode:
			parts := make([]string, len(n.Content))
			for i, e := range n.Content {
				if e.Kind == yaml.AliasNode {
					e = e.Alias
				}
				if e.Kind != yaml.ScalarNode {
					return fmt.Errorf("line %d: %s: want a list of values", e.Line, prefix)
				}
				parts[i] = e.Value
			}
			return addSetting(out, prefix, strings.Join(parts, ","), n.Line)
		case yaml.ScalarNode:
			v := n.Value
			if n.Tag == "!!null" {
				v = ""
			}
			return addSetting(out, prefix, v, n.Line)
		}
		return fmt.Errorf("line %d: %s: unsupported value", n.Line, prefix)
	}
	return out, walk("", root)
}

// addSetting records one setting; a name given twice (`catalog.max-conns` and
// `catalog: {max-conns}`) is an error, as YAML makes a repeated key.
func addSetting(out map[string]string, key, v string, line int) error {
	if _, dup := out[key]; dup {
		return fmt.Errorf("line %d: %s is set twice", line, key)
	}
	out[key] = v
	return nil
}

func joinKey(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}
