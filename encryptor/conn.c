/* The life of one connection and the set of live ones (conn.h): admit,
 * wait for the first payload (users side), connect the other side, run the
 * two pumps, close both sides and log the byte counts. */
#include "encryptor/conn_state.h"
#include "encryptor/pump.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "encryptor/net.h"
#include <openssl/crypto.h>
#include "runtime/log.h"
#include "runtime/clock.h"

#define REFUSAL_LOG_INTERVAL 5 /* seconds between two lines about refusals of one reason */

int conn_runtime_init(enc_runtime *rt, const enc_config *cfg, pad_pool *pool)
{
    memset(rt, 0, sizeof *rt);
    rt->cfg = cfg;
    rt->pool = pool;
    if (!(rt->admission = admission_new(cfg)))
        return -1;
    for (int i = 0; i < ENC_REFUSED_COUNT; i++)
        rt->refusal_logged_at[i] = -REFUSAL_LOG_INTERVAL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&rt->lock, NULL);
    pthread_cond_init(&rt->idle, &ca);
    pthread_condattr_destroy(&ca);
    return 0;
}

void conn_runtime_free(enc_runtime *rt)
{
    admission_free(rt->admission);
    pthread_cond_destroy(&rt->idle);
    pthread_mutex_destroy(&rt->lock);
}

void conn_refused(enc_runtime *rt, enum enc_refusal reason, const char *fmt, ...)
{
    atomic_fetch_add(&rt->refused[reason], 1);
    int64_t now = clock_mono_seconds();
    pthread_mutex_lock(&rt->lock);
    uint64_t unlogged = rt->refusals_unlogged[reason];
    int log_now = now - rt->refusal_logged_at[reason] >= REFUSAL_LOG_INTERVAL;
    if (log_now) {
        rt->refusal_logged_at[reason] = now;
        rt->refusals_unlogged[reason] = 0;
    } else {
        rt->refusals_unlogged[reason]++;
    }
    pthread_mutex_unlock(&rt->lock);
    if (!log_now)
        return;
    char text[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (unlogged)
        log_warn("%s (%s; %llu more refused since the last line of this reason)", text, admission_reason_name(reason),
                 (unsigned long long)unlogged);
    else
        log_warn("%s (%s)", text, admission_reason_name(reason));
}

uint64_t conn_refused_total(enc_runtime *rt)
{
    uint64_t n = 0;
    for (int i = 0; i < ENC_REFUSED_COUNT; i++)
        n += atomic_load(&rt->refused[i]);
    return n;
}

void conn_abort_all(enc_runtime *rt, const char *reason)
{
    pthread_mutex_lock(&rt->lock);
    for (conn *c = rt->live; c; c = c->next)
        conn_abort(c, "%s", reason);
    pthread_mutex_unlock(&rt->lock);
}

int conn_wait_idle(enc_runtime *rt, long timeout_ms)
{
    struct timespec ts = clock_after_ms(CLOCK_MONOTONIC, timeout_ms);
    pthread_mutex_lock(&rt->lock);
    int rc = 0;
    while (rt->active && rc == 0)
        rc = pthread_cond_timedwait(&rt->idle, &rt->lock, &ts);
    int left = rt->active != 0;
    pthread_mutex_unlock(&rt->lock);
    return left ? -1 : 0;
}

/* Closes a socket; with reset, so the other end sees the abort (RST). */
static void close_fd(int fd, int reset)
{
    if (fd < 0)
        return;
    if (reset) {
        struct linger l = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    close(fd);
}

static void finish(conn *c)
{
    enc_runtime *rt = c->rt;
    int aborted = atomic_load(&c->aborted);
    if (c->sender_started)
        pthread_join(c->sender, NULL);
    uint64_t keys_in = c->in ? pad_in_fetched(c->in) : 0;
    pad_in_stop(c->in);
    pthread_mutex_lock(&rt->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        rt->live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&rt->lock);
    close_fd(atomic_load(&c->plain_fd), aborted);
    close_fd(atomic_load(&c->cipher_fd), aborted);
    if (c->no_payload)
        log_debug("conn %llu from %s closed before any payload: nothing sent, no key spent", (unsigned long long)c->id,
                  c->from);
    else
        log_info("conn %llu closed%s%s: %s -> %s; plaintext in %llu out %llu bytes, ciphertext out %llu in %llu bytes, "
                 "pads out %llu in %llu, pad waits %llu",
                 (unsigned long long)c->id, aborted ? ": " : "", aborted ? c->reason : " cleanly", c->from, c->to,
                 (unsigned long long)c->plain_in, (unsigned long long)c->plain_out, (unsigned long long)c->cipher_out,
                 (unsigned long long)c->cipher_in, (unsigned long long)c->keys_out, (unsigned long long)keys_in,
                 (unsigned long long)c->waits);
    source_addr src = c->source;
    free(c);
    /* This thread's OpenSSL state, freed before the stop can see the
     * connection gone and end the process. */
    OPENSSL_thread_stop();
    pthread_mutex_lock(&rt->lock);
    admission_leave(rt->admission, &src);
    rt->active--;
    pthread_cond_broadcast(&rt->idle);
    pthread_mutex_unlock(&rt->lock);
}

/* Users side, transparent: where the client meant to go. 0, or -1 (logged). */
static int original_destination(conn *c)
{
    const enc_config *cfg = c->rt->cfg;
    int fd = atomic_load(&c->plain_fd);
    if (!cfg->transparent)
        return 0;
    struct sockaddr_storage dst, local;
    socklen_t len = sizeof local;
    if (original_dst(fd, &dst) < 0) {
        log_warn("conn %llu refused: no original destination (%s); is the REDIRECT rule in place?",
                 (unsigned long long)c->id, strerror(errno));
        return -1;
    }
    if (getsockname(fd, (struct sockaddr *)&local, &len) == 0 && dest_equal(&dst, &local)) {
        log_warn("conn %llu refused: it was made to the encryptor itself, not redirected", (unsigned long long)c->id);
        return -1;
    }
    if (dest_format((struct sockaddr *)&dst, c->dest, sizeof c->dest) < 0) {
        log_warn("conn %llu refused: unsupported original destination", (unsigned long long)c->id);
        return -1;
    }
    return 0;
}

/* Users side: waits until the client has sent its first byte (left in the
 * socket for the sender). 1 when it has, 0 when it closed (or the
 * connection ended) first. */
static int first_payload(conn *c)
{
    unsigned char b;
    ssize_t n;
    do
        n = recv(atomic_load(&c->plain_fd), &b, 1, MSG_PEEK);
    while (n < 0 && errno == EINTR);
    return n == 1 && !atomic_load(&c->aborted);
}

/* Users side: the connection to the peer encryptor. 0, or -1 (logged). */
static int connect_peer(conn *c)
{
    const enc_config *cfg = c->rt->cfg;
    char err[300];
    int cfd = net_connect(&cfg->connect, cfg->connect_timeout_ms, err, sizeof err);
    if (cfd < 0) {
        log_warn("conn %llu refused: peer encryptor: %s", (unsigned long long)c->id, err);
        return -1;
    }
    atomic_store(&c->cipher_fd, cfd);
    snprintf(c->to, sizeof c->to, "%s:%s%s%s", cfg->connect.host, cfg->connect.port, c->dest[0] ? " for " : "",
             c->dest);
    return 0;
}

static void *conn_main(void *arg)
{
    conn *c = arg;
    const enc_config *cfg = c->rt->cfg;
    char err[300];
    if (cfg->role == ENC_ROLE_USERS) {
        /* Nothing is done for the client, and no key spent, before it sends a byte. */
        if (original_destination(c) < 0) {
            atomic_fetch_add(&c->rt->refused[ENC_REFUSED_SETUP], 1);
            conn_abort(c, "refused");
            finish(c);
            return NULL;
        }
        if (!first_payload(c)) {
            c->no_payload = !atomic_load(&c->aborted);
            if (c->no_payload)
                atomic_fetch_add(&c->rt->without_payload, 1);
            finish(c);
            return NULL;
        }
        if (connect_peer(c) < 0) {
            atomic_fetch_add(&c->rt->refused[ENC_REFUSED_SETUP], 1);
            conn_abort(c, "refused");
            finish(c);
            return NULL;
        }
    }
    if (!(c->in = pad_in_start(cfg, err, sizeof err))) {
        conn_abort(c, "cannot start the key fetcher: %s", err);
        finish(c);
        return NULL;
    }
    atomic_fetch_add(&c->rt->opened, 1);
    if (cfg->role == ENC_ROLE_USERS) {
        log_info("conn %llu opened: %s -> %s", (unsigned long long)c->id, c->from, c->to);
        pump_start_sender(c);
    }
    pump_receive(c);
    finish(c);
    return NULL;
}

/* Refuses fd before anything is done for it. */
static int refuse_at_accept(enc_runtime *rt, int fd, enum enc_refusal reason)
{
    char peer[DEST_TEXT_MAX + 8];
    net_peer_text(fd, peer, sizeof peer);
    const enc_config *cfg = rt->cfg;
    switch (reason) {
    case ENC_REFUSED_NOT_ALLOWED:
        conn_refused(rt, reason, "refused a connection from %s: not in the 'allow' networks", peer);
        break;
    case ENC_REFUSED_PER_SOURCE:
        conn_refused(rt, reason, "refused a connection from %s: %ld connections from that address already", peer,
                     cfg->max_connections_per_source);
        break;
    case ENC_REFUSED_RATE:
        conn_refused(rt, reason,
                     "refused a connection from %s: more than %ld new connections per second from that address", peer,
                     cfg->new_connections_per_second);
        break;
    default:
        conn_refused(rt, reason, "refused a connection from %s: %ld connections already", peer, cfg->max_connections);
        break;
    }
    close_fd(fd, 1);
    return -1;
}

int conn_start(enc_runtime *rt, int fd)
{
    net_tune(fd);
    source_addr src;
    if (source_of(fd, &src) < 0) {
        close_fd(fd, 1);
        return -1;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        close_fd(fd, 1);
        return -1;
    }
    enum enc_refusal reason;
    pthread_mutex_lock(&rt->lock);
    int admitted = 0;
    if (rt->active >= (size_t)rt->cfg->max_connections)
        reason = ENC_REFUSED_MAX_CONNECTIONS;
    else
        admitted = admission_enter(rt->admission, &src, clock_mono_ms(), &reason) == 0;
    if (!admitted) {
        pthread_mutex_unlock(&rt->lock);
        free(c);
        return refuse_at_accept(rt, fd, reason);
    }
    c->source = src;
    c->rt = rt;
    c->id = atomic_fetch_add(&rt->next_id, 1) + 1;
    atomic_init(&c->aborted, 0);
    int plain = rt->cfg->role == ENC_ROLE_USERS;
    atomic_init(&c->plain_fd, plain ? fd : -1);
    atomic_init(&c->cipher_fd, plain ? -1 : fd);
    net_peer_text(fd, c->from, sizeof c->from);
    snprintf(c->to, sizeof c->to, "?");
    c->next = rt->live;
    if (rt->live)
        rt->live->prev = c;
    rt->live = c;
    rt->active++;
    pthread_mutex_unlock(&rt->lock);

    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, CONN_STACK);
    pthread_t t;
    int rc = pthread_create(&t, &a, conn_main, c);
    pthread_attr_destroy(&a);
    if (rc != 0) {
        conn_abort(c, "cannot start a thread");
        finish(c);
        return -1;
    }
    return 0;
}
