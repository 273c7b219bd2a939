package deploytest

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// TestKMSKeyGrants: with a customer-managed key, the services that encrypt
// for the modules (not the agents' identity) must be let use it, before
// the resources that need it are created. Without the grants every agent
// launch (AWS: the Auto Scaling service-linked role creates the volumes;
// GCP: the Compute Engine service agent), the bucket and the catalog (GCP:
// the Cloud Storage and Cloud SQL service agents) fail.
func TestKMSKeyGrants(t *testing.T) {
	for _, tc := range []struct {
		module, grant string
		text          []string // in the grant's file: who is granted
		consumers     []string // resources that must wait for the grant
	}{
		{"aws", "aws_kms_grant.autoscaling", []string{"AWSServiceRoleForAutoScaling"}, []string{"aws_autoscaling_group.agents"}},
		{"gcp", "google_kms_crypto_key_iam_member.service_agents",
			[]string{"compute-system.iam.gserviceaccount.com", "google_storage_project_service_account", `"sqladmin.googleapis.com"`, "roles/cloudkms.cryptoKeyEncrypterDecrypter"},
			[]string{"google_storage_bucket.segments", "google_sql_database_instance.catalog", "google_compute_region_instance_group_manager.agents"}},
	} {
		m := loadModule(t, filepath.Join(root(t), "terraform", tc.module))
		typ, name, _ := strings.Cut(tc.grant, ".")
		grant := findResource(m, typ, name)
		if grant == nil {
			t.Errorf("terraform/%s: no %s", tc.module, tc.grant)
			continue
		}
		src := readFile(t, filepath.Join("terraform", tc.module, filepath.Base(grant.Range().Filename)))
		for _, s := range tc.text {
			if !strings.Contains(src, s) {
				t.Errorf("terraform/%s: %s's file does not mention %s", tc.module, tc.grant, s)
			}
		}
		for _, c := range tc.consumers {
			ctyp, cname, _ := strings.Cut(c, ".")
			b := findResource(m, ctyp, cname)
			if b == nil {
				t.Errorf("terraform/%s: no %s", tc.module, c)
				continue
			}
			dep, ok := b.Body.Attributes["depends_on"]
			if !ok || !refersTo(dep.Expr, typ, name) {
				t.Errorf("terraform/%s: %s does not depend on %s", tc.module, c, tc.grant)
			}
		}
	}
}

func findResource(m *tfModule, typ, name string) *hclsyntax.Block {
	for _, body := range m.bodies {
		for _, b := range body.Blocks {
			if b.Type == "resource" && len(b.Labels) == 2 && b.Labels[0] == typ && b.Labels[1] == name {
				return b
			}
		}
	}
	return nil
}
