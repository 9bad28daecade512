#!/bin/bash
# Backup and restore never hand out a key or a byte of link key twice
# (README, "Back up and restore"). Sites A and B share a link; keys flow both
# ways and A holds stock for SAE_B. kme --backup copies A's store while it
# serves: the copy opens none of the keys waiting at A then, even with A's
# key file. Keys then flow again (stock taken, link key used). A is stopped,
# its store moved away and the backup restored with kme --restore; A uses
# none of the link before it adopts B's view of it (B drops the blocks A no
# longer has and the stock it held for A); keys flow a third time. Every key the SAEs received, in all three rounds, is unique
# by ID and by bytes; the keys waiting at the backup are not served again;
# no message carried link key an earlier message had used (the debug logs
# of both ends); and both ends' stores agree on every block.
# shellcheck disable=SC2034 # T_SUITE is read by lib.sh
T_SUITE=backup_restore
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# shellcheck source=lib/keys.sh
. "$T_ROOT/tests/integration/lib/keys.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=9400
NET_KME_BASE=9500
NET_EXTRA_SAES="SAE_A2@A"
NET_LOG_LEVEL=debug
W=$(mktemp -d "$T_OUT/backup_restore.XXXX")
trap net_stop EXIT
t_require_programs kme qkd-sim
python3 -c 'import cryptography' 2>/dev/null || { t_fail "prerequisites" "python3-cryptography is missing (make deps)"; t_summary; exit 1; }
BYTES="python3 $T_ROOT/tests/integration/lib/store_bytes.py"

net_up_or_end "$W/net" "A B" "A-B"

# round N: keys both ways, all fetched; appended to $W/all (master side) and $W/got (slave side).
: >"$W/all"
: >"$W/got"
round() {
    local n=$1
    : >"$W/r$n.ab"
    : >"$W/r$n.ba"
    t_check "round $n: SAE_A gets 2 x 10 keys for SAE_B" wait_for 30 enc_keys SAE_A SAE_B 10 256 "$W/r$n.ab"
    t_check "round $n: (second request)" wait_for 30 enc_keys SAE_A SAE_B 10 256 "$W/r$n.ab"
    t_check "round $n: SAE_B gets 10 keys for SAE_A" wait_for 30 enc_keys SAE_B SAE_A 10 256 "$W/r$n.ba"
    : >"$W/r$n.ab.got"
    : >"$W/r$n.ba.got"
    fetch_all SAE_B SAE_A "$W/r$n.ab" "$W/r$n.ab.got" "$W/r$n.ab.fail"
    fetch_all SAE_A SAE_B "$W/r$n.ba" "$W/r$n.ba.got" "$W/r$n.ba.fail"
    t_eq "round $n: every key is fetched with its bytes" "$(sort "$W/r$n.ab" "$W/r$n.ba")" \
        "$(sort "$W/r$n.ab.got" "$W/r$n.ba.got")"
    cat "$W/r$n.ab" "$W/r$n.ba" >>"$W/all"
    cat "$W/r$n.ab.got" "$W/r$n.ba.got" >>"$W/got"
}

echo "== round 1, then keys left waiting and stock"
round 1
: >"$W/waiting"
t_check "SAE_A gets 5 local keys for SAE_A2, left waiting" enc_keys SAE_A SAE_A2 5 256 "$W/waiting"
cat "$W/waiting" >>"$W/all"
has_stock() { [ "$(stored_count SAE_A SAE_B)" -gt 0 ] 2>/dev/null; }
t_check "A holds stock for SAE_B" wait_for 30 has_stock

echo "== backup while A serves"
t_check "kme --backup copies A's store" "$NET_BIN/kme" --config "$NET_DIR/A/kme.json" --backup "$W/backup"
t_check "the backup is data.mdb and the keyring" test -s "$W/backup/data.mdb" -a -s "$W/backup/epochs"
t_eq "(A's own files open the 5 waiting keys with its key file)" 5 \
    "$($BYTES recover "$W/waiting" "$NET_DIR/A/store.key" "$NET_DIR/A/data/epochs" "$NET_DIR/A/data/data.mdb")"
t_eq "the backup opens none of them with A's key file" 0 \
    "$($BYTES recover "$W/waiting" "$NET_DIR/A/store.key" "$W/backup/epochs" "$W/backup/data.mdb")"
t_eq "no key byte in clear in the backup" 0 "$($BYTES keys "$W/all" "$W/backup/data.mdb" "$W/backup/epochs")"
t_check_fails "a second backup into the same directory is refused" \
    "$NET_BIN/kme" --config "$NET_DIR/A/kme.json" --backup "$W/backup"

echo "== round 2 after the backup (stock taken, link key used)"
round 2

echo "== A restored from the backup"
kme_stop A
t_check_fails "restore refuses to overwrite a store" \
    "$NET_BIN/kme" --config "$NET_DIR/A/kme.json" --restore "$W/backup"
mv "$NET_DIR/A/data" "$W/A.data.before-restore"
t_check "kme --restore puts the backup in place" "$NET_BIN/kme" --config "$NET_DIR/A/kme.json" --restore "$W/backup"
kme_start A
t_check "A starts on the restored store" kme_wait A 30
t_check "the routes are learned again" net_wait_routed 30
resynced() { grep -q "link KME_B: resynchronised after the restore" "$NET_DIR/A/kme.log"; }
t_check "A adopts B's view of the link before it uses any of it" wait_for 30 resynced
t_match "B discards the blocks A no longer has, and its stock for A" \
    "the neighbour restored its store from a backup: .* discarded [0-9]+ blocks .* [0-9]+ stock keys" \
    "$(cat "$NET_DIR/B/kme.log")"
: >"$W/waiting.got"
dec_keys SAE_A2 SAE_A "$W/waiting" "$W/waiting.got"
t_eq "the keys waiting at the backup are not served again" "400 0" "$CODE $(wc -l <"$W/waiting.got")"

echo "== round 3 after the restore"
round 3

echo "== nothing handed out twice"
t_eq "95 keys handed out in all" 95 "$(wc -l <"$W/all")"
t_eq "no key ID twice" "" "$(awk '{ print $1 }' "$W/all" | sort | uniq -d)"
t_eq "no key bytes twice" "" "$(awk '{ print $2 }' "$W/all" | sort | uniq -d)"
t_eq "no key received twice by the slaves" "" "$(sort "$W/got" | uniq -d)"
net_stop
dump A "$W/A.dump"
dump B "$W/B.dump"
compare_dumps A B "$W/A.dump" "$W/B.dump" >"$W/violations"
t_eq "both ends agree on every block (dumps of the stopped stores)" 0 "$(wc -l <"$W/violations")"
[ -s "$W/violations" ] && head -3 "$W/violations" | sed 's/^/    /'
reused_ranges A B >"$W/reused"
t_eq "no message carried link key an earlier one had used (both ends' logs)" 0 "$(wc -l <"$W/reused")"
[ -s "$W/reused" ] && head -3 "$W/reused" | sed 's/^/    /'
t_logs_clean "$NET_DIR/A/kme.log" "$NET_DIR/B/kme.log"
t_summary
