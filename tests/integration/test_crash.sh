#!/usr/bin/env bash
# Crash safety (invariant I4 over I1-I3). Sites A, B and C, links A-B and A-C.
#  - A key load from SAE_A for SAE_B (GET, served from A's stock or reserved
#    at B) and for SAE_B with SAE_B2 (POST multicast, always reserved at B
#    while the SAE waits) runs while KME_B and then KME_A are killed with
#    SIGKILL (several times, at different instants) and restarted.
#    Afterwards every key the master received is delivered to each of its
#    slaves once with the same bytes, keys issued before the crashes survive
#    them, no two keys share bytes, both stores agree on the link blocks (the
#    non-owner never records bytes the owner has not spent, also checked
#    while B is down; no block verified at one end and discarded at the
#    other), and both KMEs serve again on their own.
#  - KME_C is killed at one precise instant (with gdb): after it committed a
#    reservation from A, before its answer left. A must count those bytes as
#    spent and go on serving.
#  - SIGTERM stops a KME cleanly (exit 0) and it restarts with its keys.
# shellcheck disable=SC2034 # T_SUITE is read by lib.sh
T_SUITE=crash
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# Every key is handed out once, strictly: a second fetch is refused at once
# (the default fetch retry window is tested in test_expiry.sh).
NET_FETCH_RETRY=0
# shellcheck source=lib/keys.sh
. "$T_ROOT/tests/integration/lib/keys.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=6100
NET_KME_BASE=6200
NET_EXTRA_SAES="SAE_B2@B SAE_C2@C"
W=$(mktemp -d "$T_OUT/crash.XXXX")
trap net_stop EXIT

LOADERS=4
EXTRA_KILLS_B=6
EXTRA_KILLS_A=2
ENC="/api/v1/keys/SAE_B/enc_keys"
MULTI='{"number":4,"size":256,"additional_slave_SAE_IDs":["SAE_B2"]}'

# load_loop N KIND: enc_keys as SAE_A for SAE_B (KIND single: GET of 4 keys;
# multi: POST of 4 keys with SAE_B2 as additional slave) until $W/stop
# exists (bounded, should the suite die before it, by 600 s x T_WAIT_SCALE / 10
# and 5000 rounds: far beyond any run), 20 requests per curl process over one
# kept-alive connection; whole 200 answers go to got.N (single) or gotm.N
# (multi), the others to err.N.
load_loop() {
    local n=$1 kind=$2 i=0 end d code file ok k out
    end=$((SECONDS + 60 * T_WAIT_SCALE))
    d=$W/load.$n
    out=$W/got.$n
    [ "$kind" = multi ] && out=$W/gotm.$n
    mkdir -p "$d"
    : >"$out"
    : >"$W/err.$n"
    for k in $(seq 1 20); do
        [ "$k" -gt 1 ] && printf 'next\n'
        printf 'url = "%s%s"\noutput = "%s/r%s"\n' "$(net_url A)" "$ENC" "$d" "$k"
        printf 'cert = "%s"\nkey = "%s"\ncacert = "%s"\n' "$NET_DIR/certs/SAE_A.pem" \
            "$NET_DIR/certs/SAE_A.key" "$NET_DIR/certs/ca.pem"
        printf 'silent\nmax-time = 15\nwrite-out = "%%{http_code} %%{exitcode} %%{filename_effective}\\n"\n'
        if [ "$kind" = multi ]; then
            printf 'header = "Content-Type: application/json"\ndata = "%s"\n' "${MULTI//\"/\\\"}"
        else
            printf 'get\ndata = "number=4"\ndata = "size=256"\n'
        fi
    done >"$d/cfg"
    while [ ! -e "$W/stop" ] && [ $SECONDS -lt $end ] && [ $i -lt 5000 ]; do
        i=$((i + 1))
        rm -f "$d"/r*
        curl -K "$d/cfg" >"$d/codes"
        ok=()
        while read -r code status file; do
            if [ "$code" = 200 ] && [ "$status" != 0 ]; then
                # The answer was cut (KME_A killed while sending it): none.
                printf '000 200 cut short (curl exit %s)\n' "$status" >>"$W/err.$n"
            elif [ "$code" = 200 ]; then
                ok+=("$file")
            else
                printf '%s %s\n' "$code" "$(cat "$file" 2>/dev/null)" >>"$W/err.$n"
            fi
        done <"$d/codes"
        [ ${#ok[@]} -eq 0 ] && continue
        jq -er '.keys[] | "\(.key_ID) \(.key)"' "${ok[@]}" >>"$out" ||
            printf '200 bad body in one of %s\n' "${ok[*]}" >>"$W/err.$n"
    done
}
# got_count [m]: keys received by the loaders so far (m: multicast ones,
# which always needed KME_B).
got_count() { cat "$W"/got"${1:-}".* 2>/dev/null | wc -l; }
# more_keys_than N [m]: the loaders have received more than N keys.
more_keys_than() { [ "$(got_count "${2:-}")" -gt "$1" ]; }
# flowing SECONDS [m]: the loaders receive new keys within SECONDS.
flowing() {
    local before
    before=$(got_count "${2:-}")
    wait_for "$1" more_keys_than "$before" "${2:-}"
}
# check_while_down TAG PEER: with KME_PEER dead, its store is what it had
# committed; KME_A (running) must count every byte PEER recorded as spent.
# Violations go to $W/violations.down.
check_while_down() {
    sleep 0.3
    if dump "$2" "$W/down.$2" && dump A "$W/down.A"; then
        compare_dumps A "$2" "$W/down.A" "$W/down.$2" | sed "s/^/$1: /" >>"$W/violations.down"
    else
        echo "$1: dump failed" >>"$W/violations.down"
    fi
}
# all_ok N FILE: N enc_keys as SAE_A for SAE_C+SAE_C2 in a row all answer 200.
all_ok() {
    local i
    for i in $(seq 1 "$1"); do enc_multi SAE_A SAE_C SAE_C2 4 256 "$2" || return 1; done
}

t_require_programs kme qkd-sim

echo "== network A-B, A-C and stock"
net_init "$W/net" "A B C" "A-B A-C" || { t_fail "net_init" "see $W"; t_summary; exit 1; }
t_check "network starts" net_start
t_check "link key for SAE_B at A (>= 500 keys)" wait_for 20 stock_at_least SAE_A SAE_B 500
t_check "link key for SAE_C at A (>= 50 keys)" wait_for 20 stock_at_least SAE_A SAE_C 50
sim_stop A-C
: >"$W/pre"
t_check "keys issued before the crashes (16)" enc_keys SAE_A SAE_B 16 256 "$W/pre"

echo "== load; SIGKILL KME_B, restart (x$((1 + EXTRA_KILLS_B))); SIGKILL KME_A, restart (x$((1 + EXTRA_KILLS_A)))"
LOAD_PIDS=()
for n in $(seq 1 $LOADERS); do
    if [ $((n % 2)) -eq 0 ]; then load_loop "$n" multi & else load_loop "$n" single & fi
    LOAD_PIDS+=($!)
done
t_check "load: keys flow before the crashes" wait_for 10 more_keys_than 40
sleep 1
: >"$W/violations.down"
kme_stop B KILL
t_check "KME_B is gone after SIGKILL" test -z "$(kme_pid B)"
check_while_down "kill 1" B
sleep 0.7
kme_start B
t_check "KME_B restarts after SIGKILL (status answers)" kme_wait B 30
t_check "load: keys that need B flow again after KME_B's restart (10 s)" flowing 10 m
# More kills of B at other instants of its requests.
up=1
for r in $(seq 1 $EXTRA_KILLS_B); do
    sleep 0.$((3 + r % 5))
    kme_stop B KILL
    check_while_down "kill $((r + 1))" B
    kme_start B
    kme_wait B 30 || { up=0; break; }
done
t_eq "KME_B restarts after each of $EXTRA_KILLS_B more SIGKILLs" 1 "$up"
t_check "load: keys that need B flow again after KME_B's last restart (10 s)" flowing 10 m
t_eq "while B was down, A counted every byte B had recorded as spent (dumps)" 0 \
    "$(wc -l <"$W/violations.down")"
[ -s "$W/violations.down" ] && head -5 "$W/violations.down" | sed 's/^/    /'
sleep 1
kme_stop A KILL
sleep 0.3
kme_start A
t_check "KME_A restarts after SIGKILL (status answers)" kme_wait A 30
t_check "load: keys flow again after KME_A's restart (10 s)" flowing 10
up=1
for r in $(seq 1 $EXTRA_KILLS_A); do
    sleep 0.$((3 + r % 5))
    kme_stop A KILL
    sleep 0.2
    kme_start A
    kme_wait A 30 || { up=0; break; }
done
t_eq "KME_A restarts after each of $EXTRA_KILLS_A more SIGKILLs" 1 "$up"
t_check "load: keys that need B flow again after KME_A's last restart (10 s)" flowing 10 m
sleep 1
touch "$W/stop"
for p in "${LOAD_PIDS[@]}"; do wait "$p"; done

cat "$W"/got.* >"$W/got"
cat "$W"/gotm.* >"$W/gotm"
cat "$W"/err.* >"$W/err"
N=$(wc -l <"$W/got")
M=$(wc -l <"$W/gotm")
echo "  (load: $N keys for SAE_B, $M for SAE_B+SAE_B2, $(wc -l <"$W/err") requests refused or unanswered)"
t_check "load: more than 100 keys for SAE_B received" test "$N" -gt 100
t_check "load: more than 100 keys for SAE_B+SAE_B2 received" test "$M" -gt 100
t_check "load: SAE_A saw 503 'peer KME unreachable' while KME_B was down" \
    grep -q '^503 .*peer KME unreachable' "$W/err"
# Refusals other than "peer unreachable" or "not enough key material" (503)
# or no answer (KME_A down):
grep -Ev '^000 |^503 .*(peer KME unreachable|not enough key material)' "$W/err" >"$W/err.other"
t_eq "load: every refusal is 'peer KME unreachable', 'not enough key material' or no answer" 0 \
    "$(wc -l <"$W/err.other")"
[ -s "$W/err.other" ] && sort "$W/err.other" | uniq -c | sort -rn | head -3 | cut -c1-220 | sed 's/^/    /'
t_check "503 answers carry an ETSI body (message, details)" \
    bash -c "grep '^503 ' '$W/err' | head -20 | cut -d' ' -f2- | jq -e 'has(\"message\") and has(\"details\")' >/dev/null"
for s in A B; do
    t_check_fails "KME_$s never saw its peer reuse spent link bytes (log)" \
        grep -q 'reuses link key bytes' "$NET_DIR/$s/kme.log"
done

echo "== serving on without operator action"
: >"$W/after"
t_check "KME_A status 200 after the restarts" kme_ready A
t_check "KME_B status 200 after the restarts" kme_ready B
t_check "new keys for SAE_B at A after the restarts" enc_keys SAE_A SAE_B 8 256 "$W/after"
[ "$CODE" = 200 ] || echo "    got $CODE $BODY"
t_check "new keys for SAE_B+SAE_B2 at A after the restarts" enc_multi SAE_A SAE_B SAE_B2 8 256 "$W/gotm"
[ "$CODE" = 200 ] || echo "    got $CODE $BODY"

echo "== delivery at B (I2, I3)"
cat "$W/pre" "$W/got" "$W/after" >"$W/all"   # slave SAE_B
cat "$W/all" "$W/gotm" >"$W/every"           # every key the master received
ALL=$(wc -l <"$W/every")
t_eq "master never received a key_ID twice" "$ALL" "$(awk '{ print $1 }' "$W/every" | sort -u | wc -l)"
t_eq "no two keys received by the master share bytes (I1)" "$ALL" \
    "$(awk '{ print $2 }' "$W/every" | sort -u | wc -l)"

: >"$W/pre.fetched"
fetch_all SAE_B SAE_A "$W/pre" "$W/pre.fetched" "$W/pre.fail"
t_eq "keys issued before both crashes are delivered after the restarts" \
    "$(sort "$W/pre")" "$(sort "$W/pre.fetched")"
cat "$W/got" "$W/after" "$W/gotm" >"$W/rest"
# delivered SAE KEYS FETCHED: SAE fetches KEYS (its share of them), then
# checks every one came, with the master's bytes, once.
delivered() {
    local sae=$1 keys=$2 got=$3
    : >"$got"
    fetch_all "$sae" SAE_A "$keys" "$got" "$got.fail"
    t_eq "every key the master received for $sae is fetchable at B" 0 "$(wc -l <"$got.fail")"
    [ -s "$got.fail" ] && head -3 "$got.fail" | sed 's/^/    /'
    t_eq "$sae received the same bytes under each key_ID as SAE_A (I2)" 0 \
        "$(comm -3 <(sort "$keys") <(sort "$got") | wc -l)"
    t_eq "$sae received each key once" "$(wc -l <"$got")" "$(awk '{ print $1 }' "$got" | sort -u | wc -l)"
}
delivered SAE_B "$W/rest" "$W/rest.fetched"
delivered SAE_B2 "$W/gotm" "$W/gotm.fetched.B2"
codes=$(refetch_codes SAE_B SAE_A "$W/every" | sort | uniq -c | awk '{ printf "%s:%s ", $2, $1 }')
t_eq "a second fetch by SAE_B of every key is refused with 400 (I3)" "400:$ALL " "$codes"
codes=$(refetch_codes SAE_B2 SAE_A "$W/gotm" | sort | uniq -c | awk '{ printf "%s:%s ", $2, $1 }')
t_eq "a second fetch by SAE_B2 of every multicast key is refused with 400 (I3)" "400:$(wc -l <"$W/gotm") " "$codes"

echo "== SIGKILL of KME_C after it committed a reservation, before it answered"
if command -v gdb >/dev/null; then
    : >"$W/c.keys"
    # Multicast requests (SAE_C and SAE_C2) are always reserved at C while
    # the SAE waits: no stock on link A-C.
    t_check "keys for SAE_C+SAE_C2 at A (warms A's connection to C)" enc_multi SAE_A SAE_C SAE_C2 2 256 "$W/c.keys"
    cpid=$(kme_pid C)
    # gdb stops C where its reserve handler builds the "committed" answer
    # (after the commit, before the answer is sent) and kills it there. The
    # program is read through /proc (the file may have been rebuilt since).
    # shellcheck disable=SC2016 # $_streq is gdb's, not the shell's
    timeout 40 gdb -nx -batch "/proc/$cpid/exe" -p "$cpid" -ex 'set confirm off' -ex 'set pagination off' \
        -ex 'handle SIGPIPE nostop noprint pass' \
        -ex 'break etsi_error_to_json if $_streq(message, "committed")' \
        -ex 'echo ARMED\n' -ex continue -ex kill </dev/null >"$W/gdb.log" 2>&1 &
    gpid=$!
    : >"$W/c.lost"
    if wait_for 30 grep -q '^ARMED' "$W/gdb.log"; then
        sleep 0.5
        enc_multi SAE_A SAE_C SAE_C2 4 256 "$W/c.lost"
    fi
    wait "$gpid"
    kme_stop C KILL # reaps it; also kills it if gdb did not
    if grep -q 'hit Breakpoint 1' "$W/gdb.log"; then
        t_pass "gdb stopped KME_C right after it committed a reservation, and killed it"
        t_match "SAE_A gets 503 'peer KME unreachable' when C dies before answering" \
            '^503 .*peer KME unreachable' "$CODE $BODY"
        sleep 0.3
        dump C "$W/cut.C" && dump A "$W/cut.A"
        compare_dumps A C "$W/cut.A" "$W/cut.C" >"$W/violations.cut"
        t_eq "A counts the bytes C committed as spent (C's used ranges within A's)" 0 \
            "$(wc -l <"$W/violations.cut")"
        [ -s "$W/violations.cut" ] && head -3 "$W/violations.cut" | sed 's/^/    /'
    else
        t_fail "gdb stopped KME_C right after it committed a reservation, and killed it" \
            "$(grep -v '^\[New LWP' "$W/gdb.log" | tail -4 | tr '\n' ' ')"
    fi
    kme_start C
    t_check "KME_C restarts" kme_wait C 30
    t_check "after C's restart, 5 requests for SAE_C+SAE_C2 in a row succeed" all_ok 5 "$W/c.keys"
    [ "$CODE" = 200 ] || echo "    got $CODE $BODY"
    t_check_fails "KME_C never saw A reuse spent link bytes (log)" \
        grep -q 'reuses link key bytes' "$NET_DIR/C/kme.log"
    for sae in SAE_C SAE_C2; do
        : >"$W/c.fetched.$sae"
        dec_keys "$sae" SAE_A "$W/c.keys" "$W/c.fetched.$sae"
        t_eq "keys for SAE_C+SAE_C2 are delivered to $sae with the same bytes" \
            "$(sort "$W/c.keys")" "$(sort "$W/c.fetched.$sae")"
    done
else
    echo "  (gdb not installed: the precise kill of KME_C is not run)"
fi

echo "== SIGTERM: clean stop, keys kept"
: >"$W/term"
t_check "keys for SAE_B before SIGTERM" enc_keys SAE_A SAE_B 8 256 "$W/term"
kme_term B 20
t_eq "KME_B exits 0 on SIGTERM" 0 "$?"
t_check "KME_B logs its clean stop" grep -q 'KME_B: stopped' "$NET_DIR/B/kme.log"
kme_start B
t_check "KME_B restarts after SIGTERM" kme_wait B 30
: >"$W/term.fetched"
dec_keys SAE_B SAE_A "$W/term" "$W/term.fetched"
t_eq "keys issued before SIGTERM are delivered after the restart" "$(sort "$W/term")" "$(sort "$W/term.fetched")"
for s in A B C; do
    kme_term "$s" 20
    t_eq "KME_$s exits 0 on SIGTERM" 0 "$?"
done

echo "== the two stores agree on link A-B (I1)"
dump A "$W/dump.A"
t_eq "dump of A succeeds" 0 "$?"
dump B "$W/dump.B"
t_eq "dump of B succeeds" 0 "$?"
verified=$(jq '[.links.KME_B[] | select(.state == "verified")] | length' "$W/dump.A" 2>/dev/null)
t_check "A has verified blocks on link A-B" test "${verified:-0}" -gt 0
spent=$(jq '[.links.KME_A[] | select(.owner == "peer" and (.used | length > 1 or .[0] != [0, 48]))] | length' \
    "$W/dump.B" 2>/dev/null)
t_check "B recorded ranges A spent (the comparison is not vacuous)" test "${spent:-0}" -gt 0
compare_dumps A B "$W/dump.A" "$W/dump.B" >"$W/violations"
t_eq "stores agree: peer used ranges within the owner's, no verified/discarded split" 0 \
    "$(wc -l <"$W/violations")"
[ -s "$W/violations" ] && head -5 "$W/violations" | sed 's/^/    /'

echo "== sanitizers"
for s in A B C; do
    t_check "KME_$s log has no sanitizer report" sanitizer_clean "$s"
done

t_summary
