# shellcheck shell=bash
# RTMP helpers for the encryptor suite (sourced after tests/lib.sh): a known
# test FLV, private nginx-rtmp instances, ffmpeg publishers and players, and
# comparisons of per-packet hashes (ffmpeg framemd5).
#
# A "packet list" (rtmp_framemd5) holds the "#extradata" lines of a file and
# then one line per packet, video first then audio by stream number, as
# "stream,dts,pts,duration,size,md5"; side data (nginx-rtmp repeats the AAC
# header as side data of the first audio packet) is left out.

RTMP_NGINX=$(command -v nginx || echo /usr/sbin/nginx)
RTMP_MODULE=/usr/lib/nginx/modules/ngx_rtmp_module.so

# rtmp_missing: prints what the RTMP checks need and this machine lacks.
rtmp_missing() {
    local p
    for p in ffmpeg ffprobe gzip; do command -v "$p" >/dev/null 2>&1 || printf ' %s' "$p"; done
    [ -x "$RTMP_NGINX" ] || printf ' nginx'
    [ -f "$RTMP_MODULE" ] || printf ' libnginx-mod-rtmp'
    ffmpeg -hide_banner -encoders 2>/dev/null | grep -q libx264 || printf ' ffmpeg-libx264'
}

# rtmp_make_source FILE SECONDS: a test FLV: H.264 test pattern (320x180,
# 25 fps, a key frame every second) and a 440 Hz AAC tone.
rtmp_make_source() {
    ffmpeg -nostdin -hide_banner -loglevel error -y \
        -f lavfi -i "testsrc2=size=320x180:rate=25" -f lavfi -i "sine=frequency=440:sample_rate=44100" \
        -t "$2" -map 0:v -map 1:a -c:v libx264 -preset ultrafast -tune zerolatency -g 25 -pix_fmt yuv420p \
        -b:v 300k -c:a aac -b:a 64k -f flv "$1"
}

# rtmp_nginx_conf DIR LISTEN...: a private nginx-rtmp instance under DIR
# (config, pid, logs, recordings in DIR/rec as NAME.flv).
rtmp_nginx_conf() {
    local dir=$1 l listens=""
    shift
    for l in "$@"; do listens="$listens        listen $l;"$'\n'; done
    mkdir -p "$dir/logs" "$dir/rec"
    cat >"$dir/nginx.conf" <<CONF
load_module $RTMP_MODULE;
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log info;
events { worker_connections 256; }
rtmp {
    access_log $dir/logs/access.log;
    server {
$listens        application live {
            live on;
            record all;
            record_path $dir/rec;
            record_unique off;
        }
    }
}
CONF
}

# rtmp_nginx_exec DIR [PREFIX...]: replaces the (background) shell with the
# instance in the foreground, run through PREFIX (e.g. ip netns exec NS).
rtmp_nginx_exec() {
    local dir=$1
    shift
    exec "$@" "$RTMP_NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log"
}

# rtmp_publish URL FILE LOG: publishes FILE at its own pace (-re), unchanged.
rtmp_publish() {
    ffmpeg -nostdin -hide_banner -loglevel error -re -i "$2" -map 0 -c copy -f flv "$1" >"$3" 2>&1
}

# rtmp_play URL OUT LOG SECONDS: plays SECONDS of a live stream into raw
# framemd5 (ffmpeg's player does not end when the publisher does).
rtmp_play() {
    ffmpeg -nostdin -hide_banner -loglevel error -y -i "$1" -map 0:v -map 0:a -c copy -t "$4" -f framemd5 "$2" \
        >"$3" 2>&1
}

# rtmp_normalise < framemd5 > packet list
rtmp_normalise() {
    awk -F', *' '/^#extradata/ { print; next } /^#/ { next } NF >= 6 { print $1 "," $2 "," $3 "," $4 "," $5 "," $6 }'
}

# rtmp_framemd5 FILE OUT: the packet list of a media file; fails when ffmpeg
# cannot read both streams.
rtmp_framemd5() {
    local raw
    raw=$(ffmpeg -nostdin -hide_banner -loglevel error -i "$1" -map 0:v -map 0:a -c copy -f framemd5 - 2>"$2.err") ||
        { : >"$2"; return 1; }
    printf '%s\n' "$raw" | rtmp_normalise >"$2"
}

# rtmp_packets LIST: the number of packet lines in a packet list.
rtmp_packets() { grep -vc '^#' "$1" 2>/dev/null; }

# rtmp_is_prefix PART WHOLE: PART's extradata are WHOLE's and its packets are
# WHOLE's first ones, in order, timestamps included (at least one packet).
rtmp_is_prefix() {
    [ "$(grep '^#' "$1")" = "$(grep '^#' "$2")" ] || return 1
    awk 'NR == FNR { if (!/^#/) w[++n] = $0; next }
         !/^#/ { m++; if (m > n || w[m] != $0) bad = 1 }
         END { exit (bad || m == 0) }' "$2" "$1"
}

# rtmp_is_run PART WHOLE: for each stream, PART's packets (size and hash)
# are a contiguous run of WHOLE's packets of that stream (timestamps of a
# live player start elsewhere). Every stream of PART must have packets.
rtmp_is_run() {
    local s
    for s in 0 1; do
        awk -F, -v s="$s" 'NR == FNR { if (!/^#/ && $1 == s) w[++n] = $5 " " $6; next }
            !/^#/ && $1 == s { p[++m] = $5 " " $6 }
            END {
                if (m == 0) exit 1
                for (i = 1; i + m - 1 <= n; i++) {
                    ok = 1
                    for (j = 1; j <= m; j++) if (w[i + j - 1] != p[j]) { ok = 0; break }
                    if (ok) exit 0
                }
                exit 1
            }' "$2" "$1" || return 1
    done
}

# rtmp_recording DIR NAME: the path of the recording of stream NAME.
rtmp_recording() { echo "$1/rec/$2.flv"; }
