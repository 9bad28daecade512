/* Receiver-side fetch of announced keys by key_ID, ahead of use (pad_in.h). */
#include "encryptor/pad_in.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "encryptor/metrics.h"
#include "encryptor/stream_rx.h"
#include "runtime/log.h"
#include "sae-client/sae_client.h"
#include "runtime/clock.h"

#define RETRY_FIRST_MS 300 /* after a transient failure; doubles up to RETRY_MAX_MS */
#define RETRY_MAX_MS 2000
#define RETRY_LOG_S 5 /* a failing KME is logged at most this often */

struct pad_in {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    int started, stopping, failed;
    keyring ring;
    uint32_t fetch_next; /* first index not fetched yet */
    uint32_t
        fetch_limit; /* indexes below it may be fetched: until the peer is trusted, only those a sealed frame asked for */
    uint64_t fetched;
    char error[512];
    char peer_sae[ETSI_ID_MAX + 1];
    sae_client *client;
};

static void timed_wait(pad_in *p, long ms)
{
    struct timespec ts = clock_after_ms(CLOCK_MONOTONIC, ms);
    pthread_cond_timedwait(&p->cond, &p->lock, &ts);
}

static int stopping(pad_in *p)
{
    pthread_mutex_lock(&p->lock);
    int s = p->stopping;
    pthread_mutex_unlock(&p->lock);
    return s;
}

/* The KME could not answer now (unreachable, timeout, 5xx): the stream waits
 * and the fetch is tried again. Any other refusal is final. */
static int transient(const sae_result *res)
{
    return res->error == SAE_ERR_TRANSPORT || (res->error == SAE_ERR_KME && res->http_status >= 500);
}

static int fetch(pad_in *p, etsi_key_ids *ids, etsi_key_container *out, char *err, size_t errlen)
{
    sae_result res;
    long wait_ms = RETRY_FIRST_MS;
    time_t last_log = 0;
    for (;;) {
        if (sae_client_get_key_with_ids(p->client, p->peer_sae, ids, 1, out, &res) == 0)
            return 0;
        enc_metrics_add(ENC_M_PADS_IN_ERRORS, 1);
        if (res.error == SAE_ERR_TRANSPORT)
            snprintf(err, errlen, "%s", res.transport);
        else
            snprintf(err, errlen, "HTTP %ld: %s%s%s", res.http_status, res.problem.message,
                     res.problem.detail[0] ? ": " : "", res.problem.detail);
        if (!transient(&res) || stopping(p))
            return -1;
        time_t now = time(NULL);
        if (now - last_log >= RETRY_LOG_S) {
            log_warn("cannot fetch the announced pads from the KME (%s); the stream waits and it is tried again", err);
            last_log = now;
        }
        pthread_mutex_lock(&p->lock);
        if (!p->stopping)
            timed_wait(p, wait_ms);
        pthread_mutex_unlock(&p->lock);
        wait_ms = wait_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : wait_ms * 2;
    }
}

/* Locked. Files the fetched keys under their indexes [first, first + n). */
static int file_keys(pad_in *p, uint32_t first, size_t n, etsi_key_container *kc, char *err, size_t errlen)
{
    if (kc->count != n) {
        snprintf(err, errlen, "the KME returned %zu keys for %zu key_IDs", kc->count, n);
        return -1;
    }
    for (size_t i = 0; i < kc->count; i++) {
        pad_key k = {.bytes = kc->keys[i].key, .len = kc->keys[i].key_len};
        if (!uuid_is_valid(kc->keys[i].key_id) || k.len == 0) {
            snprintf(err, errlen, "the KME returned an invalid key");
            return -1;
        }
        uuid_normalise(kc->keys[i].key_id, k.id);
        int done = 0;
        for (uint32_t idx = first; idx < first + n && !done; idx++)
            done = keyring_fill(&p->ring, idx, &k) == 0;
        if (!done) {
            snprintf(err, errlen, "the KME returned a key that was not asked for");
            return -1;
        }
        kc->keys[i].key = NULL; /* now owned by the ring */
        kc->keys[i].key_len = 0;
    }
    return 0;
}

static void *fetcher_main(void *arg)
{
    pad_in *p = arg;
    char(*idbuf)[UUID_STR_LEN + 1] = calloc(FRAME_MAX_KEYS, sizeof *idbuf);
    pthread_mutex_lock(&p->lock);
    while (!p->stopping && !p->failed && idbuf) {
        uint32_t avail = p->ring.next < p->fetch_limit ? p->ring.next : p->fetch_limit;
        if (p->fetch_next >= avail) {
            timed_wait(p, 1000);
            continue;
        }
        uint32_t first = p->fetch_next;
        size_t n = avail - first;
        if (n > FRAME_MAX_KEYS)
            n = FRAME_MAX_KEYS;
        for (size_t i = 0; i < n; i++)
            memcpy(idbuf[i], p->ring.slots[first + i - p->ring.first].id, sizeof idbuf[i]);
        pthread_mutex_unlock(&p->lock);
        etsi_key_ids ids = {idbuf, n};
        etsi_key_container kc = {0};
        char err[sizeof p->error] = "";
        int rc = fetch(p, &ids, &kc, err, sizeof err);
        pthread_mutex_lock(&p->lock);
        if (rc == 0)
            rc = file_keys(p, first, n, &kc, err, sizeof err);
        etsi_key_container_clear(&kc);
        if (rc == 0) {
            p->fetch_next = first + (uint32_t)n;
            p->fetched += n;
            enc_metrics_add(ENC_M_PADS_IN, n);
            log_debug("fetched %zu announced pads from %s", n, p->peer_sae);
        } else {
            p->failed = 1;
            snprintf(p->error, sizeof p->error, "%s", err);
        }
        pthread_cond_broadcast(&p->cond);
    }
    if (!idbuf) {
        p->failed = 1;
        snprintf(p->error, sizeof p->error, "out of memory");
    }
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    free(idbuf);
    return NULL;
}

pad_in *pad_in_start(const enc_config *cfg, char *err, size_t errlen)
{
    pad_in *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(p->peer_sae, sizeof p->peer_sae, "%s", cfg->peer_sae);
    p->fetch_limit = 0;
    keyring_init(&p->ring);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    sae_client_config sc = {.kme_url = cfg->kme_url,
                            .cert = cfg->kme_cert,
                            .key = cfg->kme_key[0] ? cfg->kme_key : NULL,
                            .ca = cfg->kme_ca[0] ? cfg->kme_ca : NULL,
                            .kme_id = cfg->kme_id[0] ? cfg->kme_id : NULL,
                            .timeout_ms = 5000};
    if (!(p->client = sae_client_new(&sc, err, errlen))) {
        pad_in_stop(p);
        return NULL;
    }
    if (pthread_create(&p->thread, NULL, fetcher_main, p) != 0) {
        snprintf(err, errlen, "cannot start the key fetcher");
        pad_in_stop(p);
        return NULL;
    }
    p->started = 1;
    return p;
}

void pad_in_trust(pad_in *p)
{
    pthread_mutex_lock(&p->lock);
    p->fetch_limit = UINT32_MAX;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

int pad_in_announce(pad_in *p, const char (*ids)[FRAME_KEY_ID_BYTES + 1], size_t n)
{
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < n && rc == 0; i++)
        if (keyring_announce(&p->ring, ids[i], RX_MAX_AHEAD + 1) < 0)
            rc = -1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int pad_in_get(pad_in *p, uint32_t index, pad_key *out, const atomic_int *cancel)
{
    int rc = -1;
    pthread_mutex_lock(&p->lock);
    if (index >= p->fetch_limit && keyring_announced(&p->ring, index)) {
        p->fetch_limit = index + 1; /* a sealed frame needs it to be verified */
        pthread_cond_broadcast(&p->cond);
    }
    for (;;) {
        const pad_key *k = keyring_get(&p->ring, index);
        if (k) {
            *out = *k;
            rc = 0;
            break;
        }
        if (p->failed || p->stopping || !keyring_announced(&p->ring, index) || index < p->ring.first ||
            (cancel && atomic_load(cancel)))
            break;
        timed_wait(p, 200);
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

void pad_in_release_before(pad_in *p, uint32_t index)
{
    pthread_mutex_lock(&p->lock);
    if (index > p->fetch_next)
        index = p->fetch_next;
    keyring_drop_before(&p->ring, index);
    pthread_mutex_unlock(&p->lock);
}

uint64_t pad_in_fetched(pad_in *p)
{
    pthread_mutex_lock(&p->lock);
    uint64_t n = p->fetched;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void pad_in_error(pad_in *p, char *out, size_t outlen)
{
    pthread_mutex_lock(&p->lock);
    snprintf(out, outlen, "%s", p->error);
    pthread_mutex_unlock(&p->lock);
}

void pad_in_stop(pad_in *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    if (p->started)
        pthread_join(p->thread, NULL);
    keyring_free(&p->ring);
    sae_client_free(p->client);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
