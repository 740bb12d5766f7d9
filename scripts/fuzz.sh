#!/usr/bin/env bash
# A short fuzzing pass (issue 4): every native fuzz target (func FuzzXxx) of
# every package of the module, one after the other, for FUZZTIME each.
# scripts/test.sh runs it after the tests; run it alone for longer sessions:
#
#   scripts/fuzz.sh                          # 10s per target
#   FUZZTIME=10m scripts/fuzz.sh             # a longer session
#   FUZZ='^FuzzSafeAssembler$' FUZZTIME=1h scripts/fuzz.sh
#
# Environment: FUZZTIME (go test -fuzztime, default 10s), FUZZ (a regexp
# selecting targets by name, default all), FUZZMINIMIZETIME (how long a
# failing input is minimized, default 30s). The seed corpus of each target
# is testdata/fuzz/<Target>/ beside its package; a failing input is written
# there too, and the script goes on with the other targets, then exits 1
# naming the failures. It needs only Go; nothing is installed. The generated
# packages under gopacket/ are skipped: they are the same code as the
# packages they come from (their tests run the shared corpus as seeds).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME="${FUZZTIME:-10s}"
FUZZ="${FUZZ:-.}"
FUZZMINIMIZETIME="${FUZZMINIMIZETIME:-30s}"

if ! command -v go >/dev/null 2>&1; then
	echo "fuzz.sh: go is not on PATH" >&2
	exit 2
fi

failed=()
ran=0
for pkg in $(go list ./... | grep -v '/gopacket/'); do
	# -list prints the names of the matching targets, then "ok <pkg>".
	targets="$(go test -run '^$' -list '^Fuzz' "$pkg" | grep -E '^Fuzz[A-Za-z0-9_]*$' || true)"
	for t in $targets; do
		if ! grep -qE -- "$FUZZ" <<<"$t"; then
			continue
		fi
		echo "== fuzz $pkg $t for $FUZZTIME"
		ran=$((ran + 1))
		# go test -fuzz sometimes ends with "context deadline exceeded" and
		# no failing input when the time runs out in the middle of an
		# execution: a hiccup of the fuzzing engine, not a finding. Such a
		# run is tried again (twice at most); a run that writes a failing
		# input, or fails any other way, counts as a failure at once.
		for try in 1 2 3; do
			log="$(mktemp)"
			# -timeout bounds a hung target; the fuzz time itself is FUZZTIME.
			if go test -run '^$' -fuzz "^${t}\$" -fuzztime "$FUZZTIME" \
				-fuzzminimizetime "$FUZZMINIMIZETIME" -timeout 30m "$pkg" 2>&1 | tee "$log"; then
				rm -f "$log"
				break
			fi
			if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log" && [ "$try" -lt 3 ]; then
				echo "fuzz.sh: $t stopped on the fuzzing engine's deadline without a finding; trying again" >&2
				rm -f "$log"
				continue
			fi
			rm -f "$log"
			failed+=("$pkg $t")
			break
		done
	done
done

if [ "$ran" -eq 0 ]; then
	echo "fuzz.sh: no fuzz target matched '$FUZZ'" >&2
	exit 1
fi
if [ "${#failed[@]}" -gt 0 ]; then
	echo "fuzz.sh: ${#failed[@]} of $ran targets failed:" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz.sh: $ran targets, no failure"
