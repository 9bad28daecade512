#!/usr/bin/env bash
# What the encryptor pair spends of the QKD keys, counted on real processes:
# a three-site star (hub A; users-side encryptors as SAE_B at KME_B,
# server-side encryptor as SAE_C at KME_C, keys relayed B-A-C), a socat echo
# server behind the server side, and the encryptors' own counters read from
# their admin listeners (strict Prometheus text). Counts, never speeds.
#  (a) 300 connections to the users side that send nothing spend no key:
#      no key announced (spent) or fetched on either side, nothing crosses
#      to the server side; each is counted as closed without payload.
#  (b) One 1 KiB write, echoed: one key spent each way (not announce_keys).
#      A stream of 1 MiB in 1 KiB writes, echoed: key bytes spent per
#      payload byte carried stay below 1.1 on each side and for the pair.
#  (c) A second users side with max_connections_per_source 2: a third
#      connection from an address that holds two is refused (counted as
#      per_source) while another address still gets through.
#  (d) The same users side with an allow list: a client outside it is
#      refused at accept (counted as not_allowed) and spends nothing.
#  (e) Garbage to the server side's ciphertext port, and a KEYS frame of
#      key_IDs alone, spend no key: nothing fetched, no KME asked.
#  (f) The encryptors stop with status 0; no sanitizer report in any log.
# Ports: SAE 8101-8103, KME 8201-8203, admin 8301-8303, the rest 8350-8369.
# shellcheck disable=SC2034 # T_SUITE and the NET_* settings are read by the sourced files
T_SUITE=encryptor_spend
[ -n "${1:-}" ] && T_BUILD=$(cd "$1" && pwd)
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=SCRIPTDIR/../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# shellcheck source=SCRIPTDIR/lib/enc_pair.sh
. "$T_ROOT/tests/integration/lib/enc_pair.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=8100
NET_KME_BASE=8200
NET_ADMIN_BASE=8300
NET_RATE=16000000

P_ECHO=8350     # socat echo server behind the server side
P_USERS=8351    # users side (clients), no per-source cap to speak of
P_SERVER=8352   # server side (ciphertext)
P_USERS2=8353   # a second users side: allow list, two connections per address
P_ADMIN_U=8361
P_ADMIN_S=8362
P_ADMIN_U2=8363

W=$(mktemp -d "$T_OUT/encryptor_spend.XXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    net_stop
}
trap cleanup EXIT
t_require_programs kme qkd-sim encryptor prom_check
for p in socat python3 curl; do
    if ! command -v "$p" >/dev/null 2>&1; then
        t_fail "prerequisites" "$p is missing (make deps installs it)"
        t_summary
        exit 1
    fi
done
PROM=$T_BIN/prom_check
CLIENT=(python3 "$T_ROOT/tests/integration/lib/enc_clients.py")

# scrape PORT NAME: the encryptor's metrics at admin PORT, as $W/NAME.prom
scrape() { curl -sf --max-time 10 -o "$W/$2.prom" "http://127.0.0.1:$1/metrics" && "$PROM" "$W/$2.prom" >/dev/null; }
# val NAME SELECTOR: the summed value of the matching samples, "-" when none
val() { "$PROM" "$W/$1.prom" "$2"; }
# delta BEFORE AFTER SELECTOR: how much a counter grew
delta() {
    local a b
    a=$(val "$1" "$3")
    b=$(val "$2" "$3")
    [ "$a" = - ] && a=0
    [ "$b" = - ] && { echo absent; return; }
    echo $((b - a))
}
# open_is PORT N: the encryptor at admin PORT serves N connections now
open_is() { scrape "$1" "open.$1" && [ "$(val "open.$1" qkd_encryptor_connections_open)" = "$2" ]; }
# counter_is PORT SELECTOR N
counter_is() { scrape "$1" "c.$1" && [ "$(val "c.$1" "$2")" = "$3" ]; }
# server_keys: what the server side fetched, spent and failed to fetch (for wait_still)
server_keys() {
    scrape $P_ADMIN_S keys.server && echo "$(val keys.server $RECEIVED) $(val keys.server "$DEC_ERRORS") $(val keys.server $SPENT)"
}
# pool_fetched PORT: the pad pool's fetches, printed (for wait_still)
pool_fetched() { scrape "$1" "pool.$1" && val "pool.$1" qkd_encryptor_pad_fetched_bytes_total; }
pool_stocked() { scrape "$1" "stock.$1" && [ "$(val "stock.$1" qkd_encryptor_pad_pool_bytes)" -gt 0 ] 2>/dev/null; }
# ratio_below NUM DEN LIMIT: NUM / DEN < LIMIT
ratio_below() { awk -v n="$1" -v d="$2" -v l="$3" 'BEGIN { exit !(d > 0 && n / d < l) }'; }
ratio() { awk -v n="$1" -v d="$2" 'BEGIN { printf "%.4f", (d > 0 ? n / d : 0) }'; }

SPENT=qkd_encryptor_pad_spent_bytes_total
SPENT_KEYS=qkd_encryptor_pad_spent_keys_total
FETCHED=qkd_encryptor_pad_fetched_bytes_total
RECEIVED=qkd_encryptor_pad_received_keys_total
PIN='qkd_encryptor_plaintext_bytes_total{direction="in"}'
CIN='qkd_encryptor_ciphertext_bytes_total{direction="in"}'
DEC_ERRORS='qkd_encryptor_kme_errors_total{operation="dec_keys"}'

# ---------------------------------------------------------------------------------
echo "== set-up: star A-B, A-C; users sides SAE_B, server side SAE_C; an echo server"
if ! { net_init "$W/net" "A B C" "A-B A-C" && net_start; }; then
    t_fail "network" "the star did not start; see $W/net"
    t_summary
    exit 1
fi
mkdir -p "$W/users" "$W/server" "$W/users2"
socat "TCP-LISTEN:$P_ECHO,bind=127.0.0.1,reuseaddr,fork" PIPE 2>"$W/echo.log" & PIDS+=($!)
PADS='"pad_key_bits": 65536, "pad_batch_keys": 8, "low_watermark_bytes": 131072, "high_watermark_bytes": 262144, "announce_keys": 4'
enc_config server server C SAE_B "127.0.0.1:$P_SERVER" "127.0.0.1:$P_ECHO" "$PADS, \"admin_listen\": \"127.0.0.1:$P_ADMIN_S\""
enc_config users users B SAE_C "127.0.0.1:$P_USERS" "127.0.0.1:$P_SERVER" "$PADS, \"admin_listen\": \"127.0.0.1:$P_ADMIN_U\",
    \"max_connections_per_source\": 1000, \"new_connections_per_second\": 0"
enc_config users2 users B SAE_C "127.0.0.1:$P_USERS2" "127.0.0.1:$P_SERVER" "$PADS, \"admin_listen\": \"127.0.0.1:$P_ADMIN_U2\",
    \"max_connections_per_source\": 2, \"allow\": [\"127.0.0.1/32\", \"127.0.0.2/32\"]"
ok=1
enc_start server && SERVER_PID=$ENC_PID || ok=0
enc_start users && USERS_PID=$ENC_PID || ok=0
enc_start users2 && USERS2_PID=$ENC_PID || ok=0
wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$P_ECHO" || ok=0
if [ $ok = 0 ]; then
    t_fail "set-up" "an encryptor or the echo server did not start; see $W"
    t_summary
    exit 1
fi
for p in $P_ADMIN_U $P_ADMIN_S $P_ADMIN_U2; do
    t_check "the pad pool behind admin port $p holds stock" wait_for 30 pool_stocked "$p"
    t_check "... and settled" wait_still 30 pool_fetched "$p"
done
t_check "a connection through the pair echoes (the pair works)" "${CLIENT[@]}" stream $P_USERS 4096 1024
t_check "users side: that connection closed" wait_for 15 open_is $P_ADMIN_U 0
t_check "server side: likewise" wait_for 15 open_is $P_ADMIN_S 0

# ---------------------------------------------------------------------------------
echo "== (a) 300 connections that send nothing"
t_check "(a) pools settled" wait_still 30 pool_fetched $P_ADMIN_U
scrape $P_ADMIN_U a0.users && scrape $P_ADMIN_S a0.server
"${CLIENT[@]}" connects $P_USERS 300
t_eq "(a) the 300 connections were made" 0 "$?"
t_check "(a) users side: all 300 counted as closed without payload" \
    wait_for 30 counter_is $P_ADMIN_U qkd_encryptor_connections_without_payload_total \
    "$(($(val a0.users qkd_encryptor_connections_without_payload_total) + 300))"
t_check "(a) users side: none left open" wait_for 30 open_is $P_ADMIN_U 0
scrape $P_ADMIN_U a1.users && scrape $P_ADMIN_S a1.server
t_eq "(a) users side: none refused (they were served)" 0 \
    "$(delta a0.users a1.users qkd_encryptor_connections_refused_total)"
for side in users server; do
    t_eq "(a) $side side: no key spent (announced)" 0 "$(delta a0.$side a1.$side $SPENT)"
    t_eq "(a) $side side: no key fetched for the pool" 0 "$(delta a0.$side a1.$side $FETCHED)"
    t_eq "(a) $side side: no announced key fetched" 0 "$(delta a0.$side a1.$side $RECEIVED)"
    t_eq "(a) $side side: no ciphertext received" 0 "$(delta a0.$side a1.$side "$CIN")"
done
t_eq "(a) server side: no connection reached it" 0 "$(delta a0.server a1.server qkd_encryptor_connections_total)"

# ---------------------------------------------------------------------------------
echo "== (b) key spent per payload byte"
scrape $P_ADMIN_U b0.users && scrape $P_ADMIN_S b0.server
t_check "(b) one 1 KiB write is echoed through the pair" "${CLIENT[@]}" stream $P_USERS 1024 1024
wait_for 15 open_is $P_ADMIN_U 0
wait_for 15 open_is $P_ADMIN_S 0
scrape $P_ADMIN_U b1.users && scrape $P_ADMIN_S b1.server
t_eq "(b) users side: one key spent for it (announce_keys is 4)" 1 "$(delta b0.users b1.users $SPENT_KEYS)"
t_eq "(b) server side: one key spent for the echo" 1 "$(delta b0.server b1.server $SPENT_KEYS)"

SIZE=$((1024 * 1024))
t_check "(b) 1 MiB in 1 KiB writes is echoed through the pair" "${CLIENT[@]}" stream $P_USERS $SIZE 1024
wait_for 15 open_is $P_ADMIN_U 0
wait_for 15 open_is $P_ADMIN_S 0
scrape $P_ADMIN_U b2.users && scrape $P_ADMIN_S b2.server
u_spent=$(delta b1.users b2.users $SPENT)
s_spent=$(delta b1.server b2.server $SPENT)
u_in=$(delta b1.users b2.users "$PIN")
s_in=$(delta b1.server b2.server "$PIN")
t_eq "(b) users side carried the 1 MiB" $SIZE "$u_in"
t_eq "(b) server side carried the echo" $SIZE "$s_in"
t_check "(b) users side: $u_spent key bytes for $u_in payload bytes ($(ratio "$u_spent" "$u_in") < 1.1)" \
    ratio_below "$u_spent" "$u_in" 1.1
t_check "(b) server side: $s_spent key bytes for $s_in payload bytes ($(ratio "$s_spent" "$s_in") < 1.1)" \
    ratio_below "$s_spent" "$s_in" 1.1
t_check "(b) the pair: $((u_spent + s_spent)) for $((u_in + s_in)) ($(ratio $((u_spent + s_spent)) $((u_in + s_in))) < 1.1)" \
    ratio_below $((u_spent + s_spent)) $((u_in + s_in)) 1.1
t_check "(b) ... and the key spent covers the payload (one-time pad)" test "$u_spent" -ge "$u_in"

# ---------------------------------------------------------------------------------
echo "== (c) connections per source address"
scrape $P_ADMIN_U2 c0.users2
coproc HOLD { "${CLIENT[@]}" hold $P_USERS2 127.0.0.2 2; }
HOLD_IN=${HOLD[1]}
read -r -t $((20 * T_WAIT_SCALE)) held <&"${HOLD[0]}"
t_eq "(c) two connections from 127.0.0.2 are held" held "$held"
t_check "(c) the second users side serves both" wait_for 15 open_is $P_ADMIN_U2 2
"${CLIENT[@]}" probe $P_USERS2 127.0.0.2
t_eq "(c) a third from 127.0.0.2 is closed without an answer" 3 "$?"
"${CLIENT[@]}" probe $P_USERS2 127.0.0.1
t_eq "(c) one from 127.0.0.1 still gets through (echoed)" 0 "$?"
exec {HOLD_IN}>&-
wait "$HOLD_PID" 2>/dev/null
t_check "(c) all closed" wait_for 15 open_is $P_ADMIN_U2 0
scrape $P_ADMIN_U2 c1.users2
t_eq "(c) one refusal counted as per_source" 1 \
    "$(delta c0.users2 c1.users2 'qkd_encryptor_connections_refused_total{reason="per_source"}')"
t_eq "(c) ... and none for another reason" 1 "$(delta c0.users2 c1.users2 qkd_encryptor_connections_refused_total)"
t_check "(c) the refusal is logged with its reason" grep -q "from 127.0.0.2:.*connections from that address already (per_source)" \
    "$W/users2/encryptor.log"

# ---------------------------------------------------------------------------------
echo "== (d) the allow list"
scrape $P_ADMIN_U2 d0.users2 && scrape $P_ADMIN_S d0.server
"${CLIENT[@]}" probe $P_USERS2 127.0.0.3
t_eq "(d) a client at 127.0.0.3 (outside 'allow') is closed without an answer" 3 "$?"
scrape $P_ADMIN_U2 d1.users2 && scrape $P_ADMIN_S d1.server
t_eq "(d) counted as not_allowed" 1 \
    "$(delta d0.users2 d1.users2 'qkd_encryptor_connections_refused_total{reason="not_allowed"}')"
t_eq "(d) it spent no key" 0 "$(delta d0.users2 d1.users2 $SPENT)"
t_eq "(d) no key fetched for it" 0 "$(delta d0.users2 d1.users2 $FETCHED)"
t_eq "(d) no connection reached the server side" 0 "$(delta d0.server d1.server qkd_encryptor_connections_total)"
t_eq "(d) it was never served (refused before a connection was opened)" 0 \
    "$(delta d0.users2 d1.users2 qkd_encryptor_connections_without_payload_total)"
t_check "(d) the refusal is logged" grep -q "refused a connection from 127.0.0.3:.*not in the 'allow' networks" \
    "$W/users2/encryptor.log"

# ---------------------------------------------------------------------------------
echo "== (e) garbage to the server side"
scrape $P_ADMIN_S e0.server
"${CLIENT[@]}" garbage $P_SERVER 65536
t_check "(e) the garbage counted as a malformed frame" wait_for 15 counter_is $P_ADMIN_S \
    qkd_encryptor_malformed_frames_total "$(($(val e0.server qkd_encryptor_malformed_frames_total) + 1))"
"${CLIENT[@]}" keys-frame "$W/keys-frame.bin"
exec 5<>"/dev/tcp/127.0.0.1/$P_SERVER"
cat "$W/keys-frame.bin" >&5
t_check "(e) a connection that sent a KEYS frame of 4 key_IDs is held" wait_for 15 open_is $P_ADMIN_S 1
t_check "(e) ... and the server side's counters stay still" wait_still 5 server_keys
exec 5>&-
t_check "(e) ... until it closes" wait_for 15 open_is $P_ADMIN_S 0
scrape $P_ADMIN_S e1.server
t_eq "(e) server side: no key spent" 0 "$(delta e0.server e1.server $SPENT)"
t_eq "(e) server side: no announced key fetched" 0 "$(delta e0.server e1.server $RECEIVED)"
t_eq "(e) server side: its KME not even asked (no failed fetch)" 0 "$(delta e0.server e1.server "$DEC_ERRORS")"
t_eq "(e) server side: no key fetched for its pool" 0 "$(delta e0.server e1.server $FETCHED)"

# ---------------------------------------------------------------------------------
echo "== (f) stop and logs"
for n in users users2 server; do
    case $n in users) pid=$USERS_PID ;; users2) pid=$USERS2_PID ;; *) pid=$SERVER_PID ;; esac
    kill -TERM "$pid"
    wait "$pid"
    t_eq "$n encryptor stops with status 0" 0 "$?"
done
t_logs_clean "$W"/*/encryptor.log "$NET_DIR"/*/kme.log
t_summary
