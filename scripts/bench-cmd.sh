#!/usr/bin/env bash
# cmd/reassemble end to end against tcpflow 1.6.1 (issue 15): both read the
# same generated captures (internal/cmd/tracegen: bulk, 128 × 5 interleaved
# bulk connections with reordering, ~500k packets, 520 MB; http, 10k
# HTTP-like connections, 140k packets, 20k output files) and write one file
# per direction into the same directory, RUNS runs each, interleaved
# (ours, tcpflow, ours, ...), medians of wall time, user and system CPU
# time and peak RSS as /usr/bin/time -v reports them.
#
#   scripts/bench-cmd.sh              # RUNS=5: about two minutes
#   RUNS=9 DIR=/tmp/bench-cmd scripts/bench-cmd.sh
#   BEFORE=/tmp/reassemble.old scripts/bench-cmd.sh   # an older build as well
#
# Environment: RUNS (default 5), DIR (captures and output; default a new
# directory under /dev/shm, a tmpfs, so that the disk does not decide the
# wall times; the captures take 600 MB, the output as much), KEEP=1 keeps
# DIR, BEFORE names a binary of cmd/reassemble built from another commit
# (git worktree add /tmp/old COMMIT; cd /tmp/old; go build -o
# /tmp/reassemble.old ./cmd/reassemble), measured in the same rounds. It installs tcpflow and time with apt-get when missing (root, Debian
# or Ubuntu); not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-5}"
if [ -z "${DIR:-}" ]; then
	base=/tmp
	[ -d /dev/shm ] && base=/dev/shm
	DIR="$(mktemp -d "$base/bench-cmd.XXXXXX")"
fi
mkdir -p "$DIR"
if [ "${KEEP:-0}" != 1 ]; then
	trap 'rm -rf "$DIR"' EXIT
fi

need=()
command -v tcpflow >/dev/null || need+=(tcpflow)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
	echo "== apt-get install -y ${need[*]}" >&2
	# A fresh machine has no package lists yet: update once, then retry.
	{ apt-get install -y "${need[@]}" || { apt-get update -qq && apt-get install -y "${need[@]}"; }; } >&2
fi

echo "== building into $DIR" >&2
go build -o "$DIR/reassemble" ./cmd/reassemble
go build -o "$DIR/tracegen" ./internal/cmd/tracegen
declare -A pkts
for shape in bulk http; do
	out="$("$DIR/tracegen" -shape "$shape" -o "$DIR/$shape.pcap")"
	echo "$out" >&2
	pkts[$shape]="$(echo "$out" | awk '{print $2}')"
done

# measure NAME SHAPE CMD...: one run, output directory emptied first (not timed).
measure() {
	local name="$1" shape="$2"
	shift 2
	rm -rf "$DIR/out"
	mkdir -p "$DIR/out"
	/usr/bin/time -f "%e %U %S %M" -o "$DIR/time.txt" "$@" >/dev/null 2>"$DIR/stderr.txt" || {
		cat "$DIR/stderr.txt" >&2
		echo "$name failed on $shape" >&2
		exit 1
	}
	echo "$name $shape $(cat "$DIR/time.txt")" >>"$DIR/runs.txt"
}

: >"$DIR/runs.txt"
for shape in bulk http; do
	for i in $(seq "$RUNS"); do
		echo "== $shape run $i of $RUNS" >&2
		measure reassemble "$shape" "$DIR/reassemble" -q -o "$DIR/out" "$DIR/$shape.pcap"
		if [ -n "${BEFORE:-}" ]; then
			measure before "$shape" "$BEFORE" -q -o "$DIR/out" "$DIR/$shape.pcap"
		fi
		measure tcpflow "$shape" tcpflow -r "$DIR/$shape.pcap" -o "$DIR/out"
	done
done

echo
echo "runs: $RUNS each, interleaved; output to $DIR ($(df --output=fstype "$DIR" | tail -1)); $(nproc) cores; $(tcpflow -V)"
echo
echo "| capture | tool | wall | user CPU | user ns/pkt | system CPU | peak RSS |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for shape in bulk http; do
	names="reassemble tcpflow"
	[ -n "${BEFORE:-}" ] && names="before reassemble tcpflow"
	for name in $names; do
		awk -v n="$name" -v s="$shape" -v p="${pkts[$shape]}" '
			function median(a, k,   i, j, t) {
				for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
				return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
			}
			$1 == n && $2 == s { k++; w[k] = $3; u[k] = $4; y[k] = $5; m[k] = $6 }
			END {
				mu = median(u, k)
				printf "| %s (%d packets) | %s | %.2f s | %.2f s | %.0f ns | %.2f s | %.0f MB |\n", s, p, n, median(w, k), mu, mu * 1e9 / p, median(y, k), median(m, k) / 1024
			}' "$DIR/runs.txt"
	done
done
echo
echo "all runs (tool capture wall user system maxrss_kB):"
cat "$DIR/runs.txt"
