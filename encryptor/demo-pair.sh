# The RTMP part of the demo network (sourced by demo/star.sh after the
# KMEs are up): an RTMP server (nginx with the Debian rtmp module, application
# `live`) on 127.0.0.1:19350, the server-side encryptor in front of it as
# SAE_C of KME_C (ciphertext port 127.0.0.1:7935) and the users-side
# encryptor as SAE_B of KME_B on 127.0.0.1:1935, so keys are relayed B-A-C.
#   pair_start RUN_DIR BIN_DIR   writes configs under RUN_DIR/rtmp, starts all three
#   pair_stop                    stops them
#   pair_write_nginx_conf DIR [ERROR_LOG [ACCESS_LOG]]   only the RTMP server's nginx.conf
#                                (also used by the container image, docker/rtmp-server.sh)
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

pair_write_configs() { # DIR
    local d=$1 c=$NET_DIR/certs
    mkdir -p "$d"
    pair_write_nginx_conf "$d" || return 1
    cat >"$d/server.json" <<JSON
{
  "role": "server",
  "listen": "$PAIR_CIPHER",
  "connect": "127.0.0.1:$PAIR_RTMP_PORT",
  "peer_sae": "SAE_B",
  "kme": {"url": "$(net_url C)", "kme_id": "KME_C", "cert": "$c/SAE_C.pem", "key": "$c/SAE_C.key", "ca": "$c/ca.pem"}
}
JSON
    cat >"$d/users.json" <<JSON
{
  "role": "users",
  "listen": "$PAIR_USERS",
  "connect": "$PAIR_CIPHER",
  "peer_sae": "SAE_C",
  "kme": {"url": "$(net_url B)", "kme_id": "KME_B", "cert": "$c/SAE_B.pem", "key": "$c/SAE_B.key", "ca": "$c/ca.pem"}
}
JSON
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
    pair_write_configs "$PAIR_DIR" || return 1
    nginx -p "$PAIR_DIR" -c "$PAIR_DIR/nginx.conf" >>"$PAIR_DIR/nginx.log" 2>&1 &
    echo $! >"$PAIR_DIR/nginx.pid.launch"
    "$bin/encryptor" --config "$PAIR_DIR/server.json" >>"$PAIR_DIR/server.log" 2>&1 &
    echo $! >"$PAIR_DIR/server.pid"
    "$bin/encryptor" --config "$PAIR_DIR/users.json" >>"$PAIR_DIR/users.log" 2>&1 &
    echo $! >"$PAIR_DIR/users.pid"
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
    local p pid
    [ -n "${PAIR_DIR:-}" ] || return 0
    for p in users.pid server.pid nginx.pid.launch; do
        pid=$(cat "$PAIR_DIR/$p" 2>/dev/null) || continue
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        rm -f "$PAIR_DIR/$p"
    done
    return 0
}
