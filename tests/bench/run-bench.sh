#!/usr/bin/env bash
# `make bench`: throughput of the ETSI 014 GET_KEY path, then the key relay,
# then the encryptor pair.
# Owns the benchmark run:
#  1. a two-site network (tests/lib/network.sh), loadgen against KME A's enc_keys at
#     1/16/64 connections, the same load against nginx serving a static
#     response of equal size with the same TLS set-up, the comparison table;
#  2. the relay on the three-site star (hub A, links A-B and A-C): enc_keys
#     latency for the direct link from stock, for two hops from stock and for
#     two hops relayed on demand (stock disabled), and the throughput of key
#     material relayed on demand across two hops;
#  3. the encryptor pair on the same star (users side SAE_B, server side
#     SAE_C): its throughput against a socat pair, the crypto core (XOR +
#     Poly1305) per core against the NECTEC paper's figure, and the latency it
#     adds to a ping-pong;
# and the JSON results in tests/out/bench/ (relay: tests/out/bench/relay/,
# encryptor: tests/out/bench/encryptor.json, logs in tests/out/bench/encryptor/).
#
#   sh tests/bench/run-bench.sh [BUILD]        (default build/release)
#
# Environment: BENCH_CONNS ("1 16 64"), BENCH_DURATION (5 s), BENCH_WARMUP (1 s),
# BENCH_ROUNDS (1; more rounds keep each configuration's best, for a busy
# machine), BENCH_THREADS (loadgen event loops, 1), BENCH_NGINX_PORT (8599),
# BENCH_ONLY=nginx (skip the KME: needs BENCH_CERTS, a directory with
# KME_A.server.pem/.key, ca.pem, sae-ca.pem, SAE_A.pem/.key, and BENCH_SIZE),
# BENCH_ONLY=relay (only part 2), BENCH_RELAY=0 (skip part 2), BENCH_REFUSALS=0 (skip part 1's refusal mix),
# BENCH_KEEP=1 (keep the temporary directory), NET_RATE, NET_BLOCK (part 1).
# Part 2: BENCH_RELAY_SAE_BASE (8640) and BENCH_RELAY_KME_BASE (9640) port
# bases, BENCH_RELAY_RATE (link rate, 4e9 bit/s), BENCH_RELAY_BLOCK (1 MiB),
# BENCH_RELAY_FILL_MB (link key pre-filled per link for the throughput run,
# 2560: more than the sender's share that 10 s at 80+ MB/s draws),
# BENCH_RELAY_LAT_DURATION (5 s per latency figure),
# BENCH_RELAY_DURATION (10 s of throughput), BENCH_RELAY_CONNS (4 clients),
# BENCH_RELAY_NUMBER (256 keys) and BENCH_RELAY_SIZE (8192 bits) per request.
# Part 4, the key economy's shares (tests/bench/economy-bench.sh):
# BENCH_ONLY=economy (only part 4), BENCH_ECONOMY=0 (skip it). Part 5, the
# store's size flat while link key flows (tests/bench/store_flat.sh):
# BENCH_ONLY=store, BENCH_STORE=0. Part 6, link key ingest through the ETSI
# 014 device source (tests/bench/device_ingest.sh): BENCH_ONLY=device,
# BENCH_DEVICE=0. Part 7, chains of 8, 16, 32 and 64 trusted nodes
# (tests/bench/scale.sh) and rerouting on a 4x4 grid
# (tests/bench/mesh_reroute.sh): BENCH_ONLY=scale, BENCH_SCALE=0. Part 8, the key
# use and added latency of a WebRTC call relayed by coturn (TURN over TCP)
# through an encryptor pair (tests/bench/call_economy.sh): BENCH_ONLY=call,
# BENCH_CALL=0.
# Part 3: BENCH_ONLY=encryptor (only part 3), BENCH_ENCRYPTOR=0 (skip it);
# BENCH_ENC_SAE_BASE (8740), BENCH_ENC_KME_BASE (9740) and BENCH_ENC_PORT_BASE
# (8750: probe, socat pair, encryptors on 8750-8758) ports, BENCH_ENC_RATE
# (4e9 bit/s), BENCH_ENC_BLOCK (1 MiB), BENCH_ENC_FILL_MB (link key pre-filled
# per link, 512), BENCH_ENC_MB (MB pushed through each one-time-pad pair, 64),
# BENCH_ENC_GCM_MB (through the AES-256-GCM pair, 512),
# BENCH_ENC_GCM_ROTATE_BYTES (16777216) and BENCH_ENC_GCM_ROTATE_SECONDS (10),
# BENCH_ENC_REF_MB (through the socat pair and direct, 1024),
# BENCH_ENC_PING_COUNT (3000) and BENCH_ENC_PING_SIZE (1024 bytes). Needs socat.
# Exit status: non-zero when anything failed (a request error, a process that
# did not start or died); a missed performance target is reported, not failed.

# `make bench` runs this with sh: continue under bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build/release}" 2>/dev/null && pwd) || { echo "bench: no build directory ${1:-}" >&2; exit 2; }
LOADGEN=$BUILD/bin/bench/loadgen
OUT=$ROOT/tests/out/bench
BENCH_CONNS=${BENCH_CONNS:-"1 16 64"}
BENCH_DURATION=${BENCH_DURATION:-5}
BENCH_WARMUP=${BENCH_WARMUP:-1}
BENCH_THREADS=${BENCH_THREADS:-1}
BENCH_ROUNDS=${BENCH_ROUNDS:-1}
BENCH_NGINX_PORT=${BENCH_NGINX_PORT:-8599}
BENCH_ONLY=${BENCH_ONLY:-}
BENCH_TARGET_CONNS=16
BENCH_TARGET_RATIO=0.5
KEY_PATH="/api/v1/keys/SAE_B/enc_keys?number=1&size=256"
NGINX=${NGINX:-/usr/sbin/nginx}

export NET_BIN=$BUILD/bin
export NET_SAE_BASE=${NET_SAE_BASE:-8540}
export NET_KME_BASE=${NET_KME_BASE:-9540}
# Link key at 16 Mbit/s supplies ~62 000 keys of 256 bits per second, many
# times what the KME serves. Far higher rates (400 Mbit/s was measured) make
# ingest itself compete with GET_KEY for the store's single writer and the CPU.
export NET_RATE=${NET_RATE:-16000000}
export NET_BLOCK=${NET_BLOCK:-1048576}
# shellcheck source=tests/lib/network.sh
. "$ROOT/tests/lib/network.sh"

FAILED=0
NET_UP=0
NGINX_PID=
WORK=

fail() { echo "bench: $*" >&2; FAILED=1; }

# stop_nginx / stop_net: whatever runs of them; the kme logs are kept in
# $OUT as ${NET_LOG_PREFIX}kme-SITE.log.
NET_LOG_PREFIX=
stop_nginx() {
    if [ -n "$NGINX_PID" ]; then
        kill -TERM "$NGINX_PID" 2>/dev/null
        wait "$NGINX_PID" 2>/dev/null
        NGINX_PID=
    fi
}
stop_net() {
    local s
    if [ "$NET_UP" = 1 ]; then
        net_stop
        NET_UP=0
        for s in $NET_SITES; do
            [ -f "$NET_DIR/$s/kme.log" ] && cp "$NET_DIR/$s/kme.log" "$OUT/${NET_LOG_PREFIX}kme-$s.log"
        done
    fi
}

cleanup() {
    trap - EXIT INT TERM
    rm -f "$OUT"/rounds/*.tmp "$OUT"/relay/*.tmp
    stop_nginx
    stop_enc
    stop_net
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        [ -f "$WORK/nginx/error.log" ] && cp "$WORK/nginx/error.log" "$OUT/nginx-error.log"
        if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $WORK" >&2; else rm -rf "$WORK"; fi
    fi
}
trap 'rc=$?; cleanup; [ "$rc" != 0 ] || [ "$FAILED" = 0 ] || rc=1; exit "$rc"' EXIT
trap 'echo "bench: interrupted" >&2; FAILED=1; exit 130' INT
trap 'echo "bench: terminated" >&2; FAILED=1; exit 143' TERM

# port_busy PORT: something already listens on 127.0.0.1:PORT
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# json_field FILE KEY: a number or literal from loadgen's one-line JSON
json_field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1" | head -n 1; }
# cell FILE KEY: that value of a loadgen result, or "-"
cell() {
    local v
    [ -f "$1" ] && v=$(json_field "$1" "$2")
    echo "${v:--}"
}
# num VALUE: a JSON number, or null
num() { case $1 in '' | - | *[!0-9.-]*) echo null ;; *) echo "$1" ;; esac; }

# cpu_ticks PID...: user+system clock ticks of these processes (all threads)
cpu_ticks() {
    local p total=0 st f
    for p in "$@"; do
        st=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        read -r -a f <<<"${st##*) }" # f[0] is field 3 (state): utime is field 14, stime 15
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}
# nginx master and its workers
nginx_pids() {
    [ -n "$NGINX_PID" ] || return 0
    echo "$NGINX_PID" "$(cat /proc/"$NGINX_PID"/task/*/children 2>/dev/null)"
}

# run_load NAME CONNS URL PIDS OTHER_PIDS: one loadgen run as SAE_A; writes
# $OUT/NAME-cCONNS.json with server_cpu_pct (PIDS) and other_cpu_pct
# (OTHER_PIDS) added, in percent of one core over the run.
run_load() {
    local name=$1 conns=$2 url=$3 pids=$4 others=$5
    local json="$OUT/rounds/$name-c$conns-r$ROUND.json" t0 t1 c0 c1 o0 o1 rc host port
    host=${url#https://}; host=${host%%/*}; port=${host##*:}; host=${host%:*}
    # shellcheck disable=SC2086 # PID lists
    { c0=$(cpu_ticks $pids); o0=$(cpu_ticks $others); }
    t0=$(date +%s%N)
    "$LOADGEN" --url "$url" --cert "$CERTS/SAE_A.pem" --key "$CERTS/SAE_A.key" --cacert "$CERTS/ca.pem" \
        --resolve "$host:$port:127.0.0.1" --connections "$conns" --threads "$BENCH_THREADS" \
        --duration "$BENCH_DURATION" --warmup "$BENCH_WARMUP" --label "$name" >"$json.tmp"
    rc=$?
    t1=$(date +%s%N)
    # shellcheck disable=SC2086
    { c1=$(cpu_ticks $pids); o1=$(cpu_ticks $others); }
    if [ -s "$json.tmp" ]; then
        sed "s/}\$/,\"server_cpu_pct\":$(cpu_pct $((c1 - c0)) $((t1 - t0))),\"other_cpu_pct\":$(cpu_pct $((o1 - o0)) $((t1 - t0)))}/" \
            "$json.tmp" >"$json"
    else
        echo "{\"label\":\"$name\",\"connections\":$conns,\"errors\":-1}" >"$json"
    fi
    rm -f "$json.tmp"
    [ "$rc" -eq 0 ] || fail "$name at $conns connections: loadgen exit $rc"
    return "$rc"
}
# cpu_pct TICKS NANOSECONDS -> percent of one core
cpu_pct() {
    awk -v c="$1" -v hz="$CLK_TCK" -v ns="$2" 'BEGIN { printf "%.1f", (ns > 0 ? 100 * c / hz / (ns / 1e9) : 0) }'
}
CLK_TCK=$(getconf CLK_TCK)

# write_static FILE SIZE: a JSON key container of exactly SIZE bytes holding
# no secret (a zero key_ID and 'A's); other bytes if SIZE is too small for it.
write_static() {
    local file=$1 size=$2 head tail n
    head='{"keys":[{"key_ID":"00000000-0000-0000-0000-000000000000","key":"'
    tail='"}]}'
    n=$((size - ${#head} - ${#tail}))
    if [ "$n" -ge 0 ]; then
        { printf '%s' "$head"; head -c "$n" /dev/zero | tr '\0' 'A'; printf '%s' "$tail"; } >"$file"
    else
        head -c "$size" /dev/zero | tr '\0' ' ' >"$file"
    fi
    [ "$(wc -c <"$file")" -eq "$size" ]
}

start_nginx() { # CERTDIR SIZE
    local certs=$1 size=$2 d=$WORK/nginx workers i
    workers=$(nproc 2>/dev/null || echo 1)
    mkdir -p "$d/www" "$d/tmp"
    chmod 755 "$WORK" "$d" "$d/www"
    write_static "$d/www/response.json" "$size" || { fail "cannot write the static response"; return 1; }
    chmod 644 "$d/www/response.json"
    cat >"$d/nginx.conf" <<EOF
# generated by tests/bench/run-bench.sh
daemon off;
master_process on;
worker_processes $workers;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 100000000;
    default_type application/json;
    server {
        listen 127.0.0.1:$BENCH_NGINX_PORT ssl;
        server_name localhost;
        ssl_certificate $certs/KME_A.server.pem;
        ssl_certificate_key $certs/KME_A.server.key;
        ssl_client_certificate $certs/sae-ca.pem;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:BENCH:1m;
        root $d/www;
        location / { try_files /response.json =500; }
    }
}
EOF
    "$NGINX" -e "$d/error.log" -p "$d" -c "$d/nginx.conf" -t -q || { fail "nginx rejects its configuration"; return 1; }
    "$NGINX" -e "$d/error.log" -p "$d" -c "$d/nginx.conf" &
    NGINX_PID=$!
    for i in $(seq 1 50); do
        port_busy "$BENCH_NGINX_PORT" && return 0
        kill -0 "$NGINX_PID" 2>/dev/null || break
        sleep 0.1
    done
    fail "nginx did not start; see $OUT/nginx-error.log"
    return 1
}

# stock_for SAE: stored_key_count that site A reports for SAE as slave of SAE_A
stock_of() {
    sae_curl SAE_A "/api/v1/keys/$1/status" --max-time 5 | sed -n 's/.*"stored_key_count"[[:space:]]*:[[:space:]]*\([0-9]*\).*/\1/p'
}

# --- part 2: the key relay on the three-site star ------------------------------
# Hub A, links A-B and A-C; SAE_B and SAE_C share keys only through A. One
# network with stock (the default stock_max_keys) for the latency from stock,
# one with stock disabled for the relay on demand. Link key comes from
# qkd-sim runs bounded by --count and is verified before anything is timed, so
# the figures are those of the KMEs and not of the simulator.
RELAY_SAE_BASE=${BENCH_RELAY_SAE_BASE:-8640}
RELAY_KME_BASE=${BENCH_RELAY_KME_BASE:-9640}
RELAY_RATE=${BENCH_RELAY_RATE:-4000000000}
RELAY_BLOCK=${BENCH_RELAY_BLOCK:-1048576}
# Each end owns about half of a link's blocks and only the sending end of a
# hop carves from it: 10 s at 60 MB/s needs 600 MB owned by B on A-B and by A
# on A-C. Bounded by the store (4 GiB by default; the hub holds two links).
RELAY_FILL_MB=${BENCH_RELAY_FILL_MB:-2560}
RELAY_WARM_FILL_MB=64 # the latency from stock uses little link key
RELAY_LAT_DURATION=${BENCH_RELAY_LAT_DURATION:-5}
RELAY_DURATION=${BENCH_RELAY_DURATION:-10}
RELAY_CONNS=${BENCH_RELAY_CONNS:-4}
RELAY_NUMBER=${BENCH_RELAY_NUMBER:-256}
RELAY_SIZE=${BENCH_RELAY_SIZE:-8192}
RELAY_TARGET_RATIO=1.5 # two hops from stock: p50 within this factor of the direct link
RELAY_TARGET_MBPS=50   # key material relayed on demand across two hops
RELAY_LAT_QUERY="number=1&size=256"
RELAY_OUT=$OUT/relay

# kme_dump SITE: the site's store as JSON (no key material)
kme_dump() { "$NET_BIN/kme" --config "$NET_DIR/$1/kme.json" --dump 2>/dev/null; }
# verified_blocks SITE PEER: verified link blocks at SITE on its link to PEER
verified_blocks() {
    kme_dump "$1" | jq --arg p "KME_$2" '[.links[$p][]? | select(.state == "verified")] | length' 2>/dev/null
}
# link_used_bytes SITE PEER: link key bytes recorded as used at SITE on that link
link_used_bytes() {
    kme_dump "$1" | jq --arg p "KME_$2" '[.links[$p][]? | .used[]? | .[1] - .[0]] | add // 0' 2>/dev/null
}
# stock_keys SITE DEST_SITE MASTER SLAVE: stock at SITE for that pair (256-bit keys)
stock_keys() {
    kme_dump "$1" | jq --arg d "KME_$2" --arg m "$3" --arg s "$4" \
        '[.stock[]? | select(.peer == $d and .master == $m and .slave == $s and .size == 256)] | length' 2>/dev/null
}
# mbps BYTES SECONDS -> MB/s (10^6 bytes)
mbps() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.2f", (t > 0 ? b / t / 1e6 : 0) }'; }

# relay_start NAME STOCK FILL_MB: the three sites with STOCK keys of stock per
# pair and FILL_MB of verified link key on each link; logs go to
# $RELAY_OUT/NAME-kme-SITE.log.
relay_start() {
    local name=$1 stock=$2 fill_mb=$3 blocks s l n want t0 progress done_all
    blocks=$(((fill_mb * 1048576 + RELAY_BLOCK - 1) / RELAY_BLOCK))
    NET_SAE_BASE=$RELAY_SAE_BASE NET_KME_BASE=$RELAY_KME_BASE NET_RATE=$RELAY_RATE NET_BLOCK=$RELAY_BLOCK
    NET_STOCK=$stock # read by net_init (tests/lib/network.sh)
    export NET_STOCK
    NET_LOG_PREFIX=relay/$name-
    net_init "$WORK/relay-$name" "A B C" "A-B A-C" || { fail "relay: net_init failed"; return 1; }
    # Ingest holds up to the whole fill (the default bound is 256 MiB per link),
    # and the store the hub's two links' fill (the default is 4096 MiB).
    for s in $NET_SITES; do
        if ! jq --argjson max $(((blocks + 1) * RELAY_BLOCK)) --argjson mb $((3 * fill_mb + 1024)) \
            '.link_stock_max_bytes = $max | .store_max_mb = ([$mb, 4096] | max)' "$NET_DIR/$s/kme.json" \
            >"$NET_DIR/$s/kme.json.tmp" || ! mv "$NET_DIR/$s/kme.json.tmp" "$NET_DIR/$s/kme.json"; then
            fail "relay: cannot write the configuration of site $s"
            return 1
        fi
    done
    NET_UP=1
    t0=$SECONDS
    for l in $NET_LINKS; do sim_start "$l" --count "$blocks" --quiet; done
    for s in $NET_SITES; do kme_start "$s"; done
    for s in $NET_SITES; do
        if ! kme_wait "$s" 30; then
            fail "relay: KME_$s did not start; see $RELAY_OUT/$name-kme-$s.log"
            return 1
        fi
    done
    net_wait_routed 30 || { fail "relay: the KMEs did not learn each other's routes"; return 1; }
    echo -n "bench: relay: $name network up; waiting for $blocks verified blocks of $RELAY_BLOCK bytes on each link end "
    while :; do
        done_all=1 progress=
        for want in "A B" "B A" "A C" "C A"; do
            n=$(verified_blocks "${want% *}" "${want#* }")
            progress="$progress ${want% *}:${n:-?}"
            [ "${n:-0}" -ge "$blocks" ] || done_all=0
        done
        [ "$done_all" = 1 ] && break
        for s in $NET_SITES; do
            kill -0 "$(kme_pid "$s")" 2>/dev/null || { echo; fail "relay: KME_$s died; see $RELAY_OUT/$name-kme-$s.log"; return 1; }
        done
        if [ $((SECONDS - t0)) -gt 120 ]; then
            echo
            fail "relay: link key still not verified after 120 s (verified blocks per end:$progress)"
            return 1
        fi
        echo -n .
        sleep 1
    done
    echo " done in $((SECONDS - t0)) s"
}

# relay_load NAME SAE SITE QUERY DEST_SAE CONNS WARMUP DURATION: one loadgen run
# of enc_keys as SAE against its KME at SITE; $RELAY_OUT/NAME.json.
relay_load() {
    local name=$1 sae=$2 site=$3 query=$4 dest=$5 conns=$6 warmup=$7 duration=$8 port rc
    port=$(net_sae_port "$site")
    "$LOADGEN" --url "https://localhost:$port/api/v1/keys/$dest/enc_keys?$query" --cert "$NET_DIR/certs/$sae.pem" \
        --key "$NET_DIR/certs/$sae.key" --cacert "$NET_DIR/certs/ca.pem" --resolve "localhost:$port:127.0.0.1" \
        --connections "$conns" --duration "$duration" --warmup "$warmup" --timeout 30 --label "relay-$name" \
        >"$RELAY_OUT/$name.json.tmp"
    rc=$?
    if [ -s "$RELAY_OUT/$name.json.tmp" ]; then
        mv "$RELAY_OUT/$name.json.tmp" "$RELAY_OUT/$name.json"
    else
        rm -f "$RELAY_OUT/$name.json.tmp"
        echo "{\"label\":\"relay-$name\",\"connections\":$conns,\"errors\":-1}" >"$RELAY_OUT/$name.json"
    fi
    [ "$rc" -eq 0 ] || fail "relay $name: loadgen exit $rc"
    return "$rc"
}

# relay_prime NAME SAE SITE DEST_SITE: demand for a pair, then wait until the
# stock that follows it stops growing.
relay_prime() {
    local name=$1 sae=$2 site=$3 dest=$4 n prev=-1 i
    relay_load "$name-prime" "$sae" "$site" "$RELAY_LAT_QUERY" "SAE_$dest" 1 0 2 2>/dev/null || return 1
    for i in $(seq 1 40); do
        sleep 0.5
        n=$(stock_keys "$site" "$dest" "$sae" "SAE_$dest")
        [ "${n:-0}" -gt 0 ] && [ "$n" = "$prev" ] && break
        prev=${n:-0}
    done
    echo "bench: relay: stock at $site for $sae -> SAE_$dest: ${n:-?} keys"
    [ "${n:-0}" -gt 0 ] || { fail "relay: no stock at $site for $sae -> SAE_$dest"; return 1; }
}

relay_bench() {
    local t0=$SECONDS p i lat_a lat_b ratio ratio99 met_ratio met_mbps status max_req max_size
    local used0_ab used0_ac used1_ab used1_ac c0 c1 tt0 tt1 ok ok_total key_bytes bytes dur mb per_key cpu ticks s e u
    mkdir -p "$RELAY_OUT"
    for p in $(for i in 1 2 3; do echo $((RELAY_SAE_BASE + i)) $((RELAY_KME_BASE + i)); done); do
        port_busy "$p" && { fail "relay: port $p is already in use"; return 1; }
    done
    command -v jq >/dev/null || { fail "relay: jq is needed (make deps)"; return 1; }
    echo
    echo "bench: relay on the star A-B, A-C (hub A): link rate $RELAY_RATE bit/s, blocks of $RELAY_BLOCK bytes" \
        "(load average before: $(cut -d' ' -f1-3 /proc/loadavg))"

    # (a) and (b): from stock (network.sh's default of 4096 keys per pair).
    relay_start warm 4096 "$RELAY_WARM_FILL_MB" || { stop_net; return 1; }
    relay_prime direct SAE_A A B &&
        relay_load direct SAE_A A "$RELAY_LAT_QUERY" SAE_B 1 1 "$RELAY_LAT_DURATION"
    echo "bench: relay: stock at A for SAE_A -> SAE_B after the run: $(stock_keys A B SAE_A SAE_B) keys"
    relay_prime stock SAE_B B C &&
        relay_load stock SAE_B B "$RELAY_LAT_QUERY" SAE_C 1 1 "$RELAY_LAT_DURATION"
    echo "bench: relay: stock at B for SAE_B -> SAE_C after the run: $(stock_keys B C SAE_B SAE_C) keys"
    stop_net

    # (c) and the throughput: stock disabled, every key relayed on demand.
    if relay_start cold 0 "$RELAY_FILL_MB"; then
        relay_load cold SAE_B B "$RELAY_LAT_QUERY" SAE_C 1 1 "$RELAY_LAT_DURATION"
        # Within the KME's bounds.
        status=$(sae_curl SAE_B /api/v1/keys/SAE_C/status --max-time 5)
        max_req=$(echo "$status" | jq -r '.max_key_per_request // empty' 2>/dev/null)
        max_size=$(echo "$status" | jq -r '.max_key_size // empty' 2>/dev/null)
        [ -n "$max_req" ] && [ "$RELAY_NUMBER" -gt "$max_req" ] && RELAY_NUMBER=$max_req
        [ -n "$max_size" ] && [ "$RELAY_SIZE" -gt "$max_size" ] && RELAY_SIZE=$max_size
        used0_ab=$(link_used_bytes A B) used0_ac=$(link_used_bytes A C)
        c0=() c1=()
        for s in A B C; do c0+=("$(cpu_ticks "$(kme_pid $s)")"); done
        tt0=$(date +%s%N)
        echo "bench: relay: throughput run: $RELAY_CONNS clients, $RELAY_NUMBER keys of $RELAY_SIZE bits per request, $RELAY_DURATION s"
        relay_load throughput SAE_B B "number=$RELAY_NUMBER&size=$RELAY_SIZE" SAE_C "$RELAY_CONNS" 0 "$RELAY_DURATION"
        tt1=$(date +%s%N)
        for s in A B C; do c1+=("$(cpu_ticks "$(kme_pid $s)")"); done
        used1_ab=$(link_used_bytes A B) used1_ac=$(link_used_bytes A C)
        stop_net
    else
        stop_net
    fi

    # --- report ---
    local tp=$RELAY_OUT/throughput.json
    echo
    echo "relay: enc_keys latency, 1 client, sequential requests of 1 key of 256 bits (keep-alive)"
    rrow() { printf '%-44s | %8s %8s %8s %6s\n' "$@"; }
    rrow "" "p50 ms" "p99 ms" "req/s" "errors"
    printf '%s\n' "---------------------------------------------+-----------------------------------"
    rrow "(a) direct link SAE_A -> SAE_B, from stock" "$(cell "$RELAY_OUT/direct.json" p50_ms)" \
        "$(cell "$RELAY_OUT/direct.json" p99_ms)" "$(cell "$RELAY_OUT/direct.json" rps)" "$(cell "$RELAY_OUT/direct.json" errors)"
    rrow "(b) two hops SAE_B -> SAE_C, from stock" "$(cell "$RELAY_OUT/stock.json" p50_ms)" \
        "$(cell "$RELAY_OUT/stock.json" p99_ms)" "$(cell "$RELAY_OUT/stock.json" rps)" "$(cell "$RELAY_OUT/stock.json" errors)"
    rrow "(c) two hops SAE_B -> SAE_C, relayed cold" "$(cell "$RELAY_OUT/cold.json" p50_ms)" \
        "$(cell "$RELAY_OUT/cold.json" p99_ms)" "$(cell "$RELAY_OUT/cold.json" rps)" "$(cell "$RELAY_OUT/cold.json" errors)"
    lat_a=$(cell "$RELAY_OUT/direct.json" p50_ms) lat_b=$(cell "$RELAY_OUT/stock.json" p50_ms)
    ratio=$(awk -v a="$lat_a" -v b="$lat_b" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && a + 0 > 0) printf "%.2f", b / a; else print "-" }')
    ratio99=$(awk -v a="$(cell "$RELAY_OUT/direct.json" p99_ms)" -v b="$(cell "$RELAY_OUT/stock.json" p99_ms)" \
        'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && a + 0 > 0) printf "%.2f", b / a; else print "-" }')
    met_ratio=unknown
    if [ "$ratio" != "-" ]; then
        if awk -v r="$ratio" -v t="$RELAY_TARGET_RATIO" 'BEGIN { exit !(r + 0 <= t + 0) }'; then met_ratio=yes; else met_ratio=no; fi
    fi
    case $met_ratio in
    yes) echo "target two hops from stock within $RELAY_TARGET_RATIO x the direct link (p50 (b)/(a)): MET (ratio $ratio; p99 ratio $ratio99)" ;;
    no) echo "target two hops from stock within $RELAY_TARGET_RATIO x the direct link (p50 (b)/(a)): NOT MET (ratio $ratio; p99 ratio $ratio99)" ;;
    *) echo "target two hops from stock within $RELAY_TARGET_RATIO x the direct link (p50 (b)/(a)): not measured" ;;
    esac

    echo
    echo "relay: cold throughput SAE_B -> SAE_C across two hops (stock disabled, link key pre-filled)"
    met_mbps=unknown mb=null
    if [ -f "$tp" ] && [ "$(cell "$tp" errors)" != -1 ]; then
        ok=$(($(cell "$tp" requests) - $(cell "$tp" errors)))
        ok_total=$(cell "$tp" ok_total)
        dur=$(cell "$tp" duration_s)
        key_bytes=$((RELAY_NUMBER * RELAY_SIZE / 8))
        bytes=$((ok * key_bytes))
        mb=$(mbps "$bytes" "$dur")
        printf '  %s clients x %s keys of %s bits (%s bytes of key per request), %s s\n' "$RELAY_CONNS" "$RELAY_NUMBER" \
            "$RELAY_SIZE" "$key_bytes" "$dur"
        printf '  %s requests answered 200 (%s errors): %s MB/s of key to the master (%.1f req/s; p50 %s ms, p99 %s ms)\n' \
            "$ok" "$(cell "$tp" errors)" "$mb" "$(cell "$tp" rps)" "$(cell "$tp" p50_ms)" "$(cell "$tp" p99_ms)"
        if [ -n "${used1_ab:-}" ] && [ -n "${used0_ab:-}" ] && [ "${ok_total:-0}" -gt 0 ]; then
            per_key=$(awk -v u="$((used1_ab - used0_ab))" -v v="$((used1_ac - used0_ac))" -v k="$((ok_total * key_bytes))" \
                'BEGIN { printf "%.4f / %.4f", u / k, v / k }')
            printf '  link key used: hop B->A (link A-B) %s MB, hop A->C (link A-C) %s MB, for %s MB of key in %s answers (%s bytes of link key per key byte)\n' \
                "$(mbps $((used1_ab - used0_ab)) 1)" "$(mbps $((used1_ac - used0_ac)) 1)" "$(mbps $((ok_total * key_bytes)) 1)" \
                "$ok_total" "$per_key"
        fi
        cpu="" ticks=0
        for i in 0 1 2; do
            cpu="$cpu $(echo A B C | cut -d' ' -f$((i + 1))) $(cpu_pct $((c1[i] - c0[i])) $((tt1 - tt0)))%"
            ticks=$((ticks + c1[i] - c0[i]))
        done
        echo "  kme CPU (% of one core over the run):$cpu; loadgen $(cell "$tp" loadgen_cpu_pct)%; $(nproc) cores;" \
            "$(awk -v t="$ticks" -v hz="$CLK_TCK" -v b="$((${ok_total:-0} * key_bytes))" \
                'BEGIN { printf "%.0f", (b > 0 ? 1000 * t / hz / (b / 1e6) : 0) }') ms of kme CPU (A+B+C) per MB of key"
        if awk -v r="$mb" -v t="$RELAY_TARGET_MBPS" 'BEGIN { exit !(r + 0 >= t + 0) }'; then met_mbps=yes; else met_mbps=no; fi
    fi
    case $met_mbps in
    yes) echo "target cold relay >= $RELAY_TARGET_MBPS MB/s across two hops: MET ($mb MB/s)" ;;
    no) echo "target cold relay >= $RELAY_TARGET_MBPS MB/s across two hops: NOT MET ($mb MB/s)" ;;
    *) echo "target cold relay >= $RELAY_TARGET_MBPS MB/s across two hops: not measured" ;;
    esac
    for f in "$RELAY_OUT"/*.json; do
        [ -f "$f" ] || continue
        case $f in *-prime.json) continue ;; esac
        e=$(json_field "$f" errors) u=$(json_field "$f" unmeasured_errors)
        if [ "${e:-0}" != 0 ] || [ "${u:-0}" != 0 ]; then
            fail "relay $(basename "$f" .json): $e errors in the window, ${u:-0} outside it"
        fi
    done
    printf '{"link_rate_bps":%s,"link_block_bytes":%s,"fill_mb":%s,"latency":{"direct_stock":{"p50_ms":%s,"p99_ms":%s},"two_hops_stock":{"p50_ms":%s,"p99_ms":%s},"two_hops_cold":{"p50_ms":%s,"p99_ms":%s}},"stock_ratio_p50":%s,"target_ratio":%s,"target_ratio_met":"%s","throughput":{"connections":%s,"number":%s,"size_bits":%s,"mb_per_s":%s,"link_a_b_bytes":%s,"link_a_c_bytes":%s},"target_mb_per_s":%s,"target_mb_per_s_met":"%s","elapsed_s":%s}\n' \
        "$RELAY_RATE" "$RELAY_BLOCK" "$RELAY_FILL_MB" \
        "$(num "$(cell "$RELAY_OUT/direct.json" p50_ms)")" "$(num "$(cell "$RELAY_OUT/direct.json" p99_ms)")" \
        "$(num "$(cell "$RELAY_OUT/stock.json" p50_ms)")" "$(num "$(cell "$RELAY_OUT/stock.json" p99_ms)")" \
        "$(num "$(cell "$RELAY_OUT/cold.json" p50_ms)")" "$(num "$(cell "$RELAY_OUT/cold.json" p99_ms)")" \
        "$(num "$ratio")" "$RELAY_TARGET_RATIO" "$met_ratio" "$RELAY_CONNS" "$RELAY_NUMBER" "$RELAY_SIZE" "$(num "$mb")" \
        "$(num "$(( ${used1_ab:-0} - ${used0_ab:-0} ))")" "$(num "$(( ${used1_ac:-0} - ${used0_ac:-0} ))")" \
        "$RELAY_TARGET_MBPS" "$met_mbps" "$((SECONDS - t0))" >"$OUT/relay.json"
    echo "relay part: $((SECONDS - t0)) s"
}

# --- part 3: the encryptor pair ------------------------------------------------
# The RTMP encryptor (encryptor/) on the three-site star (hub A, links A-B and
# A-C, link key pre-filled): the users side as SAE_B, the server side as SAE_C,
# one-time pads relayed B-A-C. tcp_probe (tests/bench/tcp_probe.c) is both
# ends: its server sinks or echoes each connection, its source pushes
# BENCH_ENC_MB through one connection and waits for the sink's byte count.
#  (1) throughput: direct, through two socat processes (socat TCP-LISTEN:a,fork
#      TCP:127.0.0.1:b, twice) and through the encryptor pair, with three
#      users-side encryptors sharing the server side: the README defaults;
#      tuned for bulk (large GET_KEY batches, 4-16 MiB pool, 16 keys announced
#      ahead), pads fetched while the data flows; and pads pooled ahead (the
#      whole run's pads in the users-side pool before it starts: the sender
#      never waits for GET_KEY, the receiver still fetches each announced key
#      by key_ID). Key used per payload byte from the encryptors' connection
#      lines (pads announced x pad size / plaintext bytes). One-time-pad
#      throughput is bounded by the key rate of the relay; for comparison a
#      second pair in the explicitly configured AES-256-GCM mode (both sides
#      "mode": "aes-256-gcm", a new QKD key every BENCH_ENC_GCM_ROTATE_BYTES or
#      BENCH_ENC_GCM_ROTATE_SECONDS), its own server side and users side.
#      Target: each of the one-time-pad pair with the README defaults and the
#      AES-256-GCM pair at least ENC_TARGET_RATIO of the socat pair.
#  (2) the crypto core: otp_core (tests/bench/otp_core.c), otp_seal + otp_open
#      of a 64 KiB payload framed as the sender frames it, one core.
#  (3) added latency: ping-pong of 1 KiB messages with the echo, direct,
#      through the socat pair and through the (bulk-tuned) encryptor pair.
ENC_SAE_BASE=${BENCH_ENC_SAE_BASE:-8740}
ENC_KME_BASE=${BENCH_ENC_KME_BASE:-9740}
ENC_PORT_BASE=${BENCH_ENC_PORT_BASE:-8750} # +0 probe server, +1/+2 socat, +3 server side, +4..+6 users sides,
                                           # +7 AES-256-GCM server side, +8 AES-256-GCM users side
ENC_RATE=${BENCH_ENC_RATE:-4000000000}
ENC_BLOCK=${BENCH_ENC_BLOCK:-1048576}
ENC_FILL_MB=${BENCH_ENC_FILL_MB:-512}
ENC_MB=${BENCH_ENC_MB:-64}
ENC_GCM_MB=${BENCH_ENC_GCM_MB:-512}
ENC_GCM_ROTATE_BYTES=${BENCH_ENC_GCM_ROTATE_BYTES:-16777216}
ENC_GCM_ROTATE_SECONDS=${BENCH_ENC_GCM_ROTATE_SECONDS:-10}
ENC_GCM_KEY_BYTES=32   # AES-256-GCM: one 256-bit QKD key per rotation
ENC_REF_MB=${BENCH_ENC_REF_MB:-1024}
ENC_PING_COUNT=${BENCH_ENC_PING_COUNT:-3000}
ENC_PING_SIZE=${BENCH_ENC_PING_SIZE:-1024}
ENC_KEY_BITS=65536     # pad_key_bits (the encryptor's default; the KMEs' max_key_size)
ENC_TARGET_RATIO=0.5   # encryptor pair / socat pair throughput
ENC_PAPER_US=98000     # NECTEC: 0.098 s to encrypt and decrypt a 64 KB payload
ENC_TARGET_SPEEDUP=1000
ENC_OUT=$OUT/encryptor
ENC_PIDS=()

# enc_spawn NAME CMD...: CMD in the background, stdout and stderr to
# $ENC_OUT/NAME.log, its pid in ENC_PID and ENC_PIDS
enc_spawn() {
    local name=$1
    shift
    "$@" >"$ENC_OUT/$name.log" 2>&1 &
    ENC_PID=$!
    ENC_PIDS+=("$ENC_PID")
}
# stop_enc: every process of part 3 (encryptors log their totals on SIGTERM)
stop_enc() {
    local p
    for p in ${ENC_PIDS[@]+"${ENC_PIDS[@]}"}; do kill -TERM "$p" 2>/dev/null; done
    for p in ${ENC_PIDS[@]+"${ENC_PIDS[@]}"}; do wait "$p" 2>/dev/null; done
    ENC_PIDS=()
}
# enc_wait_log FILE PATTERN SECONDS PID: PATTERN appears in FILE while PID lives
enc_wait_log() {
    local end=$((SECONDS + $3))
    while [ $SECONDS -le "$end" ]; do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$4" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
# enc_pool_bytes LOG: bytes in the pool at the last fetch the encryptor logged
enc_pool_bytes() { sed -n 's/.*fetched .* pool [0-9]* keys, \([0-9]*\) bytes.*/\1/p' "$1" | tail -n 1; }
# enc_conn LOG ID FIELD: a figure of the line "conn ID closed ..." (waits for it up to 2 s)
enc_conn() {
    local line='' i
    for i in $(seq 1 20); do
        line=$(grep -m 1 " conn $2 closed" "$1" 2>/dev/null) && break
        sleep 0.1
    done
    [ -n "$line" ] || return 1
    case $3 in
    clean) case $line in *"closed cleanly"*) echo 1 ;; *) echo 0 ;; esac ;;
    plain_in) echo "$line" | sed -n 's/.*plaintext in \([0-9]*\) out.*/\1/p' ;;
    pads_out) echo "$line" | sed -n 's/.*pads out \([0-9]*\) in.*/\1/p' ;;
    waits) echo "$line" | sed -n 's/.*pad waits \([0-9]*\).*/\1/p' ;;
    esac
}
# enc_json FILE: its one-line JSON, or null
enc_json() { if [ -s "$1" ]; then head -n 1 "$1"; else echo null; fi; }
# enc_settle: until the KMEs and encryptors (ENC_WATCH) use less than 10% of
# a core over half a second (stock refills and pool refills done), at most 30 s
enc_settle() {
    local end=$((SECONDS + 30)) c0 c1 t0 t1
    while [ $SECONDS -le $end ]; do
        # shellcheck disable=SC2086
        c0=$(cpu_ticks $ENC_WATCH); t0=$(date +%s%N)
        sleep 0.5
        # shellcheck disable=SC2086
        c1=$(cpu_ticks $ENC_WATCH); t1=$(date +%s%N)
        awk -v p="$(cpu_pct $((c1 - c0)) $((t1 - t0)))" 'BEGIN { exit !(p + 0 < 10) }' && return 0
    done
    echo "bench: encryptor: the KMEs and encryptors are still busy after 30 s; measuring anyway"
}

# enc_source NAME PORT BYTES PIDS: one throughput run; $ENC_OUT/NAME.json,
# ENC_CPU (percent of one core of each of PIDS over the run, space-separated)
enc_source() {
    local name=$1 port=$2 bytes=$3 pids=$4 p t0 t1 c0=() c1 i=0
    for p in $pids; do c0+=("$(cpu_ticks "$p")"); done
    t0=$(date +%s%N)
    "$ENC_PROBE" source "$port" "$bytes" --timeout 30 >"$ENC_OUT/$name.json" 2>"$ENC_OUT/$name.err" ||
        fail "encryptor: throughput $name: $(head -c 300 "$ENC_OUT/$name.err")"
    t1=$(date +%s%N)
    ENC_CPU=
    for p in $pids; do
        c1=$(cpu_ticks "$p")
        ENC_CPU="$ENC_CPU $(cpu_pct $((c1 - c0[i])) $((t1 - t0)))"
        i=$((i + 1))
    done
    ENC_CPU=${ENC_CPU# }
}
# enc_ping NAME PORT: one latency run; $ENC_OUT/NAME.json
enc_ping() {
    "$ENC_PROBE" ping "$2" --size "$ENC_PING_SIZE" --count "$ENC_PING_COUNT" --warmup 100 --timeout 30 \
        >"$ENC_OUT/$1.json" 2>"$ENC_OUT/$1.err" || fail "encryptor: latency $1: $(head -c 300 "$ENC_OUT/$1.err")"
}

# enc_config FILE ROLE LISTEN CONNECT PEER SITE PADS: an encryptor configuration
enc_config() {
    local c=$NET_DIR/certs sae=SAE_$6
    cat >"$1" <<JSON
{
  "role": "$2",
  "listen": "127.0.0.1:$3",
  "connect": "127.0.0.1:$4",
  "peer_sae": "$5",
  "kme": {"url": "$(net_url "$6")", "cert": "$c/$sae.pem", "key": "$c/$sae.key", "ca": "$c/ca.pem"}${7:+,
  $7}
}
JSON
}

enc_bench() {
    local t0=$SECONDS p i s l n blocks tt progress done_all want
    local probe=$ENC_PORT_BASE socat_in=$((ENC_PORT_BASE + 1)) socat_mid=$((ENC_PORT_BASE + 2))
    local server_port=$((ENC_PORT_BASE + 3)) server_pid probe_pid users_pid=() key_bytes=$((ENC_KEY_BITS / 8))
    local bytes=$((ENC_MB * 1000000)) ref_bytes=$((ENC_REF_MB * 1000000)) pool_high pool_need
    local names=(defaults bulk pooled) labels cpu_of=() pads
    local gcm_server_port=$((ENC_PORT_BASE + 7)) gcm_users_port=$((ENC_PORT_BASE + 8)) gcm_server_pid gcm_users_pid
    local gcm_bytes=$((ENC_GCM_MB * 1000000)) gcm_cpu gcm_mode extra
    gcm_mode="\"mode\": \"aes-256-gcm\", \"rotate_bytes\": $ENC_GCM_ROTATE_BYTES, \"rotate_seconds\": $ENC_GCM_ROTATE_SECONDS"
    ENC_PROBE=$BUILD/bin/bench/tcp_probe
    mkdir -p "$ENC_OUT"
    rm -f "$ENC_OUT"/*
    echo
    echo "bench: encryptor pair on the star A-B, A-C (hub A): users side SAE_B, server side SAE_C," \
        "link rate $ENC_RATE bit/s, $ENC_FILL_MB MiB of link key pre-filled per link (load average before:" \
        "$(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores)"
    for p in "$ENC_PROBE" "$BUILD/bin/bench/otp_core" "$BUILD/bin/encryptor" "$BUILD/bin/kme" "$BUILD/bin/qkd-sim"; do
        [ -x "$p" ] || { fail "encryptor: $p missing (make MODE=release all bench-bins)"; return 1; }
    done
    command -v socat >/dev/null || { fail "encryptor: socat is needed"; return 1; }
    command -v jq >/dev/null || { fail "encryptor: jq is needed (make deps)"; return 1; }
    for p in $(for i in 1 2 3; do echo $((ENC_SAE_BASE + i)) $((ENC_KME_BASE + i)); done) $(seq "$ENC_PORT_BASE" $((ENC_PORT_BASE + 8))); do
        port_busy "$p" && { fail "encryptor: port $p is already in use"; return 1; }
    done

    # (2) first, on a machine not yet busy with the network
    echo "bench: encryptor: crypto core (otp_core, one core)"
    "$BUILD/bin/bench/otp_core" --payload 65536 --key-bits "$ENC_KEY_BITS" >"$ENC_OUT/crypto.json" 2>"$ENC_OUT/crypto.err" ||
        fail "encryptor: otp_core: $(head -c 300 "$ENC_OUT/crypto.err")"
    "$BUILD/bin/bench/otp_core" --payload 65536 --key-bits $(((16384 + 32) * 8)) >"$ENC_OUT/crypto-16k.json" \
        2>"$ENC_OUT/crypto-16k.err" || fail "encryptor: otp_core (16 KiB frames): $(head -c 300 "$ENC_OUT/crypto-16k.err")"

    # the network, link key pre-filled and verified before anything is timed
    blocks=$(((ENC_FILL_MB * 1048576 + ENC_BLOCK - 1) / ENC_BLOCK))
    NET_SAE_BASE=$ENC_SAE_BASE NET_KME_BASE=$ENC_KME_BASE NET_RATE=$ENC_RATE NET_BLOCK=$ENC_BLOCK
    NET_STOCK=4096
    export NET_STOCK
    NET_LOG_PREFIX=encryptor/
    net_init "$WORK/enc" "A B C" "A-B A-C" || { fail "encryptor: net_init failed"; return 1; }
    for s in $NET_SITES; do
        if ! jq --argjson max $(((blocks + 1) * ENC_BLOCK)) '.link_stock_max_bytes = $max' "$NET_DIR/$s/kme.json" \
            >"$NET_DIR/$s/kme.json.tmp" || ! mv "$NET_DIR/$s/kme.json.tmp" "$NET_DIR/$s/kme.json"; then
            fail "encryptor: cannot write the configuration of site $s"
            return 1
        fi
    done
    NET_UP=1
    tt=$SECONDS
    for l in $NET_LINKS; do sim_start "$l" --count "$blocks" --quiet; done
    for s in $NET_SITES; do kme_start "$s"; done
    for s in $NET_SITES; do
        kme_wait "$s" 30 || { fail "encryptor: KME_$s did not start; see $ENC_OUT/kme-$s.log"; stop_net; return 1; }
    done
    net_wait_routed 30 || { fail "encryptor: the KMEs did not learn each other's routes"; stop_net; return 1; }
    echo -n "bench: encryptor: waiting for $blocks verified blocks of $ENC_BLOCK bytes on each link end "
    while :; do
        done_all=1 progress=
        for want in "A B" "B A" "A C" "C A"; do
            n=$(verified_blocks "${want% *}" "${want#* }")
            progress="$progress ${want% *}:${n:-?}"
            [ "${n:-0}" -ge "$blocks" ] || done_all=0
        done
        [ "$done_all" = 1 ] && break
        if [ $((SECONDS - tt)) -gt 120 ]; then
            echo
            fail "encryptor: link key still not verified after 120 s (verified blocks per end:$progress)"
            stop_net
            return 1
        fi
        echo -n .
        sleep 1
    done
    echo " done in $((SECONDS - tt)) s"

    # the ends, the socat pair and the encryptors
    enc_spawn probe "$ENC_PROBE" serve "$probe"
    probe_pid=$ENC_PID
    enc_spawn socat-in socat "TCP-LISTEN:$socat_in,bind=127.0.0.1,reuseaddr,fork" "TCP:127.0.0.1:$socat_mid"
    enc_spawn socat-mid socat "TCP-LISTEN:$socat_mid,bind=127.0.0.1,reuseaddr,fork" "TCP:127.0.0.1:$probe"
    # pads pooled ahead: the whole run (a full frame per key, the last keys
    # announced ahead) and a margin
    pool_need=$(((bytes / (key_bytes - 32) + 24) * key_bytes))
    pool_high=$((pool_need + 64 * key_bytes))
    pads=(""
        "\"pad_batch_keys\": 128, \"low_watermark_bytes\": 4194304, \"high_watermark_bytes\": 16777216, \"announce_keys\": 16"
        "\"pad_batch_keys\": 256, \"low_watermark_bytes\": $key_bytes, \"high_watermark_bytes\": $pool_high, \"announce_keys\": 16")
    labels=("README defaults" "bulk-tuned" "pads pooled ahead")
    enc_config "$ENC_OUT/server.json" server "$server_port" "$probe" SAE_B C "${pads[1]}"
    enc_spawn server "$BUILD/bin/encryptor" --config "$ENC_OUT/server.json"
    server_pid=$ENC_PID
    for i in 0 1 2; do
        extra=${pads[i]}
        # the pooled-ahead side logs each GET_KEY batch with its pool size (a debug line): the fill is awaited below
        [ "$i" = 2 ] && extra="$extra, \"log_level\": \"debug\""
        enc_config "$ENC_OUT/users-${names[i]}.json" users $((ENC_PORT_BASE + 4 + i)) "$server_port" SAE_C B "$extra"
        enc_spawn "users-${names[i]}" "$BUILD/bin/encryptor" --config "$ENC_OUT/users-${names[i]}.json"
        users_pid+=("$ENC_PID")
    done
    # the AES-256-GCM pair: both sides in that mode, the README's pool defaults
    enc_config "$ENC_OUT/server-gcm.json" server "$gcm_server_port" "$probe" SAE_B C "$gcm_mode"
    enc_spawn server-gcm "$BUILD/bin/encryptor" --config "$ENC_OUT/server-gcm.json"
    gcm_server_pid=$ENC_PID
    enc_config "$ENC_OUT/users-gcm.json" users "$gcm_users_port" "$gcm_server_port" SAE_C B "$gcm_mode"
    enc_spawn users-gcm "$BUILD/bin/encryptor" --config "$ENC_OUT/users-gcm.json"
    gcm_users_pid=$ENC_PID
    for i in 0 1 2; do
        enc_wait_log "$ENC_OUT/users-${names[i]}.log" "ready:" 15 "${users_pid[i]}" ||
            { fail "encryptor: the users-side encryptor (${names[i]}) did not start; see $ENC_OUT/users-${names[i]}.log"; stop_enc; stop_net; return 1; }
    done
    enc_wait_log "$ENC_OUT/server.log" "ready:" 15 "$server_pid" ||
        { fail "encryptor: the server-side encryptor did not start; see $ENC_OUT/server.log"; stop_enc; stop_net; return 1; }
    enc_wait_log "$ENC_OUT/users-gcm.log" "ready:.*AES-256-GCM" 15 "$gcm_users_pid" ||
        { fail "encryptor: the AES-256-GCM users-side encryptor did not start; see $ENC_OUT/users-gcm.log"; stop_enc; stop_net; return 1; }
    enc_wait_log "$ENC_OUT/server-gcm.log" "ready:.*AES-256-GCM" 15 "$gcm_server_pid" ||
        { fail "encryptor: the AES-256-GCM server-side encryptor did not start; see $ENC_OUT/server-gcm.log"; stop_enc; stop_net; return 1; }
    for p in $probe $socat_in $socat_mid; do
        for i in $(seq 1 50); do port_busy "$p" && break; sleep 0.1; done
        port_busy "$p" || { fail "encryptor: nothing listens on port $p"; stop_enc; stop_net; return 1; }
    done
    echo -n "bench: encryptor: filling the pooled-ahead pool to $pool_need bytes "
    tt=$SECONDS
    while [ "$(enc_pool_bytes "$ENC_OUT/users-pooled.log")" -lt "$pool_need" ] 2>/dev/null ||
        [ -z "$(enc_pool_bytes "$ENC_OUT/users-pooled.log")" ]; do
        if ! kill -0 "${users_pid[2]}" 2>/dev/null || [ $((SECONDS - tt)) -gt 90 ]; then
            echo
            fail "encryptor: the pooled-ahead encryptor did not fill its pool (last: $(enc_pool_bytes "$ENC_OUT/users-pooled.log") bytes)"
            stop_enc
            stop_net
            return 1
        fi
        echo -n .
        sleep 1
    done
    echo " done in $((SECONDS - tt)) s"
    ENC_WATCH="$(kme_pid A) $(kme_pid B) $(kme_pid C) $server_pid ${users_pid[*]} $gcm_server_pid $gcm_users_pid"
    enc_settle

    # (1) throughput: CPU of the users side, the server side, KME A, B, C, the probe
    echo "bench: encryptor: throughput: direct and socat pair $ENC_REF_MB MB, one-time-pad pairs $ENC_MB MB each," \
        "AES-256-GCM pair $ENC_GCM_MB MB, one connection"
    enc_source direct "$probe" "$ref_bytes" "$probe_pid"
    enc_source socat "$socat_in" "$ref_bytes" "$probe_pid"
    for i in 0 1 2; do
        enc_settle
        enc_source "pair-${names[i]}" $((ENC_PORT_BASE + 4 + i)) "$bytes" \
            "${users_pid[i]} $server_pid $(kme_pid A) $(kme_pid B) $(kme_pid C) $probe_pid"
        cpu_of[i]=$ENC_CPU
    done
    enc_settle
    enc_source pair-gcm "$gcm_users_port" "$gcm_bytes" \
        "$gcm_users_pid $gcm_server_pid $(kme_pid A) $(kme_pid B) $(kme_pid C) $probe_pid"
    gcm_cpu=$ENC_CPU
    # (3) latency
    enc_settle
    echo "bench: encryptor: latency: $ENC_PING_COUNT messages of $ENC_PING_SIZE bytes per path"
    enc_ping ping-direct "$probe"
    enc_ping ping-socat "$socat_in"
    enc_ping ping-pair $((ENC_PORT_BASE + 5))
    stop_enc
    stop_net

    # --- report ---
    local ref tput_rows="" sep="" mb ratio waits n defaults_ratio gcm_ratio gcm_keys
    local best_ratio=0 met_defaults=unknown met_gcm=unknown met_speed=unknown
    echo
    echo "encryptor: throughput of one connection, source -> relay pair -> sink on loopback (MB = 10^6 bytes)"
    trow() { printf '%-38s | %8s %8s %8s %6s | %s\n' "$@"; }
    trow "" "MB/s" "/ socat" "key B/B" "waits" "cpu % of one core"
    printf '%s\n' "---------------------------------------+-----------------------------------+------------------------------"
    ref=$(cell "$ENC_OUT/socat.json" mb_s)
    trow "direct (no relay), $ENC_REF_MB MB" "$(cell "$ENC_OUT/direct.json" mb_s)" "" "" "" ""
    trow "socat pair, $ENC_REF_MB MB" "$ref" "1.00" "" "" ""
    # enc_trow NAME LABEL USERS_LOG SERVER_LOG SERVER_CONN KEY_BYTES KPB_FORMAT CPU SETTINGS: one encryptor
    # pair's row from $ENC_OUT/pair-NAME.json and the connection lines (users side conn 1 pushed the
    # data); appends its JSON to tput_rows, its ratio to the socat pair in ENC_ROW_RATIO
    enc_trow() {
        local name=$1 label=$2 ulog=$3 slog=$4 sconn=$5 kb=$6 fmt=$7 cpu=$8 settings=$9
        local mb ratio kpb kpb_show kpb2 waits u_in u_pads s_pads clean
        mb=$(cell "$ENC_OUT/pair-$name.json" mb_s)
        ratio=$(awk -v a="$mb" -v b="$ref" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.3f", a / b; else print "-" }')
        u_in=$(enc_conn "$ulog" 1 plain_in)
        u_pads=$(enc_conn "$ulog" 1 pads_out)
        waits=$(enc_conn "$ulog" 1 waits)
        clean=$(enc_conn "$ulog" 1 clean)
        s_pads=$(enc_conn "$slog" "$sconn" pads_out)
        [ "${clean:-0}" = 1 ] || fail "encryptor: the $name pair's connection did not close cleanly"
        kpb=$(awk -v k="${u_pads:-0}" -v b="$kb" -v n="${u_in:-0}" 'BEGIN { if (n > 0) printf "%.9f", k * b / n; else print "-" }')
        kpb_show=$(awk -v v="$kpb" -v f="$fmt" 'BEGIN { if (v ~ /^[0-9.]+$/) printf f, v; else print "-" }')
        kpb2=$(awk -v k="$((${u_pads:-0} + ${s_pads:-0}))" -v b="$kb" -v n="${u_in:-0}" 'BEGIN { if (n > 0) printf "%.9f", k * b / n; else print "-" }')
        trow "$label" "$mb" "$ratio" "$kpb_show" "${waits:--}" \
            "$(echo "$cpu" | awk '{ print "users " $1 ", server " $2 ", kme A " $3 " B " $4 " C " $5 ", probe " $6 }')"
        tput_rows="$tput_rows$sep\"$name\":{\"result\":$(enc_json "$ENC_OUT/pair-$name.json"),\"ratio\":$(num "$ratio"),\"key_bytes\":$kb,\"key_per_byte\":$(num "$kpb"),\"key_per_byte_both_directions\":$(num "$kpb2"),\"pads_out\":$(num "$u_pads"),\"reverse_pads_out\":$(num "$s_pads"),\"plaintext_in\":$(num "$u_in"),\"pad_waits\":$(num "$waits"),\"cpu_pct\":\"$cpu\",\"pads\":\"${settings//\"/}\"}"
        sep=","
        ENC_ROW_RATIO=$ratio
    }
    # enc_met RATIO: yes, no or unknown against ENC_TARGET_RATIO
    enc_met() {
        if [ "${1:--}" = "-" ]; then echo unknown
        elif awk -v r="$1" -v t="$ENC_TARGET_RATIO" 'BEGIN { exit !(r + 0 >= t + 0) }'; then echo yes
        else echo no; fi
    }
    for i in 0 1 2; do
        # server side conns 1..3 are the runs in order
        enc_trow "${names[i]}" "(${names[i]:0:1}) OTP pair, ${labels[i]}" "$ENC_OUT/users-${names[i]}.log" \
            "$ENC_OUT/server.log" $((i + 1)) "$key_bytes" "%.4f" "${cpu_of[i]}" "${pads[i]}"
        ratio=$ENC_ROW_RATIO
        [ "$i" = 0 ] && defaults_ratio=$ratio
        [ "$i" = 1 ] && ENC_BULK_RATIO=$ratio
        if [ "$ratio" != "-" ] && awk -v r="$ratio" -v b="$best_ratio" 'BEGIN { exit !(r + 0 > b + 0) }'; then best_ratio=$ratio; fi
    done
    enc_trow gcm "(g) AES-256-GCM pair, $ENC_GCM_MB MB" "$ENC_OUT/users-gcm.log" "$ENC_OUT/server-gcm.log" 1 \
        "$ENC_GCM_KEY_BYTES" "%.2e" "$gcm_cpu" "$gcm_mode"
    gcm_ratio=$ENC_ROW_RATIO
    echo "(d), (b), (p): one-time pad (OTP), $ENC_MB MB each; (d) and (b): pads fetched with GET_KEY while the data" \
        "flows; (p): the whole run's pads in the users-side pool beforehand (GET_KEY out of the timed path; the" \
        "receiver still fetches every announced key by key_ID)"
    gcm_keys=$(enc_conn "$ENC_OUT/users-gcm.log" 1 pads_out)
    echo "(g): both sides \"mode\": \"aes-256-gcm\", a new 256-bit QKD key every $ENC_GCM_ROTATE_BYTES bytes or" \
        "$ENC_GCM_ROTATE_SECONDS s, README pool defaults; ${gcm_keys:--} keys announced in the data direction"
    echo "key B/B: bytes of key announced per payload byte in the data direction ($key_bytes-byte pads;" \
        "AES-256-GCM $ENC_GCM_KEY_BYTES-byte keys); waits: times the sender waited for its pool; cpu: users side," \
        "server side, kme A B C, probe"
    for f in users-defaults users-bulk users-pooled server users-gcm server-gcm; do
        n=$(sed -n 's/.*stopped: .*; \([0-9]*\) pads fetched (\([0-9]*\) bytes).*/\1 pads, \2 bytes/p' "$ENC_OUT/$f.log" | tail -n 1)
        echo "  $f: ${n:-no totals logged} fetched over the whole run"
        [ -n "$n" ] || fail "encryptor: $f logged no totals at stop"
    done
    mb=$(cell "$ENC_OUT/pair-bulk.json" mb_s) n=$(cell "$ENC_OUT/pair-pooled.json" mb_s)
    waits=$(enc_conn "$ENC_OUT/users-bulk.log" 1 waits)
    echo "key supply: (b) waited ${waits:--} times for GET_KEY (keys relayed B-A-C); with its pads pooled ahead (p) ran at" \
        "$(awk -v a="$n" -v b="$mb" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.1f", a / b; else print "-" }')x (b)'s rate;" \
        "an MB/s of one-time pad needs an MB/s of key"
    met_defaults=$(enc_met "$defaults_ratio") met_gcm=$(enc_met "$gcm_ratio")
    enc_target_line() { # LABEL MET RATIO [NOTE]
        local r=${3:--}
        case $2 in
        yes) echo "target encryptor pair >= $ENC_TARGET_RATIO x the socat pair, $1: MET (ratio $r${4:+; $4})" ;;
        no) echo "target encryptor pair >= $ENC_TARGET_RATIO x the socat pair, $1: NOT MET (ratio $r${4:+; $4})" ;;
        *) echo "target encryptor pair >= $ENC_TARGET_RATIO x the socat pair, $1: not measured" ;;
        esac
    }
    enc_target_line "OTP (d), README defaults" "$met_defaults" "$defaults_ratio" \
        "OTP bulk-tuned ${ENC_BULK_RATIO:--}, best OTP $best_ratio with pads pooled ahead; bounded by the relay's key rate"
    enc_target_line "AES-256-GCM (g)" "$met_gcm" "$gcm_ratio"
    case $met_defaults/$met_gcm in
    yes/yes) n="both OTP (d) and AES-256-GCM (g)" ;;
    yes/*) n="OTP (d) only" ;;
    */yes) n="AES-256-GCM (g) only" ;;
    no/no) n="neither" ;;
    *) n="not known (a row was not measured)" ;;
    esac
    echo "target encryptor pair >= $ENC_TARGET_RATIO x the socat pair met by: $n"

    local c=$ENC_OUT/crypto.json c16=$ENC_OUT/crypto-16k.json us speedup
    echo
    echo "encryptor: crypto core, otp_seal + otp_open as the encryptor frames a 64 KiB payload (one core;" \
        "median of 5 ms batches, best of 3 rounds)"
    us=$(cell "$c" enc_dec_us)
    speedup=$(awk -v u="$us" -v p="$ENC_PAPER_US" 'BEGIN { if (u ~ /^[0-9.]+$/ && u + 0 > 0) printf "%.0f", p / u; else print "-" }')
    printf '  pads of %s bits: %s frames; encrypt+decrypt %s us = %s MB/s per core (best batch %s us, worst round %s us)\n' \
        "$ENC_KEY_BITS" "$(cell "$c" frames)" "$us" "$(cell "$c" enc_dec_mb_s)" "$(cell "$c" enc_dec_best_us)" \
        "$(cell "$c" enc_dec_worst_round_us)"
    printf '    encrypt %s us (%s MB/s), decrypt %s us (%s MB/s); in encrypt: Poly1305 %s us (%s MB/s), XOR and framing %s us;' \
        "$(cell "$c" encrypt_us)" "$(cell "$c" encrypt_mb_s)" "$(cell "$c" decrypt_us)" "$(cell "$c" decrypt_mb_s)" \
        "$(cell "$c" poly1305_us)" "$(cell "$c" poly1305_mb_s)" "$(cell "$c" xor_framing_us)"
    printf ' %s key bytes per payload byte\n' "$(cell "$c" key_per_payload_byte)"
    printf '  16 KiB frames (pads of %s bits): %s frames; encrypt+decrypt %s us = %s MB/s per core\n' \
        "$(cell "$c16" key_bits)" "$(cell "$c16" frames)" "$(cell "$c16" enc_dec_us)" "$(cell "$c16" enc_dec_mb_s)"
    echo "  NECTEC paper: 0.098 s per 64 KB encrypt+decrypt; here ${speedup}x faster"
    if [ "$speedup" != "-" ]; then
        if [ "$speedup" -ge "$ENC_TARGET_SPEEDUP" ]; then met_speed=yes; else met_speed=no; fi
    fi
    case $met_speed in
    yes) echo "target crypto core >= ${ENC_TARGET_SPEEDUP}x the paper (<= $((ENC_PAPER_US / ENC_TARGET_SPEEDUP)) us per 64 KB): MET ($us us, ${speedup}x)" ;;
    no) echo "target crypto core >= ${ENC_TARGET_SPEEDUP}x the paper (<= $((ENC_PAPER_US / ENC_TARGET_SPEEDUP)) us per 64 KB): NOT MET ($us us, ${speedup}x)" ;;
    *) echo "target crypto core >= ${ENC_TARGET_SPEEDUP}x the paper: not measured" ;;
    esac

    local d=$ENC_OUT/ping-direct.json so=$ENC_OUT/ping-socat.json pr=$ENC_OUT/ping-pair.json add50 add99 adds50 adds99 f50 f99
    local p_in p_pads p_kpb
    echo
    echo "encryptor: round trip of $ENC_PING_SIZE-byte messages with an echo, $ENC_PING_COUNT messages after 100 of warm-up"
    lrow() { printf '%-38s | %9s %9s %9s %9s\n' "$@"; }
    lrow "" "p50 us" "p99 us" "mean us" "max us"
    printf '%s\n' "---------------------------------------+----------------------------------------"
    lrow "direct" "$(cell "$d" p50_us)" "$(cell "$d" p99_us)" "$(cell "$d" mean_us)" "$(cell "$d" max_us)"
    lrow "socat pair" "$(cell "$so" p50_us)" "$(cell "$so" p99_us)" "$(cell "$so" mean_us)" "$(cell "$so" max_us)"
    lrow "encryptor pair (bulk-tuned)" "$(cell "$pr" p50_us)" "$(cell "$pr" p99_us)" "$(cell "$pr" mean_us)" "$(cell "$pr" max_us)"
    diff_of() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/) printf "%.1f", a - b; else print "-" }'; }
    add50=$(diff_of "$(cell "$pr" p50_us)" "$(cell "$d" p50_us)") add99=$(diff_of "$(cell "$pr" p99_us)" "$(cell "$d" p99_us)")
    adds50=$(diff_of "$(cell "$pr" p50_us)" "$(cell "$so" p50_us)") adds99=$(diff_of "$(cell "$pr" p99_us)" "$(cell "$so" p99_us)")
    half() { awk -v a="$1" 'BEGIN { if (a ~ /^-?[0-9.]+$/) printf "%.1f", a / 2; else print "-" }'; }
    f50=$(half "$add50") f99=$(half "$add99")
    p_in=$(enc_conn "$ENC_OUT/users-bulk.log" 2 plain_in) p_pads=$(enc_conn "$ENC_OUT/users-bulk.log" 2 pads_out)
    p_kpb=$(awk -v k="${p_pads:-0}" -v b="$key_bytes" -v n="${p_in:-0}" 'BEGIN { if (n > 0) printf "%.4f", k * b / n; else print "-" }')
    echo "added by the encryptor pair per round trip (one frame each way): p50 $add50 us, p99 $add99 us over direct" \
        "(per frame: p50 $f50 us, p99 $f99 us); p50 $adds50 us, p99 $adds99 us over the socat pair"
    echo "key used at $ENC_PING_SIZE-byte frames: $p_kpb bytes of pad per payload byte"

    printf '{"cores":%s,"link_rate_bps":%s,"link_block_bytes":%s,"fill_mb":%s,"pad_key_bits":%s,"throughput":{"payload_bytes":%s,"gcm_payload_bytes":%s,"gcm_rotate_bytes":%s,"gcm_rotate_seconds":%s,"reference_bytes":%s,"direct":%s,"socat":%s,"pair":{%s},"target_ratio":%s,"target_met_otp_defaults":"%s","target_met_gcm":"%s","otp_defaults_ratio":%s,"gcm_ratio":%s,"bulk_ratio":%s,"best_otp_ratio":%s},"crypto":{"default_frames":%s,"frames_16k":%s,"paper_us":%s,"speedup":%s,"target_speedup":%s,"target_met":"%s"},"latency":{"direct":%s,"socat":%s,"pair":%s,"added_p50_us":%s,"added_p99_us":%s,"added_over_socat_p50_us":%s,"added_over_socat_p99_us":%s,"added_per_frame_p50_us":%s,"added_per_frame_p99_us":%s,"key_per_byte":%s},"elapsed_s":%s}\n' \
        "$(nproc)" "$ENC_RATE" "$ENC_BLOCK" "$ENC_FILL_MB" "$ENC_KEY_BITS" "$bytes" "$gcm_bytes" \
        "$ENC_GCM_ROTATE_BYTES" "$ENC_GCM_ROTATE_SECONDS" "$ref_bytes" \
        "$(enc_json "$ENC_OUT/direct.json")" "$(enc_json "$ENC_OUT/socat.json")" "$tput_rows" \
        "$ENC_TARGET_RATIO" "$met_defaults" "$met_gcm" "$(num "${defaults_ratio:-}")" "$(num "${gcm_ratio:-}")" \
        "$(num "${ENC_BULK_RATIO:-}")" "$(num "$best_ratio")" \
        "$(enc_json "$c")" "$(enc_json "$c16")" "$ENC_PAPER_US" "$(num "$speedup")" "$ENC_TARGET_SPEEDUP" "$met_speed" \
        "$(enc_json "$d")" "$(enc_json "$so")" "$(enc_json "$pr")" "$(num "$add50")" "$(num "$add99")" \
        "$(num "$adds50")" "$(num "$adds99")" "$(num "$f50")" "$(num "$f99")" "$(num "$p_kpb")" "$((SECONDS - t0))" \
        >"$OUT/encryptor.json"
    echo "encryptor part: $((SECONDS - t0)) s"
}

# finish: the closing lines (the exit trap makes the status)
finish() {
    echo "results: $OUT/"
    [ "$FAILED" = 0 ] && echo "bench: ok" || echo "bench: FAILED (see above)"
}

# --- preparation -------------------------------------------------------------
[ "$BENCH_ONLY" = encryptor ] || [ -x "$LOADGEN" ] || { echo "bench: $LOADGEN missing (make MODE=release bench-bins)" >&2; exit 2; }
[ "$BENCH_ONLY" = relay ] || [ "$BENCH_ONLY" = encryptor ] || [ "$BENCH_ONLY" = economy ] || [ "$BENCH_ONLY" = store ] || [ "$BENCH_ONLY" = device ] || [ "$BENCH_ONLY" = call ] || [ "$BENCH_ONLY" = scale ] || [ -x "$NGINX" ] || { echo "bench: nginx not found at $NGINX" >&2; exit 2; }
mkdir -p "$OUT"
rm -rf "$OUT"/*.json "$OUT"/*.log "$OUT/rounds" "$OUT/relay" "$OUT/encryptor"
mkdir -p "$OUT/rounds"
WORK=$(mktemp -d /tmp/kme-bench.XXXXXX) || exit 2
if [ "$BENCH_ONLY" = relay ]; then
    relay_bench
    finish
    exit 0
fi
if [ "$BENCH_ONLY" = encryptor ]; then
    enc_bench
    finish
    exit 0
fi
economy_bench() { bash "$ROOT/tests/bench/economy-bench.sh" "$BUILD" || fail "the key economy bench failed"; }
store_bench() { bash "$ROOT/tests/bench/store_flat.sh" "$BUILD" || fail "the store grew while link key flowed through it"; }
device_bench() { bash "$ROOT/tests/bench/device_ingest.sh" "$BUILD" || fail "the device ingest bench failed"; }
scale_bench() {
    bash "$ROOT/tests/bench/scale.sh" "$BUILD" || fail "the backbone scale bench failed"
    bash "$ROOT/tests/bench/mesh_reroute.sh" "$BUILD" || fail "the mesh reroute bench failed"
}
call_bench() { bash "$ROOT/tests/bench/call_economy.sh" "$BUILD" || fail "the call economy bench failed"; }
if [ "$BENCH_ONLY" = call ]; then
    call_bench
    finish
    exit 0
fi
if [ "$BENCH_ONLY" = scale ]; then
    scale_bench
    finish
    exit 0
fi
if [ "$BENCH_ONLY" = economy ]; then
    economy_bench
    finish
    exit 0
fi
if [ "$BENCH_ONLY" = store ]; then
    store_bench
    finish
    exit 0
fi
if [ "$BENCH_ONLY" = device ]; then
    device_bench
    finish
    exit 0
fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

for p in "$BENCH_NGINX_PORT" $(for i in 1 2; do echo $((NET_SAE_BASE + i)) $((NET_KME_BASE + i)); done); do
    if [ "$BENCH_ONLY" = nginx ] && [ "$p" != "$BENCH_NGINX_PORT" ]; then continue; fi
    port_busy "$p" && { fail "port $p is already in use"; exit 1; }
done

KME=0
if [ "$BENCH_ONLY" = nginx ]; then
    CERTS=${BENCH_CERTS:?BENCH_ONLY=nginx needs BENCH_CERTS}
    SIZE=${BENCH_SIZE:-95}
else
    for p in kme qkd-sim; do
        [ -x "$NET_BIN/$p" ] || { echo "bench: $NET_BIN/$p missing (make MODE=release all)" >&2; exit 2; }
    done
    echo "bench: starting sites A and B (link rate $NET_RATE bit/s, blocks of $NET_BLOCK bytes)"
    net_init "$WORK/net" "A B" "A-B" || { fail "net_init failed"; exit 1; }
    CERTS=$NET_DIR/certs
    NET_UP=1
    if ! net_start; then
        fail "the network did not start"
        for s in $NET_SITES; do echo "--- $NET_DIR/$s/kme.log" >&2; tail -n 20 "$NET_DIR/$s/kme.log" >&2; done
        exit 1
    fi
    echo -n "bench: waiting for key stock at A for SAE_B "
    stock=0
    for _ in $(seq 1 120); do
        stock=$(stock_of SAE_B)
        [ -n "$stock" ] && [ "$stock" -gt 0 ] && break
        echo -n .
        sleep 0.5
    done
    echo " ${stock:-?} keys"
    if [ -z "$stock" ] || [ "$stock" -le 0 ]; then
        fail "site A reports no stock for SAE_B after 60 s"
        exit 1
    fi
    # One real response, for its size only: the body (a key) goes to /dev/null.
    probe=$(sae_curl SAE_A "$KEY_PATH" --max-time 10 -o /dev/null -w '%{http_code} %{size_download}')
    code=${probe% *}; SIZE=${probe#* }
    if [ "$code" != 200 ] || [ "${SIZE:-0}" -le 0 ]; then
        fail "probe GET enc_keys answered HTTP $code"
        exit 1
    fi
    echo "bench: one enc_keys response is $SIZE bytes"
    KME=1
    KME_URL="https://localhost:$(net_sae_port A)$KEY_PATH"
fi

echo "bench: nginx on 127.0.0.1:$BENCH_NGINX_PORT serving a static $SIZE-byte response"
NGINX_UP=0
start_nginx "$CERTS" "$SIZE" && NGINX_UP=1
NGINX_URL="https://localhost:$BENCH_NGINX_PORT$KEY_PATH"

# KME and nginx alternate at each connection count, so that background load on
# the machine affects both sides alike; with BENCH_ROUNDS > 1 the whole series
# repeats and each configuration keeps its best round (least disturbed).
for ROUND in $(seq 1 "$BENCH_ROUNDS"); do
    [ "$BENCH_ROUNDS" -gt 1 ] && echo "bench: round $ROUND of $BENCH_ROUNDS"
    for c in $BENCH_CONNS; do
        if [ "$KME" = 1 ]; then
            if kill -0 "$(kme_pid A)" 2>/dev/null; then
                # server CPU: site A's kme; other CPU: KME_B and qkd-sim (ingest)
                run_load kme "$c" "$KME_URL" "$(kme_pid A)" "$(kme_pid B) $(cat "$NET_DIR/links/A-B/qkd-sim.pid" 2>/dev/null)"
            else
                fail "KME_A is no longer running; see $OUT/kme-A.log"
                KME=0
            fi
        fi
        if [ "$NGINX_UP" = 1 ]; then
            if kill -0 "$NGINX_PID" 2>/dev/null; then
                run_load nginx "$c" "$NGINX_URL" "$(nginx_pids)" ""
            else
                fail "nginx is no longer running; see $OUT/nginx-error.log"
                NGINX_UP=0
            fi
        fi
    done
done

# Refusals cost only themselves: a well-behaved SAE's enc_keys latency at
# one connection, alone and beside 16 connections of dec_keys for key_IDs
# that do not exist (each refused in the store's write batch) and large
# enc_keys requests. Target: its p99 within 2x its unloaded p99.
refusal_bench() {
    local url=$KME_URL host port bad big alone mixed n1 n2 p_alone p_mixed
    host=${url#https://}; host=${host%%/*}; port=${host##*:}; host=${host%:*}
    bad="https://localhost:$port/api/v1/keys/SAE_B/dec_keys?key_ID=00000000-0000-4000-8000-000000000000"
    big="https://localhost:$port/api/v1/keys/SAE_B/enc_keys?number=128&size=2048"
    alone=$OUT/refusal-alone.json mixed=$OUT/refusal-mixed.json
    lg() { "$LOADGEN" --cert "$CERTS/SAE_A.pem" --key "$CERTS/SAE_A.key" --cacert "$CERTS/ca.pem" \
        --resolve "$host:$port:127.0.0.1" --threads 1 "$@"; }
    lg --url "$url" --connections 1 --duration "$BENCH_DURATION" --warmup "$BENCH_WARMUP" --label alone >"$alone" ||
        fail "refusal bench: the well-behaved SAE alone failed"
    lg --url "$bad" --connections 16 --duration $((BENCH_DURATION + 2)) --warmup 0 --max-errors 100000000 \
        --label refused >"$OUT/refusal-noise.json" 2>/dev/null &
    n1=$!
    lg --url "$big" --connections 2 --duration $((BENCH_DURATION + 2)) --warmup 0 --max-errors 100000000 \
        --label large >"$OUT/refusal-large.json" 2>/dev/null &
    n2=$!
    sleep 1
    lg --url "$url" --connections 1 --duration "$BENCH_DURATION" --warmup 0 --label beside >"$mixed" ||
        fail "refusal bench: the well-behaved SAE beside the refusals failed"
    wait "$n1" "$n2" 2>/dev/null
    p_alone=$(json_field "$alone" p99_ms) p_mixed=$(json_field "$mixed" p99_ms)
    echo
    echo "refusals: well-behaved SAE at 1 connection: p99 $p_alone ms alone, $p_mixed ms beside 16 connections of" \
        "refused dec_keys ($(json_field "$OUT/refusal-noise.json" rps) req/s) and 2 of enc_keys 128 x 2048 bits" \
        "($(json_field "$OUT/refusal-large.json" rps) req/s)"
    if awk -v a="$p_alone" -v b="$p_mixed" 'BEGIN { exit !(a + 0 > 0 && b + 0 <= 2 * a) }'; then
        echo "target p99 beside the refusals within 2 x alone: MET"
    else
        echo "target p99 beside the refusals within 2 x alone: NOT MET"
    fi
}
[ "$KME" = 1 ] && [ "${BENCH_REFUSALS:-1}" != 0 ] && refusal_bench

STOCK_AFTER=
[ "$KME" = 1 ] && STOCK_AFTER=$(stock_of SAE_B)
[ -n "$STOCK_AFTER" ] && echo "bench: stock at A for SAE_B after the runs: $STOCK_AFTER keys"

# best round of each configuration -> $OUT/NAME-cN.json
for name in kme nginx; do
    for c in $BENCH_CONNS; do
        best='' best_rps=-1
        for f in "$OUT/rounds/$name-c$c-r"*.json; do
            [ -f "$f" ] || continue
            r=$(json_field "$f" rps)
            if awk -v a="${r:-0}" -v b="$best_rps" 'BEGIN { exit !(a + 0 > b + 0) }'; then best=$f best_rps=${r:-0}; fi
        done
        [ -n "$best" ] && cp "$best" "$OUT/$name-c$c.json"
    done
done

# --- report ------------------------------------------------------------------
echo
row() { printf '%5s | %9s %7s %7s %5s %5s | %9s %7s %7s %5s %5s | %7s\n' "$@"; }
row conns "KME rps" "p50 ms" "p99 ms" "cpu%" "lg%" "nginx rps" "p50 ms" "p99 ms" "cpu%" "lg%" "KME/ngx"
printf '%s\n' "------+-------------------------------------------+-------------------------------------------+--------"
summary="["
sep=""
target_ratio=""
for c in $BENCH_CONNS; do
    k=$OUT/kme-c$c.json n=$OUT/nginx-c$c.json
    kr=$(cell "$k" rps) nr=$(cell "$n" rps)
    ratio=$(awk -v a="$kr" -v b="$nr" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.2f", (a / b); else print "-" }')
    row "$c" "$kr" "$(cell "$k" p50_ms)" "$(cell "$k" p99_ms)" "$(cell "$k" server_cpu_pct)" "$(cell "$k" loadgen_cpu_pct)" \
        "$nr" "$(cell "$n" p50_ms)" "$(cell "$n" p99_ms)" "$(cell "$n" server_cpu_pct)" "$(cell "$n" loadgen_cpu_pct)" "$ratio"
    [ "$c" = "$BENCH_TARGET_CONNS" ] && target_ratio=$ratio
    summary="$summary$sep{\"connections\":$c,\"kme_rps\":$(num "$kr"),\"nginx_rps\":$(num "$nr"),\"ratio\":$(num "$ratio")}"
    sep=","
done
summary="$summary]"
echo "(cpu% = server CPU, lg% = loadgen CPU, in % of one core over the run; $(nproc) cores; load average before: $LOAD_BEFORE)"
for f in "$OUT"/rounds/*.json; do
    [ -f "$f" ] || continue
    e=$(json_field "$f" errors) u=$(json_field "$f" unmeasured_errors)
    if [ "${e:-0}" != 0 ] || [ "${u:-0}" != 0 ]; then
        fail "$(basename "$f" .json): $e errors in the window, ${u:-0} outside it"
    fi
done
met=unknown
if [ -n "$target_ratio" ] && [ "$target_ratio" != "-" ]; then
    if awk -v r="$target_ratio" -v t="$BENCH_TARGET_RATIO" 'BEGIN { exit !(r + 0 >= t + 0) }'; then met=yes; else met=no; fi
fi
case $met in
yes) echo "target KME >= $BENCH_TARGET_RATIO x nginx at $BENCH_TARGET_CONNS connections: MET (ratio $target_ratio)" ;;
no) echo "target KME >= $BENCH_TARGET_RATIO x nginx at $BENCH_TARGET_CONNS connections: NOT MET (ratio $target_ratio)" ;;
*) echo "target KME >= $BENCH_TARGET_RATIO x nginx at $BENCH_TARGET_CONNS connections: not measured" ;;
esac
printf '{"link_rate_bps":%s,"link_block_bytes":%s,"stock_after":%s,"response_bytes":%s,"duration_s":%s,"warmup_s":%s,"rounds":%s,"cores":%s,"load_before":"%s","target_connections":%s,"target_ratio":%s,"target_met":"%s","rows":%s}\n' \
    "$NET_RATE" "$NET_BLOCK" "$(num "${STOCK_AFTER:-}")" "${SIZE:-0}" "$BENCH_DURATION" "$BENCH_WARMUP" "$BENCH_ROUNDS" "$(nproc)" "$LOAD_BEFORE" "$BENCH_TARGET_CONNS" "$BENCH_TARGET_RATIO" "$met" "$summary" >"$OUT/summary.json"
stop_nginx
stop_net
case $BENCH_ONLY in
nginx) ;;
*)
    [ "${BENCH_RELAY:-1}" = 0 ] || relay_bench
    [ "${BENCH_ENCRYPTOR:-1}" = 0 ] || enc_bench
    [ "${BENCH_ECONOMY:-1}" = 0 ] || economy_bench
    [ "${BENCH_STORE:-1}" = 0 ] || store_bench
    [ "${BENCH_DEVICE:-1}" = 0 ] || device_bench
    [ "${BENCH_SCALE:-1}" = 0 ] || scale_bench
    [ "${BENCH_CALL:-1}" = 0 ] || call_bench
    ;;
esac
finish
