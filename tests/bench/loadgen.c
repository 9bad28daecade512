/* loadgen: HTTPS load generator for the benchmarks (libcurl multi). Owns the
 * request loop over N kept-alive client-certificate connections, latency
 * recording and the one-line JSON result; response bodies (key material) are
 * cleansed after each request and a 200 body is never printed. */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>
#include <time.h>

#define MAX_CONNECTIONS 1024
#define MAX_THREADS 16
#define MAX_SECONDS 3600.0
#define MAX_SAMPLES (16u * 1024u * 1024u) /* latencies kept over all threads */
#define BODY_CAP (64 * 1024)              /* body bytes kept per connection */
#define ERR_SNIPPET 512
#define MAX_DATA (1024 * 1024)

typedef struct {
    const char *url, *cert, *key, *cacert, *resolve, *label;
    char *data;
    size_t data_len;
    long connections;
    long threads;
    double duration, warmup, timeout, max_time;
    long long requests; /* 0: run for duration */
    long long max_errors;
    int verbose;
} options;

typedef struct conn {
    CURL *easy;
    struct worker *w;
    uint64_t started; /* ns, CLOCK_MONOTONIC */
    int counted;      /* issued after warm-up in --requests mode */
    size_t used;      /* bytes kept in body */
    size_t received;  /* bytes of this response */
    char err[CURL_ERROR_SIZE];
    unsigned char body[BODY_CAP];
} conn;

typedef struct worker {
    long nconn;
    conn *conns;
    CURLM *multi;
    CURLSH *share;
    int epfd;      /* sockets libcurl asks us to watch */
    long timer_ms; /* libcurl's requested timeout, -1: none */
    struct curl_slist *headers;
    /* results */
    uint64_t *lat;
    size_t nlat, caplat;
    long attached; /* easy handles in the multi handle */
    long long ok, http_errors, transport_errors, connects;
    long long unmeasured_errors; /* failures during warm-up or after the window */
    long long ok_total;          /* 200 answers, in the window or not (all the keys handed out) */
    unsigned long long bytes_ok;
    uint64_t last_done;
    struct curl_slist *resolve;
} worker;

static options opt;
static uint64_t t_measure;  /* end of warm-up */
static uint64_t t_end;      /* end of issuing (duration mode) */
static uint64_t t_hard;     /* nothing runs past this */
static atomic_llong issued; /* requests issued after warm-up (--requests) */
static atomic_size_t samples;
static atomic_int stop_flag;
static volatile sig_atomic_t got_signal;
static atomic_int truncated;
static atomic_llong error_total; /* every failure, measured or not */
static atomic_int error_stop;
static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_error[ERR_SNIPPET + 128];
static int have_error;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t secs_to_ns(double s)
{
    return (uint64_t)(s * 1e9);
}

static void on_signal(int sig)
{
    got_signal = sig;
    atomic_store(&stop_flag, 1);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen --url URL [options]\n"
            "  --url URL            target (https://...)\n"
            "  --cert FILE          client certificate (PEM)\n"
            "  --key FILE           client private key (PEM)\n"
            "  --cacert FILE        CA bundle that signs the server certificate\n"
            "  --data BODY|@FILE    send a POST with this JSON body\n"
            "  --connections N      concurrent kept-alive connections (default 1, max %d)\n"
            "  --duration SECONDS   measured time (default 5)\n"
            "  --warmup SECONDS     unmeasured time before (default 1)\n"
            "  --requests N         measure N requests instead of a duration\n"
            "  --threads N          event loops, connections split among them (default 1)\n"
            "  --timeout SECONDS    per request (default 10)\n"
            "  --max-time SECONDS   hard bound on the whole run (default: derived)\n"
            "  --max-errors N       stop early after N failed requests (default 1000)\n"
            "  --resolve HOST:PORT:ADDR  pin a host name to an address\n"
            "  --label TEXT         copied into the JSON result\n"
            "  --verbose            libcurl verbose output on stderr\n"
            "Prints one JSON line on stdout and a summary on stderr. Exit status: 0 when\n"
            "every request got 200, 1 when any failed, 2 on bad usage or setup.\n",
            MAX_CONNECTIONS);
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return -1; /* also refuses NaN */
    *out = v;
    return 0;
}

static int parse_long(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int load_data(const char *arg)
{
    if (arg[0] != '@') {
        opt.data_len = strlen(arg);
        if (opt.data_len > MAX_DATA)
            return -1;
        opt.data = strdup(arg);
        return opt.data ? 0 : -1;
    }
    FILE *f = fopen(arg + 1, "rb");
    if (!f) {
        fprintf(stderr, "loadgen: %s: %s\n", arg + 1, strerror(errno));
        return -1;
    }
    opt.data = malloc(MAX_DATA + 1);
    size_t n = opt.data ? fread(opt.data, 1, MAX_DATA + 1, f) : 0;
    fclose(f);
    if (!opt.data || n > MAX_DATA)
        return -1;
    opt.data[n] = '\0';
    opt.data_len = n;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {{"url", required_argument, 0, 'u'},
                                             {"cert", required_argument, 0, 'c'},
                                             {"key", required_argument, 0, 'k'},
                                             {"cacert", required_argument, 0, 'a'},
                                             {"data", required_argument, 0, 'd'},
                                             {"connections", required_argument, 0, 'n'},
                                             {"duration", required_argument, 0, 't'},
                                             {"warmup", required_argument, 0, 'w'},
                                             {"requests", required_argument, 0, 'r'},
                                             {"threads", required_argument, 0, 'T'},
                                             {"timeout", required_argument, 0, 'o'},
                                             {"max-time", required_argument, 0, 'm'},
                                             {"resolve", required_argument, 0, 'R'},
                                             {"label", required_argument, 0, 'l'},
                                             {"max-errors", required_argument, 0, 'E'},
                                             {"verbose", no_argument, 0, 'v'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    long long v;
    int c;
    opt.connections = 1;
    opt.threads = 1;
    opt.duration = 5;
    opt.warmup = 1;
    opt.timeout = 10;
    opt.max_errors = 1000;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'u':
            opt.url = optarg;
            break;
        case 'c':
            opt.cert = optarg;
            break;
        case 'k':
            opt.key = optarg;
            break;
        case 'a':
            opt.cacert = optarg;
            break;
        case 'R':
            opt.resolve = optarg;
            break;
        case 'l':
            opt.label = optarg;
            break;
        case 'v':
            opt.verbose = 1;
            break;
        case 'd':
            if (load_data(optarg)) {
                fprintf(stderr, "loadgen: bad --data (max %d bytes)\n", MAX_DATA);
                return -1;
            }
            break;
        case 'n':
            if (parse_long(optarg, 1, MAX_CONNECTIONS, &v)) {
                fprintf(stderr, "loadgen: --connections 1..%d\n", MAX_CONNECTIONS);
                return -1;
            }
            opt.connections = (long)v;
            break;
        case 'T':
            if (parse_long(optarg, 1, MAX_THREADS, &v)) {
                fprintf(stderr, "loadgen: --threads 1..%d\n", MAX_THREADS);
                return -1;
            }
            opt.threads = (long)v;
            break;
        case 'E':
            if (parse_long(optarg, 1, 1000000000, &v)) {
                fprintf(stderr, "loadgen: --max-errors 1..1000000000\n");
                return -1;
            }
            opt.max_errors = v;
            break;
        case 'r':
            if (parse_long(optarg, 1, MAX_SAMPLES, &v)) {
                fprintf(stderr, "loadgen: --requests 1..%u\n", MAX_SAMPLES);
                return -1;
            }
            opt.requests = v;
            break;
        case 't':
            if (parse_double(optarg, 0.1, MAX_SECONDS, &opt.duration)) {
                fprintf(stderr, "loadgen: --duration 0.1..%.0f\n", MAX_SECONDS);
                return -1;
            }
            break;
        case 'w':
            if (parse_double(optarg, 0, MAX_SECONDS, &opt.warmup)) {
                fprintf(stderr, "loadgen: --warmup 0..%.0f\n", MAX_SECONDS);
                return -1;
            }
            break;
        case 'o':
            if (parse_double(optarg, 0.01, 600, &opt.timeout)) {
                fprintf(stderr, "loadgen: --timeout 0.01..600\n");
                return -1;
            }
            break;
        case 'm':
            if (parse_double(optarg, 0.1, 2 * MAX_SECONDS, &opt.max_time)) {
                fprintf(stderr, "loadgen: --max-time 0.1..%.0f\n", 2 * MAX_SECONDS);
                return -1;
            }
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc || !opt.url) {
        usage(stderr);
        return -1;
    }
    if (opt.threads > opt.connections)
        opt.threads = opt.connections;
    if (opt.max_time == 0)
        opt.max_time = opt.requests ? opt.warmup + 600 : opt.warmup + opt.duration + opt.timeout + 5;
    return 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    conn *c = userdata;
    size_t n = size * nmemb;
    size_t room = BODY_CAP - c->used;
    size_t take = n < room ? n : room;
    memcpy(c->body + c->used, ptr, take);
    c->used += take;
    c->received += n;
    return n;
}

/* The first failure, kept for the report: the status and a printable,
 * truncated copy of the (non-200, hence key-free) body. */
static void note_error(conn *c, long status, CURLcode rc)
{
    pthread_mutex_lock(&err_lock);
    if (!have_error) {
        have_error = 1;
        if (rc != CURLE_OK) {
            snprintf(first_error, sizeof first_error, "transport error: %s (%s)", curl_easy_strerror(rc),
                     c->err[0] ? c->err : "-");
        } else {
            int k = snprintf(first_error, sizeof first_error, "HTTP %ld: ", status);
            size_t n = c->used < ERR_SNIPPET ? c->used : ERR_SNIPPET;
            for (size_t i = 0; i < n && (size_t)k + 1 < sizeof first_error; i++) {
                unsigned char ch = c->body[i];
                first_error[k++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '.';
            }
            first_error[k] = '\0';
        }
    }
    pthread_mutex_unlock(&err_lock);
}

static void record(worker *w, uint64_t lat)
{
    if (w->nlat == w->caplat) {
        size_t cap = w->caplat ? w->caplat * 2 : 65536;
        uint64_t *p = realloc(w->lat, cap * sizeof *p);
        if (!p) { /* keep going without this sample: bounded memory */
            atomic_store(&truncated, 1);
            return;
        }
        w->lat = p;
        w->caplat = cap;
    }
    w->lat[w->nlat++] = lat;
    if (atomic_fetch_add(&samples, 1) + 1 >= MAX_SAMPLES) {
        atomic_store(&truncated, 1);
        atomic_store(&stop_flag, 1);
    }
}

/* Whether another request may start now, and whether it counts. */
static int may_issue(conn *c, uint64_t t)
{
    if (atomic_load(&stop_flag) || t >= t_hard)
        return 0;
    c->counted = 0;
    if (opt.requests) {
        if (t < t_measure)
            return 1;
        if (atomic_fetch_add(&issued, 1) >= opt.requests)
            return 0;
        c->counted = 1;
        return 1;
    }
    return t < t_end;
}

static int start(conn *c, uint64_t t)
{
    c->used = 0;
    c->received = 0;
    c->err[0] = '\0';
    c->started = t;
    if (curl_multi_add_handle(c->w->multi, c->easy) != CURLM_OK)
        return -1;
    c->w->attached++;
    return 0;
}

static void finish(worker *w, conn *c, CURLcode rc)
{
    uint64_t t = now_ns();
    long status = 0, nconn = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c->easy, CURLINFO_NUM_CONNECTS, &nconn);
    curl_multi_remove_handle(w->multi, c->easy);
    w->attached--;

    int in_window = opt.requests ? c->counted : (t >= t_measure && t <= t_end);
    if (in_window) {
        w->connects += nconn;
        if (rc == CURLE_OK && status == 200) {
            w->ok++;
            w->bytes_ok += c->received;
            record(w, t - c->started);
        } else {
            if (rc != CURLE_OK)
                w->transport_errors++;
            else
                w->http_errors++;
            record(w, t - c->started);
        }
        if (t > w->last_done)
            w->last_done = t;
    }
    if (rc == CURLE_OK && status == 200)
        w->ok_total++;
    if (rc != CURLE_OK || status != 200) {
        note_error(c, status, rc);
        if (!in_window)
            w->unmeasured_errors++;
        if (atomic_fetch_add(&error_total, 1) + 1 >= opt.max_errors) {
            atomic_store(&error_stop, 1);
            atomic_store(&stop_flag, 1);
        }
    }
    OPENSSL_cleanse(c->body, c->used);
    c->used = 0;

    if (may_issue(c, t)) {
        if (start(c, t))
            w->transport_errors++;
    }
}

/* libcurl tells which sockets to watch for what (multi_socket API): only the
 * sockets with events are serviced, whatever the number of connections. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    worker *w = userp;
    (void)easy;
    (void)socketp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL); /* may be closed already */
        return 0;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.data.fd = fd;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        ev.events |= EPOLLIN;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        ev.events |= EPOLLOUT;
    if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT)
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev);
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    worker *w = userp;
    (void)multi;
    w->timer_ms = timeout_ms;
    return 0;
}

static int setup_worker(worker *w)
{
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->timer_ms = -1;
    if (w->epfd < 0)
        return -1;
    w->multi = curl_multi_init();
    w->share = curl_share_init();
    if (!w->multi || !w->share)
        return -1;
    curl_share_setopt(w->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(w->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, w->nconn);
    curl_multi_setopt(w->multi, CURLMOPT_MAX_HOST_CONNECTIONS, w->nconn);
    curl_multi_setopt(w->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, w->nconn);
    curl_multi_setopt(w->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    if (opt.data) {
        w->headers = curl_slist_append(NULL, "Content-Type: application/json");
        w->headers = curl_slist_append(w->headers, "Expect:");
    } else {
        w->headers = curl_slist_append(NULL, "Accept: application/json");
    }
    if (!w->headers)
        return -1;
    w->conns = calloc((size_t)w->nconn, sizeof *w->conns);
    if (!w->conns)
        return -1;
    for (long i = 0; i < w->nconn; i++) {
        conn *c = &w->conns[i];
        c->w = w;
        c->easy = curl_easy_init();
        if (!c->easy)
            return -1;
        CURL *e = c->easy;
        curl_easy_setopt(e, CURLOPT_URL, opt.url);
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(e, CURLOPT_SHARE, w->share);
        curl_easy_setopt(e, CURLOPT_MAXCONNECTS, w->nconn);
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 0L);
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 0L);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_SESSIONID_CACHE, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http");
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(opt.timeout * 1000));
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(opt.timeout * 1000));
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, w->headers);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->err);
        curl_easy_setopt(e, CURLOPT_PRIVATE, c);
        if (opt.verbose)
            curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
        if (opt.cert)
            curl_easy_setopt(e, CURLOPT_SSLCERT, opt.cert);
        if (opt.key)
            curl_easy_setopt(e, CURLOPT_SSLKEY, opt.key);
        if (opt.cacert)
            curl_easy_setopt(e, CURLOPT_CAINFO, opt.cacert);
        if (opt.resolve) {
            if (!w->resolve)
                w->resolve = curl_slist_append(NULL, opt.resolve);
            if (!w->resolve)
                return -1;
            curl_easy_setopt(e, CURLOPT_RESOLVE, w->resolve);
        }
        if (opt.data) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, opt.data);
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)opt.data_len);
        }
    }
    return 0;
}

static void drain_done(worker *w)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(w->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        CURLcode rc = m->data.result;
        finish(w, (conn *)(void *)priv, rc);
    }
}

static void *run_worker(void *arg)
{
    worker *w = arg;
    uint64_t t = now_ns();
    int running;
    for (long i = 0; i < w->nconn; i++) {
        if (!may_issue(&w->conns[i], t))
            break;
        if (start(&w->conns[i], t)) {
            w->transport_errors++;
            break;
        }
    }
    struct epoll_event evs[64];
    while (w->attached > 0 && now_ns() < t_hard) {
        /* wake at least every 50 ms to notice the end of the run */
        int wait_ms = (w->timer_ms >= 0 && w->timer_ms < 50) ? (int)w->timer_ms : 50;
        int n = wait_ms == 0 ? 0 : epoll_wait(w->epfd, evs, 64, wait_ms);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "loadgen: epoll_wait: %s\n", strerror(errno));
            w->transport_errors++;
            break;
        }
        if (n <= 0) {
            w->timer_ms = -1;
            curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        for (int i = 0; i < n; i++) {
            int flags = 0;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                flags |= CURL_CSELECT_IN;
            if (evs[i].events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
            if (evs[i].events & EPOLLERR)
                flags |= CURL_CSELECT_ERR;
            curl_multi_socket_action(w->multi, evs[i].data.fd, flags, &running);
        }
        drain_done(w);
    }
    /* anything still attached ran out of time: not counted */
    for (long i = 0; i < w->nconn; i++)
        curl_multi_remove_handle(w->multi, w->conns[i].easy);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile (pct in whole percent) of sorted v, in ms. */
static double pct_ms(const uint64_t *v, size_t n, unsigned pct)
{
    if (!n)
        return 0;
    size_t rank = (n * pct + 99) / 100;
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)v[rank - 1] / 1e6;
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv))
        return 2;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "loadgen: curl_global_init failed\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    worker *ws = calloc((size_t)opt.threads, sizeof *ws);
    if (!ws)
        return 2;
    for (long i = 0; i < opt.threads; i++) {
        ws[i].nconn = opt.connections / opt.threads + (i < opt.connections % opt.threads ? 1 : 0);
        if (setup_worker(&ws[i])) {
            fprintf(stderr, "loadgen: cannot set up libcurl handles\n");
            return 2;
        }
    }

    uint64_t t0 = now_ns();
    t_measure = t0 + secs_to_ns(opt.warmup);
    t_end = opt.requests ? UINT64_MAX : t_measure + secs_to_ns(opt.duration);
    t_hard = t0 + secs_to_ns(opt.max_time);
    double cpu0 = cpu_seconds(); /* includes warm-up; reported as a share of wall time below */

    pthread_t th[MAX_THREADS];
    for (long i = 0; i < opt.threads; i++) {
        if (pthread_create(&th[i], NULL, run_worker, &ws[i])) {
            fprintf(stderr, "loadgen: pthread_create failed\n");
            return 2;
        }
    }
    for (long i = 0; i < opt.threads; i++)
        pthread_join(th[i], NULL);
    uint64_t t_fin = now_ns();
    double cpu = cpu_seconds() - cpu0;

    long long ok = 0, http_err = 0, tr_err = 0, connects = 0, unmeasured = 0, ok_total = 0;
    unsigned long long bytes = 0;
    uint64_t last = 0;
    size_t n = 0;
    for (long i = 0; i < opt.threads; i++) {
        ok += ws[i].ok;
        http_err += ws[i].http_errors;
        tr_err += ws[i].transport_errors;
        connects += ws[i].connects;
        unmeasured += ws[i].unmeasured_errors;
        ok_total += ws[i].ok_total;
        bytes += ws[i].bytes_ok;
        n += ws[i].nlat;
        if (ws[i].last_done > last)
            last = ws[i].last_done;
    }
    uint64_t *lat = malloc((n ? n : 1) * sizeof *lat);
    if (!lat)
        return 2;
    size_t k = 0;
    for (long i = 0; i < opt.threads; i++) {
        if (ws[i].nlat)
            memcpy(lat + k, ws[i].lat, ws[i].nlat * sizeof *lat);
        k += ws[i].nlat;
    }
    qsort(lat, n, sizeof *lat, cmp_u64);

    long long requests = ok + http_err + tr_err;
    int stopped = atomic_load(&error_stop);
    int interrupted = atomic_load(&stop_flag) && !atomic_load(&truncated) && !stopped;
    int timed_out = 0;
    double elapsed;
    if (opt.requests) {
        elapsed = last > t_measure ? (double)(last - t_measure) / 1e9 : 0;
        if (requests < opt.requests)
            timed_out = 1;
    } else {
        uint64_t stop = t_fin < t_end ? t_fin : t_end;
        elapsed = stop > t_measure ? (double)(stop - t_measure) / 1e9 : 0;
        if (t_fin < t_end && !interrupted && !stopped)
            timed_out = 1;
    }
    double rps = elapsed > 0 ? (double)requests / elapsed : 0;
    double p50 = pct_ms(lat, n, 50), p99 = pct_ms(lat, n, 99), pmax = n ? (double)lat[n - 1] / 1e6 : 0;
    double mean = 0;
    for (size_t i = 0; i < n; i++)
        mean += (double)lat[i];
    mean = n ? mean / (double)n / 1e6 : 0;
    unsigned long long bpr = ok ? (bytes + (unsigned long long)ok / 2) / (unsigned long long)ok : 0;
    double wall = (double)(t_fin - t0) / 1e9;
    double cpu_pct = wall > 0 ? 100.0 * cpu / wall : 0;
    long long errors = http_err + tr_err;

    printf("{");
    if (opt.label) {
        printf("\"label\":");
        json_string(stdout, opt.label);
        printf(",");
    }
    printf("\"connections\":%ld,\"threads\":%ld,\"requests\":%lld,\"duration_s\":%.3f,\"rps\":%.1f,"
           "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"mean_ms\":%.3f,\"errors\":%lld,"
           "\"http_errors\":%lld,\"transport_errors\":%lld,\"bytes_per_response\":%llu,"
           "\"unmeasured_errors\":%lld,\"ok_total\":%lld,\"new_connections\":%lld,\"loadgen_cpu_pct\":%.1f,"
           "\"complete\":%s,\"url\":",
           opt.connections, opt.threads, requests, elapsed, rps, p50, p99, pmax, mean, errors, http_err, tr_err, bpr,
           unmeasured, ok_total, connects, cpu_pct,
           (timed_out || interrupted || stopped || atomic_load(&truncated)) ? "false" : "true");
    json_string(stdout, opt.url);
    printf("}\n");
    fflush(stdout);

    fprintf(stderr,
            "loadgen: %s%s%ld conn: %lld requests in %.2f s = %.0f req/s; latency p50 %.3f ms, p99 %.3f ms, "
            "max %.3f ms; %lld errors; %llu B/response; %lld new connections; loadgen CPU %.0f%%%s%s%s%s\n",
            opt.label ? opt.label : "", opt.label ? ": " : "", opt.connections, requests, elapsed, rps, p50, p99, pmax,
            errors, bpr, connects, cpu_pct, timed_out ? " (ran out of time)" : "", interrupted ? " (interrupted)" : "",
            atomic_load(&truncated) ? " (sample limit reached)" : "", stopped ? " (stopped: too many errors)" : "");
    if (have_error)
        fprintf(stderr, "loadgen: first error: %s\n", first_error);

    for (long i = 0; i < opt.threads; i++) {
        for (long j = 0; j < ws[i].nconn; j++) {
            OPENSSL_cleanse(ws[i].conns[j].body, BODY_CAP);
            curl_easy_cleanup(ws[i].conns[j].easy);
        }
        curl_multi_cleanup(ws[i].multi);
        close(ws[i].epfd);
        curl_share_cleanup(ws[i].share);
        curl_slist_free_all(ws[i].headers);
        curl_slist_free_all(ws[i].resolve);
        free(ws[i].conns);
        free(ws[i].lat);
    }
    free(ws);
    free(lat);
    free(opt.data);
    curl_global_cleanup();

    if (got_signal) {
        /* die of the signal after reporting, so that a calling shell stops too */
        signal(got_signal, SIG_DFL);
        raise(got_signal);
    }
    if (requests == 0 || timed_out || interrupted)
        return 1;
    return (errors || have_error) ? 1 : 0;
}
