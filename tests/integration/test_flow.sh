#!/usr/bin/env bash
# The full master/slave flow over real TLS, HTTP and LMDB between two sites:
# GET and POST forms, several sizes and counts, slaves at the same and at the
# adjacent KME, multicast, and that no key ever reaches anyone twice (I2, I3).
T_SUITE=flow
. "$(dirname "$0")/../lib.sh"
. "$T_ROOT/tests/lib/network.sh"
# Every key is handed out once, strictly: a second fetch is refused at once
# (the default fetch retry window is tested in test_expiry.sh).
NET_FETCH_RETRY=0
NET_BIN=$T_BIN
NET_SAE_BASE=5100
NET_KME_BASE=5200
NET_EXTRA_SAES="SAE_A2@A SAE_B2@B"

dir=$(mktemp -d "$T_OUT/flow.XXXX")
trap net_stop EXIT
# Stock is never dropped for its age here (stock_max_age_s 3600), so what
# waits at one site stays exactly the other's stock, however long the run takes.
{ net_init "$dir" "A B" "A-B" && net_edit_config A '.stock_max_age_s = 3600' &&
    net_edit_config B '.stock_max_age_s = 3600' && net_start; } || { t_fail "network" "did not start"; t_summary; exit 1; }
# jq: byte length of a base64 string
B64LEN='((length / 4 * 3) - (if endswith("==") then 2 elif endswith("=") then 1 else 0 end))'
stock_at_least() { [ "$(sae_curl "$1" "/api/v1/keys/$2/status" | jq .stored_key_count)" -gt "$3" ]; }
wait_for 30 stock_at_least SAE_A SAE_B 100 || t_fail "stock" "site A has no link key for SAE_B"
# Both ends have key: B owns the odd blocks.
wait_for 30 stock_at_least SAE_B SAE_A 100 || t_fail "stock" "site B has no link key for SAE_A"

delivered="$dir/delivered.txt"  # key_ID key(base64) as received by masters
fetched="$dir/fetched.txt"      # key_ID key as received by slaves
: >"$delivered"
: >"$fetched"

# enc MASTER SLAVE FORM NUMBER SIZE [JSON] -> prints the container; records keys
enc() {
    local master=$1 slave=$2 form=$3 number=$4 size=$5 extra=${6:-} out
    if [ "$form" = GET ]; then
        out=$(sae_curl "$master" "/api/v1/keys/$slave/enc_keys?number=$number&size=$size")
    else
        out=$(sae_curl "$master" "/api/v1/keys/$slave/enc_keys" -H 'Content-Type: application/json' \
            -d "{\"number\":$number,\"size\":$size$extra}")
    fi
    echo "$out" | jq -r '.keys[]? | "\(.key_ID) \(.key)"' >>"$delivered"
    echo "$out"
}
# dec SLAVE MASTER FORM IDS... -> prints the container; records keys
dec() {
    local slave=$1 master=$2 form=$3 out
    shift 3
    if [ "$form" = GET ]; then
        out=$(sae_curl "$slave" "/api/v1/keys/$master/dec_keys?key_ID=$1")
    else
        local body
        body=$(printf '%s\n' "$@" | jq -R . | jq -sc '{key_IDs: map({key_ID: .})}')
        out=$(sae_curl "$slave" "/api/v1/keys/$master/dec_keys" -H 'Content-Type: application/json' -d "$body")
    fi
    echo "$out" | jq -r '.keys[]? | "\(.key_ID) \(.key)"' >>"$fetched"
    echo "$out"
}

for master_site in A B; do
    m=SAE_$master_site
    if [ $master_site = A ]; then s=SAE_B; else s=SAE_A; fi
    for form in GET POST; do
        for case in "1 8" "3 256" "10 1024" "2 8192" "1 65536"; do
            set -- $case
            c=$(enc "$m" "$s" "$form" "$1" "$2")
            n=$(echo "$c" | jq '.keys | length')
            lens=$(echo "$c" | jq -r "[.keys[].key | $B64LEN] | unique | join(\",\")")
            t_eq "$m→$s $form enc_keys number=$1 size=$2: count" "$1" "$n"
            t_eq "$m→$s $form enc_keys number=$1 size=$2: bytes per key" "$(($2 / 8))" "$lens"
            ids=$(echo "$c" | jq -r '.keys[].key_ID')
            if [ "$form" = GET ]; then
                for id in $ids; do
                    got=$(dec "$s" "$m" GET "$id" | jq -r '.keys[0].key')
                    want=$(echo "$c" | jq -r --arg id "$id" '.keys[] | select(.key_ID == $id) | .key')
                    [ "$got" = "$want" ] || t_fail "$s fetches $id (GET)" "bytes differ"
                done
                t_pass "$s fetched each key with GET dec_keys; bytes equal"
            else
                # shellcheck disable=SC2086
                got=$(dec "$s" "$m" POST $ids | jq -c '[.keys[] | {key_ID, key}] | sort_by(.key_ID)')
                want=$(echo "$c" | jq -c '[.keys[] | {key_ID, key}] | sort_by(.key_ID)')
                t_eq "$s fetched all $1 keys with one POST dec_keys; bytes equal" "$want" "$got"
            fi
        done
    done
done

# Slave at the same KME: DRBG keys, GET and POST.
c=$(enc SAE_A SAE_A2 GET 4 256)
t_eq "local slave: 4 keys" 4 "$(echo "$c" | jq '.keys | length')"
t_eq "status names this KME as target for a local slave" "KME_A" \
    "$(sae_curl SAE_A /api/v1/keys/SAE_A2/status | jq -r .target_KME_ID)"
id=$(echo "$c" | jq -r '.keys[0].key_ID')
t_eq "local slave fetches a key with GET" "$(echo "$c" | jq -r '.keys[0].key')" "$(dec SAE_A2 SAE_A GET "$id" | jq -r '.keys[0].key')"
# shellcheck disable=SC2046
t_eq "local slave fetches the other three with POST" 3 "$(dec SAE_A2 SAE_A POST $(echo "$c" | jq -r '.keys[1:][].key_ID') | jq '.keys | length')"

# Multicast: a slave at B, another at B and one at A, one request.
c=$(enc SAE_A SAE_B POST 2 256 ',"additional_slave_SAE_IDs":["SAE_B2","SAE_A2"]')
t_eq "multicast: 2 keys" 2 "$(echo "$c" | jq '.keys | length')"
ids=$(echo "$c" | jq -r '.keys[].key_ID')
want=$(echo "$c" | jq -c '[.keys[] | {key_ID, key}] | sort_by(.key_ID)')
for sl in SAE_B SAE_B2 SAE_A2; do
    # shellcheck disable=SC2086
    got=$(dec "$sl" SAE_A POST $ids | jq -c '[.keys[]? | {key_ID, key}] | sort_by(.key_ID)')
    t_eq "multicast: $sl receives the same keys" "$want" "$got"
    # shellcheck disable=SC2086
    again=$(sae_curl "$sl" "/api/v1/keys/SAE_A/dec_keys?key_ID=$(echo $ids | cut -d' ' -f1)" -o /dev/null -w '%{http_code}')
    t_eq "multicast: $sl cannot fetch again" 400 "$again"
done

# I2/I3 over everything above: every delivered key fetched exactly as delivered,
# no key_ID delivered twice, and no key bytes repeated across IDs.
sort -u "$delivered" >"$dir/d.sorted"
t_eq "no key_ID reached a master twice" "$(cut -d' ' -f1 "$delivered" | sort | uniq -d | wc -l)" 0
t_eq "no two key_IDs carry the same bytes" 0 "$(awk 'length($2) > 4' "$delivered" | cut -d' ' -f2 | sort | uniq -d | wc -l)"
missing=$(sort -u "$fetched" | comm -23 "$dir/d.sorted" - | wc -l)
t_eq "every delivered key was fetched with identical bytes" 0 "$missing"
t_eq "nothing fetched that was not delivered" 0 "$(sort -u "$fetched" | comm -13 "$dir/d.sorted" - | wc -l)"
# What still waits at a site is exactly the other site's stock (reserved
# ahead of demand), seen at one moment: the dumps again until a refill of
# stock no longer falls between them.
ids_of() { echo "$1" | jq -c '[[.stock[].key_ID], [.keys[].key_ID]]'; }
dumps_still() {
    local a b a2 b2
    a=$("$T_BIN/kme" --config "$NET_DIR/A/kme.json" --dump) && b=$("$T_BIN/kme" --config "$NET_DIR/B/kme.json" --dump) &&
        a2=$("$T_BIN/kme" --config "$NET_DIR/A/kme.json" --dump) &&
        b2=$("$T_BIN/kme" --config "$NET_DIR/B/kme.json" --dump) || return 1
    dump_a=$a dump_b=$b
    [ "$(ids_of "$a")" = "$(ids_of "$a2")" ] && [ "$(ids_of "$b")" = "$(ids_of "$b2")" ]
}
t_check "dumps of A and B at one moment of their stock" wait_for 30 dumps_still
t_eq "keys waiting at B are exactly A's stock" "$(echo "$dump_a" | jq -c '[.stock[].key_ID] | sort')" \
    "$(echo "$dump_b" | jq -c '[.keys[].key_ID] | sort')"
t_eq "keys waiting at A are exactly B's stock" "$(echo "$dump_b" | jq -c '[.stock[].key_ID] | sort')" \
    "$(echo "$dump_a" | jq -c '[.keys[].key_ID] | sort')"
t_eq "stock is kept for the pairs that asked" "SAE_A>SAE_B SAE_B>SAE_A" \
    "$( (echo "$dump_a"; echo "$dump_b") | jq -r '.stock[] | "\(.master)>\(.slave)"' | sort -u | tr '\n' ' ' | sed 's/ $//')"
t_eq "stock keys designate the right master and slave at the neighbour" 0 \
    "$(echo "$dump_b" | jq '[.keys[] | select(.master != "SAE_A" or .slaves[0].id != "SAE_B")] | length')"

t_logs_clean "$NET_DIR/A/kme.log" "$NET_DIR/B/kme.log"
t_summary
