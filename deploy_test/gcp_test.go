package deploytest

import (
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Container-Optimized OS's host firewall accepts only SSH. The agent runs
// with the host's network, so unless the startup script opens its ports,
// clients, the load balancer and the autohealing health checks are all
// dropped and the instance group recreates agents forever.
func TestGCPStartupOpensHostFirewall(t *testing.T) {
	if !regexp.MustCompile(`default\s*=\s*"projects/cos-cloud/`).MatchString(readFile(t, "terraform/gcp/variables.tf")) {
		t.Skip("the GCP module no longer defaults to Container-Optimized OS")
	}
	src := readFile(t, "terraform/gcp/templates/startup.sh.tftpl")
	loop := regexp.MustCompile(`(?s)for port in ([^;]*); do.*?iptables -w -A INPUT -p tcp --dport "\$port" -j ACCEPT`).FindStringSubmatch(src)
	for _, port := range []string{"kafka_port", "admin_port"} {
		direct := regexp.MustCompile(`iptables -w -A INPUT -p tcp --dport '?\$\{` + port + `\}'? -j ACCEPT`).MatchString(src)
		inLoop := loop != nil && regexp.MustCompile(`\$\{`+port+`\}`).MatchString(loop[1])
		if !direct && !inLoop {
			t.Errorf("terraform/gcp/templates/startup.sh.tftpl does not open ${%s} in COS's host firewall (iptables -A INPUT … -j ACCEPT)", port)
		}
	}
}

// bucketGetRoles are the predefined roles that include storage.buckets.get.
var bucketGetRoles = []string{
	"roles/storage.admin", "roles/storage.bucketViewer",
	"roles/storage.legacyBucketReader", "roles/storage.legacyBucketWriter", "roles/storage.legacyBucketOwner",
}

// The gcs backend reads the bucket's metadata when it opens (Attrs, i.e.
// storage.buckets.get) and the agent exits if that fails; objectUser and
// objectAdmin grant only object permissions.
func TestGCPAgentCanOpenBucket(t *testing.T) {
	m := loadModule(t, filepath.Join(root(t), "terraform", "gcp"))
	var roles []string
	for _, body := range m.bodies {
		for _, b := range body.Blocks {
			if b.Type != "resource" || b.Labels[0] != "google_storage_bucket_iam_member" {
				continue
			}
			member, ok := b.Body.Attributes["member"]
			if !ok || !refersTo(member.Expr, "google_service_account", "agent") {
				continue
			}
			if a, ok := b.Body.Attributes["role"]; ok {
				if v, diags := a.Expr.Value(nil); !diags.HasErrors() && v.Type() == cty.String {
					roles = append(roles, v.AsString())
				}
			}
		}
	}
	if !slices.ContainsFunc(roles, func(r string) bool { return slices.Contains(bucketGetRoles, r) }) {
		t.Errorf("the agents' service account has bucket roles %v, none of which grants storage.buckets.get (one of %v): gcs.New's bucket check fails with 403", roles, bucketGetRoles)
	}
}

// refersTo reports whether e references the resource typ.name.
func refersTo(e hclsyntax.Expression, typ, name string) bool {
	for _, tr := range e.Variables() {
		if tr.RootName() != typ || len(tr) < 2 {
			continue
		}
		if attr, ok := tr[1].(hcl.TraverseAttr); ok && attr.Name == name {
			return true
		}
	}
	return false
}

// A regional instance group's zones (distribution_policy_zones) can only be
// set when it is created: the provider replaces the group for a new list,
// and with its fixed name the old group, every agent in it, goes first. The
// list came from the region's zones with status UP, so a zone down at plan
// time (or one added to the region) made the next apply delete the fleet.
// The zones must not follow the zones' status, and a changed list must not
// replace the group.
func TestGCPInstanceGroupKeepsItsZones(t *testing.T) {
	m := loadModule(t, filepath.Join(root(t), "terraform", "gcp"))
	for _, body := range m.bodies {
		for _, b := range body.Blocks {
			if b.Type == "data" && b.Labels[0] == "google_compute_zones" {
				if a, ok := b.Body.Attributes["status"]; ok {
					t.Errorf("%s: data.google_compute_zones.%s filters on status: a zone's outage changes the agents' zones", a.SrcRange, b.Labels[1])
				}
			}
		}
	}
	mig := findResource(m, "google_compute_region_instance_group_manager", "agents")
	if mig == nil {
		t.Fatal("terraform/gcp: no google_compute_region_instance_group_manager.agents")
	}
	if _, ok := mig.Body.Attributes["distribution_policy_zones"]; !ok {
		return // the provider picks the zones, once
	}
	lc := nestedBlock(mig.Body, "lifecycle")
	ignored := false
	if lc != nil {
		if a, ok := lc.Attributes["ignore_changes"]; ok {
			for _, tr := range a.Expr.Variables() {
				ignored = ignored || tr.RootName() == "distribution_policy_zones"
			}
		}
	}
	if !ignored {
		t.Errorf("%s: a change to distribution_policy_zones replaces the instance group, deleting every agent: add it to lifecycle.ignore_changes", mig.DefRange())
	}
}
