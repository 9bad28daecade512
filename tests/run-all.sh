#!/bin/sh
# Runs every suite against one build (default build/asan): the check unit
# tests, the static checks, each integration suite, then the conformance
# run. Prints the totals as "N passed, N failed" (", N skipped" when a check
# lacked an optional input) and exits non-zero if anything failed.
set -u
BUILD=$(cd "${1:-build/asan}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export T_BUILD="$BUILD"
export T_RESULTS="$ROOT/tests/out/results.txt"
mkdir -p "$ROOT/tests/out"
: >"$T_RESULTS"
status=0
started=$(date +%s)

for t in "$BUILD"/bin/unit/test_*; do
    [ -x "$t" ] || continue
    out=$(CK_FORK=yes "$t" 2>&1); rc=$?
    echo "$out"
    line=$(echo "$out" | grep -E '^[0-9]+%: Checks: ' | tail -n 1)
    checks=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
    bad=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+), Errors: ([0-9]+).*/\1 \2/' | awk '{print $1+$2}')
    [ -n "$checks" ] || { checks=1; bad=1; }
    echo "$((checks - bad)) $bad" >>"$T_RESULTS"
    [ $rc -eq 0 ] || status=1
done

for s in "$ROOT"/tests/static/test_*.sh "$ROOT"/tests/integration/test_*.sh "$ROOT"/tests/conformance/test_*.sh; do
    [ -f "$s" ] || continue
    [ -n "${ONLY:-}" ] && case "$s" in *"$ONLY"*) ;; *) continue ;; esac
    echo "== $(basename "$s")"
    before=$(wc -l <"$T_RESULTS")
    t0=$(date +%s)
    bash "$s" || status=1
    echo "   ($(basename "$s"): $(($(date +%s) - t0)) s)"
    if [ "$(wc -l <"$T_RESULTS")" -eq "$before" ]; then
        echo "$(basename "$s") ended without a summary"
        echo "0 1" >>"$T_RESULTS"
        status=1
    fi
done

echo "wall time: $(($(date +%s) - started)) s"
awk '{p+=$1; f+=$2; s+=$3} END {if (s > 0) printf "%d passed, %d failed, %d skipped\n", p, f, s; else printf "%d passed, %d failed\n", p, f}' "$T_RESULTS"
[ "$(awk '{f+=$2} END {print f+0}' "$T_RESULTS")" -eq 0 ] || status=1
exit $status
