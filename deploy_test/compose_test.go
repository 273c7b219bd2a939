package deploytest

import (
	"cmp"
	"context"
	"net"
	"path/filepath"
	"strings"
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
	project := loadComposeProject(t)
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

func loadComposeProject(t *testing.T) *types.Project {
	t.Helper()
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
	return project
}

// TestComposeAdminReachesEveryAgent: an admin command follows the
// addresses the agents advertise for the listener it bootstrapped from,
// so every agent must advertise, on that listener, a name that resolves
// where floe-admin runs. (It once ran in floe-1's network namespace with
// floe-2 advertising localhost:29092, which is nothing there: every
// command that reached floe-2 failed.)
func TestComposeAdminReachesEveryAgent(t *testing.T) {
	project := loadComposeProject(t)
	admin, ok := project.Services["floe-admin"]
	if !ok {
		t.Fatal("no service floe-admin")
	}
	// advertised[zone][service] is what the agent tells clients of its
	// listener for zone ("" the main listener).
	advertised := map[string]map[string]string{}
	set := func(zone, svc, addr string) {
		if advertised[zone] == nil {
			advertised[zone] = map[string]string{}
		}
		advertised[zone][svc] = addr
	}
	var agents []string
	for name, svc := range project.Services {
		if len(svc.Command) == 0 || svc.Command[0] != "agent" {
			continue
		}
		agents = append(agents, name)
		for _, arg := range svc.Command[1:] {
			flag, val, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
			switch flag {
			case "advertise":
				set("", name, val)
			case "zone-listeners":
				for zl := range strings.SplitSeq(val, ",") {
					zone, addr, _ := strings.Cut(zl, "=")
					listen, adv, _ := strings.Cut(addr, "@")
					set(zone, name, cmp.Or(adv, listen))
				}
			}
		}
	}
	bootstrap := admin.Environment["FLOE_BOOTSTRAP"]
	if bootstrap == nil {
		t.Fatal("floe-admin sets no FLOE_BOOTSTRAP")
	}
	// resolves reports whether host:port reaches service svc from
	// floe-admin's network namespace.
	shared, _ := strings.CutPrefix(admin.NetworkMode, "service:")
	resolves := func(addr, svc string) bool {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return false
		}
		if admin.NetworkMode != "" {
			return (host == "localhost" || host == "127.0.0.1") && svc == shared
		}
		return host == svc || host == project.Services[svc].Hostname
	}
	for _, b := range strings.Split(*bootstrap, ",") {
		zone, found := "", false
		for z, addrs := range advertised {
			for _, a := range addrs {
				if a == b {
					zone, found = z, true
				}
			}
		}
		if !found {
			t.Errorf("floe-admin bootstraps from %s, which no agent advertises", b)
			continue
		}
		for _, svc := range agents {
			addr, ok := advertised[zone][svc]
			if !ok || !resolves(addr, svc) {
				t.Errorf("bootstrapping from %s (listener zone %q), floe-admin is told that %s is at %q, which does not reach it there", b, zone, svc, addr)
			}
		}
	}
}
