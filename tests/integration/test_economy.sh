#!/usr/bin/env bash
# The key economy (key_economy in the KME config) on a chain A - B - C of
# real KMEs:
# (a) max_key_count: keys waiting for a slave are capped, an SAE that names
#     itself as slave cannot fill the store, the count survives a restart;
# (b) an SAE's own rate (token bucket) refuses it with 503, the limit named
#     and Retry-After, while another SAE's answers do not change;
# (c) a relay passing through B is charged at B to its master, and refused
#     there at the master's limit, while B's own SAEs are served;
# (d) a reload (SIGHUP) puts a new policy in force;
# (e) on a dry link the floor of stock kept for critical SAEs refuses the
#     others and serves the critical SAE; a scarce link serves classes in
#     order;
# (f) /metrics and the status page show charges, refusals and classes.
# shellcheck disable=SC2034 # T_SUITE is read by lib.sh
T_SUITE='economy'
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# shellcheck source=lib/keys.sh
. "$T_ROOT/tests/integration/lib/keys.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=8100
NET_KME_BASE=8200
NET_ADMIN_BASE=8300
NET_STOCK=0 # every charge comes from a request, none from stock kept ahead
NET_EXTRA_SAES="SAE_A2@A SAE_A3@A SAE_B2@B"
W=$(mktemp -d "$T_OUT/economy.XXXX")
trap net_stop EXIT
t_require_programs kme qkd-sim

# enc_headers MASTER SLAVE NUMBER SIZE: GET enc_keys with the response
# headers in $W/headers; CODE and BODY as etsi_call sets them.
enc_headers() {
    etsi_call "$1" "/api/v1/keys/$2/enc_keys?number=$3&size=$4" -D "$W/headers"
}
retry_after() { tr -d '\r' <"$W/headers" | awk -F': ' 'tolower($1) == "retry-after" { print $2 }'; }
message() { printf '%s\n' "$BODY" | jq -r '.message // empty'; }
details() { printf '%s\n' "$BODY" | jq -r '.details[]? | tostring'; }
metrics() { curl -s --max-time 10 "http://127.0.0.1:$(net_admin_port "$1")/metrics"; }
# metric SITE NAME LABELS: the value of one sample (empty when absent).
metric() { metrics "$1" | awk -v n="$2{$3}" '$1 == n { print $2 }'; }
status_of() { etsi_call "$1" "/api/v1/keys/$2/status"; printf '%s\n' "$BODY"; }
reload() { # SITE JQ_FILTER: edits the site's key_economy and sends SIGHUP
    net_edit_config "$1" "$2" && kill -HUP "$(kme_pid "$1")"
}
served() { enc_headers "$1" "$2" "$3" "$4"; [ "$CODE" = 200 ]; }
refused_with() { # MASTER SLAVE NUMBER SIZE MESSAGE
    enc_headers "$1" "$2" "$3" "$4"
    [ "$CODE" = 503 ] && [ "$(message)" = "$5" ]
}

net_init "$W/net" "A B C" "A-B B-C" || { t_fail "net_init" "see $W"; t_summary; exit 1; }
net_edit_config A '.key_economy = {"default": {"max_key_count": 20},
    "saes": {"SAE_A2": {"max_key_count": 10}, "SAE_A": {"rate_bps": 8, "burst_bytes": 65536}}}'
net_edit_config B '.key_economy = {"saes": {"SAE_A2": {"rate_bps": 8, "burst_bytes": 70000}}}'
t_check "network starts" net_start

echo "== (a) max_key_count: keys waiting for a slave"
: >"$W/a2"
t_check "SAE_A gets 8 keys for SAE_A2 (max_key_count 10)" enc_keys SAE_A SAE_A2 8 256 "$W/a2"
status_of SAE_A SAE_A2 >"$W/status.a2"
t_eq "GET_STATUS reports SAE_A2's max_key_count" 10 "$(jq -r .max_key_count "$W/status.a2")"
t_eq "GET_STATUS counts what may still wait for SAE_A2" 2 "$(jq -r .stored_key_count "$W/status.a2")"
enc_headers SAE_A SAE_A2 8 256
t_eq "8 more would pass it: 503" 503 "$CODE"
t_eq "the body names the limit" "max_key_count reached" "$(message)"
t_match "the details say whose and how many" "SAE_A2.*max_key_count 10" "$(details)"
t_match "with a Retry-After header" '^[0-9]+$' "$(retry_after)"
: >"$W/a2.fetched"
t_check "SAE_A2 fetches its 8 keys" dec_keys SAE_A2 SAE_A "$W/a2" "$W/a2.fetched"
t_eq "with the same bytes" "$(cat "$W/a2")" "$(cat "$W/a2.fetched")"
t_check "once fetched, 8 more may wait for SAE_A2" enc_keys SAE_A SAE_A2 8 256 "$W/a2.more"
: >"$W/self"
t_check "SAE_A3 as its own slave gets 20 keys (the default max_key_count)" enc_keys SAE_A3 SAE_A3 20 256 "$W/self"
t_check_fails "and not one more" enc_keys SAE_A3 SAE_A3 1 256 "$W/self"
t_eq "refused as max_key_count" "max_key_count reached" "$(message)"
t_check "A stops" kme_term A
kme_start A
t_check "A restarts" kme_wait A 30
t_check_fails "after a restart SAE_A3 still holds its 20" enc_keys SAE_A3 SAE_A3 1 256 "$W/self"
dump A "$W/dump.a"
t_eq "A's store holds 20 keys for SAE_A3, no more" 20 \
    "$(jq '[.keys[] | select(.slaves | map(.id) | index("SAE_A3"))] | length' "$W/dump.a")"
t_check "routes back after the restart" net_wait_routed 30

echo "== (b) an SAE's own rate: 8 bit/s, a burst of 64 KiB"
t_check "link key at A for SAE_B" wait_for 30 stock_at_least SAE_A2 SAE_B 4096
: >"$W/b"
t_check "SAE_A gets 1024 keys of 256 bits (32 KiB) for SAE_B" enc_keys SAE_A SAE_B 1024 256 "$W/b"
t_check "and 1024 more: its burst" enc_keys SAE_A SAE_B 1024 256 "$W/b"
enc_headers SAE_A SAE_B 1024 256
t_eq "the third is refused: 503" 503 "$CODE"
t_eq "the body names the rate limit" "rate limit reached" "$(message)"
t_match "the details give the rate" "SAE_A may spend 8 bits of link key per second" "$(details)"
t_match "Retry-After says when" '^[0-9]+$' "$(retry_after)"
t_check "SAE_A2 is still served for SAE_B" enc_keys SAE_A2 SAE_B 1024 256 "$W/b2"
t_check "and so is SAE_B for SAE_A" enc_keys SAE_B SAE_A 16 256 "$W/b3"
: >"$W/b.fetched"
t_check "SAE_B fetches SAE_A's 2048 keys" fetch_all SAE_B SAE_A "$W/b" "$W/b.fetched" "$W/b.failed"
t_eq "with the same bytes" "$(sort "$W/b")" "$(sort "$W/b.fetched")"
t_eq "A charged SAE_A 64 KiB of link key" 65536 \
    "$(metric A qkd_kme_sae_charged_bytes_total 'sae="SAE_A",class="standard"')"
t_eq "and counted one rate refusal" 1 "$(metric A qkd_kme_sae_refusals_total 'sae="SAE_A",reason="rate_limit"')"

echo "== (c) a relay through B is charged at B to its master"
t_check "routes to C" wait_for 30 stock_at_least SAE_A2 SAE_C 2048
: >"$W/c"
t_check "SAE_A2 gets 1024 keys for SAE_C, relayed through B" enc_keys SAE_A2 SAE_C 1024 256 "$W/c"
t_check "and 1024 more" enc_keys SAE_A2 SAE_C 1024 256 "$W/c"
enc_headers SAE_A2 SAE_C 1024 256
t_eq "the third passes SAE_A2's limit at B: 503" 503 "$CODE"
t_match "the answer names B's rate limit" "KME_B.*rate limit reached.*SAE_A2 may spend 8 bits" "$(details)"
t_eq "and B as the KME that refused" KME_B "$(printf '%s\n' "$BODY" | jq -r '.details[0].refused_by // empty')"
t_eq "B charged SAE_A2 for two hops' pads and MAC keys" $((2 * (32768 + 32))) \
    "$(metric B qkd_kme_sae_charged_bytes_total 'sae="SAE_A2",class="standard"')"
t_eq "B counted the refusal" 1 "$(metric B qkd_kme_sae_refusals_total 'sae="SAE_A2",reason="rate_limit"')"
t_check "SAE_B is served for SAE_C on the same link" enc_keys SAE_B SAE_C 1024 256 "$W/c2"
: >"$W/c.fetched"
t_check "SAE_C fetches SAE_A2's keys" fetch_all SAE_C SAE_A2 "$W/c" "$W/c.fetched" "$W/c.failed"
t_eq "with the same bytes" "$(sort "$W/c")" "$(sort "$W/c.fetched")"

echo "== (d) a reload puts a new policy in force"
t_check_fails "SAE_A is still at its rate" enc_keys SAE_A SAE_B 1024 256 "$W/d"
reload A '.key_economy.saes.SAE_A.rate_bps = 0'
t_check "after SIGHUP SAE_A is served again" wait_for 30 served SAE_A SAE_B 1024 256
t_match "A logs the new policy" 'key_economy changed' "$(grep -i reload "$NET_DIR/A/kme.log" | tail -n 3)"

echo "== (e) a dry link: the floor kept for critical SAEs, classes in order"
sim_stop A-B
stock_self() { metric A qkd_kme_link_key_stock_bytes 'link="KME_B",owner="self"'; }
stock_still() { # the stock A owns on the link no longer changes (ingest has stopped)
    local a b
    a=$(stock_self) && sleep 2 && b=$(stock_self) && [ -n "$a" ] && [ "$a" = "$b" ]
}
t_check "A-B stops carrying new key" wait_for 60 stock_still
STOCK=$(stock_self)
FLOOR=$((STOCK - 600000))
t_check "A owns more than 1 MB on the dry link ($STOCK bytes)" test "$STOCK" -gt 1000000
reload A ".key_economy = {\"critical_floor_bytes\": $FLOOR, \"fair_share_below_bytes\": 0,
    \"saes\": {\"SAE_A3\": {\"class\": \"critical\"}, \"SAE_A\": {\"class\": \"bulk\"}}}"
bulk_at_floor() { refused_with SAE_A SAE_B 64 65536 "link key kept for critical SAEs"; }
t_check "the bulk SAE draws 512 KiB at a time until the floor refuses it" wait_for 60 bulk_at_floor
t_match "the details name the floor" "kept for critical SAEs and SAE_A is bulk" "$(details)"
t_match "with a Retry-After header" '^[0-9]+$' "$(retry_after)"
# One bulk draw leaves between FLOOR and FLOOR + 512 KiB; 256 KiB more would
# reach into the floor: refused to a standard SAE, served to a critical one
# (what is left is over 450 KB, since the stock was over 1 MB).
t_check_fails "a standard SAE is refused too" enc_keys SAE_A2 SAE_B 32 65536 "$W/e"
t_eq "by the floor" "link key kept for critical SAEs" "$(message)"
: >"$W/e.crit"
t_check "the critical SAE is served from the floor" enc_keys SAE_A3 SAE_B 32 65536 "$W/e.crit"
: >"$W/e.fetched"
t_check "and its keys reach SAE_B" dec_keys SAE_B SAE_A3 "$W/e.crit" "$W/e.fetched"
t_eq "with the same bytes" "$(cat "$W/e.crit")" "$(cat "$W/e.fetched")"
# A scarce link (all of it counts as scarce now) serves its classes in order.
reload A '.key_economy = {"fair_share_below_bytes": 1099511627776,
    "saes": {"SAE_A3": {"class": "critical"}, "SAE_A": {"class": "bulk"}}}'
bulk_after_critical() {
    served SAE_A3 SAE_B 1 256 && refused_with SAE_A SAE_B 1 256 "fair share reached"
}
t_check "while a critical SAE asks, the bulk SAE is refused" wait_for 60 bulk_after_critical
t_match "the details name the class served first" "serves critical SAEs first; SAE_A is bulk" "$(details)"
t_check "once the critical SAE stops asking, the bulk SAE is served" wait_for 60 served SAE_A SAE_B 1 256

echo "== (f) what the operator sees"
metrics A >"$W/metrics.a"
t_match "/metrics: link key charged per SAE" 'qkd_kme_sae_charged_bytes_total\{sae="SAE_A3",class="critical"\} [1-9]' \
    "$(cat "$W/metrics.a")"
t_match "/metrics: refusals by reason" 'qkd_kme_sae_refusals_total\{sae="SAE_A",reason="critical_floor"\} [1-9]' \
    "$(cat "$W/metrics.a")"
curl -s --max-time 10 "http://127.0.0.1:$(net_admin_port A)/status.json" >"$W/status.json"
t_eq "status.json: SAE_A is bulk" bulk "$(jq -r '.economy[] | select(.sae == "SAE_A") | .class' "$W/status.json")"
t_check "status.json: its refusals by reason" test "$(jq -r '.economy[] | select(.sae == "SAE_A") |
    .refused.critical_floor' "$W/status.json")" -ge 1
t_match "the status page draws the key economy" 'Key economy' \
    "$(curl -s --max-time 10 "http://127.0.0.1:$(net_admin_port A)/")"

for s in A B C; do t_check "KME_$s: no sanitizer report" sanitizer_clean "$s"; done
t_summary
