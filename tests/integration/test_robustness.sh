#!/usr/bin/env bash
# Robustness of the SAE and KME ports: oversized bodies (declared and chunked),
# deeply nested JSON, oversized headers, plaintext and garbage on the TLS
# ports, slow and idle clients, and a burst of parallel mixed requests. None
# of it may take a daemon down, block other clients, or trip the sanitizers.
# Both sites run with connection_timeout_s = 8 so that idle clients are dropped
# within the suite.
# shellcheck disable=SC2034 # T_SUITE and the NET_* settings are read by the sourced files
T_SUITE=robustness
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"
NET_SAE_BASE=7700
NET_KME_BASE=7800
# shellcheck source=SCRIPTDIR/../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
NET_BIN=$T_BIN

dir=$(mktemp -d "$T_OUT/robustness.XXXX")
W=$dir/test
mkdir -p "$W"
CONN_TIMEOUT=8
IDLE_PIDS=()
IDLE_FDS=()

close_idle() {
    local p fd
    for fd in "${IDLE_FDS[@]}"; do exec {fd}>&-; done 2>/dev/null
    IDLE_FDS=()
    # Closing stdin ends each s_client; any left is stopped, but only if that
    # PID is still one of our s_clients (an exited one's PID may be reused).
    for p in "${IDLE_PIDS[@]}"; do
        case $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) in
        *"s_client -connect 127.0.0.1:$SAE_PORT "*) kill "$p" 2>/dev/null ;;
        esac
    done
    for p in "${IDLE_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    IDLE_PIDS=()
}
cleanup() {
    close_idle
    net_stop
}
trap cleanup EXIT

t_require_programs kme qkd-sim

# ---- helpers --------------------------------------------------------------------

C=$dir/certs
SAE_PORT=$((NET_SAE_BASE + 1))
KME_PORT=$((NET_KME_BASE + 1))
ENC=/api/v1/keys/SAE_B/enc_keys
PJ=(-X POST -H 'Content-Type: application/json' --data-binary) # then the body

is_etsi_error() {
    printf '%s' "$1" | jq -e 'type == "object" and (.message | type == "string" and length > 0)
        and (.details | type == "array") and (has("keys") | not)' >/dev/null 2>&1
}
# call SAE PATH [curl args]: sets RC, CODE and BODY.
call() {
    local out
    out=$(sae_curl "$@" --max-time 20 -w '\n%{http_code}')
    RC=$?
    CODE=${out##*$'\n'}
    BODY=${out%$'\n'*}
}
status_ok() { # SITE: its own SAE gets a status within 3 s
    local s=$1 peer=B
    [ "$s" = B ] && peer=A
    [ "$(sae_curl "SAE_$s" "/api/v1/keys/SAE_$peer/status" --max-time 3 -o /dev/null -w '%{http_code}')" = 200 ]
}
alive() { # NAME: KME_A still runs and answers
    t_check "$1: KME_A still running" kill -0 "$(kme_pid A)"
    t_check "$1: KME_A answers status" status_ok A
}
stock() { sae_curl SAE_A /api/v1/keys/SAE_B/status | jq -e '.stored_key_count'; }
has_stock() { [ "$(stock)" -gt 0 ] 2>/dev/null; }
# send FD: copies stdin to FD; a peer that closed early cannot kill the suite (SIGPIPE).
send() { (cat 1>&"$1") 2>/dev/null; }
# established PORT: TCP connections the server side holds on 127.0.0.1:PORT.
established() { ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l; }
# repeat_str N STR: STR N times.
repeat_str() { yes "$2" | head -n "$1" | tr -d '\n'; }

# ---- network ----------------------------------------------------------------------

echo "== network ($SECONDS s)"
net_up_or_end "$dir" "A B" "A-B" ".connection_timeout_s = $CONN_TIMEOUT"
if wait_for 30 has_stock; then t_pass "site A has stock for SAE_B"; else t_fail "site A has stock for SAE_B" "none after 30 s"; fi

# ---- oversized bodies -----------------------------------------------------------------

echo "== oversized bodies ($SECONDS s)"
# 1 MiB of valid JSON: {"number":1} followed by whitespace (the limit is 256 KiB).
{ printf '{"number":1}'; head -c $((1024 * 1024)) /dev/zero | tr '\0' ' '; } >"$W/big.json"
call SAE_A "$ENC" "${PJ[@]}" @"$W/big.json"
t_eq "1 MiB body with Content-Length: HTTP 400" 400 "$CODE"
if is_etsi_error "$BODY"; then t_pass "1 MiB body with Content-Length: ETSI error body"; else t_fail "1 MiB body with Content-Length: ETSI error body" "rc $RC body [$BODY]"; fi
alive "after the 1 MiB body"

call SAE_A "$ENC" "${PJ[@]}" @"$W/big.json" -H 'Transfer-Encoding: chunked'
t_nomatch "chunked 1 MiB body: never served" '^2' "$CODE"
# curl reports 000, or 100 after "100 Continue", when no final answer came.
if [ "$RC" -ne 0 ] && { [ "$CODE" = 000 ] || [ "$CODE" = 100 ]; }; then
    t_pass "chunked 1 MiB body: connection dropped without an answer (curl exit $RC)"
elif [ "$CODE" = 400 ] || [ "$CODE" = 413 ]; then
    if is_etsi_error "$BODY"; then t_pass "chunked 1 MiB body: refused $CODE with the ETSI body"; else t_fail "chunked 1 MiB body: refused with the ETSI body" "body [$BODY]"; fi
else
    t_fail "chunked 1 MiB body: refused" "HTTP $CODE, body [$BODY]"
fi
alive "after the chunked 1 MiB body"

# Just under the limit is still an ordinary request.
{ printf '{"number":1}'; head -c $((200 * 1024)) /dev/zero | tr '\0' ' '; } >"$W/200k.json"
call SAE_A "$ENC" "${PJ[@]}" @"$W/200k.json"
t_eq "200 KiB body (under the limit): one key" "200 1" "$CODE $(printf '%s' "$BODY" | jq '.keys | length' 2>/dev/null)"

# Beyond the HTTP layer's limits: refused with a 4xx or the connection dropped
# without an answer; no keys either way, and the daemon serves on.
refused_4xx() { # NAME [call args]
    local name=$1
    shift
    call "$@"
    t_match "$name: refused (4xx, or dropped: 000)" '^(4[0-9][0-9]|000)$' "$CODE"
    t_nomatch "$name: no keys" '"keys"' "$BODY"
    alive "after $name"
}
refused_4xx "100 KB request header" SAE_A "$ENC?number=1" -H "X-Pad: $(repeat_str 100000 a)"
refused_4xx "20 KB path" SAE_A "/api/v1/keys/$(repeat_str 20000 S)/status"
refused_4xx "Content-Length of 24 digits" SAE_A "$ENC" "${PJ[@]}" '{}' -H 'Content-Length: 999999999999999999999999'
refused_4xx "negative Content-Length" SAE_A "$ENC" "${PJ[@]}" '{}' -H 'Content-Length: -5'
refused_4xx "2000 query parameters" SAE_A "$ENC?$(repeat_str 2000 'x=1&')number=1"

# ---- deeply nested JSON ----------------------------------------------------------------

echo "== deeply nested JSON ($SECONDS s)"
repeat_str 100000 '[' >"$W/deep-array.json"
call SAE_A "$ENC" "${PJ[@]}" @"$W/deep-array.json"
t_eq "100000 '[' to enc_keys: HTTP 400" 400 "$CODE"
if is_etsi_error "$BODY"; then t_pass "100000 '[': ETSI error body"; else t_fail "100000 '[': ETSI error body" "rc $RC body [$BODY]"; fi
alive "after 100000 '['"
{ repeat_str 20000 '{"a":'; printf '1'; repeat_str 20000 '}'; } >"$W/deep-object.json"
call SAE_A "$ENC" "${PJ[@]}" @"$W/deep-object.json"
t_eq "20000 nested objects to enc_keys: HTTP 400" 400 "$CODE"
{ printf '{"key_IDs":'; repeat_str 100000 '['; } >"$W/deep-ids.json"
call SAE_B /api/v1/keys/SAE_A/dec_keys "${PJ[@]}" @"$W/deep-ids.json"
t_eq "100000 '[' to dec_keys at KME_B: HTTP 400" 400 "$CODE"
t_check "after deep JSON: KME_B answers status" status_ok B
out=$(curl -s --max-time 20 --cacert "$C/ca.pem" --cert "$C/KME_B.kme.pem" --key "$C/KME_B.kme.key" \
    "${PJ[@]}" @"$W/deep-array.json" -w '\n%{http_code}' "https://localhost:$KME_PORT/kme/v1/verify")
t_eq "100000 '[' from neighbour KME_B on the KME port: HTTP 400" 400 "${out##*$'\n'}"
alive "after deep JSON on the KME port"

# ---- not TLS on the TLS ports -----------------------------------------------------------------

echo "== plaintext and garbage on the TLS ports ($SECONDS s)"
# garbage_closes NAME PORT FILE: sends FILE on a fresh TCP connection to PORT; the
# server must close it within 3 s (a TLS alert or nothing, never an HTTP answer).
garbage_closes() {
    local name=$1 port=$2 file=$3 fd rc
    if ! exec {fd}<>"/dev/tcp/127.0.0.1/$port"; then
        t_fail "$name: connect" "port $port refused"
        return
    fi
    send "$fd" <"$file"
    timeout 3 cat <&"$fd" >"$W/reply" 2>/dev/null
    rc=$?
    exec {fd}>&-
    t_check_fails "$name: connection closed by the server" test "$rc" -eq 124
    t_nomatch "$name: no HTTP answer" '^HTTP/' "$(tr -d '\0' <"$W/reply" | head -c 200)"
}
for port in "$SAE_PORT" "$KME_PORT"; do
    head -c 65536 /dev/urandom >"$W/garbage"
    garbage_closes "64 KiB of random bytes on port $port" "$port" "$W/garbage"
    printf 'GET /api/v1/keys/SAE_B/status HTTP/1.1\r\nHost: localhost\r\n\r\n' >"$W/garbage"
    garbage_closes "plaintext HTTP on port $port" "$port" "$W/garbage"
    # A complete TLS record announcing a ClientHello, filled with random bytes.
    { printf '\x16\x03\x01\x40\x00\x01\x00\x3f\xfc\x03\x03'; head -c 16378 /dev/urandom; } >"$W/garbage"
    garbage_closes "bogus ClientHello on port $port" "$port" "$W/garbage"
done
alive "after garbage on both ports"
t_check "after garbage: KME_B answers status" status_ok B

# ---- idle and slow clients ------------------------------------------------------------------------

echo "== 200 idle and slow clients ($SECONDS s)"
N_TCP=150 N_TLS=50
BASE_CONN=$(established "$SAE_PORT")
OPEN_START=$SECONDS
# 50 TLS clients with SAE_A's certificate that send half a request line and
# wait (started first: they are the slow ones to open). SIGPIPE is ignored
# meanwhile so that a client dying early cannot end the suite.
trap '' PIPE
for i in $(seq "$N_TLS"); do
    exec {fd}> >(exec openssl s_client -connect "127.0.0.1:$SAE_PORT" -cert "$C/SAE_A.pem" -key "$C/SAE_A.key" \
        -CAfile "$C/ca.pem" -no_ign_eof >"$W/slow.$i.out" 2>&1)
    IDLE_PIDS+=($!)
    IDLE_FDS+=("$fd")
    printf 'GET /api/v1/keys/SAE_B/sta' 2>/dev/null 1>&"$fd"
done
# 150 TCP connections: half hold an unfinished TLS record, half send nothing.
TCP_FDS=()
for i in $(seq "$N_TCP"); do
    if exec {fd}<>"/dev/tcp/127.0.0.1/$SAE_PORT"; then
        IDLE_FDS+=("$fd")
        TCP_FDS+=("$fd")
        [ $((i % 2)) -eq 0 ] && printf '\x16\x03\x01\x02' 2>/dev/null 1>&"$fd"
    fi
done
trap - PIPE
t_eq "started $N_TLS slow TLS clients" "$N_TLS" "${#IDLE_PIDS[@]}"
t_eq "opened $N_TCP idle TCP connections" "$N_TCP" "${#TCP_FDS[@]}"
all_held() { [ "$(established "$SAE_PORT")" -ge $((N_TCP + N_TLS)) ]; }
wait_for 3 all_held
HELD=$(established "$SAE_PORT")
t_check "the server holds all 200 connections at once ($HELD, opened in $((SECONDS - OPEN_START)) s)" \
    test "$HELD" -ge $((N_TCP + N_TLS))
t0=$(date +%s%N)
status_ok A
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
t_eq "while they are held, a normal client gets status (${ms} ms)" 0 "$rc"
call SAE_A "$ENC"
t_eq "while they are held, a normal client gets a key" 200 "$CODE"
handshaken() { [ "$(grep -l 'Verify return code: 0' "$W"/slow.*.out 2>/dev/null | wc -l)" -eq "$N_TLS" ]; }
wait_for 3 handshaken
t_eq "the slow TLS clients completed their handshakes" "$N_TLS" "$(grep -l 'Verify return code: 0' "$W"/slow.*.out 2>/dev/null | wc -l)"

dropped() { [ "$(established "$SAE_PORT")" -le "$BASE_CONN" ]; }
if wait_for $((CONN_TIMEOUT + 10)) dropped; then
    t_pass "idle and slow connections dropped after the connection timeout ($((SECONDS - OPEN_START)) s after opening)"
else
    t_fail "idle and slow connections dropped after the connection timeout" \
        "server still holds $(established "$SAE_PORT") connections (baseline $BASE_CONN) $((CONN_TIMEOUT + 10)) s later"
fi
closed=0
for p in "${IDLE_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || closed=$((closed + 1)); done
t_eq "the slow TLS clients saw their connections closed" "$N_TLS" "$closed"
eof=0
for fd in "${TCP_FDS[@]}"; do
    read -r -t 0.05 -u "$fd" _ 2>/dev/null
    [ $? -le 128 ] && eof=$((eof + 1))
done
t_eq "the idle TCP clients saw their connections closed" "$N_TCP" "$eof"
t_nomatch "no slow client got an HTTP answer" 'HTTP/1\.[01] 200' "$(cat "$W"/slow.*.out 2>/dev/null)"
close_idle
alive "after the idle clients"

# ---- a burst of parallel mixed requests ------------------------------------------------------------

echo "== 50 parallel mixed requests ($SECONDS s)"
# kind I [curl args]: prints the expected status, then makes request kind I.
kind() {
    local i=$1
    shift
    case $((i % 10)) in
    0) echo 200; sae_curl SAE_A /api/v1/keys/SAE_B/status "$@" ;;
    1) echo 200; sae_curl SAE_A "$ENC?number=2" "$@" ;;
    2) echo 400; sae_curl SAE_A "$ENC?number=0" "$@" ;;
    3) echo 400; sae_curl SAE_A "$ENC" "$@" "${PJ[@]}" '{"number": ' ;;
    4) echo 400; sae_curl SAE_B "/api/v1/keys/SAE_A/dec_keys?key_ID=$(cat /proc/sys/kernel/random/uuid)" "$@" ;;
    5) echo 401; curl -s --cacert "$C/ca.pem" "$@" "https://localhost:$SAE_PORT$ENC" ;;
    6) echo 405; sae_curl SAE_A "$ENC" -X DELETE "$@" ;;
    7) echo 404; sae_curl SAE_A /nowhere "$@" ;;
    8) echo 400; sae_curl SAE_A "$ENC" "$@" "${PJ[@]}" @"$W/deep-array.json" ;;
    9) echo 200; sae_curl SAE_A "$ENC" "$@" "${PJ[@]}" '{"number": 3, "size": 512}' ;;
    esac
}
BURST=()
for i in $(seq 0 49); do
    kind "$i" --max-time 30 -o "$W/burst.$i.body" -w '\n%{http_code}\n' >"$W/burst.$i" 2>/dev/null &
    BURST+=($!)
done
wait "${BURST[@]}"
wrong=""
unanswered=0
for i in $(seq 0 49); do
    want=$(sed -n 1p "$W/burst.$i")
    got=$(tail -n 1 "$W/burst.$i")
    [ "$got" = 000 ] && unanswered=$((unanswered + 1))
    [ "$want" = "$got" ] || wrong="$wrong #$i:$want/$got"
done
t_eq "every parallel request was answered" 0 "$unanswered"
t_eq "every parallel request got its expected status" "" "$wrong"
bad_bodies=""
for i in $(seq 0 49); do
    if [ "$(sed -n 1p "$W/burst.$i")" = 200 ]; then
        jq -e '(.keys | length > 0) or (.stored_key_count | type == "number")' "$W/burst.$i.body" >/dev/null 2>&1 || bad_bodies="$bad_bodies #$i"
    else
        is_etsi_error "$(cat "$W/burst.$i.body" 2>/dev/null)" || bad_bodies="$bad_bodies #$i"
    fi
done
t_eq "every parallel answer has the right body" "" "$bad_bodies"
alive "after the burst"

# ---- health -------------------------------------------------------------------------------

echo "== health ($SECONDS s)"
for s in A B; do
    t_check "KME_$s still running" kill -0 "$(kme_pid "$s")"
done
net_stop
t_logs_clean "$dir/A/kme.log" "$dir/B/kme.log"
rm -f "$W"/*.json "$W"/garbage # large inputs; the logs stay in $dir

t_summary
