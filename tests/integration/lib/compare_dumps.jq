# Compares both ends' stores of one link. Run as
#   jq -n -r --slurpfile a DUMP_OF_X --slurpfile b DUMP_OF_Y \
#      --arg x KME_X --arg y KME_Y -f compare_dumps.jq
# and it prints one line per violation (nothing when the two agree):
#   - a block verified at one end and discarded at the other;
#   - a block verified at both ends whose owners do not mirror (self/peer),
#     except a pending grant (relay/grant.h): the grantor marked it
#     "granted" and the grantee has not taken it yet, so both say "peer" and
#     neither allocates from it (the "no end owns it" rule below applies);
#   - for a block verified at either end: bytes the non-owner recorded as used
#     that the owner has not used (the owner is the end that says "self"; its
#     used ranges must contain the peer's, else a byte may be handed out twice);
#     when neither end says "self" yet, nothing beyond the 48 verification
#     bytes may be used at either end.
#   - a block the non-owner erased as spent (no record below its ingest
#     mark: discarded, or every byte recorded as used) that its owner holds
#     verified with bytes unused (a split, or bytes the owner may hand out
#     again).
# Used ranges are merged half-open extents, so a peer extent is covered by the
# owner's set only when a single owner extent contains it.

def blocks($d; $peer): ($d.links[$peer] // []) | map({key: (.seq | tostring), value: .}) | from_entries;
def covered($r; $set): any($set[]; .[0] <= $r[0] and $r[1] <= .[1]);
def uncovered($sub; $sup): [$sub[] | select(covered(.; $sup) | not)];

($a[0]) as $da | ($b[0]) as $db
| blocks($da; $y) as $ba | blocks($db; $x) as $bb
| (($ba | keys) + ($bb | keys) | unique | sort_by(tonumber)) as $seqs
| $seqs[] as $s
| $ba[$s] as $p | $bb[$s] as $q
| (($da.ingest_marks // {})[$y] // 0) as $ma | (($db.ingest_marks // {})[$x] // 0) as $mb
| (
    if $p == null and ($s | tonumber) < $ma and $q.state == "verified" and $q.owner == "self"
       and uncovered([[0, $q.size]]; $q.used) != []
    then "seq \($s): \($x) erased it as spent, owner \($y) has bytes unused (\($q.used | tojson))" else empty end,
    if $q == null and ($s | tonumber) < $mb and $p.state == "verified" and $p.owner == "self"
       and uncovered([[0, $p.size]]; $p.used) != []
    then "seq \($s): \($y) erased it as spent, owner \($x) has bytes unused (\($p.used | tojson))" else empty end,

    if ($p.state == "verified" and $q.state == "discarded") or ($p.state == "discarded" and $q.state == "verified")
    then "seq \($s): \($x) \($p.state), \($y) \($q.state)" else empty end,

    if $p.state == "verified" and $q.state == "verified"
       and ([$p.owner, $q.owner] | sort) != ["peer", "self"]
       and (($p.owner == "peer" and $q.owner == "peer" and ($p.granted or $q.granted)) | not)
    then "seq \($s): owners do not mirror (\($x) \($p.owner), \($y) \($q.owner))" else empty end,

    if ($p.state == "verified" or $q.state == "verified") and $p != null and $q != null then
      (if $p.owner == "self" then [$p, $q, $x, $y]
       elif $q.owner == "self" then [$q, $p, $y, $x]
       else null end) as $o
      | if $o == null then
          uncovered($p.used + $q.used; [[0, 48]]) as $extra
          | if ($extra | length) > 0
            then "seq \($s): no end owns it, yet \($extra | tojson) are used" else empty end
        else uncovered($o[1].used; $o[0].used) as $extra
        | if ($extra | length) > 0
          then "seq \($s): \($o[3]) (non-owner) used \($extra | tojson) not used by owner \($o[2]) (\($o[0].used | tojson))"
          else empty end
        end
    else empty end
  )
