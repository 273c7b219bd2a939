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
			rendered := v.AsString()
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
