#!/usr/bin/env bash
# The project's test command (README: "Run the tests"). On a fresh machine
# with Go it installs staticcheck from the module proxy, then runs vet,
# staticcheck, the race-enabled tests and a short fuzzing pass.
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION=v0.8.2
# go install puts binaries in GOBIN when it is set, else in GOPATH/bin.
GOBIN="$(go env GOBIN)"
GOBIN="${GOBIN:-$(go env GOPATH)/bin}"
export PATH="$GOBIN:$PATH"
if ! staticcheck -version 2>/dev/null | grep -q "${STATICCHECK_VERSION#v}"; then
	go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}"
fi

echo "== gofmt"
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
	echo "not gofmt-ed:"; echo "$unformatted"; exit 1
fi
echo "== go vet"
go vet ./...
echo "== staticcheck"
staticcheck ./...
echo "== go test -race"
go test -race -count=1 ./...
echo "== fuzz (short)"
bash scripts/fuzz.sh
