# shellcheck shell=bash
# The encryptor pairs of the suites and the benchmarks: their configs and
# their processes. Sourced (bash) after tests/lib/network.sh; needs NET_DIR
# (the network's certificates), W (the work directory, one subdirectory per
# encryptor), PIDS (an array the caller's clean-up kills) and NET_BIN.
#
#   enc_config NAME ROLE SITE PEER LISTEN CONNECT [MEMBERS]
#       writes $W/NAME/encryptor.json: an encryptor in ROLE (server|users)
#       that is SAE_SITE at KME_SITE, paired with SAE PEER, listening on
#       LISTEN and connecting to CONNECT (empty: no "connect"); MEMBERS are
#       more JSON members, as text ("admin_listen": ..., pad settings).
#   enc_start NAME
#       runs it, logging to $W/NAME/encryptor.log; sets ENC_PID and adds it
#       to PIDS; 0 once it logs that it is ready (1 if it ends first, or
#       after 20 s x T_WAIT_SCALE, see tests/lib.sh).
#   enc_stop PID NAME [LABEL]
#       (suites only: tests/lib.sh) SIGTERM; checks the exit status 0 and
#       the totals line, each check's name prefixed with LABEL.

enc_config() {
    local c=$NET_DIR/certs connect=""
    [ -n "$6" ] && connect="\"connect\": \"$6\", "
    mkdir -p "$W/$1"
    cat >"$W/$1/encryptor.json" <<JSON
{
  "role": "$2",
  "listen": "$5", $connect
  "peer_sae": "$4",
  "kme": {"url": "$(net_url "$3")", "kme_id": "KME_$3", "cert": "$c/SAE_$3.pem", "key": "$c/SAE_$3.key", "ca": "$c/ca.pem"},
  "log_level": "info"${7:+,
  $7}
}
JSON
}

enc_start() {
    local end=$((SECONDS + 20 * ${T_WAIT_SCALE:-10}))
    "$NET_BIN/encryptor" --config "$W/$1/encryptor.json" 2>"$W/$1/encryptor.log" &
    ENC_PID=$!
    PIDS+=("$ENC_PID")
    while [ $SECONDS -le $end ]; do
        grep -qs " ready: " "$W/$1/encryptor.log" && return 0
        kill -0 "$ENC_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

enc_stop() {
    kill -TERM "$1" 2>/dev/null
    wait "$1"
    t_eq "${3:-}$2 encryptor stops with status 0 on SIGTERM" 0 "$?"
    t_check "${3:-}$2 encryptor logged its totals" grep -q "stopped: " "$W/$2/encryptor.log"
}
