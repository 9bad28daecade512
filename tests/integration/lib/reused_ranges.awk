# Reads the debug logs of KMEs (log_level "debug": each reserve and relay
# message logs its link ranges as it leaves, "link PEER: sent KIND ID ranges
# SEQ:OFFSET+LENGTH...", and each reservation recorded at its callee logs
# "link PEER: reservation ID recorded") and prints one line per message that
# carries bytes of link key an earlier message of the same link had used
# (nothing when none did). Run as
#   awk -f reused_ranges.awk pass=1 SITE_DIR/kme.log... pass=2 SITE_DIR/kme.log...
# with the logs in directories named after their sites (X/kme.log: KME_X).
#
# A relay message uses its pad and MAC key as it leaves: its ciphertext and
# tag are on the wire whatever its callee does. A reservation uses its
# ranges once its callee records it. A reservation never recorded (refused,
# or withdrawn by a resolve) used nothing, so its bytes may go out again.

function site_of(path, parts, n) {
    n = split(path, parts, "/")
    return "KME_" parts[n - 1]
}
function link_of(a, b) {
    return a < b ? a "-" b : b "-" a
}

# Pass 1: the reservations each callee recorded, by (caller, ID).
pass == 1 && $3 == "link" && $5 == "reservation" && $7 == "recorded" {
    caller = $4
    sub(/:$/, "", caller)
    recorded[caller, $6] = 1
}

# Pass 2: the messages each KME sent, in the order it sent them.
pass == 2 && $3 == "link" && $5 == "sent" && $8 == "ranges" {
    self = site_of(FILENAME)
    peer = $4
    sub(/:$/, "", peer)
    key = self SUBSEP $7
    if (!(key in kind)) {
        order[++n] = key
        kind[key] = $6
        id[key] = $7
        lnk[key] = link_of(self, peer)
        used[key] = $6 == "relay" || ((self, $7) in recorded)
    }
    for (i = 9; i <= NF; i++)
        range[key, ++nr[key]] = $i
}

END {
    for (m = 1; m <= n; m++) {
        key = order[m]
        for (r = 1; r <= nr[key]; r++) {
            split(range[key, r], a, /[:+]/)
            at = lnk[key] SUBSEP a[1]
            start = a[2] + 0
            end = start + a[3]
            for (j = 1; j <= cnt[at]; j++)
                if (start < hi[at, j] && lo[at, j] < end)
                    printf "link %s: %s %s carries block %s [%d, %d), used by %s\n", lnk[key], kind[key], id[key], a[1],
                           start, end, by[at, j]
        }
        if (!used[key])
            continue
        for (r = 1; r <= nr[key]; r++) {
            split(range[key, r], a, /[:+]/)
            at = lnk[key] SUBSEP a[1]
            lo[at, ++cnt[at]] = a[2] + 0
            hi[at, cnt[at]] = a[2] + a[3]
            by[at, cnt[at]] = kind[key] " " id[key]
        }
    }
}
