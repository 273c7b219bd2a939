package deploytest

import (
	"os"
	"testing"
	"time"
)

// TestDockerBuildCheck runs scripts/docker-build-check.sh: the image's build
// command, the static-binary checks, and a started `floe dev` answering
// Kafka and its HEALTHCHECK, as the container would.
func TestDockerBuildCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the binary; skipped with -short")
	}
	floeBinary(t) // skips (outside CI) while cmd/floe does not build
	lookTool(t, "kcat", "apt-get install kcat (scripts/services.sh install)")
	out, err := runCmd(t, 6*time.Minute, nil, "bash", "scripts/docker-build-check.sh")
	if err != nil {
		t.Fatalf("scripts/docker-build-check.sh: %v\n%s", err, indent(out))
	}
	t.Log(out)
}

// TestComposeLocal runs scripts/compose-local.sh: docker/compose.yaml's
// topology as processes against PostgreSQL and MinIO, with produce/consume
// through both agents and the admin CLI.
func TestComposeLocal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two agents against PostgreSQL and MinIO; skipped with -short")
	}
	for _, v := range []string{"FLOE_TEST_POSTGRES_URL", "FLOE_TEST_MINIO_ENDPOINT", "FLOE_TEST_MINIO_ACCESS_KEY", "FLOE_TEST_MINIO_SECRET_KEY"} {
		if os.Getenv(v) == "" {
			unavailable(t, "%s is not set: start the services (eval \"$(scripts/services.sh env)\")", v)
		}
	}
	bin := floeBinary(t)
	lookTool(t, "kcat", "apt-get install kcat (scripts/services.sh install)")
	lookTool(t, "psql", "apt-get install postgresql-client (scripts/services.sh install)")
	out, err := runCmd(t, 6*time.Minute, []string{"FLOE_BIN=" + bin}, "bash", "scripts/compose-local.sh")
	if err != nil {
		t.Fatalf("scripts/compose-local.sh: %v\n%s", err, indent(out))
	}
	t.Log(out)
}
