#!/usr/bin/env bash
# Runs every suite against one build (default build/asan): the integration
# suites and the conformance run, longest first, then the static checks and
# the check unit tests (tests/unit/run-units.sh). Prints the totals as "N passed, N failed" (", N skipped" when a check
# lacked an optional input) and exits non-zero if anything failed.
#
# The suites run T_JOBS (2) at a time, each in a network
# namespace of its own (unshare --net, loopback up), so their fixed ports
# never meet; a suite that needs the outside network (the conformance run
# installs its npm tools) runs in the machine's own namespace. Where no
# namespace can be made, every suite runs in turn, as T_JOBS=1 does. Each
# suite's output is printed whole when it ends. ONLY=NAME runs the suites
# whose file name contains NAME.
set -u
BUILD=$(cd "${1:-build/asan}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export T_BUILD="$BUILD"
OUT=$ROOT/tests/out
RUNS=$OUT/runs
mkdir -p "$OUT"
rm -rf "$RUNS"
mkdir -p "$RUNS"
status=0
started=$(date +%s)

# Suites that reach beyond loopback: never in a namespace of their own.
NEEDS_NETWORK="test_conformance.sh"
# The longest suites start first, so the lanes end together.
LONG_FIRST="test_conformance.sh test_mesh.sh test_crash.sh test_encryptor.sh test_lifecycle.sh test_deploy.sh"
LONG_FIRST="$LONG_FIRST test_expiry.sh test_errors.sh test_link.sh test_star.sh"

selected() { [ -z "${ONLY:-}" ] || case "$1" in *"$ONLY"*) return 0 ;; *) return 1 ;; esac }

# ---- suites -----------------------------------------------------------------------------------
# isolated: 0 when a suite can get a network namespace of its own.
if [ "${T_JOBS:-2}" -gt 1 ] && unshare --net -- sh -c 'ip link set lo up' 2>/dev/null; then
    jobs_max=${T_JOBS:-2}
    isolate=1
else
    jobs_max=1
    isolate=0
fi

# suite_name FILE: test_X for tests/*/test_X.sh, "unit" for the unit tests.
suite_name() { case "$1" in */run-units.sh) echo unit ;; *) basename "$1" .sh ;; esac; }

# start_suite FILE: runs one suite in the background; its output, results
# and exit status go to $RUNS/NAME.{log,results,rc}.
start_suite() {
    local s=$1 name
    name=$(suite_name "$s")
    : >"$RUNS/$name.results"
    date +%s >"$RUNS/$name.start"
    (
        export T_RESULTS="$RUNS/$name.results"
        if [ $isolate = 1 ] && ! case " $NEEDS_NETWORK " in *" $(basename "$s") "*) true ;; *) false ;; esac; then
            unshare --net -- bash -c 'ip link set lo up && exec bash "$0"' "$s"
        else
            bash "$s"
        fi >"$RUNS/$name.log" 2>&1 </dev/null
        echo $? >"$RUNS/$name.rc"
    ) &
}

# finish_suite NAME: prints the suite's output and accounts for it.
finish_suite() {
    local name=$1 t0
    t0=$(cat "$RUNS/$name.start")
    echo "== $name.sh"
    cat "$RUNS/$name.log"
    echo "   ($name.sh: $(($(date +%s) - t0)) s)"
    [ "$(cat "$RUNS/$name.rc" 2>/dev/null)" = 0 ] || status=1
    if [ ! -s "$RUNS/$name.results" ]; then
        echo "$name.sh ended without a summary"
        echo "0 1" >"$RUNS/$name.results"
        status=1
    fi
}

queue=()
for f in $LONG_FIRST; do
    for s in "$ROOT"/tests/integration/"$f" "$ROOT"/tests/conformance/"$f"; do
        [ -f "$s" ] && selected "$s" && queue+=("$s")
    done
done
for s in "$ROOT"/tests/integration/test_*.sh "$ROOT"/tests/conformance/test_*.sh; do
    [ -f "$s" ] && selected "$s" || continue
    case " $LONG_FIRST " in *" $(basename "$s") "*) continue ;; esac
    queue+=("$s")
done
# The short ones last, to even out the lanes' ends: the static checks and
# the unit tests.
for s in "$ROOT"/tests/static/test_*.sh; do
    [ -f "$s" ] && selected "$s" && queue+=("$s")
done
[ -n "${ONLY:-}" ] || queue+=("$ROOT/tests/unit/run-units.sh")

running=() # names of the suites under way
reap() {   # waits for one suite to end, prints it and drops it from running
    local n keep=()
    wait -n 2>/dev/null
    for n in "${running[@]}"; do
        if [ -f "$RUNS/$n.rc" ]; then finish_suite "$n"; else keep+=("$n"); fi
    done
    running=("${keep[@]+"${keep[@]}"}")
}
for s in "${queue[@]+"${queue[@]}"}"; do
    while [ ${#running[@]} -ge "$jobs_max" ]; do reap; done
    start_suite "$s"
    running+=("$(suite_name "$s")")
done
while [ ${#running[@]} -gt 0 ]; do reap; done

echo "wall time: $(($(date +%s) - started)) s"
cat "$RUNS"/*.results >"$OUT/results.txt"
awk '{p+=$1; f+=$2; s+=$3} END {if (s > 0) printf "%d passed, %d failed, %d skipped\n", p, f, s; else printf "%d passed, %d failed\n", p, f}' "$OUT/results.txt"
[ "$(awk '{f+=$2} END {print f+0}' "$OUT/results.txt")" -eq 0 ] || status=1
exit $status
