#!/usr/bin/env bash
# A WebRTC call whose media cross the encryptor pair: headless Chromium
# with a fake camera (640x360) and microphone makes a call between two peer
# connections whose only ICE candidates are relayed (iceTransportPolicy
# "relay") by coturn, over TCP, through the users-side encryptor (SAE_B at
# KME_B) and the server-side encryptor (SAE_C at KME_C) of a three-site star
# (hub A, keys relayed B-A-C). Three taps record what crosses each hop:
# browser to users side (plaintext), between the encryptors (ciphertext),
# server side to coturn (plaintext).
#  (1) The far side decodes video frames (640x360) and audio samples above
#      a floor; the selected candidate pair is relay to relay, over TCP.
#  (2) coturn logged the allocations of user demo in realm qkd.demo, and
#      every TURN connection it served came through the pair.
#  (3) Between the encryptors: only well-formed encryptor frames; none of
#      the call's RTP SSRCs, no DTLS record header, no STUN magic cookie.
#      The same checks on the browser's side find them, as a control.
#  (4) What reached coturn is, connection by connection, a prefix of what
#      the browser sent (and the other way round): nothing altered.
#  (5) One ciphertext byte flipped mid-call: the server side logs a tag
#      failure, the call's transport ends (a peer connection goes
#      disconnected or failed), and (4) still holds: no altered media.
#  (5b) demo/turn_allocate.py, the check `make run` makes before it prints
#      ready, gets an allocation through the pair, and is refused with a
#      wrong password.
#  (6) Both encryptors stop with status 0; no sanitizer report, no key
#      material in the logs.
# Ports 8000-8049 only: KMEs 8001-8003 and 8011-8013, the rest 8020-8049.
# shellcheck disable=SC2034 # T_SUITE and the NET_* settings are read by the sourced files
T_SUITE=turn_call
[ -n "${1:-}" ] && T_BUILD=$(cd "$1" && pwd)
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=SCRIPTDIR/../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# shellcheck source=SCRIPTDIR/lib/enc_pair.sh
. "$T_ROOT/tests/integration/lib/enc_pair.sh"
# shellcheck source=SCRIPTDIR/lib/webrtc_call.sh
. "$T_ROOT/tests/integration/lib/webrtc_call.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=8000
NET_KME_BASE=8010
NET_RATE=16000000

P_BROWSER=8020 # tap between the browser and the users-side encryptor
P_USERS=8021   # users-side encryptor (the TURN URL's port, behind the tap)
P_TAP=8022     # tap between the encryptors
P_SERVER=8023  # server-side encryptor (ciphertext)
P_PLAIN=8024   # tap between the server-side encryptor and coturn
P_TURN=8025    # coturn (TURN over TCP)
P_HTTP=8026    # the page server
P_RELAY_MIN=8030 # coturn's relayed addresses
P_RELAY_MAX=8049

LIB=$T_ROOT/tests/integration/lib
W=$(mktemp -d "$T_OUT/turn_call.XXXX")
PIDS=()
DUMMY="qt$$v0"
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    net_stop
    call_veth_down "$DUMMY"
}
trap cleanup EXIT

t_require_programs kme qkd-sim encryptor tcp_tap
missing=""
for p in turnserver chromium python3 jq; do command -v "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    t_fail "prerequisites" "missing:$missing (make deps installs them)"
    t_summary
    exit 1
fi
TAP=$T_BIN/tcp_tap

# call NAME MODE: runs Chromium on the page until OUT/NAME/{result,ended}.json
# appears (result for MODE call, ended for flip, or error); sets CHROME_PID.
call_start() {
    mkdir -p "$W/$1"
    chromium --headless=new --no-sandbox --no-first-run --use-fake-device-for-media-stream \
        --use-fake-ui-for-media-stream --autoplay-policy=no-user-gesture-required \
        --user-data-dir="$W/$1/profile" \
        "http://127.0.0.1:$P_HTTP/webrtc_call.html?turn=127.0.0.1:$P_BROWSER&mode=$2&frames=60&samples=48000&out=$1" \
        >"$W/$1/chromium.log" 2>&1 &
    CHROME_PID=$!
    PIDS+=("$CHROME_PID")
}
call_stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
has() { [ -e "$W/page/$1.json" ] || [ -e "$W/page/error.json" ]; }
# jqr FILE FILTER
jqr() { jq -r "$2" "$1" 2>/dev/null; }
# prefix_of A B...: A is a prefix of one of B
prefix_of() {
    local a=$1 b n
    shift
    n=$(stat -c %s "$a")
    for b in "$@"; do cmp -s -n "$n" "$a" "$b" && [ "$(stat -c %s "$b")" -ge "$n" ] && return 0; done
    return 1
}
# all_prefixes DIR_A EXT DIR_B: every DIR_A/*.EXT is a prefix of some DIR_B/*.EXT
all_prefixes() {
    local f
    for f in "$1"/*."$2"; do prefix_of "$f" "$3"/*."$2" || { echo "$f"; return 1; }; done
}

# ---------------------------------------------------------------------------------
echo "== set-up: star A-B, A-C; encryptors SAE_B (users) and SAE_C (server); coturn; page server"
if ! { net_init "$W/net" "A B C" "A-B A-C" && net_start; }; then
    t_fail "network" "the star did not start; see $W/net"
    t_summary
    exit 1
fi
call_veth_up "$DUMMY" 198.18.80.1 || t_fail "set-up" "no network besides loopback, and a veth pair could not be made"
mkdir -p "$W/users" "$W/server" "$W/browser" "$W/tap" "$W/plain"
call_coturn_start $P_TURN $P_RELAY_MIN $P_RELAY_MAX
call_page_start $P_HTTP
"$TAP" forward $P_BROWSER $P_USERS "$W/browser" >"$W/browser.out" 2>&1 & PIDS+=($!)
"$TAP" forward $P_TAP $P_SERVER "$W/tap" >"$W/tap.out" 2>&1 & TAP_PID=$!
PIDS+=("$TAP_PID")
"$TAP" forward $P_PLAIN $P_TURN "$W/plain" >"$W/plain.out" 2>&1 & PIDS+=($!)
enc_config server server C SAE_B "127.0.0.1:$P_SERVER" "127.0.0.1:$P_PLAIN"
enc_config users users B SAE_C "127.0.0.1:$P_USERS" "127.0.0.1:$P_TAP"
ready=1
enc_start server || ready=0
SERVER_PID=$ENC_PID
enc_start users || ready=0
USERS_PID=$ENC_PID
for f in browser tap plain page; do wait_for 10 grep -q ready "$W/$f.out" || ready=0; done
wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$P_TURN" || ready=0
if [ $ready = 0 ]; then
    t_fail "set-up" "an encryptor, a tap, coturn or the page server did not start; see $W"
    t_summary
    exit 1
fi

# ---------------------------------------------------------------------------------
echo "== (1) a 640x360 call relayed by coturn through the pair"
start=$SECONDS
call_start call call
wait_for 10 has result
R=$W/page/result.json
call_stop "$CHROME_PID"
if [ -e "$W/page/error.json" ]; then t_fail "(1) the page" "$(cat "$W/page/error.json")"; fi
t_check "(1) the call reported its far side's statistics (after $((SECONDS - start)) s)" test -s "$R"
frames=$(jqr "$R" '.receiver.video.framesDecoded // 0')
samples=$(jqr "$R" '.receiver.audio.totalSamplesReceived // 0')
concealed=$(jqr "$R" '.receiver.audio.concealedSamples // 0')
t_check "(1) the far side decoded video frames ($frames >= 60)" test "$frames" -ge 60
t_eq "(1) ... at 640x360" "640x360" "$(jqr "$R" '"\(.receiver.video.frameWidth)x\(.receiver.video.frameHeight)"')"
t_check "(1) the far side decoded audio ($samples samples, $concealed concealed; >= 48000 not concealed)" \
    test $((samples - concealed)) -ge 48000
for side in sender receiver; do
    t_eq "(1) $side: the selected candidate pair is relay to relay, over TCP to coturn" "relay relay tcp" \
        "$(jqr "$R" ".$side | \"\(.local.type) \(.remote.type) \(.local.relayProtocol)\"")"
done
t_eq "(1) the only candidates gathered are relayed ones" "" \
    "$(jqr "$R" '.candidates.a[], .candidates.b[]' | grep -v ' typ relay ')"

# ---------------------------------------------------------------------------------
echo "== (2) coturn"
t_check "(2) coturn logged an allocation for user demo in realm qkd.demo" \
    grep -q "realm <qkd.demo> user <demo>: incoming packet ALLOCATE processed, success" "$W/turn/turn.log"
conns=$(find "$W/plain" -name '*.up' | wc -l)
t_check "(2) coturn's TURN connections all came through the pair ($conns via the server side)" \
    test "$conns" -ge 2 -a "$(grep -c "incoming packet ALLOCATE processed, success" "$W/turn/turn.log")" -ge 2
# A connection the browser opened and closed without a byte (Chromium does
# so) need never reach the server side; every one that carried data must.
carried() { find "$1" -name '*.up' ! -empty | wc -l; }
as_many() { [ "$(carried "$W/browser")" = "$(carried "$W/plain")" ]; }
t_check "(2) ... as many as the browser opened and wrote to ($(carried "$W/browser"))" wait_for 10 as_many

# ---------------------------------------------------------------------------------
echo "== (3) what crosses between the encryptors"
python3 "$LIB/turn_stream.py" parse "$W"/browser/*.up "$W"/browser/*.down >"$W/browser.json"
ssrcs=$(jq -r '.ssrcs | join(",")' "$W/browser.json")
t_check "(3) control: the browser's side carries RTP in ChannelData ($(jq -c '{rtp, dtls, cookies, ssrcs}' "$W/browser.json"))" \
    test "$(jq '.rtp' "$W/browser.json")" -gt 100 -a "$(jq '.dtls' "$W/browser.json")" -gt 0 -a -n "$ssrcs"
for d in up down; do
    t_check "(3) between the encryptors ($d): only well-formed encryptor frames" \
        bash -c "for f in '$W'/tap/*.$d; do '$TAP' frames \"\$f\" >/dev/null || exit 1; done"
done
# The patterns: each SSRC of the call, a DTLS handshake record header
# (epoch 0) and STUN's magic cookie.
pats="$ssrcs,16fefd0000,2112a442"
python3 "$LIB/turn_stream.py" count "$pats" "$W"/browser/*.up "$W"/browser/*.down >"$W/count-browser.txt"
python3 "$LIB/turn_stream.py" count "$pats" "$W"/tap/*.up "$W"/tap/*.down >"$W/count-tap.txt"
python3 "$LIB/turn_stream.py" count "$pats" "$W"/plain/*.up "$W"/plain/*.down >"$W/count-plain.txt"
while read -r pat n; do
    t_check "(3) control: $pat occurs on the browser's side ($n times)" test "$n" -gt 0
    t_check "(3) ... and on coturn's side ($(awk -v p="$pat" '$1 == p {print $2}' "$W/count-plain.txt") times)" \
        test "$(awk -v p="$pat" '$1 == p {print $2}' "$W/count-plain.txt")" -gt 0
    t_eq "(3) $pat never occurs between the encryptors" 0 "$(awk -v p="$pat" '$1 == p {print $2}' "$W/count-tap.txt")"
done <"$W/count-browser.txt"
# ---------------------------------------------------------------------------------
echo "== (4) nothing altered"
t_check "(4) what reached coturn is a prefix of what the browser sent, connection by connection" \
    all_prefixes "$W/plain" up "$W/browser"
t_check "(4) what reached the browser is a prefix of what coturn sent" all_prefixes "$W/browser" down "$W/plain"

# ---------------------------------------------------------------------------------
echo "== (5) one ciphertext byte flipped mid-call"
rm -f "$W/page/result.json" "$W/page/progress.json"
tags_before=$(grep -c "tag failure" "$W/server/encryptor.log")
call_start flip flip
wait_for 10 has result
t_check "(5) the second call is up (far side decoding)" test -s "$W/page/result.json"
kill -USR1 "$TAP_PID"
wait_for 10 grep -q "flipped conn" "$W/tap.out"
t_check "(5) the tap flipped a byte of a DATA frame" grep -q "flipped conn" "$W/tap.out"
tag_failed() { [ "$(grep -c "tag failure" "$W/server/encryptor.log")" -gt "$tags_before" ]; }
t_check "(5) the server side logged a tag failure" wait_for 10 tag_failed
t_check "(5) the call's transport ended (a peer connection went disconnected or failed)" wait_for 10 has ended
E=$W/page/ended.json
t_match "(5) ... states seen: $(jqr "$E" '[.states[] | "\(.[1]):\(.[2])"] | join(" ")')" \
    "disconnected|failed" "$(jqr "$E" '"\(.sender.state) \(.sender.ice) \(.receiver.state) \(.receiver.ice)"')"
call_stop "$CHROME_PID"
t_check "(5) what reached coturn is still a prefix of what the browser sent: no altered byte" \
    all_prefixes "$W/plain" up "$W/browser"
t_check "(5) ... and the other way" all_prefixes "$W/browser" down "$W/plain"
t_check "(5) the users side closed the connection abnormally" \
    grep -Eq "conn [0-9]+ closed: (the peer encryptor closed without FIN|ciphertext (connection cut|write failed))" \
    "$W/users/encryptor.log"

# ---------------------------------------------------------------------------------
echo "== (5b) the allocation check of make run (demo/turn_allocate.py) through the pair"
got=$(python3 "$T_ROOT/demo/turn_allocate.py" 127.0.0.1 $P_BROWSER demo demo qkd.demo 2>&1)
t_match "(5b) demo/demo in realm qkd.demo gets a relayed address through the pair" '^allocated 127\.0\.0\.1:[0-9]+$' "$got"
got=$(python3 "$T_ROOT/demo/turn_allocate.py" 127.0.0.1 $P_BROWSER demo wrong qkd.demo 2>&1)
t_match "(5b) a wrong password is refused with coturn's 401, exit status non-zero" "allocation refused: 401" "$got"

# ---------------------------------------------------------------------------------
echo "== (6) stop and logs"
enc_stop "$USERS_PID" users "(6) "
enc_stop "$SERVER_PID" server "(6) "
logs=("$W"/users/encryptor.log "$W"/server/encryptor.log)
t_check "(6) no key material in the encryptor logs" \
    bash -c "! grep -Eq '\"key\"|[0-9a-fA-F]{32,}|[A-Za-z0-9+]{40,}' ${logs[*]}"
t_nomatch "(6) taps: no sanitizer report" "$T_SANITIZER_PATTERN" "$(cat "$W"/browser.out "$W"/tap.out "$W"/plain.out)"
t_logs_clean "${logs[@]}"
t_logs_clean "$NET_DIR"/*/kme.log
t_summary
