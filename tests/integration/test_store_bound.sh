#!/usr/bin/env bash
# The store stays bounded. Two sites A-B fed by qkd-sim; A's store has a
# 16 MiB map and a high-water mark of 30 %, and ingests at most 256 KiB of
# link key ahead of use (link_stock_max_bytes), far below the mark.
#  (a) Link blocks used up are erased at both ends, record and bytes: below
#      the ingest mark, seqs with no record (qkd-sim corrupts nothing, so
#      none was discarded), and the two stores still agree (compare_dumps).
#  (b) Keys for a local slave fill A's store past the mark: one warning line,
#      qkd_kme_store_high_water 1 and the status page say so, and link ingest
#      pauses (block files wait in A's link directory). The slave fetches
#      them: one resume line, the gauge back to 0, and block files are
#      ingested again once link key is used.
#  (c) More keys than the map holds: the request is answered 503 with the
#      ETSI error "key store full" (not a store failure); once keys are
#      fetched the KME stores keys again.
# shellcheck disable=SC2034 # T_SUITE is read by lib.sh
T_SUITE='store_bound'
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# shellcheck source=lib/keys.sh
. "$T_ROOT/tests/integration/lib/keys.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=6700
NET_KME_BASE=6800
NET_ADMIN_BASE=6900
NET_RATE=400000
NET_BLOCK=4096
NET_STOCK=0
NET_FETCH_RETRY=0
NET_EXTRA_SAES="SAE_A2@A"
W=$(mktemp -d "$T_OUT/store_bound.XXXX")
trap net_stop EXIT
t_require_programs kme qkd-sim

metric() { # SITE NAME: the sample's value
    curl -s --max-time 5 "http://127.0.0.1:$(net_admin_port "$1")/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}
metric_is() { [ "$(metric "$1" "$2")" = "$3" ]; }
files_in() { find "$NET_DIR/links/A-B/$1" -maxdepth 1 -name '*.key' | wc -l; }
files_at_least() { [ "$(files_in "$1")" -ge "$2" ]; }
files_below() { [ "$(files_in "$1")" -lt "$2" ]; }
# spent_count SITE PEER: seqs below the site's ingest mark with no record.
spent_count() {
    dump "$1" "$W/spent.$1" &&
        jq -r --arg p "KME_$2" '(.links[$p] | map(.seq)) as $have
            | [range(1; .ingest_marks[$p]) | select(. as $s | $have | index($s) | not)] | length' "$W/spent.$1"
}
ingest_mark() { dump "$1" "$W/mark.$1" && jq -r --arg p "KME_$2" '.ingest_marks[$p]' "$W/mark.$1"; }
mark_above() { [ "$(ingest_mark "$1" "$2")" -gt "$3" ]; }
some_spent() { [ "$(spent_count "$1" "$2")" -ge "$3" ]; }
warnings() { grep -c "at or above the high-water mark" "$NET_DIR/A/kme.log"; }
resumes() { grep -c "link ingest resumes" "$NET_DIR/A/kme.log"; }
says_no_room() { printf '%s' "$BODY" | jq -e '.details[0].reason | test("no room left")' >/dev/null; }
# fill FILE: SAE_A asks for 512 keys of 64 Kibit for SAE_A2 (about 6 MiB stored).
fill() { enc_keys SAE_A SAE_A2 512 65536 "$1"; }

net_init "$W/net" "A B" "A-B" || { t_fail "net_init" "see $W"; t_summary; exit 1; }
net_edit_config A '.store_max_mb = 16 | .store_high_water_percent = 30 | .link_stock_max_bytes = 262144 | .limits = {"max_key_size": 65536, "max_key_per_request": 1024}'
kme_start A
kme_start B
t_check "KME_A starts" kme_wait A 30
t_check "KME_B starts" kme_wait B 30
sim_start A-B

echo "== (a) used-up blocks are erased at both ends"
: >"$W/link.keys"
# 24 keys of 8 Kibit: 24 KiB, about six of the 4 KiB blocks at each end.
for i in 1 2 3; do
    t_check "SAE_A gets 8 keys for SAE_B ($i)" wait_for 30 enc_keys SAE_A SAE_B 8 8192 "$W/link.keys"
done
: >"$W/link.fetched"
fetch_all SAE_B SAE_A "$W/link.keys" "$W/link.fetched" "$W/link.failed"
t_eq "SAE_B fetches the same keys" "$(sort "$W/link.keys")" "$(sort "$W/link.fetched")"
t_check "A erased blocks it used up" wait_for 30 some_spent A B 2
t_check "B erased blocks it recorded as used up" wait_for 30 some_spent B A 2
dump_pair A B "$W/a.A" "$W/a.B"
compare_dumps A B "$W/a.A" "$W/a.B" >"$W/a.violations"
t_eq "the stores agree on every block (dumps)" 0 "$(wc -l <"$W/a.violations")"
[ -s "$W/a.violations" ] && head -5 "$W/a.violations" | sed 's/^/    /'
t_eq "no block discarded (qkd-sim corrupts none)" 0 "$(metric A 'qkd_kme_link_blocks{link="KME_B",state="discarded"}')"

echo "== (b) the high-water mark pauses link ingest"
t_eq "below the mark at first" 0 "$(metric A qkd_kme_store_high_water)"
: >"$W/fill.keys"
t_check "SAE_A gets 512 keys of 64 Kibit for SAE_A2" fill "$W/fill.keys"
t_check "A says once that its store is above the mark" wait_for 30 test "$(warnings)" = 1
t_check "qkd_kme_store_high_water is 1" wait_for 30 metric_is A qkd_kme_store_high_water 1
used=$(metric A qkd_kme_store_map_used_bytes)
t_check "the map usage is over 30 % of 16 MiB ($used bytes)" test "${used:-0}" -ge $((16 * 1024 * 1024 * 30 / 100))
t_check "status.json says so" wait_for 30 bash -c "curl -s http://127.0.0.1:$(net_admin_port A)/status.json |
    jq -e '.store.above_high_water == true and .store.map_bytes == 16777216' >/dev/null"
t_check "block files wait in A's link directory" wait_for 60 files_at_least A 20
t_check "B ingests on meanwhile" wait_for 30 files_below B 5
t_eq "still one warning line" 1 "$(warnings)"
: >"$W/fill.fetched"
fetch_all SAE_A2 SAE_A "$W/fill.keys" "$W/fill.fetched" "$W/fill.failed"
t_eq "SAE_A2 fetches all 512" 512 "$(wc -l <"$W/fill.fetched")"
t_check "A says once that ingest resumes" wait_for 30 test "$(resumes)" = 1
t_check "qkd_kme_store_high_water is 0 again" wait_for 30 metric_is A qkd_kme_store_high_water 0
mark=$(ingest_mark A B)
: >"$W/after.keys"
t_check "SAE_A gets keys for SAE_B (link key used)" wait_for 30 enc_keys SAE_A SAE_B 8 8192 "$W/after.keys"
t_check "A ingests block files again" wait_for 60 mark_above A B "$mark"

echo "== (c) a full store answers 503 key store full"
: >"$W/full.keys"
code=200
for i in 1 2 3 4 5 6; do
    fill "$W/full.keys" || { code=$CODE; break; }
done
t_eq "a request the map cannot hold is answered 503" 503 "$code"
t_eq "... with the ETSI error naming the full store" "key store full" "$(printf '%s' "$BODY" | jq -r .message)"
t_check "... and says why" says_no_room
t_check "the refusal is logged" grep -q "key store full" "$NET_DIR/A/kme.log"
: >"$W/full.fetched"
fetch_all SAE_A2 SAE_A "$W/full.keys" "$W/full.fetched" "$W/full.failed"
t_eq "SAE_A2 fetches the keys stored before it filled" "$(wc -l <"$W/full.keys")" "$(wc -l <"$W/full.fetched")"
: >"$W/again.keys"
t_check "once they are fetched, A stores keys again" enc_keys SAE_A SAE_A2 16 65536 "$W/again.keys"

echo "== sanitizers"
sim_stop A-B
for s in A B; do
    kme_term "$s" 20
    t_eq "KME_$s exits 0 on SIGTERM" 0 "$?"
    t_check "KME_$s log has no sanitizer report" sanitizer_clean "$s"
done

t_summary
