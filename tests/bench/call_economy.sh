#!/usr/bin/env bash
# The key use and the added latency of a real WebRTC call carried by an
# encryptor pair. Set-up as tests/integration/test_turn_call.sh, without
# its taps: a three-site star (hub A, keys relayed B-A-C), the users-side
# encryptor (SAE_B) and the server-side one (SAE_C) in front of coturn (TURN
# over TCP, no UDP), and headless Chromium calling itself on
# tests/integration/lib/webrtc_call.html: fake 640x360 camera and
# microphone, relay-only ICE, so that the call's media go up one TURN
# connection and come down the other, both through the pair.
#
# Key use: once the far side decodes (the page's /result), the script
# reads both encryptors' /metrics (admin listener), waits CALL_BENCH_SECONDS
# and reads them again. Per direction (up: the users side encrypts what the
# browser sends to coturn; down: the server side encrypts what coturn sends
# back) it reports the payload carried (qkd_encryptor_plaintext_bytes_total
# {direction="in"}), the pads spent (qkd_encryptor_pad_spent_keys_total and
# _bytes_total), pad bytes per payload byte and pads per second; and the
# total of both.
#
# Added latency: during the same window, a second encryptor pair (same
# SAEs and KMEs, same configuration) sits in front of tcp_probe's echo
# server (tests/bench/tcp_probe.c), and two `tcp_probe ping` run at once at
# a call's packet rate (CALL_BENCH_RATE writes per second of
# CALL_BENCH_SIZE bytes, each write waiting for its echo): one through the
# pair, one straight to the echo. A round trip through the pair crosses it
# twice (users to server side and back), so the pair's added one-way delay
# is estimated as half the difference of the round trips, percentile by
# percentile (p50, p99); the whole added round trip at p99 is also reported
# as an upper bound of one crossing. The decision compares that bound with
# a 150 ms one-way budget for interactive video (ITU-T G.114), of which
# capture, encoding, the jitter buffer, decoding and the network's own
# propagation take most: the pair is fast enough when its bound stays
# within CALL_BENCH_SHARE (a fifth) of the budget, 30 ms; beyond that a
# datagram mode would be needed. On loopback nothing is lost, so what the
# probe sees is the pair's own work (reading, coalescing up to coalesce_ms,
# sealing, one more TCP hop on each side) and the host's scheduling, not
# TCP's head-of-line blocking under loss; when the direct path's own p99 is
# above NOISY_MS (5 ms) the host is too loaded for its p99 to decide, and
# a bound beyond the share is reported as inconclusive. The call's own ICE round
# trip (the selected pair's currentRoundTripTime: STUN through coturn and
# the pair) is reported beside it.
#
#   bash tests/bench/call_economy.sh [BUILD]      (default build/release)
#
# Environment: CALL_BENCH_SECONDS (20), CALL_BENCH_RATE (50),
# CALL_BENCH_SIZE (1200), CALL_BENCH_SHARE (0.2), CALL_BENCH_BASE (8600: ports BASE..BASE+39; KMEs
# BASE+1..3 and BASE+11..13, admin listeners BASE+4..7, the rest
# BASE+20..39), BENCH_KEEP=1 (keep the directory). Results in
# tests/out/bench/call_economy.json and a summary on stdout. Needs
# turnserver, chromium, python3, jq and curl (make deps).
# shellcheck disable=SC2034 # the NET_* settings are read by network.sh
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build/release}" 2>/dev/null && pwd) || { echo "call_economy: no build directory ${1:-}" >&2; exit 2; }
WINDOW=${CALL_BENCH_SECONDS:-20}
RATE=${CALL_BENCH_RATE:-50}
SIZE=${CALL_BENCH_SIZE:-1200}
BASE=${CALL_BENCH_BASE:-8600}
BUDGET_MS=150
SHARE=${CALL_BENCH_SHARE:-0.2}
NOISY_MS=5
OUT=$ROOT/tests/out/bench
mkdir -p "$OUT"
# shellcheck source=SCRIPTDIR/../lib/network.sh
. "$ROOT/tests/lib/network.sh"
# shellcheck source=SCRIPTDIR/../integration/lib/enc_pair.sh
. "$ROOT/tests/integration/lib/enc_pair.sh"
# shellcheck source=SCRIPTDIR/../integration/lib/webrtc_call.sh
. "$ROOT/tests/integration/lib/webrtc_call.sh"
NET_BIN=$BUILD/bin
NET_SAE_BASE=$BASE
NET_KME_BASE=$((BASE + 10))
NET_RATE=16000000
PROBE=$BUILD/bin/bench/tcp_probe

A_USERS=$((BASE + 4)) A_SERVER=$((BASE + 5)) A_PUSERS=$((BASE + 6)) A_PSERVER=$((BASE + 7))
P_USERS=$((BASE + 20))   # users-side encryptor of the call (the TURN URL)
P_SERVER=$((BASE + 21))  # server-side encryptor of the call (ciphertext)
P_TURN=$((BASE + 22))    # coturn
P_HTTP=$((BASE + 23))    # the page server
P_PUSERS=$((BASE + 24))  # users side of the probe pair
P_PSERVER=$((BASE + 25)) # server side of the probe pair
P_ECHO=$((BASE + 26))    # tcp_probe serve
P_RELAY_MIN=$((BASE + 30))
P_RELAY_MAX=$((BASE + 39))

W=$(mktemp -d "$OUT/call_economy.XXXX")
PIDS=()
DUMMY="qc$$v0"
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    net_stop
    call_veth_down "$DUMMY"
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT
fail() {
    echo "call_economy: $*" >&2
    exit 1
}
# until SECONDS CMD...: CMD succeeds within SECONDS
until_ok() {
    local end=$((SECONDS + $1))
    shift
    while [ $SECONDS -le $end ]; do
        "$@" 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

for p in turnserver chromium python3 jq curl; do
    command -v "$p" >/dev/null 2>&1 || fail "$p is missing (make deps installs it)"
done
for p in kme qkd-sim encryptor bench/tcp_probe; do
    [ -x "$BUILD/bin/$p" ] || fail "$BUILD/bin/$p is missing (make MODE=release all bench-bins)"
done
for p in $(seq "$BASE" $((BASE + 39))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && fail "port $p is already in use"
done

# metrics ADMIN_PORT NAME [DIRECTION]: one counter of an encryptor
metrics() {
    curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
        awk -v n="$2" -v d="${3:-}" '$1 == n || (d != "" && $1 == n "{direction=\"" d "\"}") { print $2; exit }'
}
# snapshot ADMIN_PORT: "payload_in pads pad_bytes" of the encryptor's sender
snapshot() {
    echo "$(metrics "$1" qkd_encryptor_plaintext_bytes_total in) $(metrics "$1" qkd_encryptor_pad_spent_keys_total)" \
        "$(metrics "$1" qkd_encryptor_pad_spent_bytes_total)"
}

echo "call_economy: star A-B, A-C; two encryptor pairs SAE_B-SAE_C; coturn; a ${WINDOW} s window of the call"
net_init "$W/net" "A B C" "A-B A-C" >/dev/null || fail "net_init"
net_start || fail "the star did not start; see $W/net"
call_veth_up "$DUMMY" 198.18.81.1 || fail "no network besides loopback, and a veth pair could not be made"
mkdir -p "$W/chromium"
call_coturn_start $P_TURN $P_RELAY_MIN $P_RELAY_MAX
call_page_start $P_HTTP
"$PROBE" serve $P_ECHO >"$W/echo.out" 2>&1 &
PIDS+=($!)
enc_config server server C SAE_B "127.0.0.1:$P_SERVER" "127.0.0.1:$P_TURN" "\"admin_listen\": \"127.0.0.1:$A_SERVER\""
enc_config users users B SAE_C "127.0.0.1:$P_USERS" "127.0.0.1:$P_SERVER" "\"admin_listen\": \"127.0.0.1:$A_USERS\""
enc_config pserver server C SAE_B "127.0.0.1:$P_PSERVER" "127.0.0.1:$P_ECHO" "\"admin_listen\": \"127.0.0.1:$A_PSERVER\""
enc_config pusers users B SAE_C "127.0.0.1:$P_PUSERS" "127.0.0.1:$P_PSERVER" "\"admin_listen\": \"127.0.0.1:$A_PUSERS\""
for e in server users pserver pusers; do enc_start $e || fail "encryptor $e did not start; see $W/$e"; done
until_ok 10 grep -q ready "$W/page.out" || fail "the page server did not start"
until_ok 10 grep -q ready "$W/echo.out" || fail "tcp_probe serve did not start"
until_ok 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$P_TURN" || fail "coturn did not start; see $W/turn"

hold=$((WINDOW + 30))
chromium --headless=new --no-sandbox --no-first-run --use-fake-device-for-media-stream \
    --use-fake-ui-for-media-stream --autoplay-policy=no-user-gesture-required \
    --user-data-dir="$W/chromium/profile" \
    "http://127.0.0.1:$P_HTTP/webrtc_call.html?turn=127.0.0.1:$P_USERS&mode=call&frames=60&samples=48000&hold=$hold" \
    >"$W/chromium/chromium.log" 2>&1 &
PIDS+=($!)
up() { [ -e "$W/page/result.json" ] || [ -e "$W/page/error.json" ]; }
until_ok 60 up || fail "the call did not come up in 60 s; see $W"
[ -e "$W/page/error.json" ] && fail "the page: $(cat "$W/page/error.json")"
R=$W/page/result.json
[ "$(jq -r '.receiver | "\(.local.type) \(.remote.type) \(.local.relayProtocol)"' "$R")" = "relay relay tcp" ] ||
    fail "the call's candidate pair is not relay to relay over TCP: $(jq -c '.receiver.local' "$R")"
# Let the encoder ramp up to its steady rate before the window.
sleep 5

cp "$W/page/progress.json" "$W/progress0.json"
u0=$(snapshot $A_USERS) s0=$(snapshot $A_SERVER) t0=$(date +%s.%N)
count=$((WINDOW * RATE))
"$PROBE" ping $P_PUSERS --size "$SIZE" --count "$count" --warmup 20 --rate "$RATE" --timeout 30 \
    >"$W/ping-pair.json" 2>"$W/ping-pair.err" &
ping_pair=$!
"$PROBE" ping $P_ECHO --size "$SIZE" --count "$count" --warmup 20 --rate "$RATE" --timeout 30 \
    >"$W/ping-direct.json" 2>"$W/ping-direct.err" &
ping_direct=$!
sleep "$WINDOW"
u1=$(snapshot $A_USERS) s1=$(snapshot $A_SERVER) t1=$(date +%s.%N)
cp "$W/page/progress.json" "$W/progress1.json"
wait $ping_pair || fail "ping through the pair failed: $(cat "$W/ping-pair.err")"
wait $ping_direct || fail "ping to the echo failed: $(cat "$W/ping-direct.err")"
[ "$(jq -r '.receiver.state' "$W/progress1.json")" = connected ] ||
    fail "the call was not connected at the end of the window: $(jq -c '.receiver | {state, ice}' "$W/progress1.json")"
for v in $u0 $u1 $s0 $s1; do case $v in '' | *[!0-9]*) fail "an encryptor counter is missing" ;; esac; done

jq -n --argjson win "$WINDOW" --arg t0 "$t0" --arg t1 "$t1" --arg u0 "$u0" --arg u1 "$u1" --arg s0 "$s0" --arg s1 "$s1" \
    --slurpfile pp "$W/ping-pair.json" --slurpfile pd "$W/ping-direct.json" \
    --slurpfile r0 "$W/progress0.json" --slurpfile r1 "$W/progress1.json" \
    --argjson budget "$BUDGET_MS" --argjson share "$SHARE" --argjson noisy "$NOISY_MS" '
def nums: split(" ") | map(tonumber);
def dir(a; b; s): (b | nums) as $b | (a | nums) as $a |
    {payload_bytes: ($b[0] - $a[0]), pads: ($b[1] - $a[1]), pad_bytes: ($b[2] - $a[2])} |
    . + {payload_kbit_per_s: (.payload_bytes * 8 / s / 1000), pads_per_s: (.pads / s),
         pad_bytes_per_payload_byte: (if .payload_bytes > 0 then .pad_bytes / .payload_bytes else null end)};
(($t1 | tonumber) - ($t0 | tonumber)) as $s |
dir($u0; $u1; $s) as $up | dir($s0; $s1; $s) as $down |
{payload_bytes: ($up.payload_bytes + $down.payload_bytes), pads: ($up.pads + $down.pads),
 pad_bytes: ($up.pad_bytes + $down.pad_bytes)} |
(. + {payload_kbit_per_s: (.payload_bytes * 8 / $s / 1000), pads_per_s: (.pads / $s),
      pad_bytes_per_payload_byte: (if .payload_bytes > 0 then .pad_bytes / .payload_bytes else null end)}) as $total |
$pp[0] as $p | $pd[0] as $d |
{p50_ms: (($p.p50_us - $d.p50_us) / 2000), p99_ms: (($p.p99_us - $d.p99_us) / 2000),
 rtt_p99_ms: (($p.p99_us - $d.p99_us) / 1000)} as $added |
{video_kbit_per_s: ((($r1[0].receiver.video.bytesReceived // 0) - ($r0[0].receiver.video.bytesReceived // 0)) * 8 / $s / 1000),
 audio_kbit_per_s: ((($r1[0].receiver.audio.bytesReceived // 0) - ($r0[0].receiver.audio.bytesReceived // 0)) * 8 / $s / 1000),
 frames_per_s: ((($r1[0].receiver.video.framesDecoded // 0) - ($r0[0].receiver.video.framesDecoded // 0)) / $s),
 frame: "\($r1[0].receiver.video.frameWidth)x\($r1[0].receiver.video.frameHeight)",
 ice_rtt_ms: (if $r1[0].sender.pair.rtt then $r1[0].sender.pair.rtt * 1000 else null end)} as $call |
{seconds: $s, window_s: $win, up: $up, down: $down, total: $total, call: $call,
 probe: {size: $p.size, rate: $p.rate, count: $p.count, pair: $p, direct: $d},
 added_one_way_ms: $added, budget_one_way_ms: $budget, share_of_budget: $share,
 host_noisy: ($d.p99_us / 1000 > $noisy),
 datagram_mode_needed: (if $added.rtt_p99_ms <= $budget * $share then false
                        elif $d.p99_us / 1000 > $noisy then null else true end)}' >"$OUT/call_economy.json" ||
    fail "could not compute the results"

jq -r '
def f(x; n): x * pow(10; n) | round / pow(10; n) | tostring;
def row(name; d): "  \(name): payload \(f(d.payload_kbit_per_s; 1)) kbit/s, \(f(d.pads_per_s; 2)) pads/s, \(f(d.pad_bytes_per_payload_byte; 3)) pad bytes per payload byte";
"call_economy: \(.call.frame) call, \(f(.seconds; 1)) s window, \(f(.call.frames_per_s; 1)) frames/s decoded, RTP received \(f(.call.video_kbit_per_s; 0)) kbit/s video + \(f(.call.audio_kbit_per_s; 0)) kbit/s audio",
row("up (users side)  "; .up), row("down (server side)"; .down), row("total             "; .total),
"  added latency (\(.probe.rate) writes/s of \(.probe.size) bytes, \(.probe.count) each): round trip through the pair p50 \(f(.probe.pair.p50_us / 1000; 3)) ms p99 \(f(.probe.pair.p99_us / 1000; 3)) ms, direct p50 \(f(.probe.direct.p50_us / 1000; 3)) ms p99 \(f(.probe.direct.p99_us / 1000; 3)) ms",
"  one crossing of the pair adds p50 \(f(.added_one_way_ms.p50_ms; 3)) ms, p99 \(f(.added_one_way_ms.p99_ms; 3)) ms (whole added round trip at p99: \(f(.added_one_way_ms.rtt_p99_ms; 3)) ms); the call'"'"'s ICE round trip via coturn: \(if .call.ice_rtt_ms then f(.call.ice_rtt_ms; 1) + " ms" else "n/a" end)",
(if .datagram_mode_needed == null then
  "  decision: inconclusive at p99 on this host: the pair'"'"'s added p99 (\(f(.added_one_way_ms.rtt_p99_ms; 3)) ms, bounding one crossing) is \(f(.added_one_way_ms.rtt_p99_ms / .budget_one_way_ms * 100; 1))% of a \(.budget_one_way_ms) ms one-way budget, beyond the pair'"'"'s share (\(f(.share_of_budget * 100; 0))%), but the direct path alone has a p99 of \(f(.probe.direct.p99_us / 1000; 1)) ms: the tail is the loaded host'"'"'s scheduling, which a datagram mode in the same process would share. At p50 a crossing adds \(f(.added_one_way_ms.p50_ms; 3)) ms (\(f(.added_one_way_ms.p50_ms / .budget_one_way_ms * 100; 1))% of the budget). Rerun on a quiet host to decide."
 elif .datagram_mode_needed then
  "  decision: the pair'"'"'s added p99 (\(f(.added_one_way_ms.rtt_p99_ms; 3)) ms, bounding one crossing) is \(f(.added_one_way_ms.rtt_p99_ms / .budget_one_way_ms * 100; 1))% of a \(.budget_one_way_ms) ms one-way budget, more than the pair'"'"'s share (\(f(.share_of_budget * 100; 0))%): TURN over TCP through the pair is too slow at this rate; a datagram mode is needed."
 else
  "  decision: the pair'"'"'s added p99 (\(f(.added_one_way_ms.rtt_p99_ms; 3)) ms, bounding one crossing) is \(f(.added_one_way_ms.rtt_p99_ms / .budget_one_way_ms * 100; 1))% of a \(.budget_one_way_ms) ms one-way budget, within the pair'"'"'s share (\(f(.share_of_budget * 100; 0))%): TURN over TCP through the pair is fast enough at this rate; no datagram mode is needed for latency (head-of-line blocking under loss belongs to TURN over TCP itself, with or without the pair, and is not measured here on loopback)."
 end)' "$OUT/call_economy.json"
