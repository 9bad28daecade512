#!/bin/sh
# Installs, when missing, every Debian package that the build, the tests, the
# demo network and the benchmarks need. Idempotent; needs root only when
# something is actually missing. Also used by the container build.
set -eu

PACKAGES="build-essential pkg-config ca-certificates openssl curl jq procps psmisc iproute2 gdb
libmicrohttpd-dev libgnutls28-dev libssl-dev libjansson-dev libcurl4-openssl-dev
liblmdb-dev lmdb-utils libp11-kit-dev softhsm2 check nginx-light libnginx-mod-rtmp ffmpeg socat iptables nodejs npm
chromium coturn docker-compose python3 python3-yaml python3-cryptography systemd clang-format clang libclang-rt-14-dev"

# One query for every package: "name status" for each one dpkg knows.
# shellcheck disable=SC2086
installed=$(dpkg-query -W -f='${Package} ${Status}\n' $PACKAGES 2>/dev/null | awk '/ install ok installed$/ {print $1}')
missing=""
for p in $PACKAGES; do
    if ! printf '%s\n' "$installed" | grep -qx "$p"; then
        # nodejs/npm may come from another source than Debian: accept the commands.
        case "$p" in
            nodejs) command -v node >/dev/null 2>&1 && continue ;;
            npm) command -v npm >/dev/null 2>&1 && continue ;;
        esac
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi
echo "make deps: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
    echo "make deps: these Debian packages are missing and installing them needs root:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
