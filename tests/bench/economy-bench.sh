#!/usr/bin/env bash
# The key economy's shares under scarcity, measured (part of `make bench`).
# Two sites A - B on one link at BENCH_ECO_RATE (2 Mbit/s); at A three SAEs
# of one class, weights 2:1:1, each drawing far more than the link yields
# (loadgen, 4 connections each, 256 keys of 256 bits a request) for
# BENCH_ECO_DURATION (60 s); the link is scarce throughout
# (fair_share_below_bytes above any stock), and 256 KiB of it are kept for
# a critical SAE. Reports each SAE's key rate and
# its part of what the three got, against its weight's part (target: within
# 10% of it), and the p99 of their served requests; then a critical SAE's
# enc_keys p99 at one connection alone and beside the three (target: within
# 2x). Results in tests/out/bench/economy.json.
#   bash tests/bench/economy-bench.sh [BUILD]   (default build/release)
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build/release}" 2>/dev/null && pwd) || { echo "economy bench: no build ${1:-}" >&2; exit 2; }
LOADGEN=$BUILD/bin/bench/loadgen
OUT=$ROOT/tests/out/bench
DURATION=${BENCH_ECO_DURATION:-60}
export NET_BIN=$BUILD/bin
export NET_SAE_BASE=${BENCH_ECO_SAE_BASE:-8940}
export NET_KME_BASE=${BENCH_ECO_KME_BASE:-9940}
export NET_ADMIN_BASE=${BENCH_ECO_ADMIN_BASE:-8960}
export NET_RATE=${BENCH_ECO_RATE:-2000000}
export NET_BLOCK=65536
export NET_STOCK=0 # every key is drawn by a request, under its share
export NET_EXTRA_SAES="SAE_W2@A SAE_W1a@A SAE_W1b@A SAE_CRIT@A"
# shellcheck source=tests/lib/network.sh
. "$ROOT/tests/lib/network.sh"
mkdir -p "$OUT/economy"
WORK=$(mktemp -d)
trap 'net_stop; for s in A B; do cp "$NET_DIR/$s/kme.log" "$OUT/economy/kme-$s.log" 2>/dev/null; done; rm -rf "$WORK"' EXIT

net_init "$WORK/net" "A B" "A-B" || exit 1
net_edit_config A '.key_economy = {"fair_share_below_bytes": 1099511627776, "critical_floor_bytes": 262144,
    "saes": {"SAE_W2": {"weight": 2}, "SAE_CRIT": {"class": "critical"}}}' || exit 1
net_start || { echo "economy bench: the network did not start" >&2; exit 1; }

CERTS=$NET_DIR/certs
PORT=$(net_sae_port A)
URL="https://localhost:$PORT/api/v1/keys/SAE_B/enc_keys?number=256&size=256"
SMALL="https://localhost:$PORT/api/v1/keys/SAE_B/enc_keys?number=1&size=256"
lg() { # SAE LABEL URL CONNECTIONS DURATION
    "$LOADGEN" --cert "$CERTS/$1.pem" --key "$CERTS/$1.key" --cacert "$CERTS/ca.pem" --threads 1 \
        --url "$3" --connections "$4" --duration "$5" --warmup 0 --max-errors 1000000000 --label "$2"
}
field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1" | head -n 1; }
sample() { # NAME: one sample of A's metrics
    curl -s "http://127.0.0.1:$(net_admin_port A)/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}
ingest() { sample 'qkd_kme_link_ingested_bytes_total{link="KME_B"}'; }
owned() { sample 'qkd_kme_link_key_stock_bytes{link="KME_B",owner="self"}'; }

# A critical SAE's small requests alone: the reference p99.
lg SAE_CRIT alone "$SMALL" 1 10 >"$OUT/economy/critical-alone.json" 2>/dev/null

I0=$(ingest) S0=$(owned)
T0=$(date +%s.%N)
LOADS=()
for s in SAE_W2 SAE_W1a SAE_W1b; do
    lg "$s" "$s" "$URL" 4 "$DURATION" >"$OUT/economy/$s.json" 2>"$OUT/economy/$s.err" &
    LOADS+=($!)
done
sleep $((DURATION / 3))
lg SAE_CRIT beside "$SMALL" 1 10 >"$OUT/economy/critical-beside.json" 2>/dev/null
wait "${LOADS[@]}"
T1=$(date +%s.%N)
I1=$(ingest) S1=$(owned)

rate=$(awk -v a="$I0" -v b="$I1" -v t0="$T0" -v t1="$T1" 'BEGIN { printf "%.0f", (b - a) / (t1 - t0) }')
echo
echo "economy: link A-B at $NET_RATE bit/s ingested $rate bytes/s over the run; A's own stock on it $S0 bytes" \
    "before, $S1 after; three standard SAEs, weights 2:1:1"
printf '%-8s %6s %12s %10s %9s %9s %8s\n' SAE weight "bytes/s" "part" "want" "refused" "p99 ms"
total=0
for s in SAE_W2 SAE_W1a SAE_W1b; do
    ok=$(field "$OUT/economy/$s.json" ok_total)
    total=$((total + ${ok:-0}))
done
met=MET
json="["
sep=""
for s in SAE_W2 SAE_W1a SAE_W1b; do
    f=$OUT/economy/$s.json
    ok=$(field "$f" ok_total) err=$(field "$f" http_errors) p99=$(field "$f" p99_ms)
    w=1 want=25
    [ "$s" = SAE_W2 ] && w=2 want=50
    bps=$(awk -v n="${ok:-0}" -v d="$DURATION" 'BEGIN { printf "%.0f", n * 256 * 32 / d }')
    part=$(awk -v n="${ok:-0}" -v t="$total" 'BEGIN { printf "%.1f", (t > 0 ? 100 * n / t : 0) }')
    awk -v p="$part" -v w="$want" 'BEGIN { exit !(p >= 0.9 * w && p <= 1.1 * w) }' || met="NOT MET"
    printf '%-8s %6s %12s %9s%% %8s%% %9s %8s\n' "$s" "$w" "$bps" "$part" "$want" "${err:-?}" "${p99:--}"
    json="$json$sep{\"sae\":\"$s\",\"weight\":$w,\"bytes_per_second\":$bps,\"part_pct\":$part,\"want_pct\":$want,\"refused\":${err:-null},\"p99_ms\":${p99:-null}}"
    sep=","
done
json="$json]"
echo "target each SAE's part within 10% of its weight's: $met"
pa=$(field "$OUT/economy/critical-alone.json" p99_ms) pb=$(field "$OUT/economy/critical-beside.json" p99_ms)
echo "critical SAE, 1 connection, 1 key: p99 $pa ms alone, $pb ms beside the three"
cmet=MET
awk -v a="$pa" -v b="$pb" 'BEGIN { exit !(a + 0 > 0 && b + 0 <= 2 * a) }' || cmet="NOT MET"
echo "target critical p99 beside the three within 2 x alone: $cmet"
printf '{"link_rate_bps":%s,"ingest_bytes_per_second":%s,"owned_before":%s,"owned_after":%s,"duration_s":%s,"saes":%s,"shares_target":"%s","critical_p99_alone_ms":%s,"critical_p99_beside_ms":%s,"critical_target":"%s"}\n' \
    "$NET_RATE" "$rate" "${S0:-null}" "${S1:-null}" "$DURATION" "$json" "$met" "${pa:-null}" "${pb:-null}" "$cmet" >"$OUT/economy.json"
