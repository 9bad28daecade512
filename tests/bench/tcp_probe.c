/* tcp_probe: the TCP ends of the encryptor benchmark, on loopback.
 *
 *   tcp_probe serve PORT                  the server: the first byte of each
 *                                         connection chooses sink ('S') or
 *                                         echo ('E')
 *   tcp_probe source PORT BYTES [--conns N] [--timeout S]
 *                                         pushes BYTES (split over N parallel
 *                                         connections) to the sink,
 *                                         half-closes, waits for each count;
 *                                         throughput
 *   tcp_probe ping PORT [--size B] [--count N] [--warmup N] [--timeout S]
 *                  [--rate R]             one connection to the echo: N
 *                                         messages of B bytes, each sent when
 *                                         the previous one is back whole (with
 *                                         --rate, also no sooner than 1/R s
 *                                         after the previous one was sent: a
 *                                         paced stream, like a call's
 *                                         packets); round-trip percentiles
 *
 * The sink discards what a connection sends; at its end it answers the
 * byte count (8 bytes, big-endian) and closes. The echo sends everything
 * back. One server serves both, so that one path (a relay pair in front of
 * it) carries both kinds of connection. serve listens on 127.0.0.1, prints
 * "ready" once listening and runs until killed. source and ping print one
 * line of JSON on stdout and exit 1 when a count or an echo is wrong, a
 * connection fails or the time runs out. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define IO_BYTES (256 * 1024)
#define MAX_CONNS 64
#define MAX_MESSAGE (1024 * 1024)
#define MAX_COUNT 10000000L

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int parse_port(const char *s)
{
    char *end;
    long p = strtol(s, &end, 10);
    return *end || p < 1 || p > 65535 ? -1 : (int)p;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* 1: n bytes read; 0: end of stream before any; -1: error or short. */
static int read_full(int fd, void *buf, size_t n)
{
    unsigned char *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return got ? -1 : 0;
        got += (size_t)r;
    }
    return 1;
}

static void set_timeout(int fd, double seconds)
{
    struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* A connection to 127.0.0.1:port, retried while refused for up to 5 s. */
static int connect_to(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    uint64_t end = now_ns() + 5000000000u;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            return fd;
        int e = errno;
        close(fd);
        if (e != ECONNREFUSED || now_ns() > end) {
            errno = e;
            return -1;
        }
        usleep(20000);
    }
}

/* ---- servers ------------------------------------------------------------------ */

static void sink_conn(int fd)
{
    unsigned char *buf = malloc(IO_BYTES);
    uint64_t total = 0;
    ssize_t r;
    while (buf && ((r = read(fd, buf, IO_BYTES)) > 0 || (r < 0 && errno == EINTR)))
        if (r > 0)
            total += (uint64_t)r;
    unsigned char be[8];
    for (int i = 0; i < 8; i++)
        be[i] = (unsigned char)(total >> (56 - 8 * i));
    if (buf)
        (void)write_all(fd, be, sizeof be);
    close(fd);
    free(buf);
}

static void echo_conn(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    unsigned char *buf = malloc(IO_BYTES);
    ssize_t r;
    while (buf && ((r = read(fd, buf, IO_BYTES)) > 0 || (r < 0 && errno == EINTR)))
        if (r > 0 && write_all(fd, buf, (size_t)r) < 0)
            break;
    close(fd);
    free(buf);
}

static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    unsigned char mode;
    if (read_full(fd, &mode, 1) != 1)
        close(fd);
    else if (mode == 'S')
        sink_conn(fd);
    else if (mode == 'E')
        echo_conn(fd);
    else
        close(fd);
    return NULL;
}

static int serve(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 128) < 0) {
        fprintf(stderr, "tcp_probe: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
                continue;
            fprintf(stderr, "tcp_probe: accept: %s\n", strerror(errno));
            return 1;
        }
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, serve_conn, (void *)(intptr_t)c) != 0)
            close(c);
        pthread_attr_destroy(&a);
    }
}

/* ---- source ------------------------------------------------------------------- */

typedef struct {
    int port;
    uint64_t bytes;
    double timeout;
    const unsigned char *data;
    uint64_t counted; /* what the sink says it got */
    uint64_t done_ns;
    char err[160];
} source_job;

static void *source_conn(void *arg)
{
    source_job *j = arg;
    int fd = connect_to(j->port);
    if (fd < 0) {
        snprintf(j->err, sizeof j->err, "connect: %s", strerror(errno));
        return NULL;
    }
    set_timeout(fd, j->timeout);
    uint64_t left = j->bytes;
    if (write_all(fd, "S", 1) < 0) {
        snprintf(j->err, sizeof j->err, "write: %s", strerror(errno));
        close(fd);
        return NULL;
    }
    while (left) {
        size_t n = left < IO_BYTES ? (size_t)left : IO_BYTES;
        if (write_all(fd, j->data, n) < 0) {
            snprintf(j->err, sizeof j->err, "write after %llu bytes: %s", (unsigned long long)(j->bytes - left),
                     strerror(errno));
            close(fd);
            return NULL;
        }
        left -= n;
    }
    shutdown(fd, SHUT_WR);
    unsigned char be[8];
    int r = read_full(fd, be, sizeof be);
    j->done_ns = now_ns();
    if (r != 1) {
        snprintf(j->err, sizeof j->err, "no byte count from the sink (%s)", r == 0 ? "closed" : strerror(errno));
    } else {
        for (int i = 0; i < 8; i++)
            j->counted = j->counted << 8 | be[i];
    }
    close(fd);
    return NULL;
}

static int run_source(int port, uint64_t bytes, long conns, double timeout)
{
    static source_job jobs[MAX_CONNS];
    pthread_t th[MAX_CONNS];
    unsigned char *data = malloc(IO_BYTES);
    if (!data)
        return 1;
    uint64_t x = 0x9e3779b97f4a7c15u; /* any bytes but zeros */
    for (size_t i = 0; i < IO_BYTES; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        data[i] = (unsigned char)x;
    }
    uint64_t t0 = now_ns();
    for (long i = 0; i < conns; i++) {
        jobs[i] = (source_job){.port = port,
                               .bytes = bytes / (uint64_t)conns + ((uint64_t)i < bytes % (uint64_t)conns),
                               .timeout = timeout,
                               .data = data};
        if (pthread_create(&th[i], NULL, source_conn, &jobs[i]) != 0) {
            fprintf(stderr, "tcp_probe: cannot start a thread\n");
            return 1;
        }
    }
    uint64_t counted = 0, last = t0;
    int ok = 1;
    for (long i = 0; i < conns; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].err[0]) {
            fprintf(stderr, "tcp_probe: connection %ld: %s\n", i, jobs[i].err);
            ok = 0;
        } else if (jobs[i].counted != jobs[i].bytes) {
            fprintf(stderr, "tcp_probe: connection %ld: the sink got %llu of %llu bytes\n", i,
                    (unsigned long long)jobs[i].counted, (unsigned long long)jobs[i].bytes);
            ok = 0;
        }
        counted += jobs[i].counted;
        if (jobs[i].done_ns > last)
            last = jobs[i].done_ns;
    }
    double s = (double)(last - t0) / 1e9;
    printf("{\"bytes\":%llu,\"received\":%llu,\"connections\":%ld,\"seconds\":%.4f,\"mb_s\":%.2f,\"ok\":%d}\n",
           (unsigned long long)bytes, (unsigned long long)counted, conns, s, s > 0 ? (double)counted / s / 1e6 : 0.0,
           ok);
    free(data);
    return ok ? 0 : 1;
}

/* ---- ping --------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double pct(const uint64_t *v, size_t n, double p)
{
    size_t i = (size_t)(p / 100.0 * (double)n);
    return (double)v[i < n ? i : n - 1] / 1e3;
}

static int run_ping(int port, size_t size, long count, long warmup, double timeout, double rate)
{
    uint64_t period = rate > 0 ? (uint64_t)(1e9 / rate) : 0, next = now_ns();
    unsigned char *msg = malloc(size), *back = malloc(size);
    uint64_t *rtt = calloc((size_t)count, sizeof *rtt);
    if (!msg || !back || !rtt)
        return 1;
    int fd = connect_to(port), one = 1;
    if (fd < 0) {
        fprintf(stderr, "tcp_probe: connect: %s\n", strerror(errno));
        return 1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_timeout(fd, timeout);
    if (write_all(fd, "E", 1) < 0) {
        fprintf(stderr, "tcp_probe: write: %s\n", strerror(errno));
        close(fd);
        return 1;
    }
    long bad = 0;
    double sum = 0;
    for (long i = -warmup; i < count; i++) {
        for (size_t k = 0; k < size; k++)
            msg[k] = (unsigned char)(i * 31 + (long)k);
        if (period) {
            uint64_t t = now_ns();
            if (next > t) {
                struct timespec ts = {(time_t)((next - t) / 1000000000u), (long)((next - t) % 1000000000u)};
                while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                    ;
            }
            next += period;
        }
        uint64_t t0 = now_ns();
        if (write_all(fd, msg, size) < 0 || read_full(fd, back, size) != 1) {
            fprintf(stderr, "tcp_probe: message %ld: %s\n", i, errno ? strerror(errno) : "connection closed");
            close(fd);
            return 1;
        }
        uint64_t t = now_ns() - t0;
        if (memcmp(msg, back, size) != 0)
            bad++;
        if (i >= 0) {
            rtt[i] = t;
            sum += (double)t;
        }
    }
    shutdown(fd, SHUT_WR);
    close(fd);
    qsort(rtt, (size_t)count, sizeof *rtt, cmp_u64);
    printf("{\"size\":%zu,\"count\":%ld,\"warmup\":%ld,\"rate\":%.1f,\"min_us\":%.1f,\"p50_us\":%.1f,\"p90_us\":%.1f,"
           "\"p99_us\":%.1f,\"max_us\":%.1f,\"mean_us\":%.1f,\"mismatches\":%ld}\n",
           size, count, warmup, rate, (double)rtt[0] / 1e3, pct(rtt, (size_t)count, 50), pct(rtt, (size_t)count, 90),
           pct(rtt, (size_t)count, 99), (double)rtt[count - 1] / 1e3, sum / (double)count / 1e3, bad);
    free(msg);
    free(back);
    free(rtt);
    return bad ? 1 : 0;
}

/* ---- main --------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: tcp_probe serve PORT\n"
               "       tcp_probe source PORT BYTES [--conns N] [--timeout S]\n"
               "       tcp_probe ping PORT [--size B] [--count N] [--warmup N] [--timeout S] [--rate R]\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"conns", required_argument, NULL, 'c'},   {"size", required_argument, NULL, 's'},
        {"count", required_argument, NULL, 'n'},   {"warmup", required_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 't'}, {"rate", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    long conns = 1, size = 1024, count = 2000, warmup = 100;
    double timeout = 60, rate = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'c':
            conns = strtol(optarg, &end, 10);
            if (*end || conns < 1 || conns > MAX_CONNS)
                return usage(stderr), 2;
            break;
        case 's':
            size = strtol(optarg, &end, 10);
            if (*end || size < 1 || size > MAX_MESSAGE)
                return usage(stderr), 2;
            break;
        case 'n':
            count = strtol(optarg, &end, 10);
            if (*end || count < 1 || count > MAX_COUNT)
                return usage(stderr), 2;
            break;
        case 'w':
            warmup = strtol(optarg, &end, 10);
            if (*end || warmup < 0 || warmup > MAX_COUNT)
                return usage(stderr), 2;
            break;
        case 't':
            timeout = strtod(optarg, &end);
            if (*end || timeout <= 0 || timeout > 3600)
                return usage(stderr), 2;
            break;
        case 'r':
            rate = strtod(optarg, &end);
            if (*end || rate < 0 || rate > 1e6)
                return usage(stderr), 2;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    int rest = argc - optind;
    const char *cmd = rest > 0 ? argv[optind] : "";
    int port = rest > 1 ? parse_port(argv[optind + 1]) : -1;
    if (port < 0) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(cmd, "serve") && rest == 2)
        return serve(port);
    if (!strcmp(cmd, "ping") && rest == 2)
        return run_ping(port, (size_t)size, count, warmup, timeout, rate);
    if (!strcmp(cmd, "source") && rest == 3) {
        char *end;
        unsigned long long bytes = strtoull(argv[optind + 2], &end, 10);
        if (*end || bytes < (unsigned long long)conns)
            return usage(stderr), 2;
        return run_source(port, bytes, conns, timeout);
    }
    usage(stderr);
    return 2;
}
