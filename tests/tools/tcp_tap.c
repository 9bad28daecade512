/* tcp_tap: a wire on loopback for the test suites: between two encryptors
 * (the encryptor suite) or two KMEs (the mesh suite), and the analysis of what
 * crossed it.
 *
 *   tcp_tap forward LISTEN_PORT TARGET_PORT DIR
 *       Accepts connections on 127.0.0.1:LISTEN_PORT and forwards each to
 *       127.0.0.1:TARGET_PORT, both ways (a half-close is passed on), writing
 *       what it forwards to DIR/N.up (client to target) and DIR/N.down
 *       (target to client), N counting connections from 1; DIR "-" records
 *       nothing. It follows the encryptor frames of each direction
 *       (encryptor/frame.h); SIGUSR1 arms one flip: the middle body byte of
 *       the next DATA frame sent client to target is XORed with 0x01 and a
 *       line "flipped conn N at byte B (DATA seq S)" is printed. SIGUSR2
 *       holds every connection open at that moment: what its client sends
 *       is read and kept, not passed on (nor anything back), until the
 *       next SIGUSR2 passes it on, a half-close after it; connections
 *       opened meanwhile flow as usual. Each SIGUSR2 prints "held N" or
 *       "released N" (connections). Prints "ready" once it listens.
 *       SIGTERM or SIGINT ends it at once, closing every connection: to the
 *       two ends this looks like the network between them failing.
 *   tcp_tap frames CAPTURE [BODIES]
 *       Parses a capture as a sequence of frames; prints
 *       "frames F keys K open O data D fin X body_bytes B partial P" and
 *       writes the DATA bodies, concatenated, to BODIES. Exits 1 when
 *       something in it is not a frame.
 *   tcp_tap chi2 FILE
 *       Prints the chi-square statistic of FILE's byte frequencies against
 *       a uniform distribution (255 degrees of freedom) and its size.
 *   tcp_tap windows SOURCE WIDTH FILE...
 *       Prints "found X of Y": how many of SOURCE's WIDTH-byte windows (at
 *       every offset; identical windows count once) occur anywhere in the
 *       FILEs.
 *   tcp_tap count HEX FILE...
 *       Prints how many times the byte string HEX occurs in the FILEs.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PAIRS 256
#define BUF_BYTES 65536
#define HDR_BYTES 28
#define TAG_BYTES 16
#define MAX_BODY 16384
#define TYPE_KEYS 1
#define TYPE_DATA 3

/* ---- frame following --------------------------------------------------------- */

typedef struct {
    unsigned char hdr[HDR_BYTES];
    size_t hdr_have;
    uint8_t type;
    uint32_t length; /* body bytes of the current frame */
    uint64_t seq;
    size_t rest;     /* body and tag bytes of the current frame still to come */
    size_t body_pos; /* body bytes of the current frame seen so far */
    uint64_t at;     /* stream offset of the byte being looked at */
    int broken;      /* not a frame stream */
} follower;

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const unsigned char *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* A header is plausible when the magic, type and length are. */
static int header_take(follower *f)
{
    if (memcmp(f->hdr, "QKE\x01", 4) != 0 || f->hdr[4] < 1 || f->hdr[4] > 4 || be32(f->hdr + 24) > MAX_BODY)
        return -1;
    f->type = f->hdr[4];
    f->seq = be64(f->hdr + 8);
    f->length = be32(f->hdr + 24);
    f->rest = f->length + (f->type == TYPE_KEYS ? 0 : TAG_BYTES);
    f->body_pos = 0;
    f->hdr_have = 0;
    return 0;
}

/* Callback for each body byte: returns the byte to pass on. */
typedef unsigned char (*body_fn)(void *arg, follower *f, unsigned char byte);

/* Frames seen by follow(), by type, and their DATA body bytes. */
typedef struct {
    uint64_t frames, keys, open, data, fin, body_bytes;
} frame_stats;

/* Follows buf through the frame structure, calling on_body for every body
 * byte (not tags); on_body may change it. Counts into the optional stats. */
static void follow(follower *f, unsigned char *buf, size_t len, body_fn on_body, void *arg, frame_stats *st)
{
    size_t i = 0;
    while (i < len && !f->broken) {
        if (f->rest == 0 && f->hdr_have < HDR_BYTES) {
            size_t n = HDR_BYTES - f->hdr_have;
            if (n > len - i)
                n = len - i;
            memcpy(f->hdr + f->hdr_have, buf + i, n);
            f->hdr_have += n;
            f->at += n;
            i += n;
            if (f->hdr_have == HDR_BYTES) {
                if (header_take(f) < 0) {
                    f->broken = 1;
                    return;
                }
                if (st) {
                    st->frames++;
                    st->keys += f->type == 1;
                    st->open += f->type == 2;
                    st->data += f->type == 3;
                    st->fin += f->type == 4;
                }
            }
            continue;
        }
        size_t n = f->rest < len - i ? f->rest : len - i;
        uint64_t start = f->at;
        for (size_t k = 0; k < n; k++) {
            if (f->body_pos < f->length) {
                f->at = start + k;
                if (on_body)
                    buf[i + k] = on_body(arg, f, buf[i + k]);
                if (st && f->type == TYPE_DATA)
                    st->body_bytes++;
            }
            f->body_pos++;
        }
        f->rest -= n;
        f->at = start + n;
        i += n;
    }
}

/* ---- forward ------------------------------------------------------------------- */

typedef struct {
    int src, dst, file;
    unsigned char buf[BUF_BYTES];
    size_t len, off;
    int eof, done;
    follower fol;
} direction;

typedef struct {
    int used;
    unsigned id;
    int held;         /* SIGUSR2: nothing passes until released */
    direction dir[2]; /* 0: client to target (up), 1: target to client (down) */
} conn_pair;

static conn_pair pairs[MAX_PAIRS];
static volatile sig_atomic_t stop_requested, flip_requested, hold_toggled;
static unsigned next_id;

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        flip_requested = 1;
    else if (sig == SIGUSR2)
        hold_toggled = 1;
    else
        stop_requested = 1;
}

static int parse_port(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < 1 || v > 65535)
        return -1;
    return (int)v;
}

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static void pair_close(conn_pair *p)
{
    close(p->dir[0].src);
    close(p->dir[0].dst);
    for (int d = 0; d < 2; d++)
        if (p->dir[d].file >= 0)
            close(p->dir[d].file);
    p->used = 0;
}

static int open_record(const char *dir, unsigned id, const char *what)
{
    if (strcmp(dir, "-") == 0)
        return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/%u.%s", dir, id, what);
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

static void pair_open(int client, int target_port, const char *dir)
{
    struct sockaddr_in to = loopback(target_port);
    int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (t < 0 || connect(t, (struct sockaddr *)&to, sizeof to) < 0) {
        if (t >= 0)
            close(t);
        close(client);
        return;
    }
    int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(t, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (size_t i = 0; i < MAX_PAIRS; i++) {
        conn_pair *p = &pairs[i];
        if (p->used)
            continue;
        memset(p, 0, sizeof *p);
        p->used = 1;
        p->id = ++next_id;
        p->dir[0].src = client;
        p->dir[0].dst = t;
        p->dir[0].file = open_record(dir, p->id, "up");
        p->dir[1].src = t;
        p->dir[1].dst = client;
        p->dir[1].file = open_record(dir, p->id, "down");
        return;
    }
    close(t);
    close(client);
}

static unsigned char flip_body(void *arg, follower *f, unsigned char byte)
{
    conn_pair *p = arg;
    if (flip_requested && f->type == TYPE_DATA && f->body_pos == f->length / 2) {
        flip_requested = 0;
        printf("flipped conn %u at byte %llu (DATA seq %llu)\n", p->id, (unsigned long long)f->at,
               (unsigned long long)f->seq);
        fflush(stdout);
        return byte ^ 0x01;
    }
    return byte;
}

static int pump(conn_pair *p, int which, short src_events, short dst_events)
{
    direction *d = &p->dir[which];
    if (d->len == 0 && !d->eof && (src_events & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = recv(d->src, d->buf, sizeof d->buf, MSG_DONTWAIT);
        if (n < 0 && errno != EINTR && errno != EAGAIN && p->held)
            n = 0; /* the client gave up: what was read still goes on once released */
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            return -1;
        if (n == 0)
            d->eof = 1;
        if (n > 0) {
            d->len = (size_t)n;
            d->off = 0;
            follow(&d->fol, d->buf, d->len, which == 0 ? flip_body : NULL, p, NULL);
            if (d->file >= 0 && write(d->file, d->buf, d->len) != (ssize_t)d->len)
                fprintf(stderr, "tcp_tap: cannot record: %s\n", strerror(errno));
        }
    }
    if (d->len > 0 && !p->held && (dst_events & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t n = send(d->dst, d->buf + d->off, d->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            return -1;
        if (n > 0) {
            d->off += (size_t)n;
            d->len -= (size_t)n;
        }
    }
    if (d->eof && d->len == 0 && !d->done && !p->held) {
        shutdown(d->dst, SHUT_WR);
        d->done = 1;
    }
    return 0;
}

static int cmd_forward(int argc, char **argv)
{
    int listen_port = argc == 3 ? parse_port(argv[0]) : -1;
    int target_port = argc == 3 ? parse_port(argv[1]) : -1;
    if (listen_port < 0 || target_port < 0) {
        fprintf(stderr, "usage: tcp_tap forward LISTEN_PORT TARGET_PORT DIR\n");
        return 2;
    }
    const char *dir = argv[2];
    sigset_t blocked, during_wait;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGUSR1);
    sigaddset(&blocked, SIGUSR2);
    sigprocmask(SIG_BLOCK, &blocked, &during_wait);
    sigdelset(&during_wait, SIGTERM);
    sigdelset(&during_wait, SIGINT);
    sigdelset(&during_wait, SIGUSR1);
    sigdelset(&during_wait, SIGUSR2);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in at = loopback(listen_port);
    if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(ls, (struct sockaddr *)&at, sizeof at) < 0 || listen(ls, 64) < 0) {
        fprintf(stderr, "tcp_tap: cannot listen on 127.0.0.1:%d: %s\n", listen_port, strerror(errno));
        if (ls >= 0)
            close(ls);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);

    static struct pollfd fds[1 + 4 * MAX_PAIRS];
    static int owner[1 + 4 * MAX_PAIRS];
    int holding = 0;
    while (!stop_requested) {
        if (hold_toggled) {
            hold_toggled = 0;
            holding = !holding;
            int count = 0;
            for (int i = 0; i < MAX_PAIRS; i++)
                if (pairs[i].used && pairs[i].held != holding) {
                    pairs[i].held = holding;
                    count++;
                }
            printf("%s %d\n", holding ? "held" : "released", count);
            fflush(stdout);
        }
        size_t n = 0;
        fds[n].fd = ls;
        fds[n].events = POLLIN;
        owner[n++] = -1;
        for (int i = 0; i < MAX_PAIRS; i++) {
            if (!pairs[i].used)
                continue;
            for (int d = 0; d < 2; d++) {
                direction *dr = &pairs[i].dir[d];
                int held = pairs[i].held;
                fds[n].fd = held && d == 1 ? -1 : dr->src;
                fds[n].events = dr->len == 0 && !dr->eof ? POLLIN : 0;
                owner[n++] = i;
                fds[n].fd = held ? -1 : dr->dst;
                fds[n].events = dr->len > 0 ? POLLOUT : 0;
                owner[n++] = i;
            }
        }
        int rc = ppoll(fds, n, NULL, &during_wait);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "tcp_tap: poll: %s\n", strerror(errno));
            break;
        }
        for (size_t j = 1; j < n; j += 4) {
            conn_pair *p = &pairs[owner[j]];
            if (pump(p, 0, fds[j].revents, fds[j + 1].revents) < 0 ||
                pump(p, 1, fds[j + 2].revents, fds[j + 3].revents) < 0 || (p->dir[0].done && p->dir[1].done))
                pair_close(p);
        }
        if (fds[0].revents & POLLIN) {
            int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0)
                pair_open(c, target_port, dir);
        }
    }
    for (int i = 0; i < MAX_PAIRS; i++)
        if (pairs[i].used)
            pair_close(&pairs[i]);
    close(ls);
    return 0;
}

/* ---- analysis ------------------------------------------------------------------ */

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "tcp_tap: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    for (;;) {
        if (!b)
            break;
        if (n == cap) {
            unsigned char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    if (!b)
        fprintf(stderr, "tcp_tap: out of memory\n");
    *len = n;
    return b;
}

typedef struct {
    FILE *out;
} bodies_ctx;

static unsigned char keep_body(void *arg, follower *f, unsigned char byte)
{
    bodies_ctx *c = arg;
    if (c->out && f->type == TYPE_DATA)
        fputc(byte, c->out);
    return byte;
}

static int cmd_frames(int argc, char **argv)
{
    if (argc < 1 || argc > 2) {
        fprintf(stderr, "usage: tcp_tap frames CAPTURE [BODIES]\n");
        return 2;
    }
    size_t len;
    unsigned char *b = slurp(argv[0], &len);
    if (!b)
        return 2;
    bodies_ctx c = {argc == 2 ? fopen(argv[1], "wb") : NULL};
    if (argc == 2 && !c.out) {
        fprintf(stderr, "tcp_tap: %s: %s\n", argv[1], strerror(errno));
        free(b);
        return 2;
    }
    follower f;
    memset(&f, 0, sizeof f);
    frame_stats st;
    memset(&st, 0, sizeof st);
    follow(&f, b, len, keep_body, &c, &st);
    if (c.out)
        fclose(c.out);
    free(b);
    int partial = !f.broken && (f.rest != 0 || f.hdr_have != 0);
    printf("frames %llu keys %llu open %llu data %llu fin %llu body_bytes %llu partial %d\n",
           (unsigned long long)st.frames, (unsigned long long)st.keys, (unsigned long long)st.open,
           (unsigned long long)st.data, (unsigned long long)st.fin, (unsigned long long)st.body_bytes, partial);
    if (f.broken) {
        printf("not a frame after %llu frames\n", (unsigned long long)st.frames);
        return 1;
    }
    return 0;
}

static int cmd_chi2(int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "usage: tcp_tap chi2 FILE\n");
        return 2;
    }
    size_t len;
    unsigned char *b = slurp(argv[0], &len);
    if (!b)
        return 2;
    double count[256] = {0};
    for (size_t i = 0; i < len; i++)
        count[b[i]]++;
    free(b);
    double expect = (double)len / 256.0, chi = 0;
    for (int i = 0; i < 256 && len; i++)
        chi += (count[i] - expect) * (count[i] - expect) / expect;
    printf("%.0f %zu\n", chi, len);
    return 0;
}

static uint64_t window_hash(const unsigned char *p, size_t w)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < w; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h ^ (h >> 29);
}

static int cmd_windows(int argc, char **argv)
{
    char *end;
    long w = argc >= 3 ? strtol(argv[1], &end, 10) : 0;
    if (argc < 3 || *end || w < 4 || w > 4096) {
        fprintf(stderr, "usage: tcp_tap windows SOURCE WIDTH FILE...\n");
        return 2;
    }
    size_t slen;
    unsigned char *src = slurp(argv[0], &slen);
    if (!src)
        return 2;
    size_t nwin = slen >= (size_t)w ? slen - (size_t)w + 1 : 0;
    size_t cap = 1;
    while (cap < nwin * 2 + 2)
        cap <<= 1;
    /* Open addressing: slot holds window index + 1 (identical windows once). */
    uint32_t *slot = calloc(cap, sizeof *slot);
    unsigned char *found = calloc(nwin + 1, 1);
    if (!slot || !found) {
        fprintf(stderr, "tcp_tap: out of memory\n");
        return 2;
    }
    size_t distinct = 0;
    for (size_t i = 0; i < nwin; i++) {
        size_t s = window_hash(src + i, (size_t)w) & (cap - 1);
        int dup = 0;
        while (slot[s]) {
            if (memcmp(src + slot[s] - 1, src + i, (size_t)w) == 0) {
                dup = 1;
                break;
            }
            s = (s + 1) & (cap - 1);
        }
        if (!dup) {
            slot[s] = (uint32_t)(i + 1);
            distinct++;
        }
    }
    size_t hits = 0;
    for (int a = 2; a < argc; a++) {
        size_t clen;
        unsigned char *cap_b = slurp(argv[a], &clen);
        if (!cap_b)
            return 2;
        for (size_t i = 0; i + (size_t)w <= clen; i++) {
            size_t s = window_hash(cap_b + i, (size_t)w) & (cap - 1);
            while (slot[s]) {
                uint32_t k = slot[s] - 1;
                if (memcmp(src + k, cap_b + i, (size_t)w) == 0) {
                    if (!found[k]) {
                        found[k] = 1;
                        hits++;
                    }
                    break;
                }
                s = (s + 1) & (cap - 1);
            }
        }
        free(cap_b);
    }
    printf("found %zu of %zu\n", hits, distinct);
    free(slot);
    free(found);
    free(src);
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int cmd_count(int argc, char **argv)
{
    size_t hl = argc >= 2 ? strlen(argv[0]) : 0;
    if (argc < 2 || hl == 0 || hl % 2 || hl > 512) {
        fprintf(stderr, "usage: tcp_tap count HEX FILE...\n");
        return 2;
    }
    unsigned char needle[256];
    size_t nl = hl / 2;
    for (size_t i = 0; i < nl; i++) {
        int hi = hexval(argv[0][2 * i]), lo = hexval(argv[0][2 * i + 1]);
        if (hi < 0 || lo < 0) {
            fprintf(stderr, "tcp_tap: not hex: %s\n", argv[0]);
            return 2;
        }
        needle[i] = (unsigned char)(hi << 4 | lo);
    }
    size_t total = 0;
    for (int a = 1; a < argc; a++) {
        size_t len;
        unsigned char *b = slurp(argv[a], &len);
        if (!b)
            return 2;
        for (size_t i = 0; i + nl <= len; i++)
            total += memcmp(b + i, needle, nl) == 0;
        free(b);
    }
    printf("%zu\n", total);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "forward") == 0)
        return cmd_forward(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "frames") == 0)
        return cmd_frames(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "chi2") == 0)
        return cmd_chi2(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "windows") == 0)
        return cmd_windows(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "count") == 0)
        return cmd_count(argc - 2, argv + 2);
    fprintf(stderr, "usage: tcp_tap forward|frames|chi2|windows|count ... (see the source)\n");
    return 2;
}
