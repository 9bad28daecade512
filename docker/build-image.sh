#!/usr/bin/env bash
# docker/build-image.sh: the build steps of the container image
# (docker/Dockerfile, stage "build"), runnable on any Debian 12 machine with
# the build packages (docker/build-packages.txt). Builds the release programs
# with the project Makefile and lays out, under DIR, the files the runtime
# image copies to its root:
#   usr/local/bin/{kme,qkd-sim,sae-client,encryptor}   stripped programs
#   usr/local/bin/mkcerts.sh                           certs/mkcerts.sh
#   usr/local/bin/rtmp-server                          docker/rtmp-server.sh
#   usr/local/share/qkd/demo-pair.sh                   its nginx.conf writer
#   etc/qkd/<site>.json                                docker/sites/*.json
#   usr/local/share/qkd/writable-dirs                  directories the
#       unprivileged user must own (data, link, certificate and run dirs,
#       taken from the site configs); the Dockerfile creates them
# and checks that each installed program runs.
set -euo pipefail

PROG=${0##*/}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
USAGE="usage: $PROG --dest DIR [--build DIR] [--jobs N]"
PROGRAMS="kme qkd-sim sae-client encryptor"

usage_error() {
    printf '%s: %s\n%s\n' "$PROG" "$1" "$USAGE" >&2
    exit 2
}
die() {
    printf '%s: %s\n' "$PROG" "$1" >&2
    exit 1
}

DEST=""
BUILD=build/image
JOBS=$(nproc 2>/dev/null || echo 2)
while (($#)); do
    case $1 in
    --dest | --build | --jobs)
        (($# >= 2)) || usage_error "option $1 requires a value"
        case $1 in
        --dest) DEST=$2 ;;
        --build) BUILD=$2 ;;
        --jobs) JOBS=$2 ;;
        esac
        shift 2
        ;;
    --help | -h)
        echo "$USAGE"
        echo "Builds the release programs (make MODE=release BUILD=DIR all; default build/image,"
        echo "relative to the source tree) and installs the image's files under --dest DIR."
        exit 0
        ;;
    *) usage_error "unknown option: $1" ;;
    esac
done
[[ -n $DEST ]] || usage_error "missing --dest DIR"
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || usage_error "--jobs: '$JOBS' is not a positive number"
command -v jq >/dev/null 2>&1 || die "jq is needed to read the site configs (docker/build-packages.txt)"

echo "$PROG: building the release programs into $BUILD"
make -C "$ROOT" MODE=release BUILD="$BUILD" -j"$JOBS" all
case $BUILD in
/*) BIN=$BUILD/bin ;;
*) BIN=$ROOT/$BUILD/bin ;;
esac

mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
install -d -m 0755 "$DEST/usr/local/bin" "$DEST/usr/local/share/qkd" "$DEST/etc/qkd"
for p in $PROGRAMS; do
    [[ -x $BIN/$p ]] || die "$BIN/$p was not built"
    install -m 0755 -s "$BIN/$p" "$DEST/usr/local/bin/$p"
done
install -m 0755 "$ROOT/certs/mkcerts.sh" "$DEST/usr/local/bin/mkcerts.sh"
install -m 0755 "$ROOT/docker/rtmp-server.sh" "$DEST/usr/local/bin/rtmp-server"
install -m 0644 "$ROOT/encryptor/demo-pair.sh" "$DEST/usr/local/share/qkd/demo-pair.sh"

# Site configs, and the directories they name that the programs write to.
sites=("$ROOT"/docker/sites/*.json)
[[ -e ${sites[0]} ]] || die "no site configs in $ROOT/docker/sites"
for f in "${sites[@]}"; do
    jq -e 'type == "object"' "$f" >/dev/null 2>&1 || die "$f is not a JSON object"
    install -m 0644 "$f" "$DEST/etc/qkd/${f##*/}"
done
{
    echo "# Directories the user qkd owns in the image: written by $PROG from docker/sites."
    jq -r '.data_dir // empty, (.store_key.file? // empty | sub("/[^/]+$"; "")),
           (.links[]?.key_dir | sub("/[^/]+$"; "")),
           (.sae_tls.cert, .kme.cert | strings | sub("/[^/]+$"; ""))' "${sites[@]}"
    echo /run/rtmp
    # Where the certs service keeps the CAs and lays out each daemon's bundle
    # (docker/compose.yaml).
    echo /srv/qkd-ca
    for f in "${sites[@]}"; do echo "/bundles/$(basename "$f" .json)"; done
    # Where the store-keys service makes each KME's store key.
    for f in "${sites[@]}"; do case $(basename "$f") in kme-*) echo "/keys/$(basename "$f" .json)" ;; esac; done
} | awk 'NR == 1 || !seen[$0]++' >"$DEST/usr/local/share/qkd/writable-dirs"

# Each installed program runs (--version, or --help where there is none).
for p in $PROGRAMS mkcerts.sh rtmp-server; do
    if ! "$DEST/usr/local/bin/$p" --version >/dev/null 2>&1 && ! "$DEST/usr/local/bin/$p" --help >/dev/null 2>&1; then
        die "$DEST/usr/local/bin/$p does not run"
    fi
done
echo "$PROG: installed $PROGRAMS, mkcerts.sh, rtmp-server and ${#sites[@]} site configs under $DEST"
