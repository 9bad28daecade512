#!/usr/bin/env bash
# Metrics and health on the admin listeners of kme and encryptor, scraped
# over real HTTP from real processes and read strictly as the Prometheus text
# format by tests/tools/prom_check.c. A three-site star (hub A; links A-B,
# A-C), no stock kept ahead of demand, so every key for a remote SAE is
# relayed when asked for and the relays counted are the test's own.
#  (0) prom_check refuses malformed expositions (so its passes mean something).
#  (1) Every KME's /metrics parses strictly and has a HELP and TYPE line for
#      each family (no SAE claimed twice); it is served as text/plain
#      version 0.0.4. /healthz and
#      /readyz answer 200 while the KMEs serve; an unknown path 404.
#  (2) Links: each end reports its link up, owned and peer stock present and
#      no more than what it ingested; ingest counters grow while qkd-sim runs
#      and the ingest rate gauge becomes positive.
#  (3) Keys B->C: enc_keys at B (GET 3x256, POST 2x1024), dec_keys at C (GET
#      and POST); then a 400 and a 401 provoked at each. Delivered keys and
#      bits per SAE and role grow by exactly what was delivered (master
#      SAE_B at B, slave SAE_C at C); requests by listener, operation and
#      status grow by exactly the requests made; B's relay counters and
#      latency histogram grow by the two relays (keys and bytes exact), the
#      hub and C count the relay requests on their KME port.
#  (4) Verification failures: qkd-sim writes blocks corrupted on one side of
#      A-C; both ends count exactly those blocks as verification failures
#      and as discarded blocks.
#  (5) The encryptor pair (users side SAE_B, server side SAE_C, a socat echo
#      behind the server side) with admin listeners: readyz 200 once the KME
#      answered; bytes pushed through and echoed come back intact; plaintext
#      and ciphertext counters agree between the two sides and with the
#      bytes sent; pads were fetched and received, the pool holds stock; no
#      tag failure; a connection counted and closed. admin_listen must be an
#      IPv4 address (an IPv6 one is refused by --check).
#  (6) No metric text holds a delivered key (base64 or hex) or key_ID.
#  (7) After SIGTERM readyz is no longer 200 (503, or the listener is gone)
#      for a KME and both encryptors; no sanitizer report in any log.
# Ports: SAE 5301-5303, KME 5321-5323, admin 5341-5343, the rest 5360-5369.
# shellcheck disable=SC2034 # T_SUITE and the NET_* settings are read by the sourced files
T_SUITE=metrics
[ -n "${1:-}" ] && T_BUILD=$(cd "$1" && pwd)
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=SCRIPTDIR/../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# shellcheck source=SCRIPTDIR/lib/keys.sh
. "$T_ROOT/tests/integration/lib/keys.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=5300
NET_KME_BASE=5320
NET_ADMIN_BASE=5340
NET_STOCK=0 # every key for a remote SAE is relayed on demand
P_ECHO=5360      # socat echo server behind the server-side encryptor
P_USERS=5361     # users-side encryptor (plaintext clients)
P_SERVER=5362    # server-side encryptor (ciphertext)
P_ADMIN_U=5363   # users side's admin listener
P_ADMIN_S=5364   # server side's admin listener

W=$(mktemp -d "$T_OUT/metrics.XXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    net_stop
}
trap cleanup EXIT
t_require_programs kme qkd-sim encryptor prom_check
if ! command -v socat >/dev/null 2>&1; then
    t_fail "prerequisites" "socat is missing (make deps installs it)"
    t_summary
    exit 1
fi
PROM=$T_BIN/prom_check
DELIVERED=$W/delivered.txt # "key_ID base64" of every key delivered
: >"$DELIVERED"

admin_url() { echo "http://127.0.0.1:$(net_admin_port "$1")$2"; }
# code URL [curl args]: the HTTP status, 000 when nothing answered
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }
# scrape URL NAME: saves the exposition as $W/NAME.prom; fails unless it
# parses strictly (the reason in $W/NAME.err)
scrape() { curl -sf --max-time 10 -o "$W/$2.prom" "$1" && "$PROM" "$W/$2.prom" >/dev/null 2>"$W/$2.err"; }
scrape_kme() { scrape "$(admin_url "$1" /metrics)" "$2"; }
# val NAME SELECTOR: the summed value of the matching samples, "-" when none
val() { "$PROM" "$W/$1.prom" "$2"; }
# delta BEFORE AFTER SELECTOR: the growth of a counter ("absent" when the
# later scrape has no such sample)
delta() {
    local a b
    a=$(val "$1" "$3")
    b=$(val "$2" "$3")
    [ "$b" = - ] && { echo absent; return; }
    [ "$a" = - ] && a=0
    echo $((b - a))
}
# positive NAME SELECTOR: a sample is there with a value > 0
positive() { awk -v v="$(val "$1" "$2")" 'BEGIN { exit !(v != "-" && v + 0 > 0) }'; }

# ---------------------------------------------------------------------------------
echo "== (0) the checker refuses malformed expositions"
bad_case() { # NAME TEXT: prom_check must refuse TEXT
    printf '%b' "$2" >"$W/bad.prom"
    t_check_fails "prom_check refuses $1" "$PROM" "$W/bad.prom"
}
H='# HELP m_total a counter\n# TYPE m_total counter\n'
HG='# HELP h a histogram\n# TYPE h histogram\n'
printf '%b' "${H}m_total{a=\"x\\\\\"y\\\\\\\\z\\\\n\"} 3\n${HG}h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 2.5\nh_count 2\n" >"$W/good.prom"
t_eq "prom_check accepts a well-formed exposition (escapes, a histogram)" "ok: 2 families, 5 samples" \
    "$("$PROM" "$W/good.prom" 2>&1)"
t_eq "prom_check reads an escaped label value back" 3 "$("$PROM" "$W/good.prom" 'm_total{a="x\"y\\z\n"}')"
bad_case "a sample without TYPE" '# HELP g a gauge\ng 1\n'
bad_case "a family without HELP" '# TYPE g gauge\ng 1\n'
bad_case "an invalid escape" "${H}m_total{a=\"\\\\x\"} 1\n"
bad_case "an unterminated label value" "${H}m_total{a=\"x} 1\n"
bad_case "a counter not named _total" '# HELP c x\n# TYPE c counter\nc 1\n'
bad_case "a negative counter" "${H}m_total -1\n"
bad_case "a sample given twice" "${H}m_total{a=\"1\"} 1\nm_total{a=\"1\"} 2\n"
bad_case "a value that is not a number" "${H}m_total one\n"
bad_case "a family split in two" "${H}m_total{a=\"1\"} 1\n# HELP g x\n# TYPE g gauge\ng 1\nm_total{a=\"2\"} 1\n"
bad_case "histogram buckets that decrease" "${HG}h_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"
bad_case "a histogram count that differs from +Inf" "${HG}h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n"
bad_case "a histogram without +Inf" "${HG}h_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"
bad_case "le not increasing" "${HG}h_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"
bad_case "a missing final newline" "${H}m_total 1"

# ---------------------------------------------------------------------------------
echo "== (1) the star's admin listeners"
if ! { net_init "$W/net" "A B C" "A-B A-C" && net_start; }; then
    t_fail "network" "the star did not start; see $W/net"
    t_summary
    exit 1
fi
KME_FAMILIES="qkd_kme_up:gauge qkd_kme_requests_total:counter qkd_kme_waiting_keys:gauge qkd_kme_stock_keys:gauge
    qkd_kme_link_up:gauge qkd_kme_link_source_up:gauge qkd_kme_link_key_stock_bytes:gauge qkd_kme_link_unverified_bytes:gauge
    qkd_kme_link_blocks:gauge qkd_kme_link_ingested_bytes_total:counter
    qkd_kme_link_ingest_rate_bytes_per_second:gauge qkd_kme_link_verify_failures_total:counter
    qkd_kme_delivered_keys_total:counter qkd_kme_delivered_bits_total:counter qkd_kme_relays_total:counter
    qkd_kme_relayed_keys_total:counter qkd_kme_relayed_bytes_total:counter
    qkd_kme_relay_latency_seconds:histogram qkd_kme_sae_conflicts:gauge"
# families_missing NAME LIST: the families of LIST without HELP and TYPE lines
families_missing() {
    local f
    for f in $2; do
        grep -qx "# TYPE ${f%%:*} ${f#*:}" "$W/$1.prom" && grep -q "^# HELP ${f%%:*} ." "$W/$1.prom" || echo "${f%%:*}"
    done
}
for s in A B C; do
    t_check "KME_$s: /metrics parses strictly as Prometheus text" scrape_kme "$s" "start.$s"
    [ -s "$W/start.$s.err" ] && echo "    $(cat "$W/start.$s.err")"
    t_eq "KME_$s: every family has its HELP and TYPE" "" "$(families_missing "start.$s" "$KME_FAMILIES")"
    t_eq "KME_$s: qkd_kme_up{kme=\"KME_$s\"} is 1" 1 "$(val "start.$s" "qkd_kme_up{kme=\"KME_$s\"}")"
    t_eq "KME_$s: qkd_kme_sae_conflicts is 0 (no SAE claimed by two KMEs)" 0 "$(val "start.$s" qkd_kme_sae_conflicts)"
    t_eq "KME_$s: /healthz 200" 200 "$(code "$(admin_url "$s" /healthz)")"
    t_eq "KME_$s: /readyz 200 while it serves" 200 "$(code "$(admin_url "$s" /readyz)")"
done
t_match "/metrics is text/plain version 0.0.4" '^content-type: text/plain; version=0\.0\.4' \
    "$(curl -s -D - -o /dev/null --max-time 5 "$(admin_url B /metrics)" | tr -d '\r' | tr '[:upper:]' '[:lower:]' | grep '^content-type')"
t_eq "an unknown admin path: 404" 404 "$(code "$(admin_url B /no-such-page)")"

# ---------------------------------------------------------------------------------
echo "== (2) links: up, stock, ingest"
# link_ok NAME SITE PEER: up, with owned stock, stock within what was ingested
link_ok() {
    local sel="link=\"KME_$3\"" self peer unv ing
    self=$(val "$1" "qkd_kme_link_key_stock_bytes{$sel,owner=\"self\"}")
    peer=$(val "$1" "qkd_kme_link_key_stock_bytes{$sel,owner=\"peer\"}")
    unv=$(val "$1" "qkd_kme_link_unverified_bytes{$sel}")
    ing=$(val "$1" "qkd_kme_link_ingested_bytes_total{$sel}")
    [ "$(val "$1" "qkd_kme_link_up{$sel}")" = 1 ] && [ "$self" != - ] && [ "$peer" != - ] && [ "$unv" != - ] &&
        [ "$ing" != - ] && [ "$self" -gt 0 ] && [ $((self + peer + unv)) -le "$ing" ]
}
links_ok() { scrape_kme A links.A && scrape_kme B links.B && scrape_kme C links.C &&
    link_ok links.A A B && link_ok links.A A C && link_ok links.B B A && link_ok links.C C A; }
t_check "each end: link up, own stock > 0, stock within what it ingested" wait_for 20 links_ok
for e in A:B A:C B:A C:A; do
    echo "    KME_${e%:*} link KME_${e#*:}: stock self $(val "links.${e%:*}" "qkd_kme_link_key_stock_bytes{link=\"KME_${e#*:}\",owner=\"self\"}")" \
        "peer $(val "links.${e%:*}" "qkd_kme_link_key_stock_bytes{link=\"KME_${e#*:}\",owner=\"peer\"}")" \
        "ingested $(val "links.${e%:*}" "qkd_kme_link_ingested_bytes_total{link=\"KME_${e#*:}\"}")"
done
ingest_grows() {
    scrape_kme B ingest.B &&
        [ "$(delta links.B ingest.B 'qkd_kme_link_ingested_bytes_total{link="KME_A"}')" -gt 0 ] 2>/dev/null
}
t_check "B's ingested bytes on link KME_A grow while qkd-sim runs" wait_for 15 ingest_grows
rate_positive() { scrape_kme C rate.C && positive rate.C 'qkd_kme_link_ingest_rate_bytes_per_second{link="KME_A"}'; }
t_check "C's ingest rate on link KME_A becomes positive" wait_for 20 rate_positive
t_eq "no verification failure so far at the hub" 0 "$(val links.A 'qkd_kme_link_verify_failures_total')"

# ---------------------------------------------------------------------------------
echo "== (3) keys B->C: delivered, requests, relays"
C=$NET_DIR/certs
for s in A B C; do scrape_kme "$s" "before.$s"; done
: >"$W/keys"
enc_keys SAE_B SAE_C 3 256 "$W/keys"
t_eq "SAE_B: GET enc_keys 3 x 256 bits for SAE_C" 200 "$CODE"
etsi_call SAE_B /api/v1/keys/SAE_C/enc_keys -X POST -H 'Content-Type: application/json' \
    --data-binary '{"number":2,"size":1024}'
t_eq "SAE_B: POST enc_keys 2 x 1024 bits for SAE_C" 200 "$CODE"
printf '%s\n' "$BODY" | jq -r '.keys[] | "\(.key_ID) \(.key)"' >>"$W/keys" 2>/dev/null
cat "$W/keys" >>"$DELIVERED"
t_eq "five keys delivered to the master" 5 "$(grep -c . "$W/keys")"
first=$(head -1 "$W/keys" | cut -d' ' -f1)
etsi_call SAE_C "/api/v1/keys/SAE_B/dec_keys?key_ID=$first"
t_eq "SAE_C: GET dec_keys of the first at C" 200 "$CODE"
tail -n +2 "$W/keys" >"$W/rest"
: >"$W/got"
dec_keys SAE_C SAE_B "$W/rest" "$W/got"
t_eq "SAE_C: POST dec_keys of the other four at C" "200 4" "$CODE $(grep -c . "$W/got")"
etsi_call SAE_C "/api/v1/keys/SAE_B/dec_keys?key_ID=00000000-0000-4000-8000-000000000000"
t_eq "provoked: SAE_C fetching a key_ID C never held gets 400" 400 "$CODE"
etsi_call SAE_B "/api/v1/keys/SAE_C/enc_keys?number=0"
t_eq "provoked: SAE_B asking for 0 keys gets 400" 400 "$CODE"
t_eq "provoked: SAE_C's certificate at B's SAE port gets 401 (enc_keys)" 401 \
    "$(code --cacert "$C/ca.pem" --cert "$C/SAE_C.pem" --key "$C/SAE_C.key" "$(net_url B)/api/v1/keys/SAE_C/enc_keys")"
t_eq "provoked: no client certificate at C's SAE port gets 401 (status)" 401 \
    "$(code --cacert "$C/ca.pem" "$(net_url C)/api/v1/keys/SAE_B/status")"
for s in A B C; do
    t_check "KME_$s: /metrics still parses strictly" scrape_kme "$s" "after.$s"
done
t_eq "B: delivered keys to master SAE_B grew by 5" 5 \
    "$(delta before.B after.B 'qkd_kme_delivered_keys_total{sae="SAE_B",role="master"}')"
t_eq "B: delivered bits to master SAE_B grew by 3*256 + 2*1024" 2816 \
    "$(delta before.B after.B 'qkd_kme_delivered_bits_total{sae="SAE_B",role="master"}')"
t_eq "C: delivered keys to slave SAE_C grew by 5" 5 \
    "$(delta before.C after.C 'qkd_kme_delivered_keys_total{sae="SAE_C",role="slave"}')"
t_eq "C: delivered bits to slave SAE_C grew by 2816" 2816 \
    "$(delta before.C after.C 'qkd_kme_delivered_bits_total{sae="SAE_C",role="slave"}')"
t_eq "B: nothing delivered to SAE_B as slave" 0 \
    "$(delta before.B after.B 'qkd_kme_delivered_keys_total{sae="SAE_B",role="slave"}' | sed 's/absent/0/')"
req() { echo "qkd_kme_requests_total{listener=\"$1\",operation=\"$2\",code=\"$3\"}"; }
t_eq "B: sae enc_keys 200 grew by 2" 2 "$(delta before.B after.B "$(req sae enc_keys 200)")"
t_eq "B: sae enc_keys 400 grew by 1" 1 "$(delta before.B after.B "$(req sae enc_keys 400)")"
t_eq "B: sae enc_keys 401 grew by 1" 1 "$(delta before.B after.B "$(req sae enc_keys 401)")"
t_eq "C: sae dec_keys 200 grew by 2" 2 "$(delta before.C after.C "$(req sae dec_keys 200)")"
t_eq "C: sae dec_keys 400 grew by 1" 1 "$(delta before.C after.C "$(req sae dec_keys 400)")"
t_eq "C: sae status 401 grew by 1" 1 "$(delta before.C after.C "$(req sae status 401)")"
t_eq "hub: kme relay 200 grew by 2 (the two relays passed on)" 2 "$(delta before.A after.A "$(req kme relay 200)")"
t_eq "C: kme relay 200 grew by 2 (the two relays committed)" 2 "$(delta before.C after.C "$(req kme relay 200)")"
t_check "hub: kme advert answers are counted too" positive after.A "$(req kme advert 200)"
t_eq "B: relays to KME_C ok grew by 2" 2 "$(delta before.B after.B 'qkd_kme_relays_total{dest="KME_C",result="ok"}')"
t_eq "B: relayed keys to KME_C grew by 5" 5 "$(delta before.B after.B 'qkd_kme_relayed_keys_total{dest="KME_C"}')"
t_eq "B: relayed bytes to KME_C grew by 3*32 + 2*128" 352 \
    "$(delta before.B after.B 'qkd_kme_relayed_bytes_total{dest="KME_C"}')"
t_eq "B: relay latency histogram count for KME_C grew by 2" 2 \
    "$(delta before.B after.B 'qkd_kme_relay_latency_seconds_count{dest="KME_C"}')"
t_eq "B: the +Inf bucket grew with it" 2 \
    "$(delta before.B after.B 'qkd_kme_relay_latency_seconds_bucket{dest="KME_C",le="+Inf"}')"
t_check "B: relay latency sum is positive" positive after.B 'qkd_kme_relay_latency_seconds_sum{dest="KME_C"}'
t_eq "the hub originated no relay" - "$(val after.A 'qkd_kme_relay_latency_seconds_count')"

# ---------------------------------------------------------------------------------
echo "== (4) verification failures on A-C"
SIM_LOG=$NET_DIR/links/A-C/qkd-sim.log
corrupted_before=$(grep -c '^corrupted' "$SIM_LOG")
sim_stop A-C
sim_start A-C --corrupt 1 --count 2
wait "$(cat "$NET_DIR/links/A-C/qkd-sim.pid")"
rm -f "$NET_DIR/links/A-C/qkd-sim.pid"
sim_start A-C
corrupted=$(($(grep -c '^corrupted' "$SIM_LOG") - corrupted_before))
t_eq "qkd-sim corrupted 2 blocks on one side of A-C" 2 "$corrupted"
failures_counted() {
    scrape_kme A fail.A && scrape_kme C fail.C &&
        [ "$(delta after.A fail.A 'qkd_kme_link_verify_failures_total{link="KME_C"}')" = "$corrupted" ] &&
        [ "$(delta after.C fail.C 'qkd_kme_link_verify_failures_total{link="KME_A"}')" = "$corrupted" ]
}
t_check "A and C each count exactly the corrupted blocks as verification failures" wait_for 20 failures_counted
blocks_counted() {
    scrape_kme A fail.A && scrape_kme C fail.C &&
        [ "$(delta after.A fail.A 'qkd_kme_link_blocks{link="KME_C",state="discarded"}')" = "$corrupted" ] &&
        [ "$(delta after.C fail.C 'qkd_kme_link_blocks{link="KME_A",state="discarded"}')" = "$corrupted" ]
}
t_check "... and as discarded blocks" wait_for 10 blocks_counted
t_eq "nothing discarded on A-B" 0 "$(val fail.A 'qkd_kme_link_verify_failures_total{link="KME_B"}')"

# ---------------------------------------------------------------------------------
echo "== (5) the encryptor pair"
mkdir -p "$W/users" "$W/server"
# enc_config FILE ROLE SITE PEER LISTEN CONNECT ADMIN_PORT
enc_config() {
    cat >"$1" <<JSON
{
  "role": "$2",
  "listen": "$5",
  "connect": "$6",
  "peer_sae": "$4",
  "kme": {"url": "$(net_url "$3")", "cert": "$C/SAE_$3.pem", "key": "$C/SAE_$3.key", "ca": "$C/ca.pem"},
  "pad_key_bits": 65536, "pad_batch_keys": 4,
  "low_watermark_bytes": 32768, "high_watermark_bytes": 65536, "announce_keys": 2,
  "admin_listen": "127.0.0.1:$7"
}
JSON
}
enc_config "$W/server/encryptor.json" server C SAE_B "127.0.0.1:$P_SERVER" "127.0.0.1:$P_ECHO" $P_ADMIN_S
enc_config "$W/users/encryptor.json" users B SAE_C "127.0.0.1:$P_USERS" "127.0.0.1:$P_SERVER" $P_ADMIN_U
sed 's/"admin_listen": "127.0.0.1:\([0-9]*\)"/"admin_listen": "[::1]:\1"/' "$W/users/encryptor.json" >"$W/v6.json"
"$T_BIN/encryptor" --config "$W/v6.json" --check >"$W/v6.out" 2>&1
t_eq "admin_listen on an IPv6 address is refused (exit 2)" 2 "$?"
t_check "... naming the setting" grep -q "admin_listen" "$W/v6.out"
socat "TCP-LISTEN:$P_ECHO,bind=127.0.0.1,reuseaddr,fork" PIPE 2>"$W/echo.log" & PIDS+=($!)
"$T_BIN/encryptor" --config "$W/server/encryptor.json" 2>"$W/server/encryptor.log" & SERVER_PID=$!
PIDS+=("$SERVER_PID")
"$T_BIN/encryptor" --config "$W/users/encryptor.json" 2>"$W/users/encryptor.log" & USERS_PID=$!
PIDS+=("$USERS_PID")
EU="http://127.0.0.1:$P_ADMIN_U"
ES="http://127.0.0.1:$P_ADMIN_S"
ready() { [ "$(code "$1/readyz")" = 200 ]; }
t_check "users side: /readyz 200 once listening and its KME answered" wait_for 30 ready "$EU"
t_check "server side: /readyz 200 likewise" wait_for 30 ready "$ES"
t_eq "users side: /healthz 200" 200 "$(code "$EU/healthz")"
t_eq "the encryptor has no status page (404)" 404 "$(code "$EU/")"
pool_full() { scrape "$1/metrics" "$2" && positive "$2" qkd_encryptor_pad_pool_bytes; }
t_check "users side: the pad pool holds stock before any connection" wait_for 30 pool_full "$EU" enc0.users
t_check "server side: its pad pool holds stock too" wait_for 30 pool_full "$ES" enc0.server
ENC_FAMILIES="qkd_encryptor_info:gauge qkd_encryptor_plaintext_bytes_total:counter
    qkd_encryptor_ciphertext_bytes_total:counter qkd_encryptor_connections_open:gauge
    qkd_encryptor_connections_total:counter qkd_encryptor_connections_refused_total:counter
    qkd_encryptor_tag_failures_total:counter qkd_encryptor_malformed_frames_total:counter
    qkd_encryptor_pad_pool_keys:gauge qkd_encryptor_pad_pool_bytes:gauge qkd_encryptor_pad_fetched_keys_total:counter
    qkd_encryptor_pad_fetched_bytes_total:counter qkd_encryptor_pad_aged_out_keys_total:counter
    qkd_encryptor_pad_received_keys_total:counter qkd_encryptor_pad_stalls_total:counter
    qkd_encryptor_pad_stall_seconds_total:counter qkd_encryptor_kme_errors_total:counter qkd_encryptor_kme_up:gauge"
t_eq "users side: every family has its HELP and TYPE" "" "$(families_missing enc0.users "$ENC_FAMILIES")"
t_eq "users side: info names role users, mode otp, peer SAE_C" 1 \
    "$(val enc0.users 'qkd_encryptor_info{role="users",mode="otp",peer_sae="SAE_C"}')"
t_eq "users side: kme_up 1" 1 "$(val enc0.users qkd_encryptor_kme_up)"

SIZE=150000
head -c $SIZE /dev/urandom >"$W/push.bin"
timeout 60 socat -t 30 - "TCP:127.0.0.1:$P_USERS" <"$W/push.bin" >"$W/echo.bin" 2>"$W/client.log"
t_check "$SIZE bytes pushed through the pair and echoed back intact" cmp -s "$W/push.bin" "$W/echo.bin"
closed() { scrape "$1/metrics" "$2" && [ "$(val "$2" qkd_encryptor_connections_open)" = 0 ]; }
t_check "users side: the connection is closed and counted" wait_for 15 closed "$EU" enc1.users
t_check "server side: likewise" wait_for 15 closed "$ES" enc1.server
U=enc1.users
S=enc1.server
pin='qkd_encryptor_plaintext_bytes_total{direction="in"}'
pout='qkd_encryptor_plaintext_bytes_total{direction="out"}'
cin='qkd_encryptor_ciphertext_bytes_total{direction="in"}'
cout='qkd_encryptor_ciphertext_bytes_total{direction="out"}'
t_eq "users side: plaintext in = the bytes pushed" $SIZE "$(val $U "$pin")"
t_eq "server side: plaintext out = users side's plaintext in" "$(val $U "$pin")" "$(val $S "$pout")"
t_eq "server side: plaintext in (the echo) = the bytes pushed" $SIZE "$(val $S "$pin")"
t_eq "users side: plaintext out = server side's plaintext in" "$(val $S "$pin")" "$(val $U "$pout")"
t_eq "ciphertext users -> server: out at one = in at the other" "$(val $U "$cout")" "$(val $S "$cin")"
t_eq "ciphertext server -> users: out at one = in at the other" "$(val $S "$cout")" "$(val $U "$cin")"
t_check "ciphertext out exceeds plaintext in (headers, tags, key announcements)" \
    test "$(val $U "$cout")" -gt "$(val $U "$pin")"
for side in users server; do
    f=enc1.$side
    t_eq "$side side: connections_total 1" 1 "$(val $f qkd_encryptor_connections_total)"
    t_eq "$side side: no tag failure" 0 "$(val $f qkd_encryptor_tag_failures_total)"
    t_eq "$side side: no malformed frame" 0 "$(val $f qkd_encryptor_malformed_frames_total)"
    t_check "$side side: pads fetched grew with the traffic" \
        test "$(val $f qkd_encryptor_pad_fetched_bytes_total)" -gt "$(val "enc0.$side" qkd_encryptor_pad_fetched_bytes_total)"
    t_check "$side side: announced pads were received" positive $f qkd_encryptor_pad_received_keys_total
    t_eq "$side side: fetched bytes = fetched keys x 8192" "$(($(val $f qkd_encryptor_pad_fetched_keys_total) * 8192))" \
        "$(val $f qkd_encryptor_pad_fetched_bytes_total)"
    t_eq "$side side: pad stall counters present" "present" \
        "$([ "$(val $f qkd_encryptor_pad_stalls_total)" != - ] && [ "$(val $f qkd_encryptor_pad_stall_seconds_total)" != - ] && echo present)"
done
t_eq "users side: pool bytes = pool keys x 8192" "$(($(val $U qkd_encryptor_pad_pool_keys) * 8192))" \
    "$(val $U qkd_encryptor_pad_pool_bytes)"

# ---------------------------------------------------------------------------------
echo "== (6) no key material in any metric text"
for f in "$W"/*.prom; do
    case $f in */bad.prom | */good.prom) ;; *) cat "$f" ;; esac
done >"$W/all-metrics.txt"
awk 'length($2) > 8 { print $2 }' "$DELIVERED" | sort -u >"$W/every.b64"
while read -r k; do printf '%s' "$k" | base64 -d | od -An -tx1 | tr -d ' \n'; echo; done <"$W/every.b64" >"$W/every.hex"
cut -d' ' -f1 "$DELIVERED" | grep . | sort -u >"$W/every.id"
t_check "keys were collected for the check" test -s "$W/every.b64"
t_check "no delivered key (base64) in any scrape" bash -c "! grep -Fq -f '$W/every.b64' '$W/all-metrics.txt'"
t_check "no delivered key (hex) in any scrape" bash -c "! grep -Fqi -f '$W/every.hex' '$W/all-metrics.txt'"
t_check "no delivered key_ID in any scrape" bash -c "! grep -Fqi -f '$W/every.id' '$W/all-metrics.txt'"
t_check "no UUID at all in any scrape" bash -c "! grep -Eqi '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-' '$W/all-metrics.txt'"

# ---------------------------------------------------------------------------------
echo "== (7) stopping"
not_ready() { [ "$(code "$1")" != 200 ]; }
kill -TERM "$(kme_pid C)"
t_check "KME_C: /readyz is no longer 200 after SIGTERM" wait_for 20 not_ready "$(admin_url C /readyz)"
kme_stop C
t_eq "KME_C: once stopped, nothing answers on its admin port" 000 "$(code "$(admin_url C /healthz)")"
for side in users server; do
    pid=$USERS_PID
    [ $side = server ] && pid=$SERVER_PID
    url=$EU
    [ $side = server ] && url=$ES
    kill -TERM "$pid"
    t_check "$side side: /readyz is no longer 200 after SIGTERM" wait_for 20 not_ready "$url/readyz"
    wait "$pid"
    t_eq "$side side: exits 0" 0 "$?"
done
t_logs_clean "$NET_DIR"/*/kme.log "$W"/users/encryptor.log "$W"/server/encryptor.log
t_summary
