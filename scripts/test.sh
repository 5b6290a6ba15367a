#!/usr/bin/env bash
# Every check and test of psengine: formatting, tidy modules, vet,
# staticcheck, every module built as a user outside the repository builds
# it, and the race-enabled tests of the four modules (the core, cli,
# examples and natsq). Tests that need a real tool (wine, clamd, libyara)
# skip when it is missing, except under CI=true, where they fail: .ci/run
# installs the tools first.
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

modules=(. cli examples natsq)

step "go mod tidy -diff; every module built against the versions it requires"
# Every module tidy. cli, examples and natsq require the modules they build
# on at a commit of this repository (scripts/goenv.sh resolves it from this
# clone), and must build against exactly that, without the workspace.
for m in "${modules[@]}"; do
	if ! (cd "$m" && GOWORK=off go mod tidy -diff); then
		echo "$m: go.mod/go.sum are not tidy (run scripts/require-core.sh after committing)" >&2
		exit 1
	fi
	(cd "$m" && GOWORK=off go build -tags nolibyara ./...) || {
		echo "$m does not build against the versions its go.mod requires (scripts/require-core.sh)" >&2
		exit 1
	}
done

step "the library built for windows and darwin (worker children are unix-only, the rest is not)"
for os in windows darwin; do
	GOOS=$os GOARCH=amd64 go build ./... || {
		echo "the library does not build for $os" >&2
		exit 1
	}
done

# The YARA example binds libyara with cgo. Without its header (apt-get
# install libyara-dev) or a C compiler, the modules are vetted and tested
# with -tags nolibyara (only the examples module has code it affects): the
# binding builds as a stub and the YARA tests skip. Under CI=true a missing
# libyara is a failure instead.
tags=()
if ! printf '#include <yara.h>\n' | "${CC:-cc}" -E -x c - >/dev/null 2>&1; then
	if [ "${CI:-}" = true ]; then
		echo "libyara-dev (or a C compiler) is missing: the YARA tests cannot run" >&2
		exit 1
	fi
	echo "libyara-dev not installed: building the examples with -tags nolibyara (the YARA tests skip)" >&2
	tags=(-tags nolibyara)
fi

for m in "${modules[@]}"; do
	name=${m#./}
	[ "$m" = . ] && name=core
	step "$name: go vet, staticcheck, go test -race (a line per package as it passes)"
	(cd "$m" && go vet "${tags[@]}" ./... && go run "$staticcheck" "${tags[@]}" ./... && go test "${tags[@]}" -race -count=1 ./...)
done
step "all passed"
