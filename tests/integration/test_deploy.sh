#!/usr/bin/env bash
# The container deployment (docker/), checked without a container engine.
#  (1) docker-compose 1.29 accepts docker/compose.yaml, with and without the
#      openmeetings profile; in what it renders: the star's services, the
#      openmeetings services started only with their profile (compose's own
#      rules), a health check on every long-running service, every service of
#      our images unprivileged (user set), without capabilities, core dumps or
#      a writable root; each KME's own named volume at its data_dir; each
#      link's volume shared by its qkd-sim and its two KMEs at their key_dirs;
#      site configs from docker/sites naming only files the certs service
#      makes; peers and KMEs addressed by service names the KME certificates
#      carry; listeners on 0.0.0.0, health checks on the admin listeners,
#      published ports that are listened on; the TURN path of the profile:
#      OpenMeetings' TURN_URL is turn:HOST:PORT?transport=tcp with PORT
#      published by the users-side TURN encryptor, whose pair ends at
#      coturn's TCP port; coturn has no UDP, TLS or DTLS listener, checks
#      OpenMeetings' secret and, like OpenMeetings, publishes no port. A copy
#      with a health check, a user and the TURN URL's transport removed is
#      refused.
#  (2) Package lists: runtime without -dev packages or compilers, every one a
#      real package; build, RTMP and TURN lists within docker/install-deps.sh;
#      the Dockerfile has Debian 12 build, runtime, rtmp and turn stages, reads
#      the lists and ends each runtime stage as an unprivileged user.
#  (3) docker/build-image.sh, run from a tree holding exactly what the
#      Dockerfile's build stage copies, installs kme, qkd-sim, sae-client,
#      encryptor (they run), mkcerts.sh, rtmp-server and the site configs;
#      every directory a named volume is mounted on is created for the user.
#  (4) Every shared library the programs load, and every command the scripts
#      and health checks run, comes from docker/runtime-packages.txt (with
#      docker/rtmp-packages.txt for nginx, docker/turn-packages.txt for
#      turnserver) or the Debian base (Essential packages), dependencies
#      included.
#  (5) The systemd units pass systemd-analyze verify and security (exposure
#      at most 2.0) and hold the hardening settings.
#  (6) The default services run as the compose file says, as processes in a
#      private network and mount namespace, each on its own loopback address
#      under its service name (/etc/hosts), named volumes and tmpfs as
#      directories, as uid 10001 without core dumps, in depends_on order with
#      its conditions: certs completes (and again, idempotently); every
#      long-running service's own health check passes; the encryptor site
#      configs pass `encryptor --check`; SAE_B gets a key at kme-b that SAE_C
#      fetches at kme-c (relayed through kme-a over TLS by service names); an
#      RTMP stream published to encryptor-users plays back through the pair;
#      kme survives SIGHUP (a reload) and kme@.service offers one, the
#      encryptor's unit only if the encryptor survives it too; every service
#      stops on SIGTERM within its stop_grace_period.
# Needs root (namespaces), docker-compose, systemd-analyze, ffmpeg, nginx with
# the rtmp module. Builds its own release programs (T_BUILD is not used).
# shellcheck disable=SC2034 # T_SUITE is read by lib.sh

# Run in private network and mount namespaces: loopback only, /etc/hosts ours.
if [ "${DEPLOY_IN_NS:-}" != 1 ] && [ "$(id -u)" -eq 0 ] && unshare --net --mount true 2>/dev/null; then
    DEPLOY_IN_NS=1 exec unshare --net --mount -- bash "$0" "$@"
fi

T_SUITE=deploy
[ -n "${1:-}" ] && T_BUILD=$(cd "$1" && pwd)
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
HELPER=$T_ROOT/tests/integration/lib/deploy_check.py
D=$T_ROOT/docker
QKD_UID=10001
W=$(mktemp -d /tmp/deploy.XXXXXX)
chmod 0755 "$W"
IMG=$W/image
SVC_PID=()

stop_services() {
    local i pid
    for ((i = ${#SVC_PID[@]} - 1; i >= 0; i--)); do
        pid=${SVC_PID[i]:-}
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    SVC_PID=()
}
finish() {
    stop_services
    if [ "$T_FAILED" -gt 0 ] && [ -d "$W/logs" ]; then
        rm -rf "$T_OUT/deploy-logs" && cp -r "$W/logs" "$T_OUT/deploy-logs" 2>/dev/null
        echo "  (service logs kept in $T_OUT/deploy-logs)"
    fi
    rm -rf "$W"
}
trap finish EXIT

# report FILE: turns the helper's "ok NAME" / "FAIL NAME<TAB>WHY" lines into results.
report() {
    local line tab=$'\t'
    while IFS= read -r line; do
        case $line in
        "ok "*) t_pass "${line#ok }" ;;
        "FAIL "*) line=${line#FAIL }; t_fail "${line%%"$tab"*}" "${line#*"$tab"}" ;;
        esac
    done <"$1"
}
# t_rc NAME RC DETAIL: passes when RC is 0, else fails showing DETAIL.
t_rc() { if [ "$2" -eq 0 ]; then t_pass "$1"; else t_fail "$1" "exit $2: $3"; fi; }
# exited PID: the process is gone or a zombie.
exited() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null); [ -z "$s" ] || [ "${s:0:1}" = Z ]; }
# words FILE: the non-comment words of a package list.
words() { sed 's/#.*//' "$1" | xargs; }

# ------------------------------------------------------------------ (1) compose
compose() { docker-compose -f "$D/compose.yaml" "$@"; }
compose config >"$W/rendered.yaml" 2>"$W/compose.err"
t_rc "docker-compose config accepts docker/compose.yaml" $? "$(head -c 300 "$W/compose.err")"
compose --profile openmeetings config >"$W/rendered-om.yaml" 2>"$W/compose.err"
t_rc "docker-compose config accepts it with --profile openmeetings" $? "$(head -c 300 "$W/compose.err")"

"$PY" "$HELPER" check "$W/rendered.yaml" "$W/rendered-om.yaml" "$T_ROOT" >"$W/check.out" 2>"$W/check.err"
rc=$?
report "$W/check.out"
if [ $rc -ne 0 ] && ! grep -q '^FAIL ' "$W/check.out"; then
    t_fail "compose checks ran" "$(tail -n 3 "$W/check.err")"
fi

# The checks can fail: a copy without kme-b's health check and rtmp's user.
"$PY" - "$W/rendered-om.yaml" "$W/broken.yaml" <<'EOF'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
del c["services"]["kme-b"]["healthcheck"]
del c["services"]["rtmp"]["user"]
c["services"]["openmeetings"]["environment"]["TURN_URL"] = "turn:127.0.0.1:3478"
yaml.safe_dump(c, open(sys.argv[2], "w"))
EOF
"$PY" "$HELPER" check "$W/broken.yaml" "$W/broken.yaml" "$T_ROOT" >"$W/broken.out" 2>&1
rc=$?
fails=$(grep '^FAIL ' "$W/broken.out" | cut -f1)
t_eq "a compose file without a health check and a user is refused" "1" "$rc"
t_match "...for the missing health check" '^FAIL kme-b has a health check$' "$fails"
t_match "...and the missing user" '^FAIL rtmp runs as an unprivileged user$' "$fails"
t_match "...and the TURN URL without transport=tcp" '^FAIL openmeetings has a TURN URL over TCP \(TURN_URL\)$' "$fails"

# ------------------------------------------------------------ (2) package lists
RUNTIME=$(words "$D/runtime-packages.txt")
BUILDP=$(words "$D/build-packages.txt")
RTMPP=$(words "$D/rtmp-packages.txt")
TURNP=$(words "$D/turn-packages.txt")
DEPS=$(sed -n '/^PACKAGES="/,/"$/p' "$D/install-deps.sh" | tr -d '"' | sed 's/^PACKAGES=//' | xargs)
t_match "runtime packages are listed" '^lib.* curl' "$RUNTIME"
t_nomatch "runtime packages: no -dev package" '(^| )[^ ]+-dev( |$)' "$RUNTIME"
t_nomatch "runtime packages: no compiler or build tool" \
    '(^| )(gcc|g\+\+|cpp|clang|build-essential|make|binutils|pkg-config)(-[0-9]+)?( |$)' "$RUNTIME"
# shellcheck disable=SC2086
installed=" $(dpkg-query -W -f='${Package} ${Status}\n' $RUNTIME $RTMPP $TURNP 2>/dev/null | awk '/ install ok installed$/ {print $1}' | xargs) "
missing=""
for p in $RUNTIME $RTMPP $TURNP; do
    case "$installed" in *" $p "*) ;; *) missing="$missing $p" ;; esac
done
t_eq "runtime, RTMP and TURN packages are real Debian 12 packages (installed here)" "" "$missing"
missing=""
for p in $BUILDP $RTMPP $TURNP; do case " $DEPS " in *" $p "*) ;; *) missing="$missing $p" ;; esac; done
t_eq "build, RTMP and TURN packages are in docker/install-deps.sh" "" "$missing"

DF=$D/Dockerfile
# stage NAME: the Dockerfile's lines of stage NAME (from its FROM to the next).
stage() { awk -v s="$1" 'toupper($1) == "FROM" { on = (tolower($NF) == s) } on' "$DF"; }
t_match "Dockerfile: the base image is Debian 12" '^ARG DEBIAN_IMAGE=debian:(12|bookworm)(-slim)?$' \
    "$(grep '^ARG DEBIAN_IMAGE=' "$DF")"
t_eq "Dockerfile: stages build, runtime, rtmp, turn" "build runtime rtmp turn" \
    "$(awk 'toupper($1) == "FROM" { print tolower($NF) }' "$DF" | xargs)"
t_match "Dockerfile: build stage installs docker/build-packages.txt and runs build-image.sh" \
    'build-packages\.txt.*docker/build-image\.sh' "$(stage build | tr '\n' ' ')"
t_match "Dockerfile: runtime stage installs docker/runtime-packages.txt and copies the build's files" \
    'runtime-packages\.txt.*COPY --from=build ' "$(stage runtime | tr '\n' ' ')"
t_nomatch "Dockerfile: runtime stage installs nothing from the build list" 'build-packages' "$(stage runtime)"
t_match "Dockerfile: rtmp stage installs docker/rtmp-packages.txt" 'rtmp-packages\.txt' "$(stage rtmp)"
t_match "Dockerfile: turn stage installs docker/turn-packages.txt" 'turn-packages\.txt' "$(stage turn)"
for s in runtime rtmp turn; do
    t_eq "Dockerfile: $s stage ends as uid $QKD_UID" "USER $QKD_UID:$QKD_UID" "$(stage $s | grep '^USER ' | tail -n 1)"
done

# -------------------------------------------------------------- (3) the build
# The tree the build stage sees: exactly what its COPY lines copy into WORKDIR.
mkdir -p "$W/src"
while read -r _ src dst; do
    case $dst in /*) continue ;; esac
    if [ -d "$T_ROOT/$src" ]; then
        mkdir -p "$W/src/$dst" && cp -a "$T_ROOT/$src/." "$W/src/$dst/"
    else
        mkdir -p "$W/src/$dst" && cp -a "$T_ROOT/$src" "$W/src/$dst"
    fi
done < <(stage build | awk 'toupper($1) == "COPY" && $2 !~ /^--/ && NF == 3')
(cd "$W/src" && bash docker/build-image.sh --dest "$IMG" --build "$W/build" --jobs 2) >"$W/build.log" 2>&1
t_rc "build-image.sh builds and installs from the build stage's files" $? "$(tail -n 5 "$W/build.log")"
bash "$D/build-image.sh" --build "$W/none" >/dev/null 2>&1
t_eq "build-image.sh without --dest is a usage error" "2" "$?"
for p in kme qkd-sim sae-client encryptor mkcerts.sh rtmp-server; do
    f=$IMG/usr/local/bin/$p
    if [ -x "$f" ] && { "$f" --version >/dev/null 2>&1 || "$f" --help >/dev/null 2>&1; }; then
        t_pass "$p is installed in /usr/local/bin and runs"
    else
        t_fail "$p is installed in /usr/local/bin and runs" "$f"
    fi
done
sites=$(cd "$D/sites" && ls -- *.json)
for f in $sites; do
    t_check "site config $f is JSON, installed as /etc/qkd/$f" jq -e 'type == "object"' "$IMG/etc/qkd/$f"
done
"$PY" "$HELPER" volumes "$W/rendered-om.yaml" >"$W/volumes.txt"
missing=$(sed 's/#.*//' "$IMG/usr/local/share/qkd/writable-dirs" 2>/dev/null | sort | comm -23 <(sort "$W/volumes.txt") - | xargs)
t_eq "the image makes every named volume's mount point the user's (writable-dirs)" "" "$missing"
t_match "...for the volumes of the star (CAs, bundles, store keys, kme data, links, certs)" \
    '/bundles/kme-a.* /etc/qkd/certs /keys/kme-a /keys/kme-b /keys/kme-c /srv/qkd-ca /var/lib/kme /var/lib/kme-key /var/lib/qkd/links/A-B' \
    "$(xargs <"$W/volumes.txt")"

# ------------------------------------------------------ (4) libraries, commands
# shellcheck disable=SC2086 # package lists: one word each
"$PY" "$HELPER" closure $RUNTIME >"$W/closure.txt"
# shellcheck disable=SC2086
"$PY" "$HELPER" closure $RUNTIME $RTMPP >"$W/closure-rtmp.txt"
t_check "the runtime closure holds the listed packages" grep -qx libmicrohttpd12 "$W/closure.txt"
t_check_fails "the Debian base alone lacks libmicrohttpd12" grep -qx libmicrohttpd12 <("$PY" "$HELPER" closure)
# owner PATH: the package that installed PATH (tries the /usr-merged variants).
owner() {
    local b c
    for b in "$1" "$(readlink -f "$1")"; do
        for c in "$b" "/usr$b" "${b#/usr}"; do
            dpkg -S "$c" 2>/dev/null | grep -v '^diversion ' | head -n 1 | cut -d: -f1 | grep . && return 0
        done
    done
    return 1
}
# unprovided CLOSURE PATH...: the paths whose package is not in CLOSURE.
unprovided() {
    local closure=$1 p pkg out=""
    shift
    for p in "$@"; do
        pkg=$(owner "$p") && grep -qx "$pkg" "$closure" || out="$out $p(${pkg:-no package})"
    done
    echo "$out"
}
for p in kme qkd-sim sae-client encryptor; do
    libs=$(ldd "$IMG/usr/local/bin/$p" 2>&1)
    t_nomatch "$p: ldd finds every library" 'not found|not a dynamic' "$libs"
    paths=$(printf '%s\n' "$libs" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
    t_match "$p: links libraries" 'libjansson|libcurl|libcrypto' "$paths"
    # shellcheck disable=SC2086
    t_eq "$p: every library comes from the runtime packages or the base" "" "$(unprovided "$W/closure.txt" $paths)"
done
# Commands of mkcerts.sh, rtmp-server and the health checks.
cmds="bash sh openssl flock awk sort paste cmp sync stat mktemp sed tail dirname find grep curl"
paths=""
for c in $cmds; do paths="$paths $(command -v "$c" || echo "/missing/$c")"; done
# shellcheck disable=SC2086
t_eq "commands of the scripts and health checks come from the runtime packages or the base" "" \
    "$(unprovided "$W/closure.txt" $paths)"
t_eq "nginx and its rtmp module come from the RTMP packages" "" \
    "$(unprovided "$W/closure-rtmp.txt" "$(command -v nginx || echo /usr/sbin/nginx)" /usr/lib/nginx/modules/ngx_rtmp_module.so)"
t_nomatch "...and not from the runtime packages alone" '^$' \
    "$(unprovided "$W/closure.txt" /usr/lib/nginx/modules/ngx_rtmp_module.so)"
# shellcheck disable=SC2086
"$PY" "$HELPER" closure $RUNTIME $TURNP >"$W/closure-turn.txt"
t_eq "turnserver comes from the TURN packages" "" \
    "$(unprovided "$W/closure-turn.txt" "$(command -v turnserver || echo /usr/bin/turnserver)")"

# ------------------------------------------------------------- (5) systemd units
mkdir -p "$W/units"
for u in kme:a encryptor:users; do
    prog=${u%%:*} inst=${u#*:}
    unit=$D/systemd/$prog@.service
    cp "$unit" "$W/units/$prog@$inst.service"
    out=$(cd "$W/units" && systemd-analyze verify "./$prog@$inst.service" 2>&1 |
        grep -v "Command /usr/local/bin/$prog is not executable")
    t_eq "$prog@.service passes systemd-analyze verify" "" "$out"
    t_check "$prog@.service runs a program the image installs there" \
        test -x "$IMG$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")"
    level=$(cd "$W/units" && systemd-analyze security --offline=yes "./$prog@$inst.service" 2>/dev/null |
        sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
    t_check "$prog@.service: exposure level ${level:-?} is at most 2.0" awk -v l="${level:-99}" 'BEGIN { exit !(l <= 2.0) }'
    body=$(grep -v '^#' "$unit")
    for want in "User=qkd" "ExecStart=/usr/local/bin/$prog --config /etc/qkd/$prog-%i.json" "NoNewPrivileges=yes" \
        "ProtectSystem=strict" "ProtectHome=yes" "PrivateTmp=yes" "LimitCORE=0" "KillSignal=SIGTERM" \
        "TimeoutStopSec=[0-9]+" "Restart=on-failure"; do
        t_match "$prog@.service: $want" "^$want\$" "$(printf '%s\n' "$body" | grep -E "^$want\$")"
    done
done
t_match "kme@.service: StateDirectory per site" '^StateDirectory=kme/%i$' "$(grep '^StateDirectory=' "$D/systemd/kme@.service")"
t_match "kme@.service: data and link dirs writable" '^ReadWritePaths=/var/lib/kme/%i -?/var/lib/qkd/links$' \
    "$(grep '^ReadWritePaths=' "$D/systemd/kme@.service")"

# ---------------------------------------------- (6) the services as processes
if [ "${DEPLOY_IN_NS:-}" != 1 ]; then
    t_fail "running the services" "needs root and unshare (private network and mount namespaces)"
    t_summary
    exit
fi
for c in setpriv prlimit ffmpeg nginx; do
    command -v "$c" >/dev/null 2>&1 || t_fail "running the services" "$c is missing (make deps)"
done
ip link set lo up
"$PY" "$HELPER" plan "$W/rendered.yaml" "$IMG" "$W" 2>"$W/plan.err"
t_rc "the default services are planned" $? "$(tail -n 2 "$W/plan.err")"
mount --bind "$W/hosts" /etc/hosts
t_check "service names resolve in the namespace" getent hosts kme-a
declare -A SVC_NAME SVC_IP SVC_USER SVC_ONESHOT SVC_GRACE
# shellcheck source=/dev/null
. "$W/plan.sh"
for d in "${SVC_DIRS[@]}"; do
    read -r dir mode <<<"$d"
    mkdir -p "$dir" && chown "$QKD_UID:$QKD_UID" "$dir" && chmod "$mode" "$dir"
done
chmod 0755 "$W/vol" "$W/tmpfs" 2>/dev/null
find "$W/tmpfs" -mindepth 1 -type d -exec chmod a+x {} + 2>/dev/null
mkdir -p "$W/logs"
CERTS=$W/vol/qkd-ca # every certificate (the CA volume); each daemon reads only its bundle
SVC_RC=()

svc_index() { local i; for ((i = 0; i < SVC_COUNT; i++)); do [ "${SVC_NAME[$i]}" = "$1" ] && { echo $i; return 0; }; done; return 1; }
# user_cmd I: AS_USER=(the prefix that runs a command as service I's user, in
# a clean environment with its variables, without core dumps).
user_cmd() {
    local -n envs="SVC_ENV_$1"
    AS_USER=(env -i PATH="$IMG/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin" HOME=/nonexistent
        "${envs[@]}" prlimit --core=0 setpriv --reuid="${SVC_USER[$1]%%:*}" --regid="${SVC_USER[$1]#*:}"
        --clear-groups --no-new-privs --)
}
as_user() { user_cmd "$1"; shift; "${AS_USER[@]}" "$@"; }
healthy() { local -n h="SVC_HEALTH_$1"; [ ${#h[@]} -gt 0 ] && as_user "$1" "${h[@]}"; }
# wait_healthy I: until service I's health check passes (60 s x T_WAIT_SCALE), while it runs.
wait_healthy() {
    local end=$((SECONDS + 60 * T_WAIT_SCALE)) pid=${SVC_PID[$1]:-}
    while [ $SECONDS -le $end ] && [ -n "$pid" ] && ! exited "$pid"; do
        healthy "$1" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}
start_service() { # I: after its dependencies' conditions hold
    local i=$1 n=${SVC_NAME[$1]} dep j
    local -n deps="SVC_DEPS_$i" cmd="SVC_CMD_$i"
    for dep in "${deps[@]}"; do
        j=$(svc_index "${dep%%:*}") || { t_fail "$n: dependency ${dep%%:*} exists"; return 1; }
        case ${dep#*:} in
        service_completed_successfully) [ "${SVC_RC[$j]:-}" = 0 ] || { t_fail "$n: ${SVC_NAME[$j]} completed first"; return 1; } ;;
        service_healthy) wait_healthy "$j" || { t_fail "$n: ${SVC_NAME[$j]} is healthy first"; return 1; } ;;
        esac
    done
    if [ "${SVC_ONESHOT[$i]}" = 1 ]; then
        as_user "$i" timeout 120 "${cmd[@]}" >>"$W/logs/$n.log" 2>&1
        SVC_RC[i]=$?
        t_eq "one-shot service $n completes" "0" "${SVC_RC[i]}"
    else
        # The log is the container's stdout: the service may reopen it (/dev/stdout).
        touch "$W/logs/$n.log" && chown "${SVC_USER[$i]}" "$W/logs/$n.log"
        user_cmd "$i"
        "${AS_USER[@]}" "${cmd[@]}" >>"$W/logs/$n.log" 2>&1 &
        SVC_PID[i]=$!
    fi
}
for ((i = 0; i < SVC_COUNT; i++)); do start_service "$i"; done
for ((i = 0; i < SVC_COUNT; i++)); do
    [ "${SVC_ONESHOT[$i]}" = 1 ] && continue
    if wait_healthy "$i"; then t_pass "${SVC_NAME[$i]} passes its health check"; else
        t_fail "${SVC_NAME[$i]} passes its health check" "see $T_OUT/deploy-logs/${SVC_NAME[$i]}.log"
    fi
done
run_again() { local -n cmd="SVC_CMD_$1"; as_user "$1" "${cmd[@]}" 2>&1; }
i=$(svc_index certs) && t_match "certs again: nothing to do (the volume is kept)" 'up to date' "$(run_again "$i")"

# Every encryptor site config, certificate paths pointed at the certs volume.
for f in "$D"/sites/encryptor-*.json; do
    sed "s#/etc/qkd/certs/#$CERTS/#g" "$f" >"$W/check-${f##*/}"
    out=$("$IMG/usr/local/bin/encryptor" --config "$W/check-${f##*/}" --check 2>&1)
    t_rc "encryptor --check accepts ${f##*/}" $? "$out"
done

# A key from SAE_B at kme-b, relayed through kme-a, fetched by SAE_C at kme-c.
sae() { # SAE KME_SERVICE ARGS...
    local s=$1 k=$2
    shift 2
    "$IMG/usr/local/bin/sae-client" --kme "https://$k:$(jq -r '.sae_listen | sub(".*:"; "")' "$IMG/etc/qkd/$k.json")" \
        --cert "$CERTS/$s.pem" --key "$CERTS/$s.key" --ca "$CERTS/ca.pem" "$@"
}
got_key() { sae SAE_B kme-b get-key SAE_C --number 1 --output hex >"$W/key.txt" 2>"$W/key.err" && [ -s "$W/key.txt" ]; }
if wait_for 60 got_key; then
    t_pass "SAE_B gets a key for SAE_C at kme-b (service names, TLS)"
    fetched=$(sae SAE_C kme-c get-key-with-ids SAE_B "$(cut -d' ' -f1 "$W/key.txt")" --output hex 2>&1)
    t_eq "SAE_C fetches the same key at kme-c" "$(cat "$W/key.txt")" "$fetched"
else
    t_fail "SAE_B gets a key for SAE_C at kme-b (service names, TLS)" "$(tail -n 2 "$W/key.err")"
fi

# RTMP through the pair: publish to encryptor-users, play back from it.
URL=rtmp://encryptor-users:1935/live/deploy
ffmpeg -nostdin -hide_banner -loglevel error -re -f lavfi -i testsrc=size=160x120:rate=10 -t 60 \
    -c:v flv -f flv "$URL" >"$W/logs/publisher.log" 2>&1 &
PUB=$!
play() { timeout 15 ffmpeg -nostdin -hide_banner -loglevel error -i "$URL" -frames:v 5 -f null - >>"$W/logs/player.log" 2>&1; }
if wait_for 40 play; then t_pass "an RTMP stream plays back through the encryptor pair"; else
    t_fail "an RTMP stream plays back through the encryptor pair" "$(tail -n 3 "$W/logs/player.log" "$W/logs/publisher.log")"
fi
t_check_fails "the publisher was still streaming" exited "$PUB"
kill "$PUB" 2>/dev/null
wait "$PUB" 2>/dev/null

# A unit offers a reload (SIGHUP) only for a program that survives one.
program_of() { local -n c="SVC_CMD_$1"; echo "${c[0]}"; }
for prog in kme encryptor; do
    # shellcheck disable=SC2016 # a literal $MAINPID
    reload=$(grep -c '^ExecReload=/bin/kill -HUP \$MAINPID$' "$D/systemd/$prog@.service")
    for ((i = 0; i < SVC_COUNT; i++)); do
        [ "$(program_of "$i")" = "$prog" ] && [ -n "${SVC_PID[i]:-}" ] && break
    done
    if [ "$i" -ge "$SVC_COUNT" ]; then
        t_fail "$prog@.service: reload matches SIGHUP handling" "no running $prog service"
        continue
    fi
    survived=no
    # (bash would report a job ended by the signal: not a result)
    { kill -HUP "${SVC_PID[i]}" && sleep 1 && ! exited "${SVC_PID[i]}" && wait_healthy "$i" && survived=yes; } 2>/dev/null
    t_eq "$prog@.service: ExecReload only if ${SVC_NAME[$i]} survives SIGHUP" "$survived" \
        "$([ "$reload" = 1 ] && echo yes || echo no)"
    if [ $survived = no ]; then { wait "${SVC_PID[i]}"; } 2>/dev/null; SVC_PID[i]=""; fi
done
for prog in kme encryptor; do
    t_check "$prog@.service offers a reload" grep -q '^ExecReload=' "$D/systemd/$prog@.service"
done

# Stop in reverse order; each within its stop_grace_period.
for ((i = SVC_COUNT - 1; i >= 0; i--)); do
    pid=${SVC_PID[i]:-}
    [ -n "$pid" ] || continue
    kill -TERM "$pid" 2>/dev/null
    if wait_for "${SVC_GRACE[$i]}" exited "$pid"; then
        t_pass "${SVC_NAME[$i]} stops on SIGTERM within ${SVC_GRACE[$i]} s"
    else
        t_fail "${SVC_NAME[$i]} stops on SIGTERM within ${SVC_GRACE[$i]} s"
    fi
    wait "$pid" 2>/dev/null
    SVC_PID[i]=""
done
t_summary
