#!/usr/bin/env bash
# Make natsq require the core at a commit of this repository (default:
# HEAD, which must be committed), as a pseudo-version, and tidy natsq.
# Run it after committing core changes natsq needs; commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/goenv.sh
rev=$(git rev-parse "${1:-HEAD}")
version=$(cd / && GOFLAGS=-mod=mod GOWORK=off go list -m -f '{{.Version}}' "github.com/polyswarm/psengine@$rev")
cd natsq
go mod edit -require="github.com/polyswarm/psengine@$version"
GOWORK=off go mod tidy
GOWORK=off go build ./...
echo "natsq now requires github.com/polyswarm/psengine $version"
