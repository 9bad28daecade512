#!/usr/bin/env bash
# Backbone scale: chains of trusted nodes P01-P02-...-PN (one SAE per site,
# tests/lib/network.sh, release build) for each N in SCALE_SIZES. For each
# chain it reports:
#   - routes: seconds from the last KME answering to every KME holding a
#     route to every other;
#   - latency end to end: GET_KEY at P01 for the SAE of a site h hops away
#     (cold: relayed on demand, no stock kept), then GET_KEY_WITH_KEY_IDS at
#     the far end, which must return the same bytes;
#   - idle CPU and RSS per KME over SCALE_IDLE_SECONDS once the routes are
#     complete (mean and max over the KMEs);
#   - adverts: inter-KME advert requests answered per second per link
#     direction over the same window;
#   - a cut: the site in the middle stopped (SIGSTOP); seconds from its
#     neighbour on P01's side logging the link down to P01's routes no
#     longer reaching past it, and the hops between the two.
#
#   bash tests/bench/scale.sh [BUILD]           (default build/release)
#
# Environment: SCALE_SIZES ("8 16 32 64"), SCALE_IDLE_SECONDS (20),
# SCALE_SAE_BASE (20000), SCALE_KME_BASE (20200), SCALE_ADMIN_BASE (20400),
# BENCH_KEEP=1 (keep the directories). Results in
# tests/out/bench/scale.json and a table on stdout.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build/release}" 2>/dev/null && pwd) || { echo "scale: no build directory ${1:-}" >&2; exit 2; }
SIZES=${SCALE_SIZES:-8 16 32 64}
IDLE=${SCALE_IDLE_SECONDS:-20}
OUT=$ROOT/tests/out/bench
mkdir -p "$OUT"
# shellcheck source=../lib/network.sh
. "$ROOT/tests/lib/network.sh"
NET_BIN=$BUILD/bin
NET_SAE_BASE=${SCALE_SAE_BASE:-20000}
NET_KME_BASE=${SCALE_KME_BASE:-20200}
NET_ADMIN_BASE=${SCALE_ADMIN_BASE:-20400}
NET_STOCK=0          # every key relayed on demand: the latency of the whole chain
NET_RATE=${SCALE_RATE:-400000}
NET_BLOCK=16384
W=""
cleanup() {
    net_stop
    [ -n "$W" ] && [ "${BENCH_KEEP:-0}" != 1 ] && rm -rf "$W"
}
trap cleanup EXIT
fail() {
    echo "scale: $*" >&2
    exit 1
}
now() { date +%s.%N; }
site() { printf 'P%02d' "$1"; }
metric_sum() { # NAME_PREFIX: the sum over every KME of the metric lines that start with it
    local s total=0 v
    for s in $NET_SITES; do
        v=$(curl -s --max-time 5 "http://127.0.0.1:$(net_admin_port "$s")/metrics" | awk -v m="$1" 'index($1, m) == 1 { n += $2 } END { print n + 0 }')
        total=$(awk -v a="$total" -v b="${v:-0}" 'BEGIN { print a + b }')
    done
    echo "$total"
}
routes_complete() {
    local s n want=$(($1 - 1))
    for s in $NET_SITES; do
        n=$("$NET_BIN/kme" --config "$NET_DIR/$s/kme.json" --routes 2>/dev/null | jq '.routes | length' 2>/dev/null)
        [ "${n:-0}" -eq "$want" ] || return 1
    done
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
# get_and_fetch HOPS: ms of GET_KEY at P01 for the SAE HOPS sites on, and of the fetch there; checks the bytes
get_and_fetch() {
    local far t0 t1 t2 got key_id key fetched
    far=$(site $(($1 + 1)))
    t0=$(now)
    got=$(sae_curl SAE_P01 "/api/v1/keys/SAE_$far/enc_keys?number=1&size=256" --max-time 60)
    t1=$(now)
    key_id=$(jq -r '.keys[0].key_ID // empty' <<<"$got")
    key=$(jq -r '.keys[0].key // empty' <<<"$got")
    [ -n "$key_id" ] || { echo "- -"; return 1; }
    fetched=$(sae_curl "SAE_$far" "/api/v1/keys/SAE_P01/dec_keys?key_ID=$key_id" --max-time 60 | jq -r '.keys[0].key // empty')
    t2=$(now)
    [ "$fetched" = "$key" ] || { echo "- -"; return 1; }
    awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "%.1f %.1f\n", (b - a) * 1000, (c - b) * 1000 }'
}

printf '%-6s %-10s %-44s %-22s %-22s %-14s %s\n' "sites" "routes s" "cold GET_KEY ms at hops (fetch ms)" "idle CPU % mean/max" "RSS MiB mean/max" "adverts/s/dir" "cut known at P01 s (hops)"
json="["
for n in $SIZES; do
    W=$(mktemp -d "$OUT/scale.XXXX")
    sites="" links="" prev=""
    for i in $(seq 1 "$n"); do
        s=$(site "$i")
        sites="$sites $s"
        [ -n "$prev" ] && links="$links $prev-$s"
        prev=$s
    done
    net_init "$W/net" "${sites# }" "${links# }" >/dev/null || fail "net_init $n"
    for l in $NET_LINKS; do sim_start "$l"; done
    for s in $NET_SITES; do kme_start "$s"; done
    for s in $NET_SITES; do kme_wait "$s" 120 || fail "$n sites: KME_$s did not start"; done
    t_up=$(now)
    end=$((SECONDS + 600))
    until routes_complete "$n"; do
        [ $SECONDS -le $end ] || fail "$n sites: routes not complete after 600 s"
        sleep 0.2
    done
    t_routes=$(awk -v a="$t_up" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    # Keys on every link before the latency: each end owns verified key.
    end=$((SECONDS + 600))
    until net_has_keys "$(site 1)" "$(site "$n")"; do
        [ $SECONDS -le $end ] || fail "$n sites: no key end to end after 600 s"
        sleep 0.5
    done
    lat=""
    for h in 1 $((n / 4)) $((n / 2)) $((n - 1)); do
        [ "$h" -ge 1 ] || continue
        case " $lat " in *" $h:"*) continue ;; esac
        read -r get fetch < <(get_and_fetch "$h")
        lat="$lat $h:$get($fetch)"
    done
    # Idle: CPU, RSS and advert traffic over IDLE seconds.
    pids=""
    for s in $NET_SITES; do pids="$pids $(cat "$NET_DIR/$s/kme.pid")"; done
    declare -A c0=()
    for p in $pids; do c0[$p]=$(cpu_ticks "$p"); done
    a0=$(metric_sum 'qkd_kme_requests_total{listener="kme",operation="advert"')
    sleep "$IDLE"
    a1=$(metric_sum 'qkd_kme_requests_total{listener="kme",operation="advert"')
    hz=$(getconf CLK_TCK)
    cpu=$(for p in $pids; do echo $(($(cpu_ticks "$p") - c0[$p])); done |
        awk -v hz="$hz" -v s="$IDLE" '{ v = $1 / hz / s * 100; t += v; if (v > m) m = v } END { printf "%.2f/%.2f", t / NR, m }')
    rss=$(for p in $pids; do rss_kb "$p"; done | awk '{ t += $1; if ($1 > m) m = $1 } END { printf "%.1f/%.1f", t / NR / 1024, m / 1024 }')
    adv=$(awk -v a="$a0" -v b="$a1" -v s="$IDLE" -v l="$((n - 1))" 'BEGIN { printf "%.2f", (b - a) / s / (2 * l) }')
    # A cut in the middle: how long P01 takes to know, after the cut's near end.
    mid=$((n / 2 + 1)) near=$(site $((n / 2)))
    kill -STOP "$(kme_pid "$(site "$mid")")"
    end=$((SECONDS + 120))
    until [ "$(curl -s --max-time 5 "http://127.0.0.1:$(net_admin_port P01)/status.json" | jq '.routes | length' 2>/dev/null)" = "$((mid - 2))" ]; do
        [ $SECONDS -le $end ] || break
        sleep 0.05
    done
    t_known=$(now)
    t_seen=$(grep -m1 "routing: link KME_$(site "$mid") down" "$NET_DIR/$near/kme.log" | cut -d' ' -f1)
    cut="-"
    [ -n "$t_seen" ] && cut=$(awk -v a="$(date -d "$t_seen" +%s.%N)" -v b="$t_known" -v h="$((mid - 2))" 'BEGIN { printf "%.2f (%d)", b - a, h }')
    kill -CONT "$(kme_pid "$(site "$mid")")"
    printf '%-6s %-10s %-44s %-22s %-22s %-14s %s\n' "$n" "$t_routes" "${lat# }" "$cpu" "$rss" "$adv" "$cut"
    json="$json{\"sites\":$n,\"routes_s\":$t_routes,\"cold_ms\":\"${lat# }\",\"idle_cpu_pct_mean_max\":\"$cpu\",\"rss_mib_mean_max\":\"$rss\",\"adverts_per_s_per_link_direction\":$adv,\"cut_known_s_hops\":\"$cut\"},"
    net_stop
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$W"
    W=""
done
printf '%s]\n' "${json%,}" >"$OUT/scale.json"
echo "results: $OUT/scale.json"
