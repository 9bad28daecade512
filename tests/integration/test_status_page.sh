#!/usr/bin/env bash
# The status page on the admin listener, on the reference star (hub A; links
# A-B and A-C), with keys relayed B -> C through the hub:
#  (1) /status.json at B: three sites (B itself), the two links up with key
#      in stock, B's route to KME_C via KME_A, the directory, the relay
#      requests B originated (to KME_C via KME_A, the keys asked for, UTC
#      times); at A: its routes, its own ends of both links read live, no
#      relay of its own. No key_ID or key delivered appears in either.
#  (2) "/" is one self-contained page (no external resource). Headless
#      Chromium loads it from B: after its script ran the DOM's SVG holds the
#      three sites (B marked as this KME), the two links with their state, the
#      route to KME_C through KME_A and the relay events; the script fetched
#      status.json more than once. The screenshot (kept as
#      tests/out/status_page.png) is a PNG of the window size that shows the
#      drawing, not a blank page.
#  (3) Live: KME_C stops; within seconds B's status.json shows link A-C down,
#      KME_C unreachable and no route to it, A's own end of A-C down; the page
#      drawn again shows the link down and no route to KME_C.
#  (4) No sanitizer report in any KME log.
# shellcheck disable=SC2034 # T_SUITE and the NET_* settings are read by the sourced files
T_SUITE=status_page
[ -n "${1:-}" ] && T_BUILD=$(cd "$1" && pwd)
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=SCRIPTDIR/../lib/network.sh
. "$T_ROOT/tests/lib/network.sh"
# shellcheck source=SCRIPTDIR/lib/keys.sh
. "$T_ROOT/tests/integration/lib/keys.sh"
NET_BIN=$T_BIN
NET_SAE_BASE=5700
NET_KME_BASE=5720
NET_ADMIN_BASE=5740
NET_STOCK=0 # every key for a remote SAE is relayed on demand: B's relays are the test's own
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
PNG_STATS=$T_ROOT/tests/integration/lib/png_stats.py
W=$(mktemp -d "$T_OUT/status_page.XXXX")
trap net_stop EXIT
t_require_programs kme qkd-sim
if [ ! -x "$CHROMIUM" ]; then
    t_fail "prerequisites" "$CHROMIUM is missing (Debian package chromium; make deps)"
    t_summary
    exit 1
fi

admin_url() { echo "http://127.0.0.1:$(net_admin_port "$1")$2"; }
# status SITE FILE: the site's /status.json into FILE; fails unless 200 and JSON
status() { curl -sf --max-time 5 "$(admin_url "$1" /status.json)" -o "$2" && jq -e .self "$2" >/dev/null; }
# q FILE FILTER: jq's answer, compact (strings raw)
q() { jq -c "$2" "$1" 2>/dev/null | sed -E 's/^"(.*)"$/\1/'; }
# both_links_stocked SITE: status shows the two links up, each with key in stock
both_links_stocked() {
    status "$1" "$W/poll.$1" &&
        jq -e '[.links[] | select(.up and .stock_bytes > 0)] | length == 2' "$W/poll.$1" >/dev/null
}
# chromium_dom URL OUT [SCREENSHOT]: the DOM after the page's script ran for
# a few (virtual) seconds; also a screenshot when SCREENSHOT is given.
chromium_dom() {
    local args=(--headless --disable-gpu "--window-size=1280,900" --hide-scrollbars --no-first-run
        --user-data-dir="$W/chromium" --virtual-time-budget=7000)
    [ "$(id -u)" = 0 ] && args+=(--no-sandbox)
    if [ -n "${3:-}" ]; then
        timeout 60 "$CHROMIUM" "${args[@]}" --screenshot="$3" "$1" >"$W/chromium.shot.log" 2>&1 || return 1
    fi
    timeout 60 "$CHROMIUM" "${args[@]}" --dump-dom "$1" >"$2" 2>"$W/chromium.dom.log"
}
# self_contained FILE: the HTML names no other origin and loads no script, style or font file
self_contained() { ! grep -Eiq "(src|href|action)=[\"']?(https?:)?//|url\(|@import|<script[^>]+src=|<link[^>]+href=" "$1"; }
# count FILE TEXT: how many times TEXT appears in FILE
count() { grep -oF -- "$2" "$1" | wc -l; }

# ---------------------------------------------------------------------------------
echo "== (1) status.json"
if ! { net_init "$W/net" "A B C" "A-B A-C" && net_start; }; then
    t_fail "network" "the star did not start; see $W/net"
    t_summary
    exit 1
fi
: >"$W/keys"
enc_keys SAE_B SAE_C 2 256 "$W/keys"
t_eq "SAE_B gets 2 keys for SAE_C (relayed through the hub)" "200 2" "$CODE $(grep -c . "$W/keys")"
enc_keys SAE_B SAE_C 3 512 "$W/keys"
t_eq "and 3 more of 512 bits" "200 5" "$CODE $(grep -c . "$W/keys")"
: >"$W/got"
dec_keys SAE_C SAE_B "$W/keys" "$W/got"
t_eq "SAE_C fetches all 5 at its KME with the master's bytes" "$(sort "$W/keys")" "$(sort "$W/got")"

# The adverts carry the stock of each end: they follow the ingest within seconds.
t_check "B's status.json shows both links up with key in stock" wait_for 20 both_links_stocked B
status B "$W/B.json"
t_eq "status.json at B answers with JSON for KME_B" KME_B "$(q "$W/B.json" .self)"
t_eq "content type application/json" "application/json" \
    "$(curl -s -o /dev/null -w '%{content_type}' "$(admin_url B /status.json)")"
t_match "generated_at is UTC (ISO 8601, Z)" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$' \
    "$(q "$W/B.json" .generated_at)"
t_eq "three sites, B marked as this KME" '[["KME_A",false],["KME_B",true],["KME_C",false]]' \
    "$(q "$W/B.json" '[.sites[] | [.id, .self]]')"
t_eq "every site advertised and reachable, hosting its SAE" '[[true,true,["SAE_A"]],[true,true,["SAE_B"]],[true,true,["SAE_C"]]]' \
    "$(q "$W/B.json" '[.sites[] | [.advertised, .reachable, .saes]]')"
t_eq "two links, A-B and A-C, both up" '[["KME_A","KME_B",true],["KME_A","KME_C",true]]' \
    "$(q "$W/B.json" '[.links[] | [.a, .b, .up]]')"
t_eq "both links have key in stock (state ok or low, stock > 0)" 'true' \
    "$(q "$W/B.json" '[.links[] | select((.state == "ok" or .state == "low") and .stock_bytes > 0)] | length == 2')"
t_eq "the stock of a link is what its two ends own" 'true' \
    "$(q "$W/B.json" '[.links[] | .stock_bytes == ([.ends[].stock_bytes] | add)] | all')"
t_eq "B's own end of A-B is read live, with the key it ingested" '["live",true]' \
    "$(q "$W/B.json" '.links[] | select(.b == "KME_B") | .ends[] | select(.kme == "KME_B") | [.source, .ingested_bytes > 0]')"
t_eq "B's route to KME_C: next hop KME_A, path B A C" '["KME_A",2,["KME_B","KME_A","KME_C"]]' \
    "$(q "$W/B.json" '.routes[] | select(.dest == "KME_C") | [.next_hop, .hops, .path]')"
t_eq "B's route to KME_A: direct" '["KME_A",1]' "$(q "$W/B.json" '.routes[] | select(.dest == "KME_A") | [.next_hop, .hops]')"
t_eq "the directory places each SAE at its KME" '{"SAE_A":"KME_A","SAE_B":"KME_B","SAE_C":"KME_C"}' \
    "$(jq -cS .directory "$W/B.json" 2>/dev/null)"
# The recent relays come from kme_metrics_recent_relays (kme/metrics.c).
t_eq "B lists its two relay requests, newest first: to KME_C via KME_A, 3 then 2 keys, ok" \
    '[["KME_C","KME_A",3,192,true],["KME_C","KME_A",2,64,true]]' \
    "$(q "$W/B.json" '[.relays[:2][] | [.dest, .via, .keys, .bytes, .ok]]')"
t_eq "each relay event has a UTC time matching its at_ms and a duration" 'true' \
    "$(q "$W/B.json" '[.relays[] | (.at | test("^[0-9-]{10}T[0-9:]{8}\\.[0-9]{3}Z$")) and
        ((.at_ms / 1000 | floor | todate) == (.at | sub("\\.[0-9]+Z$"; "Z"))) and .seconds > 0] | (length > 0 and all)')"

status A "$W/A.json"
t_eq "status.json at A: self KME_A" KME_A "$(q "$W/A.json" .self)"
t_eq "A routes to B and C directly" '[["KME_B","KME_B",1],["KME_C","KME_C",1]]' \
    "$(q "$W/A.json" '[.routes[] | [.dest, .next_hop, .hops]]')"
t_eq "A's own ends of both links are read live, up, with key ingested" '[["KME_A","live",true,true],["KME_A","live",true,true]]' \
    "$(q "$W/A.json" '[.links[] | .ends[] | select(.kme == "KME_A") | [.kme, .source, .up, .ingested_bytes > 0]]')"
t_eq "A originated no relay (it only passed B's on)" 0 "$(q "$W/A.json" '.relays | length')"

# No key material and no key_ID, in either document.
cut -d' ' -f1 "$W/keys" >"$W/key_ids"
cut -d' ' -f2 "$W/keys" >"$W/key_b64"
t_check "keys were collected for the check" test -s "$W/key_ids"
t_check "no delivered key_ID in status.json at B or A" bash -c "! grep -Fq -f '$W/key_ids' '$W/B.json' '$W/A.json'"
t_check "no delivered key (base64) in status.json at B or A" bash -c "! grep -Fq -f '$W/key_b64' '$W/B.json' '$W/A.json'"
t_eq "an unknown path is 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$(admin_url B /nope)")"

# ---------------------------------------------------------------------------------
echo "== (2) the page in a browser"
curl -s -D "$W/page.head" -o "$W/page.html" "$(admin_url B /)"
t_match "/ answers 200 with HTML" '^HTTP/1\.1 200' "$(head -1 "$W/page.head")"
t_match "content type text/html" '[Cc]ontent-[Tt]ype: text/html' "$(cat "$W/page.head")"
t_check "the page has its script and style inline" grep -q '<script>' "$W/page.html"
t_check "the page loads nothing from elsewhere (no script or style file, no other origin)" self_contained "$W/page.html"
t_eq "HEAD / answers 200 too" 200 "$(curl -s -I -o /dev/null -w '%{http_code}' "$(admin_url B /)")"

SHOT=$W/status_page.png
chromium_dom "$(admin_url B /)" "$W/dom.B.html" "$SHOT"
t_check "headless Chromium loaded the page" test -s "$W/dom.B.html"
cp -f "$SHOT" "$T_OUT/status_page.png" 2>/dev/null
sites=$(grep -o '<g class="site[^"]*" data-kme="[^"]*"' "$W/dom.B.html" | sed 's/.*data-kme="//; s/"$//' | sort | paste -sd' ' -)
t_eq "the drawing has the three sites" "KME_A KME_B KME_C" "$sites"
t_eq "KME_B is drawn as this KME" 1 "$(grep -o '<g class="site self[^"]*" data-kme="KME_B" data-self="1"' "$W/dom.B.html" | wc -l)"
t_eq "the drawing has the links A-B and A-C, up" "KME_A KME_B:up KME_A KME_C:up" \
    "$(grep -o 'data-link="[^"]*" data-state="[^"]*"' "$W/dom.B.html" |
        sed -E 's/data-link="([^"]*)" data-state="(ok|low)"/\1:up/; s/data-link="([^"]*)" data-state="([^"]*)"/\1:\2/' |
        sort -u | paste -sd' ' -)"
t_eq "the route to KME_C is drawn through KME_A" 1 "$(count "$W/dom.B.html" 'data-route="KME_C" data-path="KME_B KME_A KME_C"')"
t_check "the route to KME_C is listed beside the drawing" grep -q '<tr data-route="KME_C"' "$W/dom.B.html"
t_check "the relay events are listed" test "$(count "$W/dom.B.html" '<tr data-relay="KME_C">')" -ge 2
refreshes=$(grep -o 'data-refreshes="[0-9]*"' "$W/dom.B.html" | grep -o '[0-9]*')
t_check "the script fetched status.json again and again (${refreshes:-0} times)" test "${refreshes:-0}" -ge 2
t_check "no delivered key_ID in the page" bash -c "! grep -Fq -f '$W/key_ids' '$W/dom.B.html'"

read -r pw ph pcolours < <(python3 "$PNG_STATS" "$SHOT" 2>"$W/png.err")
t_eq "the screenshot is a PNG of the window size" "1280 900" "$pw $ph"
t_check "the screenshot is not blank (${pcolours:-0} colours)" test "${pcolours:-0}" -ge 50
# Header bar, this KME's circle (accent blue), links in stock (green or amber).
python3 "$PNG_STATS" "$SHOT" --at 8,8 --near 2563eb --near 16a34a --near d97706 >"$W/png.stats" 2>>"$W/png.err"
t_eq "the header bar is drawn (dark)" 131b26 "$(awk '$1 == "8,8" { print $2 }' "$W/png.stats")"
t_check "this KME's circle is drawn (accent blue pixels)" \
    test "$(awk '$1 == "2563eb" { print $2 }' "$W/png.stats")" -ge 1000
t_check "links with key are drawn (green or amber pixels)" \
    test "$(awk '$1 == "16a34a" || $1 == "d97706" { n += $2 } END { print n + 0 }' "$W/png.stats")" -ge 300

# ---------------------------------------------------------------------------------
echo "== (3) live: KME_C stops"
kme_stop C
c_gone() {
    status B "$W/poll.B" && jq -e '(.links[] | select(.b == "KME_C") | .up == false and .state == "down")
        and (.sites[] | select(.id == "KME_C") | .reachable == false)
        and ([.routes[] | select(.dest == "KME_C")] | length == 0)' "$W/poll.B" >/dev/null
}
t_check "within seconds B's status.json shows A-C down, KME_C unreachable, no route to it" wait_for 15 c_gone
t_eq "B still routes to KME_A" '["KME_A"]' "$(q "$W/poll.B" '[.routes[].dest]')"
status A "$W/A2.json"
t_eq "A's own end of A-C is down" false "$(q "$W/A2.json" '.links[] | select(.b == "KME_C") | .ends[] | select(.kme == "KME_A") | .up')"
chromium_dom "$(admin_url B /)" "$W/dom.B2.html"
t_eq "the page now draws A-C down" 1 "$(count "$W/dom.B2.html" 'data-link="KME_A KME_C" data-state="down"')"
t_eq "and no route to KME_C" 0 "$(count "$W/dom.B2.html" 'data-route="KME_C"')"
t_eq "KME_C is drawn unreachable" 1 "$(grep -o '<g class="site unreachable" data-kme="KME_C"' "$W/dom.B2.html" | wc -l)"

# ---------------------------------------------------------------------------------
echo "== (4) logs"
net_stop
rm -rf "$W/chromium" # the browser's profile: large and of no use afterwards
t_logs_clean "$NET_DIR"/*/kme.log
t_summary
