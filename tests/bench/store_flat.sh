#!/usr/bin/env bash
# The store's size stays flat while link key flows through it: two real KMEs
# A-B, qkd-sim feeding the link unpaced with small blocks (each block leaves,
# at most, one record per end: what the demo's 64 KiB blocks at 2 Mbit/s
# would leave about 330,000 times a day), ingest held to a little stock ahead
# of use (link_stock_max_bytes), and SAEs draining keys both ways (SAE_A for
# SAE_B, which fetches them, and back), so every block is used up at both
# ends. Every STORE_FLAT_SAMPLE blocks it records each store's pages in use
# (qkd_kme_store_map_used_bytes) and data.mdb's size; it fails when the most
# pages in use in the last half of the run exceed the most of the first half
# by more than STORE_FLAT_SLACK_PAGES. A state, not a speed: the machine's
# pace only sets how long it takes.
#
#   bash tests/bench/store_flat.sh [BUILD]      (default build/release)
#
# Environment: STORE_FLAT_BLOCKS (blocks to feed, 20000), STORE_FLAT_BLOCK
# (block bytes, 1024), STORE_FLAT_SAMPLE (500), STORE_FLAT_SLACK_PAGES (16),
# STORE_FLAT_SAE_BASE (8840), STORE_FLAT_KME_BASE (9840), STORE_FLAT_ADMIN_BASE
# (7840), BENCH_KEEP=1 (keep the directory). Results in
# tests/out/bench/store_flat.tsv (blocks fed, then per site pages in use and
# data.mdb bytes) and a summary on stdout.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build/release}" 2>/dev/null && pwd) || { echo "store_flat: no build directory ${1:-}" >&2; exit 2; }
BLOCKS=${STORE_FLAT_BLOCKS:-20000}
SAMPLE=${STORE_FLAT_SAMPLE:-500}
SLACK=${STORE_FLAT_SLACK_PAGES:-16}
OUT=$ROOT/tests/out/bench
mkdir -p "$OUT"
# shellcheck source=../lib/network.sh
. "$ROOT/tests/lib/network.sh"
# shellcheck source=../integration/lib/keys.sh
. "$ROOT/tests/integration/lib/keys.sh"
NET_BIN=$BUILD/bin
NET_SAE_BASE=${STORE_FLAT_SAE_BASE:-8840}
NET_KME_BASE=${STORE_FLAT_KME_BASE:-9840}
NET_ADMIN_BASE=${STORE_FLAT_ADMIN_BASE:-7840}
NET_RATE=0
NET_BLOCK=${STORE_FLAT_BLOCK:-1024}
NET_STOCK=0
NET_FETCH_RETRY=0
W=$(mktemp -d "$OUT/store_flat.XXXX")
cleanup() {
    net_stop
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT

fail() {
    echo "store_flat: $*" >&2
    exit 1
}
metric() { # SITE NAME
    curl -s --max-time 5 "http://127.0.0.1:$(net_admin_port "$1")/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}
used_pages() { echo $(($(metric "$1" qkd_kme_store_map_used_bytes) / 4096)); }
mdb_bytes() { stat -c %s "$NET_DIR/$1/data/data.mdb"; }
ingested() { # SITE PEER: blocks ingested so far (its ingest mark less one)
    dump "$1" "$W/dump.$1" && jq -r --arg p "KME_$2" '(.ingest_marks[$p] // 1) - 1' "$W/dump.$1"
}
# drain MASTER SLAVE: one request of 64 keys of 1 Kibit (8 KiB of link key),
# fetched at once by the slave; fails when the KME has no key for it yet.
drain() {
    : >"$W/keys"
    : >"$W/fetched"
    enc_keys "$1" "$2" 64 1024 "$W/keys" || return 1
    dec_keys "$2" "$1" "$W/keys" "$W/fetched" || fail "$2 could not fetch its keys ($CODE $BODY)"
}

net_init "$W/net" "A B" "A-B" >/dev/null || fail "net_init"
for s in A B; do
    net_edit_config "$s" '.link_stock_max_bytes = 65536 | .limits = {"max_key_per_request": 1024}'
done
kme_start A
kme_start B
kme_wait A 30 || fail "KME_A did not start"
kme_wait B 30 || fail "KME_B did not start"
sim_start A-B --count "$BLOCKS" --quiet

printf 'blocks\tA_used_pages\tA_data_mdb_bytes\tB_used_pages\tB_data_mdb_bytes\n' >"$OUT/store_flat.tsv"
next=0 fed=0 idle=0
while :; do
    fed=$(ingested A B) || fail "cannot dump A"
    if [ "$fed" -ge "$next" ] || [ "$fed" -ge "$BLOCKS" ]; then
        row=$(printf '%s\t%s\t%s\t%s\t%s' "$fed" "$(used_pages A)" "$(mdb_bytes A)" "$(used_pages B)" "$(mdb_bytes B)")
        printf '%s\n' "$row" >>"$OUT/store_flat.tsv"
        printf '  %s\n' "$row"
        next=$((fed + SAMPLE))
    fi
    [ "$fed" -ge "$BLOCKS" ] && break
    a=0 b=0
    drain SAE_A SAE_B && a=1
    drain SAE_B SAE_A && b=1
    if [ $a = 0 ] && [ $b = 0 ]; then
        idle=$((idle + 1))
        [ "$idle" -gt 600 ] && fail "no key to drain for 600 tries at $fed blocks"
        sleep 0.5
    else
        idle=0
    fi
done

awk -v slack="$SLACK" -F'\t' '
NR > 1 { n++; blocks[n] = $1; a[n] = $2; b[n] = $4; fa[n] = $3; fb[n] = $5 }
END {
    h = int(n / 2)
    for (i = 1; i <= n; i++) {
        if (i <= h) { if (a[i] > a1) a1 = a[i]; if (b[i] > b1) b1 = b[i] }
        else { if (a[i] > a2) a2 = a[i]; if (b[i] > b2) b2 = b[i] }
    }
    printf "store_flat: %d blocks fed (%d bytes each end)\n", blocks[n], blocks[n] * '"$NET_BLOCK"'
    printf "  A: pages in use %d at the start, %d at the end; most in the first half %d, in the last half %d; data.mdb %d -> %d bytes\n", a[1], a[n], a1, a2, fa[1], fa[n]
    printf "  B: pages in use %d at the start, %d at the end; most in the first half %d, in the last half %d; data.mdb %d -> %d bytes\n", b[1], b[n], b1, b2, fb[1], fb[n]
    if (n < 4 || a2 > a1 + slack || b2 > b1 + slack) { print "store_flat: the store grew"; exit 1 }
    print "store_flat: flat"
}' "$OUT/store_flat.tsv"
