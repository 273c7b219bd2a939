package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The deployment files start agents with flags and FLOE_* variables; the
// binary is written elsewhere and may rename or drop a flag. These tests
// read the flags the binary really accepts from its own usage output and
// check every deployment file against them.

var (
	floeOnce sync.Once
	floeDir  string // removed by TestMain
	floeBin  string
	floeErr  error
	floeOut  string
)

// floeBinary builds cmd/floe once per test run.
func floeBinary(t *testing.T) string {
	t.Helper()
	floeOnce.Do(func() {
		// A prebuilt binary (for example the one `make build` made) saves
		// a build.
		if p := os.Getenv("FLOE_DEPLOYTEST_BIN"); p != "" {
			floeBin = p
			return
		}
		dir, err := os.MkdirTemp("", "floe-deploytest-")
		if err != nil {
			floeErr = err
			return
		}
		floeDir = dir
		floeBin = filepath.Join(dir, "floe")
		// The image's build command, so the scripts' builds reuse the
		// compiled packages and only relink.
		floeOut, floeErr = runCmd(t, 8*time.Minute, nil, "sh", "docker/build.sh", floeBin, "deploytest")
	})
	if floeErr != nil {
		unavailable(t, "cmd/floe does not build yet, so its flags cannot be read: %v\n%s", floeErr, indent(floeOut))
	}
	return floeBin
}

// flagLine matches a flag in Go's flag.PrintDefaults output ("  -name type").
var flagLine = regexp.MustCompile(`(?m)^\s+--?([A-Za-z0-9][A-Za-z0-9._-]*)\b`)

// commandFlags returns the flags `floe <command> -h` lists.
func commandFlags(t *testing.T, command string) map[string]bool {
	t.Helper()
	bin := floeBinary(t)
	// -h exits non-zero with the standard flag package; the usage is what
	// matters.
	out, _ := exec.Command(bin, command, "-h").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) == 0 {
		t.Fatalf("`floe %s -h` listed no flags:\n%s", command, indent(string(out)))
	}
	return flags
}

// envOf is the variable that sets a flag, as cmd/floe derives it: FLOE_
// and the name upper-cased with '-' and '.' as '_' (--catalog.max-conns is
// FLOE_CATALOG_MAX_CONNS).
func envOf(flag string) string {
	return "FLOE_" + strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToUpper(flag))
}

func knownEnv(flags map[string]bool) map[string]bool {
	env := make(map[string]bool, len(flags))
	for f := range flags {
		env[envOf(f)] = true
	}
	return env
}

// notAgentEnv are FLOE_* variables that are not `floe agent` settings.
func notAgentEnv(name string) bool {
	return strings.HasPrefix(name, "FLOE_TEST_") || name == "FLOE_BOOTSTRAP" ||
		name == "FLOE_TOOLS_DIR" || name == "FLOE_TOOLS" || name == "FLOE_SERVICES_DIR" || name == "FLOE_BIN" ||
		strings.HasPrefix(name, "FLOE_MINIO_") || strings.HasPrefix(name, "FLOE_FAKEGCS_")
}

var (
	// agent_args=( ... ) arrays: the convention every shell file here uses
	// for the arguments of `floe agent`.
	agentArgsBlock = regexp.MustCompile(`(?s)agent_args=\((.*?)\n\s*\)`)
	argFlag        = regexp.MustCompile(`(?m)^\s*--([a-z0-9][a-z0-9-]*)`)
	envName        = regexp.MustCompile(`\bFLOE_[A-Z0-9_]+\b`)
)

// usage is one place a deployment file hands `floe agent` (or `floe dev`)
// a flag or a variable.
type usage struct {
	file, command string
	flag          string // a --flag, or
	env           string // a FLOE_* variable
}

func shellUsages(t *testing.T, rel string) []usage {
	t.Helper()
	src := readFile(t, rel)
	var us []usage
	blocks := agentArgsBlock.FindAllStringSubmatch(src, -1)
	if len(blocks) == 0 {
		t.Errorf("%s: no agent_args=( ... ) array found; the drift check relies on it", rel)
	}
	for _, b := range blocks {
		for _, m := range argFlag.FindAllStringSubmatch(b[1], -1) {
			us = append(us, usage{file: rel, command: "agent", flag: m[1]})
		}
	}
	for _, e := range envName.FindAllString(src, -1) {
		if !notAgentEnv(e) {
			us = append(us, usage{file: rel, command: "agent", env: e})
		}
	}
	return us
}

func TestDeploymentFlagsExist(t *testing.T) {
	agentFlags := commandFlags(t, "agent")
	devFlags := commandFlags(t, "dev")

	var us []usage
	templates, _ := filepath.Glob(filepath.Join(root(t), "terraform", "*", "templates", "*.tftpl"))
	if len(templates) < 2 {
		t.Fatalf("found %d user data templates, want the AWS and the GCP one", len(templates))
	}
	for _, p := range templates {
		rel, _ := filepath.Rel(root(t), p)
		us = append(us, shellUsages(t, rel)...)
	}
	us = append(us, shellUsages(t, "scripts/compose-local.sh")...)
	us = append(us, composeUsages(t)...)
	us = append(us, dockerfileUsages(t)...)

	for _, u := range us {
		known := agentFlags
		if u.command == "dev" {
			known = devFlags
		}
		switch {
		case u.flag != "" && !known[u.flag]:
			t.Errorf("%s gives `floe %s` --%s, which it does not accept; it accepts: %s",
				u.file, u.command, u.flag, sortedFlags(known))
		case u.env != "" && !knownEnv(known)[u.env]:
			t.Errorf("%s sets %s for `floe %s`, which matches none of its flags: %s",
				u.file, u.env, u.command, sortedFlags(known))
		}
	}
	// Every deployment must say where the catalog and the bucket are.
	for _, file := range []string{"terraform/aws/templates/user-data.sh.tftpl", "terraform/gcp/templates/startup.sh.tftpl", "docker/compose.yaml", "scripts/compose-local.sh"} {
		for _, need := range []string{"catalog", "bucket", "advertise", "zone"} {
			found := false
			for _, u := range us {
				found = found || (u.file == file && (u.flag == need || u.env == envOf(need)))
			}
			if !found {
				t.Errorf("%s does not set --%s", file, need)
			}
		}
	}
}

func sortedFlags(m map[string]bool) string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// composeUsages reads the agent services' command flags and FLOE_*
// environment from docker/compose.yaml.
func composeUsages(t *testing.T) []usage {
	t.Helper()
	c := loadCompose(t)
	var us []usage
	agents := 0
	for name, svc := range c.Services {
		if len(svc.Command) == 0 || (svc.Command[0] != "agent" && svc.Command[0] != "dev") {
			continue
		}
		cmd := svc.Command[0]
		if cmd == "agent" {
			agents++
		}
		for _, arg := range svc.Command[1:] {
			if strings.HasPrefix(arg, "-") {
				flag, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
				us = append(us, usage{file: "docker/compose.yaml", command: cmd, flag: flag})
			}
		}
		for k := range svc.Environment {
			if strings.HasPrefix(k, "FLOE_") && !notAgentEnv(k) {
				us = append(us, usage{file: "docker/compose.yaml", command: cmd, env: k})
			}
		}
		_ = name
	}
	if agents < 2 {
		t.Errorf("docker/compose.yaml runs %d agents, want 2", agents)
	}
	return us
}

// dockerfileUsages reads the image's ENV (which applies to whatever the
// container runs) and its default CMD.
func dockerfileUsages(t *testing.T) []usage {
	t.Helper()
	src := readFile(t, "docker/Dockerfile")
	var us []usage
	cmd := regexp.MustCompile(`(?m)^CMD \[(.*)\]`).FindStringSubmatch(src)
	if cmd == nil {
		t.Fatal("docker/Dockerfile has no CMD [...]")
	}
	var args []string
	for _, a := range strings.Split(cmd[1], ",") {
		args = append(args, strings.Trim(strings.TrimSpace(a), `"`))
	}
	command := args[0]
	for _, a := range args[1:] {
		if strings.HasPrefix(a, "-") {
			flag, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			us = append(us, usage{file: "docker/Dockerfile", command: command, flag: flag})
		}
	}
	for _, line := range regexp.MustCompile(`(?ms)^ENV (.*?[^\\])$`).FindAllString(src, -1) {
		for _, e := range envName.FindAllString(line, -1) {
			// The image's ENV applies to the default command and to `floe
			// agent`, which compose and Terraform run.
			us = append(us, usage{file: "docker/Dockerfile", command: command, env: e}, usage{file: "docker/Dockerfile", command: "agent", env: e})
		}
	}
	return us
}

// compose is the part of a compose file these tests read.
type compose struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		Profiles    []string          `yaml:"profiles"`
		Volumes     []string          `yaml:"volumes"`
		DependsOn   any               `yaml:"depends_on"`
		Hostname    string            `yaml:"hostname"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	var c compose
	if err := yaml.Unmarshal([]byte(readFile(t, "docker/compose.yaml")), &c); err != nil {
		t.Fatalf("docker/compose.yaml: %v", err)
	}
	return c
}
