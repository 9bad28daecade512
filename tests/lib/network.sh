# Creates and runs a network of KME sites on loopback: certificates, one
# config per site, one qkd-sim per link, one kme per site. Sourced (bash) by
# `make run`, the test suites and the benchmarks.
#
#   NET_BIN=build/release/bin        programs to run
#   net_init DIR "A B" "A-B"         sites and links (site IDs are letters/digits)
#   net_edit_config SITE JQ_FILTER   changes a site's kme.json before it starts
#   net_up_or_end DIR SITES LINKS [JQ_FILTER]   all of it, for a test suite
#   net_start / net_stop             all qkd-sims and kmes
#   kme_start SITE / kme_stop SITE [SIGNAL] / kme_wait SITE
#   sim_start LINK / sim_stop LINK
#   net_fwd_start NAME LISTEN TARGET / net_fwd_stop NAME   a TCP forwarder
#
# A link named in NET_DEVICE_LINKS is fed through the ETSI 014 device source
# instead of key files: sim_start runs qkd-sim --device, serving its two ends
# as ETSI 014 devices on NET_DEVICE_BASE+2i and +2i+1 (the i-th link, from 0;
# the end of the site that sorts first on the lower port), each KME its SAE
# there under its own KME ID; the devices' certificates are in
# $NET_DIR/devcerts. Writing a fault ("503", "hang", "short", "wrong-size",
# "none", optionally followed by the end 0 or 1) to $NET_DIR/links/LINK/fault
# makes the devices of that link misbehave (qkd-sim --fault-file).
#
# Site X is KME ID "KME_X" and hosts SAE "SAE_X"; the i-th site (from 1) has
# SAE port NET_SAE_BASE+i and KME port NET_KME_BASE+i. Certificates are in
# $NET_DIR/certs: ca.pem, SAE_X.pem, SAE_X.key.

NET_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NET_BIN=${NET_BIN:-$NET_ROOT/build/release/bin}
NET_SAE_BASE=${NET_SAE_BASE:-8440}
NET_KME_BASE=${NET_KME_BASE:-9440}
NET_RATE=${NET_RATE:-2000000}          # link key rate, bits/s
NET_BLOCK=${NET_BLOCK:-65536}          # link block size, bytes
NET_KEY_TTL=${NET_KEY_TTL:-3600}       # seconds an unfetched key is kept
NET_EXTRA_SAES=${NET_EXTRA_SAES:-}     # more SAEs: "SAE_X2@X SAE_Y9@Y"
NET_STOCK=${NET_STOCK:-4096}           # link keys reserved ahead of demand per pair; 0: none
NET_ADMIN_BASE=${NET_ADMIN_BASE:-}     # admin listener (metrics, health, status page) on NET_ADMIN_BASE+i; empty: none
NET_AUDIT=${NET_AUDIT:-}               # 1: each site keeps an audit log in $NET_DIR/SITE/audit.log
NET_PEER_TIMEOUT_MS=${NET_PEER_TIMEOUT_MS:-} # one inter-KME request, ms; empty: the KME's default
NET_LOG_LEVEL=${NET_LOG_LEVEL:-}       # the KMEs' log_level (debug logs the link ranges of each message); empty: info
NET_FETCH_RETRY=${NET_FETCH_RETRY:-}   # the KMEs' fetch_retry_seconds (0: every key handed out once, strictly); empty: default
NET_TAP=${NET_TAP:-}                   # tcp_tap for net_fwd_start; empty: NET_BIN's
NET_DEVICE_LINKS=${NET_DEVICE_LINKS:-} # links fed through ETSI 014 devices (qkd-sim --device), e.g. "A-C"
NET_DEVICE_BASE=${NET_DEVICE_BASE:-}   # first port of those devices; empty: NET_KME_BASE + 50
NET_DEVICE_BATCH=${NET_DEVICE_BATCH:-64}     # keys per device request (one link block)
NET_DEVICE_KEY_BITS=${NET_DEVICE_KEY_BITS:-256}

net_site_index() { # SITE -> 1-based index
    local i=1 s
    for s in $NET_SITES; do
        [ "$s" = "$1" ] && { echo $i; return 0; }
        i=$((i + 1))
    done
    return 1
}
net_sae_port() { echo $((NET_SAE_BASE + $(net_site_index "$1"))); }
net_kme_port() { echo $((NET_KME_BASE + $(net_site_index "$1"))); }
net_admin_port() { echo $((NET_ADMIN_BASE + $(net_site_index "$1"))); }
net_url() { echo "https://localhost:$(net_sae_port "$1")"; }
net_is_device_link() { case " $NET_DEVICE_LINKS " in *" $1 "*) return 0 ;; esac; return 1; }
net_device_port() { # LINK SITE: the port of the site's end of the link's devices
    local i=0 l a=${1%-*} b=${1#*-} first
    for l in $NET_LINKS; do
        [ "$l" = "$1" ] && break
        i=$((i + 1))
    done
    first=$a
    [[ "KME_$b" < "KME_$a" ]] && first=$b
    echo $((${NET_DEVICE_BASE:-$((NET_KME_BASE + 50))} + 2 * i + $([ "$2" = "$first" ] && echo 0 || echo 1)))
}

# SAEs hosted by SITE (its own SAE_SITE plus NET_EXTRA_SAES entries)
net_saes_of() {
    local e out="SAE_$1"
    for e in $NET_EXTRA_SAES; do
        [ "${e#*@}" = "$1" ] && out="$out ${e%@*}"
    done
    echo "$out"
}

json_list() { # words -> JSON array of strings
    local first=1 w
    printf '['
    for w in "$@"; do
        [ $first -eq 1 ] || printf ','
        printf '"%s"' "$w"
        first=0
    done
    printf ']'
}

net_init() { # DIR "SITES" "LINKS"
    NET_DIR=$(mkdir -p "$1" && cd "$1" && pwd)
    NET_SITES=$2
    NET_LINKS=$3
    local args=() s l saes=""
    for s in $NET_SITES; do
        args+=(--kme "KME_$s")
        saes="$saes $(net_saes_of "$s")"
    done
    for s in $saes; do args+=(--sae "$s"); done
    "$NET_ROOT/certs/mkcerts.sh" --out "$NET_DIR/certs" "${args[@]}" >/dev/null || return 1
    if [ -n "$NET_DEVICE_LINKS" ]; then
        args=(--kme QKD_SIM)
        for s in $NET_SITES; do args+=(--sae "KME_$s"); done
        "$NET_ROOT/certs/mkcerts.sh" --out "$NET_DIR/devcerts" "${args[@]}" >/dev/null || return 1
    fi
    for s in $NET_SITES; do net_write_config "$s" || return 1; done
}

net_write_config() { # SITE
    local s=$1 c=$NET_DIR/certs links="" l a b peer sep=""
    mkdir -p "$NET_DIR/$s"
    for l in $NET_LINKS; do
        a=${l%-*}; b=${l#*-}
        if [ "$a" = "$s" ]; then peer=$b; elif [ "$b" = "$s" ]; then peer=$a; else continue; fi
        mkdir -p "$NET_DIR/links/$l/$s"
        if net_is_device_link "$l"; then
            local dc=$NET_DIR/devcerts
            links="$links$sep{\"peer\":\"KME_$peer\",\"url\":\"https://localhost:$(net_kme_port "$peer")\",\"source\":{\"type\":\"etsi014\",\"url\":\"https://localhost:$(net_device_port "$l" "$s")\",\"sae_id\":\"KME_$s\",\"peer_sae_id\":\"KME_$peer\",\"cert\":\"$dc/KME_$s.pem\",\"key\":\"$dc/KME_$s.key\",\"ca\":\"$dc/ca.pem\",\"key_size\":$NET_DEVICE_KEY_BITS,\"batch\":$NET_DEVICE_BATCH,\"rate_keys_per_s\":$((NET_RATE / NET_DEVICE_KEY_BITS))}}"
        else
            links="$links$sep{\"peer\":\"KME_$peer\",\"url\":\"https://localhost:$(net_kme_port "$peer")\",\"key_dir\":\"$NET_DIR/links/$l/$s\"}"
        fi
        sep=","
    done
    local admin=""
    [ -n "$NET_ADMIN_BASE" ] && admin="\"admin_listen\": \"127.0.0.1:$(net_admin_port "$s")\","
    local extra=""
    [ "$NET_AUDIT" = 1 ] && extra="\"audit_log\": \"$NET_DIR/$s/audit.log\","
    [ -n "$NET_PEER_TIMEOUT_MS" ] && extra="$extra\"peer_timeout_ms\": $NET_PEER_TIMEOUT_MS,"
    [ -n "$NET_LOG_LEVEL" ] && extra="$extra\"log_level\": \"$NET_LOG_LEVEL\","
    [ -n "$NET_FETCH_RETRY" ] && extra="$extra\"fetch_retry_seconds\": $NET_FETCH_RETRY,"
    # The site's store key: 32 random bytes only the KME may read (README, "Sealed store").
    [ -f "$NET_DIR/$s/store.key" ] || (umask 077 && head -c 32 /dev/urandom >"$NET_DIR/$s/store.key") || return 1
    cat >"$NET_DIR/$s/kme.json" <<JSON
{
  "kme_id": "KME_$s",$admin$extra
  "data_dir": "$NET_DIR/$s/data",
  "store_key": {"file": "$NET_DIR/$s/store.key"},
  "sae_listen": "127.0.0.1:$(net_sae_port "$s")",
  "kme_listen": "127.0.0.1:$(net_kme_port "$s")",
  "sae_tls": {"cert": "$c/KME_$s.server.pem", "key": "$c/KME_$s.server.key", "client_ca": "$c/sae-ca.pem", "client_crl": "$c/sae-ca.crl"},
  "kme_tls": {"cert": "$c/KME_$s.kme.pem", "key": "$c/KME_$s.kme.key", "ca": "$c/kme-ca.pem", "crl": "$c/kme-ca.crl"},
  "saes": $(json_list $(net_saes_of "$s")),
  "links": [$links],
  "key_ttl_seconds": $NET_KEY_TTL,
  "stock_max_keys": $NET_STOCK
}
JSON
}

# net_edit_config SITE JQ_FILTER: rewrites the site's kme.json through jq.
net_edit_config() {
    local f=$NET_DIR/$1/kme.json
    jq "$2" "$f" >"$f.new" && mv "$f.new" "$f"
}

kme_start() { # SITE
    local s=$1
    "$NET_BIN/kme" --config "$NET_DIR/$s/kme.json" >>"$NET_DIR/$s/kme.log" 2>&1 &
    echo $! >"$NET_DIR/$s/kme.pid"
}
kme_pid() { cat "$NET_DIR/$1/kme.pid" 2>/dev/null; }
kme_stop() { # SITE [SIGNAL]
    local pid
    pid=$(kme_pid "$1") || return 0
    kill "-${2:-TERM}" "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rm -f "$NET_DIR/$1/kme.pid"
    return 0
}
# Ready when the SAE port answers GET status for the site's own SAE.
kme_ready() {
    local s=$1
    curl -sf --max-time 2 --cert "$NET_DIR/certs/SAE_$s.pem" --key "$NET_DIR/certs/SAE_$s.key" \
        --cacert "$NET_DIR/certs/ca.pem" "$(net_url "$s")/api/v1/keys/SAE_$s/status" >/dev/null
}
kme_wait() { # SITE [SECONDS]: up to SECONDS (30) x T_WAIT_SCALE (10), see tests/lib.sh
    local end=$((SECONDS + ${2:-30} * ${T_WAIT_SCALE:-10}))
    while [ $SECONDS -le $end ]; do
        kme_ready "$1" && return 0
        kill -0 "$(kme_pid "$1")" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

sim_start() { # LINK [extra qkd-sim args]
    local l=$1 a b
    shift
    a=${l%-*}; b=${l#*-}
    if net_is_device_link "$l"; then
        local dc=$NET_DIR/devcerts first=$a second=$b
        [[ "KME_$b" < "KME_$a" ]] && first=$b second=$a
        "$NET_BIN/qkd-sim" --device "127.0.0.1:$(net_device_port "$l" "$first")=KME_$first" \
            --device "127.0.0.1:$(net_device_port "$l" "$second")=KME_$second" \
            --cert "$dc/QKD_SIM.server.pem" --key "$dc/QKD_SIM.server.key" --client-ca "$dc/sae-ca.pem" \
            --fault-file "$NET_DIR/links/$l/fault" "$@" >>"$NET_DIR/links/$l/qkd-sim.log" 2>&1 &
        echo $! >"$NET_DIR/links/$l/qkd-sim.pid"
        return 0
    fi
    "$NET_BIN/qkd-sim" --out "$NET_DIR/links/$l/$a" --out "$NET_DIR/links/$l/$b" \
        --rate "$NET_RATE" --block-bytes "$NET_BLOCK" --state "$NET_DIR/links/$l/qkd-sim.state" "$@" \
        >>"$NET_DIR/links/$l/qkd-sim.log" 2>&1 &
    echo $! >"$NET_DIR/links/$l/qkd-sim.pid"
}
sim_stop() {
    local pid
    pid=$(cat "$NET_DIR/links/$1/qkd-sim.pid" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rm -f "$NET_DIR/links/$1/qkd-sim.pid"
    return 0
}

# Routed when every site has a route to every other (the adverts have
# reached every KME) and, going round the sites in order, each one's SAE
# gets a Status with keys for the next one's SAE (the links on those routes
# carry key: GET_STATUS counts only what the whole route can carry). Linear
# in the number of sites: one route read and one status call per site.
net_routed() {
    local s n first="" prev="" want
    want=$(( $(printf '%s\n' $NET_SITES | wc -l) - 1 ))
    for s in $NET_SITES; do
        # every other site has a route from s (kme --routes reads s's store; no request)
        n=$("$NET_BIN/kme" --config "$NET_DIR/$s/kme.json" --routes 2>/dev/null | jq '.routes | length' 2>/dev/null)
        [ "${n:-0}" -eq "$want" ] || return 1
    done
    # and keys can go round the ring of sites: the next one has keys for each (GET_STATUS
    # counts only what the whole route can carry)
    for s in $NET_SITES; do
        [ -z "$first" ] && first=$s
        [ -n "$prev" ] && { net_has_keys "$prev" "$s" || return 1; }
        prev=$s
    done
    [ "$want" -eq 0 ] || net_has_keys "$prev" "$first"
}
net_has_keys() { # FROM TO: SAE_FROM's KME reports keys it can deliver for SAE_TO
    local n
    n=$(sae_curl "SAE_$1" "/api/v1/keys/SAE_$2/status" --max-time 2 | jq -r '.stored_key_count // 0' 2>/dev/null)
    [ "${n:-0}" -gt 0 ] 2>/dev/null
}
net_wait_routed() { # [SECONDS]: up to SECONDS (30) x T_WAIT_SCALE (10)
    local end=$((SECONDS + ${1:-30} * ${T_WAIT_SCALE:-10}))
    while [ $SECONDS -le $end ]; do
        net_routed && return 0
        sleep 0.2
    done
    return 1
}

net_start() {
    local s l
    for l in $NET_LINKS; do sim_start "$l"; done
    for s in $NET_SITES; do kme_start "$s"; done
    for s in $NET_SITES; do
        kme_wait "$s" 30 || { echo "network: KME_$s did not come up; see $NET_DIR/$s/kme.log" >&2; return 1; }
    done
    net_wait_routed 30 || { echo "network: the KMEs did not learn each other's routes; see $NET_DIR/*/kme.log" >&2; return 1; }
}

# net_up_or_end DIR "SITES" "LINKS" [JQ_FILTER]: for a test suite: creates
# the network (each site's kme.json through JQ_FILTER when given), starts it
# and checks "network starts"; a network that does not start ends the suite.
net_up_or_end() {
    local dir=$1 sites=$2 links=$3 filter=${4:-} s ok=0
    if net_init "$dir" "$sites" "$links"; then
        ok=1
        if [ -n "$filter" ]; then
            for s in $sites; do net_edit_config "$s" "$filter" || ok=0; done
        fi
        [ $ok = 1 ] && net_start || ok=0
    fi
    if [ $ok -ne 1 ]; then
        t_fail "network starts" "see $dir"
        t_summary
        exit 1
    fi
    t_pass "network starts"
}

net_stop() {
    local s l
    for s in $NET_SITES; do kme_stop "$s"; done
    for l in $NET_LINKS; do sim_stop "$l"; done
}

# net_fwd_start NAME LISTEN TARGET: a TCP forwarder on loopback from port
# LISTEN to port TARGET (tcp_tap forward), ready when it returns 0 (1 if
# it ends first, or after 10 s x T_WAIT_SCALE); its
# output and errors in $NET_DIR/fwd.NAME.{out,err}. net_fwd_stop NAME ends it.
net_fwd_start() {
    local end=$((SECONDS + 10 * ${T_WAIT_SCALE:-10}))
    : >"$NET_DIR/fwd.$1.out"
    "${NET_TAP:-$NET_BIN/tcp_tap}" forward "$2" "$3" - >"$NET_DIR/fwd.$1.out" 2>>"$NET_DIR/fwd.$1.err" &
    echo $! >"$NET_DIR/fwd.$1.pid"
    while [ $SECONDS -le $end ]; do
        grep -q '^ready' "$NET_DIR/fwd.$1.out" && return 0
        kill -0 "$(cat "$NET_DIR/fwd.$1.pid")" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
net_fwd_stop() {
    local pid
    pid=$(cat "$NET_DIR/fwd.$1.pid" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rm -f "$NET_DIR/fwd.$1.pid"
}

# sae_curl SAE PATH [curl args]: an ETSI call as that SAE against its home KME
# (SAE_X is homed at site X unless listed in NET_EXTRA_SAES).
sae_home() {
    local e
    for e in $NET_EXTRA_SAES; do [ "${e%@*}" = "$1" ] && { echo "${e#*@}"; return; }; done
    echo "${1#SAE_}"
}
sae_curl() {
    local sae=$1 path=$2
    shift 2
    curl -s --cert "$NET_DIR/certs/$sae.pem" --key "$NET_DIR/certs/$sae.key" \
        --cacert "$NET_DIR/certs/ca.pem" "$@" "$(net_url "$(sae_home "$sae")")$path"
}
