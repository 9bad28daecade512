#!/usr/bin/env bash
T_SUITE=qkd_sim
. "$(dirname "$0")/../lib.sh"
# Integration suite for qkd-sim: identical blocks on both sides, block size
# and count, pacing, corruption of one side, seq persistence across restarts,
# clean stop on signals, no temporary files left, argument errors.

SIM=$T_BIN/qkd-sim
W=$(mktemp -d "$T_OUT/$T_SUITE.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$W"
}
trap cleanup EXIT

if [ ! -x "$SIM" ]; then
    t_fail "qkd-sim built" "$SIM missing"
    t_summary
    exit 1
fi

# seqs DIR: the block seqs present, sorted, one line.
seqs() { (cd "$1" && shopt -s nullglob && for f in [0-9]*.key; do echo "${f%.key}"; done) | sort -n | paste -sd' ' -; }
# same_blocks A B: both hold the same block names with identical contents.
same_blocks() {
    [ "$(seqs "$1")" = "$(seqs "$2")" ] || return 1
    local f
    for f in "$1"/*.key; do cmp -s "$f" "$2/${f##*/}" || return 1; done
}
tmpfiles() { find "$@" -name '*.tmp' | wc -l; }
sizes() { stat -c %s "$1"/*.key | sort -u | paste -sd' ' -; }

echo "== argument errors"
# bad NAME REGEX ARGS...: exit 2, message on stderr, directories not created.
bad() {
    local name=$1 re=$2 err rc
    shift 2
    err=$("$SIM" "$@" 2>&1 >/dev/null); rc=$?
    t_eq "bad args ($name): exit 2" 2 "$rc"
    t_match "bad args ($name): message" "$re" "$err"
    if [ -e "$W/ba" ] || [ -e "$W/bb" ]; then
        t_fail "bad args ($name): nothing created" "directory created"
        rm -rf "$W/ba" "$W/bb"
    else t_pass "bad args ($name): nothing created"; fi
}
A=$W/ba
B=$W/bb
bad "no arguments" 'exactly two --out'
bad "one --out" 'exactly two --out' --out "$A"
bad "three --out" 'more than twice' --out "$A" --out "$B" --out "$W/bc"
bad "same --out twice" 'must differ' --out "$A" --out "$A"
bad "unknown option" "unknown option '--bogus'" --out "$A" --out "$B" --bogus
bad "positional argument" "unexpected argument 'foo'" --out "$A" --out "$B" foo
bad "missing value" 'requires a value' --out "$A" --out "$B" --rate
bad "value is an option" 'requires a value' --out "$A" --count --out "$B"
bad "--rate negative" '--rate' --out "$A" --out "$B" --rate -1
bad "--rate word" '--rate' --out "$A" --out "$B" --rate fast
bad "--block-bytes 63" '--block-bytes' --out "$A" --out "$B" --block-bytes 63
bad "--block-bytes too big" '--block-bytes' --out "$A" --out "$B" --block-bytes 16777217
bad "--count 0" '--count' --out "$A" --out "$B" --count 0
bad "--count 1.5" '--count' --out "$A" --out "$B" --count 1.5
bad "--corrupt 1.5" '--corrupt' --out "$A" --out "$B" --corrupt 1.5
bad "--corrupt negative" '--corrupt' --out "$A" --out "$B" --corrupt -0.1
bad "--corrupt nan" '--corrupt' --out "$A" --out "$B" --corrupt nan
bad "--corrupt-side 2" '--corrupt-side' --out "$A" --out "$B" --corrupt 1 --corrupt-side 2
out=$("$SIM" --help 2>&1); rc=$?
t_eq "--help exits 0" 0 "$rc"
t_match "--help prints usage" '^usage: qkd-sim --out DIR_A --out DIR_B' "$out"

echo "== count, block size, identical sides"
A=$W/a
B=$W/b
out=$("$SIM" --out "$A" --out "$B" --count 20 --block-bytes 1000 --rate 0 2>"$W/err"); rc=$?
t_eq "20 blocks: exit 0" 0 "$rc"
t_eq "20 blocks: seqs 1..20 on side A" "$(seq 1 20 | paste -sd' ' -)" "$(seqs "$A")"
t_check "20 blocks: side B identical to side A" same_blocks "$A" "$B"
t_eq "20 blocks: every block is 1000 bytes" 1000 "$(sizes "$A")"
t_eq "20 blocks: blocks are distinct random data" 20 "$(sha256sum "$A"/*.key | cut -d' ' -f1 | sort -u | wc -l)"
t_eq "20 blocks: nothing on stdout" "" "$out"
t_eq "20 blocks: no temporary files" 0 "$(tmpfiles "$A" "$B")"
t_eq "20 blocks: state holds the next seq" 21 "$(cat "$A/.qkd-sim.state")"
t_eq "20 blocks: block files are private (0600)" 600 "$(stat -c %a "$A"/*.key "$B"/*.key | sort -u)"
first=$(od -An -tx1 -N8 "$A/1.key" | tr -d ' \n')
t_nomatch "key bytes never printed" "$first" "$out$(cat "$W/err")"

echo "== restart continues the seqs"
old_sums() { for i in $(seq 1 20); do sha256sum "$A/$i.key"; done | sha256sum; }
sum_before=$(old_sums)
"$SIM" --out "$A" --out "$B" --count 5 --block-bytes 1000 --rate 0 --quiet 2>"$W/err"; rc=$?
t_eq "restart: exit 0" 0 "$rc"
t_eq "restart: --quiet prints nothing" "" "$(cat "$W/err")"
t_eq "restart: seqs continue at 21" "$(seq 1 25 | paste -sd' ' -)" "$(seqs "$A")"
t_check "restart: sides identical" same_blocks "$A" "$B"
t_eq "restart: old blocks untouched" "$sum_before" "$(old_sums)"
rm -f "$A/.qkd-sim.state"
"$SIM" --out "$A" --out "$B" --count 1 --block-bytes 64 --rate 0 --quiet; rc=$?
t_eq "lost state: exit 0" 0 "$rc"
t_check "lost state: next seq follows the files on disk (26)" test -s "$A/26.key"
rm -f "$A"/2[0-6].key "$B"/2[0-6].key
"$SIM" --out "$A" --out "$B" --count 1 --block-bytes 64 --rate 0 --quiet
t_check "ingested blocks are not reused (state says 27)" test -s "$B/27.key"
echo garbage >"$A/.qkd-sim.state"
err=$("$SIM" --out "$A" --out "$B" --count 1 --rate 0 2>&1); rc=$?
t_eq "corrupt state file: exit 1" 1 "$rc"
t_match "corrupt state file: message" 'state file .* is corrupt' "$err"
t_eq "corrupt state file: nothing written" 0 "$(find "$A" "$B" -name '28.key' | wc -l)"

S=$W/custom.state
"$SIM" --out "$W/c" --out "$W/d" --count 3 --block-bytes 64 --rate 0 --state "$S" --quiet; rc=$?
t_eq "--state FILE: exit 0" 0 "$rc"
t_eq "--state FILE: holds the next seq" 4 "$(cat "$S")"
t_check_fails "--state FILE: no default state file" test -e "$W/c/.qkd-sim.state"
"$SIM" --out "$W/c" --out "$W/d" --count 2 --block-bytes 64 --rate 0 --state "$S" --quiet
t_eq "--state FILE: restart continues" "1 2 3 4 5" "$(seqs "$W/d")"

echo "== stale temporary files are removed"
printf 'partial' >"$W/c/.77.key.tmp"
"$SIM" --out "$W/c" --out "$W/d" --count 1 --block-bytes 64 --rate 0 --state "$S" --quiet
t_eq "stale .77.key.tmp removed" 0 "$(tmpfiles "$W/c" "$W/d")"

echo "== corruption"
out=$("$SIM" --out "$W/e" --out "$W/f" --count 10 --block-bytes 256 --rate 0 --corrupt 1 --quiet); rc=$?
t_eq "--corrupt 1: exit 0" 0 "$rc"
t_eq "--corrupt 1: every seq listed on stdout" "$(for i in $(seq 1 10); do echo "corrupted $i"; done)" "$out"
ndiff=$(for i in $(seq 1 10); do cmp -l "$W/e/$i.key" "$W/f/$i.key" | wc -l; done | sort -u | paste -sd' ' -)
t_eq "--corrupt 1: every block differs in exactly one byte" 1 "$ndiff"
t_eq "--corrupt 1: sizes unchanged" "256" "$(sizes "$W/f")"

out=$("$SIM" --out "$W/g" --out "$W/h" --count 200 --block-bytes 64 --rate 0 --corrupt 0.5 --corrupt-side 0 --quiet); rc=$?
t_eq "--corrupt 0.5: exit 0" 0 "$rc"
listed=$(printf '%s\n' "$out" | grep -c '^corrupted ' || true)
differ=""
for i in $(seq 1 200); do cmp -s "$W/g/$i.key" "$W/h/$i.key" || differ="$differ corrupted $i"; done
t_eq "--corrupt 0.5: listed seqs are exactly the differing blocks" "$(printf '%s\n' "$out" | paste -sd' ' -)" "${differ# }"
if [ "$listed" -ge 60 ] && [ "$listed" -le 140 ]; then t_pass "--corrupt 0.5: about half corrupted ($listed/200)"
else t_fail "--corrupt 0.5: about half corrupted" "$listed/200"; fi
out=$("$SIM" --out "$W/i" --out "$W/j" --count 20 --block-bytes 64 --rate 0 --corrupt 0 --quiet)
t_eq "--corrupt 0: nothing listed" "" "$out"
t_check "--corrupt 0: sides identical" same_blocks "$W/i" "$W/j"

echo "== pacing and signals"
t0=$(date +%s%N)
"$SIM" --out "$W/k" --out "$W/l" --rate 1000000 --block-bytes 4096 --quiet &
pid=$!
PIDS+=("$pid")
wait_for 10 test -e "$W/k/1.key"
sleep 1
kill -TERM "$pid"
wait "$pid"; rc=$?
t_eq "SIGTERM: clean exit 0" 0 "$rc"
ran_ms=$((($(date +%s%N) - t0) / 1000000))
bits=$(( $(cat "$W"/k/*.key | wc -c) * 8 ))
# Pacing: never more than the rate allows over the time it ran (plus the
# first block), whatever the machine's speed; something was written.
if [ "$bits" -gt 0 ] && [ "$bits" -le $((ran_ms * 1000 + 4096 * 8)) ]; then
    t_pass "1 Mbit/s: $bits bits in $ran_ms ms, never ahead of the rate"
else
    t_fail "1 Mbit/s: never ahead of the rate" "$bits bits in $ran_ms ms"
fi
t_check "SIGTERM: sides identical" same_blocks "$W/k" "$W/l"
t_eq "SIGTERM: no temporary files" 0 "$(tmpfiles "$W/k" "$W/l")"
n=$(seqs "$W/k" | wc -w)
t_eq "SIGTERM: state is the next seq" "$((n + 1))" "$(cat "$W/k/.qkd-sim.state")"

"$SIM" --out "$W/m" --out "$W/n" --rate 8 --block-bytes 64 --quiet &
pid=$!
PIDS+=("$pid")
sleep 0.3
start=$SECONDS
kill -INT "$pid"
wait "$pid"; rc=$?
t_eq "SIGINT during a long wait: exit 0" 0 "$rc"
t_check "SIGINT during a long wait (64 s to the next block): stops without waiting for it" test $((SECONDS - start)) -le 30
t_eq "SIGINT during a long wait: no block written" "" "$(seqs "$W/m")"

"$SIM" --out "$W/o" --out "$W/p" --rate 100000 --block-bytes 64 --quiet &
pid=$!
PIDS+=("$pid")
sleep 0.3
err=$("$SIM" --out "$W/p" --out "$W/q" --count 1 --rate 0 2>&1); rc=$?
t_eq "second simulator on the same directory: exit 1" 1 "$rc"
t_match "second simulator on the same directory: message" 'another qkd-sim' "$err"
kill -TERM "$pid"; wait "$pid"

echo "== readers never see partial files"
mkdir -p "$W/r" "$W/s"
"$SIM" --out "$W/r" --out "$W/s" --rate 0 --block-bytes 262144 --count 60 --quiet &
pid=$!
PIDS+=("$pid")
partial=0
looks=0
while kill -0 "$pid" 2>/dev/null; do
    n=$(find "$W/r" "$W/s" -name '[0-9]*.key' -size -262144c | wc -l)
    partial=$((partial + n))
    looks=$((looks + 1))
done
wait "$pid"; rc=$?
t_eq "concurrent reader: exit 0" 0 "$rc"
t_eq "concurrent reader: no short <seq>.key seen in $looks looks" 0 "$partial"
t_check "concurrent reader: sides identical" same_blocks "$W/r" "$W/s"

echo "== crash (kill -9) and restart"
"$SIM" --out "$W/v" --out "$W/x" --rate 0 --block-bytes 1048576 --quiet &
pid=$!
PIDS+=("$pid")
wait_for 5 test -e "$W/x/3.key"
kill -KILL "$pid"; wait "$pid" 2>/dev/null
sums=$(cd "$W/v" && sha256sum [0-9]*.key 2>/dev/null; cd "$W/x" && sha256sum [0-9]*.key 2>/dev/null)
maxseq=$( (seqs "$W/v"; seqs "$W/x") | tr ' ' '\n' | sort -n | tail -n 1)
"$SIM" --out "$W/v" --out "$W/x" --rate 0 --block-bytes 1048576 --count 2 --quiet; rc=$?
t_eq "after kill -9: restart exits 0" 0 "$rc"
t_eq "after kill -9: earlier blocks untouched" "$sums" "$(cd "$W/v" && for f in [0-9]*.key; do n=${f%.key}; [ "$n" -le "$maxseq" ] && sha256sum "$f"; done; cd "$W/x" && for f in [0-9]*.key; do n=${f%.key}; [ "$n" -le "$maxseq" ] && sha256sum "$f"; done)"
new=$( (seqs "$W/v"; seqs "$W/x") | tr ' ' '\n' | awk -v m="$maxseq" '$1 > m' | sort -nu | paste -sd' ' -)
t_eq "after kill -9: two new seqs after the last one on disk" 2 "$(echo "$new" | wc -w)"
t_check "after kill -9: new blocks identical on both sides" sh -c "for n in $new; do cmp -s '$W/v/'\$n.key '$W/x/'\$n.key || exit 1; done"
t_eq "after kill -9: no temporary files" 0 "$(tmpfiles "$W/v" "$W/x")"

out=$("$SIM" --out "$W/t" --out "$W/u" --rate 0 --block-bytes 16777216 --count 1 --quiet); rc=$?
t_eq "maximum block size: exit 0" 0 "$rc"
t_eq "maximum block size: 16 MiB written" 16777216 "$(sizes "$W/u")"
t_check "maximum block size: sides identical" same_blocks "$W/t" "$W/u"

t_summary
