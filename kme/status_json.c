/* Builds /status.json (see status_json.h): a copy of the router's view taken
 * under its lock, this KME's own ends of its links read live, and the relay
 * requests it originated lately. */
#include "kme/status_json.h"
#include "kme/key_economy.h"
#include "kme/metrics.h"
#include "relay/router.h"
#include "relay/routing.h"
#include "runtime/clock.h"
#include "store/store_usage.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RATE_MIN_WINDOW_MS 1500  /* shortest interval a live ingest rate is measured over */
#define RATE_MAX_WINDOW_MS 30000 /* a longer one is too old to report: measured afresh */

/* One end of a link as its KME advertised it. */
typedef struct {
    char a[ETSI_ID_MAX + 1], b[ETSI_ID_MAX + 1]; /* the link's KMEs, a < b */
    int end;                                     /* whose advert: 0 a's, 1 b's */
    int up;
    uint64_t stock_bytes, rate_bps;
} end_row;

typedef struct {
    char id[ETSI_ID_MAX + 1];
    int advertised;    /* an advert of it is held */
    int reachable;     /* this KME, or a route within the hop limit leads to it */
    char why_not[160]; /* when not reachable: why */
    uint64_t age_ms;
    json_t *saes; /* as it advertised them; NULL when not advertised */
} site_row;

typedef struct {
    const char *self;
    unsigned hop_limit; /* of keys relayed from here (router_hop_limit) */
    int64_t now_ms;
    uint64_t low_stock_bytes;
    end_row *ends;
    size_t nends, ends_cap;
    site_row *sites;
    size_t nsites, sites_cap;
    json_t *routes, *directory, *conflicts;
    int failed;
} snapshot;

/* This KME's end of one of its links, read now. */
typedef struct {
    int up;
    int have_stock, have_rate;
    uint64_t stock_bytes, rate_bps, ingested_bytes;
} local_end;

static int grow(void **items, size_t *cap, size_t count, size_t size)
{
    if (count < *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 16;
    void *p = realloc(*items, n * size);
    if (!p)
        return -1;
    *items = p;
    *cap = n;
    return 0;
}

static json_t *utc_time(int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char buf[48];
    if (ms < 0 || !gmtime_r(&t, &tm))
        return json_null();
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03dZ", (int)(ms % 1000));
    return json_string(buf);
}

/* ---- the router's view, under its lock ------------------------------------------- */

static site_row *add_site(snapshot *s, const char *id, const routing_table *table)
{
    if (grow((void **)&s->sites, &s->sites_cap, s->nsites, sizeof *s->sites) < 0) {
        s->failed = 1;
        return NULL;
    }
    site_row *row = &s->sites[s->nsites++];
    memset(row, 0, sizeof *row);
    snprintf(row->id, sizeof row->id, "%s", id);
    const routing_route *route = routing_route_to(table, id);
    row->reachable = strcmp(id, s->self) == 0 || (route && route->hops <= s->hop_limit);
    if (row->reachable)
        ;
    else if (!route)
        snprintf(row->why_not, sizeof row->why_not, "no route: no chain of links up leads there from %s", s->self);
    else
        snprintf(row->why_not, sizeof row->why_not, "its route takes %u links, beyond the hop limit of %u",
                 (unsigned)route->hops, s->hop_limit);
    return row;
}

static void add_end(snapshot *s, const char *origin, const kme_advert_link *l)
{
    if (grow((void **)&s->ends, &s->ends_cap, s->nends, sizeof *s->ends) < 0) {
        s->failed = 1;
        return;
    }
    end_row *row = &s->ends[s->nends++];
    row->end = strcmp(origin, l->peer) > 0;
    snprintf(row->a, sizeof row->a, "%s", row->end ? l->peer : origin);
    snprintf(row->b, sizeof row->b, "%s", row->end ? origin : l->peer);
    row->up = l->up;
    row->stock_bytes = l->stock_bytes;
    row->rate_bps = l->rate_bps;
}

static json_t *route_json(const routing_route *r)
{
    json_t *path = json_array();
    for (uint32_t i = 0; path && i <= r->hops; i++)
        json_array_append_new(path, json_string(r->path[i]));
    return json_pack("{s:s,s:s,s:I,s:I,s:o*}", "dest", r->dest, "next_hop", r->next_hop, "hops", (json_int_t)r->hops,
                     "cost", (json_int_t)r->cost, "path", path);
}

static int id_cmp(const void *x, const void *y)
{
    return strcmp(json_string_value(*(json_t *const *)x), json_string_value(*(json_t *const *)y));
}

/* One row per SAE claimed by more than one KME: every claimant, and the one
 * kept (null: none). */
static void add_conflicts(snapshot *s, const routing_table *table)
{
    const routing_conflict *c = table->conflicts;
    for (size_t i = 0; i < table->conflict_count;) {
        size_t j = i;
        json_t *ids[ROUTING_MAX_KMES + 1];
        size_t n = 0;
        if (c[i].kept[0])
            ids[n++] = json_string(c[i].kept);
        for (; j < table->conflict_count && strcmp(c[j].sae, c[i].sae) == 0; j++)
            if (n < ROUTING_MAX_KMES + 1)
                ids[n++] = json_string(c[j].dropped);
        qsort(ids, n, sizeof *ids, id_cmp);
        json_t *kmes = json_array();
        for (size_t m = 0; m < n; m++)
            json_array_append_new(kmes, ids[m]);
        json_array_append_new(s->conflicts, json_pack("{s:s,s:o,s:o}", "sae", c[i].sae, "kmes", kmes, "kept",
                                                      c[i].kept[0] ? json_string(c[i].kept) : json_null()));
        i = j;
    }
}

static void take_snapshot(void *ctx, const routing_db *db, const routing_table *table)
{
    snapshot *s = ctx;
    s->low_stock_bytes = db->params.low_stock_bytes;
    for (size_t i = 0; i < db->count && !s->failed; i++) {
        const kme_advert *a = &db->entries[i]->advert;
        int64_t held = s->now_ms - db->entries[i]->recv_ms;
        site_row *site = add_site(s, a->origin, table);
        if (!site)
            return;
        site->advertised = 1;
        site->age_ms = a->age_ms + (uint64_t)(held > 0 ? held : 0);
        site->saes = json_array();
        for (size_t j = 0; j < a->sae_count; j++)
            json_array_append_new(site->saes, json_string(a->saes[j]));
        for (size_t j = 0; j < a->link_count; j++) {
            add_site(s, a->links[j].peer, table); /* it may have sent no advert */
            add_end(s, a->origin, &a->links[j]);
        }
    }
    for (size_t i = 0; i < table->route_count; i++)
        json_array_append_new(s->routes, route_json(&table->routes[i]));
    for (size_t i = 0; i < table->sae_count; i++)
        json_object_set_new(s->directory, table->saes[i].sae, json_string(table->saes[i].kme));
    add_conflicts(s, table);
}

/* ---- this KME's own links, live ------------------------------------------------- */

/* The ingest rate of each link, measured between requests of the page. */
static struct {
    pthread_mutex_t lock;
    const kme_context *k;
    int64_t at_ms;
    uint64_t ingested[KME_MAX_LINKS];
    uint64_t rate_bps[KME_MAX_LINKS];
    int have_rate;
} ingest_sampler = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void read_local_ends(kme_context *k, int64_t now_ms, local_end *out)
{
    size_t n = k->cfg.link_count < KME_MAX_LINKS ? k->cfg.link_count : KME_MAX_LINKS;
    memset(out, 0, KME_MAX_LINKS * sizeof *out);
    MDB_txn *txn = NULL;
    if (store_read_begin(&k->store, &txn))
        txn = NULL;
    for (size_t i = 0; i < n; i++) {
        relay_link *l = &k->net.links[i];
        lb_stock st;
        out[i].up = atomic_load(&l->peer_up) && !atomic_load(&l->source_down); /* as advertised */
        out[i].ingested_bytes = atomic_load(&l->ingested_bytes);
        if (txn && lb_get_stock(&k->store, txn, &l->lb, &st) == 0) {
            out[i].have_stock = 1;
            out[i].stock_bytes = st.owned_free;
        }
    }
    if (txn)
        mdb_txn_abort(txn);

    pthread_mutex_lock(&ingest_sampler.lock);
    int64_t dt = now_ms - ingest_sampler.at_ms;
    if (ingest_sampler.k != k || dt < 0 || dt > RATE_MAX_WINDOW_MS) {
        ingest_sampler.k = k;
        ingest_sampler.have_rate = 0;
        ingest_sampler.at_ms = now_ms;
        for (size_t i = 0; i < n; i++)
            ingest_sampler.ingested[i] = out[i].ingested_bytes;
    } else if (dt >= RATE_MIN_WINDOW_MS) {
        for (size_t i = 0; i < n; i++) {
            uint64_t delta = out[i].ingested_bytes - ingest_sampler.ingested[i];
            ingest_sampler.rate_bps[i] = out[i].ingested_bytes >= ingest_sampler.ingested[i]
                                             ? (uint64_t)((double)delta * 8000.0 / (double)dt)
                                             : 0;
            ingest_sampler.ingested[i] = out[i].ingested_bytes;
        }
        ingest_sampler.at_ms = now_ms;
        ingest_sampler.have_rate = 1;
    }
    for (size_t i = 0; i < n; i++) {
        out[i].have_rate = ingest_sampler.have_rate;
        out[i].rate_bps = ingest_sampler.rate_bps[i];
    }
    pthread_mutex_unlock(&ingest_sampler.lock);
}

/* ---- the document ----------------------------------------------------------------- */

static int site_cmp(const void *x, const void *y)
{
    const site_row *a = x, *b = y;
    int c = strcmp(a->id, b->id);
    return c ? c : b->advertised - a->advertised; /* the advertised row of an ID first */
}

static int end_cmp(const void *x, const void *y)
{
    const end_row *a = x, *b = y;
    int c = strcmp(a->a, b->a);
    if (!c)
        c = strcmp(a->b, b->b);
    return c ? c : a->end - b->end;
}

static json_t *sites_json(snapshot *s)
{
    json_t *out = json_array();
    qsort(s->sites, s->nsites, sizeof *s->sites, site_cmp);
    for (size_t i = 0; i < s->nsites; i++) {
        site_row *r = &s->sites[i];
        if (i > 0 && strcmp(r->id, s->sites[i - 1].id) == 0)
            continue;
        json_t *age = r->advertised ? json_integer((json_int_t)r->age_ms) : json_null();
        json_t *saes = r->saes ? json_incref(r->saes) : json_array();
        json_t *why = r->reachable ? json_null() : json_string(r->why_not);
        json_array_append_new(out,
                              json_pack("{s:s,s:b,s:b,s:b,s:o,s:o,s:o}", "id", r->id, "self",
                                        strcmp(r->id, s->self) == 0, "advertised", r->advertised, "reachable",
                                        r->reachable, "unreachable_reason", why, "advert_age_ms", age, "saes", saes));
    }
    return out;
}

/* One end of a link: this KME's read live, another's from its advert. */
static json_t *end_json(kme_context *k, const char *kme, const char *other, const end_row *adv, const local_end *local,
                        int *up, uint64_t *stock, uint64_t *rate)
{
    int li = strcmp(kme, k->cfg.kme_id) == 0 ? kme_config_link_index(&k->cfg, other) : -1;
    if (li >= 0 && li < KME_MAX_LINKS) {
        const local_end *l = &local[li];
        *up = l->up;
        *stock = l->have_stock ? l->stock_bytes : adv ? adv->stock_bytes : 0;
        *rate = l->have_rate ? l->rate_bps : adv ? adv->rate_bps : 0;
        return json_pack("{s:s,s:s,s:b,s:I,s:I,s:I}", "kme", kme, "source", "live", "up", *up, "stock_bytes",
                         (json_int_t)*stock, "rate_bps", (json_int_t)*rate, "ingested_bytes",
                         (json_int_t)l->ingested_bytes);
    }
    *up = adv ? adv->up : 0;
    *stock = adv ? adv->stock_bytes : 0;
    *rate = adv ? adv->rate_bps : 0;
    return json_pack("{s:s,s:s,s:b,s:I,s:I}", "kme", kme, "source", adv ? "advert" : "none", "up", *up, "stock_bytes",
                     (json_int_t)*stock, "rate_bps", (json_int_t)*rate);
}

/* What the drawing colours a link by: down, dry (no key either way), low
 * (an end below the stock the routes prefer), ok. */
static const char *link_state(int up, uint64_t total, uint64_t least, uint64_t low)
{
    return !up ? "down" : total == 0 ? "dry" : least < low ? "low" : "ok";
}

static json_t *links_json(kme_context *k, snapshot *s, const local_end *local)
{
    json_t *out = json_array();
    qsort(s->ends, s->nends, sizeof *s->ends, end_cmp);
    for (size_t i = 0; i < s->nends;) {
        const end_row *adv[2] = {NULL, NULL};
        size_t j = i;
        for (; j < s->nends && strcmp(s->ends[j].a, s->ends[i].a) == 0 && strcmp(s->ends[j].b, s->ends[i].b) == 0; j++)
            adv[s->ends[j].end] = &s->ends[j];
        const char *id[2] = {s->ends[i].a, s->ends[i].b};
        json_t *ends = json_array();
        int up = 1;
        uint64_t total = 0, least = UINT64_MAX, rate = 0;
        for (int e = 0; e < 2; e++) {
            int end_up;
            uint64_t stock, end_rate;
            json_array_append_new(ends, end_json(k, id[e], id[1 - e], adv[e], local, &end_up, &stock, &end_rate));
            up = up && end_up;
            total += stock;
            least = stock < least ? stock : least;
            rate = end_rate > rate ? end_rate : rate;
        }
        json_array_append_new(out, json_pack("{s:s,s:s,s:b,s:s,s:I,s:I,s:o}", "a", id[0], "b", id[1], "up", up, "state",
                                             link_state(up, total, least, s->low_stock_bytes), "stock_bytes",
                                             (json_int_t)total, "rate_bps", (json_int_t)rate, "ends", ends));
        i = j;
    }
    return out;
}

static json_t *relays_json(kme_context *k)
{
    relay_event ev[STATUS_RELAYS_MAX];
    size_t n = kme_metrics_recent_relays(k, ev, STATUS_RELAYS_MAX);
    json_t *out = json_array();
    for (size_t i = 0; i < n && i < STATUS_RELAYS_MAX; i++)
        json_array_append_new(out, json_pack("{s:o,s:I,s:s,s:s,s:I,s:I,s:f,s:b}", "at", utc_time(ev[i].at_ms), "at_ms",
                                             (json_int_t)ev[i].at_ms, "dest", ev[i].dest, "via", ev[i].via, "keys",
                                             (json_int_t)ev[i].keys, "bytes", (json_int_t)ev[i].bytes, "seconds",
                                             ev[i].seconds, "ok", ev[i].ok));
    return out;
}

/* The key economy: each SAE's class, weight, link key charged, refusals
 * by reason and its shares of scarce links. */
static void economy_row_json(void *ctx, const economy_view *v)
{
    json_t *out = ((void **)ctx)[0];
    kme_context *k = ((void **)ctx)[1];
    json_t *refused = json_object(), *shares = json_array();
    for (int r = 0; r < ECONOMY_REASONS; r++)
        json_object_set_new(refused, economy_reason_name((economy_reason)r), json_integer((json_int_t)v->refused[r]));
    size_t n = k->cfg.link_count < ECONOMY_MAX_LINKS ? k->cfg.link_count : ECONOMY_MAX_LINKS;
    for (size_t li = 0; li < n; li++)
        if (v->share_Bps[li] > 0)
            json_array_append_new(shares, json_pack("{s:s,s:I}", "link", k->net.links[li].lb.peer_id,
                                                    "bytes_per_second", (json_int_t)v->share_Bps[li]));
    json_array_append_new(out, json_pack("{s:s,s:s,s:I,s:I,s:o,s:o}", "sae", v->sae, "class", sae_class_name(v->cls),
                                         "weight", (json_int_t)v->weight, "charged_bytes", (json_int_t)v->charged,
                                         "refused", refused, "shares", shares));
}

static json_t *economy_json(kme_context *k)
{
    json_t *out = json_array();
    void *ctx[2] = {out, k};
    if (k->economy)
        economy_each_sae(k->economy, economy_row_json, ctx);
    return out;
}

/* The store's map usage and whether link ingest is paused at its high-water mark. */
static json_t *store_json(kme_context *k)
{
    store_usage u = {0};
    int ok = k->store.env && store_usage_read(&k->store, &u) == 0;
    return json_pack("{s:b,s:I,s:I,s:b}", "read", ok, "used_bytes", (json_int_t)u.used_bytes, "map_bytes",
                     (json_int_t)u.map_bytes, "above_high_water", k->store.env && store_above_high_water(&k->store));
}

char *status_json_text(kme_context *k, size_t *len)
{
    snapshot s = {.self = k->cfg.kme_id,
                  .hop_limit = router_hop_limit(&k->net),
                  .now_ms = clock_wall_ms(),
                  .low_stock_bytes = ROUTING_DEFAULT_LOW_STOCK_BYTES};
    s.routes = json_array();
    s.directory = json_object();
    s.conflicts = json_array();
    local_end *local = calloc(KME_MAX_LINKS, sizeof *local);
    char *text = NULL;
    if (s.routes && s.directory && s.conflicts && local) {
        router_inspect(&k->net, take_snapshot, &s);
        read_local_ends(k, s.now_ms, local);
    }
    json_t *root = NULL;
    if (!s.failed && local) {
        root = json_pack("{s:s,s:o,s:I,s:I,s:o,s:o,s:O,s:O,s:O,s:o,s:o,s:o}", "self", k->cfg.kme_id, "generated_at",
                         utc_time(s.now_ms), "generated_ms", (json_int_t)s.now_ms, "low_stock_bytes",
                         (json_int_t)s.low_stock_bytes, "sites", sites_json(&s), "links", links_json(k, &s, local),
                         "routes", s.routes, "directory", s.directory, "conflicts", s.conflicts, "relays",
                         relays_json(k), "economy", economy_json(k), "store", store_json(k));
    }
    size_t n = root ? json_dumpb(root, NULL, 0, JSON_COMPACT) : 0;
    if (n && (text = malloc(n + 1))) {
        json_dumpb(root, text, n, JSON_COMPACT);
        text[n] = '\0';
        *len = n;
    }
    json_decref(root);
    json_decref(s.routes);
    json_decref(s.directory);
    json_decref(s.conflicts);
    for (size_t i = 0; i < s.nsites; i++)
        json_decref(s.sites[i].saes);
    free(s.sites);
    free(s.ends);
    free(local);
    return text;
}
