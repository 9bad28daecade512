#!/usr/bin/env bash
# `make bench`: throughput of the ETSI 014 GET_KEY path. Owns the benchmark run:
# a two-site network (kme/network.sh), loadgen against KME A's enc_keys at
# 1/16/64 connections, the same load against nginx serving a static response
# of equal size with the same TLS set-up, the comparison table and the JSON
# results in tests/out/bench/.
#
#   sh tests/bench/run-bench.sh [BUILD]        (default build/release)
#
# Environment: BENCH_CONNS ("1 16 64"), BENCH_DURATION (5 s), BENCH_WARMUP (1 s),
# BENCH_ROUNDS (1; more rounds keep each configuration's best, for a busy
# machine), BENCH_THREADS (loadgen event loops, 1), BENCH_NGINX_PORT (8599),
# BENCH_ONLY=nginx (skip the KME: needs BENCH_CERTS, a directory with
# KME_A.server.pem/.key, ca.pem, sae-ca.pem, SAE_A.pem/.key, and BENCH_SIZE),
# BENCH_KEEP=1 (keep the temporary directory), NET_RATE, NET_BLOCK.
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
# shellcheck source=kme/network.sh
. "$ROOT/kme/network.sh"

FAILED=0
NET_UP=0
NGINX_PID=
WORK=

fail() { echo "bench: $*" >&2; FAILED=1; }

cleanup() {
    trap - EXIT INT TERM
    rm -f "$OUT"/rounds/*.tmp
    if [ -n "$NGINX_PID" ]; then
        kill -TERM "$NGINX_PID" 2>/dev/null
        wait "$NGINX_PID" 2>/dev/null
        NGINX_PID=
    fi
    if [ "$NET_UP" = 1 ]; then
        net_stop
        NET_UP=0
        for s in $NET_SITES; do
            [ -f "$NET_DIR/$s/kme.log" ] && cp "$NET_DIR/$s/kme.log" "$OUT/kme-$s.log"
        done
    fi
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

# --- preparation -------------------------------------------------------------
[ -x "$LOADGEN" ] || { echo "bench: $LOADGEN missing (make MODE=release bench-bins)" >&2; exit 2; }
[ -x "$NGINX" ] || { echo "bench: nginx not found at $NGINX" >&2; exit 2; }
mkdir -p "$OUT"
rm -rf "$OUT"/*.json "$OUT"/*.log "$OUT/rounds"
mkdir -p "$OUT/rounds"
WORK=$(mktemp -d /tmp/kme-bench.XXXXXX) || exit 2
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
cell() { # FILE KEY -> value or "-"
    local v
    [ -f "$1" ] && v=$(json_field "$1" "$2")
    echo "${v:--}"
}
num() { case $1 in '' | - | *[!0-9.]*) echo null ;; *) echo "$1" ;; esac; }
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
echo "results: $OUT/"
[ "$FAILED" = 0 ] && echo "bench: ok" || echo "bench: FAILED (see above)"
