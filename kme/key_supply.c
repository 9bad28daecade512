/* Serves GET_KEY from the DRBG or from link key, always committed first (see key_supply.h). */
#include "kme/key_supply.h"
#include "store/key_records.h"
#include "relay/relay.h"
#include "relay/reserve.h"
#include "relay/router.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/rand.h>

int supply_locate_sae(kme_context *k, const char *sae_id, kme_dest **dest)
{
    char kme[ETSI_ID_MAX + 1];
    *dest = NULL;
    int where = router_locate_sae(k, sae_id, kme);
    if (where == 2 && !(*dest = kme_dest_get(k, kme, 1)))
        return 0;
    return where;
}

/* A neighbour whose route is its own link (or that has no route now): keys
 * reserved on that link. Otherwise (further away, or the direct link dry
 * while another way has key): keys relayed. */
static int served_directly(kme_context *k, const kme_dest *d)
{
    if (!d->link)
        return 0;
    kme_link *next = router_next_hop(k, d->id, NULL);
    return !next || next == d->link;
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
        kr_fill(&rec, a->keys->keys[i].key_id, a->master, a->slaves, a->nslaves, a->expires, a->keys->keys[i].key,
                a->keys->keys[i].key_len);
        if (kr_put(s, txn, &rec) != KR_OK)
            return -1;
    }
    return 0;
}

static int drbg_keys(kme_context *k, const char *master, const char *const *slaves, size_t nslaves,
                     const etsi_key_request *req, etsi_key_container *out, http_response *resp)
{
    if (kr_fill_random(out, req->number, req->size) != 0)
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

/* ---- the trace ------------------------------------------------------------- */

void supply_trace_clear(supply_trace *t)
{
    free(t->sites);
    memset(t, 0, sizeof *t);
}

typedef struct {
    const char *dest;
    supply_site *site;
} path_lookup;

static void copy_path(void *ctx, const routing_db *db, const routing_table *table)
{
    (void)db;
    path_lookup *p = ctx;
    const routing_route *r = routing_route_to(table, p->dest);
    if (!r || r->hops + 1 > SUPPLY_PATH_MAX)
        return;
    for (uint32_t i = 0; i <= r->hops; i++)
        snprintf(p->site->path[i], sizeof p->site->path[i], "%s", r->path[i]);
    p->site->path_len = r->hops + 1;
}

/* The way to site->kme: the direct link, or the route computed now (not
 * known when there is none). */
static void trace_path(kme_context *k, supply_site *site, int direct)
{
    site->path_len = 0;
    if (direct) {
        snprintf(site->path[0], sizeof site->path[0], "%s", k->cfg.kme_id);
        snprintf(site->path[1], sizeof site->path[1], "%s", site->kme);
        site->path_len = 2;
        return;
    }
    path_lookup p = {site->kme, site};
    router_inspect(k, copy_path, &p);
}

/* The stock of dest: reserved on the link for a neighbour; relayed for a
 * KME further away along a route not recorded. */
static void trace_stock(kme_context *k, supply_trace *t, const kme_dest *d, const char *slave, long stocked)
{
    t->stocked = stocked;
    snprintf(t->stock.kme, sizeof t->stock.kme, "%s", d->id);
    t->stock.slaves[0] = slave;
    t->stock.nslaves = 1;
    t->stock.path_len = 0;
    if (d->link)
        trace_path(k, &t->stock, 1);
}

/* The slaves of a request by site: here, or in groups per remote KME. */
typedef struct {
    kme_dest *dest;
    const char *slaves[KME_MAX_SLAVES];
    size_t n;
} slave_group;

typedef struct {
    const char *local[KME_MAX_SLAVES];
    size_t nlocal;
    slave_group groups[KME_MAX_SLAVES];
    size_t ngroups;
} slave_sites;

/* Sorts the slaves of a request by site; -1 with resp on error. */
static int sort_slaves(kme_context *k, const char *slave, const etsi_key_request *req, slave_sites *out,
                       http_response *resp)
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
    out->nlocal = out->ngroups = 0;
    for (size_t i = 0; i < n; i++) {
        kme_dest *d;
        int where = supply_locate_sae(k, all[i], &d);
        if (where == 0) {
            http_error(resp, 400, "unknown slave SAE", "SAE %s is not known to %s", all[i], k->cfg.kme_id);
            return -1;
        }
        if (where == 1) {
            out->local[out->nlocal++] = all[i];
            continue;
        }
        size_t g = 0;
        while (g < out->ngroups && out->groups[g].dest != d)
            g++;
        if (g == out->ngroups) {
            out->groups[g].dest = d;
            out->groups[g].n = 0;
            out->ngroups++;
        }
        out->groups[g].slaves[out->groups[g].n++] = all[i];
    }
    return 0;
}

/* The sites of a request's slaves into t (no paths yet). 0, or -1. */
static int trace_sites(supply_trace *t, const slave_sites *sites)
{
    if (!t)
        return 0;
    memcpy(t->local, sites->local, sites->nlocal * sizeof *t->local);
    t->nlocal = sites->nlocal;
    t->nsites = 0;
    if (sites->ngroups && !(t->sites = calloc(sites->ngroups, sizeof *t->sites)))
        return -1;
    for (size_t g = 0; g < sites->ngroups; g++) {
        supply_site *s = &t->sites[t->nsites++];
        snprintf(s->kme, sizeof s->kme, "%s", sites->groups[g].dest->id);
        memcpy(s->slaves, sites->groups[g].slaves, sites->groups[g].n * sizeof *s->slaves);
        s->nslaves = sites->groups[g].n;
    }
    return 0;
}

/* The site of trace t for dest, or NULL. */
static supply_site *trace_site_of(supply_trace *t, const kme_dest *d)
{
    for (size_t i = 0; t && i < t->nsites; i++)
        if (strcmp(t->sites[i].kme, d->id) == 0)
            return &t->sites[i];
    return NULL;
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

/* One key for slaves at several sites, or at a KME further away: fresh
 * from the DRBG, relayed to every remote site, then committed here for the
 * slaves here. The master gets it only when every site has committed it. */
static int relayed_keys(kme_context *k, const char *master, const slave_sites *sites, long number, long size_bits,
                        etsi_key_container *out, http_response *resp, supply_trace *trace)
{
    if (kr_fill_random(out, number, size_bits) != 0) {
        http_error(resp, 503, "key generation failed", "the keys could not be generated");
        return -1;
    }
    if (trace)
        trace->fresh = SUPPLY_RELAY;
    for (size_t g = 0; g < sites->ngroups; g++) {
        const slave_group *grp = &sites->groups[g];
        supply_site *site = trace_site_of(trace, grp->dest);
        if (site)
            trace_path(k, site, 0);
        if (relay_keys_to(k, grp->dest->id, master, grp->slaves, grp->n, out, 0, resp) != 0) {
            etsi_key_container_clear(out);
            return -1;
        }
    }
    if (sites->nlocal) {
        local_put_arg a = {master, sites->local, sites->nlocal, out, (int64_t)time(NULL) + k->cfg.key_ttl_seconds};
        if (store_commit(&k->store, local_put_op, &a) != 0) {
            etsi_key_container_clear(out);
            http_error(resp, 503, "key store failure", "the keys could not be stored");
            return -1;
        }
    }
    return 0;
}

/* number new keys for the slaves of sites (one remote site at least). */
static int fresh_keys(kme_context *k, const char *master, const slave_sites *sites, long number, long size_bits,
                      long also_available, etsi_key_container *out, http_response *resp, supply_trace *trace)
{
    const slave_group *g = &sites->groups[0];
    if (sites->ngroups == 1 && served_directly(k, g->dest)) {
        reserve_request r = {master,   sites->local, sites->nlocal, g->slaves, g->n, number,
                             size_bits, 0,           also_available};
        supply_site *site = trace_site_of(trace, g->dest);
        if (site) {
            trace->fresh = SUPPLY_LINK;
            trace_path(k, site, 1);
        }
        return reserve_link_keys(k, g->dest->link, &r, out, resp);
    }
    return relayed_keys(k, master, sites, number, size_bits, out, resp, trace);
}

/* One slave at another site: from stock as far as it goes, the rest made
 * now. The stock is only held until the fresh part is committed, so a
 * refused request takes nothing. */
static int single_remote_slave(kme_context *k, const char *master, const slave_sites *sites,
                               const etsi_key_request *req, etsi_key_container *out, http_response *resp,
                               supply_trace *trace)
{
    kme_dest *d = sites->groups[0].dest;
    const char *slave = sites->groups[0].slaves[0];
    long held = stock_hold(k, d, master, slave, req->size, req->number);
    etsi_key_container fresh = {NULL, 0}, stocked = {NULL, 0};
    if (held < req->number &&
        fresh_keys(k, master, sites, req->number - held, req->size, held, &fresh, resp, trace) != 0) {
        stock_unhold(d, master, slave, req->size, held);
        return -1;
    }
    if (held > 0 && stock_take_held(k, d, master, slave, req->size, held, &stocked) != 0) {
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
    stock_note_demand(k, d, master, slave, req->size, req->number);
    if (trace)
        trace_stock(k, trace, d, slave, held);
    return 0;
}

int supply_keys(kme_context *k, const char *master, const char *slave, const etsi_key_request *req,
                etsi_key_container *out, http_response *resp, supply_trace *trace)
{
    memset(out, 0, sizeof *out);
    slave_sites sites;
    if (sort_slaves(k, slave, req, &sites, resp) < 0)
        return -1;
    if (trace_sites(trace, &sites) < 0) {
        http_error(resp, 503, "out of memory", NULL);
        return -1;
    }
    if (sites.ngroups == 0)
        return drbg_keys(k, master, sites.local, sites.nlocal, req, out, resp);
    if (sites.nlocal == 0 && sites.ngroups == 1 && sites.groups[0].n == 1)
        return single_remote_slave(k, master, &sites, req, out, resp, trace);
    return fresh_keys(k, master, &sites, req->number, req->size, 0, out, resp, trace);
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

/* On the store's writer thread: only the outcome. The stock bookkeeping
 * takes the dest's stock lock, which a thread ageing the stock holds while it
 * waits for this same writer, so it is done in supply_async_finish. */
static void stock_done(void *arg, int result)
{
    supply_async *a = arg;
    a->rc = result;
    a->done(a->done_arg);
}

void supply_async_finish(supply_async *a)
{
    if (!a->dest)
        return;
    if (a->rc == 0) {
        stock_note_demand(a->k, a->dest, a->master, a->slave, a->size_bits, a->number);
        stock_note_claims(a->dest, &a->out);
    } else {
        stock_unhold(a->dest, a->master, a->slave, a->size_bits, a->number);
        etsi_key_container_clear(&a->out);
        http_error(&a->resp, 503, "key store failure", "the keys could not be taken from stock");
    }
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
    slave_sites sites;
    http_response ignored = {0, NULL};
    if (sort_slaves(k, a->slave, req, &sites, &ignored) < 0) {
        etsi_text_free(ignored.body);
        return 0; /* the blocking path reports it */
    }
    /* The slaves point into a and req, which outlive the request. */
    if (sites.ngroups == 0) {
        memcpy(a->slaves, sites.local, sites.nlocal * sizeof *a->slaves);
        a->nslaves = sites.nlocal;
        if (kr_fill_random(&a->out, req->number, req->size) != 0) {
            etsi_key_container_clear(&a->out);
            return 0;
        }
        a->op.drbg.expires = (int64_t)time(NULL) + k->cfg.key_ttl_seconds;
        memcpy(a->trace.local, a->slaves, a->nslaves * sizeof *a->slaves);
        a->trace.nlocal = a->nslaves;
        a->trace.fresh = SUPPLY_LOCAL;
        return 1;
    }
    if (sites.nlocal != 0 || sites.ngroups != 1 || sites.groups[0].n != 1)
        return 0;
    a->dest = sites.groups[0].dest;
    long held = stock_hold(k, a->dest, master, slave, req->size, req->number);
    if (held < req->number) {
        stock_unhold(a->dest, master, slave, req->size, held);
        return 0;
    }
    stock_take_prepare(a->dest, master, slave, req->size, held, &a->out, &a->op.take);
    trace_stock(k, &a->trace, a->dest, a->slave, held);
    return 1;
}

void supply_async_start(supply_async *a)
{
    if (!a->dest)
        store_commit_async(&a->k->store, drbg_put_op, a, drbg_done, a);
    else
        store_commit_async(&a->k->store, stock_take_op, &a->op.take, stock_done, a);
}

long supply_stored_key_count(kme_context *k, const char *master, const char *slave)
{
    kme_dest *d;
    etsi_limits limits = kme_config_limits(&k->cfg);
    if (supply_locate_sae(k, slave, &d) != 2)
        return limits.max_key_count;
    /* Stock, and what the first link of the route could carry now. */
    kme_link *next = router_next_hop(k, d->id, NULL);
    long n = stock_count(d, master, slave, limits.key_size) +
             (next ? reserve_available_keys(k, next, limits.key_size) : 0);
    return n < limits.max_key_count ? n : limits.max_key_count;
}
