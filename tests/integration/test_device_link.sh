#!/usr/bin/env bash
# A link fed through the ETSI 014 device source (relay/link_source.h): the
# triangle A-B, B-C, A-C where A-C takes its key from qkd-sim --device (each
# KME an SAE of its end's device) and the other links from key files.
#  (a) End to end: keys for SAE_C at A and for SAE_A at C are carved from
#      A-C and fetched at the other end with the same bytes; both ends hold
#      the same verified blocks (dumps agree); no key file is involved; no
#      key's bytes appear in a log.
#  (b) SIGKILL at each step of the ID handshake (gdb stops the KME there):
#      A after committing the block's seq, before naming the keys; C before
#      fetching them from its device; C after storing the block, before
#      answering; A after the answer, before storing its copy. Each KME
#      restarts and keys flow again; the dumps agree; the blocks left at C
#      alone (steps 3 and 4) stay unverified, below A's ingest mark (A can
#      never store or verify them).
#  (d) Forged link_ids: once A owns link key, a link_ids request without a
#      MAC (what anyone holding A's TLS key could send), or with a made-up
#      tag, naming real key_IDs from A's device and a seq far ahead, is
#      refused by C: C's device still holds those keys (C fetched nothing),
#      C's ingest mark did not move, and keys flow on. (Replay of a tagged
#      request: tests/unit/test_msg_auth.c, on real stores.)
#  (c) Device faults: a device that answers 503, hangs past the timeout,
#      returns fewer keys or keys of the wrong size (at A's end: enc_keys; at
#      C's end: dec_keys), or goes away: the link is advertised down (A's
#      route to C moves via B, qkd_kme_link_source_up is 0), no block is
#      stored while the device fails, and once the device is sound again the
#      link comes back by itself and blocks are stored again. Keys C's
#      device could not hand over are dropped at both ends: the blocks made
#      of the rest verify, none is discarded.
# shellcheck disable=SC2034 # T_SUITE is read by lib.sh
T_SUITE='device_link'
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# shellcheck source=lib/keys.sh
. "$T_ROOT/tests/integration/lib/keys.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=6800
NET_KME_BASE=6810
NET_ADMIN_BASE=6820
NET_DEVICE_LINKS="A-C"
NET_RATE=2000000
NET_BLOCK=16384
W=$(mktemp -d "$T_OUT/device_link.XXXX")
trap 'net_stop' EXIT
t_require_programs kme qkd-sim

# One device request at most 1 s; the backoff and the link's state follow.
net_up_or_end "$W/net" "A B C" "A-B B-C A-C" '.links |= map(if .source then .source.timeout_ms = 1000 else . end)'

routes() { timeout 20 "$T_BIN/kme" --config "$NET_DIR/$1/kme.json" --routes 2>/dev/null; }
next_hop() { routes "$1" | jq -r --arg d "KME_$2" '.routes[] | select(.dest == $d) | .next_hop' 2>/dev/null; }
next_hop_is() { [ "$(next_hop "$1" "$2")" = "KME_$3" ]; }
metric() { # SITE NAME{labels}
    curl -s --max-time 5 "http://127.0.0.1:$(net_admin_port "$1")/metrics" | awk -v m="$2" '$1 == m { print $2 }'
}
source_up_is() { [ "$(metric "$1" "qkd_kme_link_source_up{link=\"KME_$2\"}")" = "$3" ]; }
# mark SITE PEER: the site's ingest mark on the link (one past its highest block stored)
mark() { dump "$1" "$W/mark.$1" && jq -r --arg p "KME_$2" '.ingest_marks[$p] // 0' "$W/mark.$1"; }
mark_above() { local m; m=$(mark "$1" "$2") && [ "$m" -gt "$3" ]; }
# flows MASTER SLAVE: a key for SLAVE at MASTER's KME, fetched at SLAVE's with the same bytes
flows() {
    local k=$W/flow.k f=$W/flow.f
    : >"$k"
    : >"$f"
    enc_keys "$1" "$2" 1 256 "$k" && dec_keys "$2" "$1" "$k" "$f" && [ -s "$f" ] && cmp -s "$k" "$f"
}
# still_pair FILE_A FILE_C: dumps of A and C that show the same moment of
# link A-C (A again after C, until A's blocks of A-C did not change).
still_pair() {
    dump A "$1" && dump C "$2" && dump A "$1.again" &&
        cmp -s <(jq -S .links.KME_C "$1") <(jq -S .links.KME_C "$1.again")
}
# dumps_agree: with the devices stopped (ingest still), both ends of A-C
# agree on every block (compare_dumps); the devices run again after.
dumps_agree() {
    local rc=1
    sim_stop A-C
    if wait_for 30 still_pair "$W/agree.A" "$W/agree.C"; then
        compare_dumps A C "$W/agree.A" "$W/agree.C" >"$W/agree.v"
        [ -s "$W/agree.v" ] && head -3 "$W/agree.v" | sed 's/^/    /' >&2
        [ ! -s "$W/agree.v" ] && rc=0
    fi
    sim_start A-C
    return $rc
}

echo "== (a) keys over the device-fed link A-C"
t_check "A routes to KME_C over A-C" wait_for 30 next_hop_is A C C
t_check "blocks are stored at A from the device" wait_for 30 mark_above A C 2
: >"$W/a.keys"
: >"$W/a.fetched"
t_check "SAE_A gets 16 keys for SAE_C" enc_keys SAE_A SAE_C 16 256 "$W/a.keys"
dec_keys SAE_C SAE_A "$W/a.keys" "$W/a.fetched"
t_eq "SAE_C fetches them with the same bytes" "$(sort "$W/a.keys")" "$(sort "$W/a.fetched")"
: >"$W/a.keysC"
: >"$W/a.fetchedC"
t_check "SAE_C gets 16 keys for SAE_A (blocks C owns)" enc_keys SAE_C SAE_A 16 256 "$W/a.keysC"
dec_keys SAE_A SAE_C "$W/a.keysC" "$W/a.fetchedC"
t_eq "SAE_A fetches them with the same bytes" "$(sort "$W/a.keysC")" "$(sort "$W/a.fetchedC")"
dump A "$W/a.A"
t_check "A holds verified blocks of A-C" \
    jq -e '[.links.KME_C[] | select(.state == "verified")] | length > 0' "$W/a.A"
t_check "both ends of A-C agree on every block (dumps)" dumps_agree
t_eq "no key file was written for A-C" "" "$(find "$NET_DIR/links/A-C" -name '*.key' | head -1)"
leaked=0
while read -r _ key; do
    grep -rqF -- "$key" "$NET_DIR"/*/kme.log "$NET_DIR"/links/A-C/qkd-sim.log && leaked=$((leaked + 1))
done < <(cat "$W/a.keys" "$W/a.keysC")
t_eq "no key's bytes appear in a log (I5)" 0 "$leaked"

echo "== (d) forged link_ids"
DC=$NET_DIR/devcerts
# device SITE PATH [CURL ARGS]: a request to the site's end of the A-C devices, as the site's KME
device() {
    local site=$1 path=$2
    shift 2
    curl -s --max-time 10 --cacert "$DC/ca.pem" --cert "$DC/KME_$site.pem" --key "$DC/KME_$site.key" "$@" \
        "https://localhost:$(net_device_port A-C "$site")/api/v1/keys/$path"
}
# link_ids_as_a BODY: POST /kme/v1/link_ids to C with A's KME certificate; sets CODE and BODY
link_ids_as_a() {
    local out
    out=$(curl -s --max-time 15 --cacert "$NET_DIR/certs/ca.pem" --cert "$NET_DIR/certs/KME_A.kme.pem" \
        --key "$NET_DIR/certs/KME_A.kme.key" -H 'Content-Type: application/json' --data-binary "$1" \
        -w '\n%{http_code}' "https://localhost:$(net_kme_port C)/kme/v1/link_ids")
    CODE=${out##*$'\n'}
    BODY=${out%$'\n'*}
}
a_verified() { dump A "$W/d.A" && jq -e '[.links.KME_C[] | select(.state == "verified")] | length > 0' "$W/d.A" >/dev/null; }
t_check "A holds verified key on A-C (it tags its link_ids)" wait_for 30 a_verified
ids=$(device A "KME_C/enc_keys?number=2&size=256" | jq -c '[.keys[].key_ID]' 2>/dev/null)
t_check "two keys taken from A's device by hand" test "$(jq length <<<"${ids:-[]}")" = 2
m_c=$(mark C A)
link_ids_as_a "{\"seq\":1000000000,\"size\":256,\"key_IDs\":$ids}"
t_eq "a link_ids without a MAC is refused (400)" 400 "$CODE"
t_eq "with the ETSI body 'request not authentic'" "request not authentic" "$(jq -r .message <<<"$BODY" 2>/dev/null)"
link_ids_as_a "{\"seq\":1000000001,\"size\":256,\"key_IDs\":$ids,\"mac_key\":[[2,0,32]],\"answer_key\":[[2,32,32]],\"tag\":\"00000000000000000000000000000000\"}"
t_check "a link_ids with a made-up tag is refused ($CODE)" test "$CODE" != 200 -a -n "$CODE"
t_check "C's ingest mark on A-C did not jump to the forged seq ($m_c before, $(mark C A) now)" \
    test "$(mark C A)" -lt 1000000000
t_eq "C's device still holds both keys: C fetched nothing" 2 \
    "$(device C KME_A/dec_keys -H 'Content-Type: application/json' \
        --data-binary "$(jq -c '{key_IDs: map({key_ID: .})}' <<<"$ids")" | jq '.keys | length' 2>/dev/null)"
t_check "keys SAE_A -> SAE_C flow on" wait_for 30 flows SAE_A SAE_C

echo "== (b) SIGKILL at each step of the ID handshake"
# kill_at SITE FUNCTION: gdb stops the site's KME when it enters FUNCTION and
# kills it there; the site is then started again. 0 when the breakpoint hit.
kill_at() {
    local pid log=$W/gdb.$1.$2.log hit=1
    pid=$(kme_pid "$1")
    timeout 60 gdb -nx -batch "/proc/$pid/exe" -p "$pid" -ex 'set confirm off' -ex 'set pagination off' \
        -ex 'handle SIGPIPE nostop noprint pass' -ex "break $2" -ex continue -ex kill </dev/null >"$log" 2>&1
    grep -q 'hit Breakpoint 1' "$log" && hit=0
    kme_stop "$1" KILL
    kme_start "$1"
    kme_wait "$1" 30 || hit=1
    return $hit
}
if command -v gdb >/dev/null; then
    for step in "A kme_link_ids_request_to_json" "C device_dec_keys" "C kme_link_ids_response_to_json" \
        "A kme_link_ids_response_from_json"; do
        # shellcheck disable=SC2086 # two words: site and function
        set -- $step
        t_check "KME_$1 killed in $2 and restarted" kill_at "$1" "$2"
        t_check "after it, keys SAE_A -> SAE_C flow again" wait_for 30 flows SAE_A SAE_C
        t_check "after it, keys SAE_C -> SAE_A flow again" wait_for 30 flows SAE_C SAE_A
    done
    t_check "both ends agree on every block after the kills (dumps)" dumps_agree
    cp "$W/agree.A" "$W/b.A"
    cp "$W/agree.C" "$W/b.C"
    # Blocks C holds that A has no record of, below A's ingest mark: left by
    # the kills between C's commit and A's (unverified), or blocks of A's
    # that A used up and erased while C missed a MAC key A spent from them
    # in a request the kills cut off (verified, owned by A: C cannot use
    # them, and A never names them again).
    orphans=$(jq -r --slurpfile a "$W/b.A" '($a[0].ingest_marks.KME_C) as $m
        | ([$a[0].links.KME_C[].seq]) as $have
        | .links.KME_A[] | select((.seq as $s | $have | index($s)) == null and .seq < $m)
        | "\(.seq) \(.state) \(.owner)"' "$W/b.C")
    echo "  (blocks left at C alone: $(printf '%s' "$orphans" | tr '\n' ',' ))"
    t_check "the kills left unverified blocks at C alone" \
        test -n "$(printf '%s\n' "$orphans" | awk '$2 == "unverified"')"
    t_eq "every block left at C alone is unverified, or A's and used up there (C never uses it)" "" \
        "$(printf '%s\n' "$orphans" | awk 'NF && $2 != "unverified" && $3 != "peer"')"
else
    t_skip "SIGKILL at each handshake step" "gdb is not installed"
fi

echo "== (c) device faults"
fault() { printf '%s\n' "$*" >"$NET_DIR/links/A-C/fault"; }
# fault_round NAME SITE_DOWN [CLEAR...]: with the fault in place, the link
# goes down at SITE_DOWN's end, no block is stored at A while it lasts;
# cleared (CLEAR, default: fault none), it is back and blocks are stored again.
fault_round() {
    local name=$1 site=$2 peer m1 m2
    shift 2
    [ $# -gt 0 ] || set -- fault none
    peer=$([ "$site" = A ] && echo C || echo A)
    t_check "$name: KME_$site marks its source down" wait_for 30 source_up_is "$site" "$peer" 0
    t_check "$name: A's route to KME_C moves via B" wait_for 30 next_hop_is A C B
    m1=$(mark A C)
    sleep 2
    m2=$(mark A C)
    t_eq "$name: no block is stored at A while the device fails" "$m1" "$m2"
    "$@"
    t_check "$name cleared: KME_$site's source is up again" wait_for 30 source_up_is "$site" "$peer" 1
    t_check "$name cleared: A routes to KME_C over A-C again" wait_for 30 next_hop_is A C C
    t_check "$name cleared: blocks are stored again" wait_for 30 mark_above A C "$m2"
}
t_check "source up at A before the faults (devices back after the dumps)" wait_for 30 source_up_is A C 1
t_check "source up at C before the faults" wait_for 30 source_up_is C A 1
fault 503 0
fault_round "503 at A's device" A
fault hang 0
fault_round "hang at A's device" A
fault short 0
fault_round "fewer keys from A's device" A
fault wrong-size 0
fault_round "wrong key size from A's device" A
fault 503 1
fault_round "503 at C's device" C
fault wrong-size 1
fault_round "wrong key size from C's device" C
sim_stop A-C
fault_round "the devices gone" A sim_start A-C
t_check "the device back: keys SAE_A -> SAE_C flow" wait_for 30 flows SAE_A SAE_C

echo "== (c) C's device hands over fewer keys than named"
m0=$(mark A C)
fault short 1
t_check "A stores blocks of the keys C got" wait_for 30 mark_above A C $((m0 + 2))
t_check "A logs the keys C's device did not hand over" \
    grep -q "handed over [0-9]* of the [0-9]* keys" "$NET_DIR/A/kme.log"
fault none
t_check "those blocks verify at both ends (dumps agree)" dumps_agree
t_check_fails "no block of A-C differed between the two ends" \
    grep -q "differs between the two ends" "$NET_DIR/A/kme.log" "$NET_DIR/C/kme.log"
t_check "keys SAE_A -> SAE_C flow" wait_for 30 flows SAE_A SAE_C

t_logs_clean "$NET_DIR/A/kme.log" "$NET_DIR/B/kme.log" "$NET_DIR/C/kme.log" "$NET_DIR/links/A-C/qkd-sim.log"
t_summary
