#!/usr/bin/env bash
# A backbone: a chain of 8 trusted nodes P01-P02-...-P08, one SAE each,
# keys relayed on demand (no stock kept ahead). (Chains of 32 and 64, beyond
# the old fixed hop limit of 16, are in tests/bench/scale.sh; the wire limit
# of 255 hops in tests/unit/test_hop_crypto.c.)
#  (a) GET_KEY at P01 for SAE_P08 (7 links) delivers keys that SAE_P08
#      fetches at P08 with the same bytes; the hop limit P01 gives a relayed
#      key follows the KMEs it knows (no 503 "hop limit").
#  (b) A silent transit node (P05 stopped with SIGSTOP): a key for SAE_P08
#      asked at P01 is answered 503, the reason naming the neighbour that
#      stopped answering, as soon as its link is down or a connection to it
#      times out rather than after every hop's timeout in turn, and the
#      refusal is logged once in the whole chain (at P01,
#      the KME that answered the SAE); the KMEs on the way pass it back at
#      debug level.
#  (c) Status is honest: with P05 stopped, P01's GET_STATUS for SAE_P08
#      falls to 0 once the route is gone, and P01's status.json marks P08
#      unreachable with the reason; P01's status for SAE_P04 (before the
#      silent node) still counts keys. P05 continued: routes and keys are
#      back.
#  (d) No sanitizer report; no key in any log.
# shellcheck disable=SC2034 # T_SUITE is read by lib.sh
T_SUITE=backbone
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# shellcheck source=lib/keys.sh
. "$T_ROOT/tests/integration/lib/keys.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=7040
NET_KME_BASE=7060
NET_ADMIN_BASE=7080
NET_STOCK=0        # every key relayed on demand, across the whole chain
NET_RATE=400000    # 50 kB/s of link key per link: plenty for a few keys, little CPU
NET_BLOCK=8192
N=8
W=$(mktemp -d "$T_OUT/backbone.XXXX")
site() { printf 'P%02d' "$1"; }
SITES="" LINKS="" prev=""
for i in $(seq 1 $N); do
    SITES="$SITES $(site "$i")"
    [ -n "$prev" ] && LINKS="$LINKS $prev-$(site "$i")"
    prev=$(site "$i")
done
cleanup() {
    kill -CONT "$(kme_pid P05)" 2>/dev/null
    net_stop
}
trap cleanup EXIT
t_require_programs kme qkd-sim

net_up_or_end "$W/net" "${SITES# }" "${LINKS# }"

echo "== (a) 7 links end to end"
t_check "P01 reports keys it can deliver to SAE_P08" wait_for 60 net_has_keys P01 P08
enc_keys SAE_P01 SAE_P08 2 256 "$W/a.keys"
t_eq "SAE_P01 gets 2 keys for SAE_P08 across 7 links" 200 "$CODE"
dec_keys SAE_P08 SAE_P01 "$W/a.keys" "$W/a.got"
t_eq "SAE_P08 fetches them at P08 with the same bytes" "$(sort "$W/a.keys")" "$(sort "$W/a.got" 2>/dev/null)"
t_check "they are 2 keys" test "$(grep -c . "$W/a.keys")" = 2
t_check_fails "no KME refused a relay for its hop limit" grep -q "hop limit" "$NET_DIR"/*/kme.log

echo "== (b) a silent transit node"
status() { sae_curl "SAE_$1" "/api/v1/keys/SAE_$2/status" --max-time 5 | jq -r '.stored_key_count // "none"' 2>/dev/null; }
kill -STOP "$(kme_pid P05)"
etsi_call SAE_P01 "/api/v1/keys/SAE_P08/enc_keys?number=1&size=256"
t_eq "a key for SAE_P08 is refused with 503" 503 "$CODE"
t_match "the reason names the silent neighbour, or no route once the routes moved" \
    'KME_P05.*(stopped answering|could not be reached)|no route' "$(jq -r '.details[]? | tostring' <<<"$BODY" 2>/dev/null)"
# P04 could not reach P05 and said so; P03 and P02 pass its refusal back as it
# is (P03 refused itself when its routes had moved). P01's own "no route"
# names no KME.
if [ "$(jq -r '.message' <<<"$BODY" 2>/dev/null)" = "no route" ]; then want='^none$'; else want='^KME_P0[34]$'; fi
t_match "the KME named as refusing is the one that met the silence, not P01's neighbour" "$want" \
    "$(jq -r '.details[0].refused_by // "none"' <<<"$BODY" 2>/dev/null)"
relay_warns=$(cat "$NET_DIR"/*/kme.log | grep -c "warn.*relay .* not confirmed")
t_check "the refusal is logged at most once in the chain ($relay_warns warning lines)" test "$relay_warns" -le 1

echo "== (c) honest status"
t_check "P01's GET_STATUS for SAE_P08 falls to 0 (no route past P05)" wait_for 60 test "$(status P01 P08)" = 0
status_json() { curl -s --max-time 5 "http://127.0.0.1:$(net_admin_port P01)/status.json"; }
why=$(status_json | jq -r '.sites[] | select(.id == "KME_P08") | "\(.reachable) \(.unreachable_reason)"')
t_match "P01's status.json: P08 unreachable, with the reason" '^false no route' "$why"
t_check "P01's GET_STATUS for SAE_P04 (before P05) still counts keys" test "$(status P01 P04)" -gt 0
kill -CONT "$(kme_pid P05)"
t_check "P05 continued: P01 reports keys for SAE_P08 again" wait_for 60 net_has_keys P01 P08
: >"$W/c.keys"
t_check "and SAE_P01 gets a key for SAE_P08" enc_keys SAE_P01 SAE_P08 1 256 "$W/c.keys"
dec_keys SAE_P08 SAE_P01 "$W/c.keys" "$W/c.got"
t_eq "SAE_P08 fetches it with the same bytes" "$(cat "$W/c.keys")" "$(cat "$W/c.got" 2>/dev/null)"

echo "== (d) logs"
leaked=0
while read -r _ key; do
    grep -rqF -- "$key" "$NET_DIR"/*/kme.log && leaked=$((leaked + 1))
done < <(cat "$W/a.keys" "$W/c.keys")
t_eq "no key's bytes appear in a log" 0 "$leaked"
logs=()
for s in $SITES; do logs+=("$NET_DIR/$s/kme.log"); done
t_logs_clean "${logs[@]}"
t_summary
