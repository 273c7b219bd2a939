#!/bin/sh
# build.sh builds the floe binary exactly as the container image does: a
# static (CGO_ENABLED=0), reproducible (-trimpath), stripped (-s -w) binary
# with its version stamped into main.version. docker/Dockerfile runs it, and
# so does scripts/docker-build-check.sh, so what that check tests is what
# the image ships.
#
#   docker/build.sh OUTPUT [VERSION]     (from anywhere; VERSION defaults to
#                                         $VERSION, then "dev")
set -eu
out=${1:?usage: docker/build.sh OUTPUT [VERSION]}
version=${2:-${VERSION:-dev}}
cd "$(dirname "$0")/.."
CGO_ENABLED=0 exec go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$out" ./cmd/floe
