#!/bin/bash
# Forgetting at rest and rotation of the wrapping key (README, "Sealed
# store"). Two sites whose keys live 20 s and are erased once fetched.
# SAEs get and fetch keys (local and over the link); an attacker who copies
# data.mdb and the keyring while the keys live, and holds the site's key
# file, opens them: the finder works. Once their epochs end, the KMEs erase
# the epoch keys (logged, counted in /metrics): the same attacker, with the
# same key file, on the same files and on the copy taken before, opens not
# one of them, and no key byte is in any of the files in clear. Then site A's
# wrapping key is rotated by SIGHUP: keys are still served, the old key file
# unwraps nothing of the keyring and A does not start with it, the new one
# does, and what was sealed before the rotation is still served.
# shellcheck disable=SC2034 # T_SUITE is read by lib.sh
T_SUITE=forgetting
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# shellcheck source=lib/keys.sh
. "$T_ROOT/tests/integration/lib/keys.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=9100
NET_KME_BASE=9200
NET_ADMIN_BASE=9300
NET_EXTRA_SAES="SAE_A2@A"
NET_KEY_TTL=20
NET_FETCH_RETRY=0
NET_STOCK=0
W=$(mktemp -d "$T_OUT/forgetting.XXXX")
trap net_stop EXIT
t_require_programs kme qkd-sim
python3 -c 'import cryptography' 2>/dev/null || { t_fail "prerequisites" "python3-cryptography is missing (make deps)"; t_summary; exit 1; }
BYTES="python3 $T_ROOT/tests/integration/lib/store_bytes.py"

net_up_or_end "$W/net" "A B" "A-B"

echo "== keys handed out"
: >"$W/keys"
t_check "SAE_A gets 6 keys for SAE_B once link key is there" wait_for 30 enc_keys SAE_A SAE_B 6 256 "$W/keys"
t_check "SAE_A gets 6 local keys for SAE_A2" enc_keys SAE_A SAE_A2 6 256 "$W/keys"
head -6 "$W/keys" >"$W/keys.remote"
tail -6 "$W/keys" >"$W/keys.local"

echo "== while they wait, a thief with the key file opens them"
# A copy of both sites' files as a thief would take them, the KMEs running.
for s in A B; do
    mkdir -p "$W/stolen.$s"
    cp "$NET_DIR/$s/data/data.mdb" "$NET_DIR/$s/data/epochs" "$W/stolen.$s/"
done
stolen() { # SITE KEYRING: keys the thief opens from the copy taken while they waited
    $BYTES recover "$W/keys" "$NET_DIR/$1/store.key" "$2" "$W/stolen.$1/data.mdb"
}
t_eq "(the finder opens the 6 local keys in A's copy)" 6 "$(stolen A "$W/stolen.A/epochs")"
t_eq "(the finder opens the 6 keys for SAE_B in B's copy)" 6 "$(stolen B "$W/stolen.B/epochs")"
t_eq "no key byte in clear in the copies" 0 \
    "$($BYTES keys "$W/keys" "$W/stolen.A/data.mdb" "$W/stolen.B/data.mdb" "$W/stolen.A/epochs" "$W/stolen.B/epochs")"

echo "== fetched"
: >"$W/fetched"
t_check "SAE_B fetches its 6" dec_keys SAE_B SAE_A "$W/keys.remote" "$W/fetched"
t_check "SAE_A2 fetches its 6" dec_keys SAE_A2 SAE_A "$W/keys.local" "$W/fetched"
t_eq "with the bytes handed to the master" "$(sort "$W/keys")" "$(sort "$W/fetched")"

echo "== once their epochs end, the KMEs erase the epoch keys"
metric() { # SITE NAME
    curl -s --max-time 5 "http://127.0.0.1:$(net_admin_port "$1")/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}
erased() { [ "$(metric "$1" qkd_kme_store_epoch_keys_erased_total)" -ge 1 ] 2>/dev/null; }
no_key_epoch_left() { # SITE: nothing the thief opens with the files as they are now
    [ "$($BYTES recover "$W/keys" "$NET_DIR/$1/store.key" "$NET_DIR/$1/data/epochs" "$NET_DIR/$1/data/data.mdb")" = 0 ]
}
# A key lives 20 s; its epoch ends at most 16 s after, and the sweep runs every 5 s.
t_check "A erases epoch keys" wait_for 60 erased A
t_check "B erases epoch keys" wait_for 60 erased B
t_check "A's own files open none of the keys any more" wait_for 60 no_key_epoch_left A
t_check "B's own files open none of the keys any more" wait_for 60 no_key_epoch_left B
t_match "A's log says so" "erased [0-9]+ epoch keys" "$(cat "$NET_DIR/A/kme.log")"
for s in A B; do
    t_eq "$s: the copy taken while they waited, read with the keyring as it is now, opens none" 0 \
        "$(stolen "$s" "$NET_DIR/$s/data/epochs")"
done
t_eq "no key byte in clear in any store file" 0 \
    "$($BYTES keys "$W/keys" "$NET_DIR/A/data/data.mdb" "$NET_DIR/B/data/data.mdb" "$NET_DIR/A/data/epochs" \
        "$NET_DIR/B/data/epochs")"

echo "== the wrapping key rotated while A serves"
# Keys that outlive the restarts below, so that no wait races their expiry.
kme_stop A
net_edit_config A '.key_ttl_seconds = 3600'
kme_start A
t_check "A restarts with keys living an hour" kme_wait A 30
: >"$W/before"
t_check "SAE_A gets 4 local keys for SAE_A2, sealed under the first key" enc_keys SAE_A SAE_A2 4 256 "$W/before"
cp "$NET_DIR/A/data/epochs" "$W/epochs.before"
(umask 077 && head -c 32 /dev/urandom >"$NET_DIR/A/store2.key")
cp "$NET_DIR/A/kme.json" "$W/A.old.json"
net_edit_config A ".store_key.file = \"$NET_DIR/A/store2.key\""
rotated() { grep -q "store_key rotated" "$NET_DIR/A/kme.log"; }
kill -HUP "$(kme_pid A)"
t_check "SIGHUP: A says the store key is rotated" wait_for 20 rotated
: >"$W/after"
t_check "A still serves keys" enc_keys SAE_A SAE_A2 2 256 "$W/after"
t_check "(the old key file unwrapped the keyring before)" $BYTES recover "$W/before" "$NET_DIR/A/store.key" \
    "$W/epochs.before" "$NET_DIR/A/data/data.mdb"
t_check_fails "the old key file no longer unwraps A's keyring" $BYTES recover "$W/before" \
    "$NET_DIR/A/store.key" "$NET_DIR/A/data/epochs" "$NET_DIR/A/data/data.mdb"
t_eq "the new key file does, and opens the 4 keys" 4 \
    "$($BYTES recover "$W/before" "$NET_DIR/A/store2.key" "$NET_DIR/A/data/epochs" "$NET_DIR/A/data/data.mdb")"
kme_stop A
cp "$NET_DIR/A/kme.json" "$W/A.new.json"
cp "$W/A.old.json" "$NET_DIR/A/kme.json"
timeout $((6 * T_WAIT_SCALE)) "$NET_BIN/kme" --config "$NET_DIR/A/kme.json" >"$W/old-key.log" 2>&1
t_match "A does not start with the old key file" "cannot unwrap the data key" "$(cat "$W/old-key.log")"
cp "$W/A.new.json" "$NET_DIR/A/kme.json"
kme_start A
t_check "A starts with the new key file" kme_wait A 30
: >"$W/before.fetched"
t_check "SAE_A2 fetches the keys sealed before the rotation" dec_keys SAE_A2 SAE_A "$W/before" "$W/before.fetched"
t_eq "with their bytes" "$(sort "$W/before")" "$(sort "$W/before.fetched")"
t_logs_clean "$NET_DIR/A/kme.log" "$NET_DIR/B/kme.log"
t_summary
