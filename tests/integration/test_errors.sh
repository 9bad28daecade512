#!/usr/bin/env bash
# ETSI errors (invariant I6): every refused request gets the right status, the
# ETSI error body {"message": string, "details": array} as JSON, and changes
# nothing: both sites' stores (--dump, byte for byte) and the stored_key_count
# both ways are the same before and after. Two sites A and B on one link;
# SAE_A2 lives at A and SAE_B2 at B beside SAE_A and SAE_B. The link is fed
# until A has stock, then qkd-sim is stopped so that only requests move the stores.
# shellcheck disable=SC2034 # T_SUITE and the NET_* settings are read by the sourced files
T_SUITE=errors
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"
NET_SAE_BASE=7300
NET_KME_BASE=7400
NET_EXTRA_SAES="SAE_A2@A SAE_B2@B"
# shellcheck source=SCRIPTDIR/../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# Every key is handed out once, strictly: a second fetch is refused at once
# (the default fetch retry window is tested in test_expiry.sh).
NET_FETCH_RETRY=0
NET_BIN=$T_BIN

dir=$(mktemp -d "$T_OUT/errors.XXXX")
trap net_stop EXIT

t_require_programs kme qkd-sim

# ---- helpers --------------------------------------------------------------------

stock() { # SAE SLAVE -> stored_key_count seen by SAE for SLAVE
    sae_curl "$1" "/api/v1/keys/$2/status" | jq -e '.stored_key_count'
}
has_stock() { [ "$(stock SAE_A SAE_B)" -gt 0 ] 2>/dev/null; }

# snap: everything a refused request must leave alone: both stores and the stock.
snap() {
    local s
    for s in A B; do
        echo "== $s"
        "$T_BIN/kme" --config "$NET_DIR/$s/kme.json" --dump 2>/dev/null || echo "dump of $s failed"
    done
    echo "== stock A->B $(stock SAE_A SAE_B)"
    echo "== stock B->A $(stock SAE_B SAE_A)"
}

# settle: waits until the stores stop moving (verification of the last blocks).
settle() { wait_still 20 snap; }

# is_etsi_error BODY: a JSON object with a non-empty string message and an array
# of objects as details, and no key material.
is_etsi_error() {
    printf '%s' "$1" | jq -e 'type == "object" and (.message | type == "string" and length > 0)
        and (.details | type == "array" and all(.[]; type == "object")) and (has("keys") | not)' >/dev/null 2>&1
}

# call SAE PATH [curl args]: sets CODE, CTYPE and BODY.
call() {
    local out
    out=$(sae_curl "$@" -w '\n%{content_type}\n%{http_code}')
    CODE=${out##*$'\n'}
    out=${out%$'\n'*}
    CTYPE=${out##*$'\n'}
    BODY=${out%$'\n'*}
}

# refused NAME STATUS SAE PATH [curl args]: the request is answered STATUS with
# an ETSI error body and leaves both stores and the stock unchanged.
refused() {
    local name=$1 want=$2 before after
    shift 2
    before=$(snap)
    call "$@"
    t_eq "$name: HTTP $want" "$want" "$CODE"
    if is_etsi_error "$BODY"; then t_pass "$name: ETSI error body"; else t_fail "$name: ETSI error body" "body [$BODY]"; fi
    t_match "$name: JSON content type" '^application/json' "$CTYPE"
    after=$(snap)
    if [ "$before" = "$after" ]; then
        t_pass "$name: nothing changed"
    else
        t_fail "$name: nothing changed" "$(diff <(printf '%s\n' "$before") <(printf '%s\n' "$after") | head -n 12 | tr '\n' ' ')"
    fi
}

PJ=(-X POST -H 'Content-Type: application/json' --data-binary) # then the body
ENC=/api/v1/keys/SAE_B/enc_keys
DEC=/api/v1/keys/SAE_A/dec_keys
new_uuid() { cat /proc/sys/kernel/random/uuid; }
ids_body() { # key_IDs... -> dec_keys body
    local first=1 id
    printf '{"key_IDs":['
    for id in "$@"; do
        [ $first -eq 1 ] || printf ','
        printf '{"key_ID":"%s"}' "$id"
        first=0
    done
    printf ']}'
}
# key_of BODY ID: the key with that ID in a key container (empty if none).
key_of() { printf '%s' "$1" | jq -r --arg id "$2" '.keys[]? | select(.key_ID == $id) | .key' 2>/dev/null; }

# ---- network ----------------------------------------------------------------------

echo "== network"
# Stock kept ahead of demand is aged out stock_max_age_s after the last demand;
# pushed beyond the suite's run so that ageing cannot move the stores mid-check.
net_up_or_end "$dir" "A B" "A-B" '.stock_max_age_s = 3600'
if wait_for 30 has_stock; then t_pass "site A has stock for SAE_B"; else t_fail "site A has stock for SAE_B" "none after 30 s"; fi

# Keys the dec_keys cases need, made while the link is fed.
call SAE_A "$ENC?number=5"
t_eq "enc_keys SAE_A->SAE_B (5 keys) answered" 200 "$CODE"
MASTER_KEYS=$BODY
mapfile -t IDS < <(printf '%s' "$BODY" | jq -r '.keys[].key_ID' 2>/dev/null)
t_eq "5 key_IDs issued" 5 "${#IDS[@]}"
K_NOTSLAVE=${IDS[0]:-} K_TWICE=${IDS[1]:-} K_GOOD=${IDS[2]:-} K_DUP=${IDS[3]:-} K_CASE=${IDS[4]:-}
call SAE_A2 "$ENC"
t_eq "enc_keys SAE_A2->SAE_B answered" 200 "$CODE"
K_FOREIGN=$(printf '%s' "$BODY" | jq -r '.keys[0].key_ID' 2>/dev/null)
FOREIGN_KEYS=$BODY

# Freeze the link so that the stores only change when a request changes them.
sim_stop A-B
if settle; then t_pass "stores settle once the link is stopped"; else t_fail "stores settle once the link is stopped" "still changing after 20 s"; fi
SNAP=$(snap)
t_match "snapshot holds store A" '"kme_id": "KME_A"' "$SNAP"
t_match "snapshot holds store B" '"kme_id": "KME_B"' "$SNAP"
t_match "snapshot holds both stocks" '== stock A->B [1-9][0-9]*.*== stock B->A [0-9]+' "$(printf '%s' "$SNAP" | tr '\n' ' ')"

# ---- enc_keys, POST body ---------------------------------------------------------------

echo "== enc_keys: malformed POST bodies"
refused "POST malformed JSON" 400 SAE_A "$ENC" "${PJ[@]}" '{"number": 1'
refused "POST body is an array" 400 SAE_A "$ENC" "${PJ[@]}" '[{"number": 1}]'
refused "POST body is a string" 400 SAE_A "$ENC" "${PJ[@]}" '"number"'
refused "POST number as string" 400 SAE_A "$ENC" "${PJ[@]}" '{"number": "2"}'
refused "POST size 1.5" 400 SAE_A "$ENC" "${PJ[@]}" '{"size": 1.5}'
refused "POST additional_slave_SAE_IDs not an array" 400 SAE_A "$ENC" "${PJ[@]}" '{"additional_slave_SAE_IDs": "SAE_B2"}'
refused "POST additional_slave_SAE_IDs holding a number" 400 SAE_A "$ENC" "${PJ[@]}" '{"additional_slave_SAE_IDs": [7]}'
refused "POST unknown member" 400 SAE_A "$ENC" "${PJ[@]}" '{"number": 1, "colour": "blue"}'
refused "POST number 0" 400 SAE_A "$ENC" "${PJ[@]}" '{"number": 0}'
refused "POST number 1025 (> max_key_per_request)" 400 SAE_A "$ENC" "${PJ[@]}" '{"number": 1025}'
refused "POST number -1" 400 SAE_A "$ENC" "${PJ[@]}" '{"number": -1}'
refused "POST size 0" 400 SAE_A "$ENC" "${PJ[@]}" '{"size": 0}'
refused "POST size 7 (not a multiple of 8)" 400 SAE_A "$ENC" "${PJ[@]}" '{"size": 7}'
refused "POST size 12 (not a multiple of 8)" 400 SAE_A "$ENC" "${PJ[@]}" '{"size": 12}'
refused "POST size 65544 (> max_key_size)" 400 SAE_A "$ENC" "${PJ[@]}" '{"size": 65544}'
refused "POST 9 additional slaves (> max_SAE_ID_count 8)" 400 SAE_A "$ENC" "${PJ[@]}" \
    "{\"additional_slave_SAE_IDs\": $(json_list SAE_B2 SAE_X1 SAE_X2 SAE_X3 SAE_X4 SAE_X5 SAE_X6 SAE_X7 SAE_X8)}"
refused "POST extension_mandatory unsupported" 400 SAE_A "$ENC" "${PJ[@]}" '{"extension_mandatory": [{"x": 1}]}'
refused "POST unknown additional slave" 400 SAE_A "$ENC" "${PJ[@]}" '{"additional_slave_SAE_IDs": ["SAE_NOWHERE"]}'
refused "POST additional slave repeats the slave" 400 SAE_A "$ENC" "${PJ[@]}" '{"additional_slave_SAE_IDs": ["SAE_B"]}'
refused "POST unknown slave SAE in the path" 400 SAE_A /api/v1/keys/SAE_NOWHERE/enc_keys "${PJ[@]}" '{"number": 1}'

# ---- enc_keys, GET query ----------------------------------------------------------------

echo "== enc_keys: bad GET queries"
refused "GET number=abc" 400 SAE_A "$ENC?number=abc"
refused "GET number=-1" 400 SAE_A "$ENC?number=-1"
refused "GET number=0" 400 SAE_A "$ENC?number=0"
refused "GET number=1025" 400 SAE_A "$ENC?number=1025"
refused "GET size=12" 400 SAE_A "$ENC?size=12"
refused "GET size=0" 400 SAE_A "$ENC?size=0"
refused "GET unknown query parameter" 400 SAE_A "$ENC?number=1&colour=blue"
refused "GET unknown slave SAE in the path" 400 SAE_A /api/v1/keys/SAE_NOWHERE/enc_keys

# ---- extension_optional is accepted and ignored ---------------------------------------------

echo "== enc_keys: extension_optional"
before=$(snap)
call SAE_A "$ENC" "${PJ[@]}" '{"number": 1, "extension_optional": [{"x": 1}]}'
t_eq "POST extension_optional: HTTP 200" 200 "$CODE"
t_check_fails "the snapshot sees an accepted enc_keys" test "$before" = "$(snap)"
OPT_ID=$(printf '%s' "$BODY" | jq -r '.keys[0].key_ID' 2>/dev/null)
OPT_KEY=$(key_of "$BODY" "$OPT_ID")
t_eq "POST extension_optional: one key" 1 "$(printf '%s' "$BODY" | jq '.keys | length' 2>/dev/null)"
before=$(snap)
call SAE_B "$DEC?key_ID=$OPT_ID"
t_check_fails "the snapshot sees an accepted dec_keys" test "$before" = "$(snap)"
t_eq "POST extension_optional: slave fetches the same key" "$OPT_KEY" "$(key_of "$BODY" "$OPT_ID")"
settle >/dev/null

# ---- dec_keys ---------------------------------------------------------------------------

echo "== dec_keys"
refused "GET dec_keys unknown key_ID" 400 SAE_B "$DEC?key_ID=$(new_uuid)"
refused "POST dec_keys unknown key_ID" 400 SAE_B "$DEC" "${PJ[@]}" "$(ids_body "$(new_uuid)")"
refused "GET dec_keys malformed key_ID" 400 SAE_B "$DEC?key_ID=not-a-uuid"
refused "POST dec_keys malformed key_ID" 400 SAE_B "$DEC" "${PJ[@]}" "$(ids_body "${K_GOOD:0:35}")"
refused "GET dec_keys without key_ID" 400 SAE_B "$DEC"
refused "GET dec_keys unknown query parameter" 400 SAE_B "$DEC?key_ID=$K_GOOD&colour=blue"
refused "POST dec_keys malformed JSON" 400 SAE_B "$DEC" "${PJ[@]}" '{"key_IDs": ['
refused "POST dec_keys empty key_IDs" 400 SAE_B "$DEC" "${PJ[@]}" '{"key_IDs": []}'
refused "POST dec_keys key_IDs not an array" 400 SAE_B "$DEC" "${PJ[@]}" "{\"key_IDs\": \"$K_GOOD\"}"

refused "dec_keys foreign key_ID (issued to master SAE_A2)" 400 SAE_B "$DEC?key_ID=$K_FOREIGN"
call SAE_B "/api/v1/keys/SAE_A2/dec_keys?key_ID=$K_FOREIGN"
t_eq "foreign key_ID: its real master's path still serves it" \
    "$(key_of "$FOREIGN_KEYS" "$K_FOREIGN")" "$(key_of "$BODY" "$K_FOREIGN")"

refused "dec_keys by SAE_B2, not a designated slave" 401 SAE_B2 "$DEC?key_ID=$K_NOTSLAVE"
call SAE_B "$DEC?key_ID=$K_NOTSLAVE"
t_eq "not-a-slave: the designated slave still gets it" \
    "$(key_of "$MASTER_KEYS" "$K_NOTSLAVE")" "$(key_of "$BODY" "$K_NOTSLAVE")"

call SAE_B "$DEC?key_ID=$K_TWICE"
t_eq "first fetch: HTTP 200" 200 "$CODE"
t_eq "first fetch: the master's key" "$(key_of "$MASTER_KEYS" "$K_TWICE")" "$(key_of "$BODY" "$K_TWICE")"
refused "second fetch of the same key_ID (GET)" 400 SAE_B "$DEC?key_ID=$K_TWICE"
refused "second fetch of the same key_ID (POST)" 400 SAE_B "$DEC" "${PJ[@]}" "$(ids_body "$K_TWICE")"

refused "POST one good and one unknown key_ID" 400 SAE_B "$DEC" "${PJ[@]}" "$(ids_body "$K_GOOD" "$(new_uuid)")"
refused "POST one good and one already fetched key_ID" 400 SAE_B "$DEC" "${PJ[@]}" "$(ids_body "$K_GOOD" "$K_TWICE")"
refused "POST one good and one foreign key_ID" 400 SAE_B "$DEC" "${PJ[@]}" "$(ids_body "$K_GOOD" "$K_FOREIGN")"
call SAE_B "$DEC" "${PJ[@]}" "$(ids_body "$K_GOOD")"
t_eq "good key_ID after the refused calls: HTTP 200" 200 "$CODE"
t_eq "good key_ID after the refused calls: the master's key" \
    "$(key_of "$MASTER_KEYS" "$K_GOOD")" "$(key_of "$BODY" "$K_GOOD")"
call SAE_B "$DEC?key_ID=$K_GOOD"
t_eq "good key_ID: only once" 400 "$CODE"

refused "POST duplicate key_ID" 400 SAE_B "$DEC" "${PJ[@]}" "$(ids_body "$K_DUP" "$K_DUP")"
refused "POST duplicate key_ID in other letter case" 400 SAE_B "$DEC" "${PJ[@]}" \
    "$(ids_body "$K_CASE" "$(printf '%s' "$K_CASE" | tr 'a-f' 'A-F')")"
call SAE_B "$DEC" "${PJ[@]}" "$(ids_body "$K_DUP" "$K_CASE")"
t_eq "after the duplicate refusals both keys are still there" \
    "$(key_of "$MASTER_KEYS" "$K_DUP")/$(key_of "$MASTER_KEYS" "$K_CASE")" \
    "$(key_of "$BODY" "$K_DUP")/$(key_of "$BODY" "$K_CASE")"
settle >/dev/null

# ---- 503: not enough key material ------------------------------------------------------------

echo "== not enough key material"
S=$(stock SAE_A SAE_B)
AVAIL=$((S * 256 / 65536)) # stock in 256-bit keys -> whole 65536-bit keys
SNAP0=$(snap)
refused "GET 1024 keys of 65536 bits (8 MiB)" 503 SAE_A "$ENC?number=1024&size=65536"
REASON=$(printf '%s' "$BODY" | jq -r '[.details[]? | tostring] | join(" ")' 2>/dev/null)
t_match "503 details say how many are available ($AVAIL)" "(^|[^0-9])$AVAIL([^0-9]|$)" "$REASON"
t_match "503 details speak of availability" 'availab' "$REASON"
# Nothing may follow from the refusal either (e.g. key carved for later).
settle >/dev/null
SNAP1=$(snap)
if [ "$SNAP0" = "$SNAP1" ]; then
    t_pass "503: nothing changed once the KME settled"
else
    t_fail "503: nothing changed once the KME settled" \
        "$(diff <(printf '%s\n' "$SNAP0") <(printf '%s\n' "$SNAP1") | head -n 16 | tr '\n' ' ')"
fi
t_eq "stock unchanged after the 503" "$S" "$(stock SAE_A SAE_B)"
refused "POST one key more than available" 503 SAE_A "$ENC" "${PJ[@]}" "{\"number\": $((AVAIL + 1)), \"size\": 65536}"

# ---- status, methods, paths -------------------------------------------------------------------

echo "== status, methods and paths"
refused "status for an unknown slave" 400 SAE_A /api/v1/keys/SAE_NOWHERE/status
refused "DELETE enc_keys" 405 SAE_A "$ENC" -X DELETE
refused "PUT dec_keys" 405 SAE_B "$DEC" -X PUT --data-binary '{}'
refused "POST status" 405 SAE_A /api/v1/keys/SAE_B/status "${PJ[@]}" '{}'
refused "unknown operation" 404 SAE_A /api/v1/keys/SAE_B/keys
refused "unknown path" 404 SAE_A /nowhere
refused "path without operation" 404 SAE_A /api/v1/keys/SAE_B

# ---- the whole stock at once -------------------------------------------------------------------
# Last of all: emptying A's stock makes B grant it blocks (relay/grant.c) at a
# time the adverts decide, which would move the stores under later checks.

echo "== the whole stock"
if [ "$AVAIL" -gt 0 ]; then
    call SAE_A "$ENC" "${PJ[@]}" "{\"number\": $AVAIL, \"size\": 65536}"
    t_eq "exactly the available number is served" "200 $AVAIL" "$CODE $(printf '%s' "$BODY" | jq '.keys | length' 2>/dev/null)"
fi

# ---- the daemons survived, and the sanitizers found nothing ------------------------------------

echo "== health"
for s in A B; do
    t_check "KME_$s still running" kill -0 "$(kme_pid "$s")"
done
net_stop
t_logs_clean "$dir/A/kme.log" "$dir/B/kme.log"

t_summary
