#!/usr/bin/env bash
# tools.sh installs the developer tools Floe's tests use that are not Go
# module dependencies of the project, into a cache directory outside the work
# tree. It is idempotent and quick when a tool is already present, so `make
# test` and .ci/run may call it every time.
#
#   scripts/tools.sh           install everything, print nothing on success
#   scripts/tools.sh path      print the bin directory (for PATH=...)
#
# Tools:
#   tflint   built from the Go module proxy (its bundled terraform ruleset
#            works offline, so no plugin is ever downloaded)
set -euo pipefail

FLOE_TOOLS_DIR="${FLOE_TOOLS_DIR:-${FLOE_TOOLS:-$HOME/.cache/floe-tools}}"
BIN="$FLOE_TOOLS_DIR/bin"
TFLINT_VERSION="${TFLINT_VERSION:-v0.64.0}"

if [[ "${1:-}" == "path" ]]; then
	echo "$BIN"
	exit 0
fi

mkdir -p "$BIN"

# install_go_tool NAME MODULE VERSION: go install MODULE@VERSION into $BIN
# unless $BIN/NAME already reports VERSION (the stamp file records it, since
# not every tool prints its version the same way).
install_go_tool() {
	local name=$1 module=$2 version=$3
	local stamp="$BIN/.$name.version"
	if [[ -x "$BIN/$name" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
		return 0
	fi
	echo "tools.sh: installing $name $version" >&2
	GOBIN="$BIN" GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install "$module@$version"
	echo "$version" >"$stamp"
}

install_go_tool tflint github.com/terraform-linters/tflint "$TFLINT_VERSION"
