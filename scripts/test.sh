#!/usr/bin/env bash
# Every check and test of psengine: formatting, tidy modules, vet,
# staticcheck, natsq built as a user outside the repository builds it, and
# the race-enabled tests of both modules (the core and natsq). Tests that
# need a real tool (wine, clamd, libyara) skip when it is missing, except
# under CI=true, where they fail: .ci/run installs the tools first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/goenv.sh
staticcheck="honnef.co/go/tools/cmd/staticcheck@v0.8.2"

# step says what runs next, and how long the run has taken so far.
start=$SECONDS
step() { printf '== [%3ds] %s\n' $((SECONDS - start)) "$*"; }

step "gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" $unformatted >&2
	exit 1
fi

step "go mod tidy -diff, natsq built against the core it requires"
# Both modules tidy. natsq requires the core at a commit of this repository
# (scripts/goenv.sh resolves it from this clone), and must build against
# exactly that, without the workspace.
for m in . natsq; do
	if ! (cd "$m" && go mod tidy -diff); then
		echo "$m: go.mod/go.sum are not tidy (run go mod tidy there; for natsq, scripts/natsq-require-core.sh)" >&2
		exit 1
	fi
done
(cd natsq && GOWORK=off go build ./...) || {
	echo "natsq does not build against the core version its go.mod requires (scripts/natsq-require-core.sh)" >&2
	exit 1
}

# The YARA example binds libyara with cgo. Without its header (apt-get
# install libyara-dev) or a C compiler, the core module is vetted and
# tested with -tags nolibyara: the binding builds as a stub and the YARA
# tests skip. Under CI=true a missing libyara is a failure instead.
tags=()
if ! printf '#include <yara.h>\n' | "${CC:-cc}" -E -x c - >/dev/null 2>&1; then
	if [ "${CI:-}" = true ]; then
		echo "libyara-dev (or a C compiler) is missing: the YARA tests cannot run" >&2
		exit 1
	fi
	echo "libyara-dev not installed: building with -tags nolibyara (the YARA tests skip)" >&2
	tags=(-tags nolibyara)
fi

step "go vet (core)"
go vet "${tags[@]}" ./...
step "staticcheck (core)"
go run "$staticcheck" "${tags[@]}" ./...
step "go test -race (core): a line per package as it passes"
go test "${tags[@]}" -race -count=1 ./...
step "natsq: go vet, staticcheck, go test -race"
(cd natsq && go vet ./... && go run "$staticcheck" ./... && go test -race -count=1 ./...)
step "all passed"
