# The TURN part of the demo network (sourced by demo/star.sh after the KMEs
# are up), the path OpenMeetings' media take through the appliance (README,
# "OpenMeetings"): coturn on 127.0.0.1:3479 (TURN over TCP, long-term
# credentials demo/demo, realm qkd.demo, relayed addresses on loopback),
# the server-side encryptor in front of it as SAE_C of KME_C (ciphertext
# port 127.0.0.1:7936) and the users-side encryptor as SAE_B of KME_B on
# 127.0.0.1:3478, so every TURN byte crosses the pair and its pads are
# relayed B-A-C.
#   turn_start RUN_DIR BIN_DIR   writes configs under RUN_DIR/turn, starts coturn and the pair
#   turn_check                   one TURN allocation through the pair (demo/turn_allocate.py)
#   turn_running users|server|coturn
#   turn_stop                    stops them
# Needs tests/lib/network.sh and encryptor/demo-pair.sh sourced (the pair's
# parts) and the network's certificates.

TURN_USERS=${TURN_USERS:-127.0.0.1:3478}
TURN_CIPHER=${TURN_CIPHER:-127.0.0.1:7936}
TURN_SERVER=${TURN_SERVER:-127.0.0.1:3479}
TURN_USER=demo
TURN_PASSWORD=demo
TURN_REALM=qkd.demo
TURN_DEMO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

turn_start() { # RUN_DIR BIN_DIR
    TURN_DIR=$1/turn
    local bin=$2
    command -v turnserver >/dev/null || { echo "run: turnserver (Debian package coturn) is not installed; make deps installs it" >&2; return 1; }
    pair_write_encryptors "$TURN_DIR" "$TURN_CIPHER" "$TURN_USERS" "$TURN_SERVER" || return 1
    # TCP from the clients only; relayed addresses on loopback; no config file, no CLI.
    turnserver -n --listening-ip="${TURN_SERVER%:*}" --listening-port="${TURN_SERVER##*:}" \
        --relay-ip=127.0.0.1 --allow-loopback-peers --lt-cred-mech --user="$TURN_USER:$TURN_PASSWORD" \
        --realm="$TURN_REALM" --no-udp --no-tls --no-dtls --no-tcp-relay --no-cli \
        --log-file="$TURN_DIR/coturn.log" --simple-log --no-stdout-log --pidfile="$TURN_DIR/coturn.pid.file" \
        --userdb="$TURN_DIR/turndb" >>"$TURN_DIR/coturn.out" 2>&1 &
    echo $! >"$TURN_DIR/coturn.pid"
    pair_run_encryptors "$TURN_DIR" "$bin"
    pair_wait_port "$TURN_SERVER" || { echo "run: coturn did not start; see $TURN_DIR/coturn.log" >&2; return 1; }
    pair_wait_port "$TURN_CIPHER" || { echo "run: the TURN server-side encryptor did not start; see $TURN_DIR/server.log" >&2; return 1; }
    pair_wait_port "$TURN_USERS" || { echo "run: the TURN users-side encryptor did not start; see $TURN_DIR/users.log" >&2; return 1; }
}

# One allocation through the pair; retried while the encryptors get their
# first pads (up to 60 s).
turn_check() {
    local i out
    for i in $(seq 1 60); do
        out=$(python3 "$TURN_DEMO_DIR/turn_allocate.py" "${TURN_USERS%:*}" "${TURN_USERS##*:}" \
            "$TURN_USER" "$TURN_PASSWORD" "$TURN_REALM" 2>&1) && { TURN_ALLOCATED=${out#allocated }; return 0; }
        sleep 1
    done
    echo "run: no TURN allocation through the pair: $out; see $TURN_DIR/" >&2
    return 1
}

turn_running() { # users|server|coturn
    kill -0 "$(cat "$TURN_DIR/$1.pid" 2>/dev/null)" 2>/dev/null
}

turn_stop() {
    [ -n "${TURN_DIR:-}" ] || return 0
    pair_stop_pids "$TURN_DIR" users.pid server.pid coturn.pid
    return 0
}
