// Package deploytest tests Floe's deployment and operations files, which
// are not Go and so have no package of their own: the Terraform modules
// (terraform/), the container image and compose topology (docker/), the
// scripts that stand in for a Docker engine (scripts/docker-build-check.sh,
// scripts/compose-local.sh) and the metrics reference (docs/metrics.md).
//
// What the tests guarantee:
//   - Every Terraform module and example is formatted, passes tflint's
//     bundled terraform ruleset, and is internally consistent: every
//     reference resolves to a declaration, every module call passes exactly
//     the called module's variables (all required ones included), and every
//     templatefile call passes exactly the variables its template uses.
//   - What the modules promise operators holds in their HCL: every name the
//     AWS module makes from var.name is valid for every name its validation
//     accepts; an image must name its version; the AWS instance refresh
//     replaces a few agents at a time, new ones first; the GCP instance
//     group's zones neither follow the zones' status nor replace the group
//     when they change.
//   - The agents' start scripts keep a fixed agent id (the instance's) and,
//     on AWS, the availability zone's ID as --zone, and start the cached
//     image when the registry cannot be reached.
//   - Every flag and FLOE_* variable that the user data templates, the
//     Dockerfile, compose.yaml and the scripts give `floe agent` (or `floe
//     dev`) is one the binary accepts today, read from its own -h output.
//   - Each user data template's secret watch keeps the agent's catalog
//     password file up to date, replacing it by a rename when the secret
//     changes and restarting nothing, and the agent reads that file.
//   - The Grafana dashboard only queries documented metrics, and
//     docs/metrics.md documents exactly the metrics the code registers.
//   - The image's build command produces a static binary that serves Kafka
//     and its health check, and the compose topology works end to end with
//     PostgreSQL and MinIO (when those services are available).
//
// Tests that need a tool or service fail under CI=true when it is missing
// and skip, saying why, elsewhere.
package deploytest
