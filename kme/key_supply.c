/* Serves GET_KEY from the DRBG or from link key, always committed first (see key_supply.h). */
#include "kme/key_supply.h"
#include "kme/key_records.h"
#include "relay/reserve.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/rand.h>

int supply_locate_sae(kme_context *k, const char *sae_id, kme_link **link)
{
    *link = NULL;
    if (kme_config_hosts_sae(&k->cfg, sae_id))
        return 1;
    const kme_link_config *lc = kme_config_link_for_sae(&k->cfg, sae_id);
    if (!lc)
        return 0;
    *link = &k->links[lc - k->cfg.links];
    return 2;
}

typedef struct {
    const char *master;
    const char *const *slaves;
    size_t nslaves;
    const etsi_key_container *keys;
    int64_t expires;
} local_put_arg;

static int local_put_op(kme_store *s, MDB_txn *txn, void *arg)
{
    local_put_arg *a = arg;
    for (size_t i = 0; i < a->keys->count; i++) {
        key_record rec;
        memset(&rec, 0, sizeof rec);
        memcpy(rec.key_id, a->keys->keys[i].key_id, sizeof rec.key_id);
        snprintf(rec.master, sizeof rec.master, "%s", a->master);
        for (size_t j = 0; j < a->nslaves; j++)
            snprintf(rec.slaves[rec.slave_count++], ETSI_ID_MAX + 1, "%s", a->slaves[j]);
        rec.expires = a->expires;
        rec.key = a->keys->keys[i].key;
        rec.key_len = a->keys->keys[i].key_len;
        if (kr_put(s, txn, &rec) != KR_OK)
            return -1;
    }
    return 0;
}

/* Fresh DRBG keys into out; 0 on success. */
static int fill_drbg(etsi_key_container *out, long number, long size_bits)
{
    memset(out, 0, sizeof *out);
    out->keys = calloc((size_t)number, sizeof *out->keys);
    if (!out->keys)
        return -1;
    for (long i = 0; i < number; i++) {
        etsi_key *key = &out->keys[i];
        key->key_len = (size_t)size_bits / 8;
        key->key = malloc(key->key_len);
        if (!key->key)
            return -1;
        out->count++;
        if (RAND_priv_bytes(key->key, (int)key->key_len) != 1 || uuid_generate(key->key_id) < 0)
            return -1;
    }
    return 0;
}

static int drbg_keys(kme_context *k, const char *master, const char *const *slaves, size_t nslaves,
                     const etsi_key_request *req, etsi_key_container *out, http_response *resp)
{
    if (fill_drbg(out, req->number, req->size) != 0)
        goto fail;
    local_put_arg a = {master, slaves, nslaves, out, (int64_t)time(NULL) + k->cfg.key_ttl_seconds};
    if (store_commit(&k->store, local_put_op, &a) != 0)
        goto fail;
    return 0;
fail:
    etsi_key_container_clear(out);
    http_error(resp, 503, "key generation failed", "the keys could not be generated and stored");
    return -1;
}

/* Sorts the slaves of a request into here / one neighbour; -1 with resp on error. */
static int sort_slaves(kme_context *k, const char *slave, const etsi_key_request *req, const char **local,
                       size_t *nlocal, const char **remote, size_t *nremote, kme_link **link, http_response *resp)
{
    const char *all[KME_MAX_SLAVES];
    size_t n = 0;
    all[n++] = slave;
    for (size_t i = 0; i < req->additional_count && n < KME_MAX_SLAVES; i++) {
        if (strcmp(req->additional_slaves[i], slave) == 0) {
            http_error(resp, 400, "malformed request", "additional slave %s is already the slave", slave);
            return -1;
        }
        all[n++] = req->additional_slaves[i];
    }
    *nlocal = *nremote = 0;
    *link = NULL;
    for (size_t i = 0; i < n; i++) {
        kme_link *l;
        int where = supply_locate_sae(k, all[i], &l);
        if (where == 0) {
            http_error(resp, 400, "unknown slave SAE", "SAE %s is not known to %s", all[i], k->cfg.kme_id);
            return -1;
        }
        if (where == 1) {
            local[(*nlocal)++] = all[i];
            continue;
        }
        if (*link && *link != l) {
            http_error(resp, 400, "slaves at several remote sites",
                       "SAE %s and SAE %s are at different sites; one request serves one remote site", remote[0],
                       all[i]);
            return -1;
        }
        *link = l;
        remote[(*nremote)++] = all[i];
    }
    return 0;
}

/* Appends the keys of more to out (moving them). */
static int append_keys(etsi_key_container *out, etsi_key_container *more)
{
    if (more->count == 0)
        return 0;
    etsi_key *keys = realloc(out->keys, (out->count + more->count) * sizeof *keys);
    if (!keys)
        return -1;
    memcpy(keys + out->count, more->keys, more->count * sizeof *keys);
    out->keys = keys;
    out->count += more->count;
    free(more->keys);
    more->keys = NULL;
    more->count = 0;
    return 0;
}

/* One slave at the neighbour: from stock as far as it goes, the rest reserved
 * now. The stock is only held until the fresh part is committed, so a refused
 * request takes nothing. */
static int single_remote_slave(kme_context *k, kme_link *l, const char *master, const char *slave,
                               const etsi_key_request *req, etsi_key_container *out, http_response *resp)
{
    long held = stock_hold(k, l, master, slave, req->size, req->number);
    etsi_key_container fresh = {NULL, 0}, stocked = {NULL, 0};
    if (held < req->number) {
        reserve_request r = {master, NULL, 0, &slave, 1, req->number - held, req->size, 0, held};
        if (reserve_link_keys(k, l, &r, &fresh, resp) != 0) {
            stock_unhold(l, master, slave, req->size, held);
            return -1;
        }
    }
    if (held > 0 && stock_take_held(k, l, master, slave, req->size, held, &stocked) != 0) {
        etsi_key_container_clear(&fresh);
        http_error(resp, 503, "key store failure", "the keys could not be taken from stock");
        return -1;
    }
    *out = stocked;
    if (append_keys(out, &fresh) != 0) {
        etsi_key_container_clear(out);
        etsi_key_container_clear(&fresh);
        http_error(resp, 503, "out of memory", NULL);
        return -1;
    }
    stock_note_demand(k, l, master, slave, req->size, req->number);
    return 0;
}

int supply_keys(kme_context *k, const char *master, const char *slave, const etsi_key_request *req,
                etsi_key_container *out, http_response *resp)
{
    memset(out, 0, sizeof *out);
    const char *local[KME_MAX_SLAVES], *remote[KME_MAX_SLAVES];
    size_t nlocal, nremote;
    kme_link *link;
    if (sort_slaves(k, slave, req, local, &nlocal, remote, &nremote, &link, resp) < 0)
        return -1;
    if (!link)
        return drbg_keys(k, master, local, nlocal, req, out, resp);
    if (nlocal == 0 && nremote == 1)
        return single_remote_slave(k, link, master, remote[0], req, out, resp);
    reserve_request r = {master, local, nlocal, remote, nremote, req->number, req->size, 0, 0};
    return reserve_link_keys(k, link, &r, out, resp);
}

/* ---- without blocking ------------------------------------------------------ */

static int drbg_put_op(kme_store *s, MDB_txn *txn, void *arg)
{
    supply_async *a = arg;
    local_put_arg put = {a->master, a->slaves, a->nslaves, &a->out, a->op.drbg.expires};
    return local_put_op(s, txn, &put);
}

static void drbg_done(void *arg, int result)
{
    supply_async *a = arg;
    a->rc = result;
    if (result != 0) {
        etsi_key_container_clear(&a->out);
        http_error(&a->resp, 503, "key generation failed", "the keys could not be stored");
    }
    a->done(a->done_arg);
}

static void stock_done(void *arg, int result)
{
    supply_async *a = arg;
    a->rc = result;
    if (result == 0) {
        stock_note_demand(a->k, a->link, a->master, a->slave, a->size_bits, a->number);
        stock_note_claims(a->link, &a->out);
    } else {
        stock_unhold(a->link, a->master, a->slave, a->size_bits, a->number);
        etsi_key_container_clear(&a->out);
        http_error(&a->resp, 503, "key store failure", "the keys could not be taken from stock");
    }
    a->done(a->done_arg);
}

int supply_async_prepare(kme_context *k, const char *master, const char *slave, const etsi_key_request *req,
                         supply_async *a, void (*done)(void *), void *done_arg)
{
    memset(a, 0, sizeof *a);
    a->k = k;
    a->done = done;
    a->done_arg = done_arg;
    a->number = req->number;
    a->size_bits = req->size;
    snprintf(a->master, sizeof a->master, "%s", master);
    snprintf(a->slave, sizeof a->slave, "%s", slave);
    const char *remote[KME_MAX_SLAVES];
    size_t nremote;
    http_response ignored = {0, NULL};
    if (sort_slaves(k, a->slave, req, a->slaves, &a->nslaves, remote, &nremote, &a->link, &ignored) < 0) {
        etsi_text_free(ignored.body);
        return 0; /* the blocking path reports it */
    }
    /* a->slaves point into a and req, which outlive the request. */
    if (!a->link) {
        if (fill_drbg(&a->out, req->number, req->size) != 0) {
            etsi_key_container_clear(&a->out);
            return 0;
        }
        a->op.drbg.expires = (int64_t)time(NULL) + k->cfg.key_ttl_seconds;
        return 1;
    }
    if (a->nslaves != 0 || nremote != 1)
        return 0;
    long held = stock_hold(k, a->link, master, slave, req->size, req->number);
    if (held < req->number) {
        stock_unhold(a->link, master, slave, req->size, held);
        return 0;
    }
    stock_take_prepare(k, a->link, master, slave, req->size, held, &a->out, &a->op.take);
    return 1;
}

void supply_async_start(supply_async *a)
{
    if (!a->link)
        store_commit_async(&a->k->store, drbg_put_op, a, drbg_done, a);
    else
        store_commit_async(&a->k->store, stock_take_op, &a->op.take, stock_done, a);
}

long supply_stored_key_count(kme_context *k, const char *master, const char *slave)
{
    kme_link *l;
    if (supply_locate_sae(k, slave, &l) != 2)
        return k->cfg.limits.max_key_count;
    long n = reserve_available_keys(k, l, k->cfg.limits.key_size) +
             stock_count(l, master, slave, k->cfg.limits.key_size);
    return n < k->cfg.limits.max_key_count ? n : k->cfg.limits.max_key_count;
}
