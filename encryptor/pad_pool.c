/* The sender's pad pool: background GET_KEY fetcher between watermarks,
 * ageing, and the waits of connections that find it empty (pad_pool.h). */
#include "encryptor/pad_pool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "runtime/clock.h"
#include "runtime/log.h"
#include "sae-client/sae_client.h"

#define WAIT_LOG_INTERVAL 5 /* seconds between two "waiting for pads" lines */
#define FAIL_LOG_INTERVAL 5
#define RETRY_MS 1000

struct pad_pool {
    pthread_mutex_t lock;
    pthread_cond_t more; /* keys arrived, or stopping */
    pthread_cond_t need; /* the fetcher should look again */
    pthread_t thread;
    int started;
    int stopping;
    int filling;    /* below low watermark until high is reached */
    size_t waiters; /* takers waiting for keys */
    pad_key *q;     /* ring buffer of pooled keys */
    size_t cap, head, count, bytes;
    pad_pool_stats st;
    int64_t last_wait_log, last_fail_log;
    uint64_t waits_logged;
    /* fixed at start */
    char peer_sae[ETSI_ID_MAX + 1];
    long key_bits, batch, low, high, max_age;
    pad_fetch_fn fetch;
    void *fetch_arg;
    sae_client *client; /* the fetcher's own, when fetching from a KME */
    atomic_int kme_answered;
};

static int fetch_from_kme(void *arg, long number, long bits, etsi_key_container *out, char *err, size_t errlen)
{
    pad_pool *p = arg;
    etsi_key_request req = {.number = number, .size = bits};
    sae_result res;
    int rc = sae_client_get_key(p->client, p->peer_sae, &req, 0, out, &res);
    atomic_store(&p->kme_answered, rc == 0 || res.error != SAE_ERR_TRANSPORT);
    if (rc == 0)
        return 0;
    if (res.error == SAE_ERR_TRANSPORT)
        snprintf(err, errlen, "%s", res.transport);
    else
        snprintf(err, errlen, "HTTP %ld: %s%s%s", res.http_status, res.problem.message,
                 res.problem.detail[0] ? ": " : "", res.problem.detail);
    return -1;
}

static void timed_wait(pthread_cond_t *c, pthread_mutex_t *m, long ms)
{
    struct timespec ts = clock_after_ms(CLOCK_MONOTONIC, ms);
    pthread_cond_timedwait(c, m, &ts);
}

/* Locked. Cleanses and drops keys older than max_age. */
static void drop_aged(pad_pool *p)
{
    int64_t now = clock_mono_seconds();
    size_t dropped = 0;
    while (p->count && now - (int64_t)p->q[p->head].fetched > p->max_age) {
        p->bytes -= p->q[p->head].len;
        pad_key_clear(&p->q[p->head]);
        p->head = (p->head + 1) % p->cap;
        p->count--;
        dropped++;
    }
    if (dropped) {
        p->st.keys_dropped += dropped;
        log_info("dropped %zu pads pooled longer than %ld s", dropped, p->max_age);
    }
}

/* Locked. Adds the fetched keys that pass the checks; returns how many. */
static size_t add_keys(pad_pool *p, etsi_key_container *kc)
{
    size_t added = 0, want = (size_t)p->key_bits / 8;
    int64_t now = clock_mono_seconds();
    for (size_t i = 0; i < kc->count; i++) {
        etsi_key *k = &kc->keys[i];
        if (k->key_len != want || !uuid_is_valid(k->key_id) || p->count == p->cap) {
            log_warn("discarded a key of %zu bytes from the KME (expected %zu)", k->key_len, want);
            continue;
        }
        pad_key *slot = &p->q[(p->head + p->count) % p->cap];
        uuid_normalise(k->key_id, slot->id);
        slot->bytes = k->key; /* ownership moves; the container no longer cleanses it */
        slot->len = k->key_len;
        slot->fetched = (time_t)now;
        k->key = NULL;
        k->key_len = 0;
        p->count++;
        p->bytes += slot->len;
        added++;
    }
    return added;
}

static void *fetcher_main(void *arg)
{
    pad_pool *p = arg;
    size_t key_bytes = (size_t)p->key_bits / 8;
    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        drop_aged(p);
        if (p->bytes < (size_t)p->low || p->waiters)
            p->filling = 1;
        if (!p->filling || p->bytes >= (size_t)p->high) {
            p->filling = 0;
            timed_wait(&p->need, &p->lock, 1000);
            continue;
        }
        size_t missing = ((size_t)p->high - p->bytes + key_bytes - 1) / key_bytes;
        size_t room = p->cap - p->count;
        long number = (long)(missing < (size_t)p->batch ? missing : (size_t)p->batch);
        if ((size_t)number > room)
            number = (long)room;
        if (number < 1) {
            p->filling = 0;
            continue;
        }
        pthread_mutex_unlock(&p->lock);
        etsi_key_container kc = {0};
        char err[512];
        int rc = p->fetch(p->fetch_arg, number, p->key_bits, &kc, err, sizeof err);
        pthread_mutex_lock(&p->lock);
        if (rc == 0) {
            atomic_store(&p->kme_answered, 1);
            size_t added = add_keys(p, &kc);
            p->st.keys_fetched += added;
            p->st.bytes_fetched += added * key_bytes;
            log_debug("fetched %zu pads of %ld bits for %s; pool %zu keys, %zu bytes", added, p->key_bits, p->peer_sae,
                      p->count, p->bytes);
            pthread_cond_broadcast(&p->more);
        } else {
            p->st.fetch_failures++;
            int64_t now = clock_mono_seconds();
            if (now - p->last_fail_log >= FAIL_LOG_INTERVAL) {
                p->last_fail_log = now;
                log_warn("cannot fetch pads for %s from the KME: %s (%llu failures so far)", p->peer_sae, err,
                         (unsigned long long)p->st.fetch_failures);
            }
            if (!p->stopping)
                timed_wait(&p->need, &p->lock, RETRY_MS);
        }
        etsi_key_container_clear(&kc);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

pad_pool *pad_pool_start_with(const enc_config *cfg, pad_fetch_fn fetch, void *arg, char *err, size_t errlen)
{
    pad_pool *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(p->peer_sae, sizeof p->peer_sae, "%s", cfg->peer_sae);
    p->key_bits = cfg->pad_key_bits;
    p->batch = cfg->pad_batch_keys;
    p->low = cfg->low_watermark_bytes;
    p->high = cfg->high_watermark_bytes;
    p->max_age = cfg->pad_max_age_seconds;
    p->fetch = fetch ? fetch : fetch_from_kme;
    p->fetch_arg = fetch ? arg : p;
    p->cap = (size_t)(cfg->high_watermark_bytes / (cfg->pad_key_bits / 8)) + (size_t)cfg->pad_batch_keys + 1;
    p->q = calloc(p->cap, sizeof *p->q);
    p->last_wait_log = p->last_fail_log = -WAIT_LOG_INTERVAL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->more, &ca);
    pthread_cond_init(&p->need, &ca);
    pthread_condattr_destroy(&ca);
    if (!p->q) {
        snprintf(err, errlen, "out of memory");
        pad_pool_stop(p);
        return NULL;
    }
    if (!fetch) {
        sae_client_config sc = {.kme_url = cfg->kme_url,
                                .cert = cfg->kme_cert,
                                .key = cfg->kme_key[0] ? cfg->kme_key : NULL,
                                .ca = cfg->kme_ca[0] ? cfg->kme_ca : NULL,
                                .kme_id = cfg->kme_id[0] ? cfg->kme_id : NULL};
        if (!(p->client = sae_client_new(&sc, err, errlen))) {
            pad_pool_stop(p);
            return NULL;
        }
    }
    if (pthread_create(&p->thread, NULL, fetcher_main, p) != 0) {
        snprintf(err, errlen, "cannot start the pad fetcher");
        pad_pool_stop(p);
        return NULL;
    }
    p->started = 1;
    return p;
}

pad_pool *pad_pool_start(const enc_config *cfg, char *err, size_t errlen)
{
    return pad_pool_start_with(cfg, NULL, NULL, err, errlen);
}

size_t pad_pool_take(pad_pool *p, pad_key *out, size_t max, int wait, const atomic_int *cancel, int *waited)
{
    pthread_mutex_lock(&p->lock);
    if (waited)
        *waited = 0;
    if (!p->count && wait && !p->stopping) {
        if (waited)
            *waited = 1;
        p->st.waits++;
        int64_t now = clock_mono_seconds();
        if (now - p->last_wait_log >= WAIT_LOG_INTERVAL) {
            log_warn("waiting for pads: the pool for %s is empty (%llu waits so far); streams hold back their "
                     "plaintext until keys arrive",
                     p->peer_sae, (unsigned long long)p->st.waits);
            p->last_wait_log = now;
        }
        p->waiters++;
        pthread_cond_signal(&p->need);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (!p->count && !p->stopping && !(cancel && atomic_load(cancel)))
            timed_wait(&p->more, &p->lock, 200);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        p->st.wait_seconds += (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        p->waiters--;
    }
    size_t n = 0;
    while (n < max && p->count && !(cancel && atomic_load(cancel))) {
        out[n++] = p->q[p->head];
        memset(&p->q[p->head], 0, sizeof p->q[p->head]);
        p->bytes -= out[n - 1].len;
        p->head = (p->head + 1) % p->cap;
        p->count--;
    }
    if (p->bytes < (size_t)p->low)
        pthread_cond_signal(&p->need);
    pthread_mutex_unlock(&p->lock);
    return n;
}

void pad_pool_get_stats(pad_pool *p, pad_pool_stats *s)
{
    pthread_mutex_lock(&p->lock);
    *s = p->st;
    s->keys_pooled = p->count;
    s->bytes_pooled = p->bytes;
    s->kme_answered = atomic_load(&p->kme_answered);
    pthread_mutex_unlock(&p->lock);
}

void pad_pool_stop(pad_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->need);
    pthread_cond_broadcast(&p->more);
    pthread_mutex_unlock(&p->lock);
    if (p->started)
        pthread_join(p->thread, NULL);
    for (size_t i = 0; p->q && i < p->count; i++)
        pad_key_clear(&p->q[(p->head + i) % p->cap]);
    free(p->q);
    sae_client_free(p->client);
    pthread_cond_destroy(&p->more);
    pthread_cond_destroy(&p->need);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
