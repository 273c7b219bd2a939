package deploytest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// TestUserDataScriptsParse renders every user data / startup template with
// sample values, as templatefile would, and checks with `bash -n` that the
// result and every script it writes through a quoted heredoc are valid
// shell. A misplaced ${…} (Terraform interpolation where a shell expansion
// was meant, or the reverse) fails here instead of on a booting instance.
func TestUserDataScriptsParse(t *testing.T) {
	bash := lookTool(t, "bash", "install bash")
	templates, _ := filepath.Glob(filepath.Join(root(t), "terraform", "*", "templates", "*.tftpl"))
	if len(templates) == 0 {
		t.Fatal("no templates found")
	}
	heredoc := regexp.MustCompile(`<<'([A-Z]+)'\n`)
	for _, path := range templates {
		rel, _ := filepath.Rel(root(t), path)
		t.Run(rel, func(t *testing.T) {
			rendered := renderTemplate(t, path)
			if !strings.HasPrefix(rendered, "#!/bin/bash\n") {
				t.Error("rendered script does not start with #!/bin/bash")
			}
			scripts := map[string]string{"the whole script": rendered}
			for _, m := range heredoc.FindAllStringSubmatchIndex(rendered, -1) {
				tag := rendered[m[2]:m[3]]
				body := rendered[m[1]:]
				end := strings.Index(body, "\n"+tag+"\n")
				if end < 0 {
					t.Errorf("heredoc %s is not terminated", tag)
					continue
				}
				if tag == "SCRIPT" {
					scripts[fmt.Sprintf("heredoc at byte %d", m[0])] = body[:end+1]
				}
			}
			for name, s := range scripts {
				f := filepath.Join(t.TempDir(), "script.sh")
				if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
					t.Fatal(err)
				}
				if out, err := runCmd(t, 30*time.Second, nil, bash, "-n", f); err != nil {
					t.Errorf("%s: bash -n: %v\n%s\n--- script ---\n%s", name, err, indent(out), indent(s))
				}
			}
			if len(scripts) < 2 {
				t.Errorf("found no <<'SCRIPT' heredoc: the agent start script is missing")
			}
		})
	}
}

// renderTemplate renders a user data / startup template as templatefile
// would, each variable set to "sample-<name>".
func renderTemplate(t *testing.T, path string) string {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, diags := hclsyntax.ParseTemplate(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	vars := map[string]cty.Value{}
	for _, tr := range tmpl.Variables() {
		vars[tr.RootName()] = cty.StringVal("sample-" + tr.RootName())
	}
	v, diags := tmpl.Value(&hcl.EvalContext{Variables: vars})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return v.AsString()
}

// agentTemplates are the two modules' start scripts, rendered.
func agentTemplates(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, rel := range []string{"terraform/aws/templates/user-data.sh.tftpl", "terraform/gcp/templates/startup.sh.tftpl"} {
		out[rel] = renderTemplate(t, filepath.Join(root(t), rel))
	}
	return out
}

// TestAgentStartKeepsCachedImage runs each start script's image pull with
// a docker whose pull fails (a registry or NAT outage): an agent restarting
// then must start the image it already has, and fail only without one. The
// scripts ran a bare `docker pull` under set -e, so every restart during an
// outage failed, and systemd retried it every 5 s until the registry came
// back.
func TestAgentStartKeepsCachedImage(t *testing.T) {
	bash := lookTool(t, "bash", "install bash")
	bin := t.TempDir()
	fake := "#!/bin/sh\ncase \"$1\" in\npull) echo 'registry unreachable' >&2; exit 1 ;;\nimage) [ \"$1 $2\" = 'image inspect' ] && [ \"$FAKE_CACHED\" = 1 ] ;;\n*) exit 3 ;;\nesac\n"
	if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	for rel, rendered := range agentTemplates(t) {
		start := strings.Index(rendered, "docker pull ")
		run := strings.Index(rendered, "exec docker run")
		if start < 0 || run < start {
			t.Errorf("%s: no docker pull before exec docker run", rel)
			continue
		}
		start = strings.LastIndex(rendered[:start], "\n") + 1
		pull := rendered[start:run]
		script := filepath.Join(t.TempDir(), "pull.sh")
		if err := os.WriteFile(script, []byte("set -euo pipefail\n"+pull+"echo started\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, cached := range []bool{true, false} {
			env := []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "FAKE_CACHED=0"}
			if cached {
				env[1] = "FAKE_CACHED=1"
			}
			out, err := runCmd(t, 30*time.Second, env, bash, script)
			switch started := err == nil && strings.Contains(out, "started"); {
			case cached && !started:
				t.Errorf("%s: with the registry down and the image cached, the agent does not start (%v):\n%s\n--- pull ---\n%s", rel, err, indent(out), indent(pull))
			case !cached && started:
				t.Errorf("%s: with the registry down and no image, the start goes on:\n%s", rel, indent(out))
			}
		}
	}
}

// TestAgentIdentityFromMetadata: each agent passes a fixed --agent-id, its
// instance's, so that it keeps its Kafka node id across restarts (without
// one every start was a new node id), and on AWS its zone is the
// availability zone's ID: AZ names (us-east-1a) map to different physical
// zones in each account, so clients in other accounts, which name their
// zone by ID as MSK does, would be sent across zones.
func TestAgentIdentityFromMetadata(t *testing.T) {
	want := map[string]map[string]*regexp.Regexp{
		"terraform/aws/templates/user-data.sh.tftpl": {
			"agent-id": regexp.MustCompile(`^imds instance-id$`),
			"zone":     regexp.MustCompile(`^imds placement/availability-zone-id$`),
		},
		"terraform/gcp/templates/startup.sh.tftpl": {
			"agent-id": regexp.MustCompile(`^md (name|id)$`),
			"zone":     regexp.MustCompile(`^md zone$`),
		},
	}
	for rel, rendered := range agentTemplates(t) {
		args := agentArgsBlock.FindStringSubmatch(rendered)
		if args == nil {
			t.Errorf("%s: no agent_args=( ... )", rel)
			continue
		}
		for flag, source := range want[rel] {
			m := regexp.MustCompile(`(?m)^\s*--` + flag + ` "\$([a-z_]+)"$`).FindStringSubmatch(args[1])
			if m == nil {
				t.Errorf("%s: agent_args has no --%s \"$variable\"", rel, flag)
				continue
			}
			set := regexp.MustCompile(`(?m)^` + m[1] + `=\$\((.*)\)$`).FindStringSubmatch(rendered)
			if set == nil || !source.MatchString(set[1]) {
				got := "nothing"
				if set != nil {
					got = set[1]
				}
				t.Errorf("%s: --%s is $%s, set from %s; want it from %s", rel, flag, m[1], got, source)
			}
		}
	}
}
