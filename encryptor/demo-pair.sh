# The RTMP part of the demo network (sourced by demo/star.sh after the
# KMEs are up): an RTMP server (nginx with the Debian rtmp module, application
# `live`) on 127.0.0.1:19350, the server-side encryptor in front of it as
# SAE_C of KME_C (ciphertext port 127.0.0.1:7935) and the users-side
# encryptor as SAE_B of KME_B on 127.0.0.1:1935, so keys are relayed B-A-C.
#   pair_start RUN_DIR BIN_DIR   writes configs under RUN_DIR/rtmp, starts all three
#   pair_stop                    stops them
#   pair_write_nginx_conf DIR [ERROR_LOG [ACCESS_LOG]]   only the RTMP server's nginx.conf
#                                (also used by the container image, docker/rtmp-server.sh)
#   pair_write_encryptors, pair_run_encryptors, pair_stop_pids, pair_wait_port
#                                the pair's parts, shared with the TURN pair (demo/turn.sh)
# Needs tests/lib/network.sh sourced (net_url) and the network's certificates.

PAIR_RTMP_HOST=${PAIR_RTMP_HOST:-127.0.0.1}
PAIR_RTMP_PORT=${PAIR_RTMP_PORT:-19350}
PAIR_USERS=${PAIR_USERS:-127.0.0.1:1935}
PAIR_CIPHER=${PAIR_CIPHER:-127.0.0.1:7935}
PAIR_RTMP_MODULE=${PAIR_RTMP_MODULE:-/usr/lib/nginx/modules/ngx_rtmp_module.so}

# DIR/nginx.conf: application `live` on PAIR_RTMP_HOST:PAIR_RTMP_PORT, pid in
# DIR, log in ERROR_LOG (a file or "stderr"; default DIR/nginx.log), access
# log in ACCESS_LOG (default: nginx's own).
pair_write_nginx_conf() { # DIR [ERROR_LOG [ACCESS_LOG]]
    local d=$1 access=""
    [ -n "${3:-}" ] && access=$'\n'"    access_log $3;"
    cat >"$d/nginx.conf" <<CONF
load_module $PAIR_RTMP_MODULE;
daemon off;
master_process off;
pid $d/nginx.pid;
error_log ${2:-$d/nginx.log} notice;
events { worker_connections 1024; }
rtmp {$access
    server {
        listen $PAIR_RTMP_HOST:$PAIR_RTMP_PORT;
        application live { live on; record off; }
    }
}
CONF
}

# pair_write_encryptors DIR CIPHER USERS BACKEND: DIR/server.json, the
# server-side encryptor (SAE_C of KME_C) listening on CIPHER in front of
# BACKEND, and DIR/users.json, the users-side one (SAE_B of KME_B) on USERS.
# Also the TURN pair's (demo/turn.sh).
pair_write_encryptors() {
    local d=$1 c=$NET_DIR/certs
    mkdir -p "$d"
    cat >"$d/server.json" <<JSON
{
  "role": "server",
  "listen": "$2",
  "connect": "$4",
  "peer_sae": "SAE_B",
  "kme": {"url": "$(net_url C)", "kme_id": "KME_C", "cert": "$c/SAE_C.pem", "key": "$c/SAE_C.key", "ca": "$c/ca.pem"}
}
JSON
    cat >"$d/users.json" <<JSON
{
  "role": "users",
  "listen": "$3",
  "connect": "$2",
  "peer_sae": "SAE_C",
  "kme": {"url": "$(net_url B)", "kme_id": "KME_B", "cert": "$c/SAE_B.pem", "key": "$c/SAE_B.key", "ca": "$c/ca.pem"}
}
JSON
}

# pair_run_encryptors DIR BIN_DIR: starts DIR/server.json and DIR/users.json,
# logs in DIR/{server,users}.log, pids in DIR/{server,users}.pid.
pair_run_encryptors() {
    local e
    for e in server users; do
        "$2/encryptor" --config "$1/$e.json" >>"$1/$e.log" 2>&1 &
        echo $! >"$1/$e.pid"
    done
}

# pair_stop_pids DIR FILE...: SIGTERM to the process in each DIR/FILE, then
# waits for it and removes FILE.
pair_stop_pids() {
    local d=$1 p pid
    shift
    for p in "$@"; do
        pid=$(cat "$d/$p" 2>/dev/null) || continue
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        rm -f "$d/$p"
    done
}

# pair_wait_port HOST:PORT: until something listens there (10 s).
pair_wait_port() {
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

pair_start() { # RUN_DIR BIN_DIR
    PAIR_DIR=$1/rtmp
    local bin=$2
    mkdir -p "$PAIR_DIR"
    pair_write_nginx_conf "$PAIR_DIR" || return 1
    pair_write_encryptors "$PAIR_DIR" "$PAIR_CIPHER" "$PAIR_USERS" "127.0.0.1:$PAIR_RTMP_PORT" || return 1
    nginx -p "$PAIR_DIR" -c "$PAIR_DIR/nginx.conf" >>"$PAIR_DIR/nginx.log" 2>&1 &
    echo $! >"$PAIR_DIR/nginx.pid.launch"
    pair_run_encryptors "$PAIR_DIR" "$bin"
    pair_wait_port "127.0.0.1:$PAIR_RTMP_PORT" || { echo "run: the RTMP server did not start; see $PAIR_DIR/nginx.log" >&2; return 1; }
    pair_wait_port "$PAIR_CIPHER" || { echo "run: the server-side encryptor did not start; see $PAIR_DIR/server.log" >&2; return 1; }
    pair_wait_port "$PAIR_USERS" || { echo "run: the users-side encryptor did not start; see $PAIR_DIR/users.log" >&2; return 1; }
}

pair_running() { # users|server|nginx.pid.launch
    local f=$PAIR_DIR/$1
    [ -f "$f" ] || f=$PAIR_DIR/$1.pid
    kill -0 "$(cat "$f" 2>/dev/null)" 2>/dev/null
}

pair_stop() {
    [ -n "${PAIR_DIR:-}" ] || return 0
    pair_stop_pids "$PAIR_DIR" users.pid server.pid nginx.pid.launch
    return 0
}
