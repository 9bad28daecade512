#!/usr/bin/env bash
# `make run`: the demo network of docs/ARCHITECTURE.md on loopback, in the foreground.
# The star: hub A with QKD links A-B and A-C fed by qkd-sim: A-B with key
# files, A-C through the ETSI 014 device source (qkd-sim --device serves its
# two ends as ETSI 014 devices on 9492 and 9493; README, "Link key from a QKD
# device"); SAE ports
# 8441-8443, KME ports 9441-9443, admin listeners (metrics, health, status
# page) 8841-8843; audit logs in run/<site>/audit.log; certificates in
# run/certs; data in run/
# (kept across restarts). Then the RTMP pair of encryptor/demo-pair.sh: an
# RTMP server on 127.0.0.1:19350 behind the server-side encryptor (site C)
# and the users-side encryptor (site B) on 127.0.0.1:1935. Then the TURN pair
# of demo/turn.sh, the path of OpenMeetings' media: coturn on 127.0.0.1:3479
# behind the server-side encryptor (site C), reachable through the
# users-side encryptor (site B) at 127.0.0.1:3478 over TCP (user demo,
# password demo, realm qkd.demo). Prints `ready` and commands to try once
# every site has keys for every other, the RTMP pair listens and a TURN
# allocation through the TURN pair worked; Ctrl-C stops everything.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build/release}" && pwd)
. "$ROOT/tests/lib/network.sh"
. "$ROOT/encryptor/demo-pair.sh"
. "$ROOT/demo/turn.sh"
NET_BIN=$BUILD/bin
NET_SAE_BASE=8440
NET_KME_BASE=9440
NET_ADMIN_BASE=8840
NET_AUDIT=1
NET_DEVICE_LINKS="A-C"
RUN=$ROOT/run

stopping=0
shutdown() {
    [ $stopping -eq 1 ] && return
    stopping=1
    echo
    echo "stopping the network..."
    turn_stop
    pair_stop
    net_stop
    echo "stopped; keys and link blocks are kept in $RUN"
    exit 0
}
trap shutdown INT TERM

net_init "$RUN" "A B C" "A-B A-C" || { echo "run: cannot create the network in $RUN" >&2; exit 1; }
if ! net_start || ! pair_start "$RUN" "$NET_BIN" || ! turn_start "$RUN" "$NET_BIN" || ! turn_check; then
    turn_stop
    pair_stop
    net_stop
    exit 1
fi

cat <<TXT
ready
  sites: KME_A  SAE port https://localhost:8441  KME port 9441  (SAE_A; the hub)
         KME_B  SAE port https://localhost:8442  KME port 9442  (SAE_B)
         KME_C  SAE port https://localhost:8443  KME port 9443  (SAE_C)
  links: A-B and A-C fed by qkd-sim at $NET_RATE bit/s; logs in $RUN/<site>/kme.log
         A-B by key files; A-C through ETSI 014 devices (qkd-sim --device on 9492 and 9493;
         each KME an SAE of its device, certificates in $RUN/devcerts)
  audit: one line per key handed out in $RUN/<site>/audit.log
  admin: status page, /metrics, /healthz, /readyz on http://127.0.0.1:8841/ (A), 8842 (B), 8843 (C)

Try, from $ROOT in another terminal (SAE_B and SAE_C share keys through A):
  curl --cert run/certs/SAE_B.pem --key run/certs/SAE_B.key --cacert run/certs/ca.pem \\
       https://localhost:8442/api/v1/keys/SAE_C/status
  curl --cert run/certs/SAE_B.pem --key run/certs/SAE_B.key --cacert run/certs/ca.pem \\
       'https://localhost:8442/api/v1/keys/SAE_C/enc_keys?number=2&size=256'
  curl --cert run/certs/SAE_C.pem --key run/certs/SAE_C.key --cacert run/certs/ca.pem \\
       'https://localhost:8443/api/v1/keys/SAE_B/dec_keys?key_ID=<a key_ID from above>'
  build/release/bin/kme --config run/B/kme.json --routes

RTMP through the encryptor pair (users side 127.0.0.1:1935 at B, server side at C
in front of the RTMP server on 127.0.0.1:19350; pads relayed B-A-C):
  ffmpeg -re -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440 \\
         -c:v libx264 -preset veryfast -g 50 -c:a aac -f flv rtmp://127.0.0.1:1935/live/demo
  ffplay rtmp://127.0.0.1:1935/live/demo      (or: ffmpeg -i rtmp://127.0.0.1:1935/live/demo -f null -)
  logs: $RUN/rtmp/users.log, $RUN/rtmp/server.log

TURN over TCP through the encryptor pair, the path of OpenMeetings' media (users side
127.0.0.1:3478 at B, server side at C in front of coturn on 127.0.0.1:3479; user demo,
password demo, realm qkd.demo): a TURN allocation through the pair worked ($TURN_ALLOCATED
relayed). As a WebRTC ICE server: {urls: 'turn:127.0.0.1:3478?transport=tcp',
username: 'demo', credential: 'demo'} with iceTransportPolicy 'relay'.
  python3 demo/turn_allocate.py 127.0.0.1 3478 demo demo qkd.demo
  logs: $RUN/turn/users.log, $RUN/turn/server.log, $RUN/turn/coturn.log

Ctrl-C stops the network.
TXT

# Stay in the foreground; report a site that dies.
while true; do
    for s in $NET_SITES; do
        if ! kill -0 "$(kme_pid "$s")" 2>/dev/null; then
            echo "KME_$s stopped unexpectedly; see $RUN/$s/kme.log" >&2
            turn_stop
            pair_stop
            net_stop
            exit 1
        fi
    done
    for p in users server nginx.pid.launch; do
        if ! pair_running "$p"; then
            echo "the RTMP pair stopped unexpectedly ($p); see $RUN/rtmp/" >&2
            turn_stop
            pair_stop
            net_stop
            exit 1
        fi
    done
    for p in users server coturn; do
        if ! turn_running "$p"; then
            echo "the TURN pair stopped unexpectedly ($p); see $RUN/turn/" >&2
            turn_stop
            pair_stop
            net_stop
            exit 1
        fi
    done
    sleep 1 &
    wait $! 2>/dev/null
done
