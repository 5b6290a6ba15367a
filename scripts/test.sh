#!/usr/bin/env bash
# Every check and test of psengine: formatting, vet, and the race-enabled
# tests of both modules (the core and natsq). Tests that need a real tool
# (wine, clamd, yara) skip when it is missing, except under CI=true, where
# they fail: .ci/run installs the tools first.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l . | grep -v '^natsq/.*_cache' || true)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" $unformatted >&2
	exit 1
fi
go vet ./...
go test -race -count=1 ./...
if [ -d natsq ]; then
	(cd natsq && go vet ./... && go test -race -count=1 ./...)
fi
