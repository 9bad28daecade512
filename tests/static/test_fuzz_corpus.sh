#!/usr/bin/env bash
T_SUITE=fuzz-corpus
# Replays the committed seed corpus of every libFuzzer harness
# (tests/fuzz/fuzz_NAME.c on tests/fuzz/corpus/NAME, each file once, under
# ASan, LeakSanitizer and UBSan): one check per harness. The harnesses are
# built first with `make fuzz-bins` (clang, build/fuzz), unless a build
# directory that holds them is given: as $1 or FUZZ_BUILD. `make fuzz` is the
# long run that looks for new inputs.
. "$(dirname "$0")/../lib.sh"
cd "$T_ROOT" || exit 1

FUZZ_BUILD=${1:-${FUZZ_BUILD:-}}
if [ -z "$FUZZ_BUILD" ]; then
    FUZZ_BUILD=$T_ROOT/build/fuzz
    log=$T_OUT/fuzz-build.log
    if make -j"$(nproc)" MODE=fuzz fuzz-bins >"$log" 2>&1; then
        t_pass "make fuzz-bins"
    else
        tail -n 20 "$log" | sed 's/^/    /'
        t_fail "make fuzz-bins" "see $log (clang and libclang-rt-14-dev: make deps)"
        t_summary
        exit 1
    fi
fi

n=0
for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    name=${name#fuzz_}
    bin=$FUZZ_BUILD/bin/fuzz_$name
    corpus=tests/fuzz/corpus/$name
    n=$((n + 1))
    if [ ! -x "$bin" ]; then
        t_fail "fuzz_$name replays its corpus" "$bin is missing"
        continue
    fi
    if ! ls "$corpus"/* >/dev/null 2>&1; then
        t_fail "fuzz_$name replays its corpus" "$corpus holds no seed"
        continue
    fi
    seeds=$(find "$corpus" -type f | wc -l)
    log=$T_OUT/fuzz_$name.replay.log
    if "$bin" -runs=0 "$corpus" >"$log" 2>&1 && ! grep -Eq "$T_SANITIZER_PATTERN" "$log"; then
        t_pass "fuzz_$name replays its $seeds seeds"
    else
        grep -E -m 5 "$T_SANITIZER_PATTERN|ERROR|SUMMARY" "$log" | sed 's/^/    /'
        t_fail "fuzz_$name replays its $seeds seeds" "see $log"
    fi
done
[ "$n" -gt 0 ] || t_fail "harnesses in tests/fuzz" "none found"
t_summary
