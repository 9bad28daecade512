/* The life of one connection and the set of live ones (conn.h): accept,
 * connect the other side, run the two pumps, close both sides and log the
 * byte counts. */
#include "encryptor/conn_state.h"
#include "encryptor/pump.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "encryptor/net.h"
#include "runtime/log.h"
#include "runtime/clock.h"

void conn_runtime_init(enc_runtime *rt, const enc_config *cfg, pad_pool *pool)
{
    memset(rt, 0, sizeof *rt);
    rt->cfg = cfg;
    rt->pool = pool;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&rt->lock, NULL);
    pthread_cond_init(&rt->idle, &ca);
    pthread_condattr_destroy(&ca);
}

void conn_runtime_free(enc_runtime *rt)
{
    pthread_cond_destroy(&rt->idle);
    pthread_mutex_destroy(&rt->lock);
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
    log_info("conn %llu closed%s%s: %s -> %s; plaintext in %llu out %llu bytes, ciphertext out %llu in %llu bytes, "
             "pads out %llu in %llu, pad waits %llu",
             (unsigned long long)c->id, aborted ? ": " : "", aborted ? c->reason : " cleanly", c->from, c->to,
             (unsigned long long)c->plain_in, (unsigned long long)c->plain_out, (unsigned long long)c->cipher_out,
             (unsigned long long)c->cipher_in, (unsigned long long)c->keys_out, (unsigned long long)keys_in,
             (unsigned long long)c->waits);
    free(c);
    pthread_mutex_lock(&rt->lock);
    rt->active--;
    pthread_cond_broadcast(&rt->idle);
    pthread_mutex_unlock(&rt->lock);
}

/* Users side: where the client meant to go (transparent) and the connection
 * to the peer encryptor. 0, or -1 (logged). */
static int users_side_setup(conn *c)
{
    const enc_config *cfg = c->rt->cfg;
    int fd = atomic_load(&c->plain_fd);
    if (cfg->transparent) {
        struct sockaddr_storage dst, local;
        socklen_t len = sizeof local;
        if (original_dst(fd, &dst) < 0) {
            log_warn("conn %llu refused: no original destination (%s); is the REDIRECT rule in place?",
                     (unsigned long long)c->id, strerror(errno));
            return -1;
        }
        if (getsockname(fd, (struct sockaddr *)&local, &len) == 0 && dest_equal(&dst, &local)) {
            log_warn("conn %llu refused: it was made to the encryptor itself, not redirected",
                     (unsigned long long)c->id);
            return -1;
        }
        if (dest_format((struct sockaddr *)&dst, c->dest, sizeof c->dest) < 0) {
            log_warn("conn %llu refused: unsupported original destination", (unsigned long long)c->id);
            return -1;
        }
    }
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
    if (cfg->role == ENC_ROLE_USERS && users_side_setup(c) < 0) {
        atomic_fetch_add(&c->rt->refused, 1);
        conn_abort(c, "refused");
        finish(c);
        return NULL;
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

int conn_start(enc_runtime *rt, int fd)
{
    net_tune(fd);
    pthread_mutex_lock(&rt->lock);
    if (rt->active >= (size_t)rt->cfg->max_connections) {
        pthread_mutex_unlock(&rt->lock);
        atomic_fetch_add(&rt->refused, 1);
        char peer[DEST_TEXT_MAX];
        net_peer_text(fd, peer, sizeof peer);
        log_warn("refused a connection from %s: %ld connections already", peer, rt->cfg->max_connections);
        close_fd(fd, 1);
        return -1;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        pthread_mutex_unlock(&rt->lock);
        close_fd(fd, 1);
        return -1;
    }
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
