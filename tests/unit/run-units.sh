#!/usr/bin/env bash
# Runs every check unit test binary of one build ($T_BUILD/bin/unit/test_*,
# default build/asan) and adds one "passed failed" line per binary to
# $T_RESULTS when set; exits non-zero when any binary failed.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${T_BUILD:-$ROOT/build/asan}
status=0
for t in "$BUILD"/bin/unit/test_*; do
    [ -x "$t" ] || continue
    out=$(CK_FORK=yes "$t" 2>&1)
    rc=$?
    echo "$out"
    line=$(echo "$out" | grep -E '^[0-9]+%: Checks: ' | tail -n 1)
    checks=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
    bad=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+), Errors: ([0-9]+).*/\1 \2/' | awk '{print $1+$2}')
    [ -n "$checks" ] || { checks=1; bad=1; }
    [ -n "${T_RESULTS:-}" ] && echo "$((checks - bad)) $bad" >>"$T_RESULTS"
    [ $rc -eq 0 ] || status=1
done
exit $status
