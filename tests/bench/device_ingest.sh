#!/usr/bin/env bash
# Link key ingest through the ETSI 014 device source (relay/link_source.h):
# two real KMEs A-B whose link takes its key from qkd-sim --device, unpaced
# (rate_keys_per_s 0), each request a batch of DEVICE_BENCH_BATCH keys of
# DEVICE_BENCH_KEY_BITS bits. After a warm-up it counts, over
# DEVICE_BENCH_SECONDS, the link key A ingested (its
# qkd_kme_link_ingested_bytes_total) and the inter-KME requests B answered
# (qkd_kme_requests_total on the KME port, by operation), and reports MB/s,
# keys/s and inter-KME messages per MB of link key (link_ids handshakes,
# verifications and the rest). Ingest is held only by link_stock_max_bytes,
# set high enough not to bind during the run.
#
#   bash tests/bench/device_ingest.sh [BUILD]      (default build/release)
#
# Environment: DEVICE_BENCH_SECONDS (10), DEVICE_BENCH_WARMUP (2),
# DEVICE_BENCH_BATCH (1024), DEVICE_BENCH_KEY_BITS (256),
# DEVICE_BENCH_SAE_BASE (8860), DEVICE_BENCH_KME_BASE (9860),
# DEVICE_BENCH_ADMIN_BASE (7860), BENCH_KEEP=1 (keep the directory). Results
# in tests/out/bench/device_ingest.json and a summary on stdout.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build/release}" 2>/dev/null && pwd) || { echo "device_ingest: no build directory ${1:-}" >&2; exit 2; }
SECONDS_RUN=${DEVICE_BENCH_SECONDS:-10}
WARMUP=${DEVICE_BENCH_WARMUP:-2}
OUT=$ROOT/tests/out/bench
mkdir -p "$OUT"
# shellcheck source=../lib/network.sh
. "$ROOT/tests/lib/network.sh"
NET_BIN=$BUILD/bin
NET_SAE_BASE=${DEVICE_BENCH_SAE_BASE:-8860}
NET_KME_BASE=${DEVICE_BENCH_KME_BASE:-9860}
NET_ADMIN_BASE=${DEVICE_BENCH_ADMIN_BASE:-7860}
NET_DEVICE_LINKS="A-B"
NET_DEVICE_BATCH=${DEVICE_BENCH_BATCH:-1024}
NET_DEVICE_KEY_BITS=${DEVICE_BENCH_KEY_BITS:-256}
NET_RATE=0
NET_STOCK=0
W=$(mktemp -d "$OUT/device_ingest.XXXX")
cleanup() {
    net_stop
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT
fail() {
    echo "device_ingest: $*" >&2
    exit 1
}
metrics() { curl -s --max-time 5 "http://127.0.0.1:$(net_admin_port "$1")/metrics"; }
ingested() { metrics A | awk '$1 == "qkd_kme_link_ingested_bytes_total{link=\"KME_B\"}" { print $2 }'; }
# messages: "operation count" lines of the KME port's answers at B
messages() {
    metrics B | awk -F'[{}"]' '$1 == "qkd_kme_requests_total" && $3 == "kme" { split($0, f, " "); n[$5] += f[2] }
        END { for (o in n) print o, n[o] }' | sort
}

net_init "$W/net" "A B" "A-B" >/dev/null || fail "net_init"
for s in A B; do net_edit_config "$s" '.link_stock_max_bytes = 1099511627776 | .store_max_mb = 16384'; done
sim_start A-B
kme_start A
kme_start B
kme_wait A 30 || fail "KME_A did not start"
kme_wait B 30 || fail "KME_B did not start"
sleep "$WARMUP"
b0=$(ingested) m0=$(messages) t0=$(date +%s.%N)
[ -n "$b0" ] || fail "no ingest metric at A"
sleep "$SECONDS_RUN"
b1=$(ingested) m1=$(messages) t1=$(date +%s.%N)
join -a 2 -e 0 -o 2.1,1.2,2.2 <(printf '%s\n' "$m0") <(printf '%s\n' "$m1") >"$W/messages"
awk -v b0="$b0" -v b1="$b1" -v t0="$t0" -v t1="$t1" -v kb="$NET_DEVICE_KEY_BITS" -v batch="$NET_DEVICE_BATCH" \
    -v out="$OUT/device_ingest.json" '
{ d = $3 - $2; if (d > 0) { per[$1] = d; total += d } }
END {
    s = t1 - t0; bytes = b1 - b0; mb = bytes / 1e6
    if (bytes <= 0) { print "device_ingest: no link key ingested"; exit 1 }
    printf "device_ingest: %d-bit keys, %d per request, %.1f s\n", kb, batch, s
    printf "  ingest at A: %.2f MB/s, %.0f keys/s\n", mb / s, bytes * 8 / kb / s
    printf "  inter-KME messages answered by B: %.2f per MB of link key (", total / mb
    sep = ""; for (o in per) { printf "%s%s %.2f", sep, o, per[o] / mb; sep = ", " }; print ")"
    printf "{\"key_bits\":%d,\"batch\":%d,\"seconds\":%.2f,\"bytes\":%d,\"mb_per_s\":%.3f,\"keys_per_s\":%.1f,\"messages_per_mb\":%.3f,\"by_operation_per_mb\":{", kb, batch, s, bytes, mb / s, bytes * 8 / kb / s, total / mb > out
    sep = ""; for (o in per) { printf "%s\"%s\":%.3f", sep, o, per[o] / mb > out; sep = "," }
    print "}}" > out
}' "$W/messages"
