#!/usr/bin/env bash
# Authentication by TLS client certificates. The SAE port answers every
# unauthenticated or unregistered caller 401 with the ETSI error body and hands
# out nothing; it speaks TLS 1.2 and 1.3 only. The KME port admits only the
# certificates of configured neighbours. As a client, a KME talks to a
# neighbour only if the neighbour's certificate names that neighbour.
# shellcheck disable=SC2034 # T_SUITE and the NET_* settings are read by the sourced files
T_SUITE=auth
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"
NET_SAE_BASE=7500
NET_KME_BASE=7600
# shellcheck source=SCRIPTDIR/../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
NET_BIN=$T_BIN
NET_EXTRA_SAES="SAE_R@A" # revoked below

dir=$(mktemp -d "$T_OUT/auth.XXXX")
W=$dir/test          # certificates and servers made by this suite
mkdir -p "$W"
FAKE_PORT=7509       # a TLS server posing as KME_B
OLD_TLS_PORT=7599    # a TLS 1.1 server (control for the TLS 1.1 check)
A3_SAE=7503          # a second KME_A whose link points at the fake server
A3_KME=7603
PIDS=()              # helpers this suite started and has not stopped yet

# stop_pid PID: stops one helper this suite started and forgets it.
stop_pid() {
    local p keep=()
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
cleanup() {
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    exec 3>&- 2>/dev/null
    exec 4>&- 2>/dev/null
    [ -n "${NET_DIR:-}" ] && sim_stop A-Z
    net_stop
}
trap cleanup EXIT

t_require_programs kme qkd-sim

# ---- helpers --------------------------------------------------------------------

C=$dir/certs
SAE_A_URL=https://localhost:$((NET_SAE_BASE + 1))
KME_A_URL=https://localhost:$((NET_KME_BASE + 1))

is_etsi_error() {
    printf '%s' "$1" | jq -e 'type == "object" and (.message | type == "string" and length > 0)
        and (.details | type == "array") and (has("keys") | not)' >/dev/null 2>&1
}
# req URL [curl args]: sets RC (curl's exit code), CODE and BODY.
req() {
    local url=$1 out
    shift
    out=$(curl -s --max-time 10 --cacert "$C/ca.pem" "$@" -w '\n%{http_code}' "$url")
    RC=$?
    CODE=${out##*$'\n'}
    BODY=${out%$'\n'*}
}
# with CERT_BASE: curl arguments for a certificate and its key.
with() { printf '%s\n' --cert "$1.pem" --key "$1.key"; }
# refused_401 NAME URL [curl args]: HTTP 401, ETSI body, no keys.
refused_401() {
    local name=$1
    shift
    req "$@"
    t_eq "$name: HTTP 401" "0 401" "$RC $CODE"
    if is_etsi_error "$BODY"; then t_pass "$name: ETSI error body"; else t_fail "$name: ETSI error body" "body [$BODY]"; fi
}
stock() { # SAE SLAVE
    curl -s --cacert "$C/ca.pem" --cert "$C/$1.pem" --key "$C/$1.key" \
        "$SAE_A_URL/api/v1/keys/$2/status" | jq -e '.stored_key_count'
}
has_stock() { [ "$(stock SAE_A SAE_B)" -gt 0 ] 2>/dev/null; }
# issued_keys: the waiting keys of both stores (IDs, master, slaves; no key material).
issued_keys() {
    local s
    for s in A B; do
        "$T_BIN/kme" --config "$NET_DIR/$s/kme.json" --dump 2>/dev/null | jq -c '.keys' || echo "dump of $s failed"
    done
}

# ca_key CA_BASE: the CA's key (mkcerts.sh keeps it in private/ beside the CA).
ca_key() {
    if [ -f "$(dirname "$1")/private/$(basename "$1").key" ]; then
        echo "$(dirname "$1")/private/$(basename "$1").key"
    else
        echo "$1.key"
    fi
}
# issue NAME CN EXTENSIONS CA_BASE [SUBJECT]: key and certificate $W/NAME.{key,pem}
# signed by CA, for subject /CN=CN unless SUBJECT is given.
issue() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "${5:-/CN=$2}" \
        -keyout "$W/$1.key" -out "$W/$1.csr" 2>/dev/null &&
        printf '%s\n' "$3" >"$W/$1.ext" &&
        openssl x509 -req -in "$W/$1.csr" -CA "$4.pem" -CAkey "$(ca_key "$4")" -CAcreateserial \
            -days 2 -extfile "$W/$1.ext" -out "$W/$1.pem" 2>/dev/null
}
# issue_expired NAME CN CA_BASE: a client certificate valid only in January 2020.
issue_expired() {
    mkdir -p "$W/ca-db" && : >"$W/ca-db/index.txt" && echo 1000 >"$W/ca-db/serial" &&
        cat >"$W/ca-db/ca.cnf" <<EOF &&
[ca]
default_ca = x
[x]
database = $W/ca-db/index.txt
new_certs_dir = $W/ca-db
serial = $W/ca-db/serial
default_md = sha256
policy = p
unique_subject = no
[p]
commonName = supplied
EOF
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
            -keyout "$W/$1.key" -out "$W/$1.csr" 2>/dev/null &&
        printf 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n' >"$W/$1.ext" &&
        openssl ca -batch -notext -config "$W/ca-db/ca.cnf" -cert "$3.pem" -keyfile "$(ca_key "$3")" \
            -startdate 20200101000000Z -enddate 20200102000000Z -extfile "$W/$1.ext" \
            -in "$W/$1.csr" -out "$W/$1.pem" >/dev/null 2>&1
}

# ---- network ----------------------------------------------------------------------

echo "== network"
if ! net_init "$dir" "A B" "A-B" || ! net_start; then
    t_fail "network starts" "see $dir"
    t_summary
    exit
fi
t_pass "network starts"
if wait_for 30 has_stock; then t_pass "site A has stock for SAE_B"; else t_fail "site A has stock for SAE_B" "none after 30 s"; fi

ENC=$SAE_A_URL/api/v1/keys/SAE_B/enc_keys
mapfile -t SAE_A_CRED < <(with "$C/SAE_A")
req "$ENC" "${SAE_A_CRED[@]}"
t_eq "control: SAE_A with its own certificate gets a key" "200 1" "$CODE $(printf '%s' "$BODY" | jq '.keys | length' 2>/dev/null)"
CONTROL_ID=$(printf '%s' "$BODY" | jq -r '.keys[0].key_ID' 2>/dev/null)

# ---- certificates for the refusals -----------------------------------------------------

echo "== certificates"
CLIENT_EXT=$'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth'
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=QKD SAE CA" -keyout "$W/rogue-ca.key" -out "$W/rogue-ca.pem" 2>/dev/null
issue rogue SAE_A "$CLIENT_EXT" "$W/rogue-ca"
t_check "made SAE_A certificate from another CA" openssl verify -CAfile "$W/rogue-ca.pem" "$W/rogue.pem"
"$T_ROOT/certs/mkcerts.sh" --out "$C" --sae SAE_X --kme KME_Z >/dev/null 2>&1
t_check "minted SAE_X with the SAE CA" openssl verify -CAfile "$C/sae-ca.pem" "$C/SAE_X.pem"
t_check "minted KME_Z with the KME CA" openssl verify -CAfile "$C/kme-ca.pem" "$C/KME_Z.kme.pem"
issue_expired expired SAE_A "$C/sae-ca"
t_match "made an expired SAE_A certificate from the SAE CA" 'notAfter=Jan  2 00:00:00 2020' \
    "$(openssl x509 -in "$W/expired.pem" -noout -enddate 2>&1)"
issue serveronly SAE_A $'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth' "$C/sae-ca"
t_check "made a server-only SAE_A certificate from the SAE CA" openssl verify -CAfile "$C/sae-ca.pem" "$W/serveronly.pem"
issue caclient SAE_A $'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,digitalSignature\nextendedKeyUsage=clientAuth' "$C/sae-ca"
t_check "made a CA certificate for SAE_A from the SAE CA" openssl verify -CAfile "$C/sae-ca.pem" "$W/caclient.pem"
issue twocn SAE_A "$CLIENT_EXT" "$C/sae-ca" "/CN=SAE_A/CN=SAE_A2"
t_match "made a certificate whose subject holds two CNs" 'CN ?= ?SAE_A, CN ?= ?SAE_A2' \
    "$(openssl x509 -in "$W/twocn.pem" -noout -subject 2>&1)"

# ---- SAE port ------------------------------------------------------------------------

echo "== SAE port: refused callers"
# The control request was the pair's first demand: A relays stock ahead of
# demand to B in the background. The stores are compared once that is done.
t_check "the stores are still (stock ahead of demand in place)" wait_still 20 issued_keys
K0=$(issued_keys)
t_match "the stores list the control key (so the check below can see new keys)" "\"$CONTROL_ID\"" "$K0"
refused_401 "no client certificate (enc_keys)" "$ENC"
refused_401 "no client certificate (status)" "$SAE_A_URL/api/v1/keys/SAE_B/status"
refused_401 "no client certificate (dec_keys)" "$SAE_A_URL/api/v1/keys/SAE_B/dec_keys?key_ID=$(cat /proc/sys/kernel/random/uuid)"
mapfile -t CRED < <(with "$W/rogue")
# GnuTLS completes the handshake with an untrusted certificate; the KME then answers 401.
refused_401 "SAE_A certificate from another CA" "$ENC" "${CRED[@]}"
mapfile -t CRED < <(with "$C/SAE_X")
refused_401 "SAE CA certificate for SAE_X, not configured at KME_A" "$ENC" "${CRED[@]}"
mapfile -t CRED < <(with "$C/SAE_B")
refused_401 "SAE_B's valid certificate at KME_A (not registered there)" "$ENC" "${CRED[@]}"
mapfile -t CRED < <(with "$W/expired")
refused_401 "expired SAE_A certificate from the SAE CA" "$ENC" "${CRED[@]}"
mapfile -t CRED < <(with "$W/serveronly")
refused_401 "SAE_A certificate without clientAuth usage" "$ENC" "${CRED[@]}"
mapfile -t CRED < <(with "$C/KME_B.kme")
refused_401 "KME_B's inter-KME certificate on the SAE port" "$ENC" "${CRED[@]}"
mapfile -t CRED < <(with "$C/KME_A.server")
refused_401 "KME_A's own server certificate as a client" "$ENC" "${CRED[@]}"
mapfile -t CRED < <(with "$W/caclient")
refused_401 "a CA certificate of the SAE CA named SAE_A" "$ENC" "${CRED[@]}"
t_match "the CA certificate: the answer says why" 'not an end-entity|is a CA' "$BODY"
mapfile -t CRED < <(with "$W/twocn")
refused_401 "a certificate naming SAE_A and SAE_A2" "$ENC" "${CRED[@]}"
t_match "two CNs: the answer says why" 'more than one CN' "$BODY"
t_eq "no key issued to the refused callers" "$K0" "$(issued_keys)"

echo "== SAE port: TLS versions"
# Control: this curl can speak TLS 1.1 when the server allows it (so the check below can fail).
mkfifo "$W/old-tls.in"
openssl s_server -accept "$OLD_TLS_PORT" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' -www \
    -cert "$C/KME_A.server.pem" -key "$C/KME_A.server.key" <"$W/old-tls.in" >"$W/old-tls.log" 2>&1 &
PIDS+=($!)
exec 3<>"$W/old-tls.in"
old_tls_up() { curl -s --max-time 2 --cacert "$C/ca.pem" --tlsv1.1 --tls-max 1.1 --ciphers 'DEFAULT:@SECLEVEL=0' \
    -o /dev/null "https://localhost:$OLD_TLS_PORT/"; }
if wait_for 5 old_tls_up; then t_pass "control: curl speaks TLS 1.1 to a TLS 1.1 server"; else t_fail "control: curl speaks TLS 1.1 to a TLS 1.1 server" "see $W/old-tls.log"; fi
for v in 1.0 1.1; do
    req "$ENC" "${SAE_A_CRED[@]}" --tlsv1.0 --tls-max "$v" --ciphers 'DEFAULT:@SECLEVEL=0'
    t_check_fails "TLS $v refused: curl fails" test "$RC" -eq 0
    t_eq "TLS $v refused: no HTTP answer" 000 "$CODE"
done
for v in 1.2 1.3; do
    out=$(curl -sv --max-time 10 --cacert "$C/ca.pem" "${SAE_A_CRED[@]}" "--tlsv$v" --tls-max "$v" \
        -w '\nHTTP %{http_code}\n' "$SAE_A_URL/api/v1/keys/SAE_B/status" 2>&1)
    t_match "TLS $v accepted: negotiated" "SSL connection using TLSv$v " "$out"
    t_match "TLS $v accepted: HTTP 200" '^HTTP 200$' "$(printf '%s' "$out" | tail -n 1)"
done

# ---- KME port ------------------------------------------------------------------------

echo "== KME port"
VERIFY=$KME_A_URL/kme/v1/verify
GOOD_BODY='{"txn_id":"x","timeout":1,"blocks":[]}'
# kme_refused NAME [curl args]: a verify call on KME_A's KME port gets 401 and the ETSI body.
kme_refused() {
    local name=$1
    shift
    refused_401 "$name" "$VERIFY" -X POST -H 'Content-Type: application/json' --data-binary "$GOOD_BODY" "$@"
}
kme_refused "KME port: no client certificate"
mapfile -t CRED < <(with "$C/SAE_A")
kme_refused "KME port: an SAE certificate" "${CRED[@]}"
mapfile -t CRED < <(with "$C/KME_Z.kme")
LOG_BEFORE=$(wc -l <"$dir/A/kme.log")
kme_refused "KME port: KME_Z, not a neighbour" "${CRED[@]}"
sleep 0.2
t_match "KME port: the log tells of refusing KME_Z" 'refused.*KME_Z' "$(tail -n +"$((LOG_BEFORE + 1))" "$dir/A/kme.log")"
mapfile -t CRED < <(with "$C/KME_A.kme")
kme_refused "KME port: KME_A's own certificate (not its neighbour)" "${CRED[@]}"
mapfile -t CRED < <(with "$C/KME_B.server")
kme_refused "KME port: KME_B's SAE-port server certificate (no clientAuth)" "${CRED[@]}"
mapfile -t CRED < <(with "$W/rogue")
kme_refused "KME port: certificate from a foreign CA" "${CRED[@]}"

mapfile -t CRED < <(with "$C/KME_B.kme")
req "$VERIFY" -X POST -H 'Content-Type: application/json' --data-binary '{"txn_id": ' "${CRED[@]}"
t_eq "KME port: neighbour KME_B with a malformed body: HTTP 400" "0 400" "$RC $CODE"
if is_etsi_error "$BODY"; then t_pass "KME port: malformed body: ETSI error body"; else t_fail "KME port: malformed body: ETSI error body" "body [$BODY]"; fi
req "$VERIFY" -X POST -H 'Content-Type: application/json' --data-binary '[1,2,3]' "${CRED[@]}"
t_eq "KME port: neighbour KME_B with a non-object body: HTTP 400" "0 400" "$RC $CODE"

# ---- client side: a neighbour presenting the wrong KME ID ------------------------------

echo "== client side: the neighbour's certificate names another KME"
# A second KME_A (own store and ports) whose link to KME_B points at a TLS server
# that presents KME_Z's certificate (same KME CA, wrong CN). Its key blocks come
# from a qkd-sim of their own. It must never send a request there.
mkdir -p "$dir/A3" "$dir/links/A-Z/A" "$dir/links/A-Z/Z"
jq --arg d "$dir" --arg sae "127.0.0.1:$A3_SAE" --arg kme "127.0.0.1:$A3_KME" --arg url "https://localhost:$FAKE_PORT" \
    '.data_dir = $d + "/A3/data" | .sae_listen = $sae | .kme_listen = $kme
     | .links[0].url = $url | .links[0].key_dir = $d + "/links/A-Z/A"' "$dir/A/kme.json" >"$dir/A3/kme.json"
# fake_server CERT_BASE LOG: a TLS server that requires a KME CA client
# certificate and logs whatever it receives.
fake_server() {
    openssl s_server -accept "$FAKE_PORT" -cert "$1.pem" -key "$1.key" -CAfile "$C/kme-ca.pem" -Verify 1 \
        <"$W/old-tls.in" >"$2" 2>&1 &
    FAKE_PID=$!
    PIDS+=("$FAKE_PID")
}
fake_stop() { stop_pid "$FAKE_PID"; }
fake_server "$C/KME_Z.kme" "$W/fake-z.log"
sim_start A-Z
"$T_BIN/kme" --config "$dir/A3/kme.json" >>"$dir/A3/kme.log" 2>&1 &
A3_PID=$!
PIDS+=("$A3_PID")
a3_ready() { curl -sf --max-time 2 --cacert "$C/ca.pem" "${SAE_A_CRED[@]}" \
    "https://localhost:$A3_SAE/api/v1/keys/SAE_A/status" >/dev/null; }
if wait_for 20 a3_ready; then t_pass "second KME_A serves"; else t_fail "second KME_A serves" "see $dir/A3/kme.log"; fi
tried() { grep -q 'alert\|error' "$W/fake-z.log"; }
if wait_for 15 tried; then t_pass "second KME_A tried to reach the fake KME_B"; else t_fail "second KME_A tried to reach the fake KME_B" "no TLS attempt in $W/fake-z.log"; fi
sleep 2
t_nomatch "no request was sent to a server presenting KME_Z" 'POST /kme/' "$(cat "$W/fake-z.log")"
t_match "second KME_A logs the certificate problem" 'link KME_B: .*(certificate|SSL)' "$(cat "$dir/A3/kme.log")"
A3_STATUS=$(curl -s --cacert "$C/ca.pem" "${SAE_A_CRED[@]}" -w ' %{http_code}' \
    "https://localhost:$A3_SAE/api/v1/keys/SAE_B/status")
t_match "second KME_A learned nothing from it: SAE_B is unknown there (400)" '"unknown slave SAE".* 400$' "$A3_STATUS"
fake_stop
# Control: the same server with KME_B's certificate does receive the KME's requests.
fake_server "$C/KME_B.kme" "$W/fake-b.log"
got_post() { grep -q 'POST /kme/v1/' "$W/fake-b.log"; }
if wait_for 15 got_post; then t_pass "control: with KME_B's certificate the fake server gets requests"; else t_fail "control: with KME_B's certificate the fake server gets requests" "see $W/fake-b.log"; fi
fake_stop
stop_pid "$A3_PID"
sim_stop A-Z

# ---- TLS from outside: suites ----------------------------------------------------------------

echo "== TLS suites, seen by openssl s_client"
# handshake PORT CERT_BASE ARGS...: 0 when s_client completes a handshake.
handshake() {
    local port=$1 base=$2
    shift 2
    openssl s_client -connect "localhost:$port" -CAfile "$C/ca.pem" -cert "$base.pem" -key "$base.key" \
        -verify_return_error "$@" </dev/null >"$W/s_client.log" 2>&1 &&
        grep -Eq '^New, TLSv1\.[23], Cipher is [A-Z]' "$W/s_client.log"
}
for port_name in "$((NET_SAE_BASE + 1)) SAE:$C/SAE_A" "$((NET_KME_BASE + 1)) KME:$C/KME_B.kme"; do
    port=${port_name%% *}
    name=${port_name#* }
    base=${name#*:}
    name=${name%%:*}
    t_check "$name port: TLS 1.3" handshake "$port" "$base" -tls1_3
    t_check "$name port: TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256" handshake "$port" "$base" -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256
    t_check "$name port: TLS 1.2 ECDHE-ECDSA-CHACHA20-POLY1305" handshake "$port" "$base" -tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305
    for c in ECDHE-ECDSA-AES128-SHA ECDHE-ECDSA-AES256-SHA384 ECDHE-ECDSA-AES128-SHA256 AES128-GCM-SHA256 AES256-SHA \
        DHE-RSA-AES128-GCM-SHA256; do
        t_check_fails "$name port: TLS 1.2 $c refused" handshake "$port" "$base" -tls1_2 -cipher "$c"
    done
    t_check_fails "$name port: TLS 1.1 refused" handshake "$port" "$base" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'
done

# ---- revocation ---------------------------------------------------------------------------------

echo "== revocation: the SAE CA's CRL, re-read on SIGHUP"
status_of() { # SAE: the HTTP status KME_A answers SAE to a status request
    curl -s -o /dev/null -w '%{http_code}' --cacert "$C/ca.pem" --cert "$C/$1.pem" --key "$C/$1.key" \
        "$SAE_A_URL/api/v1/keys/SAE_B/status"
}
t_eq "SAE_R is served before its revocation" 200 "$(status_of SAE_R)"
out=$("$T_ROOT/certs/mkcerts.sh" --out "$C" --revoke SAE_R 2>&1)
t_match "mkcerts.sh --revoke SAE_R" 'revoked SAE_R.pem' "$out"
t_eq "the CRL alone changes nothing until the KME reloads" 200 "$(status_of SAE_R)"
kill -HUP "$(kme_pid A)"
revoked_401() { [ "$(status_of SAE_R)" = 401 ]; }
t_check "after SIGHUP SAE_R is refused (401)" wait_for 30 revoked_401
req "$SAE_A_URL/api/v1/keys/SAE_B/status" --cert "$C/SAE_R.pem" --key "$C/SAE_R.key"
t_match "the refusal says the certificate is revoked" 'revoked' "$BODY"
t_eq "SAE_A is still served" 200 "$(status_of SAE_A)"
t_match "KME_A logs the reload of the CRL" 'CRL|revocation' "$(grep -i 'reload\|crl' "$dir/A/kme.log" | tail -n 5)"

# ---- the SAE pins its KME ----------------------------------------------------------------------

echo "== sae-client --kme-id: the KME's certificate must name the KME expected"
# Whoever holds KME_B's SAE-port key serves on localhost: the host name and the
# CA both pass; only the pin tells it is not KME_A.
PIN_PORT=7598
mkfifo "$W/pin.in"
openssl s_server -accept "$PIN_PORT" -www -cert "$C/KME_B.server.pem" -key "$C/KME_B.server.key" \
    -CAfile "$C/sae-ca.pem" -Verify 1 <"$W/pin.in" >"$W/pin.log" 2>&1 &
PIDS+=($!)
exec 4<>"$W/pin.in"
pin_up() { curl -s --max-time 2 --cacert "$C/ca.pem" --cert "$C/SAE_A.pem" --key "$C/SAE_A.key" -o /dev/null "https://localhost:$PIN_PORT/"; }
t_check "control: KME_B's key serves TLS on localhost, trusted by the CA" wait_for 10 pin_up
SC=("$T_BIN/sae-client" --cert "$C/SAE_A.pem" --key "$C/SAE_A.key" --ca "$C/ca.pem")
out=$("${SC[@]}" --kme "https://localhost:$PIN_PORT" --kme-id KME_A status SAE_B 2>&1); rc=$?
t_eq "pinned to KME_A, KME_B's certificate: transport error (exit 3)" 3 "$rc"
t_match "pinned to KME_A, KME_B's certificate: says why" 'KME_B|KME_A' "$out"
t_eq "nothing was sent to the impostor" 0 "$(grep -c 'GET /api' "$W/pin.log")"
out=$("${SC[@]}" --kme "$SAE_A_URL" --kme-id KME_A status SAE_B 2>&1); rc=$?
t_eq "pinned to KME_A at KME_A: served" 0 "$rc"
t_match "pinned to KME_A at KME_A: the status" '"stored_key_count"' "$out"
out=$("${SC[@]}" --kme "$SAE_A_URL" --kme-id KME_B status SAE_B 2>&1); rc=$?
t_eq "pinned to KME_B at KME_A: refused (exit 3)" 3 "$rc"
exec 4>&-

# ---- health -------------------------------------------------------------------------------

echo "== health"
for s in A B; do
    t_check "KME_$s still running" kill -0 "$(kme_pid "$s")"
done
net_stop
t_logs_clean "$dir/A/kme.log" "$dir/B/kme.log" "$dir/A3/kme.log"

t_summary
