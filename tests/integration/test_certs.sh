#!/usr/bin/env bash
T_SUITE=certs
. "$(dirname "$0")/../lib.sh"
# Integration suite for certs/mkcerts.sh: CA separation, subjects, SANs and
# extensions, PKCS#12 usable by openssl and curl, idempotence, incremental
# additions, reissue on SAN change, atomic failure and argument errors.

MK=$T_ROOT/certs/mkcerts.sh
W=$(mktemp -d "$T_OUT/$T_SUITE.XXXXXX")
SPID=""
cleanup() {
    if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; fi
    rm -rf "$W"
}
trap cleanup EXIT

# snapshot DIR: one line per file with mode, mtime (ns) and content hash.
snapshot() {
    (cd "$1" && shopt -s dotglob nullglob && for f in * private/*; do
        if [ -d "$f" ]; then
            printf '%s %s dir\n' "$f" "$(stat -c '%a' "$f")"
        else
            printf '%s %s %s\n' "$f" "$(stat -c '%a %.9Y' "$f")" "$(sha256sum <"$f" | cut -c1-64)"
        fi
    done)
}
# ext CERT NAME: the extension's value on one line, "critical " first if so.
ext() {
    openssl x509 -in "$1" -noout -ext "$2" 2>/dev/null |
        awk 'NR == 1 { c = ($NF == "critical") ? "critical " : ""; next }
             { sub(/^ +/, ""); v = v (v == "" ? "" : " ") $0 }
             END { printf "%s%s", c, v }'
}
subject() { openssl x509 -in "$1" -noout -subject -nameopt RFC2253 | sed 's/^subject=//'; }
verifies() { openssl verify -CAfile "$1" "$2" >/dev/null 2>&1; }
days_valid() {
    local end
    end=$(date -d "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)" +%s)
    echo $(((end - $(date +%s) + 43200) / 86400))
}

echo "== help and argument errors"
out=$("$MK" --help 2>&1); rc=$?
t_eq "--help exits 0" 0 "$rc"
t_match "--help prints usage" '^usage: mkcerts.sh --out DIR' "$out"

# bad NAME EXPECTED_MESSAGE_REGEX ARGS...: exit 2, message and usage on
# stderr, the output directory not created.
bad() {
    local name=$1 re=$2 err rc
    shift 2
    err=$("$MK" "$@" 2>&1 >/dev/null); rc=$?
    t_eq "bad args ($name): exit 2" 2 "$rc"
    t_match "bad args ($name): message" "$re" "$err"
    t_match "bad args ($name): usage line" 'usage: ' "$err"
    if [ -e "$W/bad" ]; then t_fail "bad args ($name): nothing created" "$W/bad exists"; rm -rf "$W/bad"
    else t_pass "bad args ($name): nothing created"; fi
}
bad "no arguments" 'missing --out'
bad "unknown option" 'unknown option: --bogus' --out "$W/bad" --kme A --bogus
bad "missing --out" 'missing --out' --kme A --sae S
bad "--out without value" 'requires a value' --kme A --out
bad "--kme without value" 'requires a value' --out "$W/bad" --kme
bad "--sae followed by option" 'requires a value' --out "$W/bad" --sae --kme A
bad "ID with slash" "invalid ID 'a/b'" --out "$W/bad" --kme a/b
bad "ID with space" "invalid ID" --out "$W/bad" --sae "a b"
bad "empty ID" "invalid ID" --out "$W/bad" --sae ""
bad "ID of 65 chars" "invalid ID" --out "$W/bad" --kme "$(printf 'k%.0s' $(seq 65))"
bad "same KME twice" "'A' given twice" --out "$W/bad" --kme A --kme A
bad "same SAE twice" "'S' given twice" --out "$W/bad" --sae S --kme A --sae S
bad "ID as KME and SAE" 'both as KME and as SAE' --out "$W/bad" --kme X --sae X
bad "--days 0" '--days' --out "$W/bad" --kme A --days 0
bad "--days negative" '--days' --out "$W/bad" --kme A --days -5
bad "--days not a number" '--days' --out "$W/bad" --kme A --days 1.5
bad "--days word" '--days' --out "$W/bad" --kme A --days ten
bad "no identity" 'at least one --kme, --sae, --revoke or --bundle' --out "$W/bad" --days 10
bad "bad --san" "--san" --out "$W/bad" --kme A --san 'a,b'
bad "bad --san IPv4" "--san" --out "$W/bad" --kme A --san 300.1.2.3
bad "reserved SAE ID" 'reserved' --out "$W/bad" --sae ca
bad "SAE colliding with KME files" 'collide' --out "$W/bad" --kme A --sae A.server

echo "== creation"
D=$W/net/certs
out=$("$MK" --out "$D" --kme KME_A --kme KME_B --sae SAE_A --sae SAE_B \
    --san 192.0.2.7 --san kme-a.example.org --san 2001:db8::1 2>&1); rc=$?
t_eq "first run exits 0" 0 "$rc"
[ "$rc" -eq 0 ] || printf '%s\n' "$out"
for f in sae-ca.pem private/sae-ca.key kme-ca.pem private/kme-ca.key ca.pem sae-ca.crl kme-ca.crl \
    KME_A.server.pem KME_A.server.key KME_A.kme.pem KME_A.kme.key \
    KME_B.server.pem KME_B.server.key KME_B.kme.pem KME_B.kme.key \
    SAE_A.pem SAE_A.key SAE_A.p12 SAE_B.pem SAE_B.key SAE_B.p12; do
    if [ -s "$D/$f" ]; then t_pass "exists: $f"; else t_fail "exists: $f" missing; fi
done
t_eq "no temporary directory left" "" "$(find "$D" -name '.mkcerts*')"
t_check "ca.pem is a copy of kme-ca.pem" cmp -s "$D/ca.pem" "$D/kme-ca.pem"

modes=$(cd "$D" && stat -c '%a %n' ./*.key ./*.p12 private/* | awk '$1 != 600')
t_eq "keys, p12 and the CA files in private/ are mode 0600" "" "$modes"
t_eq "private/ is mode 0700" 700 "$(stat -c %a "$D/private")"
t_eq "no CA key beside the certificates" "" "$(cd "$D" && ls sae-ca.key kme-ca.key 2>/dev/null)"
modes=$(cd "$D" && stat -c '%a %n' ./*.pem | awk '$1 != 644')
t_eq "certificates are mode 0644" "" "$modes"
curves=$(cd "$D" && for k in ./*.key; do openssl pkey -in "$k" -noout -text | grep -c 'NIST CURVE: P-256'; done | sort -u)
t_eq "every key is EC P-256" 1 "$curves"

for ca in sae-ca kme-ca; do
    t_eq "$ca basicConstraints" "critical CA:TRUE, pathlen:0" "$(ext "$D/$ca.pem" basicConstraints)"
    t_eq "$ca keyUsage" "critical Certificate Sign, CRL Sign" "$(ext "$D/$ca.pem" keyUsage)"
    t_check "$ca self-signed" verifies "$D/$ca.pem" "$D/$ca.pem"
    d=$(days_valid "$D/$ca.pem")
    t_eq "$ca valid 3650 days" 3650 "$d"
done
t_check_fails "the two CAs differ" cmp -s "$D/sae-ca.pem" "$D/kme-ca.pem"

SANS="DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:192.0.2.7, DNS:kme-a.example.org, IP Address:2001:DB8:0:0:0:0:0:1"
for k in KME_A KME_B; do
    for kind in server kme; do
        c=$D/$k.$kind.pem
        t_check "$k.$kind verifies against kme-ca" verifies "$D/kme-ca.pem" "$c"
        t_check "$k.$kind verifies against ca.pem" verifies "$D/ca.pem" "$c"
        t_check_fails "$k.$kind does NOT verify against sae-ca" verifies "$D/sae-ca.pem" "$c"
        t_eq "$k.$kind subject" "CN=$k" "$(subject "$c")"
        t_eq "$k.$kind SANs" "$SANS" "$(ext "$c" subjectAltName)"
        t_eq "$k.$kind basicConstraints" "critical CA:FALSE" "$(ext "$c" basicConstraints)"
        t_eq "$k.$kind keyUsage" "critical Digital Signature" "$(ext "$c" keyUsage)"
        t_eq "$k.$kind valid 825 days" 825 "$(days_valid "$c")"
        t_check "$k.$kind key matches" test "$(openssl pkey -in "$D/$k.$kind.key" -pubout)" = "$(openssl x509 -in "$c" -noout -pubkey)"
    done
    t_eq "$k.server EKU" "TLS Web Server Authentication" "$(ext "$D/$k.server.pem" extendedKeyUsage)"
    t_eq "$k.kme EKU" "TLS Web Server Authentication, TLS Web Client Authentication" "$(ext "$D/$k.kme.pem" extendedKeyUsage)"
    t_check "$k.server passes sslserver purpose" openssl verify -purpose sslserver -CAfile "$D/kme-ca.pem" "$D/$k.server.pem"
    t_check "$k.kme passes sslclient purpose" openssl verify -purpose sslclient -CAfile "$D/kme-ca.pem" "$D/$k.kme.pem"
done
t_check_fails "server and kme certs use different keys" cmp -s "$D/KME_A.server.key" "$D/KME_A.kme.key"
for s in SAE_A SAE_B; do
    c=$D/$s.pem
    t_check "$s verifies against sae-ca" verifies "$D/sae-ca.pem" "$c"
    t_check_fails "$s does NOT verify against kme-ca" verifies "$D/kme-ca.pem" "$c"
    t_eq "$s subject" "CN=$s" "$(subject "$c")"
    t_eq "$s EKU" "TLS Web Client Authentication" "$(ext "$c" extendedKeyUsage)"
    t_eq "$s has no SAN" "" "$(ext "$c" subjectAltName)"
    t_eq "$s basicConstraints" "critical CA:FALSE" "$(ext "$c" basicConstraints)"
    t_check_fails "$s is not a server certificate" openssl verify -purpose sslserver -CAfile "$D/sae-ca.pem" "$c"
done
serials=$(cd "$D" && for c in ./*.pem; do [ "$c" = ./ca.pem ] || openssl x509 -in "$c" -noout -serial; done)
t_eq "serial numbers distinct" "$(printf '%s\n' "$serials" | wc -l)" "$(printf '%s\n' "$serials" | sort -u | wc -l)"
short=$(printf '%s\n' "$serials" | sed 's/serial=//' | awk 'length($0) < 24')
t_eq "serial numbers carry >= 96 random bits" "" "$short"

echo "== PKCS#12"
info=$(openssl pkcs12 -info -nokeys -in "$D/SAE_A.p12" -passin pass: 2>&1); rc=$?
t_eq "p12 opens with empty password" 0 "$rc"
t_match "p12 holds the SAE certificate" 'subject=CN = SAE_A' "$info"
t_match "p12 holds the KME CA" 'subject=O = QKD Network, CN = QKD KME CA' "$info"
t_check "p12 holds the private key" sh -c "openssl pkcs12 -in '$D/SAE_A.p12' -passin pass: -nocerts -nodes | grep -q 'PRIVATE KEY'"
t_check_fails "p12 rejects a wrong password" openssl pkcs12 -info -nokeys -in "$D/SAE_A.p12" -passin pass:wrong

port=$((20000 + RANDOM % 20000))
openssl s_server -quiet -accept "127.0.0.1:$port" -cert "$D/KME_A.server.pem" -key "$D/KME_A.server.key" \
    -CAfile "$D/sae-ca.pem" -Verify 1 -verify_return_error -www >"$W/s_server.log" 2>&1 &
SPID=$!
if wait_for 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"; then
    t_check "curl --cert-type P12 authenticates to a KME server cert" \
        curl -fsS -o "$W/page" --cacert "$D/ca.pem" --cert "$D/SAE_A.p12" --cert-type P12 "https://localhost:$port/"
    t_check "curl with PEM SAE cert/key works too" \
        curl -fsS -o "$W/page" --cacert "$D/ca.pem" --cert "$D/SAE_B.pem" --key "$D/SAE_B.key" "https://127.0.0.1:$port/"
    t_check_fails "curl trusting only sae-ca rejects the KME server" \
        curl -fsS -o "$W/page" --cacert "$D/sae-ca.pem" --cert "$D/SAE_A.p12" --cert-type P12 "https://localhost:$port/"
    t_check_fails "server rejects a KME cert as SAE client cert" \
        curl -fsS -o "$W/page" --cacert "$D/ca.pem" --cert "$D/KME_B.kme.pem" --key "$D/KME_B.kme.key" "https://localhost:$port/"
else
    t_fail "openssl s_server starts" "$(cat "$W/s_server.log")"
fi
kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; SPID=""

echo "== idempotence"
before=$(snapshot "$D")
sleep 0.05
out=$("$MK" --out "$D" --kme KME_A --kme KME_B --sae SAE_A --sae SAE_B \
    --san 192.0.2.7 --san kme-a.example.org --san 2001:db8::1 2>&1); rc=$?
t_eq "re-run exits 0" 0 "$rc"
t_eq "re-run rewrites nothing (bytes, modes, mtimes)" "$before" "$(snapshot "$D")"
t_match "re-run says up to date" 'up to date' "$out"
"$MK" --out "$D" --sae SAE_B --kme KME_B --san 2001:0db8:0::0001 --san kme-a.example.org \
    --san 192.0.2.7 --sae SAE_A --kme KME_A >/dev/null 2>&1; rc=$?
t_eq "re-run in another order and IPv6 spelling exits 0" 0 "$rc"
t_eq "... and rewrites nothing" "$before" "$(snapshot "$D")"

echo "== adding identities"
"$MK" --out "$D" --kme KME_A --kme KME_B --sae SAE_A --sae SAE_B --sae SAE_C \
    --san 192.0.2.7 --san kme-a.example.org --san 2001:db8::1 >/dev/null 2>&1; rc=$?
t_eq "adding SAE_C exits 0" 0 "$rc"
after=$(snapshot "$D")
t_eq "existing files untouched when adding an SAE" "$before" "$(printf '%s\n' "$after" | grep -v '^SAE_C\.')"
t_eq "only SAE_C files added" "SAE_C.key SAE_C.p12 SAE_C.pem" "$(printf '%s\n' "$after" | grep '^SAE_C\.' | cut -d' ' -f1 | paste -sd' ' -)"
t_check "SAE_C signed by the existing sae-ca" verifies "$D/sae-ca.pem" "$D/SAE_C.pem"
before=$after

"$MK" --out "$D" --kme KME_C --days 30 >/dev/null 2>&1; rc=$?
t_eq "adding KME_C alone exits 0" 0 "$rc"
after=$(snapshot "$D")
t_eq "existing files untouched when adding a KME" "$before" "$(printf '%s\n' "$after" | grep -v '^KME_C\.')"
t_check "KME_C signed by the existing kme-ca" verifies "$D/kme-ca.pem" "$D/KME_C.kme.pem"
t_eq "KME_C honours --days 30" 30 "$(days_valid "$D/KME_C.server.pem")"
t_eq "KME_C has only the default SANs" "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1" "$(ext "$D/KME_C.kme.pem" subjectAltName)"
before=$after

echo "== SAN change reissues KME certificates only"
"$MK" --out "$D" --kme KME_C --san kme-c.example.org >/dev/null 2>&1; rc=$?
t_eq "SAN change exits 0" 0 "$rc"
after=$(snapshot "$D")
t_eq "SAN change leaves other files alone" "$(printf '%s\n' "$before" | grep -v '^KME_C\.')" "$(printf '%s\n' "$after" | grep -v '^KME_C\.')"
t_match "KME_C.server reissued with the new SAN" 'DNS:kme-c.example.org' "$(ext "$D/KME_C.server.pem" subjectAltName)"
t_match "KME_C.kme reissued with the new SAN" 'DNS:kme-c.example.org' "$(ext "$D/KME_C.kme.pem" subjectAltName)"
t_check "reissued cert verifies against the same kme-ca" verifies "$D/kme-ca.pem" "$D/KME_C.kme.pem"
before=$after

echo "== p12 password"
"$MK" --out "$D" --sae SAE_C --p12-pass 's3cret pass' >/dev/null 2>&1; rc=$?
t_eq "new --p12-pass exits 0" 0 "$rc"
t_check "p12 opens with the new password" openssl pkcs12 -info -nokeys -in "$D/SAE_C.p12" -passin 'pass:s3cret pass'
t_check_fails "p12 no longer opens with the empty password" openssl pkcs12 -info -nokeys -in "$D/SAE_C.p12" -passin pass:
after=$(snapshot "$D")
t_eq "changing the p12 password rewrites only the p12" "$(printf '%s\n' "$before" | grep -v '^SAE_C\.p12')" "$(printf '%s\n' "$after" | grep -v '^SAE_C\.p12')"
before=$after

echo "== repair"
rm -f "$D/SAE_B.key"
"$MK" --out "$D" --sae SAE_B >/dev/null 2>&1; rc=$?
t_eq "missing key: exits 0" 0 "$rc"
t_check "missing key: new key matches reissued cert" test "$(openssl pkey -in "$D/SAE_B.key" -pubout)" = "$(openssl x509 -in "$D/SAE_B.pem" -noout -pubkey)"
openssl x509 -in "$D/SAE_B.pem" -noout -pubkey >"$W/pub"
t_check "missing key: p12 holds the reissued cert" sh -c "openssl pkcs12 -in '$D/SAE_B.p12' -passin pass: -nokeys -clcerts | openssl x509 -noout -pubkey | cmp -s - '$W/pub'"
t_eq "missing key: CAs unchanged" "$(printf '%s\n' "$before" | grep -E '^(sae-ca|kme-ca|ca)\.')" "$(snapshot "$D" | grep -E '^(sae-ca|kme-ca|ca)\.')"
chmod 0644 "$D/SAE_A.key"
"$MK" --out "$D" --sae SAE_A >/dev/null 2>&1
t_eq "over-permissive key mode is restricted" 600 "$(stat -c %a "$D/SAE_A.key")"
before=$(snapshot "$D")

echo "== a CA is never regenerated"
mv "$D/private/kme-ca.key" "$W/kme-ca.key.saved"
err=$("$MK" --out "$D" --kme KME_D 2>&1 >/dev/null); rc=$?
t_check_fails "missing CA key: fails" test "$rc" -eq 0
t_match "missing CA key: says why" 'refusing to regenerate' "$err"
mv "$W/kme-ca.key.saved" "$D/private/kme-ca.key"
t_eq "missing CA key: nothing written" "$before" "$(snapshot "$D")"

echo "== atomic failure"
mkdir -p "$W/fakebin"
cat >"$W/fakebin/openssl" <<EOF
#!/bin/sh
# Fails the PKCS#12 export, passes everything else to the real openssl.
[ "\$1" = pkcs12 ] && [ "\$2" = -export ] && { echo "simulated failure" >&2; exit 1; }
exec $(command -v openssl) "\$@"
EOF
chmod +x "$W/fakebin/openssl"
err=$(PATH="$W/fakebin:$PATH" "$MK" --out "$D" --kme KME_D --sae SAE_D 2>&1 >/dev/null); rc=$?
t_check_fails "failing openssl: exits non-zero" test "$rc" -eq 0
t_match "failing openssl: clear message" 'PKCS#12 export for SAE_D failed' "$err"
t_eq "failing openssl: nothing written, no temp dir" "$before" "$(snapshot "$D")"
err=$(PATH="$W/fakebin:$PATH" "$MK" --out "$W/fresh/certs" --sae SAE_D 2>&1 >/dev/null); rc=$?
t_check_fails "failing openssl in a new DIR: exits non-zero" test "$rc" -eq 0
t_check_fails "failing openssl in a new DIR: DIR removed again" test -e "$W/fresh"
"$MK" --out "$D" --kme KME_D --sae SAE_D >/dev/null 2>&1; rc=$?
t_eq "after the failure a normal run succeeds" 0 "$rc"
t_check "KME_D issued by the same kme-ca" verifies "$D/kme-ca.pem" "$D/KME_D.server.pem"

echo "== each KME's certificates name its own site"
P=$W/site
"$MK" --out "$P" --kme KME_A:kme-a,192.0.2.10 --kme KME_B:kme-b --sae SAE_A >/dev/null 2>&1
t_eq "KME_A names kme-a and its address" "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:kme-a, IP Address:192.0.2.10" \
    "$(ext "$P/KME_A.server.pem" subjectAltName)"
t_eq "KME_B's names hold no name of KME_A" "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:kme-b" \
    "$(ext "$P/KME_B.kme.pem" subjectAltName)"
t_check_fails "KME_B's certificate does not pass for host kme-a" \
    openssl verify -CAfile "$P/kme-ca.pem" -verify_hostname kme-a "$P/KME_B.server.pem"
t_check "KME_A's passes for kme-a" openssl verify -CAfile "$P/kme-ca.pem" -verify_hostname kme-a "$P/KME_A.server.pem"
t_match "a second run rewrites nothing" 'is up to date' "$("$MK" --out "$P" --kme KME_A:kme-a,192.0.2.10 --kme KME_B:kme-b --sae SAE_A 2>&1)"
bad "--kme with a bad site name" "is neither an IP address nor a valid DNS name" --out "$W/bad" --kme 'KME_X:a b'

echo "== revocation"
t_check "SAE_A verifies against the empty CRL" \
    openssl verify -crl_check -CAfile "$P/sae-ca.pem" -CRLfile "$P/sae-ca.crl" "$P/SAE_A.pem"
out=$("$MK" --out "$P" --revoke SAE_A 2>&1); rc=$?
t_eq "--revoke SAE_A exits 0" 0 "$rc"
t_match "--revoke says which serial" "revoked SAE_A.pem \(serial [0-9A-F]+\)" "$out"
t_check_fails "SAE_A no longer verifies with the CRL" \
    openssl verify -crl_check -CAfile "$P/sae-ca.pem" -CRLfile "$P/sae-ca.crl" "$P/SAE_A.pem"
"$MK" --out "$P" --revoke SAE_A >/dev/null 2>&1
t_eq "revoking again lists it once" 1 "$(openssl crl -in "$P/sae-ca.crl" -noout -text | grep -c 'Serial Number')"
"$MK" --out "$P" --revoke KME_B >/dev/null 2>&1
t_eq "a KME's two certificates are revoked together" 2 "$(openssl crl -in "$P/kme-ca.crl" -noout -text | grep -c 'Serial Number')"
err=$("$MK" --out "$P" --revoke SAE_Q 2>&1); rc=$?
t_check_fails "--revoke of an unknown ID fails" test "$rc" -eq 0
t_match "--revoke of an unknown ID says so" "no certificate of SAE_Q" "$err"

echo "== bundles hold what one daemon may read"
"$MK" --out "$P" --bundle KME_A="$W/bundle-a" --bundle SAE_A="$W/bundle-sae" >/dev/null 2>&1
t_eq "KME_A's bundle" "KME_A.kme.key KME_A.kme.pem KME_A.server.key KME_A.server.pem ca.pem kme-ca.crl kme-ca.pem sae-ca.crl sae-ca.pem" \
    "$(cd "$W/bundle-a" && ls | paste -sd' ' -)"
t_eq "SAE_A's bundle" "SAE_A.key SAE_A.p12 SAE_A.pem ca.pem kme-ca.crl kme-ca.pem sae-ca.crl sae-ca.pem" \
    "$(cd "$W/bundle-sae" && ls | paste -sd' ' -)"
t_eq "no bundle holds a CA key" "" "$(find "$W/bundle-a" "$W/bundle-sae" -name '*ca.key')"
t_eq "bundled keys keep mode 0600" "600" "$(stat -c %a "$W/bundle-a/KME_A.kme.key")"

echo "== IDs with every allowed character"
"$MK" --out "$D" --sae 'Sae-9_x.y' >/dev/null 2>&1; rc=$?
t_eq "ID Sae-9_x.y accepted" 0 "$rc"
t_eq "ID Sae-9_x.y subject" "CN=Sae-9_x.y" "$(subject "$D/Sae-9_x.y.pem")"

t_summary
