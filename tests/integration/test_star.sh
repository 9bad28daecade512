#!/usr/bin/env bash
# The reference star (hub A; links A-B and A-C): keys between SAEs at the two
# leaves are relayed through the hub, one-time padded and authenticated per
# hop, over real TLS between real processes.
#  (1) SAE_B gets keys for SAE_C and SAE_C for SAE_B, GET and POST, sizes 64,
#      256, 1024 and 8192 bits, several keys per request; the slave fetches
#      them (GET and POST dec_keys) with the master's bytes; a second fetch within
#      the fetch retry window is answered again (200). A key relayed B->C is in C's store until fetched and
#      never in the hub's; the hub's SAE_A naming it is refused (400). Status
#      from SAE_B for SAE_C names KME_C as target.
#  (2) `kme --routes` at B: KME_C via KME_A, 2 hops; the directory places
#      SAE_A, SAE_B and SAE_C at their KMEs.
#  (3) Forged relays: acting as KME_B toward the hub, relay messages whose
#      pad and MAC-key ranges name real unused bytes of blocks KME_B owns on
#      A-B but whose tag is wrong (also one differing from another only in a
#      ciphertext bit) are refused 400 "relay not authentic" and spend no link
#      byte at the hub (the used ranges of its links stay exactly the same);
#      the forged key_IDs appear in no store. The tag is checked first: a
#      forged message that is also wrong otherwise (hop limit, slave, master,
#      destination) is still refused as not authentic. Structurally bad
#      messages get 400 with the ETSI error body.
#  (3b) The other inter-KME messages forged the same way, as KME_B without
#      its link key: a reserve (with a made-up tag, and in the untagged form
#      of before), a resolve, claims, a grant and a tagged verify are refused
#      400 and spend no link byte at the hub; the grant moves no block; an
#      untagged verify with made-up block tags changes nothing.
#  (4) Wrong neighbour: KME_C's certificate at KME_B's KME port (not a
#      neighbour) gets 401 for relay and advert; an SAE certificate there gets
#      401 too; each with the ETSI error body.
#  (5) Multicast on a four-site star (hub A; B, C, D): SAE_B asks for keys
#      with slaves SAE_C, SAE_D and SAE_A; each fetches every key once at its
#      own KME with the master's bytes; a second fetch within the retry
#      window is answered again; SAE_C
#      cannot fetch a key meant for SAE_D only. Status: max_SAE_ID_count >= 8.
#  (5b) Adverts on the four-site star: an advert signed with KME_B's key
#      (checked: a stale one of its own is taken) but for origin KME_C, and
#      an unsigned one, are refused at the hub and go no further (D keeps its
#      route to KME_C). KME_B reloaded to host SAE_D as well: the hub raises
#      the conflict (metric qkd_kme_sae_conflicts 1, status.json, a log line
#      naming SAE_D, KME_D and KME_B), SAE_D stays at KME_D for every KME
#      (though KME_B's ID sorts first), keys from SAE_C reach SAE_D there;
#      the alarm ends when B drops the claim.
#  (6) No sanitizer report and no key material (base64 or hex) in any log.
# shellcheck disable=SC2034 # T_SUITE and the NET_* settings are read by the sourced files
T_SUITE=star
[ -n "${1:-}" ] && T_BUILD=$(cd "$1" && pwd)
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=SCRIPTDIR/../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# shellcheck source=SCRIPTDIR/lib/keys.sh
. "$T_ROOT/tests/integration/lib/keys.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=6700
NET_KME_BASE=6800
NET_STOCK=64      # a few keys relayed ahead; the rest on demand
W=$(mktemp -d "$T_OUT/star.XXXX")
trap net_stop EXIT
t_require_programs kme qkd-sim

DELIVERED=$W/delivered.txt   # every "key_ID base64" a master received
: >"$DELIVERED"
# jq: byte length of a base64 string
B64LEN='((length / 4 * 3) - (if endswith("==") then 2 elif endswith("=") then 1 else 0 end))'

is_etsi_error() {
    printf '%s' "$1" | jq -e 'type == "object" and (.message | type == "string" and length > 0)
        and (.details | type == "array" and length > 0) and (has("keys") | not)' >/dev/null 2>&1
}
# keys_of BODY: sorted "key_ID key" lines of a key container
keys_of() { printf '%s' "$1" | jq -r '.keys[]? | "\(.key_ID) \(.key)"' 2>/dev/null | sort; }
# store_mentions SITE ID...: prints the IDs found anywhere in the site's dump
store_mentions() {
    local s=$1 id
    shift
    dump "$s" "$W/mention.$s" || { echo "dump failed"; return; }
    for id in "$@"; do grep -qF "$id" "$W/mention.$s" && echo "$id"; done
}
# waiting_ids SITE: sorted key_IDs of the records waiting in the site's store
waiting_ids() { dump "$1" "$W/wait.$1" && jq -r '.keys[].key_ID' "$W/wait.$1" | sort; }

# ---------------------------------------------------------------------------------
echo "== (1) keys between the leaves, relayed through the hub"
# Stock is never dropped for its age here (stock_max_age_s 3600): a drop
# would refill it, and the refill would spend link key while (3) and (3b)
# check that forged messages spend none, however long the run takes.
if ! { net_init "$W/star" "A B C" "A-B A-C" && for s in A B C; do net_edit_config "$s" '.stock_max_age_s = 3600'; done &&
    net_start; }; then
    t_fail "network" "the star did not start; see $W/star"
    t_summary
    exit 1
fi
STAR_DIR=$NET_DIR

# one_pair MASTER SLAVE: every size, GET and POST, fetched by the slave
one_pair() {
    local m=$1 s=$2 size form n ids id got want lens all
    for size in 64 256 1024 8192; do
        for form in GET POST; do
            n=3
            if [ "$form" = GET ]; then
                etsi_call "$m" "/api/v1/keys/$s/enc_keys?number=$n&size=$size"
            else
                etsi_call "$m" "/api/v1/keys/$s/enc_keys" -X POST -H 'Content-Type: application/json' \
                    --data-binary "{\"number\":$n,\"size\":$size}"
            fi
            if [ "$CODE" != 200 ]; then
                t_fail "$m->$s $form enc_keys size=$size" "answered $CODE $BODY"
                continue
            fi
            want=$(keys_of "$BODY")
            printf '%s\n' "$want" >>"$DELIVERED"
            lens=$(printf '%s' "$BODY" | jq -r "[.keys[].key | $B64LEN] | unique | join(\",\")")
            t_eq "$m->$s $form enc_keys size=$size: $n keys of $((size / 8)) bytes" "$n $((size / 8))" \
                "$(printf '%s' "$BODY" | jq '.keys | length') $lens"
            ids=$(printf '%s' "$BODY" | jq -r '.keys[].key_ID')
            if [ "$form" = GET ]; then
                got=""
                for id in $ids; do
                    etsi_call "$s" "/api/v1/keys/$m/dec_keys?key_ID=$id"
                    got+="$(keys_of "$BODY")"$'\n'
                done
                got=$(printf '%s' "$got" | sort)
                t_eq "$s fetches each with GET dec_keys at its KME: the master's bytes" "$want" "$got"
            else
                printf '%s\n' "$ids" >"$W/ids"
                etsi_call "$s" "/api/v1/keys/$m/dec_keys" -X POST -H 'Content-Type: application/json' \
                    --data-binary "$(key_ids_body "$W/ids")"
                t_eq "$s fetches all with one POST dec_keys at its KME: the master's bytes" "$want" "$(keys_of "$BODY")"
            fi
            printf '%s\n' "$want" >"$W/fetched"
            all=$(refetch_codes "$s" "$m" "$W/fetched" | sort -u | paste -sd' ' -)
            t_eq "$s: a second fetch of each, within the fetch retry window, is answered (200)" 200 "$all"
        done
    done
}
one_pair SAE_B SAE_C
one_pair SAE_C SAE_B

etsi_call SAE_B /api/v1/keys/SAE_C/status
t_eq "status SAE_B->SAE_C: 200" 200 "$CODE"
t_eq "status SAE_B->SAE_C names source KME_B and target KME_C" "KME_B KME_C" \
    "$(printf '%s' "$BODY" | jq -r '"\(.source_KME_ID) \(.target_KME_ID)"')"

# A key relayed B->C waits at C, never at the hub.
: >"$W/hub.keys"
enc_keys SAE_B SAE_C 2 256 "$W/hub.keys"
t_eq "SAE_B gets 2 keys for SAE_C" "200 2" "$CODE $(grep -c . "$W/hub.keys")"
cat "$W/hub.keys" >>"$DELIVERED"
hub_ids=$(cut -d' ' -f1 "$W/hub.keys" | paste -sd' ' -)
# shellcheck disable=SC2086
t_eq "the hub's store holds no record of the relayed key_IDs" "" "$(store_mentions A $hub_ids)"
t_eq "C's store holds both relayed keys, waiting" "$(cut -d' ' -f1 "$W/hub.keys" | sort)" \
    "$(waiting_ids C | grep -Fx -f <(cut -d' ' -f1 "$W/hub.keys"))"
t_eq "they name master SAE_B and slave SAE_C only" '["SAE_B",["SAE_C"]]' \
    "$(jq -c --arg id "${hub_ids%% *}" '.keys[] | select(.key_ID == $id) | [.master, [.slaves[].id]]' "$W/wait.C")"
: >"$W/hub.got"
dec_keys SAE_A SAE_B "$W/hub.keys" "$W/hub.got"
t_eq "the hub's SAE_A naming them (POST dec_keys at A) is refused 400" 400 "$CODE"
t_check "the refusal is an ETSI error body" is_etsi_error "$BODY"
etsi_call SAE_A "/api/v1/keys/SAE_B/dec_keys?key_ID=${hub_ids%% *}"
t_eq "the hub's SAE_A naming one (GET dec_keys at A) is refused 400" 400 "$CODE"
t_eq "SAE_A got no key" 0 "$(grep -c . "$W/hub.got")"
dec_keys SAE_C SAE_B "$W/hub.keys" "$W/hub.got"
t_eq "SAE_C still fetches both with the master's bytes" "$(sort "$W/hub.keys")" "$(sort "$W/hub.got")"
t_eq "once fetched they no longer wait at C" "" "$(waiting_ids C | grep -Fx -f <(cut -d' ' -f1 "$W/hub.keys"))"

# ---------------------------------------------------------------------------------
echo "== (2) routes and directory"
"$NET_BIN/kme" --config "$NET_DIR/B/kme.json" --routes >"$W/routes.B" 2>"$W/routes.B.err"
t_eq "kme --routes at B: self" KME_B "$(jq -r .self "$W/routes.B" 2>/dev/null)"
t_eq "B routes to KME_C via KME_A in 2 hops, path B A C" 'KME_A 2 KME_B,KME_A,KME_C' \
    "$(jq -r '.routes[] | select(.dest == "KME_C") | "\(.next_hop) \(.hops) \(.path | join(","))"' "$W/routes.B" 2>/dev/null)"
t_eq "B routes to KME_A directly" 'KME_A 1' \
    "$(jq -r '.routes[] | select(.dest == "KME_A") | "\(.next_hop) \(.hops)"' "$W/routes.B" 2>/dev/null)"
t_eq "B's directory: SAE_A at KME_A, SAE_B at KME_B, SAE_C at KME_C" \
    '{"SAE_A":"KME_A","SAE_B":"KME_B","SAE_C":"KME_C"}' "$(jq -cS .directory "$W/routes.B" 2>/dev/null)"
"$NET_BIN/kme" --config "$NET_DIR/C/kme.json" --routes >"$W/routes.C" 2>/dev/null
t_eq "C routes to KME_B via KME_A in 2 hops" 'KME_A 2' \
    "$(jq -r '.routes[] | select(.dest == "KME_B") | "\(.next_hop) \(.hops)"' "$W/routes.C" 2>/dev/null)"

# ---------------------------------------------------------------------------------
echo "== (3) forged relay messages at the hub"
C=$NET_DIR/certs
# kme_post AS SITE PATH BODY_FILE [curl args]: POST on SITE's KME port with
# AS's KME certificate (Content-Type $KME_POST_TYPE, JSON by default); sets
# CODE and BODY.
kme_post() {
    local as=$1 site=$2 path=$3 file=$4 out
    shift 4
    out=$(curl -s --max-time 15 --cacert "$C/ca.pem" --cert "$C/$as.kme.pem" --key "$C/$as.kme.key" \
        -H "Content-Type: ${KME_POST_TYPE:-application/json}" --data-binary "@$file" "$@" -w '\n%{http_code}' \
        "https://localhost:$(net_kme_port "$site")$path")
    CODE=${out##*$'\n'}
    BODY=${out%$'\n'*}
    [ "$BODY" = "$out" ] && BODY=""
}
# Which bytes of each block are spent. Ownership is left out: a grant may move
# an unused block across the link at any moment, and that spends nothing.
link_state() {
    dump "$1" "$W/ls.$1" && jq -c --arg p "KME_$2" '[.links[$p][] | [.seq, .state, .used]]' "$W/ls.$1"
}
hub_state() { echo "$(link_state A B) $(link_state A C)"; }
hub_steady() {
    local a b
    a=$(hub_state) && sleep 1 && b=$(hub_state) && [ "$a" = "$b" ] && ! printf '%s' "$a" | grep -Eq '"(unverified|locked)"'
}
# No new link key and no other traffic while the hub's links are compared.
sim_stop A-B
sim_stop A-C
t_check "the hub's links settle once qkd-sim stops" wait_for 20 hub_steady
before=$(hub_state)
dump A "$W/forge.A"
# A block KME_B owns on A-B, verified, with room after its last used byte.
PADLEN=64   # 2 keys of 256 bits
blk=$(jq -c --argjson need 320 '[.links.KME_B[] | select(.owner == "peer" and .state == "verified")
        | {seq, start: ([48, (.used[][1])] | max), size} | select(.size - .start >= $need)] | last' "$W/forge.A")
t_match "the hub holds a verified block of KME_B's with free bytes" '^\{"seq":[0-9]+' "$blk"
seq=$(jq -r .seq <<<"$blk")
off=$(( $(jq -r .start <<<"$blk") + 16 ))
uuid() { cat /proc/sys/kernel/random/uuid; }
K1=$(uuid); K2=$(uuid); K3=$(uuid); K4=$(uuid)
FORGED="$K1 $K2 $K3 $K4"
head -c $PADLEN /dev/urandom >"$W/ct.bin"
cp "$W/ct.bin" "$W/ct.flip"
b=$(od -An -tu1 -N1 "$W/ct.flip" | tr -d ' ')
# shellcheck disable=SC2059
printf "\\$(printf '%03o' $((b ^ 1)))" | dd of="$W/ct.flip" bs=1 count=1 conv=notrunc status=none
t_check "the flipped ciphertext differs from the first in one bit" bash -c "! cmp -s '$W/ct.bin' '$W/ct.flip'"
tag=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
expires=$(($(date +%s) + 3600))
# forge FILE DEST SLAVE CTFILE K_A K_B [jq filter]: a relay message from KME_B
forge() {
    local file=$1 dest=$2 slave=$3 ct=$4 ka=$5 kb=$6 filter=${7:-.}
    jq -n -c --arg rid "$(uuid)" --arg dest "$dest" --arg slave "$slave" --arg tag "$tag" \
        --arg c1 "$(head -c 32 "$ct" | base64 -w0)" --arg c2 "$(tail -c 32 "$ct" | base64 -w0)" \
        --arg ka "$ka" --arg kb "$kb" --argjson seq "$seq" --argjson off "$off" \
        --argjson exp "$expires" '{relay_id: $rid, origin: "KME_B", dest: $dest, master: "SAE_B",
            slaves: [$slave], size: 256, expires: $exp, hops_left: 15,
            keys: [{key_ID: $ka, ct: $c1}, {key_ID: $kb, ct: $c2}],
            pad: [[$seq, $off, 64]], mac_key: [[$seq, ($off + 80), 32]], tag: $tag}' | jq -c "$filter" >"$file"
}
# to_wire JSON_FILE OUT: the same relay message in the binary form KMEs send
# (api/kme.yaml): u32 head length (big endian), the head, the ciphertexts, the tag.
to_wire() {
    local head hlen
    head=$(jq -c '{relay_id, origin, dest, master, slaves, size, expires, hops_left,
                   key_IDs: [.keys[].key_ID], pad, mac_key}' "$1")
    hlen=$(printf '%s' "$head" | wc -c)
    {
        # shellcheck disable=SC2059
        printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((hlen >> 24 & 255)) $((hlen >> 16 & 255)) \
            $((hlen >> 8 & 255)) $((hlen & 255)))"
        printf '%s' "$head"
        jq -r '.keys[].ct' "$1" | while read -r ct; do printf '%s' "$ct" | base64 -d; done
        # shellcheck disable=SC2059
        printf "$(jq -r .tag "$1" | sed 's/../\\x&/g')"
    } >"$2"
}
forge "$W/m1" KME_C SAE_C "$W/ct.bin" "$K1" "$K2"
forge "$W/m2" KME_C SAE_C "$W/ct.flip" "$K1" "$K2" ".relay_id = $(jq .relay_id "$W/m1")"
forge "$W/m3" KME_A SAE_A "$W/ct.bin" "$K3" "$K4"
t_eq "the two messages for C differ only in the ciphertext" '[["keys",0,"ct"]]' \
    "$(jq -c -n --slurpfile a "$W/m1" --slurpfile b "$W/m2" '$a[0] as $x | $b[0] as $y
        | [$x | paths(scalars)] | map(select(. as $p | ($x | getpath($p)) != ($y | getpath($p))))' 2>/dev/null)"
for m in m1:"for C, wrong tag" m2:"for C, one ciphertext bit flipped" m3:"for the hub's SAE_A, wrong tag"; do
    f=${m%%:*}
    what=${m#*:}
    kme_post KME_B A /kme/v1/relay "$W/$f"
    t_eq "forged relay ($what) as KME_B: 400" 400 "$CODE"
    t_eq "forged relay ($what): message \"relay not authentic\"" "relay not authentic" \
        "$(printf '%s' "$BODY" | jq -r .message 2>/dev/null)"
    t_check "forged relay ($what): ETSI error body" is_etsi_error "$BODY"
    t_eq "forged relay ($what): the hub's links spent nothing" "$before" "$(hub_state)"
done
# The same three in the binary form, the one KMEs send.
for m in m1:"for C, wrong tag" m2:"for C, one ciphertext bit flipped" m3:"for the hub's SAE_A, wrong tag"; do
    f=${m%%:*}
    what=${m#*:}
    to_wire "$W/$f" "$W/$f.wire"
    KME_POST_TYPE=application/octet-stream kme_post KME_B A /kme/v1/relay "$W/$f.wire"
    t_eq "forged binary relay ($what): 400 \"relay not authentic\"" "400 relay not authentic" \
        "$CODE $(printf '%s' "$BODY" | jq -r .message 2>/dev/null)"
    t_eq "forged binary relay ($what): the hub's links spent nothing" "$before" "$(hub_state)"
done
t_eq "the binary form is exactly 4 + head + ciphertexts + tag bytes" \
    "$((4 + $(jq -c '{relay_id, origin, dest, master, slaves, size, expires, hops_left, key_IDs: [.keys[].key_ID], pad, mac_key}' "$W/m1" | tr -d '\n' | wc -c) + PADLEN + 16))" \
    "$(wc -c <"$W/m1.wire")"
head -c -1 "$W/m1.wire" >"$W/m1.short"
KME_POST_TYPE=application/octet-stream kme_post KME_B A /kme/v1/relay "$W/m1.short"
t_eq "a binary relay one byte short: 400" 400 "$CODE"
t_check "a binary relay one byte short: ETSI error body" is_etsi_error "$BODY"
for s in A B C; do
    # shellcheck disable=SC2086
    t_eq "no forged key_ID in KME_$s's store" "" "$(store_mentions $s $FORGED)"
done
t_eq "the hub holds nothing in doubt" 0 "$(jq '.in_doubt | length' "$W/mention.A")"

# Structurally bad messages: refused before anything is read.
forge "$W/bad1" KME_C SAE_C "$W/ct.bin" "$(uuid)" "$(uuid)" '.hops_left = 0'
forge "$W/bad2" KME_C SAE_C "$W/ct.bin" "$(uuid)" "$(uuid)" '.extra = 1'
forge "$W/bad4" KME_C SAE_C "$W/ct.bin" "$(uuid)" "$(uuid)" '.pad[0][2] = 63'
forge "$W/bad5" KME_C SAE_C "$W/ct.bin" "$(uuid)" "$(uuid)" '.mac_key = [[.pad[0][0], (.pad[0][1] + 40), 32]]'
for m in bad1:"hops_left 0" bad2:"an unknown member" bad4:"a pad shorter than the keys" \
    bad5:"MAC key overlapping the pad"; do
    f=${m%%:*}
    what=${m#*:}
    kme_post KME_B A /kme/v1/relay "$W/$f"
    t_eq "relay with $what: 400" 400 "$CODE"
    t_check "relay with $what: ETSI error body {message, details}" is_etsi_error "$BODY"
done
# The tag is checked before anything else (api/kme.yaml, /kme/v1/relay): a
# well-formed message that does not authenticate is refused as such, whatever
# else is wrong with it, and tells the sender nothing more.
forge "$W/tag1" KME_C SAE_C "$W/ct.bin" "$(uuid)" "$(uuid)" '.hops_left = 1'
forge "$W/tag2" KME_A SAE_Z "$W/ct.bin" "$(uuid)" "$(uuid)"
forge "$W/tag3" KME_A SAE_A "$W/ct.bin" "$(uuid)" "$(uuid)" '.master = "SAE_C"'
forge "$W/tag4" KME_Q SAE_Q "$W/ct.bin" "$(uuid)" "$(uuid)"
for m in tag1:"at its hop limit" tag2:"for a slave the hub does not host" \
    tag3:"naming a master its origin does not host" tag4:"for an unknown KME"; do
    f=${m%%:*}
    what=${m#*:}
    kme_post KME_B A /kme/v1/relay "$W/$f"
    t_eq "forged relay $what: 400 \"relay not authentic\"" "400 relay not authentic" \
        "$CODE $(printf '%s' "$BODY" | jq -r .message 2>/dev/null)"
done
# Ranges in a block the hub owns itself: the sender cannot have carved them.
own=$(jq -c '[.links.KME_B[] | select(.owner == "self" and .state == "verified")
        | {seq, start: ([48, (.used[][1])] | max), size} | select(.size - .start >= 200)] | last' "$W/forge.A")
t_match "the hub owns a verified block on A-B with free bytes" '^\{"seq":[0-9]+' "$own"
forge "$W/bad6" KME_C SAE_C "$W/ct.bin" "$(uuid)" "$(uuid)" \
    "$(jq -r '"(.pad = [[\(.seq), \(.start + 16), 64]]) | (.mac_key = [[\(.seq), \(.start + 96), 32]])"' <<<"$own")"
kme_post KME_B A /kme/v1/relay "$W/bad6"
t_match "relay naming the hub's own block: refused" '^(4|5)[0-9][0-9]$' "$CODE"
t_check "relay naming the hub's own block: ETSI error body" is_etsi_error "$BODY"
t_eq "after the bad messages the hub's links are unchanged" "$before" "$(hub_state)"
t_check "dumps of A and B at one moment of their link" dump_pair A B "$W/forged.A" "$W/forged.B"
compare_dumps A B "$W/forged.A" "$W/forged.B" >"$W/forged.violations"
t_eq "both ends of A-B still agree on every block (dumps)" 0 "$(wc -l <"$W/forged.violations")"

# ---------------------------------------------------------------------------------
echo "== (3b) forged reserve, resolve, claimed, grant and verify at the hub"
K5=$(uuid)
K6=$(uuid)
# forge_msg FILE JQ: a message built by JQ; $seq and $off name free bytes of
# the block above (the relays used [off, off + 112)), $tag a made-up tag.
forge_msg() {
    jq -n -c --argjson seq "$seq" --argjson off "$off" --arg tag "$tag" --argjson exp "$expires" \
        --arg k5 "$K5" --arg k6 "$K6" --argjson free "${free_blk:-0}" "$2" >"$1"
}
MAC='mac_key: [[$seq, ($off + 160), 32]], answer_key: [[$seq, ($off + 200), 32]], tag: $tag'
# An unused block KME_B owns on A-B (a grant could give it to the hub).
free_blk=$(jq -r '[.links.KME_B[] | select(.owner == "peer" and .state == "verified" and .used == [[0, 48]]) | .seq]
        | first // 0' "$W/forge.A")
forge_msg "$W/o.reserve" "{master: \"SAE_B\", slaves: [\"SAE_A\"], size: 256, expires: \$exp,
        keys: [{key_ID: \$k5, ranges: [[\$seq, (\$off + 120), 32]]}], $MAC}"
forge_msg "$W/o.reserve.bare" '{master: "SAE_B", slaves: ["SAE_A"], size: 256, expires: $exp,
        keys: [{key_ID: $k5, ranges: [[$seq, ($off + 120), 32]]}]}'
forge_msg "$W/o.resolve" "{ranges: [[\$seq, (\$off + 120), 32]], $MAC}"
forge_msg "$W/o.claimed" '{claims: [[$k6, 1000]], mac_key: [[$seq, ($off + 160), 32]], tag: $tag}'
forge_msg "$W/o.grant" "{seqs: [if \$free > 0 then \$free else \$seq end], $MAC}"
forge_msg "$W/o.verify" "{txn_id: \$k6, timeout_ms: 1000, blocks: [{seq: \$seq, tag: \$tag}], $MAC}"
forge_msg "$W/o.verify.bare" '{txn_id: $k6, timeout_ms: 1000, blocks: [{seq: $seq, tag: $tag}]}'
owner_of() { dump A "$W/own.A" && jq -r --argjson s "$1" '.links.KME_B[] | select(.seq == $s) | .owner' "$W/own.A"; }
free_owner=$( [ "$free_blk" -gt 0 ] && owner_of "$free_blk")
for m in reserve:"reserve" resolve:"resolve" claimed:"claimed" grant:"grant" verify:"verify"; do
    f=${m%%:*}
    kme_post KME_B A "/kme/v1/$f" "$W/o.$f"
    t_eq "forged $f as KME_B (made-up tag): 400 \"request not authentic\"" "400 request not authentic" \
        "$CODE $(printf '%s' "$BODY" | jq -r .message 2>/dev/null)"
    t_check "forged $f: ETSI error body" is_etsi_error "$BODY"
    t_eq "forged $f: the hub's links spent nothing" "$before" "$(hub_state)"
done
kme_post KME_B A /kme/v1/reserve "$W/o.reserve.bare"
t_eq "a reserve without its MAC (the form of before) as KME_B: 400" 400 "$CODE"
t_eq "a reserve without its MAC: the hub's links spent nothing" "$before" "$(hub_state)"
if [ "$free_blk" -gt 0 ]; then
    t_eq "the forged grant moved no block (block $free_blk stays KME_B's)" "$free_owner" "$(owner_of "$free_blk")"
fi
kme_post KME_B A /kme/v1/verify "$W/o.verify.bare"
t_eq "an untagged verify with a made-up block tag: answered (200), a mismatch" "200 mismatch" \
    "$CODE $(printf '%s' "$BODY" | jq -r '.results[0].result' 2>/dev/null)"
t_eq "an untagged verify: the hub's links are unchanged" "$before" "$(hub_state)"
for s in A B C; do
    t_eq "no forged key_ID of (3b) in KME_$s's store" "" "$(store_mentions $s "$K5" "$K6")"
done

# The links still carry keys afterwards.
sim_start A-B
sim_start A-C
: >"$W/after.keys"
enc_keys SAE_B SAE_C 2 1024 "$W/after.keys"
t_eq "after the forgeries SAE_B still gets keys for SAE_C" 200 "$CODE"
cat "$W/after.keys" >>"$DELIVERED"
: >"$W/after.got"
dec_keys SAE_C SAE_B "$W/after.keys" "$W/after.got"
t_eq "SAE_C fetches them with the master's bytes" "$(sort "$W/after.keys")" "$(sort "$W/after.got")"

# ---------------------------------------------------------------------------------
echo "== (4) wrong neighbour"
echo '{}' >"$W/empty.json"
kme_post KME_C B /kme/v1/relay "$W/m1"
t_eq "KME_C's certificate at KME_B (no link): relay refused 401" 401 "$CODE"
t_check "relay refused: ETSI error body" is_etsi_error "$BODY"
kme_post KME_C B /kme/v1/advert "$W/empty.json"
t_eq "KME_C's certificate at KME_B: advert refused 401" 401 "$CODE"
t_check "advert refused: ETSI error body" is_etsi_error "$BODY"
kme_post KME_C A /kme/v1/advert "$W/empty.json"
t_eq "control: KME_C's certificate at its neighbour KME_A reaches the API (empty advert 400)" 400 "$CODE"
out=$(curl -s --max-time 15 --cacert "$C/ca.pem" --cert "$C/SAE_B.pem" --key "$C/SAE_B.key" \
    -H 'Content-Type: application/json' --data-binary "@$W/m1" -w '\n%{http_code}' \
    "https://localhost:$(net_kme_port B)/kme/v1/relay")
t_eq "SAE_B's certificate at KME_B's KME port: relay refused 401" 401 "${out##*$'\n'}"
t_check "SAE certificate refused: ETSI error body" is_etsi_error "${out%$'\n'*}"
# shellcheck disable=SC2086
t_eq "nothing from the wrong neighbour reached a store" "" "$(store_mentions B $FORGED)$(store_mentions C $FORGED)"
net_stop

# ---------------------------------------------------------------------------------
echo "== (5) multicast on a four-site star"
NET_ADMIN_BASE=6750 # metrics and status.json for (5b)
if ! { net_init "$W/star4" "A B C D" "A-B A-C A-D" && net_start; }; then
    t_fail "network" "the four-site star did not start; see $W/star4"
    t_summary
    exit 1
fi
STAR4_DIR=$NET_DIR
: >"$W/mc.keys"
etsi_call SAE_B /api/v1/keys/SAE_C/enc_keys -X POST -H 'Content-Type: application/json' \
    --data-binary '{"number":3,"size":512,"additional_slave_SAE_IDs":["SAE_D","SAE_A"]}'
t_eq "SAE_B: 3 keys for SAE_C, SAE_D and SAE_A" "200 3" "$CODE $(printf '%s' "$BODY" | jq '.keys | length' 2>/dev/null)"
keys_of "$BODY" >"$W/mc.keys"
cat "$W/mc.keys" >>"$DELIVERED"
t_eq "each key is 64 bytes" 64 "$(printf '%s' "$BODY" | jq -r "[.keys[].key | $B64LEN] | unique | join(\",\")")"
for s in C D A; do
    t_eq "the keys wait at KME_$s, from master SAE_B, for its slave SAE_$s" \
        "$(cut -d' ' -f1 "$W/mc.keys" | sed "s/\$/ SAE_B SAE_$s/")" \
        "$(waiting_ids "$s" >/dev/null; jq -r --slurpfile ids <(cut -d' ' -f1 "$W/mc.keys" | jq -R .) \
            '.keys[] | select(.key_ID as $k | $ids | index($k)) | "\(.key_ID) \(.master) \([.slaves[].id] | join(","))"' \
            "$W/wait.$s" | sort)"
done
for s in C D A; do
    : >"$W/mc.got.$s"
    dec_keys "SAE_$s" SAE_B "$W/mc.keys" "$W/mc.got.$s"
    t_eq "SAE_$s fetches every key at KME_$s with the master's bytes" "$(cat "$W/mc.keys")" "$(sort "$W/mc.got.$s")"
    t_eq "SAE_$s: a second fetch of each, within the fetch retry window, is answered (200)" 200 \
        "$(refetch_codes "SAE_$s" SAE_B "$W/mc.keys" | sort -u | paste -sd' ' -)"
done
for s in A C D; do
    t_eq "once all three fetched, nothing of the multicast waits at KME_$s" "" \
        "$(waiting_ids "$s" | grep -Fx -f <(cut -d' ' -f1 "$W/mc.keys"))"
done
: >"$W/bd.keys"
enc_keys SAE_B SAE_D 2 256 "$W/bd.keys"
t_eq "SAE_B gets 2 keys for SAE_D only" "200 2" "$CODE $(grep -c . "$W/bd.keys")"
cat "$W/bd.keys" >>"$DELIVERED"
: >"$W/bd.c"
dec_keys SAE_C SAE_B "$W/bd.keys" "$W/bd.c"
t_eq "SAE_C naming a key meant for SAE_D only is refused 400" 400 "$CODE"
t_check "the refusal is an ETSI error body" is_etsi_error "$BODY"
etsi_call SAE_A "/api/v1/keys/SAE_B/dec_keys?key_ID=$(head -1 "$W/bd.keys" | cut -d' ' -f1)"
t_eq "SAE_A (the hub's SAE) naming it is refused 400" 400 "$CODE"
t_eq "nobody but SAE_D got it" 0 "$(grep -c . "$W/bd.c")"
: >"$W/bd.d"
dec_keys SAE_D SAE_B "$W/bd.keys" "$W/bd.d"
t_eq "SAE_D fetches it with the master's bytes" "$(sort "$W/bd.keys")" "$(sort "$W/bd.d")"
etsi_call SAE_B /api/v1/keys/SAE_C/status
n=$(printf '%s' "$BODY" | jq -r '.max_SAE_ID_count // 0' 2>/dev/null)
t_check "status: max_SAE_ID_count is at least 8 (got ${n:-none})" test "${n:-0}" -ge 8
t_eq "status SAE_B->SAE_D names target KME_D" KME_D \
    "$(sae_curl SAE_B /api/v1/keys/SAE_D/status | jq -r .target_KME_ID 2>/dev/null)"

# ---------------------------------------------------------------------------------
echo "== (5b) adverts: signed by their origin; an SAE claimed by two KMEs"
C=$NET_DIR/certs # kme_post's certificates: this network's
# The canonical bytes an advert with no link and one SAE is signed over
# (relay/advert_sign.h): length-prefixed strings, big-endian integers.
u32() {
    # shellcheck disable=SC2059
    printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)))"
}
u64() { u32 $(($1 >> 32)); u32 $(($1 & 0xffffffff)); }
lstr() { u32 ${#1}; printf '%s' "$1"; }
# signed_advert AS ORIGIN SEQ SAE FILE: that advert, signed with AS's KME key, carrying AS's certificate
signed_advert() {
    { lstr qkd-kme-advert-v1; lstr "$2"; u64 "$3"; u32 0; u32 1; lstr "$4"; } >"$W/canon.bin"
    openssl dgst -sha256 -sign "$C/$1.kme.key" -out "$W/canon.sig" "$W/canon.bin" &&
        jq -n -c --arg o "$2" --argjson seq "$3" --arg sae "$4" --arg sig "$(base64 -w0 "$W/canon.sig")" \
            --arg cert "$(openssl x509 -in "$C/$1.kme.pem" -outform DER | base64 -w0)" \
            '{origin: $o, seq: $seq, age_ms: 0, links: [], saes: [$sae], cert: $cert, sig: $sig}' >"$5"
}
signed_advert KME_B KME_B 1 SAE_B "$W/adv.own"
kme_post KME_B A /kme/v1/advert "$W/adv.own"
t_eq "control: an old advert of KME_B's own, signed that way, is checked and taken as stale" "200 stale" \
    "$CODE $(printf '%s' "$BODY" | jq -r .message 2>/dev/null)"
signed_advert KME_B KME_C $(($(date +%s%3N) + 1000000000)) SAE_B "$W/adv.forged"
kme_post KME_B A /kme/v1/advert "$W/adv.forged"
t_eq "an advert signed by KME_B for origin KME_C (no links, newest seq): 400 \"advert not authentic\"" \
    "400 advert not authentic" "$CODE $(printf '%s' "$BODY" | jq -r .message 2>/dev/null)"
jq -c 'del(.cert, .sig)' "$W/adv.forged" >"$W/adv.unsigned"
kme_post KME_B A /kme/v1/advert "$W/adv.unsigned"
t_eq "the same advert unsigned: 400" 400 "$CODE"
t_check "the hub logs the refusal naming KME_B and KME_C" \
    grep -q "refused an advert from KME_B for origin KME_C" "$NET_DIR/A/kme.log"
sleep 2
route_c() { "$NET_BIN/kme" --config "$NET_DIR/$1/kme.json" --routes 2>/dev/null | jq -r '.routes[] | select(.dest == "KME_C") | .next_hop'; }
t_eq "the hub still routes to KME_C directly" KME_C "$(route_c A)"
t_eq "nothing was passed on: D still routes to KME_C via the hub" KME_A "$(route_c D)"

metric() { curl -s --max-time 5 "http://127.0.0.1:$(net_admin_port "$1")/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }
conflicts_at() { [ "$(metric "$1" qkd_kme_sae_conflicts)" = "$2" ]; }
t_eq "no SAE is claimed twice yet (metric at the hub)" 0 "$(metric A qkd_kme_sae_conflicts)"
cp "$NET_DIR/B/kme.json" "$W/kme.B.orig"
jq '.saes += ["SAE_D"]' "$W/kme.B.orig" >"$NET_DIR/B/kme.json"
kill -HUP "$(kme_pid B)"
t_check "KME_B reloaded to host SAE_D too: the hub raises the alarm (qkd_kme_sae_conflicts 1) within 15 s" \
    wait_for 15 conflicts_at A 1
t_check "and so does C" wait_for 15 conflicts_at C 1
curl -s --max-time 5 "http://127.0.0.1:$(net_admin_port A)/status.json" -o "$W/status4.A"
t_eq "the hub's status.json lists the conflict: SAE_D, claimed by KME_B and KME_D, KME_D kept" \
    '[{"sae":"SAE_D","kmes":["KME_B","KME_D"],"kept":"KME_D"}]' "$(jq -c .conflicts "$W/status4.A")"
t_eq "its directory keeps SAE_D at KME_D" KME_D "$(jq -r .directory.SAE_D "$W/status4.A")"
t_check "the hub logs the conflict naming SAE_D, KME_D and KME_B" \
    grep -q "SAE SAE_D is claimed by more than one KME: KME_D and KME_B" "$NET_DIR/A/kme.log"
t_eq "C's directory keeps SAE_D at KME_D (KME_B's ID sorts first)" KME_D \
    "$("$NET_BIN/kme" --config "$NET_DIR/C/kme.json" --routes 2>/dev/null | jq -r .directory.SAE_D)"
t_eq "status SAE_C->SAE_D still names target KME_D" KME_D \
    "$(sae_curl SAE_C /api/v1/keys/SAE_D/status | jq -r .target_KME_ID 2>/dev/null)"
: >"$W/cf.keys"
enc_keys SAE_C SAE_D 2 256 "$W/cf.keys"
t_eq "SAE_C gets 2 keys for SAE_D" "200 2" "$CODE $(grep -c . "$W/cf.keys")"
cat "$W/cf.keys" >>"$DELIVERED"
: >"$W/cf.got"
dec_keys SAE_D SAE_C "$W/cf.keys" "$W/cf.got"
t_eq "SAE_D fetches them at KME_D with the master's bytes" "$(sort "$W/cf.keys")" "$(sort "$W/cf.got")"
cp "$W/kme.B.orig" "$NET_DIR/B/kme.json"
kill -HUP "$(kme_pid B)"
t_check "B drops the claim: the alarm ends at the hub within 15 s" wait_for 15 conflicts_at A 0
net_stop

# ---------------------------------------------------------------------------------
echo "== (6) logs"
t_eq "no key_ID reached a master twice" 0 "$(cut -d' ' -f1 "$DELIVERED" | grep . | sort | uniq -d | wc -l)"
awk 'length($2) > 8 { print $2 }' "$DELIVERED" | sort -u >"$W/every.b64"
while read -r k; do printf '%s' "$k" | base64 -d | od -An -tx1 | tr -d ' \n'; echo; done <"$W/every.b64" >"$W/every.hex"
t_check "keys were collected for the log check" test -s "$W/every.b64"
t_check "no key (base64) appears in any KME log" bash -c "! grep -Fq -f '$W/every.b64' '$STAR_DIR'/*/kme.log '$STAR4_DIR'/*/kme.log"
t_check "no key (hex) appears in any KME log" bash -c "! grep -Fqi -f '$W/every.hex' '$STAR_DIR'/*/kme.log '$STAR4_DIR'/*/kme.log"
t_logs_clean "$STAR_DIR"/*/kme.log
t_logs_clean "$STAR4_DIR"/*/kme.log
t_summary
