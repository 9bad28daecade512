#!/usr/bin/env bash
# The QKD link between two KMEs.
#  (a) Corruption: qkd-sim corrupts 30% of 40 blocks on B's side; the key
#      caching protocol must discard exactly those blocks at both ends and
#      verify every other one at both ends; keys flow from the rest.
#  (b) Peer down: with KME_B stopped, requests that need B are refused with
#      503 "peer KME unreachable" and change nothing (stock count unchanged,
#      even for a request spanning several link blocks); keys A already holds
#      in stock for SAE_B and local (DRBG) keys are still served; once B is
#      back, keys for B flow again within seconds and are fetchable there.
#  (c) No link key yet: before qkd-sim runs, a request for the remote slave
#      is refused with 503 saying 0 keys are available, status counts 0; once
#      qkd-sim runs, the same request succeeds.
#  (d) B stalls: SIGSTOP of KME_B during a burst of enc_keys for SAE_B (peer
#      timeout 1 s), SIGCONT a few timeouts later. Reservations whose answer
#      was lost are settled once B is back; then no message carried bytes of
#      link key that an earlier one had used (every message's ranges are in
#      the debug logs), B refused no reservation for reused bytes, both
#      dumps agree, and every key SAE_A got is fetched at B with its bytes.
#  (e) Answers overtaken: A reaches B through tcp_tap, which holds the
#      connections open at one moment (their requests reach B only when
#      released) while new ones flow. Reservations held there time out, A
#      asks B about them (resolve) and B withdraws them; A carves their bytes
#      again; then the held requests reach B, which refuses them. The checks
#      of (d) hold.
# shellcheck disable=SC2034 # T_SUITE is read by lib.sh
T_SUITE='link'
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# shellcheck source=lib/keys.sh
. "$T_ROOT/tests/integration/lib/keys.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=6300
NET_KME_BASE=6400
W=$(mktemp -d "$T_OUT/link.XXXX")
TAP_PORT=6410
trap 'net_stop; net_fwd_stop tap' EXIT
t_require_programs kme qkd-sim tcp_tap

SITE_DIRS=()

# block_states SITE PEER: "seq state" lines of the site's blocks on the link,
# seqs 1 up to its ingest mark; a block used up or discarded is erased, and
# its seq (below the mark, with no record) is "spent".
block_states() {
    dump "$1" "$W/states.$1" &&
        jq -r --arg p "KME_$2" '(.links[$p] | map({key: (.seq | tostring), value: .state}) | from_entries) as $b
            | range(1; .ingest_marks[$p]) | "\(.) \($b[tostring] // "spent")"' "$W/states.$1"
}
# settled SITE PEER COUNT: the site holds COUNT blocks, none unverified or locked.
settled() {
    local s
    s=$(block_states "$1" "$2") || return 1
    [ "$(printf '%s\n' "$s" | grep -c .)" -eq "$3" ] && ! printf '%s\n' "$s" | grep -Eq ' (unverified|locked)$'
}
seqs_in_state() { # SITE PEER STATE: sorted seqs, one line
    block_states "$1" "$2" | awk -v st="$3" '$2 == st { print $1 }' | sort -n | paste -sd' ' -
}
# has_stock_pair MASTER SLAVE: A's store holds stock keys for the pair.
has_stock_pair() {
    dump A "$W/stockdump" &&
        jq -e --arg m "$1" --arg s "$2" '[.stock[]? | select(.master == $m and .slave == $s)] | length > 0' \
            "$W/stockdump" >/dev/null
}
# enc_ok MASTER SLAVE NUMBER SIZE FILE: enc_keys succeeds (for wait_for).
enc_ok() { enc_keys "$@"; }

echo "== (a) corruption: 40 blocks, 30% corrupted on B's side"
NET_RATE=20000000
NET_BLOCK=4096
net_init "$W/a" "A B" "A-B" || { t_fail "net_init" "see $W"; t_summary; exit 1; }
SITE_DIRS+=("$NET_DIR")
kme_start A
kme_start B
t_check "KME_A starts" kme_wait A 30
t_check "KME_B starts" kme_wait B 30
sim_start A-B --corrupt 0.3 --corrupt-side 1 --count 40
SIM_LOG=$NET_DIR/links/A-B/qkd-sim.log
t_check "all 40 blocks settled at A" wait_for 30 settled A B 40
t_check "all 40 blocks settled at B" wait_for 30 settled B A 40
corrupted=$(awk '$1 == "corrupted" { print $2 }' "$SIM_LOG" | sort -n | paste -sd' ' -)
echo "  (qkd-sim corrupted: ${corrupted:-none})"
t_check "qkd-sim corrupted some blocks" test -n "$corrupted"
# Nothing is used yet: the blocks spent (erased) are the discarded ones.
t_eq "blocks discarded (and erased) at A are exactly the corrupted ones" "$corrupted" "$(seqs_in_state A B spent)"
t_eq "blocks discarded (and erased) at B are exactly the corrupted ones" "$corrupted" "$(seqs_in_state B A spent)"
all=$(seq 1 40 | paste -sd' ' -)
others=$(comm -23 <(tr ' ' '\n' <<<"$all" | sort) <(tr ' ' '\n' <<<"$corrupted" | sort) | sort -n | paste -sd' ' -)
t_eq "every other block is verified at A" "$others" "$(seqs_in_state A B verified)"
t_eq "every other block is verified at B" "$others" "$(seqs_in_state B A verified)"
dump A "$W/a.A"
dump B "$W/a.B"
compare_dumps A B "$W/a.A" "$W/a.B" >"$W/a.violations"
t_eq "both ends agree on every block (dumps)" 0 "$(wc -l <"$W/a.violations")"
: >"$W/a.keys"
: >"$W/a.fetched"
t_check "SAE_A gets keys for SAE_B from the verified blocks" enc_keys SAE_A SAE_B 4 256 "$W/a.keys"
dec_keys SAE_B SAE_A "$W/a.keys" "$W/a.fetched"
t_eq "SAE_B fetches them with the same bytes" "$(sort "$W/a.keys")" "$(sort "$W/a.fetched")"
: >"$W/a.keysB"
: >"$W/a.fetchedB"
t_check "SAE_B gets keys for SAE_A (B's own blocks)" enc_keys SAE_B SAE_A 4 256 "$W/a.keysB"
dec_keys SAE_A SAE_B "$W/a.keysB" "$W/a.fetchedB"
t_eq "SAE_A fetches them with the same bytes" "$(sort "$W/a.keysB")" "$(sort "$W/a.fetchedB")"

echo "== (b) peer down"
NET_RATE=2000000
sim_stop A-B
sim_start A-B
t_check "link key for 2000 keys at A" wait_for 30 stock_at_least SAE_A SAE_B 2000
: >"$W/b.keys"
t_check "keys for SAE_B before B stops" enc_keys SAE_A SAE_B 4 256 "$W/b.keys"
t_check "A keeps keys for SAE_B in stock (after demand)" wait_for 10 has_stock_pair SAE_A SAE_B
kme_stop B
t_check "KME_B stopped" test -z "$(kme_pid B)"
sleep 1
before=$(stored_count SAE_A SAE_B)
: >"$W/b.refused"
enc_keys SAE_A SAE_B 2 512 "$W/b.refused"
t_eq "B down: GET enc_keys (size 512, none in stock) answers 503" 503 "$CODE"
t_match "B down: the ETSI message names the peer" '"message": *"peer KME unreachable"' "$BODY"
t_check "B down: the 503 body has message and details" \
    jq -e '(.message | type == "string") and (.details | type == "array" and length > 0)' <<<"$BODY"
enc_keys SAE_A SAE_B 4 65536 "$W/b.refused"
t_eq "B down: a request spanning several link blocks (4 x 65536 bits) answers 503" 503 "$CODE"
# A request whose answer was lost holds its bytes "in doubt" until B can say
# which it recorded; every other refusal gives them back at once.
no_doubt() { [ "$("$T_BIN/kme" --config "$NET_DIR/A/kme.json" --dump | jq '.in_doubt | length')" = 0 ]; }
t_eq "B down: no key was handed out by the refused requests" 0 "$(wc -l <"$W/b.refused")"
: >"$W/b.local"
t_check "B down: local keys (slave SAE_A at A, DRBG) still served" enc_keys SAE_A SAE_A 2 256 "$W/b.local"
: >"$W/b.stocked"
t_check "B down: keys A already holds in stock for SAE_B are served" enc_keys SAE_A SAE_B 2 256 "$W/b.stocked"
kme_start B
t_check "KME_B restarts" kme_wait B 30
t_check "B back: every reservation A held in doubt is settled" wait_for 10 no_doubt
t_check "B back: A's stored_key_count is back to at least what it was before the refusals" \
    wait_for 10 stock_at_least SAE_A SAE_B $((before - 1))
: >"$W/b.after"
t_check "B back: enc_keys for SAE_B (size 512, reserved at B) succeeds within 10 s" \
    wait_for 10 enc_ok SAE_A SAE_B 2 512 "$W/b.after"
[ "$CODE" = 200 ] || echo "    last answer: $CODE $BODY"
t_check "B back: a further request spanning several link blocks succeeds" enc_keys SAE_A SAE_B 4 65536 "$W/b.after"
[ "$CODE" = 200 ] || echo "    last answer: $CODE $BODY"
t_check "B back: the new keys came" test -s "$W/b.after"
cat "$W/b.keys" "$W/b.stocked" "$W/b.after" >"$W/b.all"
: >"$W/b.fetched"
fetch_all SAE_B SAE_A "$W/b.all" "$W/b.fetched" "$W/b.fail"
t_eq "every key for SAE_B (before, from stock while B was down, after) is fetched at B with the same bytes" \
    "$(sort "$W/b.all")" "$(sort "$W/b.fetched")"
: >"$W/b.local.fetched"
dec_keys SAE_A SAE_A "$W/b.local" "$W/b.local.fetched"
t_eq "local keys are fetched at A with the same bytes" "$(sort "$W/b.local")" "$(sort "$W/b.local.fetched")"
# Both stopped first: A may reserve stock ahead of demand at any moment, and
# two dumps of running KMEs would catch the two ends at different times.
net_stop
dump A "$W/b.A"
dump B "$W/b.B"
compare_dumps A B "$W/b.A" "$W/b.B" >"$W/b.violations"
t_eq "both ends agree on every block after the outage (dumps of the stopped stores)" 0 "$(wc -l <"$W/b.violations")"
[ -s "$W/b.violations" ] && head -3 "$W/b.violations" | sed 's/^/    /'

echo "== (c) no link key yet"
net_init "$W/c" "A B" "A-B" || { t_fail "net_init (c)" "see $W"; t_summary; exit 1; }
SITE_DIRS+=("$NET_DIR")
kme_start A
kme_start B
t_check "KME_A starts without qkd-sim" kme_wait A 30
t_check "KME_B starts without qkd-sim" kme_wait B 30
# A learns where SAE_B is from B's advert (its directory), keys or not.
knows_sae_b() { "$T_BIN/kme" --config "$NET_DIR/A/kme.json" --routes 2>/dev/null | jq -e '.directory.SAE_B == "KME_B"' >/dev/null; }
t_check "KME_A learns SAE_B from B's advert" wait_for 30 knows_sae_b
t_eq "status: stored_key_count for SAE_B is 0" 0 "$(stored_count SAE_A SAE_B)"
: >"$W/c.keys"
enc_keys SAE_A SAE_B 1 256 "$W/c.keys"
t_eq "enc_keys for SAE_B answers 503" 503 "$CODE"
t_match "the 503 says no key is available" '"message": *"not enough key material"' "$BODY"
t_match "its details say 0 keys are available" '"details":.*[^0-9]0 keys' "$BODY"
sim_start A-B
t_check "once qkd-sim runs, enc_keys for SAE_B succeeds" wait_for 20 enc_ok SAE_A SAE_B 1 256 "$W/c.keys"
: >"$W/c.fetched"
dec_keys SAE_B SAE_A "$W/c.keys" "$W/c.fetched"
t_eq "SAE_B fetches it with the same bytes" "$(sort "$W/c.keys")" "$(sort "$W/c.fetched")"
net_stop

echo "== (d) B stalls (SIGSTOP) during a burst"
NET_RATE=2000000
NET_STOCK=0 # every request reserves at B
NET_PEER_TIMEOUT_MS=1000
NET_LOG_LEVEL=debug
net_init "$W/d" "A B" "A-B" || { t_fail "net_init (d)" "see $W"; t_summary; exit 1; }
SITE_DIRS+=("$NET_DIR")
sim_start A-B
kme_start A
kme_start B
t_check "KME_A starts" kme_wait A 30
t_check "KME_B starts" kme_wait B 30
t_check "link key for 500 keys at A within 30 s" wait_for 30 stock_at_least SAE_A SAE_B 500
# burst_start P / burst_stop P: 6 clients ask for keys for SAE_B without a
# pause until stopped; the keys in $W/P.keys.N, one HTTP status per request
# in $W/P.codes; burst_stop prints how many were answered 200 and refused.
burst_client() { # P N
    : >"$W/$1.keys.$2"
    : >"$W/$1.codes.$2"
    while [ ! -e "$W/$1.stop" ]; do
        enc_keys SAE_A SAE_B 4 256 "$W/$1.keys.$2"
        echo "$CODE" >>"$W/$1.codes.$2"
    done
}
burst_start() {
    local i
    BURST=()
    for i in 1 2 3 4 5 6; do
        burst_client "$1" "$i" &
        BURST+=($!)
    done
}
burst_stop() {
    touch "$W/$1.stop"
    wait "${BURST[@]}"
    cat "$W/$1".codes.* >"$W/$1.codes"
    echo "  (burst: $(grep -c '^200$' "$W/$1.codes") requests answered 200, $(grep -vc '^200$' "$W/$1.codes") refused)"
}
# burst_checks P WHAT: after a burst with answers lost, at the stopped sites
# A and B: what was in doubt is settled, the released bytes are carved
# again, every key is delivered, the dumps agree, and no message carried
# bytes of link key an earlier one had used.
burst_checks() {
    local p=$1 what=$2 ok i
    t_check "$what: A held reservations in doubt (their answer lost)" \
        grep -q "in doubt until the neighbour answers" "$NET_DIR/A/kme.log"
    t_check "$what: every reservation A held in doubt is settled within 20 s" wait_for 20 no_doubt
    grep -h "settled .* reservations whose answer was lost" "$NET_DIR/A/kme.log" | sed 's/^[^ ]* [^ ]* */  (A: /; s/$/)/'
    : >"$W/$p.after"
    ok=0
    for i in $(seq 1 20); do enc_keys SAE_A SAE_B 4 256 "$W/$p.after" && ok=$((ok + 1)); done
    t_eq "$what: then 20 requests for SAE_B succeed (bytes given back are carved again)" 20 "$ok"
    cat "$W/$p".keys.* "$W/$p.after" >"$W/$p.all"
    : >"$W/$p.fetched"
    fetch_all SAE_B SAE_A "$W/$p.all" "$W/$p.fetched" "$W/$p.fail"
    t_eq "$what: every key SAE_A got is fetched at B with the same bytes" \
        "$(sort "$W/$p.all")" "$(sort "$W/$p.fetched")"
    net_stop
    dump A "$W/$p.A"
    dump B "$W/$p.B"
    compare_dumps A B "$W/$p.A" "$W/$p.B" >"$W/$p.violations"
    t_eq "$what: both ends agree on every block (dumps)" 0 "$(wc -l <"$W/$p.violations")"
    [ -s "$W/$p.violations" ] && head -3 "$W/$p.violations" | sed 's/^/    /'
    t_check "$what: the messages' ranges are in the debug log" \
        grep -q ": sent reservation .* ranges [0-9]" "$NET_DIR/A/kme.log"
    reused_ranges A B >"$W/$p.reused"
    t_eq "$what: no message carried bytes of link key an earlier message had used" 0 "$(wc -l <"$W/$p.reused")"
    [ -s "$W/$p.reused" ] && head -3 "$W/$p.reused" | sed 's/^/    /'
    t_eq "$what: B refused no reservation for reused link key bytes" 0 \
        "$(grep -c "refused a reservation that reuses link key bytes" "$NET_DIR/B/kme.log")"
}
burst_start d
sleep 2
kill -STOP "$(kme_pid B)"
sleep 3.5 # the peer timeout, three times over
kill -CONT "$(kme_pid B)"
sleep 3
burst_stop d
t_check "some requests of the burst were refused while B was stopped" grep -qv '^200$' "$W/d.codes"
burst_checks d "B stalled"

echo "== (e) answers overtaken"
net_init "$W/e" "A B" "A-B" || { t_fail "net_init (e)" "see $W"; t_summary; exit 1; }
SITE_DIRS+=("$NET_DIR")
jq --arg u "https://localhost:$TAP_PORT" '.links |= map(.url = $u)' "$NET_DIR/A/kme.json" >"$W/e.json" &&
    mv "$W/e.json" "$NET_DIR/A/kme.json"
t_check "the tap between A and B listens" net_fwd_start tap "$TAP_PORT" "$(net_kme_port B)"
sim_start A-B
kme_start A
kme_start B
t_check "KME_A starts" kme_wait A 30
t_check "KME_B starts" kme_wait B 30
t_check "link key for 500 keys at A within 30 s" wait_for 30 stock_at_least SAE_A SAE_B 500
burst_start e
sleep 2
kill -USR2 "$(cat "$NET_DIR/fwd.tap.pid")"
t_check "the tap holds the connections A had open" wait_for 5 grep -Eq '^held [1-9]' "$NET_DIR/fwd.tap.out"
# A asks about what got no answer once B answers on new connections.
asked() { grep -q "settled .* reservations whose answer was lost" "$NET_DIR/A/kme.log" && no_doubt; }
t_check "A settles the reservations held on the wire within 30 s, without them" wait_for 30 asked
sleep 2 # the burst carves the bytes given back
kill -USR2 "$(cat "$NET_DIR/fwd.tap.pid")"
t_check "the tap lets the held requests through" wait_for 5 grep -q '^released' "$NET_DIR/fwd.tap.out"
# Which reservations the tap caught before B read them is the machine's
# timing: those B had read were recorded there, and A was told so. Only a
# run in which B withdrew some can show what happens when they arrive.
if grep -Eq "settled .*: [1-9][0-9]* withdrawn by the neighbour" "$NET_DIR/A/kme.log"; then
    t_pass "A was told some were withdrawn"
    t_check "B refuses the held reservations it withdrew, once they arrive (10 s)" \
        wait_for 10 grep -q "arrived after the neighbour withdrew it" "$NET_DIR/B/kme.log"
else
    t_skip "held reservations arriving after their withdrawal" \
        "B had read every reservation the tap held before A asked (this run's timing): all were recorded there"
fi
sleep 1
burst_stop e
burst_checks e "answers overtaken"
net_fwd_stop tap
NET_STOCK=4096
NET_PEER_TIMEOUT_MS=
NET_LOG_LEVEL=

echo "== sanitizers"
for d in "${SITE_DIRS[@]}"; do
    for s in A B; do
        t_check "KME_$s log ($(basename "$d")) has no sanitizer report" \
            bash -c "! grep -Eq '$T_SANITIZER_PATTERN' '$d/$s/kme.log'"
    done
done

t_summary
