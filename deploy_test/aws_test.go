package deploytest

import (
	"math/big"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// awsNameRule is what AWS (or the provider, for a name_prefix: the name's
// limit less its 26-character suffix) accepts for a name argument.
type awsNameRule struct {
	max   int
	valid *regexp.Regexp
}

var (
	anyName = regexp.MustCompile(`^[\w+=,.@:/ -]+$`)
	// Load balancers and target groups: letters, digits and dashes, not
	// starting or ending with a dash.
	lbName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$`)
	// RDS identifiers: a letter first, no two dashes in a row, no dash at
	// the end (a prefix ends in the dash before its suffix).
	rdsIdentifier = regexp.MustCompile(`^[a-z]([a-z0-9]|-[a-z0-9])*$`)
	rdsPrefix     = regexp.MustCompile(`^[a-z]([a-z0-9]|-[a-z0-9])*-?$`)
)

// awsNameRules covers every name argument of the AWS module made from
// var.name; a new one needs its rule here.
var awsNameRules = map[string]awsNameRule{
	"aws_s3_bucket.bucket_prefix":               {37, regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*$`)},
	"aws_iam_role.name_prefix":                  {38, anyName},
	"aws_iam_instance_profile.name_prefix":      {38, anyName},
	"aws_lb.name":                               {32, lbName},
	"aws_lb_target_group.name":                  {32, lbName},
	"aws_db_instance.identifier":                {63, rdsIdentifier},
	"aws_db_parameter_group.name_prefix":        {229, rdsPrefix},
	"aws_db_subnet_group.name_prefix":           {229, anyName},
	"aws_security_group.name_prefix":            {100, anyName},
	"aws_launch_template.name_prefix":           {99, anyName},
	"aws_autoscaling_group.name_prefix":         {229, anyName},
	"aws_autoscaling_policy.name":               {255, anyName},
	"aws_kms_grant.name":                        {256, anyName},
	"aws_db_instance.final_snapshot_identifier": {255, rdsIdentifier},
}

// nameCandidates are names of every length up to 64 with dashes where they
// can break a derived name: none, one at each place, two in a row, one at
// the end.
func nameCandidates() []string {
	var out []string
	for n := 1; n <= 64; n++ {
		plain := strings.Repeat("a", n)
		out = append(out, plain)
		for i := 1; i < n; i++ {
			out = append(out, plain[:i]+"-"+plain[i+1:])
		}
		if n >= 4 {
			out = append(out, plain[:1]+"--"+plain[3:])
		}
	}
	return out
}

// TestAWSNamesFitLimits: every name the AWS module makes from var.name is
// valid for every var.name its validation accepts, with bucket_name unset
// (the bucket's name generated from var.name) and set, the other variables
// at their defaults. It accepted 32 characters, and above 27 the plan
// failed (bucket_prefix over 37); at 31 the load balancer's name,
// "<name>-kafka" cut to 32, ended in a dash; with two dashes in a row the
// RDS identifier was refused.
func TestAWSNamesFitLimits(t *testing.T) {
	m := loadModule(t, filepath.Join(root(t), "terraform", "aws"))
	defaults := varDefaults(t, m)
	checked := map[string]bool{}
	for _, bucketName := range []cty.Value{cty.NullVal(cty.String), cty.StringVal("my-segments")} {
		vars := map[string]cty.Value{"bucket_name": bucketName}
		for k, v := range defaults {
			if k != "bucket_name" {
				vars[k] = v
			}
		}
		vars["name"] = cty.StringVal("floe")
		if !accepts(t, m, "name", vars) {
			t.Fatalf(`var.name refuses its default "floe" (bucket_name %#v)`, bucketName)
		}
		var accepted []string
		longest := 0
		for _, c := range nameCandidates() {
			vars["name"] = cty.StringVal(c)
			if accepts(t, m, "name", vars) {
				accepted = append(accepted, c)
				longest = max(longest, len(c))
			}
		}
		t.Logf("bucket_name %#v: var.name accepts %d of the candidates, up to %d characters", bucketName, len(accepted), longest)

		for _, body := range m.bodies {
			for _, b := range body.Blocks {
				if b.Type != "resource" {
					continue
				}
				for _, attr := range []string{"name", "name_prefix", "bucket_prefix", "identifier", "final_snapshot_identifier"} {
					a, ok := b.Body.Attributes[attr]
					if !ok || !madeFromName(a.Expr) {
						continue
					}
					key := b.Labels[0] + "." + attr
					rule, ok := awsNameRules[key]
					if !ok {
						t.Errorf("%s: %s is made from var.name but has no rule in awsNameRules: add AWS's limit", a.SrcRange, key)
						continue
					}
					checked[key] = true
					for _, c := range accepted {
						vars["name"] = cty.StringVal(c)
						v, diags := a.Expr.Value(varContext(vars))
						if diags.HasErrors() {
							t.Errorf("%s: %s", a.SrcRange, diags.Error())
							break
						}
						if v.IsNull() {
							continue
						}
						s := v.AsString()
						if len(s) > rule.max || !rule.valid.MatchString(s) {
							t.Errorf("%s: var.name = %q (%d characters; bucket_name %#v) passes its validation but makes %s = %q (%d characters; AWS takes at most %d matching %s)",
								a.SrcRange, c, len(c), bucketName, key, s, len(s), rule.max, rule.valid)
							break
						}
					}
				}
			}
		}
	}
	if len(checked) < 10 {
		t.Errorf("checked only %d name arguments (%v); the module names far more after var.name", len(checked), checked)
	}
}

// madeFromName reports whether e refers to var.name and to nothing but
// variables.
func madeFromName(e hclsyntax.Expression) bool {
	name := false
	for _, tr := range e.Variables() {
		if tr.RootName() != "var" || len(tr) < 2 {
			return false
		}
		a, ok := tr[1].(hcl.TraverseAttr)
		name = name || (ok && a.Name == "name")
	}
	return name
}

// varDefaults are the module's variables at their defaults; those without
// one are left out.
func varDefaults(t *testing.T, m *tfModule) map[string]cty.Value {
	t.Helper()
	vars := map[string]cty.Value{}
	for _, body := range m.bodies {
		for _, b := range body.Blocks {
			if b.Type != "variable" {
				continue
			}
			if d, ok := b.Body.Attributes["default"]; ok {
				v, diags := d.Expr.Value(nil)
				if diags.HasErrors() {
					t.Fatalf("%s: %s", d.SrcRange, diags.Error())
				}
				vars[b.Labels[0]] = v
			}
		}
	}
	return vars
}

// TestAWSInstanceRefreshRollsFewAgents: an image change must roll the Auto
// Scaling group a few agents at a time, new ones first. With max healthy
// 200% AWS launched a replacement for every agent at once and then
// terminated all the old ones: the whole fleet in one batch, where the
// docs promised one by one.
func TestAWSInstanceRefreshRollsFewAgents(t *testing.T) {
	m := loadModule(t, filepath.Join(root(t), "terraform", "aws"))
	asg := findResource(m, "aws_autoscaling_group", "agents")
	if asg == nil {
		t.Fatal("terraform/aws: no aws_autoscaling_group.agents")
	}
	prefs := nestedBlock(asg.Body, "instance_refresh", "preferences")
	if prefs == nil {
		t.Fatal("aws_autoscaling_group.agents has no instance_refresh { preferences { … } }")
	}
	pct := func(name string) int {
		a, ok := prefs.Attributes[name]
		if !ok {
			t.Fatalf("instance_refresh preferences set no %s", name)
		}
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() || v.Type() != cty.Number {
			t.Fatalf("%s: %s must be a literal number", a.SrcRange, name)
		}
		i, _ := v.AsBigFloat().Int(new(big.Int))
		return int(i.Int64())
	}
	minPct, maxPct := pct("min_healthy_percentage"), pct("max_healthy_percentage")
	if minPct != 100 {
		t.Errorf("min_healthy_percentage = %d: an old agent may stop before its replacement serves; want 100", minPct)
	}
	// AWS lets the group grow by max-100 percent of its capacity, and by at
	// least one instance: 110 rolls up to ten agents one at a time.
	if maxPct <= 100 || maxPct > 110 {
		t.Errorf("max_healthy_percentage = %d: each batch replaces %d%% of the agents at once; want 101-110 (one agent at a time up to ten)", maxPct, maxPct-100)
	}
}

// nestedBlock follows a path of nested block types from body.
func nestedBlock(body *hclsyntax.Body, path ...string) *hclsyntax.Body {
	for _, typ := range path {
		var next *hclsyntax.Body
		for _, b := range body.Blocks {
			if b.Type == typ {
				next = b.Body
				break
			}
		}
		if next == nil {
			return nil
		}
		body = next
	}
	return body
}
