/* The two pumps of one connection (conn_state.h). The sender takes keys
 * only for payload it holds: it gathers what the plaintext side writes
 * (small writes for up to coalesce_ms, so that they share a frame and its
 * MAC key), then takes and announces keys for it, as many ahead as the
 * direction's recent traffic used (announce_pace.h). When pads run out it
 * holds that payload and reads no more, so the stream waits and nothing
 * leaves unencrypted. The receiver checks every frame (order, tag) before a
 * byte of it reaches the plaintext side, and ends the connection on the
 * first fault; until a sealed frame has verified it fetches no key but the
 * one that frame needs (pad_in.h). */
#include "encryptor/pump.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <openssl/crypto.h>
#include "encryptor/announce_pace.h"
#include "encryptor/frame.h"
#include "encryptor/gcm.h"
#include "encryptor/metrics.h"
#include "encryptor/otp.h"
#include "runtime/clock.h"
#include "encryptor/net.h"
#include "encryptor/stream_rx.h"
#include "encryptor/stream_tx.h"
#include "runtime/log.h"

/* ---- sender ------------------------------------------------------------------ */

typedef struct {
    conn *c;
    stream_tx tx;
    announce_pace pace;
    unsigned char *frame; /* FRAME_MAX_BYTES */
    unsigned char *plain; /* FRAME_MAX_PAYLOAD */
    int read_errno;       /* a read failed after payload was gathered: reported by the next gather */
} sender;

static int send_frame(sender *s, size_t len)
{
    if (net_write_all(atomic_load(&s->c->cipher_fd), s->frame, len) < 0) {
        conn_abort(s->c, "ciphertext write failed: %s", strerror(errno));
        return -1;
    }
    s->c->cipher_out += len;
    enc_metrics_add(ENC_M_CIPHERTEXT_OUT, len);
    return 0;
}

/* stx_room, telling the pace about the keys it moved past. */
static size_t room_now(sender *s)
{
    uint32_t before = s->tx.cur;
    size_t r = stx_room(&s->tx, clock_mono_seconds());
    int64_t now = clock_mono_ms();
    for (uint32_t i = before; i != s->tx.cur; i++)
        announce_pace_used_up(&s->pace, now);
    return r;
}

/* Takes keys from the pool and announces them, as many as the pace says
 * the direction should hold. With wait (no room left), at least one, waiting
 * for it (-1 when the connection or the appliance stops first); without,
 * tops up the keys announced ahead when fewer than half the pace are left. */
static int announce(sender *s, int wait)
{
    conn *c = s->c;
    size_t room_left = room_now(s), ahead = stx_keys_ahead(&s->tx), want;
    size_t target = announce_pace_target(&s->pace, room_left, clock_mono_ms());
    if (wait) {
        want = target > ahead ? target - ahead : 1;
    } else {
        size_t want_ahead = target - 1; /* the key in use is held already */
        if (ahead * 2 >= want_ahead)
            return 0;
        want = want_ahead - ahead;
    }
    pad_key keys[FRAME_MAX_KEYS];
    int waited = 0;
    size_t n = pad_pool_take(c->rt->pool, keys, want, wait, &c->aborted, &waited);
    c->waits += (uint64_t)waited;
    if (n == 0)
        return wait ? -1 : 0;
    size_t len, bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += keys[i].len;
    int rc = stx_announce(&s->tx, keys, n, s->frame, &len);
    for (size_t i = 0; i < n; i++)
        pad_key_clear(&keys[i]);
    if (rc < 0) {
        conn_abort(c, "cannot announce keys");
        return -1;
    }
    c->keys_out += n;
    enc_metrics_add(ENC_M_PADS_SPENT, n);
    enc_metrics_add(ENC_M_PAD_BYTES_SPENT, bytes);
    return send_frame(s, len);
}

/* Room for the next sealed frame, announcing (and waiting for) keys when
 * none is left. 0 when the connection ends first. */
static size_t room(sender *s)
{
    for (;;) {
        size_t r = room_now(s);
        if (r || atomic_load(&s->c->aborted))
            return atomic_load(&s->c->aborted) ? 0 : r;
        if (announce(s, 1) < 0) {
            conn_abort(s->c, "stopped while waiting for pads");
            return 0;
        }
    }
}

/* How much payload to gather for the next frame: what the key in use has
 * room for, or else what a fresh key will have (less the OPEN frame the
 * users side seals first). No key is taken for it. */
static size_t gather_cap(sender *s, size_t open_bytes)
{
    size_t r = room_now(s);
    if (r)
        return r;
    const enc_config *cfg = s->c->rt->cfg;
    if (cfg->mode == FRAME_MODE_GCM)
        return gcm_room(0, 0, 0, cfg->rotate_bytes, cfg->rotate_seconds);
    size_t fresh = otp_room((size_t)cfg->pad_key_bits / 8, 0);
    size_t open_slice = open_bytes ? otp_slice_bytes(open_bytes) : 0;
    return fresh > open_slice + 1 ? fresh - open_slice : fresh;
}

/* Reads payload into s->plain, up to cap bytes: waits for the first byte,
 * then gathers more for at most coalesce_ms, so that small writes share one
 * frame (and one MAC key). >0 bytes, 0 at the end of the plaintext stream,
 * -1 on error. */
static ssize_t gather(sender *s, size_t cap)
{
    int fd = atomic_load(&s->c->plain_fd);
    if (s->read_errno) {
        errno = s->read_errno;
        return -1;
    }
    ssize_t n = net_read_some(fd, s->plain, cap);
    long delay = s->c->rt->cfg->coalesce_ms;
    if (n <= 0 || (size_t)n >= cap || delay == 0)
        return n;
    size_t got = (size_t)n;
    int64_t deadline = clock_mono_ms() + delay;
    while (got < cap && !atomic_load(&s->c->aborted)) {
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0)
            break;
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        ssize_t m = net_read_some(fd, s->plain + got, cap - got);
        if (m < 0)
            s->read_errno = errno ? errno : EIO;
        if (m <= 0)
            break; /* the end or the error is seen again by the next gather */
        got += (size_t)m;
    }
    return (ssize_t)got;
}

static int seal_and_send(sender *s, uint8_t type, const unsigned char *plain, size_t n)
{
    size_t len;
    if (stx_seal(&s->tx, type, plain, n, clock_mono_seconds(), s->frame, &len) < 0) {
        conn_abort(s->c, "cannot seal a frame");
        return -1;
    }
    return send_frame(s, len);
}

/* Users side: the OPEN frame, sealed with the first payload. */
static int send_open(sender *s)
{
    conn *c = s->c;
    size_t dl = strlen(c->dest), r = room(s);
    if (!r)
        return -1;
    if (r < dl) {
        conn_abort(c, "keys too short for the OPEN frame");
        return -1;
    }
    return seal_and_send(s, FRAME_OPEN, (const unsigned char *)c->dest, dl);
}

/* The n gathered bytes, in as many DATA frames as the keys' room asks. */
static int send_data(sender *s, size_t n)
{
    for (size_t off = 0; off < n;) {
        size_t r = room(s);
        if (!r)
            return -1;
        size_t k = n - off < r ? n - off : r;
        if (seal_and_send(s, FRAME_DATA, s->plain + off, k) < 0)
            return -1;
        announce_pace_carried(&s->pace, k, clock_mono_ms());
        off += k;
    }
    return 0;
}

static void send_loop(sender *s)
{
    conn *c = s->c;
    size_t open_bytes = c->rt->cfg->role == ENC_ROLE_USERS ? strlen(c->dest) : 0;
    int need_open = c->rt->cfg->role == ENC_ROLE_USERS;
    for (;;) {
        ssize_t n = gather(s, gather_cap(s, need_open ? open_bytes : 0));
        if (atomic_load(&c->aborted))
            return;
        if (n < 0) {
            conn_abort(c, "plaintext read failed: %s", strerror(errno));
            return;
        }
        if (need_open) {
            if (send_open(s) < 0)
                return;
            need_open = 0;
        }
        if (n == 0) {
            /* sealed like any frame: a direction that carried no payload spends one key on it */
            if (room(s) && seal_and_send(s, FRAME_FIN, s->plain, 0) == 0) {
                c->fin_sent = 1;
                shutdown(atomic_load(&c->cipher_fd), SHUT_WR);
            }
            return;
        }
        c->plain_in += (uint64_t)n;
        enc_metrics_add(ENC_M_PLAINTEXT_IN, (uint64_t)n);
        if (send_data(s, (size_t)n) < 0 || announce(s, 0) < 0)
            return;
    }
}

void *pump_send(void *arg)
{
    sender s = {.c = arg};
    const enc_config *cfg = s.c->rt->cfg;
    stx_init(&s.tx, (uint8_t)cfg->mode, cfg->rotate_bytes, cfg->rotate_seconds);
    announce_pace_init(&s.pace, (size_t)cfg->announce_keys);
    s.frame = malloc(FRAME_MAX_BYTES);
    s.plain = malloc(FRAME_MAX_PAYLOAD);
    if (s.frame && s.plain)
        send_loop(&s);
    else
        conn_abort(s.c, "out of memory");
    if (s.plain)
        OPENSSL_cleanse(s.plain, FRAME_MAX_PAYLOAD);
    if (s.frame)
        OPENSSL_cleanse(s.frame, FRAME_MAX_BYTES);
    free(s.plain);
    free(s.frame);
    stx_free(&s.tx);
    return NULL;
}

/* ---- receiver ---------------------------------------------------------------- */

static const char *type_name(uint8_t type)
{
    static const char *const names[] = {"?", "KEYS", "OPEN", "DATA", "FIN"};
    return type <= FRAME_FIN ? names[type] : "?";
}

static void malformed(conn *c, const char *why)
{
    atomic_fetch_add(&c->rt->malformed, 1);
    log_warn("conn %llu: malformed frame (%s); closing both sides", (unsigned long long)c->id, why);
    conn_abort(c, "malformed frame: %s", why);
}

static int get_key(void *arg, uint32_t index, pad_key *out)
{
    conn *c = arg;
    return pad_in_get(c->in, index, out, &c->aborted);
}

static void refuse(conn *c, const char *text)
{
    atomic_fetch_add(&c->rt->refused[ENC_REFUSED_SETUP], 1);
    log_warn("conn %llu refused: %s", (unsigned long long)c->id, text);
    conn_abort(c, "refused: %s", text);
}

/* Server side: connects to the destination the OPEN frame names (or the
 * configured one) and starts the sender. 0, or -1 (connection aborted). */
static int open_destination(conn *c, const unsigned char *text, size_t n)
{
    const enc_config *cfg = c->rt->cfg;
    char dest[FRAME_MAX_DEST + 1], err[300];
    memcpy(dest, text, n);
    dest[n] = '\0';
    int fd;
    if (n == 0) {
        if (!cfg->connect.host[0]) {
            refuse(c, "no destination given and no 'connect' configured");
            return -1;
        }
        fd = net_connect(&cfg->connect, cfg->connect_timeout_ms, err, sizeof err);
        snprintf(c->to, sizeof c->to, "%s:%s", cfg->connect.host, cfg->connect.port);
    } else {
        struct sockaddr_storage sa;
        if (memchr(text, '\0', n) || dest_parse(dest, &sa) < 0) {
            refuse(c, "the destination is not IP:PORT");
            return -1;
        }
        int allowed = 0;
        for (size_t i = 0; i < cfg->allowed_count && !allowed; i++)
            allowed = dest_equal(&sa, &cfg->allowed[i]);
        if (!allowed) {
            char why[FRAME_MAX_DEST + 64];
            snprintf(why, sizeof why, "destination %s is not in allowed_destinations", dest);
            refuse(c, why);
            return -1;
        }
        fd = net_connect_addr(&sa, cfg->connect_timeout_ms, err, sizeof err);
        snprintf(c->to, sizeof c->to, "%s", dest);
    }
    if (fd < 0) {
        log_warn("conn %llu: %s", (unsigned long long)c->id, err);
        conn_abort(c, "destination unreachable");
        return -1;
    }
    atomic_store(&c->plain_fd, fd);
    if (atomic_load(&c->aborted)) {
        shutdown(fd, SHUT_RDWR);
        return -1;
    }
    log_info("conn %llu opened: %s -> %s", (unsigned long long)c->id, c->from, c->to);
    return pump_start_sender(c);
}

/* Handles one sealed frame whose payload is in plain. 0, or -1 to stop. */
static int deliver(conn *c, const frame_header *h, const unsigned char *plain, int *opened)
{
    switch (h->type) {
    case FRAME_OPEN:
        if (*opened || c->rt->cfg->role != ENC_ROLE_SERVER) {
            malformed(c, "unexpected OPEN frame");
            return -1;
        }
        *opened = 1;
        return open_destination(c, plain, h->length);
    case FRAME_DATA:
        if (net_write_all(atomic_load(&c->plain_fd), plain, h->length) < 0) {
            conn_abort(c, "plaintext write failed: %s", strerror(errno));
            return -1;
        }
        c->plain_out += h->length;
        enc_metrics_add(ENC_M_PLAINTEXT_OUT, h->length);
        return 0;
    default: /* FIN */
        shutdown(atomic_load(&c->plain_fd), SHUT_WR);
        c->fin_received = 1;
        return 0;
    }
}

/* Server side: how long a new ciphertext connection may take to open. */
#define OPEN_TIMEOUT_S 30

static void set_receive_timeout(int fd, long seconds)
{
    struct timeval tv = {seconds, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static void receive_loop(conn *c, unsigned char *body, unsigned char *plain)
{
    stream_rx rx;
    srx_init(&rx, (uint8_t)c->rt->cfg->mode);
    int fd = atomic_load(&c->cipher_fd), opened = c->rt->cfg->role == ENC_ROLE_USERS, trusted = 0;
    unsigned char hdr[FRAME_HEADER_BYTES];
    if (!opened)
        set_receive_timeout(fd, OPEN_TIMEOUT_S);
    for (;;) {
        int r = net_read_full(fd, hdr, sizeof hdr);
        if (atomic_load(&c->aborted))
            return;
        if (r == 0 && c->fin_received)
            return; /* clean end of this direction */
        if (r <= 0) {
            if (r == 0)
                conn_abort(c, "the peer encryptor closed without FIN");
            else if (!opened && (errno == EAGAIN || errno == EWOULDBLOCK))
                conn_abort(c, "no OPEN frame within %d s", OPEN_TIMEOUT_S);
            else
                conn_abort(c, "ciphertext connection cut");
            return;
        }
        frame_header h;
        const char *why = "invalid frame";
        if (frame_header_decode(hdr, &h, &why) != FRAME_OK) {
            malformed(c, why);
            return;
        }
        if (c->fin_received) {
            malformed(c, "frame after FIN");
            return;
        }
        size_t rest = h.length + frame_tag_bytes(h.type);
        if (rest && net_read_full(fd, body, rest) != 1) {
            conn_abort(c, "ciphertext connection cut inside a frame");
            return;
        }
        c->cipher_in += FRAME_HEADER_BYTES + rest;
        enc_metrics_add(ENC_M_CIPHERTEXT_IN, FRAME_HEADER_BYTES + rest);
        if (h.type == FRAME_KEYS) {
            char ids[FRAME_MAX_KEYS][FRAME_KEY_ID_BYTES + 1];
            size_t n;
            if (frame_keys_decode(body, h.length, ids, &n, &why) != FRAME_OK || srx_keys(&rx, &h, n, &why) != SRX_OK) {
                malformed(c, why);
                return;
            }
            if (pad_in_announce(c->in, (const char(*)[FRAME_KEY_ID_BYTES + 1]) ids, n) < 0) {
                malformed(c, "too many keys announced");
                return;
            }
            continue;
        }
        if (!opened && h.type != FRAME_OPEN) {
            malformed(c, "the first sealed frame is not OPEN");
            return;
        }
        int rc = srx_open(&rx, hdr, &h, body, body + h.length, get_key, c, plain, &why);
        if (rc == SRX_BAD_TAG) {
            atomic_fetch_add(&c->rt->tag_failures, 1);
            log_warn("conn %llu: tag failure on a %s frame (seq %llu); closing both sides", (unsigned long long)c->id,
                     type_name(h.type), (unsigned long long)h.seq);
            conn_abort(c, "tag failure");
            return;
        }
        if (rc == SRX_NO_KEY) {
            char e[512];
            pad_in_error(c->in, e, sizeof e);
            if (!atomic_load(&c->aborted))
                log_warn("conn %llu: cannot fetch the announced pads: %s", (unsigned long long)c->id,
                         e[0] ? e : "stopped");
            conn_abort(c, "cannot fetch the announced pads");
            return;
        }
        if (rc != SRX_OK) {
            malformed(c, why);
            return;
        }
        if (!trusted) {
            pad_in_trust(c->in); /* the peer holds the pair's keys */
            trusted = 1;
        }
        pad_in_release_before(c->in, rx.cur);
        int was_opened = opened;
        if (deliver(c, &h, plain, &opened) < 0)
            return;
        if (opened && !was_opened)
            set_receive_timeout(fd, 0);
    }
}

void pump_receive(conn *c)
{
    unsigned char *body = malloc(FRAME_MAX_PAYLOAD + FRAME_TAG_BYTES), *plain = malloc(FRAME_MAX_PAYLOAD);
    if (body && plain)
        receive_loop(c, body, plain);
    else
        conn_abort(c, "out of memory");
    if (plain)
        OPENSSL_cleanse(plain, FRAME_MAX_PAYLOAD);
    if (body)
        OPENSSL_cleanse(body, FRAME_MAX_PAYLOAD + FRAME_TAG_BYTES);
    free(plain);
    free(body);
}

int pump_start_sender(conn *c)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, CONN_STACK);
    if (pthread_create(&c->sender, &a, pump_send, c) == 0)
        c->sender_started = 1;
    else
        conn_abort(c, "cannot start the sender");
    pthread_attr_destroy(&a);
    return c->sender_started ? 0 : -1;
}
