#!/usr/bin/env bash
# The README's commands, run verbatim against a live three-site star (hub A,
# links A-B and A-C) on the README's ports (8441-8443), from a directory whose
# run/ is this test's network: SAE_B gets keys for SAE_C through A, SAE_C
# fetches them, and one key goes to slaves at two sites.
T_SUITE=readme
. "$(dirname "$0")/../lib.sh"
. "$T_ROOT/tests/lib/network.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=8440
NET_KME_BASE=9440
NET_ADMIN_BASE=8840
NET_AUDIT=1

dir=$(mktemp -d "$T_OUT/readme.XXXX")
trap net_stop EXIT
net_init "$dir/run" "A B C" "A-B A-C" || { t_fail "network" "net_init failed"; t_summary; exit 1; }
net_start || { t_fail "network" "did not start"; t_summary; exit 1; }
stock_ready() { [ "$(sae_curl SAE_B /api/v1/keys/SAE_C/status | jq .stored_key_count)" -gt 8 ]; }
wait_for 30 stock_ready || t_fail "stock" "no key for SAE_C at site B"

# readme_block N: the Nth ```sh block that follows a readme-test marker.
readme_block() {
    awk -v want="$1" '
        /<!-- readme-test/ { armed = 1; next }
        armed && /^```sh$/ { n++; inside = (n == want); armed = 0; next }
        inside && /^```$/ { inside = 0; next }
        inside { print }
    ' "$T_ROOT/README.md"
}

curl_block=$(readme_block 1)
t_match "README has the five curl operations" 'status.*enc_keys\?number.*enc_keys.*dec_keys\?key_ID.*key_IDs' \
    "$(echo "$curl_block" | tr '\n' ' ')"

cd "$dir" || exit 1
out=$(bash -e -o pipefail -c "$curl_block" 2>"$dir/readme.err")
rc=$?
t_eq "the curl block runs without error" 0 "$rc"
# JSON answers: status, a 2-key container, nothing (captured), two 1-key
# containers, the multicast container.
answers=$(echo "$out" | jq -c . 2>/dev/null)
t_eq "five JSON answers printed" 5 "$(echo "$answers" | grep -c .)"
t_eq "GET_STATUS answered" "KME_B KME_C SAE_B SAE_C" \
    "$(echo "$answers" | sed -n 1p | jq -r '"\(.source_KME_ID) \(.target_KME_ID) \(.master_SAE_ID) \(.slave_SAE_ID)"')"
t_eq "GET_KEY (GET) gave two 256-bit keys" "2 44 44" \
    "$(echo "$answers" | sed -n 2p | jq -r '"\(.keys | length) \(.keys[0].key | length) \(.keys[1].key | length)"' 2>/dev/null)"
t_eq "GET_KEY_WITH_KEY_IDS (GET) gave the 512-bit key" "1 88" \
    "$(echo "$answers" | sed -n 3p | jq -r '"\(.keys | length) \(.keys[0].key | length)"' 2>/dev/null)"
t_eq "GET_KEY_WITH_KEY_IDS (POST) gave the key" 1 "$(echo "$answers" | sed -n 4p | jq '.keys | length')"
t_nomatch "no ETSI error among the answers" '"message"' "$out"
multi=$(echo "$answers" | sed -n 5p)
multi_id=$(echo "$multi" | jq -r '.keys[0].key_ID')
t_eq "the multicast key: SAE_C fetches the master's bytes at KME_C" "$(echo "$multi" | jq -r '.keys[0].key')" \
    "$(sae_curl SAE_C "/api/v1/keys/SAE_B/dec_keys?key_ID=$multi_id" | jq -r '.keys[0].key')"
t_eq "the multicast key: SAE_A fetches the master's bytes at KME_A" "$(echo "$multi" | jq -r '.keys[0].key')" \
    "$(sae_curl SAE_A "/api/v1/keys/SAE_B/dec_keys?key_ID=$multi_id" | jq -r '.keys[0].key')"

cli_block=$(readme_block 2 | sed "s#build/release/bin/#$T_BIN/#g")
cli_out=$(bash -e -o pipefail -c "$cli_block" 2>"$dir/cli.err")
t_eq "the sae-client block runs without error" 0 $?
master=$(echo "$cli_out" | head -n 2)
slave=$(echo "$cli_out" | tail -n 2)
t_eq "sae-client printed two keys for the master and two for the slave" 4 "$(echo "$cli_out" | grep -cE '^[0-9a-f-]{36} [0-9a-f]{64}$')"
t_eq "the slave received exactly the master's keys" "$master" "$slave"

# The audit log of KME_B lists the master's keys, that of KME_C the slave's fetch.
for id in $(echo "$cli_out" | head -n 2 | cut -d' ' -f1); do
    t_eq "audit: KME_B recorded key $id handed to SAE_B" 1 \
        "$(jq -c "select(.key_ID == \"$id\" and .event == \"enc\" and .sae == \"SAE_B\")" "$NET_DIR/B/audit.log" | grep -c .)"
    t_eq "audit: KME_C recorded key $id fetched by SAE_C" 1 \
        "$(jq -c "select(.key_ID == \"$id\" and .event == \"dec\" and .sae == \"SAE_C\")" "$NET_DIR/C/audit.log" | grep -c .)"
done
for s in A B C; do
    t_check_fails "audit: no key material in KME_$s's audit log" \
        grep -qF -e '"key":' $(echo "$cli_out" | cut -d' ' -f2 | sed 's/^/-e /') "$NET_DIR/$s/audit.log"
done

metrics_out=$(bash -e -o pipefail -c "$(readme_block 3)" 2>"$dir/metrics.err")
t_eq "the metrics block runs without error" 0 $?
t_match "the metrics block shows KME_B's stock on its link to KME_A" \
    'qkd_kme_link_key_stock_bytes\{link="KME_A",owner="self"\} [0-9]+' "$metrics_out"

t_logs_clean "$NET_DIR/A/kme.log" "$NET_DIR/B/kme.log" "$NET_DIR/C/kme.log"
t_summary
