# shellcheck shell=bash
# The set-up around a WebRTC call through an encryptor pair, shared by
# tests/integration/test_turn_call.sh and tests/bench/call_economy.sh.
# Needs W (the work directory) and PIDS (an array the caller's clean-up
# kills).
#
#   call_veth_up NAME ADDR
#       Chromium gathers candidates only on a network other than loopback:
#       in a namespace that has only lo up (as the suites run), adds the veth
#       pair NAME/NAMEp with ADDR/24. 0 when there is such a network.
#   call_veth_down NAME      removes that pair (nothing when it was not made)
#   call_coturn_start PORT RELAY_MIN RELAY_MAX
#       coturn on 127.0.0.1:PORT, TCP only, long-term credentials demo/demo
#       in realm qkd.demo, relayed addresses on loopback from the given port
#       range; its log in $W/turn/turn.log.
#   call_page_start PORT
#       the call page's server (webrtc_server.py) on PORT, its results in
#       $W/page and its output in $W/page.out ("ready" once it listens).

CALL_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

call_veth_up() {
    ip -o link show up | grep -vq ' lo:' && return 0
    ip link add "$1" type veth peer name "${1}p" && ip addr add "$2/24" dev "$1" &&
        ip link set "${1}p" up && ip link set "$1" up
}

call_veth_down() { ip link del "$1" 2>/dev/null; }

call_coturn_start() {
    mkdir -p "$W/turn"
    turnserver -n -v --listening-ip=127.0.0.1 --listening-port="$1" --relay-ip=127.0.0.1 \
        --min-port="$2" --max-port="$3" --lt-cred-mech --user=demo:demo --realm=qkd.demo \
        --allow-loopback-peers --no-cli --no-tls --no-dtls --no-udp --no-tcp-relay \
        --log-file="$W/turn/turn.log" --simple-log --no-stdout-log \
        --pidfile="$W/turn/turn.pid" --userdb="$W/turn/turndb" >"$W/turn/stdout.log" 2>&1 &
    PIDS+=($!)
}

call_page_start() {
    mkdir -p "$W/page"
    python3 "$CALL_LIB/webrtc_server.py" "$1" "$CALL_LIB" "$W/page" >"$W/page.out" 2>&1 &
    PIDS+=($!)
}
