#!/usr/bin/env bash
# sae-client command: usage errors (exit 2, nothing sent), transport errors
# (exit 3), and mutual TLS with ETSI 014 answers from an nginx that serves
# canned JSON on loopback (exit 0, or 1 for KME errors).
# shellcheck disable=SC2034 # read by lib.sh
T_SUITE=sae_client_cli
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"

CLI=$T_BIN/sae-client
W=$T_OUT/sae_client_cli
NGX=$W/nginx
ECHO_MODULE=/usr/lib/nginx/modules/ngx_http_echo_module.so
NGINX_PID=

cleanup() {
    if [ -n "$NGINX_PID" ]; then
        kill "$NGINX_PID" 2>/dev/null
        wait "$NGINX_PID" 2>/dev/null
    fi
}
trap cleanup EXIT

unset SAE_KME_URL SAE_CERT SAE_KEY SAE_CA SAE_KEY_PASSWORD
rm -rf "$W"
mkdir -p "$NGX"
: >"$W/all-stderr"

if [ ! -x "$CLI" ] || ! command -v nginx >/dev/null || ! command -v openssl >/dev/null; then
    t_fail "prerequisites" "need $CLI, nginx and openssl"
    t_summary
    exit
fi

# run ARGS...: runs the client; sets RC, OUT and ERR.
run() {
    "$CLI" "$@" >"$W/out" 2>"$W/err"
    RC=$?
    OUT=$(cat "$W/out")
    ERR=$(cat "$W/err")
    cat "$W/err" >>"$W/all-stderr"
}

# ---- throwaway PKI --------------------------------------------------------------

# issue NAME CN EXTENSIONS CA: key NAME.key and certificate NAME.pem signed by CA.
issue() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
        -keyout "$W/$1.key" -out "$W/$1.csr" 2>/dev/null &&
        printf '%s\n' "$3" >"$W/$1.ext" &&
        openssl x509 -req -in "$W/$1.csr" -CA "$W/$4.pem" -CAkey "$W/$4.key" -CAcreateserial \
            -days 2 -extfile "$W/$1.ext" -out "$W/$1.pem" 2>/dev/null
}
make_ca() {
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=$2" -keyout "$W/$1.key" -out "$W/$1.pem" 2>/dev/null
}
(
    cd "$W" &&
        make_ca ca "Test KME CA" &&
        make_ca rogue-ca "Rogue CA" &&
        issue server 127.0.0.1 "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth" ca &&
        issue client SAE_A "extendedKeyUsage=clientAuth" ca &&
        issue rogue SAE_A "extendedKeyUsage=clientAuth" rogue-ca &&
        openssl pkcs12 -export -in client.pem -inkey client.key -passout pass:s3cret -out client.p12
)
t_check "test certificates made" test -s "$W/client.p12"

# ---- canned ETSI answers ------------------------------------------------------

ID1=3fa85f64-5717-4562-b3fc-2c963f66afa6
ID2=6ba7b810-9dad-41d1-80b4-00c04fd430c8
hex_of() { od -An -v -tx1 | tr -d ' \n'; }
openssl rand -out "$W/k1.bin" 32
openssl rand -out "$W/k2.bin" 32
K1=$(hex_of <"$W/k1.bin")
K2=$(hex_of <"$W/k2.bin")
B1=$(openssl base64 -A -in "$W/k1.bin")
B2=$(openssl base64 -A -in "$W/k2.bin")
STATUS='{"source_KME_ID":"KME_A","target_KME_ID":"KME_B","master_SAE_ID":"SAE_A","slave_SAE_ID":"SAE_B","key_size":256,"stored_key_count":25,"max_key_count":1000,"max_key_per_request":128,"max_key_size":1024,"min_key_size":64,"max_SAE_ID_count":4}'
KEYS1='{"keys":[{"key_ID":"'$ID1'","key":"'$B1'"}]}'
KEYS2='{"keys":[{"key_ID":"'$ID1'","key":"'$B1'"},{"key_ID":"'$ID2'","key":"'$B2'"}]}'
LEAK='{"keys":[{"key_ID":"'$ID1'","key":"'$B1
BAD400='{"message":"size shall be a multiple of 8","details":[{"reason":"size 12 is not a multiple of 8"}]}'
DOWN503='{"message":"key store unavailable","details":[]}'
NOTFOUND='{"message":"not found","details":[]}'

# POST answers read the body (so it is logged) when the echo module exists.
if [ -f "$ECHO_MODULE" ]; then
    LOAD_ECHO="load_module $ECHO_MODULE;"
    post_answer() { printf "echo_read_request_body; echo '%s';" "$1"; }
    slow_answer() { printf "echo_sleep 3; echo '%s';" "$1"; }
    HAVE_ECHO=1
else
    LOAD_ECHO=
    post_answer() { printf "return 200 '%s';" "$1"; }
    slow_answer() { post_answer "$1"; }
    HAVE_ECHO=0
fi

write_nginx_conf() {
    cat >"$NGX/nginx.conf" <<EOF
$LOAD_ECHO
daemon off;
master_process off;
pid $NGX/nginx.pid;
error_log $NGX/error.log info;
events { worker_connections 64; }
http {
    client_body_temp_path $NGX/body;
    proxy_temp_path $NGX/proxy;
    fastcgi_temp_path $NGX/fastcgi;
    uwsgi_temp_path $NGX/uwsgi;
    scgi_temp_path $NGX/scgi;
    log_format reqlog escape=none '\$request_method \$request_uri ct=\$content_type conn=\$connection req=\$connection_requests tls=\$ssl_protocol body=\$request_body';
    access_log $NGX/access.log reqlog;
    default_type application/json;
    server {
        listen 127.0.0.1:$PORT ssl;
        ssl_certificate $W/server.pem;
        ssl_certificate_key $W/server.key;
        ssl_client_certificate $W/ca.pem;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /api/v1/keys/SAE_B/status { return 200 '$STATUS'; }
        location = "/api/v1/keys/SAE?B/status" { return 200 '$STATUS'; }
        location = /api/v1/keys/SAE_DOWN/status { return 503 '$DOWN503'; }
        location = /api/v1/keys/SAE_TEXT/status { return 200 'not JSON'; }
        location = /api/v1/keys/SAE_B/enc_keys {
            if (\$request_method = GET) { return 200 '$KEYS2'; }
            $(post_answer "$KEYS2")
        }
        location = /api/v1/keys/SAE_A/dec_keys {
            if (\$request_method = GET) { return 200 '$KEYS1'; }
            $(post_answer "$KEYS2")
        }
        location = /api/v1/keys/SAE_BAD/enc_keys { return 400 '$BAD400'; }
        location = /api/v1/keys/SAE_LEAK/enc_keys { return 200 '$LEAK'; }
        location = /api/v1/keys/SAE_SLOW/status { $(slow_answer "$STATUS") }
        location / { return 404 '$NOTFOUND'; }
    }
    server {
        listen 127.0.0.1:$STUB_PORT;
        access_log off;
        location = /stub { stub_status; }
    }
}
EOF
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Connections nginx has accepted so far (its stub_status counter).
accepts() {
    local reply
    reply=$(exec 3<>"/dev/tcp/127.0.0.1/$STUB_PORT" &&
        printf 'GET /stub HTTP/1.0\r\n\r\n' >&3 && cat <&3)
    printf '%s\n' "$reply" | awk '/server accepts/ { getline; print $1 }'
}

for _ in 1 2 3 4 5; do
    PORT=$((20000 + RANDOM % 20000))
    STUB_PORT=$((PORT + 1))
    if port_open "$PORT" || port_open "$STUB_PORT"; then continue; fi
    write_nginx_conf
    nginx -p "$NGX/" -c "$NGX/nginx.conf" -e "$NGX/error.log" >"$NGX/stdout" 2>&1 &
    NGINX_PID=$!
    if wait_for 5 port_open "$STUB_PORT" && kill -0 "$NGINX_PID" 2>/dev/null; then
        break
    fi
    cleanup
    NGINX_PID=
done
if [ -z "$NGINX_PID" ]; then
    t_fail "nginx started" "$(tail -n 5 "$NGX/error.log" 2>/dev/null)"
    t_summary
    exit
fi
t_pass "nginx serves mutual TLS on 127.0.0.1:$PORT"

URL=https://127.0.0.1:$PORT
C=(--kme "$URL" --cert "$W/client.pem" --key "$W/client.key" --ca "$W/ca.pem")

last_log() { tail -n "${1:-1}" "$NGX/access.log"; }

# ---- usage errors: exit 2, a message and a hint, nothing sent -----------------

# usage_case NAME REGEX ARGS...: exit 2 and stderr matching REGEX plus the hint.
usage_case() {
    local name=$1 regex=$2
    shift 2
    run "$@"
    if [ "$RC" -eq 2 ] && printf '%s' "$ERR" | grep -Eq -- "^sae-client: .*$regex" &&
        printf '%s' "$ERR" | grep -q "Try 'sae-client --help'"; then
        t_pass "usage: $name"
    else
        t_fail "usage: $name" "exit $RC, stderr [$ERR]"
    fi
}

BEFORE=$(accepts)
usage_case "no arguments" "missing command"
usage_case "unknown command" "unknown command 'fetch'" "${C[@]}" fetch SAE_B
usage_case "unknown option" "unknown option '--bogus'" "${C[@]}" --bogus status SAE_B
usage_case "short unknown option" "unknown option '-x'" "${C[@]}" -x status SAE_B
usage_case "option without value" "'--timeout' needs a value" "${C[@]}" status SAE_B --timeout
usage_case "non-numeric --number" "--number 'abc'" "${C[@]}" get-key SAE_B --number abc
usage_case "zero --number" "--number '0'" "${C[@]}" get-key SAE_B --number 0
usage_case "negative --size" "--size '-8'" "${C[@]}" get-key SAE_B --size -8
usage_case "numeric suffix --size" "--size '256x'" "${C[@]}" get-key SAE_B --size=256x
usage_case "non-numeric --timeout" "--timeout 'soon'" "${C[@]}" --timeout soon status SAE_B
usage_case "invalid UUID" "invalid key ID 'not-a-uuid'" "${C[@]}" get-key-with-ids SAE_A not-a-uuid
usage_case "truncated UUID" "invalid key ID" "${C[@]}" get-key-with-ids SAE_A "${ID1%?}"
usage_case "duplicate key IDs" "given twice" "${C[@]}" get-key-with-ids SAE_A "$ID1" "${ID1^^}"
usage_case "missing key ID" "needs MASTER_SAE_ID and at least one KEY_ID" "${C[@]}" get-key-with-ids SAE_A
usage_case "missing SAE ID" "status needs SLAVE_SAE_ID" "${C[@]}" status
usage_case "extra argument" "takes one SLAVE_SAE_ID" "${C[@]}" status SAE_B SAE_C
usage_case "invalid SAE ID" "invalid slave SAE ID 'SAE/B'" "${C[@]}" status SAE/B
usage_case "invalid --slave ID" "invalid --slave SAE ID" "${C[@]}" get-key SAE_B --slave 'SAE C'
usage_case "--get with --slave" "--get cannot carry additional slave" "${C[@]}" --get get-key SAE_B --slave SAE_C
usage_case "--get with two key IDs" "--get cannot carry several key IDs" "${C[@]}" get-key-with-ids --get SAE_A "$ID1" "$ID2"
usage_case "--get and --post" "exclude each other" "${C[@]}" --get --post get-key SAE_B
usage_case "--slave on status" "--slave applies to get-key only" "${C[@]}" status SAE_B --slave SAE_C
usage_case "--number on get-key-with-ids" "--number applies to get-key only" "${C[@]}" get-key-with-ids SAE_A "$ID1" --number 2
usage_case "unknown --output" "invalid --output 'xml'" "${C[@]}" --output xml get-key SAE_B
usage_case "--output hex on status" "status answers in JSON only" "${C[@]}" --output hex status SAE_B
usage_case "no KME" "no KME given" --cert "$W/client.pem" --ca "$W/ca.pem" status SAE_B
usage_case "plain http KME" "expected https://host:port" --kme "http://127.0.0.1:$PORT" status SAE_B
usage_case "--key without --cert" "needs its certificate" --kme "$URL" --key "$W/client.key" status SAE_B
run --kme "$URL" --cert "$W/missing.pem" --ca "$W/ca.pem" status SAE_B
t_eq "unreadable certificate: exit 2" 2 "$RC"
t_match "unreadable certificate: named" "cannot read certificate file '.*missing.pem'" "$ERR"
AFTER=$(accepts)
t_eq "usage errors open no connection" "$((BEFORE + 1))" "$AFTER"
t_eq "usage errors send no request" 0 "$(wc -l <"$NGX/access.log")"

run --help
t_eq "--help: exit 0" 0 "$RC"
t_match "--help: usage on stdout" "^Usage: sae-client" "$OUT"
run status --version
t_eq "--version: exit 0" 0 "$RC"
t_match "--version: prints version" "^sae-client [0-9]+\.[0-9]+\.[0-9]+$" "$OUT"

# ---- transport errors: exit 3 -------------------------------------------------------

run --kme https://127.0.0.1:1 --cert "$W/client.pem" --key "$W/client.key" --ca "$W/ca.pem" status SAE_B
t_eq "closed port: exit 3" 3 "$RC"
t_match "closed port: curl's reason" "^sae-client: request to https://127.0.0.1:1 failed: .*(connect|Connection refused)" "$ERR"

run --kme "$URL" --cert "$W/client.pem" --key "$W/client.key" --ca "$W/rogue-ca.pem" status SAE_B
t_eq "server not signed by --ca: exit 3" 3 "$RC"
t_match "server not signed by --ca: certificate problem" "certificate" "$ERR"

run --kme "https://localhost:$PORT" --cert "$W/client.pem" --key "$W/client.key" --ca "$W/ca.pem" status SAE_B
t_eq "host name not in server certificate: exit 3" 3 "$RC"

SAE_KEY_PASSWORD=wrong run --kme "$URL" --cert "$W/client.p12" --ca "$W/ca.pem" status SAE_B
t_eq "PKCS#12 with a wrong password: exit 3" 3 "$RC"

# ---- client authentication ---------------------------------------------------

run --kme "$URL" --ca "$W/ca.pem" status SAE_B
t_check_fails "no client certificate: refused" test "$RC" -eq 0
t_match "no client certificate: reported" "^sae-client: KME answered HTTP 400" "$ERR"

run --kme "$URL" --cert "$W/rogue.pem" --key "$W/rogue.key" --ca "$W/ca.pem" status SAE_B
t_check_fails "certificate from another CA: refused" test "$RC" -eq 0

# ---- status ------------------------------------------------------------------

run "${C[@]}" status SAE_B
t_eq "status: exit 0" 0 "$RC"
t_match "status: pretty JSON" '^  "source_KME_ID": "KME_A",$' "$OUT"
t_match "status: all members" '"max_SAE_ID_count": 4' "$OUT"
if command -v jq >/dev/null; then
    t_eq "status: output is the KME's JSON" "$(printf '%s' "$STATUS" | jq -cS .)" "$(printf '%s' "$OUT" | jq -cS .)"
fi
t_match "status: GET request" "^GET /api/v1/keys/SAE_B/status ct= .*tls=TLSv1\.[23] " "$(last_log)"

SAE_KME_URL=$URL SAE_CERT=$W/client.pem SAE_KEY=$W/client.key SAE_CA=$W/ca.pem run status SAE_B
t_eq "status: configuration from the environment" 0 "$RC"

SAE_KEY_PASSWORD=s3cret run --kme "$URL" --cert "$W/client.p12" --ca "$W/ca.pem" status SAE_B
t_eq "status: PKCS#12 client certificate" 0 "$RC"

run "${C[@]}" status 'SAE?B'
t_eq "status: SAE ID needing escapes" 0 "$RC"
t_match "status: SAE ID URL-encoded" "^GET /api/v1/keys/SAE%3FB/status " "$(last_log)"

run "${C[@]}" --repeat 3 status SAE_B
t_eq "keep-alive: exit 0" 0 "$RC"
t_eq "keep-alive: three answers" 3 "$(printf '%s\n' "$OUT" | grep -c '"source_KME_ID"')"
CONNS=$(last_log 3 | sed -E 's/.* conn=([0-9]+) .*/\1/' | sort -u | wc -l)
t_eq "keep-alive: one connection for three requests" 1 "$CONNS"
t_eq "keep-alive: requests 1..3 on it" "1 2 3" "$(last_log 3 | sed -E 's/.* req=([0-9]+) .*/\1/' | xargs)"

# ---- get key -------------------------------------------------------------------

run "${C[@]}" get-key SAE_B --number 2 --size 256 --output hex
t_eq "get-key hex: exit 0" 0 "$RC"
t_eq "get-key hex: KEY_ID KEY lines" "$ID1 $K1
$ID2 $K2" "$OUT"
t_match "get-key: GET with query" "^GET /api/v1/keys/SAE_B/enc_keys\?number=2&size=256 " "$(last_log)"

run "${C[@]}" get-key SAE_B --number=2 --output base64 --size=256
t_eq "get-key base64: KEY_ID KEY lines" "$ID1 $B1
$ID2 $B2" "$OUT"
t_eq "get-key base64: decodes to the key" "$K1" "$(printf '%s' "$OUT" | head -n 1 | cut -d' ' -f2 | base64 -d | hex_of)"

run "${C[@]}" --output ids get-key SAE_B --number 2
t_eq "get-key ids: key IDs only" "$ID1
$ID2" "$OUT"

run "${C[@]}" get-key SAE_B --number 2
t_eq "get-key json: exit 0" 0 "$RC"
if command -v jq >/dev/null; then
    t_eq "get-key json: the KME's container" "$(printf '%s' "$KEYS2" | jq -cS .)" "$(printf '%s' "$OUT" | jq -cS .)"
else
    t_match "get-key json: the KME's keys" "\"key\": \"$B2\"" "$OUT"
fi

run "${C[@]}" get-key SAE_B --number 2 --size 256 --slave SAE_C --slave SAE_D --output ids
t_eq "get-key --slave: exit 0" 0 "$RC"
t_match "get-key --slave: POST as JSON" "^POST /api/v1/keys/SAE_B/enc_keys ct=application/json " "$(last_log)"
if [ "$HAVE_ECHO" = 1 ]; then
    t_eq "get-key --slave: body" \
        'body={"number":2,"size":256,"additional_slave_SAE_IDs":["SAE_C","SAE_D"]}' \
        "$(last_log | sed -E 's/.* (body=)/\1/')"
fi

run "${C[@]}" --post get-key SAE_B --number 2 --output ids
t_eq "get-key --post: exit 0" 0 "$RC"
t_match "get-key --post: POST" "^POST /api/v1/keys/SAE_B/enc_keys " "$(last_log)"

run "${C[@]}" get-key SAE_B --number 3
t_eq "get-key: short container refused" 1 "$RC"
t_match "get-key: short container reported" "unexpected key container \(2 keys instead of 3\)" "$ERR"

run "${C[@]}" get-key SAE_LEAK --size 256
t_eq "get-key: truncated container refused" 1 "$RC"
t_nomatch "get-key: no key bytes in the error" "${B1:0:12}" "$ERR"

# ---- KME errors: exit 1 ------------------------------------------------------------

run "${C[@]}" get-key SAE_BAD --size 12
t_eq "HTTP 400: exit 1" 1 "$RC"
t_eq "HTTP 400: ETSI message and detail" \
    "sae-client: KME answered HTTP 400: size shall be a multiple of 8 (size 12 is not a multiple of 8)" "$ERR"
t_eq "HTTP 400: nothing on stdout" "" "$OUT"

run "${C[@]}" status SAE_DOWN
t_eq "HTTP 503: exit 1" 1 "$RC"
t_eq "HTTP 503: ETSI message" "sae-client: KME answered HTTP 503: key store unavailable" "$ERR"

run "${C[@]}" status SAE_NOBODY
t_eq "HTTP 404: exit 1" 1 "$RC"

run "${C[@]}" status SAE_TEXT
t_eq "non-JSON answer: exit 1" 1 "$RC"
t_match "non-JSON answer: reported" "KME answered HTTP 200 with an unusable body" "$ERR"

# ---- get key with key IDs --------------------------------------------------------

run "${C[@]}" get-key-with-ids SAE_A "${ID1^^}" --output hex
t_eq "get-key-with-ids: exit 0" 0 "$RC"
t_eq "get-key-with-ids: hex line" "$ID1 $K1" "$OUT"
t_match "get-key-with-ids: GET with lower-case key_ID" "^GET /api/v1/keys/SAE_A/dec_keys\?key_ID=$ID1 " "$(last_log)"

run "${C[@]}" get-key-with-ids SAE_A "$ID1" "$ID2" --output base64
t_eq "get-key-with-ids POST: exit 0" 0 "$RC"
t_eq "get-key-with-ids POST: base64 lines" "$ID1 $B1
$ID2 $B2" "$OUT"
t_match "get-key-with-ids: several IDs POST" "^POST /api/v1/keys/SAE_A/dec_keys ct=application/json " "$(last_log)"
if [ "$HAVE_ECHO" = 1 ]; then
    t_eq "get-key-with-ids POST: body" "body={\"key_IDs\":[{\"key_ID\":\"$ID1\"},{\"key_ID\":\"$ID2\"}]}" \
        "$(last_log | sed -E 's/.* (body=)/\1/')"
fi

run "${C[@]}" get-key-with-ids SAE_A "$ID2"
t_eq "get-key-with-ids: missing key refused" 1 "$RC"
t_match "get-key-with-ids: missing key reported" "key $ID2 is missing|keys instead of" "$ERR"

# ---- timeout (last: nginx logs the slow request only when it ends) -------------

if [ "$HAVE_ECHO" = 1 ]; then
    run "${C[@]}" --timeout 300 status SAE_SLOW
    t_eq "timeout: exit 3" 3 "$RC"
    t_match "timeout: reported" "[Tt]imed? ?out" "$ERR"
fi

# ---- sanitizers ------------------------------------------------------------------

t_nomatch "no sanitizer reports" "Sanitizer|runtime error" "$(cat "$W/all-stderr")"

t_summary
