package deploytest

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTerraformFormatted(t *testing.T) {
	tf := lookTool(t, "terraform", "install Terraform >= 1.11")
	out, err := runCmd(t, time.Minute, []string{"TF_IN_AUTOMATION=1"}, tf, "fmt", "-check", "-recursive", "-diff", "terraform")
	if err != nil {
		t.Fatalf("terraform fmt -check -recursive terraform: %v (run `terraform fmt -recursive terraform`)\n%s", err, indent(out))
	}
}

// TestTFLint runs tflint's bundled terraform ruleset (preset "all", see
// terraform/.tflint.hcl) on every module and example. scripts/tools.sh
// builds tflint from the Go module proxy the first time (about two minutes).
func TestTFLint(t *testing.T) {
	if out, err := runCmd(t, 8*time.Minute, nil, "bash", "scripts/tools.sh"); err != nil {
		unavailable(t, "scripts/tools.sh could not install tflint: %v\n%s", err, indent(out))
	}
	binDir, err := runCmd(t, time.Minute, nil, "bash", "scripts/tools.sh", "path")
	if err != nil {
		t.Fatal(err)
	}
	tflint := filepath.Join(strings.TrimSpace(binDir), "tflint")
	config := filepath.Join(root(t), "terraform", ".tflint.hcl")
	for _, dir := range tfModuleDirs(t) {
		rel, _ := filepath.Rel(root(t), dir)
		t.Run(rel, func(t *testing.T) {
			out, err := runCmd(t, 2*time.Minute, nil, tflint, "--chdir", dir, "--config", config, "--format", "compact")
			if err != nil {
				t.Fatalf("tflint %s: %v\n%s", rel, err, indent(out))
			}
		})
	}
}

// metricName matches a Floe metric name in Go source, Markdown or PromQL.
var metricName = regexp.MustCompile(`\bfloe_[a-z0-9_]+\b`)

// codeMetrics returns the metric names registered by non-test Go code
// (every package spells the full name in its Opts).
func codeMetrics(t *testing.T) map[string]string {
	t.Helper()
	decl := regexp.MustCompile(`Name:\s*"(floe_[a-z0-9_]+)"`)
	found := map[string]string{}
	err := filepath.WalkDir(root(t), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "deploy_test" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			rel, _ := filepath.Rel(root(t), p)
			found[m[1]] = rel
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// docMetrics returns the metrics docs/metrics.md documents, and those it
// lists as planned (under a "Planned" heading): not exported yet.
func docMetrics(t *testing.T) (documented, planned map[string]bool) {
	t.Helper()
	documented, planned = map[string]bool{}, map[string]bool{}
	inPlanned := false
	for _, line := range strings.Split(readFile(t, "docs/metrics.md"), "\n") {
		if strings.HasPrefix(line, "#") {
			inPlanned = strings.Contains(strings.ToLower(line), "planned")
		}
		// A table row's first cell defines a metric; the rest is prose.
		cells := strings.Split(strings.TrimSpace(line), "|")
		if len(cells) < 3 || cells[0] != "" {
			continue
		}
		m := metricName.FindString(cells[1])
		switch {
		case m == "":
		case inPlanned:
			planned[m] = true
		default:
			documented[m] = true
		}
	}
	return documented, planned
}

// TestMetricsDocumented keeps docs/metrics.md exact: every metric the code
// registers is documented, and every documented metric exists.
func TestMetricsDocumented(t *testing.T) {
	code := codeMetrics(t)
	if len(code) < 10 {
		t.Fatalf("found only %d metrics in the code; is the pattern stale?", len(code))
	}
	documented, planned := docMetrics(t)
	for name, file := range code {
		if !documented[name] {
			t.Errorf("%s registers %s, which docs/metrics.md does not document (add a table row)", file, name)
		}
	}
	for name := range documented {
		if _, ok := code[name]; !ok {
			t.Errorf("docs/metrics.md documents %s, which no package registers (remove it or move it under Planned)", name)
		}
	}
	for name := range planned {
		if file, ok := code[name]; ok {
			t.Errorf("docs/metrics.md lists %s as planned, but %s registers it: document it", name, file)
		}
	}
}

type grafanaPanel struct {
	ID      int            `json:"id"`
	Type    string         `json:"type"`
	Title   string         `json:"title"`
	Desc    string         `json:"description"`
	GridPos map[string]int `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

func TestGrafanaDashboard(t *testing.T) {
	var dash struct {
		Title  string         `json:"title"`
		UID    string         `json:"uid"`
		Panels []grafanaPanel `json:"panels"`
	}
	if err := json.Unmarshal([]byte(readFile(t, "docker/grafana/floe-dashboard.json")), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Error("dashboard needs a title and a uid")
	}
	documented, planned := docMetrics(t)
	ids := map[int]bool{}
	var titles []string
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		titles = append(titles, strings.ToLower(p.Title))
		if p.Type == "row" {
			continue
		}
		if p.Desc == "" {
			t.Errorf("panel %q has no description", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		for _, q := range p.Targets {
			if strings.Count(q.Expr, "(") != strings.Count(q.Expr, ")") {
				t.Errorf("panel %q: unbalanced parentheses in %s", p.Title, q.Expr)
			}
			for _, m := range metricName.FindAllString(q.Expr, -1) {
				base := m
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if trimmed, ok := strings.CutSuffix(m, suffix); ok && (documented[trimmed] || planned[trimmed]) {
						base = trimmed
					}
				}
				if !documented[base] && !planned[base] {
					t.Errorf("panel %q queries %s, which docs/metrics.md does not document", p.Title, m)
				}
			}
		}
	}
	// What the dashboard is for (issue 8): each of these has a panel.
	for _, want := range []string{"produce latency", "fetch latency", "segment object size", "operations per second",
		"operation latency", "commit latency", "cache hit ratio", "consumer lag", "live agents", "requests per second"} {
		if !slices.ContainsFunc(titles, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("dashboard has no %q panel", want)
		}
	}
}

func TestComposeTopology(t *testing.T) {
	c := loadCompose(t)
	for _, svc := range []string{"postgres", "minio", "minio-init", "floe-1", "floe-2", "prometheus", "grafana"} {
		if _, ok := c.Services[svc]; !ok {
			t.Errorf("compose.yaml has no %s service", svc)
		}
	}
	advertised := map[string]string{}
	published := map[string]string{}
	for name, svc := range c.Services {
		for _, p := range svc.Ports {
			host, _, _ := strings.Cut(p, ":")
			if other, dup := published[host]; dup {
				t.Errorf("%s and %s both publish host port %s", name, other, host)
			}
			published[host] = name
		}
		for _, v := range svc.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(root(t), "docker", src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s mounts volume %s, which is not declared", name, src)
			}
		}
		if len(svc.Command) == 0 || svc.Command[0] != "agent" {
			continue
		}
		var listen, advertise string
		for _, a := range svc.Command {
			if v, ok := strings.CutPrefix(a, "--advertise="); ok {
				advertise = v
			}
			if v, ok := strings.CutPrefix(a, "--listen="); ok {
				listen = v
			}
		}
		if other, dup := advertised[advertise]; dup || advertise == "" {
			t.Errorf("%s advertises %q, like %s: each agent needs its own address", name, advertise, other)
		}
		advertised[advertise] = name
		// Host clients reach the advertised localhost port through the
		// published port, which must map to the listening one.
		_, aport, _ := strings.Cut(advertise, ":")
		_, lport, _ := strings.Cut(listen, ":")
		if !slices.Contains(svc.Ports, aport+":"+lport) {
			t.Errorf("%s advertises port %s but does not publish it to its listen port %s (ports %v)", name, aport, lport, svc.Ports)
		}
		deps, _ := svc.DependsOn.(map[string]any)
		for _, d := range []string{"postgres", "minio-init"} {
			if _, ok := deps[d]; !ok {
				t.Errorf("%s does not wait for %s", name, d)
			}
		}
	}
	for _, svc := range []string{"prometheus", "grafana"} {
		if !slices.Contains(c.Services[svc].Profiles, "monitoring") {
			t.Errorf("%s should be in the optional monitoring profile", svc)
		}
	}
	// Prometheus scrapes every agent's admin port.
	prom := readFile(t, "docker/prometheus.yml")
	for name, svc := range c.Services {
		if len(svc.Command) > 0 && svc.Command[0] == "agent" && !strings.Contains(prom, svc.Hostname+":9644") {
			t.Errorf("docker/prometheus.yml does not scrape %s (%s:9644)", name, svc.Hostname)
		}
	}
}

func TestDockerfile(t *testing.T) {
	src := readFile(t, "docker/Dockerfile")
	for _, want := range []struct{ what, pattern string }{
		{"a Go builder stage", `(?m)^FROM .*golang:\$\{GO_VERSION\} AS build`},
		{"the shared static build script", `docker/build\.sh /out/floe`},
		{"a distroless static runtime", `(?m)^FROM gcr\.io/distroless/static`},
		{"a non-root user", `(?m)^USER 65532`},
		{"the Kafka port", `(?m)^EXPOSE .*\b9092\b`},
		{"the admin port", `(?m)^EXPOSE .*\b9644\b`},
		{"a HEALTHCHECK using floe healthcheck", `(?s)HEALTHCHECK .*"floe", "healthcheck"|HEALTHCHECK .*/floe", "healthcheck"`},
	} {
		if !regexp.MustCompile(want.pattern).MatchString(src) {
			t.Errorf("docker/Dockerfile lacks %s (/%s/)", want.what, want.pattern)
		}
	}
	build := readFile(t, "docker/build.sh")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.version="} {
		if !strings.Contains(build, want) {
			t.Errorf("docker/build.sh lacks %s", want)
		}
	}
}
