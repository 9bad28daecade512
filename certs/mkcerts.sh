#!/usr/bin/env bash
# certs/mkcerts.sh: owns the network's certificate tooling: the SAE CA and the
# KME CA (their keys apart, in DIR/private), each KME's SAE-port server
# certificate and KME-to-KME certificate naming that KME's own site, each
# SAE's client certificate (PEM and PKCS#12), revocation (--revoke, and a CRL
# per CA), and bundles holding only what one daemon may read (--bundle).
# Idempotent (existing valid files are never rewritten, existing CAs never
# regenerated) and atomic (everything is built in a temporary directory inside
# DIR and moved into place only at the end).
set -euo pipefail
umask 077

PROG=${0##*/}
USAGE="usage: $PROG --out DIR [--kme ID[:SAN,...]]... [--sae ID]... [--san NAME_OR_IP]... [--days N] [--p12-pass PASS] [--revoke ID]... [--bundle ID=DEST]..."
CA_DAYS=3650
MAX_DAYS=36500
ID_RE='^[A-Za-z0-9._-]{1,64}$'

print_help() {
    cat <<EOF
$USAGE

Creates (idempotently) the certificates of a QKD key management network in DIR:
  sae-ca.pem                   CA that signs SAE client certificates
  kme-ca.pem                   CA that signs every KME certificate
  private/sae-ca.key, private/kme-ca.key
                               their keys (folder mode 0700), beside each CA's
                               list of revoked certificates (private/*.index)
  sae-ca.crl, kme-ca.crl       each CA's CRL (made again by a run that revokes)
  ca.pem                       copy of kme-ca.pem (what SAEs trust for KME servers)
  <KME>.server.pem/.key        KME server certificate for the SAE port (serverAuth)
  <KME>.kme.pem/.key           KME-to-KME certificate (serverAuth, clientAuth)
  <SAE>.pem/.key               SAE client certificate (clientAuth)
  <SAE>.p12                    PKCS#12 of the SAE key, certificate and ca.pem

Options:
  --out DIR          output directory (required; created if missing)
  --kme ID[:SAN,...] KME identity (repeatable) with the names and addresses
                     of its own site: its certificates name those alone (and
                     localhost, 127.0.0.1, ::1), so that one KME's key cannot
                     pass for another's host; clients also pin the KME ID
  --sae ID           SAE identity (repeatable)
  --san NAME_OR_IP   subjectAltName for every KME certificate (repeatable);
                     prefer --kme ID:SAN, which names one site only
  --revoke ID        revoke the current certificates of ID (an SAE's, or a
                     KME's two) in its CA's CRL; SIGHUP the KMEs to apply it
  --bundle ID=DEST   copy into DEST what the daemon of ID may read and no
                     more: its own keys and certificates, the CA certificates
                     and the CRLs (never a CA key)
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
REVOKE=()
BUNDLES=()
declare -A SEEN_ID=()
declare -A KME_SANS=()

while (($#)); do
    opt=$1
    shift
    case $opt in
    --help | -h)
        print_help
        exit 0
        ;;
    --out=* | --kme=* | --sae=* | --san=* | --days=* | --p12-pass=* | --revoke=* | --bundle=*)
        val=${opt#*=}
        opt=${opt%%=*}
        ;;
    --out | --kme | --sae | --san | --days | --p12-pass | --revoke | --bundle)
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
        sans=""
        if [[ $kind == kme && $val == *:* ]]; then
            sans=${val#*:}
            val=${val%%:*}
        fi
        [[ $val =~ $ID_RE ]] || usage_error "--$kind: invalid ID '$val' (must match $ID_RE)"
        if [[ $kind == kme ]]; then
            KME_SANS[$val]=""
            IFS=, read -r -a names <<<"$sans"
            for n in "${names[@]}"; do
                entry=$(san_entry "$n") || usage_error "--kme $val: '$n' is neither an IP address nor a valid DNS name"
                KME_SANS[$val]+="$entry "
            done
        fi
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
    --revoke)
        [[ $val =~ $ID_RE ]] || usage_error "--revoke: invalid ID '$val' (must match $ID_RE)"
        REVOKE+=("$val")
        ;;
    --bundle)
        [[ $val == *=?* && ${val%%=*} =~ $ID_RE ]] || usage_error "--bundle: '$val' is not ID=DEST"
        BUNDLES+=("$val")
        ;;
    esac
done

[[ -n $OUT ]] || usage_error "missing --out DIR"
((${#KMES[@]} + ${#SAES[@]} + ${#REVOKE[@]} + ${#BUNDLES[@]} > 0)) ||
    usage_error "nothing to do: give at least one --kme, --sae, --revoke or --bundle"

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

# Requested SANs of a KME's certificates: the fixed loopback names, its own
# site's (--kme ID:SAN,...) and --san, canonical, sorted, without duplicates.
# shellcheck disable=SC2086 # KME_SANS holds space-separated entries
kme_sans() { printf '%s\n' DNS:localhost IP:127.0.0.1 IP:0:0:0:0:0:0:0:1 "${SAN_ARGS[@]}" ${KME_SANS[$1]:-}; }
sans_want() { kme_sans "$1" | LC_ALL=C sort -u; }
san_conf() { kme_sans "$1" | awk '!seen[$0]++' | paste -sd, -; }

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
    local pem=$DIR/$1.pem key=$DIR/private/$1.key
    # A CA key of the older layout (beside the certificates) moves to private/.
    if [[ ! -e $key && -f $DIR/$1.key ]]; then
        { mkdir -p -m 0700 -- "$DIR/private" && mv -- "$DIR/$1.key" "$key"; } || die "cannot move $DIR/$1.key to $key"
        printf '%s: moved %s to %s\n' "$PROG" "$DIR/$1.key" "$key" >&2
    fi
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

# bundle_all: each --bundle ID=DEST gets ID's own files, the CA
# certificates and the CRLs (never a CA key), replacing what DEST held of them.
bundle_all() {
    local b id dest f files
    for b in "${BUNDLES[@]}"; do
        id=${b%%=*}
        dest=${b#*=}
        if [[ -f $DIR/$id.kme.pem ]]; then
            files=("$id.server.pem" "$id.server.key" "$id.kme.pem" "$id.kme.key")
        elif [[ -f $DIR/$id.pem ]]; then
            files=("$id.pem" "$id.key" "$id.p12")
        else
            die "--bundle: no certificate of $id in $DIR"
        fi
        files+=(sae-ca.pem kme-ca.pem ca.pem sae-ca.crl kme-ca.crl)
        mkdir -p -- "$dest" || die "cannot create $dest"
        for f in "${files[@]}"; do
            [[ -f $DIR/$f ]] || continue
            { cp -p -- "$DIR/$f" "$dest/.$f.new" && mv -f -- "$dest/.$f.new" "$dest/$f"; } || die "cannot copy $f to $dest"
        done
        printf '%s: bundled %s into %s\n' "$PROG" "$id" "$dest"
    done
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
        if ! leaf_ok "$k.$kind" kme-ca "$k" "$(sans_want "$k")"; then LEAVES+=("$k.$kind|kme-ca|$k|v3_$kind"); fi
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

for ca in sae-ca kme-ca; do secure_mode "$DIR/private/$ca.key"; done
for k in "${KMES[@]}"; do secure_mode "$DIR/$k.server.key"; secure_mode "$DIR/$k.kme.key"; done
for s in "${SAES[@]}"; do secure_mode "$DIR/$s.key"; secure_mode "$DIR/$s.p12"; done

# CRLs: made with a new CA, when one is missing, does not verify or is within
# 30 days of its next update, and whenever a certificate is revoked.
crl_ok() {
    local crl=$DIR/$1.crl next
    [[ ${CA_NEW[$1]} == 0 && -f $crl ]] || return 1
    openssl crl -in "$crl" -noout -CAfile "$DIR/$1.pem" >/dev/null 2>&1 || return 1
    next=$(openssl crl -in "$crl" -noout -nextupdate 2>/dev/null | cut -d= -f2)
    (($(date -u -d "$next" +%s) > $(date -u +%s) + 30 * 86400))
}
NEED_CRL=${#REVOKE[@]}
for ca in sae-ca kme-ca; do crl_ok "$ca" || NEED_CRL=$((NEED_CRL + 1)); done

if ((${CA_NEW[sae-ca]} + ${CA_NEW[kme-ca]} + NEED_CA_COPY + ${#LEAVES[@]} + ${#P12S[@]} + NEED_CRL == 0)); then
    DONE=1
    printf '%s: %s is up to date\n' "$PROG" "$DIR"
    bundle_all
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
    local sub=""
    [[ $1 == *.key ]] && sub=private/
    if [[ ${CA_NEW[${1%.*}]} == 1 ]]; then printf '%s' "$TMP/$sub$1"; else printf '%s' "$DIR/$sub$1"; fi
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
[v3_sae]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
# Each KME's profiles name its own site.
for k in "${KMES[@]}"; do
    for kind in server kme; do
        eku=serverAuth
        [[ $kind == kme ]] && eku="serverAuth, clientAuth"
        printf '[v3_%s_%s]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n' "$kind" "$k"
        printf 'extendedKeyUsage = %s\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n' "$eku"
        printf 'subjectAltName = %s\n' "$(san_conf "$k")"
    done
done >>"$TMP/openssl.cnf"
export OPENSSL_CONF=$TMP/openssl.cnf
mkdir -m 0700 -- "$TMP/private" || die "cannot create $TMP/private"

declare -A CA_SUBJ=([sae-ca]="/O=QKD Network/CN=QKD SAE CA" [kme-ca]="/O=QKD Network/CN=QKD KME CA")
for ca in sae-ca kme-ca; do
    [[ ${CA_NEW[$ca]} == 1 ]] || continue
    newkey "private/$ca"
    ossl "creating $ca" req -new -x509 -key "$TMP/private/$ca.key" -subj "${CA_SUBJ[$ca]}" \
        -days "$CA_DAYS" -sha256 -set_serial "$(serial)" -config "$TMP/openssl.cnf" \
        -extensions v3_ca -out "$TMP/$ca.pem"
    WRITE+=("private/$ca.key" "$ca.pem")
done
if ((NEED_CA_COPY)); then
    cp -- "$(ca_file kme-ca.pem)" "$TMP/ca.pem" || die "cannot copy kme-ca.pem"
    WRITE+=(ca.pem)
fi

for leaf in "${LEAVES[@]}"; do
    IFS='|' read -r base ca cn profile <<<"$leaf"
    [[ $profile == v3_sae ]] || profile=${profile}_$cn
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

# Revocations: each CA's index (the database of openssl ca) in private/, a
# revoked certificate's line added once; then each CA's CRL.
declare -A INDEX_CHANGED=()
for ca in sae-ca kme-ca; do
    if [[ -f $DIR/private/$ca.index ]]; then
        cp -- "$DIR/private/$ca.index" "$TMP/private/$ca.index" || die "cannot copy $ca.index"
    else
        : >"$TMP/private/$ca.index"
    fi
done
for id in "${REVOKE[@]}"; do
    if [[ -f $DIR/$id.pem || -f $TMP/$id.pem ]]; then
        ca=sae-ca
        certs=("$id.pem")
    elif [[ -f $DIR/$id.kme.pem || -f $TMP/$id.kme.pem ]]; then
        ca=kme-ca
        certs=("$id.server.pem" "$id.kme.pem")
    else
        die "--revoke: no certificate of $id in $DIR"
    fi
    for c in "${certs[@]}"; do
        if [[ -f $TMP/$c ]]; then src=$TMP/$c; else src=$DIR/$c; fi
        ser=$(openssl x509 -in "$src" -noout -serial | cut -d= -f2)
        if awk -F'\t' -v s="$ser" '$4 == s { found = 1 } END { exit !found }' "$TMP/private/$ca.index"; then
            continue
        fi
        end=$(date -u -d "$(openssl x509 -in "$src" -noout -enddate | cut -d= -f2)" +%y%m%d%H%M%SZ)
        printf 'R\t%s\t%s\t%s\tunknown\t/CN=%s\n' "$end" "$(date -u +%y%m%d%H%M%SZ)" "$ser" "$id" \
            >>"$TMP/private/$ca.index"
        INDEX_CHANGED[$ca]=1
        printf '%s: revoked %s (serial %s)\n' "$PROG" "$c" "$ser"
    done
done
if ((NEED_CRL)); then
    for ca in sae-ca kme-ca; do
        printf '[ca]\ndefault_ca = this\n[this]\ndatabase = %s\ndefault_md = sha256\n' "$TMP/private/$ca.index" \
            >"$TMP/private/$ca.cnf"
        printf 'default_crl_days = 365\ncrl_extensions = crl_ext\n[crl_ext]\nauthorityKeyIdentifier = keyid:always\n' \
            >>"$TMP/private/$ca.cnf"
        ossl "CRL of $ca" ca -gencrl -config "$TMP/private/$ca.cnf" -keyfile "$(ca_file "$ca.key")" \
            -cert "$(ca_file "$ca.pem")" -out "$TMP/$ca.crl"
        rm -f -- "$TMP/private/$ca.cnf" "$TMP/private/$ca.index.old" "$TMP/private/$ca.index.attr"*
        WRITE+=("$ca.crl")
        if [[ -n ${INDEX_CHANGED[$ca]:-} || ! -f $DIR/private/$ca.index ]]; then WRITE+=("private/$ca.index"); fi
    done
fi

for f in "${WRITE[@]}"; do
    case $f in
    *.crl) chmod 0644 -- "$TMP/$f" ;;
    *.pem) chmod 0644 -- "$TMP/$f" ;;
    *) chmod 0600 -- "$TMP/$f" ;;
    esac || die "cannot set the mode of $f"
done
(cd -- "$TMP" && sync -- "${WRITE[@]}") || die "cannot flush the new files to disk"

# ----------------------------------------------------------------- install

MOVING=1
if [[ ! -d $DIR/private ]]; then mkdir -m 0700 -- "$DIR/private" || die "cannot create $DIR/private"; fi
chmod 0700 -- "$DIR/private" || die "cannot restrict $DIR/private"
for f in "${WRITE[@]}"; do
    mv -f -- "$TMP/$f" "$DIR/$f" || die "cannot move $f into $DIR"
done
sync -- "$DIR" 2>/dev/null || true
DONE=1
for f in "${WRITE[@]}"; do printf '%s: wrote %s\n' "$PROG" "$DIR/$f"; done
bundle_all
