#!/usr/bin/env bash
# A meshed network: keys routed hop by hop, around failures. Five sites A B
# C D E on a ring A-B B-C C-D D-E E-A with the chord A-C.
#  (1) After start, keys flow between every ordered pair of sites (20 pairs):
#      the slave fetches the master's bytes once; a second fetch is refused.
#  (2) Link C-D runs through two TCP forwarders (one per direction of
#      connection). While requests whose route uses C-D run, the forwarders
#      are killed: the routes move off C-D and keys keep flowing over the
#      other path; once the forwarders are back, C routes to D directly again.
#  (3) KME_C is killed (SIGKILL) under load: keys between B and D (normally
#      via C) flow around it; restarted, it serves again on its own.
#  (4) Link A-B runs out of key (qkd-sim stopped, stock drained by requests):
#      B routes to A around it and keys B->A still flow; once qkd-sim runs
#      again the direct route comes back.
#  (5) Afterwards every key a master received during the whole run is fetched
#      by its slave with the same bytes, exactly once (I2, I3); no two keys
#      share a key_ID or bytes; in-doubt reservations are settled; the two
#      ends of every link agree on the blocks (I1, from the stores); every
#      KME stops cleanly on SIGTERM.
#  (6) No sanitizer report and no key material in any log.
# shellcheck disable=SC2034 # T_SUITE is read by lib.sh
T_SUITE=mesh
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# Every key is handed out once, strictly: a second fetch is refused at once
# (the default fetch retry window is tested in test_expiry.sh).
NET_FETCH_RETRY=0
# shellcheck source=lib/keys.sh
. "$T_ROOT/tests/integration/lib/keys.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=6900
NET_KME_BASE=7000
NET_RATE=200000   # 25 kB/s of link key per link: enough for the load, little to drain in (4)
NET_BLOCK=8192
NET_STOCK=16      # few keys relayed ahead: the loads below soon depend on the routes
W=$(mktemp -d "$T_OUT/mesh.XXXX")
mkdir -p "$W/got"

SITES="A B C D E"
LINKS="A-B B-C C-D D-E E-A A-C"
FWD_CD=7051   # C's connections to KME_D go through here
FWD_DC=7052   # D's connections to KME_C go through here
LOAD_PIDS=()

# Stops everything still running, none of it waited for without bound.
cleanup() {
    touch "$W/stop.all"
    local p s l
    for p in "${LOAD_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    net_fwd_stop CD
    net_fwd_stop DC
    [ -n "${NET_DIR:-}" ] || return 0
    for s in $SITES; do [ -n "$(kme_pid "$s")" ] && term_site "$s" >/dev/null; done
    for l in $LINKS; do sim_halt "$l"; done
}
trap cleanup EXIT

t_require_programs kme qkd-sim tcp_tap

# ---- helpers ------------------------------------------------------------------

# routes SITE: the routes last recorded by the site's KME.
routes() { timeout 20 "$T_BIN/kme" --config "$NET_DIR/$1/kme.json" --routes 2>/dev/null; }
# dump_site SITE FILE: the site's store (bounded in time).
dump_site() { timeout 30 "$T_BIN/kme" --config "$NET_DIR/$1/kme.json" --dump >"$2" 2>"$2.err"; }
# route_cost SITE DEST: "cost path" of the site's route to KME_DEST.
route_cost() {
    routes "$1" | jq -r --arg d "KME_$2" '.routes[] | select(.dest == $d) | "\(.cost) \(.path | join("-"))"' 2>/dev/null
}
# stacks SITE FILE: every thread's stack of the site's KME (when gdb is there);
# prints the functions most threads wait in.
stacks() {
    local pid
    pid=$(kme_pid "$1") || return 0
    command -v gdb >/dev/null || return 0
    timeout 60 gdb -nx -batch -p "$pid" -ex 'set pagination off' -ex 'thread apply all bt 12' </dev/null >"$2" 2>&1
    grep -E '^#[0-9]+ .* in [a-z_]+ \(' "$2" | sed -E 's/^#[0-9]+ +(0x[0-9a-f]+ in )?//; s/ \(.*//' |
        grep -Ev '^(start_thread|clone3|__|futex|do_futex|lll_|___pthread|pthread_cond|epoll_wait|poll|curl_)' |
        sort | uniq -c | sort -rn | head -8 | sed 's/^/      /'
}
# term_site SITE: SIGTERM; the exit status (137 when it had to be killed after
# 20 s, its stacks then saved in $W/stuck.SITE).
term_site() {
    local pid end rc
    pid=$(kme_pid "$1") || return 255
    kill -TERM "$pid" 2>/dev/null
    end=$((SECONDS + 20))
    while proc_running "$pid" && [ $SECONDS -lt $end ]; do sleep 0.1; done
    if proc_running "$pid"; then
        echo "    KME_$1 still runs 20 s after SIGTERM; its threads wait in (all: $W/stuck.$1):"
        stacks "$1" "$W/stuck.$1"
        echo "    the end of its log:"
        tail -n 6 "$NET_DIR/$1/kme.log" | cut -c1-200 | sed 's/^/      /'
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid"
    rc=$?
    rm -f "$NET_DIR/$1/kme.pid"
    return $rc
}
# sim_halt LINK: stops the link's qkd-sim (killed if it takes over 10 s).
sim_halt() {
    local pid end
    pid=$(cat "$NET_DIR/links/$1/qkd-sim.pid" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null
    end=$((SECONDS + 10))
    while proc_running "$pid" && [ $SECONDS -lt $end ]; do sleep 0.1; done
    proc_running "$pid" && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rm -f "$NET_DIR/links/$1/qkd-sim.pid"
}
# answers SITE: the site's KME answers a status request within 5 s.
answers() {
    curl -sf --max-time 5 --cert "$NET_DIR/certs/SAE_$1.pem" --key "$NET_DIR/certs/SAE_$1.key" \
        --cacert "$NET_DIR/certs/ca.pem" "$(net_url "$1")/api/v1/keys/SAE_$1/status" >/dev/null
}
# all_answer: every KME answers; the stacks of one that does not go to $W/hung.SITE.
all_answer() {
    local s ok=0
    for s in $SITES; do
        answers "$s" && continue
        ok=1
        echo "    KME_$s does not answer; its threads wait in (all: $W/hung.$s):"
        stacks "$s" "$W/hung.$s"
    done
    return $ok
}
# route_path SITE DEST: the path to KME_DEST as "KME_X KME_Y ...", empty if none.
route_path() {
    routes "$1" | jq -r --arg d "KME_$2" '.routes[] | select(.dest == $d) | .path | join(" ")' 2>/dev/null
}
next_hop() {
    routes "$1" | jq -r --arg d "KME_$2" '.routes[] | select(.dest == $d) | .next_hop' 2>/dev/null
}
# next_hop_is SITE DEST HOP: the site sends for KME_DEST to KME_HOP.
next_hop_is() { [ "$(next_hop "$1" "$2")" = "KME_$3" ]; }
# path_uses "PATH" X Y: the path crosses the link X-Y (either way).
path_uses() {
    printf ' %s \n' "$1" | grep -Eq " KME_$2 KME_$3 | KME_$3 KME_$2 "
}
# routes_avoid SITE DEST X Y: the site has a route to DEST that does not cross X-Y.
routes_avoid() {
    local p
    p=$(route_path "$1" "$2")
    [ -n "$p" ] && ! path_uses "$p" "$3" "$4"
}
# routes_via SITE DEST X Y: the site's route to DEST crosses X-Y.
routes_via() {
    local p
    p=$(route_path "$1" "$2")
    [ -n "$p" ] && path_uses "$p" "$3" "$4"
}
# route_is SITE DEST PATH: the site's route to DEST is exactly PATH (route_path's form).
route_is() { [ "$(route_path "$1" "$2")" = "$3" ]; }
# routes_avoid_site SITE DEST X: the site has a route to DEST not through KME_X.
routes_avoid_site() {
    local p
    p=$(route_path "$1" "$2")
    [ -n "$p" ] && ! printf ' %s \n' "$p" | grep -q " KME_$3 "
}

# load_loop TAG MASTER SLAVE: GET enc_keys (4 keys of 256 bits) as SAE_MASTER
# for SAE_SLAVE until $W/stop.TAG or $W/stop.all exists (at most 150 s x T_WAIT_SCALE). Every
# key received is appended to got/SAE_MASTER.SAE_SLAVE.TAG; every answer to
# log.TAG.MASTER.SLAVE as "time code"; refusals to err.TAG.MASTER.SLAVE.
# (The bound is there should the suite die before it writes the stop file.)
load_loop() {
    local tag=$1 m=SAE_$2 s=SAE_$3 end=$((SECONDS + 150 * T_WAIT_SCALE))
    local keys=$W/got/$m.$s.$tag log=$W/log.$tag.$2.$3 err=$W/err.$tag.$2.$3
    : >"$keys"
    : >"$log"
    : >"$err"
    while [ ! -e "$W/stop.$tag" ] && [ ! -e "$W/stop.all" ] && [ $SECONDS -lt $end ]; do
        if enc_keys "$m" "$s" 4 256 "$keys"; then
            echo "$EPOCHREALTIME 200" >>"$log"
        else
            echo "$EPOCHREALTIME $CODE" >>"$log"
            printf '%s %s\n' "$CODE" "$(printf '%s' "$BODY" | tr -d '\n' | cut -c1-300)" >>"$err"
            sleep 0.2
        fi
    done
}
load_start() { # TAG "M-S M-S ..."
    local p
    rm -f "$W/stop.$1"
    for p in $2; do
        load_loop "$1" "${p%-*}" "${p#*-}" &
        LOAD_PIDS+=($!)
    done
}
load_stop() { # TAG
    local p
    touch "$W/stop.$1"
    for p in "${LOAD_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    LOAD_PIDS=()
}
# ok_since TAG M S T0: successful requests M->S of the load TAG after time T0.
ok_since() {
    awk -v t="$4" '$1 > t && $2 == 200' "$W/log.$1.$2.$3" 2>/dev/null | wc -l
}
# flowing_since TAG T0 N "M-S ...": every pair got at least N keys batches after T0.
flowing_since() {
    local p
    for p in $4; do
        [ "$(ok_since "$1" "${p%-*}" "${p#*-}" "$2")" -ge "$3" ] || return 1
    done
}
# report_pairs TAG T0 "M-S ...": successes after T0 per pair (for the log).
report_pairs() {
    local p out=""
    for p in $3; do out="$out $p:$(ok_since "$1" "${p%-*}" "${p#*-}" "$2")"; done
    echo "   (successful requests since then:$out)"
}
# refused_between TAG T1 T2 "M-S ...": requests of those pairs refused between T1 and T2.
refused_between() {
    local p n=0
    for p in $4; do
        n=$((n + $(awk -v a="$2" -v b="$3" '$1 > a && $1 < b && $2 != 200' "$W/log.$1.${p%-*}.${p#*-}" | wc -l)))
    done
    echo "$n"
}
# refusals TAG: the refusals of a load, counted by code and message.
refusals() {
    cat "$W"/err."$1".* 2>/dev/null | sed -E 's/^([0-9]+) .*"message": *"([^"]*)".*/\1 \2/' | sort | uniq -c |
        sed 's/^/    /'
}
# odd_refusals TAG: refusals of a load that are neither an ETSI 503 answer nor
# a KME that is down (no answer at all).
odd_refusals() {
    cat "$W"/err."$1".* 2>/dev/null | grep -Evc '^000 |^503 \{.*"message"'
}

# ---- the network -----------------------------------------------------------------

echo "== network: ring A-B-C-D-E-A and chord A-C; link C-D through forwarders"
net_init "$W/net" "$SITES" "$LINKS" || { t_fail "net_init" "see $W"; t_summary; exit 1; }
# C reaches KME_D, and D reaches KME_C, only through the forwarders.
jq --arg u "https://localhost:$FWD_CD" '.links |= map(if .peer == "KME_D" then .url = $u else . end)' \
    "$NET_DIR/C/kme.json" >"$W/kme.C.json" && mv "$W/kme.C.json" "$NET_DIR/C/kme.json"
jq --arg u "https://localhost:$FWD_DC" '.links |= map(if .peer == "KME_C" then .url = $u else . end)' \
    "$NET_DIR/D/kme.json" >"$W/kme.D.json" && mv "$W/kme.D.json" "$NET_DIR/D/kme.json"
t_eq "C's link to KME_D goes through the forwarder" "https://localhost:$FWD_CD" \
    "$(jq -r '.links[] | select(.peer == "KME_D") | .url' "$NET_DIR/C/kme.json")"
t_eq "D's link to KME_C goes through the forwarder" "https://localhost:$FWD_DC" \
    "$(jq -r '.links[] | select(.peer == "KME_C") | .url' "$NET_DIR/D/kme.json")"
t_check "forwarder C->D listens" net_fwd_start CD "$FWD_CD" "$(net_kme_port D)"
t_check "forwarder D->C listens" net_fwd_start DC "$FWD_DC" "$(net_kme_port C)"
T0=$SECONDS
if net_start; then
    t_pass "network starts; every site has keys for every other site (after $((SECONDS - T0)) s)"
else
    t_fail "network starts" "see $NET_DIR/*/kme.log"
    t_summary
    exit 1
fi
# The shortest routes once every link has key (a link without key yet is routed around).
t_check "C routes to KME_D over the direct link (through the forwarders)" wait_for 30 route_is C D "KME_C KME_D"
t_eq "A's directory knows every SAE" "KME_A KME_B KME_C KME_D KME_E" \
    "$(routes A | jq -r '[.directory.SAE_A, .directory.SAE_B, .directory.SAE_C, .directory.SAE_D, .directory.SAE_E] | join(" ")')"

echo "== (1) keys between every ordered pair of sites"
for x in $SITES; do
    for y in $SITES; do
        [ "$x" = "$y" ] && continue
        f=$W/pair.$x.$y
        : >"$f"
        : >"$f.fetched"
        if ! enc_keys "SAE_$x" "SAE_$y" 3 256 "$f"; then
            t_fail "SAE_$x -> SAE_$y" "enc_keys answered $CODE $BODY"
            continue
        fi
        cp "$f" "$W/got/SAE_$x.SAE_$y.pairs" # part of every key received (checked at the end)
        dec_keys "SAE_$y" "SAE_$x" "$f" "$f.fetched"
        fetch_code=$CODE
        again=$(refetch_codes "SAE_$y" "SAE_$x" "$f" | sort | uniq -c | awk '{ printf "%s:%s ", $2, $1 }')
        result="got $(wc -l <"$f"), fetch $fetch_code, same bytes $(cmp -s <(sort "$f") <(sort "$f.fetched") && echo yes || echo no), again $again"
        t_eq "SAE_$x -> SAE_$y: 3 keys; SAE_$y fetches the same bytes; a second fetch is refused" \
            "got 3, fetch 200, same bytes yes, again 400:3 " "$result"
    done
done

echo "== (2) link C-D cut under load, then restored"
CUT_PAIRS="C-D D-C B-D"
t_check "before the cut: B routes to KME_D over C-D" wait_for 30 route_is B D "KME_B KME_C KME_D"
load_start cut "$CUT_PAIRS"
t=$EPOCHREALTIME
t_check "before the cut: keys flow for C->D, D->C and B->D" wait_for 10 flowing_since cut "$t" 3 "$CUT_PAIRS"
sleep 1
net_fwd_stop CD
net_fwd_stop DC
T_CUT=$EPOCHREALTIME
t_check "forwarders stopped (link C-D cut)" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$FWD_CD) 2>/dev/null"
t_check "cut: C routes to KME_D off the link C-D" wait_for 15 routes_avoid C D C D
echo "   (C's route to KME_D: $(route_path C D))"
t_check "cut: D routes to KME_C off the link C-D" wait_for 15 routes_avoid D C C D
t_check "cut: B routes to KME_D off the link C-D" wait_for 15 routes_avoid B D C D
echo "   (B's route to KME_D: $(route_path B D))"
t_check_fails "cut: C's next hop to KME_D is not KME_D" next_hop_is C D D
T_CONV=$EPOCHREALTIME
# More batches than the stock relayed ahead (NET_STOCK keys) could serve.
N_AFTER=$((NET_STOCK / 4 + 6))
t_check "cut: keys keep flowing for C->D, D->C and B->D over the other path ($N_AFTER requests each, 30 s)" \
    wait_for 30 flowing_since cut "$T_CONV" "$N_AFTER" "$CUT_PAIRS"
report_pairs cut "$T_CONV" "$CUT_PAIRS"
t_check "cut: the link C-D stays out of C's route to KME_D" routes_avoid C D C D
T_RESTORE=$EPOCHREALTIME
t_eq "cut: no request refused from 3 s after the routes moved until the link is restored" 0 \
    "$(refused_between cut "$(awk -v t="$T_CONV" 'BEGIN { printf "%.6f", t + 3 }')" "$T_RESTORE" "$CUT_PAIRS")"
t_check "restore: forwarder C->D listens again" net_fwd_start CD "$FWD_CD" "$(net_kme_port D)"
t_check "restore: forwarder D->C listens again" net_fwd_start DC "$FWD_DC" "$(net_kme_port C)"
t_check "restore: C routes to KME_D over the direct link again" wait_for 20 next_hop_is C D D
t_check "restore: D routes to KME_C over the direct link again" wait_for 20 next_hop_is D C C
t_check "restore: B routes to KME_D over C-D again" wait_for 20 routes_via B D C D
t=$EPOCHREALTIME
t_check "restore: keys flow for C->D, D->C and B->D (5 requests each, 20 s)" \
    wait_for 20 flowing_since cut "$t" 5 "$CUT_PAIRS"
load_stop cut
echo "   (refusals during (2), by code and message:)"
refusals cut
t_eq "cut: every refusal is an ETSI 503 answer" 0 "$(odd_refusals cut)"
t_check "after (2): every KME answers" all_answer

echo "== (3) KME_C killed (SIGKILL) under load and restarted"
KILL_PAIRS="B-D D-B C-E E-C"
AROUND_PAIRS="B-D D-B"
t_eq "before the kill: B routes to KME_D through KME_C" "KME_B KME_C KME_D" "$(route_path B D)"
load_start kill "$KILL_PAIRS"
t=$EPOCHREALTIME
t_check "before the kill: keys flow for B<->D and C<->E" wait_for 10 flowing_since kill "$t" 3 "$KILL_PAIRS"
sleep 1
kme_stop C KILL
t_check "KME_C is gone after SIGKILL" test -z "$(kme_pid C)"
t_check "C down: B routes to KME_D around KME_C" wait_for 15 routes_avoid_site B D C
echo "   (B's route to KME_D: $(route_path B D))"
t_check "C down: D routes to KME_B around KME_C" wait_for 15 routes_avoid_site D B C
T_CONV=$EPOCHREALTIME
t_check "C down: keys keep flowing for B->D and D->B ($N_AFTER requests each, 30 s)" \
    wait_for 30 flowing_since kill "$T_CONV" "$N_AFTER" "$AROUND_PAIRS"
report_pairs kill "$T_CONV" "$KILL_PAIRS"
t_check "C down: B still routes to KME_D around KME_C" routes_avoid_site B D C
T_RESTART=$EPOCHREALTIME
t_eq "C down: no request B->D or D->B refused from 3 s after the routes moved until C restarts" 0 \
    "$(refused_between kill "$(awk -v t="$T_CONV" 'BEGIN { printf "%.6f", t + 3 }')" "$T_RESTART" "$AROUND_PAIRS")"
kme_start C
t_check "KME_C restarts after SIGKILL (status answers)" kme_wait C 30
T_UP=$EPOCHREALTIME
t_check "C back: keys flow for C->E and E->C without operator action (5 requests each, 30 s)" \
    wait_for 30 flowing_since kill "$T_UP" 5 "C-E E-C"
t_check "C back: B routes to KME_D through KME_C again" wait_for 20 routes_via B D C D
t=$EPOCHREALTIME
t_check "C back: keys flow for B->D and D->B" wait_for 20 flowing_since kill "$t" 5 "$AROUND_PAIRS"
report_pairs kill "$T_UP" "$KILL_PAIRS"
load_stop kill
echo "   (refusals during (3), by code and message:)"
refusals kill
t_eq "kill: every refusal is an ETSI 503 answer or no answer from the dead KME" 0 "$(odd_refusals kill)"
t_check "after (3): every KME answers" all_answer

echo "== (4) link A-B runs dry: routed around, then back"
DRAIN=8192 # bits per key while draining
# drain_once MASTER SLAVE FILE: one request as large as what the route's first
# link can carry now (status counts keys of 256 bits).
drain_once() {
    local n
    n=$(stored_count "SAE_$1" "SAE_$2")
    n=$(( ${n:-0} * 256 / DRAIN ))
    [ "$n" -gt 1024 ] && n=1024
    [ "$n" -lt 1 ] && n=1
    enc_keys "SAE_$1" "SAE_$2" "$n" "$DRAIN" "$3" || enc_keys "SAE_$1" "SAE_$2" 1 "$DRAIN" "$3"
}
# costs: B's routes to A and C and C's route to A, for the log.
costs() { echo "   ($1: B to A $(route_cost B A); B to C $(route_cost B C); C to A $(route_cost C A))"; }
t_eq "before: B routes to KME_A over the direct link" "KME_B KME_A" "$(route_path B A)"
sim_halt A-B
: >"$W/got/SAE_B.SAE_A.drain"
: >"$W/got/SAE_A.SAE_B.drain"
# Both directions: key A still owns would otherwise be granted to B. Until
# the routes stay off the link for 4 s: the last blocks one end owns may
# still be granted to the other (every GRANT_INTERVAL_MS), which then routes
# over the link again while that key lasts.
end=$((SECONDS + 60 * T_WAIT_SCALE))
drained=0
away_since=
while [ $SECONDS -lt $end ]; do
    ba=$(next_hop B A)
    ab=$(next_hop A B)
    if [ -n "$ba" ] && [ -n "$ab" ] && [ "$ba" != KME_A ] && [ "$ab" != KME_B ]; then
        [ -n "$away_since" ] || away_since=$SECONDS
        [ $((SECONDS - away_since)) -ge 4 ] && { drained=1; break; }
    else
        away_since=
        [ "$ba" = KME_A ] && drain_once B A "$W/got/SAE_B.SAE_A.drain"
        [ "$ab" = KME_B ] && drain_once A B "$W/got/SAE_A.SAE_B.drain"
    fi
    sleep 0.3
done
echo "   (drained with $(cat "$W"/got/*.drain | wc -l) keys of $DRAIN bits in $((SECONDS - end + 60 * T_WAIT_SCALE)) s)"
t_eq "dry: B's and A's routes to each other leave the link A-B and stay off it (4 s)" 1 "$drained"
costs "dry"
sleep 2
t_check "dry: B routes to KME_A around the link A-B" routes_avoid B A A B
costs "2 s later"
: >"$W/got/SAE_B.SAE_A.dry"
ok=0
t0=$SECONDS
for i in 1 2 3 4 5; do enc_keys SAE_B SAE_A 4 256 "$W/got/SAE_B.SAE_A.dry" && ok=$((ok + 1)); done
t_eq "dry: keys B->A still flow (5 requests of 4 keys, in $((SECONDS - t0)) s)" 5 "$ok"
[ "$CODE" = 200 ] || echo "    last answer: $CODE $BODY"
t_check "dry: B still routes to KME_A around the link A-B" routes_avoid B A A B
costs "then"
sim_start A-B
t0=$SECONDS
if wait_for 30 next_hop_is B A A; then
    t_pass "refilled: B routes to KME_A over the direct link again (after $((SECONDS - t0)) s)"
else
    t_fail "refilled: B routes to KME_A over the direct link again" "$(route_cost B A)"
fi
: >"$W/got/SAE_B.SAE_A.refilled"
t_check "refilled: keys B->A flow" enc_keys SAE_B SAE_A 4 256 "$W/got/SAE_B.SAE_A.refilled"
t_check "after (4): every KME answers" all_answer

echo "== (5) every key received is delivered once, with the same bytes; both ends of every link agree"
sleep 3
cat "$W"/got/* >"$W/every"
ALL=$(wc -l <"$W/every")
echo "   ($ALL keys received by masters in all)"
t_check "masters received more than 400 keys" test "$ALL" -gt 400
t_eq "masters never received a key_ID twice" "$ALL" "$(awk '{ print $1 }' "$W/every" | sort -u | wc -l)"
t_eq "no two keys received share bytes (I1)" "$ALL" "$(awk '{ print $2 }' "$W/every" | sort -u | wc -l)"
# Per (master, slave), the keys not fetched yet (scenario 1 fetched its own).
for f in "$W"/got/*; do
    case $f in *.pairs) continue ;; esac
    b=$(basename "$f")
    pair=${b%.*}
    cat "$f" >>"$W/topair.$pair"
done
undelivered=0
wrong=0
twice=0
refetch_bad=0
total=0
DEAD=""
for s in $SITES; do answers "$s" || DEAD="$DEAD $s"; done
t_eq "every KME answers before the keys are fetched" "" "$DEAD"
for f in "$W"/topair.*; do
    pair=${f##*/topair.}
    m=${pair%%.*}
    s=${pair#*.}
    [ -s "$f" ] || continue
    total=$((total + $(wc -l <"$f")))
    if [[ " $DEAD " == *" ${s#SAE_} "* ]]; then
        echo "   $m -> $s: $(wc -l <"$f") keys not fetched: KME_${s#SAE_} does not answer"
        undelivered=$((undelivered + $(wc -l <"$f")))
        continue
    fi
    : >"$f.fetched"
    fetch_all "$s" "$m" "$f" "$f.fetched" "$f.fail"
    n=$(wc -l <"$f.fail")
    [ "$n" -gt 0 ] && { echo "   $m -> $s: $n keys not fetchable, e.g. $(head -1 "$f.fail" | cut -c1-200)"; }
    undelivered=$((undelivered + n))
    n=$(comm -13 <(sort "$f") <(sort -u "$f.fetched") | wc -l)
    [ "$n" -gt 0 ] && echo "   $m -> $s: $n keys fetched with other bytes than the master's"
    wrong=$((wrong + n))
    twice=$((twice + $(wc -l <"$f.fetched") - $(awk '{ print $1 }' "$f.fetched" | sort -u | wc -l)))
    n=$(refetch_codes "$s" "$m" "$f" | grep -vc '^400$')
    [ "$n" -gt 0 ] && echo "   $m -> $s: $n second fetches not refused with 400"
    refetch_bad=$((refetch_bad + n))
done
echo "   ($total keys of the loads fetched by their slaves)"
t_eq "every key a master received in (2)-(4) is fetched by its slave (I3)" 0 "$undelivered"
t_eq "each slave received the master's bytes under every key_ID (I2)" 0 "$wrong"
t_eq "no slave received a key twice (I3)" 0 "$twice"
t_eq "a second fetch of every key is refused with 400 (I3)" 0 "$refetch_bad"

no_doubt_anywhere() {
    local s
    for s in $SITES; do
        dump_site "$s" "$W/doubt.$s" || return 1
        [ "$(jq '.in_doubt | length' "$W/doubt.$s")" = 0 ] || return 1
    done
}
t_check "every reservation held in doubt is settled" wait_for 20 no_doubt_anywhere
for s in $SITES; do
    term_site "$s"
    t_eq "KME_$s exits 0 on SIGTERM (within 20 s)" 0 "$?"
done
for l in $LINKS; do sim_halt "$l"; done
for s in $SITES; do
    dump_site "$s" "$W/dump.$s"
    t_eq "dump of $s succeeds" 0 "$?"
done
for l in $LINKS; do
    x=${l%-*}
    y=${l#*-}
    # The comparison is not vacuous: both ends carved key from the link.
    carved=$(jq -n --slurpfile a "$W/dump.$x" --slurpfile b "$W/dump.$y" --arg x "KME_$x" --arg y "KME_$y" \
        '[($a[0].links[$y] // [])[], ($b[0].links[$x] // [])[]
          | select(.state == "verified" and .owner == "self" and (.used | length > 1 or .[0] != [0, 48]))] | length')
    t_check "link $l: both stores hold blocks key was carved from" test "${carved:-0}" -gt 0
    compare_dumps "$x" "$y" "$W/dump.$x" "$W/dump.$y" >"$W/violations.$l"
    t_eq "link $l: both ends agree on every block; the non-owner's used ranges are the owner's (I1)" 0 \
        "$(wc -l <"$W/violations.$l")"
    [ -s "$W/violations.$l" ] && head -3 "$W/violations.$l" | sed 's/^/    /'
done

echo "== (6) logs"
t_logs_clean "$NET_DIR"/*/kme.log
t_check "the forwarders logged no sanitizer report" bash -c "! cat '$NET_DIR'/fwd.*.err | grep -Eq '$T_SANITIZER_PATTERN'"
awk '{ print $2 }' "$W/every" >"$W/every.b64"
t_check "no key (base64) appears in any KME log" bash -c "! grep -Fq -f '$W/every.b64' '$NET_DIR'/*/kme.log"
if perl -MMIME::Base64 -e 1 2>/dev/null; then
    perl -MMIME::Base64 -ne 'chomp; print unpack("H*", decode_base64($_)), "\n"' "$W/every.b64" >"$W/every.hex"
    t_check "no key (hex) appears in any KME log" bash -c "! grep -Fqi -f '$W/every.hex' '$NET_DIR'/*/kme.log"
fi

t_summary
