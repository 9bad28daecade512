# shellcheck shell=bash
# Helpers shared by the KME integration suites (sourced after lib.sh and
# tests/lib/network.sh). Key lists are text files of "key_ID base64-key" lines.

T_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# etsi_call SAE PATH [curl args]: sets CODE (000 when there is no answer) and
# BODY for one ETSI call as SAE against its home KME.
etsi_call() {
    local out
    out=$(sae_curl "$@" --max-time 15 -w '\n%{http_code}')
    CODE=${out##*$'\n'}
    BODY=${out%$'\n'*}
    [ "$BODY" = "$out" ] && BODY=""
    return 0
}

# enc_keys MASTER SLAVE NUMBER SIZE FILE: GET enc_keys; on 200 appends the
# keys to FILE and returns 0; otherwise CODE and BODY tell what happened.
enc_keys() {
    etsi_call "$1" "/api/v1/keys/$2/enc_keys?number=$3&size=$4"
    [ "$CODE" = 200 ] || return 1
    printf '%s\n' "$BODY" | jq -er '.keys[] | "\(.key_ID) \(.key)"' >>"$5"
}

# enc_multi MASTER SLAVE ADDITIONAL NUMBER SIZE FILE: POST enc_keys with one
# additional slave; on 200 appends the keys to FILE and returns 0.
enc_multi() {
    etsi_call "$1" "/api/v1/keys/$2/enc_keys" -X POST -H 'Content-Type: application/json' \
        --data-binary "{\"number\":$4,\"size\":$5,\"additional_slave_SAE_IDs\":[\"$3\"]}"
    [ "$CODE" = 200 ] || return 1
    printf '%s\n' "$BODY" | jq -er '.keys[] | "\(.key_ID) \(.key)"' >>"$6"
}

# key_ids_body FILE: the JSON body of a dec_keys POST for the IDs in FILE.
key_ids_body() {
    awk '{ print $1 }' "$1" | jq -R -s -c 'split("\n") | map(select(length > 0)) | {key_IDs: map({key_ID: .})}'
}

# dec_keys SLAVE MASTER IDFILE OUTFILE: one POST dec_keys for the IDs in
# IDFILE (first column); on 200 appends the keys to OUTFILE.
dec_keys() {
    etsi_call "$1" "/api/v1/keys/$2/dec_keys" -X POST -H 'Content-Type: application/json' \
        --data-binary "$(key_ids_body "$3")"
    [ "$CODE" = 200 ] || return 1
    printf '%s\n' "$BODY" | jq -er '.keys[] | "\(.key_ID) \(.key)"' >>"$4"
}

# fetch_all SLAVE MASTER KEYFILE OUTFILE FAILFILE: fetches every key of
# KEYFILE in POST batches of 100; a refused batch is retried one key at a
# time (a refusal delivers nothing) and each key still refused is written to
# FAILFILE as "key_ID code body".
fetch_all() {
    local slave=$1 master=$2 keys=$3 out=$4 fail=$5 dir chunk id
    dir=$(mktemp -d "$(dirname "$out")/chunks.XXXX")
    : >"$fail"
    split -l 100 "$keys" "$dir/c."
    for chunk in "$dir"/c.*; do
        dec_keys "$slave" "$master" "$chunk" "$out" && continue
        while read -r id _; do
            printf '%s\n' "$id" >"$dir/one"
            dec_keys "$slave" "$master" "$dir/one" "$out" || printf '%s %s %s\n' "$id" "$CODE" "$BODY" >>"$fail"
        done <"$chunk"
    done
    rm -rf "$dir"
}

# refetch_codes SLAVE MASTER KEYFILE: one HTTP status per key of KEYFILE for
# a GET dec_keys?key_ID=..., one curl process for all (one line each).
refetch_codes() {
    local slave=$1 master=$2 keys=$3 base cfg
    base="$(net_url "$(sae_home "$slave")")/api/v1/keys/$master/dec_keys?key_ID="
    cfg=$(mktemp "$(dirname "$keys")/refetch.XXXX")
    awk -v b="$base" '{ printf "url = \"%s%s\"\noutput = \"/dev/null\"\n", b, $1 }' "$keys" >"$cfg"
    curl -s --max-time 120 --cert "$NET_DIR/certs/$slave.pem" --key "$NET_DIR/certs/$slave.key" \
        --cacert "$NET_DIR/certs/ca.pem" -w '%{http_code}\n' -K "$cfg"
    rm -f "$cfg"
}

# stored_count MASTER SLAVE: stored_key_count from GET status (empty if none).
stored_count() {
    etsi_call "$1" "/api/v1/keys/$2/status"
    [ "$CODE" = 200 ] && printf '%s\n' "$BODY" | jq -r '.stored_key_count'
}
stock_at_least() { local n; n=$(stored_count "$1" "$2"); [ -n "$n" ] && [ "$n" -ge "$3" ]; }

# dump SITE FILE: the site's store as JSON.
dump() { "$NET_BIN/kme" --config "$NET_DIR/$1/kme.json" --dump >"$2" 2>"$2.err"; }
# dump_pair X Y FILE_X FILE_Y: dumps of two running KMEs that show the same
# moment of their link: X again after Y, until X's blocks did not change in
# between (at most 10 tries); fails if they never settle.
dump_pair() {
    local i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        dump "$1" "$3" && dump "$2" "$4" && dump "$1" "$3.again" || return 1
        cmp -s <(jq -S .links "$3") <(jq -S .links "$3.again") && return 0
        sleep 0.2
    done
    return 1
}

# compare_dumps SITE_X SITE_Y DUMP_X DUMP_Y: the violations found by
# compare_dumps.jq for link X-Y (no output when both ends agree).
compare_dumps() {
    jq -n -r --slurpfile a "$3" --slurpfile b "$4" --arg x "KME_$1" --arg y "KME_$2" \
        -f "$T_LIB_DIR/compare_dumps.jq"
}

# reused_ranges SITE...: what reused_ranges.awk finds in the sites' debug
# logs (no output when no message carried bytes of link key that an earlier
# message had used).
reused_ranges() {
    local s logs=()
    for s in "$@"; do logs+=("$NET_DIR/$s/kme.log"); done
    awk -f "$T_LIB_DIR/reused_ranges.awk" pass=1 "${logs[@]}" pass=2 "${logs[@]}"
}

# kme_term SITE [SECONDS]: SIGTERM to the site's kme (a child of this shell);
# returns its exit status (137 when it had to be killed after SECONDS).
kme_term() {
    local pid rc end
    pid=$(kme_pid "$1") || return 255
    end=$((SECONDS + ${2:-20}))
    kill -TERM "$pid" 2>/dev/null
    while proc_running "$pid" && [ $SECONDS -lt "$end" ]; do sleep 0.1; done
    proc_running "$pid" && kill -KILL "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    rm -f "$NET_DIR/$1/kme.pid"
    return $rc
}
# proc_running PID: alive and not a zombie.
proc_running() {
    local st
    st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

# sanitizer_clean SITE: its kme.log has no sanitizer report.
sanitizer_clean() { ! grep -Eq "$T_SANITIZER_PATTERN" "$NET_DIR/$1/kme.log"; }
