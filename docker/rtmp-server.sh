#!/usr/bin/env bash
# docker/rtmp-server.sh (installed as rtmp-server): the RTMP server of the
# container deployment, the same one `make run` starts. Writes nginx.conf
# with encryptor/demo-pair.sh (application `live`) for RTMP_LISTEN into
# RTMP_DIR, errors on stderr and the access log on stdout, then runs nginx in
# the foreground.
#   RTMP_LISTEN   HOST:PORT to listen on (default 0.0.0.0:1935)
#   RTMP_DIR      writable directory for nginx.conf and the pid (default /run/rtmp)
set -euo pipefail

RTMP_LISTEN=${RTMP_LISTEN:-0.0.0.0:1935}
RTMP_DIR=${RTMP_DIR:-/run/rtmp}

if [[ ${1:-} == --help || ${1:-} == -h ]]; then
    echo "usage: rtmp-server   (settings from the environment: RTMP_LISTEN=$RTMP_LISTEN RTMP_DIR=$RTMP_DIR)"
    exit 0
fi
if (($#)); then
    echo "rtmp-server: takes no arguments (see --help)" >&2
    exit 2
fi

# demo-pair.sh: installed beside this script's share directory, or in the source tree.
here=$(dirname "${BASH_SOURCE[0]}")
for lib in "$here/../share/qkd/demo-pair.sh" "$here/../encryptor/demo-pair.sh"; do
    [[ -f $lib ]] && break
done
[[ -f $lib ]] || { echo "rtmp-server: cannot find demo-pair.sh" >&2; exit 1; }
[[ $RTMP_LISTEN =~ ^(.+):([0-9]+)$ ]] || { echo "rtmp-server: RTMP_LISTEN must be HOST:PORT" >&2; exit 2; }

# shellcheck disable=SC2034 # read by pair_write_nginx_conf
PAIR_RTMP_HOST=${BASH_REMATCH[1]}
# shellcheck disable=SC2034
PAIR_RTMP_PORT=${BASH_REMATCH[2]}
# shellcheck source=SCRIPTDIR/../encryptor/demo-pair.sh
. "$lib"
mkdir -p "$RTMP_DIR"
pair_write_nginx_conf "$RTMP_DIR" stderr /dev/stdout
exec nginx -e stderr -p "$RTMP_DIR" -c "$RTMP_DIR/nginx.conf"
