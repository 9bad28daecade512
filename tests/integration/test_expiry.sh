#!/usr/bin/env bash
# Unfetched keys expire and are erased (key_ttl_seconds = 30, ten times what
# a restart and a fetch take on a busy machine). Keys SAE_A got
# for SAE_B wait at B; those not fetched are gone from B's store and refused
# (400) once the TTL has passed, whether they were reserved for the
# request or handed out from the stock A keeps ahead of demand; a key fetched
# before the TTL is delivered; local (DRBG) keys at A expire the same way;
# keys survive a restart of B before their TTL and still expire after it.
# A slave whose answer was lost fetches the same key again within the fetch
# retry window (fetch_retry_seconds = 30), which starts anew when its KME
# restarts; after the window the key is gone and refused.
# shellcheck disable=SC2034 # T_SUITE is read by lib.sh
T_SUITE='expiry'
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# shellcheck source=lib/keys.sh
. "$T_ROOT/tests/integration/lib/keys.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=6500
NET_KME_BASE=6600
NET_KEY_TTL=30
NET_FETCH_RETRY=30
W=$(mktemp -d "$T_OUT/expiry.XXXX")
trap net_stop EXIT
t_require_programs kme qkd-sim

# delivered SITE FILE: how many key_IDs of FILE the site's store holds as
# delivered to every slave (kept for the fetch retry window).
delivered() {
    dump "$1" "$W/dump.$1" || { echo "dump failed"; return; }
    jq -r '.delivered[].key_ID' "$W/dump.$1" | sort >"$W/delivered.$1"
    awk '{ print $1 }' "$2" | sort | comm -12 - "$W/delivered.$1" | wc -l
}
none_delivered() { [ "$(delivered "$1" "$2")" = 0 ]; }
# listed SITE FILE: how many key_IDs of FILE the site's store lists as waiting.
listed() {
    dump "$1" "$W/dump.$1" || { echo "dump failed"; return; }
    jq -r '.keys[].key_ID' "$W/dump.$1" | sort >"$W/ids.$1"
    awk '{ print $1 }' "$2" | sort | comm -12 - "$W/ids.$1" | wc -l
}
# none_listed SITE FILE: the expiry worker has erased every key of FILE.
none_listed() { [ "$(listed "$1" "$2")" = 0 ]; }
# refused SLAVE MASTER FILE: how many keys of FILE a fetch one by one
# refuses with 400.
refused() { refetch_codes "$1" "$2" "$3" | grep -c '^400$'; }
# stock_ids: key_IDs A holds in stock for SAE_A -> SAE_B (256 bits).
stock_ids() {
    dump A "$W/stock.A" &&
        jq -r '.stock[]? | select(.master == "SAE_A" and .slave == "SAE_B" and .size == 256) | .key_ID' \
            "$W/stock.A" | sort
}
has_stock() { [ -n "$(stock_ids)" ]; }
now() { date +%s.%N; }
# sleep_until T: sleeps until the epoch time T (a no-op if it has passed).
sleep_until() {
    local d
    d=$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; printf "%.2f", (d > 0 ? d : 0) }')
    sleep "$d"
}
after() { awk -v t="$1" -v s="$2" 'BEGIN { printf "%.3f", t + s }'; }

net_init "$W/net" "A B" "A-B" || { t_fail "net_init" "see $W"; t_summary; exit 1; }
t_check "network starts" net_start
t_check "link key for SAE_B at A" wait_for 20 stock_at_least SAE_A SAE_B 100

echo "== keys reserved for the request"
t_eq "no stock for SAE_B before the first request" "" "$(stock_ids)"
: >"$W/k1"
t_check "SAE_A gets 4 keys for SAE_B" enc_keys SAE_A SAE_B 4 256 "$W/k1"
T1=$(now)
head -1 "$W/k1" >"$W/k1.first"
tail -n +2 "$W/k1" >"$W/k1.rest"
: >"$W/k1.fetched"
dec_keys SAE_B SAE_A "$W/k1.first" "$W/k1.fetched"
t_eq "a key fetched before its TTL is delivered with the same bytes" "$(cat "$W/k1.first")" "$(cat "$W/k1.fetched")"
t_eq "B's store lists the 3 unfetched keys" 3 "$(listed B "$W/k1.rest")"
t_eq "B's store no longer lists the fetched key" 0 "$(listed B "$W/k1.first")"
# shellcheck disable=SC2016 # jq variables
t_check "B lists them for master SAE_A and slave SAE_B, not fetched" jq -e --slurpfile ids \
    <(awk '{ print $1 }' "$W/k1.rest" | jq -R . | jq -s .) \
    '[.keys[] | select(.key_ID as $i | $ids[0] | index($i)) |
      select(.master == "SAE_A" and .slaves == [{"id": "SAE_B", "fetched": false}])] | length == 3' "$W/dump.B"

: >"$W/local"
t_check "SAE_A gets 2 local keys (slave SAE_A, DRBG)" enc_keys SAE_A SAE_A 2 256 "$W/local"
TL=$(now)
t_eq "A's store lists the 2 local keys" 2 "$(listed A "$W/local")"

echo "== keys survive a restart of B before their TTL"
: >"$W/k3"
t_check "SAE_A gets 2 keys of 512 bits for SAE_B" enc_keys SAE_A SAE_B 2 512 "$W/k3"
T3=$(now)
kme_stop B KILL
kme_start B
t_check "KME_B restarts" kme_wait B 30
head -1 "$W/k3" >"$W/k3.first"
tail -n +2 "$W/k3" >"$W/k3.rest"
: >"$W/k3.fetched"
dec_keys SAE_B SAE_A "$W/k3.first" "$W/k3.fetched"
elapsed=$(awk -v a="$T3" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
echo "  (fetched ${elapsed}s after it was issued; the TTL is ${NET_KEY_TTL}s)"
t_check "the restart took less than the TTL (else the next check means nothing)" \
    awk -v e="$elapsed" -v t="$NET_KEY_TTL" 'BEGIN { exit !(e < t) }'
t_eq "a key issued before B's restart is delivered after it" "$(cat "$W/k3.first")" "$(cat "$W/k3.fetched")"
t_eq "B's store still lists the other one after the restart" 1 "$(listed B "$W/k3.rest")"

echo "== keys handed out from A's stock"
t_check "A keeps stock for SAE_B after the demand" wait_for 10 has_stock
stock_ids >"$W/stock.before"
: >"$W/k2"
t_check "SAE_A gets 2 more keys for SAE_B" enc_keys SAE_A SAE_B 2 256 "$W/k2"
T2=$(now)
t_eq "they came from A's stock" 2 "$(awk '{ print $1 }' "$W/k2" | sort | comm -12 - "$W/stock.before" | wc -l)"
t_eq "B's store lists them" 2 "$(listed B "$W/k2")"

echo "== a lost answer: the slave fetches the same key again"
: >"$W/r1"
t_check "SAE_A gets a key for SAE_B" enc_keys SAE_A SAE_B 1 256 "$W/r1"
: >"$W/r1.first"
dec_keys SAE_B SAE_A "$W/r1" "$W/r1.first"
TR=$(now)
t_eq "SAE_B fetches it" "$(cat "$W/r1")" "$(cat "$W/r1.first")"
: >"$W/r1.again"
dec_keys SAE_B SAE_A "$W/r1" "$W/r1.again"
t_eq "SAE_B fetches it again within the window: HTTP 200, the same bytes" "200 $(cat "$W/r1")" \
    "$CODE $(cat "$W/r1.again")"
t_eq "B holds it as delivered, no longer as waiting" "1 0" "$(delivered B "$W/r1") $(listed B "$W/r1")"
kme_stop B KILL
# B stays down until the window has passed: the restart opens it again.
sleep_until "$(after "$TR" $((NET_FETCH_RETRY + 1)))"
kme_start B
t_check "KME_B restarts" kme_wait B 30
TS=$(now)
: >"$W/r1.restart"
dec_keys SAE_B SAE_A "$W/r1" "$W/r1.restart"
t_eq "after B's restart SAE_B fetches it again: HTTP 200, the same bytes" "200 $(cat "$W/r1")" \
    "$CODE $(cat "$W/r1.restart")"
t_check "B logs the delivered keys it holds again for the window" \
    grep -Eq '[0-9]+ delivered keys may be fetched again by their slaves for 30 s' "$NET_DIR/B/kme.log"
sleep_until "$(after "$TS" $((NET_FETCH_RETRY + 1)))"
t_check "past the window B no longer holds it" wait_for 10 none_delivered B "$W/r1"
t_eq "past the window SAE_B's fetch of it is refused with 400" 1 "$(refused SAE_B SAE_A "$W/r1")"

echo "== after the TTL"
# past T + TTL + 1 s, the expiry worker erases the key by its next round.
past_ttl() { after "$1" $((NET_KEY_TTL + 1)); }
sleep_until "$(past_ttl "$T1")"
t_check "B's store no longer lists the unfetched reserved keys" wait_for 10 none_listed B "$W/k1.rest"
t_eq "SAE_B's fetch of each of them is refused with 400" 3 "$(refused SAE_B SAE_A "$W/k1.rest")"
sleep_until "$(past_ttl "$TL")"
t_check "A's store no longer lists the unfetched local keys" wait_for 10 none_listed A "$W/local"
t_eq "SAE_A's fetch of each of them is refused with 400" 2 "$(refused SAE_A SAE_A "$W/local")"
sleep_until "$(past_ttl "$T3")"
t_check "B's store no longer lists the key it kept across its restart" wait_for 10 none_listed B "$W/k3.rest"
t_eq "SAE_B's fetch of it is refused with 400" 1 "$(refused SAE_B SAE_A "$W/k3.rest")"
sleep_until "$(past_ttl "$T2")"
t_check "B's store no longer lists the unfetched keys handed out from stock" wait_for 10 none_listed B "$W/k2"
t_eq "SAE_B's fetch of each of them is refused with 400" 2 "$(refused SAE_B SAE_A "$W/k2")"
t_check "B logs the expiry" grep -q 'erased [0-9]* keys: expired unfetched' "$NET_DIR/B/kme.log"

echo "== sanitizers"
net_stop
for s in A B; do
    t_check "KME_$s log has no sanitizer report" sanitizer_clean "$s"
done

t_summary
