#!/usr/bin/env bash
# Networks stacked: a two-site KME network of this project (lower: sites X
# and Y, link X-Y fed by key files) serves as the ETSI 014 device pair under
# the link A-B of another network (upper: sites A and B). KME_A is SAE_X of
# KME_X, KME_B is SAE_Y of KME_Y, with the lower network's SAE certificates;
# nothing in either KME knows the other side is a KME.
#  (1) Keys flow over the upper link both ways with the same bytes at both
#      ends, carved from blocks the upper KMEs took from the lower network.
#  (2) The lower KME_X stops: A's device is gone; the upper link is
#      advertised down at A, no block enters A meanwhile, both upper ends
#      agree on every block (dumps); KME_X back, the link comes back by
#      itself and keys flow again.
# shellcheck disable=SC2034 # T_SUITE is read by lib.sh
T_SUITE='device_stack'
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# shellcheck source=lib/keys.sh
. "$T_ROOT/tests/integration/lib/keys.sh"
NET_BIN=$T_BIN
W=$(mktemp -d "$T_OUT/device_stack.XXXX")
t_require_programs kme qkd-sim

# The two networks share network.sh's variables: each call picks one.
use_lower() { NET_DIR=$W/lower NET_SITES="X Y" NET_LINKS="X-Y" NET_SAE_BASE=6900 NET_KME_BASE=6910 NET_ADMIN_BASE=6950; }
use_upper() { NET_DIR=$W/upper NET_SITES="A B" NET_LINKS="A-B" NET_SAE_BASE=6920 NET_KME_BASE=6930 NET_ADMIN_BASE=6940; }
stop_all() {
    use_upper
    net_stop
    use_lower
    net_stop
}
trap stop_all EXIT

echo "== the lower network: X-Y"
use_lower
if ! { net_init "$NET_DIR" "$NET_SITES" "$NET_LINKS" && net_start; }; then
    t_fail "the lower network starts" "see $W/lower"
    t_summary
    exit 1
fi
t_pass "the lower network starts"
LOWER=$NET_DIR

echo "== the upper network: A-B, its link fed by the lower network"
use_upper
net_init "$NET_DIR" "$NET_SITES" "$NET_LINKS" || { t_fail "net_init upper" "see $W/upper"; t_summary; exit 1; }
# device SITE LOWER_SITE PEER_LOWER_SITE: the site's link takes its key from KME_LOWER_SITE, as SAE_LOWER_SITE.
device() {
    net_edit_config "$1" "$(printf '.links[0] |= (del(.key_dir) | .source = {type: "etsi014",
        url: "https://localhost:%s", sae_id: "SAE_%s", peer_sae_id: "SAE_%s",
        cert: "%s/certs/SAE_%s.pem", key: "%s/certs/SAE_%s.key", ca: "%s/certs/ca.pem",
        key_size: 256, batch: 32, rate_keys_per_s: 400, timeout_ms: 2000})' \
        "$(NET_SAE_BASE=6900 NET_SITES="X Y" net_sae_port "$2")" "$2" "$3" "$LOWER" "$2" "$LOWER" "$2" "$LOWER")"
}
device A X Y
device B Y X
kme_start A
kme_start B
t_check "KME_A starts" kme_wait A 30
t_check "KME_B starts" kme_wait B 30
t_check "the upper network is routed (keys for each other's SAE)" net_wait_routed 30

mark() { dump "$1" "$W/mark.$1" && jq -r --arg p "KME_$2" '.ingest_marks[$p] // 0' "$W/mark.$1"; }
mark_above() { local m; m=$(mark "$1" "$2") && [ "$m" -gt "$3" ]; }
source_up_is() {
    [ "$(curl -s --max-time 5 "http://127.0.0.1:$(net_admin_port "$1")/metrics" |
        awk -v m="qkd_kme_link_source_up{link=\"KME_$2\"}" '$1 == m { print $2 }')" = "$3" ]
}
flows() {
    local k=$W/flow.k f=$W/flow.f
    : >"$k"
    : >"$f"
    enc_keys "$1" "$2" 4 256 "$k" && dec_keys "$2" "$1" "$k" "$f" && [ -s "$f" ] && cmp -s "$k" "$f"
}

echo "== (1) keys over the stacked link"
: >"$W/1.keys"
: >"$W/1.fetched"
t_check "SAE_A gets 16 keys for SAE_B" enc_keys SAE_A SAE_B 16 256 "$W/1.keys"
dec_keys SAE_B SAE_A "$W/1.keys" "$W/1.fetched"
t_eq "SAE_B fetches them with the same bytes" "$(sort "$W/1.keys")" "$(sort "$W/1.fetched")"
: >"$W/1.keysB"
: >"$W/1.fetchedB"
t_check "SAE_B gets 16 keys for SAE_A" enc_keys SAE_B SAE_A 16 256 "$W/1.keysB"
dec_keys SAE_A SAE_B "$W/1.keysB" "$W/1.fetchedB"
t_eq "SAE_A fetches them with the same bytes" "$(sort "$W/1.keysB")" "$(sort "$W/1.fetchedB")"
dump A "$W/1.A"
t_check "A holds verified blocks of A-B" jq -e '[.links.KME_B[] | select(.state == "verified")] | length > 0' \
    "$W/1.A"
delivered_to_sae_x() {
    curl -s --max-time 5 "http://127.0.0.1:6951/metrics" |
        awk '$1 ~ /^qkd_kme_delivered_keys_total\{.*SAE_X/ { n += $2 } END { exit !(n > 0) }'
}
t_check "the lower KME_X delivered keys to SAE_X (its metrics)" delivered_to_sae_x
t_eq "no key file was written for the upper link" "" "$(find "$NET_DIR/links" -name '*.key' | head -1)"

echo "== (2) the lower KME_X goes away, and comes back"
use_lower
kme_stop X
use_upper
t_check "KME_A marks its source down" wait_for 30 source_up_is A B 0
t_check "B's status.json shows link A-B down (A's advert)" wait_for 30 \
    bash -c "! curl -s --max-time 5 http://127.0.0.1:$(net_admin_port B)/status.json | jq -e '.links[0].up' >/dev/null"
still() { dump A "$1" && dump B "$2" && dump A "$1.again" && cmp -s <(jq -S .links.KME_B "$1") <(jq -S .links.KME_B "$1.again"); }
t_check "A's blocks of A-B stay still" wait_for 30 still "$W/2.A" "$W/2.B"
compare_dumps A B "$W/2.A" "$W/2.B" >"$W/2.v"
t_eq "both upper ends agree on every block (dumps)" "" "$(head -3 "$W/2.v")"
m1=$(mark A B)
sleep 2
t_eq "no block enters A while its device is gone" "$m1" "$(mark A B)"
use_lower
kme_start X
t_check "the lower KME_X is back" kme_wait X 30
use_upper
t_check "KME_A's source is up again" wait_for 30 source_up_is A B 1
t_check "blocks enter A again" wait_for 30 mark_above A B "$m1"
t_check "keys SAE_A -> SAE_B flow again" wait_for 30 flows SAE_A SAE_B

t_logs_clean "$W/upper/A/kme.log" "$W/upper/B/kme.log" "$W/lower/X/kme.log" "$W/lower/Y/kme.log"
t_summary
