#!/usr/bin/env bash
# Key material rests sealed (README, "Sealed store"). Site A wraps its
# store's data key with an AES key in a SoftHSM2 token (its own
# SOFTHSM2_CONF in the suite's directory, the key made by kme
# --init-store-key), site B with a key file. After SAEs get and fetch keys
# (local DRBG keys, keys reserved for the request, keys from A's stock) and
# some stay waiting, neither data.mdb nor an mdb_copy backup of it holds any
# key handed out, nor any 32-byte piece of the link blocks qkd-sim wrote
# (copied before the KMEs started, and deleted once ingested). A KME does not
# start, and its SAE port never answers, with the token's module missing, a
# wrong PIN, a wrong token label, no store_key, a key file readable by
# others, missing, or not the one the store was made with; each says what is
# wrong. A sealed key record changed in the file is refused with 503, never
# served, and logged; the other keys are still served. So is a changed stock
# key, which is gone with its request.
# shellcheck disable=SC2034 # T_SUITE is read by lib.sh
T_SUITE='sealed_store'
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# shellcheck source=lib/keys.sh
. "$T_ROOT/tests/integration/lib/keys.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=6700
NET_KME_BASE=6800
NET_EXTRA_SAES="SAE_A2@A"
W=$(mktemp -d "$T_OUT/sealed_store.XXXX")
trap net_stop EXIT
t_require_programs kme qkd-sim
SOFTHSM_MODULE=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
for p in softhsm2-util mdb_copy mdb_dump mdb_load python3; do
    command -v "$p" >/dev/null || { t_fail "prerequisites" "$p is missing (make deps)"; t_summary; exit 1; }
done
[ -f "$SOFTHSM_MODULE" ] || { t_fail "prerequisites" "$SOFTHSM_MODULE is missing (make deps)"; t_summary; exit 1; }
BYTES="python3 $T_ROOT/tests/integration/lib/store_bytes.py"

echo "== a SoftHSM2 token for site A, a key file for site B"
export SOFTHSM2_CONF=$W/softhsm2.conf
mkdir -p "$W/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$W/tokens" >"$SOFTHSM2_CONF"
t_check "token kme-a initialised" softhsm2-util --init-token --free --label kme-a --pin 3141 --so-pin 2718
(umask 077 && printf '3141\n' >"$W/pin" && printf '9999\n' >"$W/wrong-pin")
net_init "$W/net" "A B" "A-B" || { t_fail "net_init" "see $W"; t_summary; exit 1; }
# shellcheck disable=SC2016 # jq variables
net_edit_config A "$(printf '.store_key = {pkcs11: {module: "%s", token_label: "kme-a", pin_file: "%s", key_label: "kme-store-wrap"}}' \
    "$SOFTHSM_MODULE" "$W/pin")"
t_check "kme --init-store-key makes the wrapping key in the token" \
    "$NET_BIN/kme" --config "$NET_DIR/A/kme.json" --init-store-key
t_check_fails "a second --init-store-key refuses to replace it" \
    "$NET_BIN/kme" --config "$NET_DIR/A/kme.json" --init-store-key
t_eq "B's key file is 32 bytes, mode 600" "32 600" "$(stat -c '%s %a' "$NET_DIR/B/store.key")"

echo "== link blocks written before the KMEs start"
sim_start A-B
blocks_written() { [ "$(find "$NET_DIR/links/A-B/A" -name '*.key' | wc -l)" -ge 3 ]; }
t_check "qkd-sim writes blocks" wait_for 30 blocks_written
sim_stop A-B
mkdir -p "$W/blocks"
cp "$NET_DIR/links/A-B/A/"*.key "$W/blocks/"
sim_start A-B
kme_start A
kme_start B
t_check "A starts (its data key made and wrapped in the token)" kme_wait A 30
t_check "B starts (its data key wrapped by its key file)" kme_wait B 30
t_check "the routes are learned" net_wait_routed 30
gone() { ! ls "$NET_DIR/links/A-B/A/$(basename "$1")" >/dev/null 2>&1; }
all_ingested() { local f; for f in "$W/blocks/"*.key; do gone "$f" || return 1; done; }
t_check "the copied blocks are ingested and their files deleted" wait_for 30 all_ingested

echo "== keys handed out"
: >"$W/keys"
t_check "SAE_A gets 6 local keys for SAE_A2" enc_keys SAE_A SAE_A2 6 256 "$W/keys"
t_check "SAE_A gets 6 keys for SAE_B (reserved for the request)" enc_keys SAE_A SAE_B 6 256 "$W/keys"
stock_ids() {
    dump A "$W/stock.A" &&
        jq -r '.stock[]? | select(.master == "SAE_A" and .slave == "SAE_B" and .size == 256) | .key_ID' "$W/stock.A"
}
has_stock() { [ -n "$(stock_ids)" ]; }
t_check "A keeps stock for SAE_B" wait_for 20 has_stock
stock_ids | sort >"$W/stock.before"
: >"$W/k.stock"
t_check "SAE_A gets 4 keys for SAE_B from stock" enc_keys SAE_A SAE_B 4 256 "$W/k.stock"
t_eq "they came from A's stock" 4 "$(awk '{ print $1 }' "$W/k.stock" | sort | comm -12 - "$W/stock.before" | wc -l)"
cat "$W/k.stock" >>"$W/keys"
t_eq "16 keys handed out" 16 "$(wc -l <"$W/keys")"
# The 6 local keys fetched by SAE_A2; of the 10 for SAE_B, 3 left waiting.
: >"$W/fetched"
head -6 "$W/keys" >"$W/keys.local"
sed -n '7,9p' "$W/keys" >"$W/keys.waiting"
tail -n +10 "$W/keys" >"$W/keys.remote"
t_check "SAE_A2 fetches the 6 local keys" dec_keys SAE_A2 SAE_A "$W/keys.local" "$W/fetched"
t_check "SAE_B fetches 7 of its 10" dec_keys SAE_B SAE_A "$W/keys.remote" "$W/fetched"
t_eq "the fetched bytes are those handed to the master" "$(sort "$W/keys.local" "$W/keys.remote")" "$(sort "$W/fetched")"

echo "== no key byte in the store files or a backup"
kme_stop A
kme_stop B
for s in A B; do
    mkdir -p "$W/backup.$s"
    t_check "mdb_copy backs up $s's store" mdb_copy "$NET_DIR/$s/data" "$W/backup.$s"
done
FILES=("$NET_DIR/A/data/data.mdb" "$NET_DIR/B/data/data.mdb" "$NET_DIR/A/data/epochs" "$NET_DIR/B/data/epochs"
    "$W/backup.A/data.mdb" "$W/backup.B/data.mdb")
t_eq "none of the 16 keys in either store or backup" 0 "$($BYTES keys "$W/keys" "${FILES[@]}")"
t_eq "no 32-byte piece of the link blocks there either" 0 "$($BYTES blocks "$W/blocks" "${FILES[@]}")"
# The finder finds what is there: the keys in a file of their raw bytes, the blocks in their own files.
awk '{print $2}' "$W/keys" | while read -r k; do printf '%s' "$k" | base64 -d; done >"$W/keys.raw"
t_eq "(the finder finds each key in a file of their raw bytes)" 16 "$($BYTES keys "$W/keys" "$W/keys.raw")"
t_check "(the finder finds the block pieces in the block files)" \
    test "$($BYTES blocks "$W/blocks" "$W/blocks/"*.key)" -gt 100

echo "== startup refused"
cp "$NET_DIR/A/kme.json" "$W/A.json"
cp "$NET_DIR/B/kme.json" "$W/B.json"
# refused SITE WHAT PATTERN: the KME exits non-zero, its message matches
# PATTERN, and its SAE port never answered.
refused() {
    local s=$1 what=$2 pattern=$3 log=$W/refused.$1.log rc
    : >"$log"
    "$NET_BIN/kme" --config "$NET_DIR/$s/kme.json" >"$log" 2>&1 &
    local pid=$!
    local answered=0
    while kill -0 "$pid" 2>/dev/null; do
        kme_ready "$s" && answered=1
        sleep 0.1
    done
    wait "$pid"
    rc=$?
    t_check "$what: exits non-zero" test "$rc" -ne 0
    t_match "$what: says so" "$pattern" "$(cat "$log")"
    t_eq "$what: the SAE port never answered" 0 "$answered"
    t_nomatch "$what: nothing served" " ready: " "$(cat "$log")"
}
net_edit_config A ".store_key.pkcs11.module = \"$W/no-such-module.so\""
refused A "token module missing" "PKCS#11 module .*no-such-module.so cannot be loaded"
cp "$W/A.json" "$NET_DIR/A/kme.json"
net_edit_config A ".store_key.pkcs11.pin_file = \"$W/wrong-pin\""
refused A "wrong PIN" "login refused \\(CKR_PIN_INCORRECT\\): wrong PIN"
cp "$W/A.json" "$NET_DIR/A/kme.json"
net_edit_config A '.store_key.pkcs11.token_label = "kme-z"'
refused A "wrong token label" "no token labelled 'kme-z'"
cp "$W/A.json" "$NET_DIR/A/kme.json"
net_edit_config A '.store_key.pkcs11.key_label = "other"'
refused A "wrong key label" "holds no AES key labelled 'other'"
cp "$W/A.json" "$NET_DIR/A/kme.json"
net_edit_config A '.store_key = "none-insecure"'
refused A "store_key none-insecure for a wrapped store" "wrapped by a PKCS#11 token"
cp "$W/A.json" "$NET_DIR/A/kme.json"
net_edit_config A 'del(.store_key)'
refused A "no store_key" "missing setting 'store_key'"
cp "$W/A.json" "$NET_DIR/A/kme.json"
chmod 644 "$NET_DIR/B/store.key"
refused B "key file mode 644" "store key file .*readable or writable by group or others"
chmod 600 "$NET_DIR/B/store.key"
(umask 077 && head -c 32 /dev/urandom >"$W/other-site.key")
net_edit_config B ".store_key.file = \"$W/other-site.key\""
refused B "the key file of another site" "cannot unwrap the data key"
net_edit_config B ".store_key.file = \"$W/no-such.key\""
refused B "key file missing" "store key file .*no-such.key: cannot open"
cp "$W/B.json" "$NET_DIR/B/kme.json"

echo "== a sealed record changed in the file"
victim=$(head -1 "$W/keys.waiting" | awk '{print $1}')
t_check "one byte of the waiting key $victim flipped in B's store" $BYTES tamper "$NET_DIR/B/data" "$victim"
kme_start A
kme_start B
t_check "A starts again" kme_wait A 30
t_check "B starts again (nothing is checked at start beyond the data key)" kme_wait B 30
head -1 "$W/keys.waiting" >"$W/victim"
: >"$W/victim.out"
dec_keys SAE_B SAE_A "$W/victim" "$W/victim.out"
t_eq "its fetch is refused with 503" 503 "$CODE"
t_match "with the ETSI error body" '"message": *"key store failure"' "$BODY"
t_eq "nothing served" "" "$(cat "$W/victim.out")"
t_match "B's log names the record" "sealed keys record '$victim' does not authenticate" "$(cat "$NET_DIR/B/kme.log")"
tail -n +2 "$W/keys.waiting" >"$W/others"
: >"$W/others.out"
t_check "the other waiting keys are served" dec_keys SAE_B SAE_A "$W/others" "$W/others.out"
t_eq "with their bytes" "$(cat "$W/others")" "$(cat "$W/others.out")"
dec_keys SAE_B SAE_A "$W/victim" "$W/victim.out"
t_eq "the changed one is refused again" "503 " "$CODE $(cat "$W/victim.out")"

echo "== a sealed stock record changed in the file"
# The writer only moves stock out of the store; the key is opened after the
# commit. A changed one fails its request and is gone: no later request meets it.
kme_stop A
stock_victim=$($BYTES tamper-stock "$NET_DIR/A/data")
t_check "one byte of A's next stock key flipped (${stock_victim:-none})" test -n "$stock_victim"
kme_start A
t_check "A starts again" kme_wait A 30
t_check "A routes again" net_wait_routed 30
: >"$W/sv.out"
enc_keys SAE_A SAE_B 1 256 "$W/sv.out"
t_eq "the request that takes it is refused with 503" 503 "$CODE"
t_match "with the ETSI error body" '"message": *"key store failure"' "$BODY"
t_eq "nothing served" "" "$(cat "$W/sv.out")"
t_match "A's log names the record" "sealed stock record '[^']*$stock_victim' does not authenticate" \
    "$(cat "$NET_DIR/A/kme.log")"
t_check "the next request is served" enc_keys SAE_A SAE_B 1 256 "$W/sv.out"
t_eq "with another key" 1 "$(grep -vc "^$stock_victim " "$W/sv.out")"

net_stop
t_logs_clean "$NET_DIR/A/kme.log" "$NET_DIR/B/kme.log"
t_summary
