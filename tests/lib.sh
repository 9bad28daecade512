# Shared helpers for the shell test suites: assertions, counters and a summary.
# Source it; set T_SUITE first. Each suite ends with `t_summary`, which prints
# "N passed, N failed[, N skipped]" and exits non-zero when anything failed.
# A check whose optional input is absent is skipped (t_skip): one visible
# line, counted as neither passed nor failed.

T_PASSED=0
T_FAILED=0
T_SKIPPED=0
T_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T_BUILD=${T_BUILD:-$T_ROOT/build/asan}
T_BIN=$T_BUILD/bin
T_OUT=${T_OUT:-$T_ROOT/tests/out}
mkdir -p "$T_OUT"
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

t_pass() { T_PASSED=$((T_PASSED + 1)); printf '  ok   %s\n' "$1"; }
t_fail() { T_FAILED=$((T_FAILED + 1)); printf '  FAIL %s: %s\n' "$1" "${2:-}"; }
t_skip() { T_SKIPPED=$((T_SKIPPED + 1)); printf '  skipped: %s: %s\n' "$1" "${2:-}"; }

# t_check NAME CMD...: passes when CMD exits 0.
t_check() {
    local name=$1; shift
    if "$@" >/dev/null 2>&1; then t_pass "$name"; else t_fail "$name" "command failed: $*"; fi
}
# t_check_fails NAME CMD...: passes when CMD exits non-zero.
t_check_fails() {
    local name=$1; shift
    if "$@" >/dev/null 2>&1; then t_fail "$name" "command succeeded: $*"; else t_pass "$name"; fi
}
# t_eq NAME EXPECTED ACTUAL
t_eq() {
    if [ "$2" = "$3" ]; then t_pass "$1"; else t_fail "$1" "expected [$2], got [$3]"; fi
}
# t_match NAME REGEX TEXT
t_match() {
    if printf '%s' "$3" | grep -Eq -- "$2"; then t_pass "$1"; else t_fail "$1" "[$3] does not match /$2/"; fi
}
t_nomatch() {
    if printf '%s' "$3" | grep -Eq -- "$2"; then t_fail "$1" "[$3] matches /$2/"; else t_pass "$1"; fi
}

# A test waits for a state, never for a rate or a deadline: each ceiling
# below is T_WAIT_SCALE (10) times what the suite's author saw a passing run
# need, and bounds only a failure. A machine slower still can raise it.
T_WAIT_SCALE=${T_WAIT_SCALE:-10}

# wait_for SECONDS CMD...: retries CMD every 0.1 s until it succeeds, for up
# to SECONDS x T_WAIT_SCALE. When that expires, what CMD printed last is
# shown (on stderr).
T_WAIT_OUT=$T_OUT/.wait_for.$$
wait_for() {
    local limit=$(($1 * T_WAIT_SCALE)); shift
    local end=$((SECONDS + limit))
    while [ $SECONDS -le $end ]; do
        "$@" >"$T_WAIT_OUT" 2>&1 && { rm -f "$T_WAIT_OUT"; return 0; }
        sleep 0.1
    done
    printf '  (waited %s s for: %s; last output: %s)\n' "$limit" "$*" \
        "$(tr '\n' ' ' <"$T_WAIT_OUT" 2>/dev/null | cut -c1-300)" >&2
    rm -f "$T_WAIT_OUT"
    return 1
}

# wait_still SECONDS CMD...: waits until CMD prints the same twice, 1 s
# apart, for up to SECONDS x T_WAIT_SCALE.
wait_still() {
    local limit=$(($1 * T_WAIT_SCALE)) a b end
    shift
    end=$((SECONDS + limit))
    a=$("$@" 2>/dev/null)
    while [ $SECONDS -le $end ]; do
        sleep 1
        b=$("$@" 2>/dev/null)
        [ "$a" = "$b" ] && return 0
        a=$b
    done
    printf '  (waited %s s for the output of %s to stop changing; last: %s)\n' "$limit" "$*" \
        "$(printf '%s' "$b" | tr '\n' ' ' | cut -c1-300)" >&2
    return 1
}

# What a sanitizer prints when it finds something.
T_SANITIZER_PATTERN='AddressSanitizer|LeakSanitizer|runtime error'
# t_logs_clean LOG...: one check per log that no sanitizer reported anything.
t_logs_clean() {
    local f
    for f in "$@"; do
        t_nomatch "$(basename "$(dirname "$f")") log: no sanitizer report" "$T_SANITIZER_PATTERN" "$(cat "$f" 2>/dev/null)"
    done
}

# t_require_programs NAME...: ends the suite (failed) unless $T_BIN has them.
t_require_programs() {
    local p
    for p in "$@"; do
        if [ ! -x "$T_BIN/$p" ]; then
            t_fail "prerequisites" "$T_BIN/$p is missing; build it first"
            t_summary
            exit 1
        fi
    done
}

t_summary() {
    if [ "$T_SKIPPED" -gt 0 ]; then
        echo "${T_SUITE:-suite}: $T_PASSED passed, $T_FAILED failed, $T_SKIPPED skipped"
    else
        echo "${T_SUITE:-suite}: $T_PASSED passed, $T_FAILED failed"
    fi
    if [ -n "${T_RESULTS:-}" ]; then echo "$T_PASSED $T_FAILED $T_SKIPPED" >>"$T_RESULTS"; fi
    [ "$T_FAILED" -eq 0 ]
}
