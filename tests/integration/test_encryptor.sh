#!/usr/bin/env bash
# The RTMP encryptor end to end: real ffmpeg publishers and players, a real
# nginx-rtmp server, a pair of encryptors keyed from a three-site star (hub
# A; users-side encryptor SAE_B at KME_B, server-side encryptor SAE_C at
# KME_C, keys relayed B-A-C), and a tap between the two encryptors that
# records (and on request corrupts) the ciphertext. The test FLV is H.264 +
# AAC made by ffmpeg; media are compared as per-packet hashes (framemd5).
#  (1) A publish through the pair is recorded by the server exactly: every
#      packet (stream, timestamps, size, MD5) and the codec headers.
#  (2) A live player through the pair, started mid-stream, gets a contiguous
#      run of the source's packets for each stream.
#  (3) Three simultaneous publishers: each recording is exact.
#  (4) Between the encryptors: only well-formed frames; none of the FLV's
#      16-byte windows, no RTMP handshake, connect command or metadata; the
#      DATA bodies are uniform (byte chi-square) and incompressible (gzip).
#      The same checks on the plaintext side (server encryptor to nginx)
#      find the media, as a control.
#  (5) One ciphertext byte flipped by the tap: the server side logs a tag
#      failure, the publisher's connection ends early, and the recording is
#      a prefix of the source (no altered packet reaches the server).
#  (6) A KME killed mid-stream (small pad watermarks), first KME_B (the
#      publish direction's sender fetches its pads there), then KME_C (its
#      receiver fetches the announced pads there): the stream stops once the
#      pads at hand are spent (the users side logs that it waits), nothing
#      leaves unencrypted (checked in (4)); with the KME back the stream
#      resumes and the recording is exact.
#  (7) Transparent mode (root; network namespaces): a client namespace
#      routed through this host reaches the video server's namespace; an
#      iptables REDIRECT for the server's address and port 1935 sends it
#      through the pair; the recording is exact and made via the pair; a
#      publish to another port or address of the server is not redirected;
#      a connection made straight to the transparent encryptor is refused;
#      a redirected destination missing from allowed_destinations is refused
#      by the server side.
#  (8) Both encryptors stop with status 0 on SIGTERM; no sanitizer report in
#      any encryptor or KME log, no key material in the encryptor logs.
#  (9) KEYS frames of key_IDs copied from elsewhere: alone they make the
#      server side fetch nothing; followed by a forged sealed frame, only the
#      one key that frame needs to be checked.
# Ports 7100-7299 only: KMEs 7101-7103 and 7201-7203, the rest 7250-7299.
# shellcheck disable=SC2034 # T_SUITE and the NET_* settings are read by the sourced files
T_SUITE=encryptor
[ -n "${1:-}" ] && T_BUILD=$(cd "$1" && pwd)
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=SCRIPTDIR/../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# shellcheck source=SCRIPTDIR/lib/enc_pair.sh
. "$T_ROOT/tests/integration/lib/enc_pair.sh"
# shellcheck source=SCRIPTDIR/lib/rtmp_media.sh
. "$T_ROOT/tests/integration/lib/rtmp_media.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=7100
NET_KME_BASE=7200
NET_RATE=16000000

P_USERS=7250   # users-side encryptor (RTMP clients)
P_TAP=7251     # tap between the encryptors
P_SERVER=7252  # server-side encryptor (ciphertext)
P_PLAIN=7253   # tap between the server-side encryptor and nginx (plaintext)
P_NGINX=7254   # nginx-rtmp
P_TUSERS=7260  # transparent users-side encryptor
P_TSERVER=7261 # its server-side peer

W=$(mktemp -d "$T_OUT/encryptor.XXXX")
PIDS=()
NS_CLI="qe$$cli"
NS_SRV="qe$$srv"
VC="qe$$c0"   # root end of the client link
VS="qe$$s0"   # root end of the server link
NET_CLI=198.18.71   # client link: .1 this host, .2 the client
NET_SRV=198.18.72   # server link: .1 this host, .2 and .3 the server
IPT_RULES=()        # "table|rule" added to this namespace's iptables

cleanup() {
    local p r
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    for r in "${IPT_RULES[@]}"; do
        # shellcheck disable=SC2086 # the rule is a word list
        iptables -t "${r%%|*}" -D ${r#*|} 2>/dev/null
    done
    ip netns del "$NS_CLI" 2>/dev/null
    ip netns del "$NS_SRV" 2>/dev/null
    ip link del "$VC" 2>/dev/null
    ip link del "$VS" 2>/dev/null
    net_stop
}
trap cleanup EXIT

t_require_programs kme qkd-sim encryptor tcp_tap
missing=$(rtmp_missing)
for p in ip iptables; do command -v "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    t_fail "prerequisites" "missing:$missing (make deps installs them)"
    t_summary
    exit 1
fi
TAP=$T_BIN/tcp_tap

size_of() { stat -c %s "$1" 2>/dev/null || echo 0; }
# count_files DIR PATTERN: how many files match
count_files() { find "$1" -maxdepth 1 -name "$2" | wc -l; }
# access_logged DIR NAME: nginx logged the end of the publish of NAME
access_logged() { grep -q "PUBLISH \"live\" \"$2\"" "$1/logs/access.log" 2>/dev/null; }
not_running() { ! kill -0 "$1" 2>/dev/null; }
bigger() { [ "$(size_of "$1")" -gt "$2" ]; }

# ---------------------------------------------------------------------------------
echo "== set-up: star A-B, A-C; encryptors SAE_B (users) and SAE_C (server); nginx-rtmp"
SRC=$W/src.flv
SHORT=$W/short.flv
rtmp_make_source "$SRC" 8 & MK1=$!
rtmp_make_source "$SHORT" 3 & MK2=$!
if ! { net_init "$W/net" "A B C" "A-B A-C" && net_start; }; then
    t_fail "network" "the star did not start; see $W/net"
    t_summary
    exit 1
fi
wait $MK1 && wait $MK2
t_check "test media made (H.264 + AAC FLV)" rtmp_framemd5 "$SRC" "$W/src.md5"
rtmp_framemd5 "$SHORT" "$W/short.md5"
SRC_PACKETS=$(rtmp_packets "$W/src.md5")
echo "  source: $(size_of "$SRC") bytes, $SRC_PACKETS packets"

mkdir -p "$W/users" "$W/server" "$W/tap" "$W/plain" "$W/nginx"
rtmp_nginx_conf "$W/nginx" "127.0.0.1:$P_NGINX"
rtmp_nginx_exec "$W/nginx" & PIDS+=($!)
"$TAP" forward "$P_TAP" "$P_SERVER" "$W/tap" >"$W/tap.out" 2>&1 & TAP_PID=$!
PIDS+=("$TAP_PID")
"$TAP" forward "$P_PLAIN" "$P_NGINX" "$W/plain" >"$W/plain.out" 2>&1 & PIDS+=($!)
PADS='"pad_key_bits": 65536, "pad_batch_keys": 4, "low_watermark_bytes": 32768, "high_watermark_bytes": 65536, "announce_keys": 2'
enc_config server server C SAE_B "127.0.0.1:$P_SERVER" "127.0.0.1:$P_PLAIN" "$PADS"
enc_config users users B SAE_C "127.0.0.1:$P_USERS" "127.0.0.1:$P_TAP" "$PADS"
ready=1
enc_start server || ready=0
SERVER_PID=$ENC_PID
enc_start users || ready=0
USERS_PID=$ENC_PID
wait_for 10 grep -q ready "$W/tap.out" || ready=0
wait_for 10 grep -q ready "$W/plain.out" || ready=0
wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$P_NGINX" || ready=0
if [ $ready = 0 ]; then
    t_fail "set-up" "an encryptor, a tap or nginx did not start; see $W"
    t_summary
    exit 1
fi
URL=rtmp://127.0.0.1:$P_USERS/live

# ---------------------------------------------------------------------------------
echo "== (1)(2) a publish through the pair, and a live player through it mid-stream"
rtmp_publish "$URL/one" "$SRC" "$W/pub-one.log" & PUB=$!
wait_for 15 test -s "$(rtmp_recording "$W/nginx" one)"
# The player starts soon after the stream does and must see a contiguous run
# of it; how much depends on when it joins (a connection's set-up includes a
# KME round trip per direction, slow on a busy machine), so only 1 s of the 8
# is asked for.
sleep 0.5
timeout -k 5 30 bash -c "$(declare -f rtmp_play); rtmp_play '$URL/one' '$W/pull-one.raw' '$W/pull-one.log' 4" & PLAY=$!
wait $PUB
t_eq "(1) the publisher through the pair succeeds" 0 "$?"
wait_for 20 access_logged "$W/nginx" one
rtmp_framemd5 "$(rtmp_recording "$W/nginx" one)" "$W/one.md5"
t_check "(1) the recording equals the source packet for packet ($SRC_PACKETS packets)" cmp -s "$W/src.md5" "$W/one.md5"
wait $PLAY
t_eq "(2) the live player through the pair succeeds" 0 "$?"
rtmp_normalise <"$W/pull-one.raw" >"$W/pull-one.md5" 2>/dev/null
pulled=$(rtmp_packets "$W/pull-one.md5")
t_check "(2) the live player got a contiguous run of the source for each stream ($pulled packets)" \
    rtmp_is_run "$W/pull-one.md5" "$W/src.md5"
t_check "(2) ... covering at least 1 s of it" test "$pulled" -ge $((SRC_PACKETS / 8))
t_check "(2) ... with the source's codec headers" test "$(grep '^#' "$W/pull-one.md5")" = "$(grep '^#' "$W/src.md5")"

# ---------------------------------------------------------------------------------
echo "== (3) three publishers at once"
opened_before=$(grep -c "conn [0-9]* opened" "$W/users/encryptor.log")
pubs=()
for n in 1 2 3; do
    rtmp_publish "$URL/multi$n" "$SRC" "$W/pub-multi$n.log" & pubs+=($!)
done
for n in 1 2 3; do
    wait "${pubs[$((n - 1))]}"
    t_eq "(3) publisher multi$n succeeds" 0 "$?"
done
for n in 1 2 3; do
    wait_for 20 access_logged "$W/nginx" "multi$n"
    rtmp_framemd5 "$(rtmp_recording "$W/nginx" "multi$n")" "$W/multi$n.md5"
    t_check "(3) recording multi$n equals the source" cmp -s "$W/src.md5" "$W/multi$n.md5"
done
t_eq "(3) the users side carried them as three connections" 3 \
    "$(($(grep -c "conn [0-9]* opened" "$W/users/encryptor.log") - opened_before))"

# ---------------------------------------------------------------------------------
echo "== (5) one ciphertext byte flipped between the encryptors"
before=$(count_files "$W/tap" '*.up')
id=$((before + 1))
start=$SECONDS
rtmp_publish "$URL/flip" "$SRC" "$W/pub-flip.log" & PUB=$!
wait_for 15 bigger "$W/tap/$id.up" 80000
kill -USR1 "$TAP_PID"
wait $PUB
rc=$?
took=$((SECONDS - start))
t_check "(5) the tap flipped a byte of a DATA frame of that connection" grep -q "flipped conn $id " "$W/tap.out"
t_check "(5) the publisher's connection ended in error (after ${took} s of an 8 s stream)" test "$rc" -ne 0
wait_for 10 grep -q "tag failure" "$W/server/encryptor.log"
t_check "(5) the server side logged a tag failure" grep -q "tag failure on a DATA frame" "$W/server/encryptor.log"
t_check "(5) the users side closed that connection abnormally" \
    grep -Eq "conn [0-9]+ closed: (the peer encryptor closed without FIN|ciphertext (connection cut|write failed))" \
    "$W/users/encryptor.log"
wait_for 20 access_logged "$W/nginx" flip
rtmp_framemd5 "$(rtmp_recording "$W/nginx" flip)" "$W/flip.md5"
got=$(rtmp_packets "$W/flip.md5")
t_check "(5) the recording is a prefix of the source: no altered packet ($got packets)" \
    rtmp_is_prefix "$W/flip.md5" "$W/src.md5"
t_check "(5) ... and stops short of the end" test "${got:-0}" -lt "$SRC_PACKETS"

# ---------------------------------------------------------------------------------
# kme_outage SITE NAME ROLE: publishes NAME, kills KME_SITE once the stream
# is flowing, expects the stream to stall without plaintext, restarts the
# KME and expects the stream to resume and be recorded exactly. ROLE names
# what the KME is to the publish direction, for the messages.
kme_outage() {
    local site=$1 name=$2 role=$3 before pbefore id pid_plain pub killed_at stalled last same end now s1 s2 p1 p2
    echo "  $name: KME_$site, $role"
    before=$(count_files "$W/tap" '*.up')
    pbefore=$(count_files "$W/plain" '*.up')
    id=$((before + 1))
    pid_plain=$((pbefore + 1))
    rtmp_publish "$URL/$name" "$SRC" "$W/pub-$name.log" & pub=$!
    wait_for 15 bigger "$W/plain/$pid_plain.up" 40000
    kme_stop "$site" KILL
    killed_at=$(size_of "$W/plain/$pid_plain.up")
    # stalled: neither ciphertext nor plaintext moves for 3 s, within 25 s x T_WAIT_SCALE
    stalled=0 last=-1 same=0 end=$((SECONDS + 25 * T_WAIT_SCALE))
    while [ $SECONDS -le $end ]; do
        now="$(size_of "$W/tap/$id.up") $(size_of "$W/plain/$pid_plain.up")"
        if [ "$now" = "$last" ]; then same=$((same + 1)); else same=0; fi
        last=$now
        [ $same -ge 6 ] && { stalled=1; break; }
        sleep 0.5
    done
    s1=$(size_of "$W/tap/$id.up")
    p1=$(size_of "$W/plain/$pid_plain.up")
    sleep 3
    s2=$(size_of "$W/tap/$id.up")
    p2=$(size_of "$W/plain/$pid_plain.up")
    t_check "(6) $name: the stream stopped once the pads were spent ($killed_at bytes at nginx at the kill, $p1 at the stall)" \
        test "$stalled" = 1
    t_eq "(6) $name: no ciphertext crossed for 6 s" "$s1" "$s2"
    t_eq "(6) $name: nothing reached nginx meanwhile" "$p1" "$p2"
    t_check "(6) $name: the stall came before the stream's end" test "$p2" -lt $(($(size_of "$SRC") * 9 / 10))
    kme_start "$site"
    t_check "(6) $name: KME_$site is back" kme_wait "$site" 30
    t_check "(6) $name: the stream resumed: new data reaches nginx" wait_for 30 bigger "$W/plain/$pid_plain.up" "$p2"
    # The publisher may have handed its last bytes to the socket before the
    # stall ended; the session ends at nginx once they all got through.
    wait_for 40 not_running "$pub"
    wait $pub
    t_eq "(6) $name: the publisher succeeds" 0 "$?"
    t_check "(6) $name: the publish session completes at nginx" wait_for 40 access_logged "$W/nginx" "$name"
    rtmp_framemd5 "$(rtmp_recording "$W/nginx" "$name")" "$W/$name.md5"
    t_check "(6) $name: the recording equals the source" cmp -s "$W/src.md5" "$W/$name.md5"
}

echo "== (6) a KME killed mid-stream: the stream waits, then resumes"
kme_outage B stall-b "where the users side (sender) gets its pads"
t_check "(6) stall-b: the users side logged that it waits for pads" grep -q "waiting for pads" "$W/users/encryptor.log"
t_check "(6) stall-b: the connection counted its waits for pads" \
    grep -Eq "closed cleanly: .*pad waits [1-9]" "$W/users/encryptor.log"
kme_outage C stall-c "where the server side (receiver) gets the announced pads"

# ---------------------------------------------------------------------------------
echo "== (4) what crossed between the encryptors"
: >"$W/bodies.bin"
bad=""
for f in "$W"/tap/*.up "$W"/tap/*.down; do
    [ -s "$f" ] || continue
    if ! "$TAP" frames "$f" "$W/part.bin" >"$W/frames.txt"; then bad="$bad $(basename "$f")"; fi
    [ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')" = 514b4501 ] || bad="$bad $(basename "$f")(start)"
    cat "$W/part.bin" >>"$W/bodies.bin"
done
ncap=$(find "$W/tap" -name '*.up' -size +0 | wc -l)
t_eq "(4) every capture ($ncap connections, both ways) is a sequence of frames starting with the magic" "" "$bad"
cipher=("$W"/tap/*)
plain=("$W"/plain/*)
found=$("$TAP" windows "$SRC" 16 "${cipher[@]}")
t_match "(4) no 16-byte window of the FLV appears in the ciphertext" "^found 0 of [0-9]+$" "$found"
found=$("$TAP" windows "$SRC" 16 "${plain[@]}")
t_check "(4) control: the plaintext side does contain the FLV's media ($found)" \
    awk -v s="$found" 'BEGIN { split(s, a, " "); exit !(a[2] * 2 > a[4]) }'
# Handshake C0+C1 of the first client and S0+S1 of nginx, as seen in plaintext.
{ head -c 1537 "$W/plain/1.up"; head -c 1537 "$W/plain/1.down"; } >"$W/handshake.bin"
t_eq "(4) control: the plaintext side starts with the RTMP handshake (C0 = 3)" 03 \
    "$(head -c 1 "$W/plain/1.up" | od -An -tx1 | tr -d ' ')"
t_match "(4) no window of the RTMP handshake appears in the ciphertext" "^found 0 of " \
    "$("$TAP" windows "$W/handshake.bin" 16 "${cipher[@]}")"
for m in "020007636f6e6e656374:connect command" "0d4073657444617461467261:@setDataFrame" \
    "6f6e4d65746144617461:onMetaData" "464c5601:FLV signature" "72746d703a2f2f:rtmp:// URL"; do
    t_eq "(4) no ${m#*:} in the ciphertext" 0 "$("$TAP" count "${m%%:*}" "${cipher[@]}")"
done
t_check "(4) control: the plaintext side has the connect command" \
    test "$("$TAP" count 020007636f6e6e656374 "${plain[@]}")" -gt 0
body_bytes=$(size_of "$W/bodies.bin")
read -r chi n <<<"$("$TAP" chi2 "$W/bodies.bin")"
t_check "(4) the DATA bodies ($n bytes) have uniform byte frequencies (chi-square $chi, 255 d.f.)" \
    test "$n" -gt 1000000 -a "$chi" -gt 150 -a "$chi" -lt 400
gz=$(gzip -9 -c "$W/bodies.bin" | wc -c)
t_check "(4) the DATA bodies do not compress (gzip: $gz of $body_bytes bytes)" test $((gz * 1000)) -ge $((body_bytes * 995))
cat "${plain[@]}" >"$W/plain.bin"
read -r pchi _ <<<"$("$TAP" chi2 "$W/plain.bin")"
t_check "(4) control: the plaintext is far from uniform (chi-square $pchi)" test "$pchi" -gt 10000

# ---------------------------------------------------------------------------------
echo "== (7) transparent mode: client and server in network namespaces, REDIRECT here"
tp_ok=1
if [ "$(id -u)" -ne 0 ]; then
    t_fail "(7) transparent mode" "needs root (network namespaces, iptables)"
    tp_ok=0
fi
ipt() { # TABLE RULE...: adds a rule (-I) and remembers it for the clean-up
    local table=$1
    shift
    iptables -t "$table" -I "$@" && IPT_RULES+=("$table|$*")
}
if [ $tp_ok = 1 ]; then
    { ip netns add "$NS_CLI" && ip netns add "$NS_SRV" &&
        ip link add "$VC" type veth peer name c1 netns "$NS_CLI" &&
        ip link add "$VS" type veth peer name s1 netns "$NS_SRV" &&
        ip addr add "$NET_CLI.1/24" dev "$VC" && ip link set "$VC" up &&
        ip addr add "$NET_SRV.1/24" dev "$VS" && ip link set "$VS" up &&
        ip -n "$NS_CLI" link set lo up && ip -n "$NS_CLI" addr add "$NET_CLI.2/24" dev c1 &&
        ip -n "$NS_CLI" link set c1 up && ip -n "$NS_CLI" route add default via "$NET_CLI.1" &&
        ip -n "$NS_SRV" link set lo up && ip -n "$NS_SRV" addr add "$NET_SRV.2/24" dev s1 &&
        ip -n "$NS_SRV" addr add "$NET_SRV.3/24" dev s1 &&
        ip -n "$NS_SRV" link set s1 up && ip -n "$NS_SRV" route add default via "$NET_SRV.1" &&
        echo 1 >"/proc/sys/net/ipv4/conf/$VC/forwarding" && echo 1 >"/proc/sys/net/ipv4/conf/$VS/forwarding" &&
        ipt filter FORWARD -i "$VC" -o "$VS" -j ACCEPT && ipt filter FORWARD -i "$VS" -o "$VC" -j ACCEPT &&
        ipt nat PREROUTING -i "$VC" -p tcp -d "$NET_SRV.2" --dport 1935 -j REDIRECT --to-ports "$P_TUSERS"; } ||
        tp_ok=0
    [ $tp_ok = 1 ] || t_fail "(7) namespaces, links and the REDIRECT rule" "set-up failed"
fi
if [ $tp_ok = 1 ]; then
    mkdir -p "$W/tusers" "$W/tserver" "$W/tnginx"
    rtmp_nginx_conf "$W/tnginx" "$NET_SRV.2:1935" "$NET_SRV.3:1935" "$NET_SRV.2:1936"
    rtmp_nginx_exec "$W/tnginx" ip netns exec "$NS_SRV" & PIDS+=($!)
    enc_config tserver server C SAE_B "127.0.0.1:$P_TSERVER" "" \
        "$PADS, \"allowed_destinations\": [\"$NET_SRV.2:1935\"]"
    enc_config tusers users B SAE_C "$NET_CLI.1:$P_TUSERS" "127.0.0.1:$P_TSERVER" "$PADS, \"transparent\": true"
    enc_start tserver; TSERVER_PID=$ENC_PID
    enc_start tusers; TUSERS_PID=$ENC_PID
    wait_for 10 ip netns exec "$NS_SRV" bash -c "exec 3<>/dev/tcp/$NET_SRV.2/1935" ||
        t_fail "(7) nginx in the server namespace" "not listening"
    in_cli() { ip netns exec "$NS_CLI" "$@"; }
    in_cli bash -c "$(declare -f rtmp_publish); rtmp_publish rtmp://$NET_SRV.2:1935/live/viapair '$SRC' '$W/pub-viapair.log'" &
    PUB=$!
    in_cli bash -c "$(declare -f rtmp_publish); rtmp_publish rtmp://$NET_SRV.2:1936/live/otherport '$SHORT' '$W/pub-otherport.log'" &
    PUB2=$!
    in_cli bash -c "$(declare -f rtmp_publish); rtmp_publish rtmp://$NET_SRV.3:1935/live/otheraddr '$SHORT' '$W/pub-otheraddr.log'" &
    PUB3=$!
    wait $PUB
    t_eq "(7) the client's publish to rtmp://$NET_SRV.2:1935 succeeds" 0 "$?"
    wait $PUB2
    t_eq "(7) a publish to port 1936 of the server succeeds" 0 "$?"
    wait $PUB3
    t_eq "(7) a publish to the server's other address succeeds" 0 "$?"
    for n in viapair otherport otheraddr; do wait_for 20 access_logged "$W/tnginx" $n; done
    rtmp_framemd5 "$(rtmp_recording "$W/tnginx" viapair)" "$W/viapair.md5"
    t_check "(7) the redirected publish is recorded exactly" cmp -s "$W/src.md5" "$W/viapair.md5"
    t_check "(7) ... and it came through the pair (users side asked for $NET_SRV.2:1935)" \
        grep -q "opened: .* for $NET_SRV.2:1935" "$W/tusers/encryptor.log"
    t_check "(7) ... the server side connected to $NET_SRV.2:1935" \
        grep -q "opened: .* -> $NET_SRV.2:1935" "$W/tserver/encryptor.log"
    t_check "(7) ... nginx saw it from this host's address, not the client's" \
        grep -q "^$NET_SRV.1 .*PUBLISH \"live\" \"viapair\"" "$W/tnginx/logs/access.log"
    for n in otherport otheraddr; do
        t_check "(7) the $n publish went straight from the client (not redirected)" \
            grep -q "^$NET_CLI.2 .*PUBLISH \"live\" \"$n\"" "$W/tnginx/logs/access.log"
        rtmp_framemd5 "$(rtmp_recording "$W/tnginx" $n)" "$W/$n.md5"
        t_check "(7) ... and was recorded exactly" cmp -s "$W/short.md5" "$W/$n.md5"
    done
    t_eq "(7) the transparent users side opened exactly one connection" 1 \
        "$(grep -c "conn [0-9]* opened" "$W/tusers/encryptor.log")"
    in_cli bash -c "$(declare -f rtmp_publish); rtmp_publish rtmp://$NET_CLI.1:$P_TUSERS/live/direct '$SHORT' '$W/pub-direct.log'"
    t_check "(7) a publish made straight to the transparent encryptor fails" test $? -ne 0
    t_check "(7) ... refused as not redirected" grep -q "refused: it was made to the encryptor itself" \
        "$W/tusers/encryptor.log"
    t_check "(7) ... and nothing reached nginx" bash -c "! test -e '$(rtmp_recording "$W/tnginx" direct)'"
    # A destination the server side does not allow: port 1936 redirected too.
    if ipt nat PREROUTING -i "$VC" -p tcp -d "$NET_SRV.2" --dport 1936 -j REDIRECT --to-ports "$P_TUSERS"; then
        in_cli bash -c "$(declare -f rtmp_publish); rtmp_publish rtmp://$NET_SRV.2:1936/live/notallowed '$SHORT' '$W/pub-notallowed.log'"
        t_check "(7) a redirected publish to a destination not in allowed_destinations fails" test $? -ne 0
        t_check "(7) ... refused by the server side" \
            grep -q "refused: destination $NET_SRV.2:1936 is not in allowed_destinations" "$W/tserver/encryptor.log"
        t_check "(7) ... and nothing reached nginx" bash -c "! test -e '$(rtmp_recording "$W/tnginx" notallowed)'"
    else
        t_fail "(7) a second REDIRECT rule" "iptables failed"
    fi
fi

# ---------------------------------------------------------------------------------
echo "== (9) KEYS frames from a peer that holds no key"
# Whoever reaches the server side's ciphertext port can announce key_IDs it
# has seen (here: real ones, SAE_B's keys for SAE_C). KEYS frames are not
# sealed: the server side fetches no key for them; until a sealed frame
# verifies, it fetches only the key such a frame needs to be checked, and
# the others stay at the KME for the connection they were made for.
SC_B=("$T_BIN/sae-client" --kme "$(net_url B)" --kme-id KME_B --cert "$NET_DIR/certs/SAE_B.pem"
    --key "$NET_DIR/certs/SAE_B.key" --ca "$NET_DIR/certs/ca.pem")
"${SC_B[@]}" get-key SAE_C --number 6 --output ids >"$W/stolen.ids" 2>"$W/stolen.err"
t_eq "(9) SAE_B got 6 keys for SAE_C" 6 "$(grep -c . "$W/stolen.ids")"
python3 - "$W/stolen.ids" "$W/keys-frame.bin" "$W/open-frame.bin" <<'PY'
import struct, sys
ids = [l.strip() for l in open(sys.argv[1]) if l.strip()]
body = "".join(ids).encode()
# magic, type, mode one-time pad, reserved, seq, key index, offset, length
head = b"QKE\x01" + struct.pack(">BBHQIII", 1, 1, 0, 0, 0, 0, len(body))
open(sys.argv[2], "wb").write(head + body)
# a forged OPEN frame (empty destination) with key 0 and a made-up tag
open(sys.argv[3], "wb").write(b"QKE\x01" + struct.pack(">BBHQIII", 2, 1, 0, 1, 0, 0, 0) + bytes(16))
PY
# gone_at_c: how many of them KME_C no longer holds (fetched by SAE_C).
gone_at_c() {
    "$T_BIN/kme" --config "$NET_DIR/C/kme.json" --dump 2>/dev/null | jq -r '.keys[].key_ID' | sort >"$W/c.ids"
    sort "$W/stolen.ids" | comm -23 - "$W/c.ids" | wc -l
}
t_eq "(9) KME_C holds the 6 keys for SAE_C" 0 "$(gone_at_c)"
# The KEYS frame alone, on a connection held open while the server side acts on it.
exec 5<>"/dev/tcp/127.0.0.1/$P_SERVER"
cat "$W/keys-frame.bin" >&5
t_check "(9) a KEYS frame alone: the server side's key fetches stay still" wait_still 5 gone_at_c
t_eq "(9) ... and it fetched none of the 6" 0 "$(gone_at_c)"
exec 5>&-
# Then the KEYS frame and a sealed frame that does not verify.
tags_before=$(grep -c "tag failure on a OPEN frame" "$W/server/encryptor.log")
exec 5<>"/dev/tcp/127.0.0.1/$P_SERVER"
cat "$W/keys-frame.bin" "$W/open-frame.bin" >&5
tag_failed() { [ "$(grep -c "tag failure on a OPEN frame" "$W/server/encryptor.log")" -gt "$tags_before" ]; }
t_check "(9) a forged OPEN frame after it fails its tag at the server side" wait_for 30 tag_failed
t_check "(9) ...and the key fetches stay still" wait_still 5 gone_at_c
t_eq "(9) one key fetched of the 6 announced (to check that frame): 5 stay at the KME" 1 "$(gone_at_c)"
exec 5>&-
t_check "(9) the server side is still running" kill -0 "$SERVER_PID"

echo "== (8) stop and logs"
enc_stop "$USERS_PID" users
enc_stop "$SERVER_PID" server
if [ $tp_ok = 1 ]; then
    enc_stop "$TUSERS_PID" tusers
    enc_stop "$TSERVER_PID" tserver
fi
logs=("$W"/*/encryptor.log)
# Key material: a JSON "key", 32+ hex digits, or a base64 run (keys here are
# 8 KiB: their base64 has runs of 40+ characters without a '/').
t_check "no key material in the encryptor logs" \
    bash -c "! grep -Eq '\"key\"|[0-9a-fA-F]{32,}|[A-Za-z0-9+]{40,}' ${logs[*]}"
t_nomatch "taps: no sanitizer report" "$T_SANITIZER_PATTERN" "$(cat "$W/tap.out" "$W/plain.out")"
t_logs_clean "${logs[@]}"
t_logs_clean "$NET_DIR"/*/kme.log
t_summary
