#!/usr/bin/env bash
# certs/mkcerts.sh: owns the network's certificate tooling: the SAE CA and the
# KME CA, each KME's SAE-port server certificate and KME-to-KME certificate,
# and each SAE's client certificate (PEM and PKCS#12). Idempotent (existing
# valid files are never rewritten, existing CAs never regenerated) and atomic
# (everything is built in a temporary directory inside DIR and moved into
# place only at the end).
set -euo pipefail
umask 077

PROG=${0##*/}
USAGE="usage: $PROG --out DIR [--kme ID]... [--sae ID]... [--san NAME_OR_IP]... [--days N] [--p12-pass PASS]"
CA_DAYS=3650
MAX_DAYS=36500
ID_RE='^[A-Za-z0-9._-]{1,64}$'

print_help() {
    cat <<EOF
$USAGE

Creates (idempotently) the certificates of a QKD key management network in DIR:
  sae-ca.pem, sae-ca.key       CA that signs SAE client certificates
  kme-ca.pem, kme-ca.key       CA that signs every KME certificate
  ca.pem                       copy of kme-ca.pem (what SAEs trust for KME servers)
  <KME>.server.pem/.key        KME server certificate for the SAE port (serverAuth)
  <KME>.kme.pem/.key           KME-to-KME certificate (serverAuth, clientAuth)
  <SAE>.pem/.key               SAE client certificate (clientAuth)
  <SAE>.p12                    PKCS#12 of the SAE key, certificate and ca.pem

Options:
  --out DIR          output directory (required; created if missing)
  --kme ID           KME identity (repeatable)
  --sae ID           SAE identity (repeatable)
  --san NAME_OR_IP   extra subjectAltName for KME certificates (repeatable);
                     localhost, 127.0.0.1 and ::1 are always included
  --days N           validity of KME and SAE certificates (default 825; CAs 3650)
  --p12-pass PASS    password of the .p12 files (default: empty)
  --help             print this help

IDs match ${ID_RE}. Keys are EC P-256 (mode 0600), certificates mode 0644.
Re-running with the same arguments rewrites nothing; new identities reuse the CAs.
EOF
}

usage_error() {
    printf '%s: %s\n%s\n' "$PROG" "$1" "$USAGE" >&2
    exit 2
}

# ---------------------------------------------------------------- addresses

# ipv4_canon ADDR: prints the canonical dotted quad, fails if ADDR is not one.
ipv4_canon() {
    local re='^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$' i out=""
    [[ $1 =~ $re ]] || return 1
    for i in 1 2 3 4; do
        local o=$((10#${BASH_REMATCH[i]}))
        ((o <= 255)) || return 1
        out+="${out:+.}$o"
    done
    printf '%s' "$out"
}

# ipv6_canon ADDR: prints the address as eight colon-separated groups of
# upper-case hex without leading zeros (the form OpenSSL prints); fails if
# ADDR is not an IPv6 address.
ipv6_canon() {
    local s=${1,,} v4 q hg=() tg=() groups=() g n out=""
    [[ $s == *:* && $s =~ ^[0-9a-f:.]+$ ]] || return 1
    if [[ $s == *.* ]]; then
        v4=$(ipv4_canon "${s##*:}") || return 1
        IFS=. read -r -a q <<<"$v4"
        s="${s%:*}:$(printf '%x:%x' $((q[0] * 256 + q[1])) $((q[2] * 256 + q[3])))"
    fi
    [[ $s == *::*::* ]] && return 1
    if [[ $s == :* && $s != ::* ]] || [[ $s == *: && $s != *:: ]]; then return 1; fi
    if [[ $s == *::* ]]; then
        IFS=: read -r -a hg <<<"${s%%::*}"
        IFS=: read -r -a tg <<<"${s#*::}"
        n=$((8 - ${#hg[@]} - ${#tg[@]}))
        ((n >= 1)) || return 1
        groups=("${hg[@]}")
        while ((n-- > 0)); do groups+=(0); done
        groups+=("${tg[@]}")
    else
        IFS=: read -r -a groups <<<"$s"
    fi
    ((${#groups[@]} == 8)) || return 1
    for g in "${groups[@]}"; do
        [[ $g =~ ^[0-9a-f]{1,4}$ ]] || return 1
        out+="${out:+:}$(printf '%X' "0x$g")"
    done
    printf '%s' "$out"
}

# san_entry VALUE: prints the canonical subjectAltName entry (IP:... or DNS:...).
san_entry() {
    local v=$1 c
    if c=$(ipv4_canon "$v"); then printf 'IP:%s' "$c"; return 0; fi
    if c=$(ipv6_canon "$v"); then printf 'IP:%s' "$c"; return 0; fi
    [[ $v == *:* ]] && return 1
    [[ $v =~ ^[0-9.]+$ ]] && return 1
    [[ $v =~ ^[A-Za-z0-9_*]([A-Za-z0-9_*.-]{0,252})$ ]] || return 1
    printf 'DNS:%s' "$v"
}

# ---------------------------------------------------------------- arguments

OUT=""
DAYS=825
DAYS_SET=0
P12_PASS=""
KMES=()
SAES=()
SAN_ARGS=()
declare -A SEEN_ID=()

while (($#)); do
    opt=$1
    shift
    case $opt in
    --help | -h)
        print_help
        exit 0
        ;;
    --out=* | --kme=* | --sae=* | --san=* | --days=* | --p12-pass=*)
        val=${opt#*=}
        opt=${opt%%=*}
        ;;
    --out | --kme | --sae | --san | --days | --p12-pass)
        (($#)) || usage_error "option $opt requires a value"
        val=$1
        if [[ $opt != --p12-pass && $val == --* ]]; then
            usage_error "option $opt requires a value (got option $val)"
        fi
        shift
        ;;
    *) usage_error "unknown option: $opt" ;;
    esac
    case $opt in
    --out)
        [[ -n $val ]] || usage_error "--out: empty directory name"
        [[ -z $OUT ]] || usage_error "--out given more than once"
        OUT=$val
        ;;
    --kme | --sae)
        kind=${opt#--}
        [[ $val =~ $ID_RE ]] || usage_error "--$kind: invalid ID '$val' (must match $ID_RE)"
        if [[ -n ${SEEN_ID[$val]:-} ]]; then
            if [[ ${SEEN_ID[$val]} == "$kind" ]]; then
                usage_error "--$kind: ID '$val' given twice"
            fi
            usage_error "ID '$val' used both as KME and as SAE"
        fi
        SEEN_ID[$val]=$kind
        if [[ $kind == kme ]]; then KMES+=("$val"); else SAES+=("$val"); fi
        ;;
    --san)
        entry=$(san_entry "$val") || usage_error "--san: '$val' is neither an IP address nor a valid DNS name"
        SAN_ARGS+=("$entry")
        ;;
    --days)
        if ! [[ $val =~ ^[1-9][0-9]{0,5}$ ]] || ((val > MAX_DAYS)); then
            usage_error "--days: '$val' is not a positive integer (1..$MAX_DAYS)"
        fi
        ((DAYS_SET == 0)) || usage_error "--days given more than once"
        DAYS=$val
        DAYS_SET=1
        ;;
    --p12-pass) P12_PASS=$val ;;
    esac
done

[[ -n $OUT ]] || usage_error "missing --out DIR"
((${#KMES[@]} + ${#SAES[@]} > 0)) || usage_error "nothing to do: give at least one --kme or --sae"

# An SAE's files (<ID>.pem/.key/.p12) must not collide with CA files or with
# a KME's files (<KME>.server.pem, <KME>.kme.pem).
for s in "${SAES[@]}"; do
    case $s in
    ca | sae-ca | kme-ca) usage_error "--sae: ID '$s' is reserved (it would overwrite the CA files)" ;;
    esac
    for k in "${KMES[@]}"; do
        if [[ $s == "$k.server" || $s == "$k.kme" ]]; then
            usage_error "--sae: ID '$s' would collide with the files of KME '$k'"
        fi
    done
done

# Requested SANs of KME certificates: the fixed loopback names plus --san,
# canonical, sorted, without duplicates.
SANS_WANT=$(printf '%s\n' DNS:localhost IP:127.0.0.1 IP:0:0:0:0:0:0:0:1 "${SAN_ARGS[@]}" | LC_ALL=C sort -u)
SAN_CONF=$(printf '%s\n' DNS:localhost IP:127.0.0.1 IP:0:0:0:0:0:0:0:1 "${SAN_ARGS[@]}" | awk '!seen[$0]++' | paste -sd, -)

if [[ -e $OUT && ! -d $OUT ]]; then
    printf '%s: %s exists and is not a directory\n' "$PROG" "$OUT" >&2
    exit 1
fi

# ------------------------------------------------------------- run time state

TMP=""
CREATED_DIRS=()
DONE=0
MOVING=0

die() {
    printf '%s: error: %s\n' "$PROG" "$1" >&2
    if [[ -n $TMP && -s $TMP/openssl.log ]]; then
        sed 's/^/  openssl: /' "$TMP/openssl.log" | tail -n 20 >&2
    fi
    exit 1
}

cleanup() {
    local rc=$? i
    if [[ -n $TMP && -d $TMP ]]; then rm -rf -- "$TMP"; fi
    if ((rc != 0 && DONE == 0)); then
        for ((i = ${#CREATED_DIRS[@]} - 1; i >= 0; i--)); do
            rmdir -- "${CREATED_DIRS[i]}" 2>/dev/null || break
        done
        if ((MOVING)); then
            printf '%s: failed while installing; re-run to complete\n' "$PROG" >&2
        else
            printf '%s: failed, nothing was changed\n' "$PROG" >&2
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Create DIR (and missing parents, mode 0755), remembering what we created so
# a failure can remove it again.
if [[ ! -d $OUT ]]; then
    missing=()
    d=$OUT
    while [[ ! -e $d ]]; do
        missing=("$d" "${missing[@]}")
        parent=$(dirname -- "$d")
        [[ $parent != "$d" ]] || break
        d=$parent
    done
    for d in "${missing[@]}"; do
        if mkdir -m 0755 -- "$d" 2>/dev/null; then
            CREATED_DIRS+=("$d")
        elif [[ ! -d $d ]]; then # a concurrent run may have created it
            die "cannot create directory $d"
        fi
    done
fi
[[ -w $OUT && -x $OUT ]] || die "directory $OUT is not writable"
DIR=$(cd -- "$OUT" && pwd -P) || die "cannot enter $OUT"

# Serialise concurrent runs on the same directory.
if command -v flock >/dev/null 2>&1; then
    exec 9<"$DIR"
    flock -w 120 9 || die "another $PROG run holds $DIR"
fi

# --------------------------------------------------------------------- checks

cert_fpr() { openssl x509 -noout -fingerprint -sha256 2>/dev/null | sed 's/^.*=//'; }

# cert_sans CERT: canonical sorted SAN entries of CERT.
cert_sans() {
    local e
    openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | tail -n +2 |
        sed 's/^ *//; s/, /\n/g' | while IFS= read -r e; do
        case $e in
        "IP Address:"*) printf 'IP:%s\n' "$(ipv6_canon "${e#IP Address:}" || ipv4_canon "${e#IP Address:}")" ;;
        *) printf '%s\n' "$e" ;;
        esac
    done | LC_ALL=C sort -u
}

# key_matches KEY CERT
key_matches() {
    local a b
    a=$(openssl pkey -in "$1" -pubout 2>/dev/null) || return 1
    b=$(openssl x509 -in "$2" -noout -pubkey 2>/dev/null) || return 1
    [[ -n $a && $a == "$b" ]]
}

# ca_state NAME: "new" when neither NAME.pem nor NAME.key exists, "keep" when
# both exist and belong together; anything else is an error (a CA is never
# regenerated over existing files).
ca_state() {
    local pem=$DIR/$1.pem key=$DIR/$1.key
    if [[ ! -e $pem && ! -e $key ]]; then echo new; return; fi
    [[ -f $pem ]] || die "$key exists but $pem is missing; refusing to regenerate the CA (move both away to start over)"
    [[ -f $key ]] || die "$pem exists but $key is missing; refusing to regenerate the CA (move both away to start over)"
    key_matches "$key" "$pem" || die "$key does not match $pem"
    openssl x509 -in "$pem" -noout -checkend 0 >/dev/null 2>&1 || die "CA certificate $pem has expired"
    echo keep
}

# leaf_ok BASE CA_NAME CN WANT_SANS: BASE.pem and BASE.key exist, belong
# together, verify against the (kept) CA, carry CN and, when WANT_SANS is not
# "-", exactly those SANs.
leaf_ok() {
    local pem=$DIR/$1.pem key=$DIR/$1.key ca=$2 cn=$3 sans=$4
    [[ ${CA_NEW[$ca]} == 0 && -f $pem && -f $key ]] || return 1
    key_matches "$key" "$pem" || return 1
    openssl verify -CAfile "$DIR/$ca.pem" "$pem" >/dev/null 2>&1 || return 1
    [[ $(openssl x509 -in "$pem" -noout -subject -nameopt RFC2253 2>/dev/null) == "subject=CN=$cn" ]] || return 1
    if [[ $sans != - ]]; then
        [[ $(cert_sans "$pem") == "$sans" ]] || return 1
    fi
    return 0
}

# p12_ok SAE: the .p12 opens with the password and holds the SAE's current
# certificate and the current KME CA.
p12_ok() {
    local p12=$DIR/$1.p12 a b
    [[ -f $p12 ]] || return 1
    a=$(MKCERTS_P12_PASS=$P12_PASS openssl pkcs12 -in "$p12" -nokeys -clcerts -passin env:MKCERTS_P12_PASS 2>/dev/null | cert_fpr)
    b=$(cert_fpr <"$DIR/$1.pem")
    [[ -n $a && $a == "$b" ]] || return 1
    a=$(MKCERTS_P12_PASS=$P12_PASS openssl pkcs12 -in "$p12" -nokeys -cacerts -passin env:MKCERTS_P12_PASS 2>/dev/null | cert_fpr)
    b=$(cert_fpr <"$DIR/kme-ca.pem")
    [[ -n $a && $a == "$b" ]]
}

# Fix over-permissive modes of existing private key material in place.
secure_mode() {
    local f=$1
    if [[ -f $f && $(stat -c %a -- "$f") != 600 ]]; then
        chmod 0600 -- "$f" || die "cannot chmod $f"
        printf '%s: restricted %s to mode 0600\n' "$PROG" "$f" >&2
    fi
}

# ----------------------------------------------------------------------- plan

declare -A CA_NEW=()
for ca in sae-ca kme-ca; do
    st=$(ca_state "$ca") || exit 1
    if [[ $st == new ]]; then CA_NEW[$ca]=1; else CA_NEW[$ca]=0; fi
done

NEED_CA_COPY=0
if [[ ${CA_NEW[kme-ca]} == 1 ]] || ! cmp -s -- "$DIR/kme-ca.pem" "$DIR/ca.pem"; then NEED_CA_COPY=1; fi

LEAVES=()     # entries "BASE|CA|CN|PROFILE"
P12S=()       # SAE IDs whose .p12 must be (re)written
for k in "${KMES[@]}"; do
    for kind in server kme; do
        if ! leaf_ok "$k.$kind" kme-ca "$k" "$SANS_WANT"; then LEAVES+=("$k.$kind|kme-ca|$k|v3_$kind"); fi
    done
done
for s in "${SAES[@]}"; do
    if leaf_ok "$s" sae-ca "$s" -; then
        if ((NEED_CA_COPY)) || ! p12_ok "$s"; then P12S+=("$s"); fi
    else
        LEAVES+=("$s|sae-ca|$s|v3_sae")
        P12S+=("$s")
    fi
done

for ca in sae-ca kme-ca; do secure_mode "$DIR/$ca.key"; done
for k in "${KMES[@]}"; do secure_mode "$DIR/$k.server.key"; secure_mode "$DIR/$k.kme.key"; done
for s in "${SAES[@]}"; do secure_mode "$DIR/$s.key"; secure_mode "$DIR/$s.p12"; done

if ((${CA_NEW[sae-ca]} + ${CA_NEW[kme-ca]} + NEED_CA_COPY + ${#LEAVES[@]} + ${#P12S[@]} == 0)); then
    DONE=1
    printf '%s: %s is up to date\n' "$PROG" "$DIR"
    exit 0
fi

# ---------------------------------------------------------------------- build

TMP=$(mktemp -d -- "$DIR/.mkcerts.tmp.XXXXXX") || die "cannot create a temporary directory in $DIR"
LOG=$TMP/openssl.log
: >"$LOG"
WRITE=()      # files to move from TMP into DIR, in order

ossl() {
    local what=$1
    shift
    openssl "$@" </dev/null >>"$LOG" 2>&1 || die "$what failed"
}

serial() {
    local h
    h=$(openssl rand -hex 16) || die "openssl rand failed"
    # First nibble 1..7: positive, non-zero, 16 octets when DER-encoded.
    printf '0x%x%s' $((16#${h:0:1} % 7 + 1)) "${h:1}"
}

# ca_file NAME.pem|NAME.key: where that CA file is during the build.
ca_file() {
    if [[ ${CA_NEW[${1%.*}]} == 1 ]]; then printf '%s' "$TMP/$1"; else printf '%s' "$DIR/$1"; fi
}

newkey() {
    ossl "key generation for $1" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -pkeyopt ec_param_enc:named_curve -out "$TMP/$1.key"
}

cat >"$TMP/openssl.cnf" <<EOF
[req]
distinguished_name = req_dn
[req_dn]
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = $SAN_CONF
[v3_kme]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = $SAN_CONF
[v3_sae]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
export OPENSSL_CONF=$TMP/openssl.cnf

declare -A CA_SUBJ=([sae-ca]="/O=QKD Network/CN=QKD SAE CA" [kme-ca]="/O=QKD Network/CN=QKD KME CA")
for ca in sae-ca kme-ca; do
    [[ ${CA_NEW[$ca]} == 1 ]] || continue
    newkey "$ca"
    ossl "creating $ca" req -new -x509 -key "$TMP/$ca.key" -subj "${CA_SUBJ[$ca]}" \
        -days "$CA_DAYS" -sha256 -set_serial "$(serial)" -config "$TMP/openssl.cnf" \
        -extensions v3_ca -out "$TMP/$ca.pem"
    WRITE+=("$ca.key" "$ca.pem")
done
if ((NEED_CA_COPY)); then
    cp -- "$(ca_file kme-ca.pem)" "$TMP/ca.pem" || die "cannot copy kme-ca.pem"
    WRITE+=(ca.pem)
fi

for leaf in "${LEAVES[@]}"; do
    IFS='|' read -r base ca cn profile <<<"$leaf"
    newkey "$base"
    ossl "certificate request for $base" req -new -key "$TMP/$base.key" -subj "/CN=$cn" \
        -config "$TMP/openssl.cnf" -out "$TMP/$base.csr"
    ossl "signing $base.pem" x509 -req -in "$TMP/$base.csr" -CA "$(ca_file "$ca.pem")" \
        -CAkey "$(ca_file "$ca.key")" -set_serial "$(serial)" -days "$DAYS" -sha256 \
        -extfile "$TMP/openssl.cnf" -extensions "$profile" -out "$TMP/$base.pem"
    ossl "verifying $base.pem" verify -CAfile "$(ca_file "$ca.pem")" "$TMP/$base.pem"
    WRITE+=("$base.key" "$base.pem")
done

for s in "${P12S[@]}"; do
    if [[ -f $TMP/$s.pem ]]; then src=$TMP; else src=$DIR; fi
    MKCERTS_P12_PASS=$P12_PASS ossl "PKCS#12 export for $s" pkcs12 -export \
        -inkey "$src/$s.key" -in "$src/$s.pem" -certfile "$(ca_file kme-ca.pem)" \
        -name "$s" -passout env:MKCERTS_P12_PASS -out "$TMP/$s.p12"
    WRITE+=("$s.p12")
done

for f in "${WRITE[@]}"; do
    case $f in
    *.pem) chmod 0644 -- "$TMP/$f" ;;
    *) chmod 0600 -- "$TMP/$f" ;;
    esac || die "cannot set the mode of $f"
done
(cd -- "$TMP" && sync -- "${WRITE[@]}") || die "cannot flush the new files to disk"

# ----------------------------------------------------------------- install

MOVING=1
for f in "${WRITE[@]}"; do
    mv -f -- "$TMP/$f" "$DIR/$f" || die "cannot move $f into $DIR"
done
sync -- "$DIR" 2>/dev/null || true
DONE=1
for f in "${WRITE[@]}"; do printf '%s: wrote %s\n' "$PROG" "$DIR/$f"; done
