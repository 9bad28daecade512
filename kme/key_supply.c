/* Serves GET_KEY from the DRBG or from link key, always committed first (see key_supply.h). */
#include "kme/key_supply.h"
#include "kme/key_economy.h"
#include "store/key_records.h"
#include "relay/relay.h"
#include "relay/hop_crypto.h"
#include "relay/reserve.h"
#include "relay/router.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/rand.h>

supply_where supply_locate_sae(kme_context *k, const char *sae_id, char kme_out[ETSI_ID_MAX + 1])
{
    char kme[ETSI_ID_MAX + 1];
    int where = router_locate_sae(&k->net, sae_id, kme);
    if (where == SUPPLY_REMOTE && kme_out)
        snprintf(kme_out, ETSI_ID_MAX + 1, "%s", kme);
    return where == 1 ? SUPPLY_HERE : where == 2 ? SUPPLY_REMOTE : SUPPLY_UNKNOWN;
}

/* The dest of a remote SAE, or NULL when it is here or unknown. */
static relay_dest *remote_dest(kme_context *k, const char *sae_id, supply_where *where)
{
    char kme[ETSI_ID_MAX + 1];
    *where = supply_locate_sae(k, sae_id, kme);
    if (*where != SUPPLY_REMOTE)
        return NULL;
    relay_dest *d = relay_dest_get(&k->net, kme, 1);
    if (!d)
        *where = SUPPLY_UNKNOWN;
    return d;
}

/* A neighbour whose route is its own link (or that has no route now): keys
 * reserved on that link. Otherwise (further away, or the direct link dry
 * while another way has key): keys relayed. */
static int served_directly(kme_context *k, const relay_dest *d)
{
    if (!d->link)
        return 0;
    relay_link *next = router_next_hop(&k->net, d->id, NULL);
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
        int rc = kr_put(s, txn, &rec);
        if (rc != KR_OK)
            return rc == KR_FULL ? KR_FULL : -1;
    }
    return 0;
}

/* ---- the trace ------------------------------------------------------------- */

void supply_trace_clear(supply_trace *t)
{
    free(t->stock.path);
    for (size_t i = 0; i < t->nsites; i++)
        free(t->sites[i].path);
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
    if (!r || !(p->site->path = calloc(r->hops + 1, sizeof *p->site->path)))
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
    free(site->path);
    site->path = NULL;
    if (direct) {
        if (!(site->path = calloc(2, sizeof *site->path)))
            return;
        snprintf(site->path[0], sizeof site->path[0], "%s", k->cfg.kme_id);
        snprintf(site->path[1], sizeof site->path[1], "%s", site->kme);
        site->path_len = 2;
        return;
    }
    path_lookup p = {site->kme, site};
    router_inspect(&k->net, copy_path, &p);
}

/* The stock of dest: reserved on the link for a neighbour; relayed for a
 * KME further away along a route not recorded. */
static void trace_stock(kme_context *k, supply_trace *t, const relay_dest *d, const char *slave, long stocked)
{
    t->stocked = stocked;
    snprintf(t->stock.kme, sizeof t->stock.kme, "%s", d->id);
    t->stock.slaves[0] = slave;
    t->stock.nslaves = 1;
    t->stock.path_len = 0;
    if (d->link)
        trace_path(k, &t->stock, 1);
}

/* The sites of a request's slaves into its trace (no paths yet). 0, or -1. */
static int trace_sites(supply_request *a)
{
    supply_trace *t = &a->trace;
    memcpy(t->local, a->local, a->nlocal * sizeof *t->local);
    t->nlocal = a->nlocal;
    t->nsites = 0;
    if (a->ngroups && !(t->sites = calloc(a->ngroups, sizeof *t->sites)))
        return -1;
    for (size_t g = 0; g < a->ngroups; g++) {
        supply_site *site = &t->sites[t->nsites++];
        snprintf(site->kme, sizeof site->kme, "%s", a->groups[g].dest->id);
        memcpy(site->slaves, a->groups[g].slaves, a->groups[g].n * sizeof *site->slaves);
        site->nslaves = a->groups[g].n;
    }
    return 0;
}

/* The site of the trace for dest, or NULL. */
static supply_site *trace_site_of(supply_trace *t, const relay_dest *d)
{
    for (size_t i = 0; i < t->nsites; i++)
        if (strcmp(t->sites[i].kme, d->id) == 0)
            return &t->sites[i];
    return NULL;
}

/* ---- the decision ---------------------------------------------------------- */

/* Sorts the slaves of a request by site into a; -1 with a->resp on error. */
static int sort_slaves(supply_request *a, const etsi_key_request *req)
{
    kme_context *k = a->k;
    const char *all[KR_MAX_SLAVES];
    size_t n = 0;
    all[n++] = a->slave;
    for (size_t i = 0; i < req->additional_count && n < KR_MAX_SLAVES; i++) {
        if (strcmp(req->additional_slaves[i], a->slave) == 0) {
            http_error(&a->resp, 400, "malformed request", "additional slave %s is already the slave", a->slave);
            return -1;
        }
        all[n++] = req->additional_slaves[i];
    }
    a->nlocal = a->ngroups = 0;
    for (size_t i = 0; i < n; i++) {
        supply_where where;
        relay_dest *d = remote_dest(k, all[i], &where);
        if (where == SUPPLY_UNKNOWN) {
            http_error(&a->resp, 400, "unknown slave SAE", "SAE %s is not known to %s", all[i], k->cfg.kme_id);
            return -1;
        }
        if (where == SUPPLY_HERE) {
            a->local[a->nlocal++] = all[i];
            continue;
        }
        size_t g = 0;
        while (g < a->ngroups && a->groups[g].dest != d)
            g++;
        if (g == a->ngroups) {
            a->groups[g].dest = d;
            a->groups[g].n = 0;
            a->ngroups++;
        }
        a->groups[g].slaves[a->groups[g].n++] = all[i];
    }
    return 0;
}

/* ---- the key economy ------------------------------------------------------- */

#define HELD_RETRY_S 5 /* a slave at its max_key_count: when to ask again */

static void refund_all(supply_request *a)
{
    for (size_t i = 0; i < a->ncharges; i++)
        economy_refund(a->k->economy, a->master, a->charges[i].link, a->charges[i].bytes);
    a->ncharges = 0;
}

/* The ceiling of keys waiting for each slave hosted here: -1 with a->resp
 * when the request would pass one. */
static int check_held(supply_request *a)
{
    kme_context *k = a->k;
    MDB_txn *txn;
    if (a->nlocal == 0 || store_read_begin(&k->store, &txn) != 0)
        return 0;
    int rc = 0;
    for (size_t i = 0; i < a->nlocal && rc == 0; i++) {
        long held = kr_held(&k->store, txn, a->local[i]), max = kme_config_max_held(&k->cfg, a->local[i]);
        if (held + a->number > max) {
            char detail[256];
            snprintf(detail, sizeof detail,
                     "%ld keys wait for SAE %s at %s; with %ld more it would pass its max_key_count %ld", held,
                     a->local[i], k->cfg.kme_id, a->number, max);
            economy_answer(ECONOMY_HELD, HELD_RETRY_S, detail, &a->resp);
            economy_count_refusal(k->economy, a->master, ECONOMY_HELD);
            rc = -1;
        }
    }
    mdb_txn_abort(txn);
    return rc;
}

/* Charges the master for the link key each remote site's keys take on the
 * first link of their way: -1 with a->resp (and nothing charged) when the
 * key economy refuses. */
static int charge_links(supply_request *a)
{
    kme_context *k = a->k;
    for (size_t g = 0; g < a->ngroups; g++) {
        relay_dest *d = a->groups[g].dest;
        int direct = served_directly(k, d);
        relay_link *first = direct ? d->link : router_next_hop(&k->net, d->id, NULL);
        if (!first)
            continue; /* no way there now: the request fails without spending */
        /* the keys, and on a relay the first hop's MAC key */
        long bytes = a->number * (a->size_bits / 8) + (direct ? 0 : HOP_MAC_KEY_BYTES);
        economy_refusal why;
        if (economy_charge(k->economy, &kme_config_live(&k->cfg)->policy, a->master, (int)first->index,
                           first->lb.peer_id, bytes, &why) != 0) {
            refund_all(a);
            economy_answer(why.reason, why.retry_after_s, why.detail, &a->resp);
            return -1;
        }
        a->charges[a->ncharges].link = (int)first->index;
        a->charges[a->ncharges++].bytes = bytes;
    }
    return 0;
}

static int single_remote_slave(const supply_request *a)
{
    return a->nlocal == 0 && a->ngroups == 1 && a->groups[0].n == 1;
}

supply_way supply_prepare(kme_context *k, const char *master, const char *slave, const etsi_key_request *req,
                          supply_request *a)
{
    memset(a, 0, sizeof *a);
    a->k = k;
    a->number = req->number;
    a->size_bits = req->size;
    snprintf(a->master, sizeof a->master, "%s", master);
    snprintf(a->slave, sizeof a->slave, "%s", slave);
    if (sort_slaves(a, req) < 0)
        return SUPPLY_REFUSED;
    if (trace_sites(a) < 0) {
        http_error(&a->resp, 503, "out of memory", NULL);
        return SUPPLY_REFUSED;
    }
    if (check_held(a) < 0 || charge_links(a) < 0)
        return SUPPLY_REFUSED;
    if (a->ngroups == 0) {
        a->trace.fresh = SUPPLY_LOCAL;
        return SUPPLY_NOW;
    }
    if (single_remote_slave(a)) {
        relay_dest *d = a->groups[0].dest;
        a->held = stock_hold(&k->net, d, master, slave, a->size_bits, a->number);
        trace_stock(k, &a->trace, d, a->slave, a->held);
        if (a->held == a->number)
            return SUPPLY_NOW;
    }
    a->direct = a->ngroups == 1 && served_directly(k, a->groups[0].dest);
    return SUPPLY_BLOCKING;
}

void supply_request_clear(supply_request *a)
{
    supply_trace_clear(&a->trace);
}

/* ---- the blocking path ----------------------------------------------------- */

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
static int relayed_keys(supply_request *a, long number, etsi_key_container *out)
{
    kme_context *k = a->k;
    if (kr_fill_random(out, number, a->size_bits) != 0) {
        http_error(&a->resp, 503, "key generation failed", "the keys could not be generated");
        return -1;
    }
    a->trace.fresh = SUPPLY_RELAY;
    for (size_t g = 0; g < a->ngroups; g++) {
        const supply_group *grp = &a->groups[g];
        supply_site *site = trace_site_of(&a->trace, grp->dest);
        if (site)
            trace_path(k, site, 0);
        if (relay_keys_to(&k->net, grp->dest->id, a->master, grp->slaves, grp->n, out, 0, &a->resp) != 0) {
            etsi_key_container_clear(out);
            return -1;
        }
    }
    if (a->nlocal) {
        local_put_arg put = {a->master, a->local, a->nlocal, out, (int64_t)time(NULL) + k->cfg.key_ttl_seconds};
        if (store_commit(&k->store, local_put_op, &put) != 0) {
            etsi_key_container_clear(out);
            http_error(&a->resp, 503, "key store failure", "the keys could not be stored");
            return -1;
        }
    }
    return 0;
}

/* number new keys for the slaves at remote sites (and here). */
static int fresh_keys(supply_request *a, long number, etsi_key_container *out)
{
    if (!a->direct)
        return relayed_keys(a, number, out);
    const supply_group *g = &a->groups[0];
    reserve_request r = {a->master, a->local, a->nlocal, g->slaves, g->n, number, a->size_bits, 0, a->held};
    supply_site *site = trace_site_of(&a->trace, g->dest);
    if (site) {
        a->trace.fresh = SUPPLY_LINK;
        trace_path(a->k, site, 1);
    }
    return reserve_link_keys(&a->k->net, g->dest->link, &r, out, &a->resp);
}

static int run_blocking(supply_request *a);

int supply_run(supply_request *a)
{
    if (run_blocking(a) != 0)
        refund_all(a);
    return a->rc;
}

static int run_blocking(supply_request *a)
{
    kme_context *k = a->k;
    memset(&a->out, 0, sizeof a->out);
    etsi_key_container fresh = {NULL, 0}, stocked = {NULL, 0};
    long want = a->number - a->held;
    relay_dest *d = single_remote_slave(a) ? a->groups[0].dest : NULL;
    /* The stock is only held until the fresh part is committed, so a
     * refused request takes nothing. */
    if (want > 0 && fresh_keys(a, want, &fresh) != 0) {
        if (d)
            stock_unhold(d, a->master, a->slave, a->size_bits, a->held);
        return a->rc = -1;
    }
    if (a->held > 0 && stock_take_held(&k->net, d, a->master, a->slave, a->size_bits, a->held, &stocked) != 0) {
        etsi_key_container_clear(&fresh);
        http_error(&a->resp, 503, "key store failure", "the keys could not be taken from stock");
        return a->rc = -1;
    }
    a->out = stocked;
    if (append_keys(&a->out, &fresh) != 0) {
        etsi_key_container_clear(&a->out);
        etsi_key_container_clear(&fresh);
        http_error(&a->resp, 503, "out of memory", NULL);
        return a->rc = -1;
    }
    if (d)
        stock_note_demand(&k->net, d, a->master, a->slave, a->size_bits, a->number);
    return a->rc = 0;
}

/* ---- one local commit, without blocking ------------------------------------ */

static int drbg_put_op(kme_store *s, MDB_txn *txn, void *arg)
{
    supply_request *a = arg;
    local_put_arg put = {a->master, a->local, a->nlocal, &a->out, a->op.drbg_expires};
    return local_put_op(s, txn, &put);
}

/* On the store's writer thread: only the outcome. The stock bookkeeping
 * takes the dest's stock lock, which a thread ageing the stock holds while it
 * waits for this same writer, so it is done in supply_finish. */
static void commit_done(void *arg, int result)
{
    supply_request *a = arg;
    a->rc = result;
    a->done(a->done_arg);
}

void supply_start(supply_request *a, void (*done)(void *), void *done_arg)
{
    a->done = done;
    a->done_arg = done_arg;
    if (a->ngroups == 0) {
        if (kr_fill_random(&a->out, a->number, a->size_bits) != 0) {
            etsi_key_container_clear(&a->out);
            a->rc = -1;
            done(done_arg);
            return;
        }
        a->op.drbg_expires = (int64_t)time(NULL) + a->k->cfg.key_ttl_seconds;
        store_commit_async(&a->k->store, drbg_put_op, a, commit_done, a);
    } else {
        stock_take_prepare(a->groups[0].dest, a->master, a->slave, a->size_bits, a->held, &a->out, &a->op.take);
        store_commit_async(&a->k->store, stock_take_op, &a->op.take, commit_done, a);
    }
}

void supply_finish(supply_request *a)
{
    if (a->ngroups == 0) {
        if (a->rc == KR_FULL) {
            etsi_key_container_clear(&a->out);
            economy_answer(ECONOMY_HELD, HELD_RETRY_S, "a slave of the request holds its max_key_count", &a->resp);
        } else if (a->rc != 0) {
            etsi_key_container_clear(&a->out);
            http_error(&a->resp, 503, "key generation failed", "the keys could not be stored");
        }
        return;
    }
    relay_dest *d = a->groups[0].dest;
    if (stock_take_finish(&a->k->store, &a->op.take, a->rc) != 0 && a->rc == 0) {
        /* Taken from the store but not opened (logged): gone, none served. */
        a->rc = -1;
        refund_all(a);
        http_error(&a->resp, 503, "key store failure", "the keys taken from stock could not be opened");
        return;
    }
    if (a->rc == 0) {
        stock_note_demand(&a->k->net, d, a->master, a->slave, a->size_bits, a->number);
        stock_note_claims(d, &a->out);
    } else {
        refund_all(a);
        stock_unhold(d, a->master, a->slave, a->size_bits, a->held);
        etsi_key_container_clear(&a->out);
        http_error(&a->resp, 503, "key store failure", "the keys could not be taken from stock");
    }
}

long supply_stored_key_count(kme_context *k, const char *master, const char *slave)
{
    etsi_limits limits = kme_config_limits(&k->cfg);
    supply_where where;
    relay_dest *d = remote_dest(k, slave, &where);
    if (!d && where != SUPPLY_HERE)
        return 0;
    if (!d) {
        /* From the DRBG, as many as may still wait for the slave here. */
        long max = kme_config_max_held(&k->cfg, slave), held = 0;
        MDB_txn *txn;
        if (store_read_begin(&k->store, &txn) == 0) {
            held = kr_held(&k->store, txn, slave);
            mdb_txn_abort(txn);
        }
        return held < max ? max - held : 0;
    }
    /* Stock held for the pair, and what the route could carry now: its
     * first link as this KME holds it, the others as their KMEs advertise
     * them (the scarcest counts). No route, or one beyond the hop limit:
     * stock only. */
    long n = stock_count(d, master, slave, limits.key_size);
    relay_link *next = router_next_hop(&k->net, d->id, NULL);
    uint64_t far_bytes = 0;
    if (next && (d->link || router_route_stock(&k->net, d->id, &far_bytes) == 0)) {
        long route = reserve_available_keys(&k->net, next, limits.key_size);
        uint64_t key_bytes = (uint64_t)limits.key_size / 8;
        if (!d->link && far_bytes / key_bytes < (uint64_t)route)
            route = (long)(far_bytes / key_bytes);
        n += route;
    }
    return n < limits.max_key_count ? n : limits.max_key_count;
}
