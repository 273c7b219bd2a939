package deploytest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestComposeSpecValid loads docker/compose.yaml with the Compose
// specification's reference loader (what `docker compose config` uses):
// schema validation, anchors and merges, interpolation and the consistency
// checks (depends_on targets, volumes, network_mode: service:…), with every
// profile enabled. No Docker engine is needed.
func TestComposeSpecValid(t *testing.T) {
	dir := filepath.Join(root(t), "docker")
	details := types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "compose.yaml")}},
		Environment: types.Mapping{},
	}
	project, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("floe", true)
		o.Profiles = []string{"*"}
	})
	if err != nil {
		t.Fatalf("docker/compose.yaml is not a valid Compose file: %v", err)
	}
	for _, name := range []string{"floe-1", "floe-2"} {
		svc, ok := project.Services[name]
		if !ok {
			t.Fatalf("no service %s", name)
		}
		if svc.Build == nil || svc.Build.Dockerfile != "docker/Dockerfile" {
			t.Errorf("%s does not build docker/Dockerfile: %+v", name, svc.Build)
		}
		if svc.Environment["FLOE_CATALOG"] == nil || svc.Environment["FLOE_BUCKET"] == nil {
			t.Errorf("%s lacks FLOE_CATALOG or FLOE_BUCKET (the x-floe-agent merge failed?)", name)
		}
	}
}
