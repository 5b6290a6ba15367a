#!/usr/bin/env bash
# Make the modules of this repository that build on others (cli, examples,
# natsq) require them at a commit of this repository (default: HEAD, which
# must be committed, and hold every module's go.mod), as pseudo-versions,
# and tidy them. A user outside the repository builds each from its go.mod
# alone; here go.work puts them together. Run it after committing changes
# one module needs from another; commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/goenv.sh
rev=$(git rev-parse "${1:-HEAD}")
version() { (cd / && GOFLAGS=-mod=mod GOWORK=off go list -m -f '{{.Version}}' "$1@$rev"); }
core=$(version github.com/polyswarm/psengine)
cli=$(version github.com/polyswarm/psengine/cli)
examples=$(version github.com/polyswarm/psengine/examples)
require() { # module dir, then path@version...
	local dir=$1
	shift
	(cd "$dir" && for r in "$@"; do go mod edit -dropreplace="${r%@*}" -require="$r"; done && GOWORK=off go mod tidy && GOWORK=off go build ./...)
	echo "$dir requires $*"
}
require cli "github.com/polyswarm/psengine@$core"
require examples "github.com/polyswarm/psengine@$core" "github.com/polyswarm/psengine/cli@$cli"
require natsq "github.com/polyswarm/psengine@$core" "github.com/polyswarm/psengine/cli@$cli" "github.com/polyswarm/psengine/examples@$examples"
