#!/usr/bin/env bash
# The benchmark suite of bench_test.go (issue 5) in one command: ours (the
# drop-in Assembler), safe (SafeAssembler) and upstream (gopacket's
# reassembly) on the same generated traffic, then benchstat tables.
#
#   scripts/bench.sh                           # -count=6 -benchtime=500ms: 5 to 6 minutes on 2 cores
#   COUNT=2 BENCHTIME=300ms scripts/bench.sh   # quick look
#   BENCH='^BenchmarkTraffic$/scenario=http/' scripts/bench.sh
#   BENCH='^BenchmarkFreshCapture$' scripts/bench.sh   # a new pool per capture, all timed
#
# Environment: COUNT (default 6), BENCHTIME (go test -benchtime, default
# 500ms), BENCH (go test -bench pattern, default the whole suite), OUT (raw
# output, default bench.out at the repository root). sec/op is per packet
# (per capture in BenchmarkFreshCapture), ns/pkt and cpu-ns/pkt are wall
# and process CPU time per packet, B/s is payload throughput, allocs/pkt
# and B/pkt are allocations per packet. On a fresh machine with Go it installs benchstat from the module
# proxy first.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT="${COUNT:-6}"
BENCHTIME="${BENCHTIME:-500ms}"
BENCH="${BENCH:-^Benchmark(Traffic|SharedPool)\$}"
OUT="${OUT:-bench.out}"
BENCHSTAT_VERSION=v0.0.0-20260908200009-22c9c6c9d4da # golang.org/x/perf

GOBIN="$(go env GOBIN)"
GOBIN="${GOBIN:-$(go env GOPATH)/bin}"
export PATH="$GOBIN:$PATH"
# The benchstat of golang.org/x/perf (2023 on) has -col; an older one does not.
if ! benchstat -h 2>&1 | grep -q -- '-col'; then
	echo "== installing benchstat (golang.org/x/perf@${BENCHSTAT_VERSION})" >&2
	go install "golang.org/x/perf/cmd/benchstat@${BENCHSTAT_VERSION}"
fi

echo "== go test -bench '${BENCH}' -benchtime ${BENCHTIME} -count ${COUNT} > ${OUT}" >&2
# -timeout 0: a full run takes about as long as go test's default timeout.
go test -run '^$' -bench "$BENCH" -benchtime "$BENCHTIME" -count "$COUNT" -timeout 0 . | tee "$OUT"

echo
echo "== ours and safe against upstream (base: upstream)"
benchstat -col '/impl@(upstream ours safe)' "$OUT"
echo
echo "== safe face against drop-in face (base: ours)"
benchstat -col '/impl@(ours safe)' "$OUT"
if grep -q '^BenchmarkSharedPool/' "$OUT"; then
	echo
	echo "== shared pool: 1 goroutine against more (base: goroutines=1)"
	benchstat -filter '.name:SharedPool' -col '/goroutines@num' "$OUT"
fi
