#!/usr/bin/env bash
# What a client without the right certificate can cost a KME (invariant I7).
# Two sites A and B on one link, connection_timeout_s 8. While crowds of
# unwanted clients press on A's SAE port and KME port, SAE_A keeps getting
# keys reserved at B and SAE_B fetches them:
#  (1) 500 clients per port without a certificate, each announcing a body
#      within the port's bound (100 kB, 1 MB) and sending none: each is
#      answered 401 before any body byte is read, and its connection closed;
#  (2) slow clients: 100 with SAE_A's valid certificate sending one byte of
#      a 100 kB body every 2 s, and 100 plain TCP clients sending one byte of
#      a 512-byte TLS handshake record every 2 s: every one is cut while its
#      bytes still trickle in (none would finish within the wait);
#  (3) 400 connections from one address (127.0.0.3) to the SAE port: no more
#      than connection_limit_per_address (256) are held, and SAE_A (from
#      127.0.0.1) is served meanwhile;
# and A's resident memory grows by less than 64 MB over all of it, its
# connections fall back to the baseline afterwards, and the sanitizers stay
# silent.
# shellcheck disable=SC2034 # T_SUITE and the NET_* settings are read by the sourced files
T_SUITE=unauthenticated
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"
# Under AddressSanitizer freed memory waits in a quarantine (256 MB by
# default) before it is reused: kept small here so that resident memory
# measures the KME, not the sanitizer. Leaks are still reported.
export ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=4:thread_local_quarantine_size_kb=256:allocator_release_to_os_interval_ms=500"
NET_SAE_BASE=7900
NET_KME_BASE=7950
# shellcheck source=SCRIPTDIR/../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
NET_BIN=$T_BIN

dir=$(mktemp -d "$T_OUT/unauthenticated.XXXX")
FLOODS=()
cleanup() {
    local p
    for p in "${FLOODS[@]}"; do kill "$p" 2>/dev/null; done
    net_stop
}
trap cleanup EXIT
t_require_programs kme qkd-sim tls_flood

TIMEOUT=8
net_up_or_end "$dir" "A B" "A-B" ".connection_timeout_s = $TIMEOUT | .connection_limit_per_address = 256"
C=$NET_DIR/certs
SAE_PORT=$(net_sae_port A)
KME_PORT=$(net_kme_port A)
PID_A=$(kme_pid A)

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$PID_A/status" 2>/dev/null || echo 0; }
established() { # PORT -> connections the server holds on it
    ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l
}
# served: SAE_A gets a key reserved at B, and SAE_B fetches the same bytes.
served() {
    local body id key got
    body=$(sae_curl SAE_A /api/v1/keys/SAE_B/enc_keys --max-time 20) || return 1
    id=$(printf '%s' "$body" | jq -r '.keys[0].key_ID // empty')
    key=$(printf '%s' "$body" | jq -r '.keys[0].key // empty')
    [ -n "$id" ] && [ -n "$key" ] || return 1
    got=$(sae_curl SAE_B "/api/v1/keys/SAE_A/dec_keys?key_ID=$id" --max-time 20 | jq -r '.keys[0].key // empty')
    [ "$got" = "$key" ]
}
# field FILE NAME: a number from a tls_flood status line.
field() { sed -nE "s/.*\\b$2 ([0-9]+).*/\\1/p" "$1" 2>/dev/null; }
flood() { # NAME ARGS...: starts tls_flood in the background, status in $dir/NAME.status
    local name=$1
    shift
    "$T_BIN/tls_flood" --status "$dir/$name.status" "$@" >"$dir/$name.out" 2>&1 &
    FLOODS+=($!)
}

wait_for 60 served
t_check "before the crowds: SAE_A gets a key and SAE_B fetches the same bytes" served
BASE_SAE=$(established "$SAE_PORT")
BASE_KME=$(established "$KME_PORT")
RSS0=$(rss_kb)
RSS_MAX=$RSS0
note_rss() {
    local r
    r=$(rss_kb)
    [ "${r:-0}" -gt "$RSS_MAX" ] && RSS_MAX=$r
    return 0
}

echo "== (1) 500 clients per port without a certificate, each announcing a body it never sends"
flood nocert_sae --connect "127.0.0.1:$SAE_PORT" --bind 127.0.0.2 --count 500 --mode nocert --length 100000 \
    --hold-s 300
flood nocert_kme --connect "127.0.0.1:$KME_PORT" --bind 127.0.0.2 --count 500 --mode nocert --length 1000000 \
    --hold-s 300 --path /kme/v1/relay
all_answered() { # NAME: every connection answered 401 and closed
    local f=$dir/$1.status
    [ "$(field "$f" opened)" = 500 ] && [ "$(field "$f" status401)" = 500 ] && [ "$(field "$f" open)" = 0 ]
}
for name in nocert_sae nocert_kme; do
    if wait_for 300 all_answered "$name"; then
        t_pass "$name: all 500 answered 401 before their bodies and closed"
    else
        t_fail "$name: all 500 answered 401 before their bodies and closed" "last status: $(cat "$dir/$name.status" 2>/dev/null)"
    fi
    note_rss
done
t_check "after (1): SAE_A is served and SAE_B fetches the same bytes" served

echo "== (2) slow clients: one byte every 2 s, with a valid certificate and in the handshake"
flood slowbody --connect "127.0.0.1:$SAE_PORT" --bind 127.0.0.2 --count 100 --mode slowbody \
    --cert "$C/SAE_A.pem" --key "$C/SAE_A.key" --length 100000 --interval-ms 2000 --hold-s 300
flood slowhello_kme --connect "127.0.0.1:$KME_PORT" --bind 127.0.0.2 --count 50 --mode slowhello \
    --interval-ms 2000 --hold-s 300
flood slowhello_sae --connect "127.0.0.1:$SAE_PORT" --bind 127.0.0.2 --count 50 --mode slowhello \
    --interval-ms 2000 --hold-s 300
held_open() { [ "$(field "$dir/$1.status" opened)" -ge 1 ] 2>/dev/null; }
wait_for 60 held_open slowbody
t_check "while the slow clients trickle: SAE_A is served and SAE_B fetches the same bytes" served
note_rss
all_cut() { # NAME: every connection closed by the server
    local f=$dir/$1.status n
    n=$(field "$f" opened)
    [ -n "$n" ] && [ "$n" -gt 0 ] && [ "$(field "$f" open)" = 0 ]
}
for name in slowbody slowhello_kme slowhello_sae; do
    if wait_for 300 all_cut "$name"; then
        t_pass "$name: every connection cut while its bytes kept coming"
    else
        t_fail "$name: every connection cut at the deadline" "last status: $(cat "$dir/$name.status" 2>/dev/null)"
    fi
done
t_eq "no slow client got an answer" "0 0 0" \
    "$(field "$dir/slowbody.status" answered) $(field "$dir/slowhello_kme.status" answered) $(field "$dir/slowhello_sae.status" answered)"

echo "== (3) 400 connections from one address"
flood crowd --connect "127.0.0.1:$SAE_PORT" --bind 127.0.0.3 --count 400 --mode slowhello --interval-ms 3600000 \
    --hold-s 300
crowd_in() { [ "$(( $(field "$dir/crowd.status" opened) + $(field "$dir/crowd.status" refused) ))" -eq 400 ] 2>/dev/null; }
wait_for 120 crowd_in
from_crowd() { ss -Htn state established "( sport = :$SAE_PORT )" 2>/dev/null | grep -c '127\.0\.0\.3:'; }
capped() { [ "$(from_crowd)" -le 256 ]; }
if wait_for 60 capped; then
    t_pass "the server holds at most 256 of the 400 connections from 127.0.0.3 ($(from_crowd))"
else
    t_fail "the server holds at most 256 of the 400 connections from 127.0.0.3" "it holds $(from_crowd)"
fi
t_check "while the crowd holds its share: SAE_A is served and SAE_B fetches the same bytes" served
note_rss
wait_for 300 all_cut crowd
t_check "the crowd's connections are cut at the deadline" all_cut crowd

echo "== afterwards"
back() { [ "$(established "$SAE_PORT")" -le "$BASE_SAE" ] && [ "$(established "$KME_PORT")" -le $((BASE_KME + 2)) ]; }
if wait_for 120 back; then
    t_pass "connections back to the baseline (SAE port $(established "$SAE_PORT"), KME port $(established "$KME_PORT"))"
else
    t_fail "connections back to the baseline" "SAE port $(established "$SAE_PORT") (was $BASE_SAE), KME port $(established "$KME_PORT") (was $BASE_KME)"
fi
note_rss
GROWTH=$(((RSS_MAX - RSS0) / 1024))
t_check "A's resident memory grew by less than 64 MB (${GROWTH} MB: ${RSS0} kB -> max ${RSS_MAX} kB)" \
    test "$GROWTH" -lt 64
t_check "KME_A is still running" kill -0 "$PID_A"
t_check "after everything: SAE_A is served and SAE_B fetches the same bytes" served
net_stop
t_logs_clean "$NET_DIR/A/kme.log" "$NET_DIR/B/kme.log"
t_summary
