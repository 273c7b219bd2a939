package deploytest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// Terraform cannot validate the modules here (providers cannot be
// downloaded), so this file does the provider-independent part of
// `terraform validate` itself, on the HCL syntax tree.

// tfModule is what a directory of .tf files declares.
type tfModule struct {
	dir        string
	vars       map[string]bool // name -> required (no default)
	locals     map[string]bool
	resources  map[string]bool // "type.name"
	data       map[string]bool // "type.name"
	ephemerals map[string]bool // "type.name"
	outputs    map[string]bool
	calls      map[string]*moduleCall
	bodies     []*hclsyntax.Body // one per file
}

type moduleCall struct {
	name   string
	source string
	args   map[string]hcl.Range
	rng    hcl.Range
}

// moduleMeta are module block arguments that are not input variables.
var moduleMeta = map[string]bool{
	"source": true, "version": true, "providers": true,
	"count": true, "for_each": true, "depends_on": true,
}

// tfModuleDirs lists every directory under terraform/ holding .tf files.
func tfModuleDirs(t *testing.T) []string {
	t.Helper()
	base := filepath.Join(root(t), "terraform")
	seen := map[string]bool{}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".terraform" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".tf") {
			seen[filepath.Dir(p)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for d := range seen {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	if len(dirs) < 4 {
		t.Fatalf("found only %d Terraform directories under %s: %v", len(dirs), base, dirs)
	}
	return dirs
}

func loadModule(t *testing.T, dir string) *tfModule {
	t.Helper()
	m := &tfModule{
		dir: dir, vars: map[string]bool{}, locals: map[string]bool{},
		resources: map[string]bool{}, data: map[string]bool{}, ephemerals: map[string]bool{},
		outputs: map[string]bool{}, calls: map[string]*moduleCall{},
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no .tf files in %s: %v", dir, err)
	}
	p := hclparse.NewParser()
	for _, f := range files {
		file, diags := p.ParseHCLFile(f)
		if diags.HasErrors() {
			t.Fatalf("parse %s: %s", f, diags.Error())
		}
		body := file.Body.(*hclsyntax.Body)
		m.bodies = append(m.bodies, body)
		for _, b := range body.Blocks {
			switch b.Type {
			case "variable":
				_, hasDefault := b.Body.Attributes["default"]
				m.vars[b.Labels[0]] = !hasDefault
			case "locals":
				for name := range b.Body.Attributes {
					if m.locals[name] {
						t.Errorf("%s: local.%s declared twice", b.DefRange(), name)
					}
					m.locals[name] = true
				}
			case "resource":
				m.resources[b.Labels[0]+"."+b.Labels[1]] = true
			case "data":
				m.data[b.Labels[0]+"."+b.Labels[1]] = true
			case "ephemeral":
				m.ephemerals[b.Labels[0]+"."+b.Labels[1]] = true
			case "output":
				m.outputs[b.Labels[0]] = true
			case "module":
				c := &moduleCall{name: b.Labels[0], args: map[string]hcl.Range{}, rng: b.DefRange()}
				for name, a := range b.Body.Attributes {
					if name == "source" {
						v, diags := a.Expr.Value(nil)
						if diags.HasErrors() || v.Type() != cty.String {
							t.Fatalf("%s: module source must be a literal string", a.SrcRange)
						}
						c.source = v.AsString()
						continue
					}
					if !moduleMeta[name] {
						c.args[name] = a.SrcRange
					}
				}
				m.calls[c.name] = c
			}
		}
	}
	return m
}

// isLocalSource reports whether a module source is a path in this repo.
func isLocalSource(s string) bool { return strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") }

func TestTerraformModulesConsistent(t *testing.T) {
	for _, dir := range tfModuleDirs(t) {
		rel, _ := filepath.Rel(root(t), dir)
		t.Run(rel, func(t *testing.T) {
			m := loadModule(t, dir)
			for _, err := range m.check(t) {
				t.Error(err)
			}
		})
	}
}

// check returns every inconsistency in the module.
func (m *tfModule) check(t *testing.T) []error {
	var errs []error
	errorf := func(rng hcl.Range, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", rng, fmt.Sprintf(format, args...)))
	}

	// Module calls: inputs are the callee's variables, required ones given.
	callees := map[string]*tfModule{}
	for _, c := range m.calls {
		if !isLocalSource(c.source) {
			continue
		}
		calleeDir := filepath.Join(m.dir, c.source)
		if _, err := os.Stat(calleeDir); err != nil {
			errorf(c.rng, "module %q: source %s: %v", c.name, c.source, err)
			continue
		}
		callee := loadModule(t, calleeDir)
		callees[c.name] = callee
		for arg, rng := range c.args {
			if _, ok := callee.vars[arg]; !ok {
				errorf(rng, "module %q has no variable %q", c.name, arg)
			}
		}
		for v, required := range callee.vars {
			if _, given := c.args[v]; required && !given {
				errorf(c.rng, "module %q: required variable %q not given", c.name, v)
			}
		}
	}

	// Every reference resolves to a declaration.
	resolve := func(tr hcl.Traversal, extra map[string]bool) {
		rootName := tr.RootName()
		name := func(i int) (string, bool) {
			if i >= len(tr) {
				return "", false
			}
			a, ok := tr[i].(hcl.TraverseAttr)
			return a.Name, ok
		}
		rng := tr.SourceRange()
		switch rootName {
		case "path", "terraform", "count", "each", "self":
		case "var":
			if n, ok := name(1); !ok || !hasKey(m.vars, n) {
				errorf(rng, "var.%s is not declared", n)
			}
		case "local":
			if n, ok := name(1); !ok || !m.locals[n] {
				errorf(rng, "local.%s is not declared", n)
			}
		case "module":
			n, ok := name(1)
			if c, declared := m.calls[n]; !ok || !declared {
				errorf(rng, "module.%s is not declared", n)
			} else if callee := callees[c.name]; callee != nil {
				if out, ok := name(2); ok && !callee.outputs[out] {
					errorf(rng, "module.%s has no output %q", n, out)
				}
			}
		case "data", "ephemeral":
			typ, ok1 := name(1)
			n, ok2 := name(2)
			set := m.data
			if rootName == "ephemeral" {
				set = m.ephemerals
			}
			if !ok1 || !ok2 || !set[typ+"."+n] {
				errorf(rng, "%s.%s.%s is not declared", rootName, typ, n)
			}
		default:
			if extra[rootName] {
				return
			}
			if n, ok := name(1); !ok || !m.resources[rootName+"."+n] {
				errorf(rng, "resource %s.%s is not declared", rootName, n)
			}
		}
	}
	for _, body := range m.bodies {
		for _, b := range body.Blocks {
			if b.Type == "terraform" {
				continue
			}
			walkBody(b.Body, b.Type, map[string]bool{}, resolve)
			m.checkTemplatefiles(b.Body, errorf)
		}
	}
	return errs
}

func hasKey[V any](m map[string]V, k string) bool { _, ok := m[k]; return ok }

// walkBody calls fn with every variable reference in a block body. extra
// holds the names dynamic blocks bring into scope (their iterators).
func walkBody(body *hclsyntax.Body, blockType string, extra map[string]bool, fn func(hcl.Traversal, map[string]bool)) {
	for name, attr := range body.Attributes {
		switch {
		case blockType == "lifecycle" && name == "ignore_changes":
			continue // attribute names of the resource itself, not references
		case name == "provider" || name == "providers":
			continue // provider references (aws.west) are not values
		case blockType == "variable" && name == "type":
			continue // a type expression: list(string) is not a reference
		}
		for _, tr := range attr.Expr.Variables() {
			fn(tr, extra)
		}
	}
	for _, b := range body.Blocks {
		inner := extra
		if b.Type == "dynamic" {
			iter := b.Labels[0]
			if it, ok := b.Body.Attributes["iterator"]; ok {
				iter = hcl.ExprAsKeyword(it.Expr)
			}
			inner = maps(extra, iter)
		}
		walkBody(b.Body, b.Type, inner, fn)
	}
}

func maps(m map[string]bool, add string) map[string]bool {
	out := make(map[string]bool, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	out[add] = true
	return out
}

// checkTemplatefiles checks each templatefile(path, vars) call in body: the
// template exists and parses, and the variables passed are exactly the ones
// it uses (a missing one fails at plan time; an unused one is a bug).
func (m *tfModule) checkTemplatefiles(body *hclsyntax.Body, errorf func(hcl.Range, string, ...any)) {
	hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
		call, ok := n.(*hclsyntax.FunctionCallExpr)
		if !ok || call.Name != "templatefile" || len(call.Args) != 2 {
			return nil
		}
		ctx := &hcl.EvalContext{Variables: map[string]cty.Value{
			"path": cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal(m.dir)}),
		}}
		pv, diags := call.Args[0].Value(ctx)
		if diags.HasErrors() {
			errorf(call.Args[0].Range(), "templatefile path must be a literal under path.module: %s", diags.Error())
			return nil
		}
		path := pv.AsString()
		src, err := os.ReadFile(path)
		if err != nil {
			errorf(call.Args[0].Range(), "template: %v", err)
			return nil
		}
		tmpl, diags := hclsyntax.ParseTemplate(src, path, hcl.InitialPos)
		if diags.HasErrors() {
			errorf(call.Args[0].Range(), "template %s does not parse: %s", path, diags.Error())
			return nil
		}
		obj, ok := call.Args[1].(*hclsyntax.ObjectConsExpr)
		if !ok {
			errorf(call.Args[1].Range(), "templatefile variables must be an object literal")
			return nil
		}
		passed := map[string]bool{}
		for _, item := range obj.Items {
			passed[hcl.ExprAsKeyword(item.KeyExpr)] = true
		}
		used := map[string]bool{}
		for _, tr := range tmpl.Variables() {
			used[tr.RootName()] = true
			if !passed[tr.RootName()] {
				errorf(tr.SourceRange(), "template uses %q, which templatefile does not pass", tr.RootName())
			}
		}
		for k := range passed {
			if !used[k] {
				errorf(call.Args[1].Range(), "templatefile passes %q, which %s never uses", k, filepath.Base(path))
			}
		}
		return nil
	})
}

// The checker must catch what it claims to: feed it a broken module.
func TestTerraformCheckerCatchesMistakes(t *testing.T) {
	dir := t.TempDir()
	child := filepath.Join(dir, "child")
	if err := os.MkdirAll(filepath.Join(child, "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(child, "main.tf"), `
variable "needed" { type = string }
variable "optional" {
  type    = string
  default = "x"
}
output "ok" { value = var.needed }
resource "null_resource" "a" {
  triggers = { s = templatefile("${path.module}/templates/t.tftpl", { used = 1, unused = 2 }) }
  dynamic "setting" {
    for_each = [1]
    content { v = setting.value }
  }
  lifecycle { ignore_changes = [triggers] }
}
`)
	write(filepath.Join(child, "templates", "t.tftpl"), "${used} ${missing} $${escaped}\n")
	write(filepath.Join(dir, "main.tf"), `
module "c" {
  source   = "./child"
  optional = "y"
  bogus    = 1
}
output "a" { value = module.c.ok }
output "b" { value = module.c.nope }
output "c" { value = var.undeclared }
output "d" { value = local.nothing }
output "e" { value = data.aws_x.y.id }
output "f" { value = aws_thing.missing.id }
`)
	var got []string
	for _, err := range loadModule(t, dir).check(t) {
		got = append(got, err.Error())
	}
	for _, err := range loadModule(t, child).check(t) {
		got = append(got, err.Error())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		`required variable "needed" not given`,
		`has no variable "bogus"`,
		`has no output "nope"`,
		`var.undeclared is not declared`,
		`local.nothing is not declared`,
		`data.aws_x.y is not declared`,
		`resource aws_thing.missing is not declared`,
		`template uses "missing"`,
		`passes "unused"`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("checker missed %q; it reported:\n%s", want, indent(all))
		}
	}
	if n := len(got); n != 9 {
		t.Errorf("checker reported %d problems, want 9 (false positives?):\n%s", n, indent(all))
	}
}

// findBlock returns the module's top-level block of that type and labels
// (variable "name", data "type" "name"), or nil.
func findBlock(m *tfModule, typ string, labels ...string) *hclsyntax.Block {
	for _, body := range m.bodies {
		for _, b := range body.Blocks {
			if b.Type == typ && slices.Equal(b.Labels, labels) {
				return b
			}
		}
	}
	return nil
}

// tfFuncs are the Terraform functions the modules' validations and
// resource names use, as Terraform defines them.
var tfFuncs = map[string]function.Function{
	"can":        tryfunc.CanFunc,
	"regex":      stdlib.RegexFunc,
	"substr":     stdlib.SubstrFunc,
	"trimsuffix": stdlib.TrimSuffixFunc,
	"lower":      stdlib.LowerFunc,
	// Terraform's length takes a string (its characters) or a collection.
	"length": function.New(&function.Spec{
		Params: []function.Parameter{{Name: "value", Type: cty.DynamicPseudoType, AllowDynamicType: true}},
		Type:   function.StaticReturnType(cty.Number),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if args[0].Type() == cty.String {
				return stdlib.Strlen(args[0])
			}
			return stdlib.Length(args[0])
		},
	}),
}

// varContext evaluates expressions that refer to the variables in vars.
func varContext(vars map[string]cty.Value) *hcl.EvalContext {
	return &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)},
		Functions: tfFuncs,
	}
}

// accepts reports whether every validation of the module's variable name
// passes with the variables in vars (which hold name's value), as
// terraform plan would check it.
func accepts(t *testing.T, m *tfModule, name string, vars map[string]cty.Value) bool {
	t.Helper()
	b := findBlock(m, "variable", name)
	if b == nil {
		t.Fatalf("%s: no variable %q", m.dir, name)
	}
	ok := true
	for _, vb := range b.Body.Blocks {
		if vb.Type != "validation" {
			continue
		}
		cond, found := vb.Body.Attributes["condition"]
		if !found {
			t.Fatalf("%s: a validation without a condition", vb.DefRange())
		}
		r, diags := cond.Expr.Value(varContext(vars))
		if diags.HasErrors() {
			t.Fatalf("%s: cannot evaluate the condition for %#v: %s", cond.SrcRange, vars[name], diags.Error())
		}
		ok = ok && r.True()
	}
	return ok
}

// TestImageNamesItsVersion: both modules refuse an image with neither a
// tag nor a digest (Docker's implicit latest), and take a registry with a
// port, a tag and a digest. Agents pull their image at every start, so a
// moving tag can move a restarted agent to a newer release.
func TestImageNamesItsVersion(t *testing.T) {
	digest := "@sha256:" + strings.Repeat("0123456789abcdef", 4)
	for _, module := range []string{"aws", "gcp"} {
		m := loadModule(t, filepath.Join(root(t), "terraform", module))
		for image, want := range map[string]bool{
			"ghcr.io/floebroker/floe":                 false,
			"localhost:5000/floe":                     false,
			"floe":                                    false,
			"ghcr.io/floebroker/floe:v1.2.3":          true,
			"ghcr.io/floebroker/floe:latest":          true,
			"localhost:5000/floe:v1.2.3":              true,
			"ghcr.io/floebroker/floe" + digest:        true,
			"ghcr.io/floebroker/floe:v1.2.3" + digest: true,
		} {
			if got := accepts(t, m, "image", map[string]cty.Value{"image": cty.StringVal(image)}); got != want {
				t.Errorf("terraform/%s: var.image = %q: accepted %v, want %v", module, image, got, want)
			}
		}
	}
}
