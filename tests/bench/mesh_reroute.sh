#!/usr/bin/env bash
# Rerouting on a 4x4 grid of trusted nodes M11..M44 (links to the right and
# below; one SAE each; keys relayed on demand; release build). A load loop
# asks, one request after another, SAE_M11's KME for a key for SAE_M44 (6
# links) and SAE_M44 fetches it. Under that load, three events on the path
# in use:
#   cut:    link M12-M13 cut (its KME connections run through two TCP
#           forwarders, which are killed);
#   killed: a transit KME of the path then in use killed (SIGKILL);
#   silent: another transit KME stopped (SIGSTOP): it keeps its connections
#           and answers nothing.
# For each: requests that failed (no key, or the fetch did not return the
# same bytes), seconds from the event to the first key delivered after the
# last failure (the reroute), and the longest a request took to be answered
# after the event (a relay held by a silent node is answered when its
# neighbour's link goes down). Each event is undone before the next.
#
#   bash tests/bench/mesh_reroute.sh [BUILD]      (default build/release)
#
# Environment: MESH_SAE_BASE (20700), MESH_KME_BASE (20750), MESH_ADMIN_BASE
# (20800), MESH_FWD (20850: the forwarders, two ports), MESH_SECONDS (15 s of
# load after each event), BENCH_KEEP=1. Results in
# tests/out/bench/mesh_reroute.json and a table on stdout.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build/release}" 2>/dev/null && pwd) || { echo "mesh_reroute: no build directory ${1:-}" >&2; exit 2; }
OUT=$ROOT/tests/out/bench
mkdir -p "$OUT"
# shellcheck source=../lib/network.sh
. "$ROOT/tests/lib/network.sh"
NET_BIN=$BUILD/bin
NET_SAE_BASE=${MESH_SAE_BASE:-20700}
NET_KME_BASE=${MESH_KME_BASE:-20750}
NET_ADMIN_BASE=${MESH_ADMIN_BASE:-20800}
NET_STOCK=0
NET_RATE=400000
NET_BLOCK=16384
FWD=${MESH_FWD:-20850}
RUN_S=${MESH_SECONDS:-15}
NET_TAP=$NET_BIN/tcp_tap
[ -x "$NET_TAP" ] || NET_TAP=$BUILD/bin/bench/tcp_tap
W=$(mktemp -d "$OUT/mesh_reroute.XXXX")
LOAD_PID=""
cleanup() {
    [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null
    for s in $NET_SITES; do kill -CONT "$(kme_pid "$s")" 2>/dev/null; done
    net_fwd_stop a
    net_fwd_stop b
    net_stop
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT
fail() {
    echo "mesh_reroute: $*" >&2
    exit 1
}
now() { date +%s.%N; }
path_to_m44() { # the KMEs on M11's route to KME_M44
    curl -s --max-time 5 "http://127.0.0.1:$(net_admin_port M11)/status.json" |
        jq -r '.routes[] | select(.dest == "KME_M44") | .path | join(" ")' 2>/dev/null
}
# load FILE: one request after another until $W/stop: "start end ok" per request
load() {
    local t0 t1 got id key back ok
    while [ ! -e "$W/stop" ]; do
        t0=$(now)
        got=$(sae_curl SAE_M11 "/api/v1/keys/SAE_M44/enc_keys?number=1&size=256" --max-time 60)
        id=$(jq -r '.keys[0].key_ID // empty' <<<"$got" 2>/dev/null)
        key=$(jq -r '.keys[0].key // empty' <<<"$got" 2>/dev/null)
        ok=0
        if [ -n "$id" ]; then
            back=$(sae_curl SAE_M44 "/api/v1/keys/SAE_M11/dec_keys?key_ID=$id" --max-time 60 | jq -r '.keys[0].key // empty' 2>/dev/null)
            [ "$back" = "$key" ] && ok=1
        fi
        t1=$(now)
        echo "$t0 $t1 $ok" >>"$1"
    done
}
# event NAME: after the event at $T_EVENT, the failures, the reroute and the longest answer
measure() {
    awk -v te="$T_EVENT" -v name="$1" '
    $2 >= te { n++; if ($3 == 0) { fail++; lastfail = $2 }
               if ($2 - $1 > longest) longest = $2 - $1; rows[n] = $0 }
    END {
        # the reroute: the first success that ended after the last failure
        rr = 0
        for (i = 1; i <= n; i++) { split(rows[i], f, " "); if (f[3] == 1 && f[2] > lastfail) { rr = f[2] - te; break } }
        if (!fail) rr = 0
        printf "%-8s %-10d %-10d %-12.2f %-14.2f\n", name, n, fail, rr, longest
        printf "{\"event\":\"%s\",\"requests\":%d,\"failed\":%d,\"reroute_s\":%.3f,\"longest_answer_s\":%.3f}\n", name, n, fail, rr, longest > "/dev/stderr"
    }' "$W/load.txt" 2>>"$W/rows.json"
}

sites="" links=""
for r in 1 2 3 4; do
    for c in 1 2 3 4; do
        sites="$sites M$r$c"
        [ $c -lt 4 ] && links="$links M$r$c-M$r$((c + 1))"
        [ $r -lt 4 ] && links="$links M$r$c-M$((r + 1))$c"
    done
done
net_init "$W/net" "${sites# }" "${links# }" >/dev/null || fail "net_init"
# M12 reaches KME_M13, and M13 reaches KME_M12, only through the forwarders.
net_edit_config M12 ".links |= map(if .peer == \"KME_M13\" then .url = \"https://localhost:$FWD\" else . end)" || fail "config"
net_edit_config M13 ".links |= map(if .peer == \"KME_M12\" then .url = \"https://localhost:$((FWD + 1))\" else . end)" || fail "config"
net_fwd_start a "$FWD" "$(net_kme_port M13)" || fail "forwarder"
net_fwd_start b "$((FWD + 1))" "$(net_kme_port M12)" || fail "forwarder"
net_start || fail "the grid did not start"
end=$((SECONDS + 300))
until [ "$(path_to_m44)" = "KME_M11 KME_M12 KME_M13 KME_M14 KME_M24 KME_M34 KME_M44" ]; do
    [ $SECONDS -le $end ] || fail "M11's route to M44 is not along the top row: $(path_to_m44)"
    sleep 0.2
done
until net_has_keys M11 M44; do [ $SECONDS -le $end ] || fail "no key M11 -> M44"; sleep 0.2; done

echo "mesh_reroute: 4x4 grid, GET_KEY M11 -> M44 and fetch, one after another; $RUN_S s after each event"
printf '%-8s %-10s %-10s %-12s %-14s\n' "event" "requests" "failed" "reroute s" "longest answer s"
load "$W/load.txt" &
LOAD_PID=$!
sleep 3
# cut: M12-M13
T_EVENT=$(now)
net_fwd_stop a
net_fwd_stop b
sleep "$RUN_S"
measure cut
net_fwd_start a "$FWD" "$(net_kme_port M13)"
net_fwd_start b "$((FWD + 1))" "$(net_kme_port M12)"
sleep 5
# killed: the third KME of the path in use
victim=$(path_to_m44 | awk '{ print $3 }')
victim=${victim#KME_}
T_EVENT=$(now)
kill -KILL "$(kme_pid "$victim")"
sleep "$RUN_S"
measure "killed"
kme_start "$victim"
kme_wait "$victim" 30
sleep 5
# silent: the fourth KME of the path in use
quiet=$(path_to_m44 | awk '{ print $4 }')
quiet=${quiet#KME_}
T_EVENT=$(now)
kill -STOP "$(kme_pid "$quiet")"
sleep "$RUN_S"
measure silent
kill -CONT "$(kme_pid "$quiet")"
touch "$W/stop"
wait "$LOAD_PID" 2>/dev/null
LOAD_PID=""
echo "  (killed: KME_$victim; silent: KME_$quiet)"
{ printf '['; paste -sd, "$W/rows.json"; printf ']\n'; } >"$OUT/mesh_reroute.json"
echo "results: $OUT/mesh_reroute.json"
