#!/usr/bin/env bash
# The project's test command (README: "Run the tests"). On a fresh machine
# with Go it installs a C compiler if missing (the race detector needs cgo)
# and staticcheck from the module proxy, then runs gofmt, the generated
# flavour's staleness check, vet, staticcheck and the race-enabled tests of
# both modules, a short fuzzing pass, and the real programs swapped in
# (scripts/clients.sh, which installs libpcap-dev if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

# The race detector needs cgo, so a C compiler: install one where the
# machine allows it, else say so plainly instead of go's one-line refusal.
if ! command -v "$(go env CC)" >/dev/null 2>&1; then
	if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
		{ apt-get update -qq && apt-get install -y -qq gcc libc6-dev; } >/dev/null || true
	elif command -v apk >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
		apk add --no-cache gcc musl-dev >/dev/null || true
	fi
	if ! command -v "$(go env CC)" >/dev/null 2>&1; then
		echo "go test -race needs a C compiler ($(go env CC)): install gcc" >&2
		exit 1
	fi
fi
export CGO_ENABLED=1

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
echo "== generated flavour (gopacket/) up to date"
go run ./internal/cmd/flavour -check
# Two modules: this one (the google/gopacket faces) and gopacket/, the
# generated github.com/gopacket/gopacket faces, a module of its own so that
# neither flavour's users get the other gopacket in their go.mod.
for mod in . gopacket; do
	echo "== go vet ($mod)"
	(cd "$mod" && go vet ./...)
	echo "== go vet -tags purego ($mod): the pure Go checksum amd64 builds leave out"
	(cd "$mod" && go vet -tags purego ./...)
	echo "== staticcheck ($mod)"
	(cd "$mod" && staticcheck ./...)
done
for mod in . gopacket; do
	echo "== go test -race ($mod)"
	(cd "$mod" && go test -race -count=1 ./...)
done
echo "== fuzz (short)"
bash scripts/fuzz.sh
echo "== real programs swapped in"
bash scripts/clients.sh
