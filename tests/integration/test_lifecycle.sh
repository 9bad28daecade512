#!/usr/bin/env bash
# Operations over a KME's life on the reference star (hub A; leaves B, C),
# every site with an audit log (NET_AUDIT=1):
#  (a) Audit log: keys B->C (relayed, then from stock), B->A (neighbour),
#      A->A (local) and B->C+A (multicast): every key_ID a master received is
#      in its site's audit log once as "enc" with its master, slaves, size,
#      source and route (the KME path, "local", or the destination KME for
#      stock relayed ahead), and once as "dec" in the audit log of each
#      slave's site once fetched; no key (base64 or hex) is in any audit log.
#  (b) Rotation: audit.log moved aside, SIGHUP; the next keys are in a new
#      audit.log at the configured path, the earlier ones stay in the moved
#      file, none is lost.
#  (c) SIGHUP reload: SAE_C2 (its certificate made beforehand) is refused
#      401 at C and unknown at B; C's config lists it, SIGHUP: the same
#      process serves it keys, and B learns it from C's advert (SAE_B gets
#      keys for it; SAE_C2 fetches them). New limits apply at once. A config
#      that is not valid JSON, or that changes kme_listen, is refused (logged,
#      the setting named) and C serves on unchanged. An audit log that cannot
#      be written is logged and fails no request. Removing SAE_C2 and SIGHUP:
#      refused 401 again.
#  (d) SIGTERM under load: concurrent masters (new connections and kept-alive
#      ones) ask B for keys of SAE_C; B gets SIGTERM mid-load and exits 0
#      within a few seconds; restarted, every key a master received (200) is
#      fetched by SAE_C once with the same bytes; the other requests got an
#      error or no answer; every such key is in B's audit log.
#  (d2) SIGTERM while requests wait on a frozen neighbour (SIGSTOP): B exits
#      0 within 15 s, each waiting master gets a 503 or no answer, and B,
#      restarted, serves keys again.
#  (e) The encryptor survives SIGHUP (a new log_level applies; other changes
#      wait for a restart; a broken file is refused) and exits 0 on SIGTERM
#      while fetching pads.
#  (f) Every audit line is one whole JSON object (no interleaving under
#      load); no key material in the audit logs; no sanitizer report.
# shellcheck disable=SC2034 # T_SUITE and the NET_* settings are read by the sourced files
T_SUITE=lifecycle
[ -n "${1:-}" ] && T_BUILD=$(cd "$1" && pwd)
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=SCRIPTDIR/../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# Every key is handed out once, strictly: a second fetch is refused at once
# (the default fetch retry window is tested in test_expiry.sh).
NET_FETCH_RETRY=0
# shellcheck source=SCRIPTDIR/lib/keys.sh
. "$T_ROOT/tests/integration/lib/keys.sh"
export LC_ALL=C
NET_BIN=$T_BIN
NET_SAE_BASE=5500
NET_KME_BASE=5520
NET_STOCK=64      # a little stock relayed ahead; the rest on demand
NET_AUDIT=1
P_ENC_LISTEN=5560
P_ENC_CONNECT=5561
W=$(mktemp -d "$T_OUT/lifecycle.XXXX")
ENC_PID=""
cleanup() {
    [ -n "$ENC_PID" ] && kill "$ENC_PID" 2>/dev/null
    touch "$W/load/stop" 2>/dev/null
    net_stop
}
trap cleanup EXIT
t_require_programs kme qkd-sim encryptor

DELIVERED=$W/delivered.txt   # every "key_ID base64" a master received
: >"$DELIVERED"

# audit_view EVENT IDFILE AUDITFILE...: the EVENT lines naming a key_ID of
# IDFILE as "key_ID master slaves sae bits source route", sorted.
audit_view() {
    local event=$1 ids=$2
    shift 2
    cat "$@" 2>/dev/null | jq -r --arg e "$event" 'select(.event == $e) |
        "\(.key_ID) \(.master) \(.slaves | join(",")) \(.sae) \(.bits) \(.source // "-") \(.route // "-" | tojson)"' |
        grep -F -f <(cut -d' ' -f1 "$ids") | sort
}
ids_of() { cut -d' ' -f1 "$1" | sort; }
# check_audit NAME EVENT IDFILE REGEX AUDITFILE...: one EVENT line per key of
# IDFILE, each matching REGEX.
check_audit() {
    local name=$1 event=$2 ids=$3 re=$4 lines
    shift 4
    lines=$(audit_view "$event" "$ids" "$@")
    t_eq "$name: one $event line per key" "$(ids_of "$ids")" "$(printf '%s' "$lines" | cut -d' ' -f1)"
    t_eq "$name: each with its master, slaves, receiver, size and route" "" "$(printf '%s' "$lines" | grep -Ev -- "$re")"
}
AUDIT_ID='[0-9a-f-]{36}'
ROUTE_BAC='\["KME_B","KME_A","KME_C"\]'

# ---------------------------------------------------------------------------------
echo "== (a) the audit log of deliveries"
if ! { net_init "$W/net" "A B C" "A-B A-C" && net_start; }; then
    t_fail "network" "the star did not start; see $W/net"
    t_summary
    exit 1
fi
# A certificate for an SAE that no config lists yet (for (c)).
"$T_ROOT/certs/mkcerts.sh" --out "$NET_DIR/certs" --sae SAE_C2 >/dev/null
PID_C=$(kme_pid C)

# B -> C: relayed on demand first, then from the stock relayed ahead.
: >"$W/bc.keys"
enc_keys SAE_B SAE_C 3 256 "$W/bc.keys"
t_eq "SAE_B gets 3 keys for SAE_C" "200 3" "$CODE $(grep -c . "$W/bc.keys")"
audit_has_stock() { grep -q '"source":"stock"' "$NET_DIR/B/audit.log"; }
bc_from_stock() { enc_keys SAE_B SAE_C 2 256 "$W/bc.keys" && audit_has_stock; }
t_check "later keys B->C come from stock" wait_for 20 bc_from_stock
check_audit "B->C at B" enc "$W/bc.keys" \
    "^$AUDIT_ID SAE_B SAE_C SAE_B 256 (relay $ROUTE_BAC|stock \"KME_C\")\$" "$NET_DIR/B/audit.log"
head -3 "$W/bc.keys" >"$W/bc.first"
t_eq "B->C at B: the first keys were relayed along B-A-C" 3 \
    "$(audit_view enc "$W/bc.first" "$NET_DIR/B/audit.log" | grep -c " relay $ROUTE_BAC")"
# B -> A: the neighbour, on the link.
: >"$W/ba.keys"
enc_keys SAE_B SAE_A 2 128 "$W/ba.keys"
t_eq "SAE_B gets 2 keys for SAE_A" "200 2" "$CODE $(grep -c . "$W/ba.keys")"
check_audit "B->A at B" enc "$W/ba.keys" \
    "^$AUDIT_ID SAE_B SAE_A SAE_B 128 (link|stock) \\[\"KME_B\",\"KME_A\"\\]\$" "$NET_DIR/B/audit.log"
# A -> A: both at the hub.
: >"$W/aa.keys"
enc_keys SAE_A SAE_A 2 512 "$W/aa.keys"
t_eq "SAE_A gets 2 keys for itself" "200 2" "$CODE $(grep -c . "$W/aa.keys")"
check_audit "A->A at A" enc "$W/aa.keys" "^$AUDIT_ID SAE_A SAE_A SAE_A 512 local \"local\"\$" "$NET_DIR/A/audit.log"
# B -> C and A: one key, two sites.
: >"$W/multi.keys"
enc_multi SAE_B SAE_C SAE_A 2 256 "$W/multi.keys"
t_eq "SAE_B gets 2 keys for SAE_C and SAE_A" "200 2" "$CODE $(grep -c . "$W/multi.keys")"
check_audit "B->C+A at B" enc "$W/multi.keys" \
    "^$AUDIT_ID SAE_B SAE_C,SAE_A SAE_B 256 relay \\{\"SAE_C\":$ROUTE_BAC,\"SAE_A\":\\[\"KME_B\",\"KME_A\"\\]\\}\$" \
    "$NET_DIR/B/audit.log"
cat "$W/bc.keys" "$W/ba.keys" "$W/aa.keys" "$W/multi.keys" >>"$DELIVERED"

# The slaves fetch them.
: >"$W/got"
dec_keys SAE_C SAE_B "$W/bc.keys" "$W/got"
dec_keys SAE_A SAE_B "$W/ba.keys" "$W/got"
dec_keys SAE_A SAE_A "$W/aa.keys" "$W/got"
dec_keys SAE_C SAE_B "$W/multi.keys" "$W/got"
dec_keys SAE_A SAE_B "$W/multi.keys" "$W/got"
t_eq "the slaves got every key with the master's bytes" \
    "$(cat "$W/bc.keys" "$W/ba.keys" "$W/aa.keys" "$W/multi.keys" "$W/multi.keys" | sort)" "$(sort "$W/got")"
check_audit "B->C at C" dec "$W/bc.keys" "^$AUDIT_ID SAE_B SAE_C SAE_C 256 - \"-\"\$" "$NET_DIR/C/audit.log"
check_audit "B->A at A" dec "$W/ba.keys" "^$AUDIT_ID SAE_B SAE_A SAE_A 128 - \"-\"\$" "$NET_DIR/A/audit.log"
check_audit "A->A at A" dec "$W/aa.keys" "^$AUDIT_ID SAE_A SAE_A SAE_A 512 - \"-\"\$" "$NET_DIR/A/audit.log"
check_audit "B->C+A at C" dec "$W/multi.keys" "^$AUDIT_ID SAE_B SAE_C SAE_C 256 - \"-\"\$" "$NET_DIR/C/audit.log"
check_audit "B->C+A at A" dec "$W/multi.keys" "^$AUDIT_ID SAE_B SAE_A SAE_A 256 - \"-\"\$" "$NET_DIR/A/audit.log"
t_eq "the relaying hub logged no enc line for keys of others" "" \
    "$(audit_view enc "$W/bc.keys" "$NET_DIR/A/audit.log")"
t_match "lines carry the time (UTC, ms) and the KME" '^\{"time":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}Z","kme":"KME_C",' \
    "$(head -1 "$NET_DIR/C/audit.log")"

# ---------------------------------------------------------------------------------
echo "== (b) rotation: move the file, SIGHUP, new lines in a new file"
# reload_answers SITE: how many reloads the site logged (taken or refused).
reload_answers() { grep -Ec "configuration reloaded|reload refused" "$NET_DIR/$1/kme.log"; }
reload_answers_above() { [ "$(reload_answers "$1")" -gt "$2" ]; }
# hup SITE: SIGHUP, then waits for the reload (or refusal) to be logged.
hup() {
    local before
    before=$(reload_answers "$1")
    kill -HUP "$(kme_pid "$1")"
    wait_for 10 reload_answers_above "$1" "$before"
}
for s in B C; do mv "$NET_DIR/$s/audit.log" "$NET_DIR/$s/audit.log.1"; done
: >"$W/rot1.keys"
enc_keys SAE_B SAE_C 2 256 "$W/rot1.keys" # before the SIGHUP: into the moved file
t_check "SIGHUP at B is taken" hup B
t_check "SIGHUP at C is taken" hup C
t_check "B reopened its audit log at the configured path" test -f "$NET_DIR/B/audit.log"
: >"$W/rot2.keys"
enc_keys SAE_B SAE_C 3 256 "$W/rot2.keys"
enc_keys SAE_B SAE_C 3 256 "$W/rot2.keys"
t_eq "SAE_B gets 6 more keys" 6 "$(grep -c . "$W/rot2.keys")"
cat "$W/rot1.keys" "$W/rot2.keys" >>"$DELIVERED"
: >"$W/got"
dec_keys SAE_C SAE_B "$W/rot1.keys" "$W/got"
dec_keys SAE_C SAE_B "$W/rot2.keys" "$W/got"
t_eq "SAE_C fetches them" "$(cat "$W/rot1.keys" "$W/rot2.keys" | sort)" "$(sort "$W/got")"
check_audit "after the SIGHUP, at B: in the new file" enc "$W/rot2.keys" "SAE_B SAE_C SAE_B 256" "$NET_DIR/B/audit.log"
check_audit "after the SIGHUP, at C: in the new file" dec "$W/rot2.keys" "SAE_B SAE_C SAE_C 256" "$NET_DIR/C/audit.log"
check_audit "before the SIGHUP, at B: in the moved file" enc "$W/rot1.keys" "SAE_B SAE_C SAE_B 256" \
    "$NET_DIR/B/audit.log.1"
cat "$W/bc.keys" "$W/rot1.keys" "$W/rot2.keys" >"$W/bc.all"
check_audit "none lost at B across both files" enc "$W/bc.all" "SAE_B SAE_C SAE_B 256" \
    "$NET_DIR/B/audit.log.1" "$NET_DIR/B/audit.log"
check_audit "none lost at C across both files" dec "$W/bc.all" "SAE_B SAE_C SAE_C 256" \
    "$NET_DIR/C/audit.log.1" "$NET_DIR/C/audit.log"

# ---------------------------------------------------------------------------------
echo "== (c) SIGHUP: a new SAE, new limits, refused configs"
status_code() { sae_curl "$1" "/api/v1/keys/$2/status" --max-time 5 -o /dev/null -w '%{http_code}'; }
NET_EXTRA_SAES="SAE_C2@C" # its home, for sae_curl; C's config does not list it yet
t_eq "SAE_C2 (certificate from the same CA, not configured) is refused 401 at C" 401 "$(status_code SAE_C2 SAE_C)"
etsi_call SAE_B /api/v1/keys/SAE_C2/enc_keys
t_eq "SAE_B asking keys for SAE_C2: unknown slave (400)" 400 "$CODE"
net_write_config C # now with SAE_C2
t_check "SIGHUP at C with SAE_C2 added is taken" hup C
t_match "C logged the SAE added" "configuration reloaded: SAEs added: SAE_C2" "$(grep "reloaded" "$NET_DIR/C/kme.log" | tail -1)"
t_eq "SAE_C2 is served at C" 200 "$(status_code SAE_C2 SAE_C)"
: >"$W/c2.keys"
enc_keys SAE_C2 SAE_C 2 256 "$W/c2.keys"
t_eq "SAE_C2 gets keys for SAE_C at C" "200 2" "$CODE $(grep -c . "$W/c2.keys")"
t_eq "by the same process, never restarted" "$PID_C 1" "$(kme_pid C) $(grep -c " ready: " "$NET_DIR/C/kme.log")"
: >"$W/bc2.keys"
t_check "B learns SAE_C2 from C's advert: SAE_B gets keys for it" wait_for 20 enc_keys SAE_B SAE_C2 2 256 "$W/bc2.keys"
: >"$W/got"
dec_keys SAE_C2 SAE_B "$W/bc2.keys" "$W/got"
t_eq "SAE_C2 fetches them at C with the master's bytes" "$(sort "$W/bc2.keys")" "$(sort "$W/got")"
check_audit "B->C2 at B" enc "$W/bc2.keys" "SAE_B SAE_C2 SAE_B 256 (relay|stock)" "$NET_DIR/B/audit.log"
check_audit "B->C2 at C" dec "$W/bc2.keys" "SAE_B SAE_C2 SAE_C2 256" "$NET_DIR/C/audit.log"
cat "$W/c2.keys" "$W/bc2.keys" >>"$DELIVERED"

# Limits apply at the next request.
jq '.limits = {"max_key_per_request": 4}' "$NET_DIR/C/kme.json" >"$W/c.json" && cp "$W/c.json" "$NET_DIR/C/kme.json"
t_check "SIGHUP at C with new limits is taken" hup C
etsi_call SAE_C "/api/v1/keys/SAE_C2/enc_keys?number=5"
t_eq "5 keys in one request are now refused (400)" 400 "$CODE"
etsi_call SAE_C "/api/v1/keys/SAE_C2/status"
t_eq "status shows max_key_per_request 4" 4 "$(printf '%s' "$BODY" | jq -r '.max_key_per_request')"

# Refused: not valid, or a setting that cannot change live.
cp "$NET_DIR/C/kme.json" "$W/c.good.json"
printf '{"kme_id": "KME_C",' >"$NET_DIR/C/kme.json"
t_check "SIGHUP at C with a broken file is answered" hup C
t_match "the refusal is logged" "reload refused: .*kme.json.*serving on" "$(grep "reload refused" "$NET_DIR/C/kme.log" | tail -1)"
t_eq "C serves on with the configuration in force (SAE_C2 still served)" 200 "$(status_code SAE_C2 SAE_C)"
jq '.kme_listen = "127.0.0.1:5559" | .saes = ["SAE_C"]' "$W/c.good.json" >"$NET_DIR/C/kme.json"
t_check "SIGHUP at C changing kme_listen is answered" hup C
t_match "the refusal names the setting" "reload refused: setting 'kme_listen' cannot change" \
    "$(grep "reload refused" "$NET_DIR/C/kme.log" | tail -1)"
t_eq "nothing of that file was applied (SAE_C2 still served)" 200 "$(status_code SAE_C2 SAE_C)"
t_check "C is still running" kill -0 "$PID_C"
# An audit log that cannot be written: logged, the keys are still handed out.
jq '.audit_log = "/dev/full"' "$W/c.good.json" >"$NET_DIR/C/kme.json"
t_check "SIGHUP at C with an audit log on a full device is taken" hup C
: >"$W/full.keys"
enc_keys SAE_B SAE_C 1 256 "$W/full.keys"
: >"$W/got"
dec_keys SAE_C SAE_B "$W/full.keys" "$W/got"
t_eq "SAE_C still gets its key when the audit line cannot be written" "200 $(cat "$W/full.keys")" "$CODE $(cat "$W/got")"
t_check "the failed audit write is logged" grep -q "audit log /dev/full: write failed" "$NET_DIR/C/kme.log"
cat "$W/full.keys" >>"$DELIVERED"
NET_EXTRA_SAES="" net_write_config C # SAE_C2 removed, limits back to the defaults
t_check "SIGHUP at C with SAE_C2 removed is taken" hup C
t_eq "SAE_C2 is refused 401 again" 401 "$(status_code SAE_C2 SAE_C)"
t_eq "SAE_C still is served" 200 "$(status_code SAE_C SAE_B)"
NET_EXTRA_SAES=""

# ---------------------------------------------------------------------------------
echo "== (d) SIGTERM under load"
L=$W/load
mkdir -p "$L"
# one_shot N: a new connection per request until $L/stop.
one_shot() {
    local n=$1 out code body
    while [ ! -e "$L/stop" ]; do
        out=$(sae_curl SAE_B "/api/v1/keys/SAE_C/enc_keys?number=4&size=256" --max-time 20 -w '\n%{http_code}')
        code=${out##*$'\n'}
        body=${out%$'\n'*}
        if [ "$code" = 200 ]; then
            printf '%s\n' "$body" | jq -er '.keys[] | "\(.key_ID) \(.key)"' >>"$L/keys.$n" || code=200-unreadable
        fi
        echo "$code" >>"$L/codes.$n"
        [ "$code" = 200 ] || sleep 0.2
    done
}
# kept_alive N: one curl process, 1000 requests over one kept-alive connection.
kept_alive() {
    local n=$1 j
    mkdir -p "$L/ka.$n"
    for j in $(seq 1 1000); do
        printf 'url = "%s/api/v1/keys/SAE_C/enc_keys?number=1&size=256"\noutput = "%s/ka.%s/%s"\n' \
            "$(net_url B)" "$L" "$n" "$j"
    done >"$L/ka.$n.cfg"
    curl -s --max-time 60 --cert "$NET_DIR/certs/SAE_B.pem" --key "$NET_DIR/certs/SAE_B.key" \
        --cacert "$NET_DIR/certs/ca.pem" -w '%{http_code} %{filename_effective}\n' -K "$L/ka.$n.cfg" >"$L/ka.$n.codes"
    return 0
}
KEPT_ALIVE="1 2 3 4 5 6"
LOAD_PIDS=()
for n in 1 2; do one_shot "$n" & LOAD_PIDS+=($!); done
for n in $KEPT_ALIVE; do kept_alive "$n" & LOAD_PIDS+=($!); done
answered() { [ $(($(cat "$L"/keys.* 2>/dev/null | wc -l) + $(find "$L" -path "$L/ka.*/*" | wc -l))) -ge "$1" ]; }
t_check "the load is under way (60 keys answered)" wait_for 30 answered 60
t0=$(date +%s%N)
kme_term B 300
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
t_eq "KME_B exits 0 on SIGTERM under load" 0 "$rc"
t_check "it stopped by itself, not killed ($ms ms)" test "$rc" -ne 137
t_check "it logged that it stopped" grep -q "KME_B: stopped" "$NET_DIR/B/kme.log"
touch "$L/stop"
wait "${LOAD_PIDS[@]}"
# The answers: one-shot clients' keys, and each kept-alive 200 body.
cat "$L"/keys.* >"$W/load.keys" 2>/dev/null
for n in $KEPT_ALIVE; do
    awk '$1 == 200 { print $2 }' "$L/ka.$n.codes" | while read -r f; do
        jq -er '.keys[] | "\(.key_ID) \(.key)"' "$f" >>"$W/load.keys" || echo "200-unreadable" >>"$L/codes.ka"
    done
    awk '$1 != 200 { print $1 }' "$L/ka.$n.codes" >>"$L/codes.ka"
done
n_ok=$(grep -c . "$W/load.keys")
echo "  (load: $n_ok keys answered; other answers: $(cat "$L"/codes.* | grep -v '^200$' | sort | uniq -c | paste -sd' ' -))"
t_eq "every other request got an error or no answer (000, 503), never an unreadable 200" "" \
    "$(cat "$L"/codes.* | grep -Ev '^(200|000|503)$' | sort -u | paste -sd' ' -)"
cat "$W/load.keys" >>"$DELIVERED"
kme_start B
t_check "KME_B restarts" kme_wait B 30
fetch_all SAE_C SAE_B "$W/load.keys" "$W/load.got" "$W/load.fail"
t_eq "every key answered before the stop is fetched by SAE_C with the same bytes" "$(sort "$W/load.keys")" \
    "$(sort "$W/load.got")"
t_eq "none was refused" "" "$(head -3 "$W/load.fail")"
t_eq "once: a second fetch is refused (400)" 400 "$(refetch_codes SAE_C SAE_B "$W/load.keys" | sort -u | paste -sd' ' -)"
check_audit "every key answered under load is in B's audit log" enc "$W/load.keys" "SAE_B SAE_C SAE_B 256" \
    "$NET_DIR/B/audit.log"

# ---------------------------------------------------------------------------------
echo "== (d2) SIGTERM while requests wait on a neighbour that does not answer"
# The hub is frozen (SIGSTOP): B's requests for more keys of SAE_C than its
# stock holds wait on KME_A. B, told to stop, lets them end (the neighbour's
# timeout) and exits 0 without hanging; each master gets an ETSI 503 or no
# answer, never keys.
kill -STOP "$(kme_pid A)"
WAITERS=()
for n in 1 2 3; do
    sae_curl SAE_B "/api/v1/keys/SAE_C/enc_keys?number=100&size=256" --max-time 40 \
        -o "$W/waiter.$n.body" -w '%{http_code}\n' >"$W/waiter.$n.code" &
    WAITERS+=($!)
done
sleep 1
t0=$(date +%s%N)
kme_term B 300
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
kill -CONT "$(kme_pid A)"
wait "${WAITERS[@]}"
t_eq "KME_B exits 0 on SIGTERM with requests waiting on KME_A" 0 "$rc"
t_check "it stopped by itself, not killed, although its requests wait ($ms ms)" test "$rc" -ne 137
t_eq "each waiting master got a 503 or no answer" "" "$(cat "$W"/waiter.*.code | grep -Ev '^(503|000)$')"
t_eq "no keys in any of those answers" "" "$(cat "$W"/waiter.*.body 2>/dev/null | jq -r '.keys[]?.key_ID' 2>/dev/null)"
kme_start B
t_check "KME_B restarts" kme_wait B 30
: >"$W/d2.keys"
t_check "and serves keys for SAE_C again, which SAE_C fetches" wait_for 30 enc_keys SAE_B SAE_C 2 256 "$W/d2.keys"
fetch_all SAE_C SAE_B "$W/d2.keys" "$W/d2.got" "$W/d2.fail"
t_eq "with the same bytes" "$(sort "$W/d2.keys")" "$(sort "$W/d2.got")"
cat "$W/d2.keys" >>"$DELIVERED"

# ---------------------------------------------------------------------------------
echo "== (e) the encryptor takes SIGHUP, and stops with 0 on SIGTERM"
mkdir -p "$W/enc"
cat >"$W/enc/encryptor.json" <<JSON
{
  "role": "users",
  "listen": "127.0.0.1:$P_ENC_LISTEN",
  "connect": "127.0.0.1:$P_ENC_CONNECT",
  "peer_sae": "SAE_C",
  "kme": {"url": "$(net_url B)", "cert": "$NET_DIR/certs/SAE_B.pem", "key": "$NET_DIR/certs/SAE_B.key",
          "ca": "$NET_DIR/certs/ca.pem"},
  "pad_key_bits": 65536, "pad_batch_keys": 4,
  "low_watermark_bytes": 32768, "high_watermark_bytes": 65536, "announce_keys": 2
}
JSON
"$T_BIN/encryptor" --config "$W/enc/encryptor.json" 2>"$W/enc/encryptor.log" &
ENC_PID=$!
t_check "the encryptor is ready" wait_for 20 grep -q " ready: " "$W/enc/encryptor.log"
# SIGHUP: a new log level applies at once; another change waits for a restart;
# a file that does not load changes nothing. The process serves on throughout.
sed -i 's/"announce_keys": 2/"announce_keys": 2, "log_level": "debug"/' "$W/enc/encryptor.json"
kill -HUP "$ENC_PID"
t_check "SIGHUP with a new log_level: applied" wait_for 5 grep -q "reload: .*encryptor.json applied" "$W/enc/encryptor.log"
sed -i 's/"pad_batch_keys": 4/"pad_batch_keys": 8/' "$W/enc/encryptor.json"
kill -HUP "$ENC_PID"
t_check "SIGHUP with another change: logged as waiting for a restart" \
    wait_for 5 grep -q "reload: only log_level changes without a restart" "$W/enc/encryptor.log"
cp "$W/enc/encryptor.json" "$W/enc/encryptor.good"
echo '{' >"$W/enc/encryptor.json"
kill -HUP "$ENC_PID"
t_check "SIGHUP with a file that does not load: refused" wait_for 5 grep -q "reload refused, running as before" \
    "$W/enc/encryptor.log"
t_check "the encryptor still runs after three SIGHUPs" kill -0 "$ENC_PID"
t_check "and still answers on its listener" bash -c "exec 3<>/dev/tcp/127.0.0.1/$P_ENC_LISTEN"
kill -TERM "$ENC_PID"
t0=$SECONDS
wait "$ENC_PID"
rc=$?
ENC_PID=""
t_eq "it exits 0 on SIGTERM" 0 "$rc"
t_check "... promptly ($((SECONDS - t0)) s; at most 100)" test $((SECONDS - t0)) -le 100

# ---------------------------------------------------------------------------------
echo "== (f) the audit files and the logs"
net_stop
AUDITS=("$NET_DIR"/*/audit.log*)
bad=0
for f in "${AUDITS[@]}"; do
    [ "$(jq -c . "$f" 2>/dev/null | wc -l)" -eq "$(wc -l <"$f")" ] || bad=$((bad + 1))
done
t_eq "every line of the ${#AUDITS[@]} audit files is one whole JSON object" 0 "$bad"
t_eq "no key_ID reached a master twice" 0 "$(cut -d' ' -f1 "$DELIVERED" | grep . | sort | uniq -d | wc -l)"
awk 'length($2) > 8 { print $2 }' "$DELIVERED" | sort -u >"$W/every.b64"
while read -r k; do printf '%s' "$k" | base64 -d | od -An -tx1 | tr -d ' \n'; echo; done <"$W/every.b64" >"$W/every.hex"
t_check "keys were collected for the check ($(grep -c . "$W/every.b64"))" test -s "$W/every.b64"
t_check "no key (base64) appears in any audit log" bash -c "! grep -Fq -f '$W/every.b64' ${AUDITS[*]}"
t_check "no key (hex) appears in any audit log" bash -c "! grep -Fqi -f '$W/every.hex' ${AUDITS[*]}"
t_check "no key (base64) appears in any KME log" bash -c "! grep -Fq -f '$W/every.b64' '$NET_DIR'/*/kme.log"
t_check "audit logs are readable by their owner only" test "$(stat -c %a "$NET_DIR/A/audit.log")" = 600
t_logs_clean "$NET_DIR"/*/kme.log "$W/enc/encryptor.log"
t_summary
