#!/usr/bin/env bash
# Real programs swapped in (README: "Real programs"): builds each client of
# upstream gopacket twice — unchanged, and with the reassembly import
# swapped to this module — runs both on every capture of testdata/captures
# (and of ../shared/corpus/captures when present), and fails on any
# difference not listed with its reason in internal/cmd/clients/known.go.
# The programs come from the Go module proxy; they use libpcap through cgo,
# so libpcap-dev is installed where missing (apt, as root).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! printf '#include <pcap.h>\n' | "$(go env CC)" -E - >/dev/null 2>&1; then
	if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
		{ apt-get install -y -qq libpcap-dev || { apt-get update -qq && apt-get install -y -qq libpcap-dev; }; } >/dev/null
	fi
	if ! printf '#include <pcap.h>\n' | "$(go env CC)" -E - >/dev/null 2>&1; then
		echo "the client programs need libpcap's headers: install libpcap-dev" >&2
		exit 1
	fi
fi
export CGO_ENABLED=1
exec go run ./internal/cmd/clients "$@" testdata/captures ../shared/corpus/captures
