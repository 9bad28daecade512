/* The link-state database, the shortest-path computation over it and the
 * application directory (see routing.h). */
#include "relay/routing.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

routing_params routing_params_default(void)
{
    routing_params p = {
        .max_age_ms = ROUTING_DEFAULT_MAX_AGE_MS,
        .low_stock_bytes = ROUTING_DEFAULT_LOW_STOCK_BYTES,
        .low_stock_penalty = ROUTING_DEFAULT_LOW_STOCK_PENALTY,
        .empty_penalty = ROUTING_DEFAULT_EMPTY_PENALTY,
    };
    return p;
}

/* ---- link-state database ---------------------------------------------------- */

void routing_db_init(routing_db *db, const routing_params *params)
{
    memset(db, 0, sizeof *db);
    db->params = params ? *params : routing_params_default();
}

void routing_db_clear(routing_db *db)
{
    for (size_t i = 0; i < db->count; i++)
        free(db->entries[i]);
    db->count = 0;
}

/* Index of origin in the sorted entries, or where it would go (*found 0). */
static size_t db_search(const routing_db *db, const char *origin, int *found)
{
    size_t lo = 0, hi = db->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(db->entries[mid]->advert.origin, origin);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static enum routing_accept db_insert(routing_db *db, size_t at, const kme_advert *a, int64_t now_ms)
{
    if (db->count == ROUTING_MAX_KMES)
        return ROUTING_FULL;
    routing_entry *e = malloc(sizeof *e);
    if (!e)
        return ROUTING_NOMEM;
    e->advert = *a;
    e->recv_ms = now_ms;
    memmove(&db->entries[at + 1], &db->entries[at], (db->count - at) * sizeof db->entries[0]);
    db->entries[at] = e;
    db->count++;
    return ROUTING_NEW;
}

enum routing_accept routing_db_accept(routing_db *db, const kme_advert *a, int64_t now_ms)
{
    if (kme_advert_validate(a, NULL) < 0)
        return ROUTING_INVALID;
    if (a->age_ms > db->params.max_age_ms)
        return ROUTING_TOO_OLD;
    int found;
    size_t at = db_search(db, a->origin, &found);
    if (!found)
        return db_insert(db, at, a, now_ms);
    routing_entry *e = db->entries[at];
    if (a->seq == e->advert.seq)
        return ROUTING_DUPLICATE;
    if (a->seq < e->advert.seq)
        return ROUTING_STALE;
    e->advert = *a;
    e->recv_ms = now_ms;
    return ROUTING_NEW;
}

/* Age of an entry at now_ms: age at receipt plus the time held (a clock that
 * went back counts as no time held). */
static uint64_t entry_age(const routing_entry *e, int64_t now_ms)
{
    uint64_t held = now_ms > e->recv_ms ? (uint64_t)now_ms - (uint64_t)e->recv_ms : 0;
    return e->advert.age_ms + held;
}

size_t routing_db_expire(routing_db *db, int64_t now_ms, uint64_t max_age_ms)
{
    size_t kept = 0, dropped = 0;
    for (size_t i = 0; i < db->count; i++) {
        if (entry_age(db->entries[i], now_ms) > max_age_ms) {
            free(db->entries[i]);
            dropped++;
        } else {
            db->entries[kept++] = db->entries[i];
        }
    }
    db->count = kept;
    return dropped;
}

const kme_advert *routing_db_find(const routing_db *db, const char *origin)
{
    int found;
    size_t at = db_search(db, origin, &found);
    return found ? &db->entries[at]->advert : NULL;
}

int routing_db_flood_copy(const routing_db *db, const char *origin, int64_t now_ms, kme_advert *out)
{
    int found;
    size_t at = db_search(db, origin, &found);
    if (!found)
        return -1;
    *out = db->entries[at]->advert;
    out->age_ms = entry_age(db->entries[at], now_ms);
    return 0;
}

/* ---- graph ------------------------------------------------------------------ */

/* Node i of the graph is db->entries[i]: indices follow the order of KME IDs. */
#define NO_NODE UINT32_MAX

typedef struct {
    uint64_t dist[ROUTING_MAX_KMES];
    uint32_t hops[ROUTING_MAX_KMES];
    uint32_t pred[ROUTING_MAX_KMES];
    uint8_t done[ROUTING_MAX_KMES];
} spt; /* shortest-path tree */

static uint64_t edge_cost(const routing_params *p, const kme_advert_link *l)
{
    if (l->stock_bytes == 0)
        return 1 + (uint64_t)p->empty_penalty;
    if (l->stock_bytes < p->low_stock_bytes)
        return 1 + (uint64_t)p->low_stock_penalty;
    return 1;
}

/* The node at the far end of u's link l when both ends advertise it up. */
static uint32_t usable_peer(const routing_db *db, uint32_t u, const kme_advert_link *l)
{
    int found;
    if (!l->up)
        return NO_NODE;
    size_t v = db_search(db, l->peer, &found);
    if (!found)
        return NO_NODE;
    const kme_advert_link *back = kme_advert_find_link(&db->entries[v]->advert, db->entries[u]->advert.origin);
    return back && back->up ? (uint32_t)v : NO_NODE;
}

/* Nodes from the root to v in order; returns how many. */
static size_t chain(const spt *t, uint32_t v, uint32_t out[ROUTING_MAX_KMES])
{
    size_t n = t->hops[v] + 1;
    for (size_t i = n; i-- > 0; v = t->pred[v])
        out[i] = v;
    return n;
}

/* Is the path to v through u (same cost and hops as v's current path) the
 * smaller sequence of KME IDs? */
static int lex_smaller_via(const spt *t, uint32_t u, uint32_t v)
{
    uint32_t a[ROUTING_MAX_KMES], b[ROUTING_MAX_KMES];
    size_t n = chain(t, u, a);
    chain(t, t->pred[v], b);
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return a[i] < b[i];
    return 0;
}

static void relax(spt *t, uint32_t u, uint32_t v, uint64_t cost)
{
    uint64_t d = t->dist[u] + cost;
    uint32_t h = t->hops[u] + 1;
    if (t->done[v] || d > t->dist[v])
        return;
    if (d == t->dist[v] && (h > t->hops[v] || (h == t->hops[v] && !lex_smaller_via(t, u, v))))
        return;
    t->dist[v] = d;
    t->hops[v] = h;
    t->pred[v] = u;
}

static uint32_t closest_open(const spt *t, size_t n)
{
    uint32_t best = NO_NODE;
    for (uint32_t i = 0; i < n; i++)
        if (!t->done[i] && t->dist[i] != UINT64_MAX && (best == NO_NODE || t->dist[i] < t->dist[best]))
            best = i;
    return best;
}

static void dijkstra(const routing_db *db, uint32_t root, spt *t)
{
    for (size_t i = 0; i < ROUTING_MAX_KMES; i++) {
        t->dist[i] = UINT64_MAX;
        t->hops[i] = 0;
        t->pred[i] = NO_NODE;
        t->done[i] = 0;
    }
    t->dist[root] = 0;
    for (uint32_t u; (u = closest_open(t, db->count)) != NO_NODE;) {
        t->done[u] = 1;
        const kme_advert *a = &db->entries[u]->advert;
        for (size_t i = 0; i < a->link_count; i++) {
            uint32_t v = usable_peer(db, u, &a->links[i]);
            if (v != NO_NODE)
                relax(t, u, v, edge_cost(&db->params, &a->links[i]));
        }
    }
}

/* ---- table ------------------------------------------------------------------ */

static int fill_route(const routing_db *db, const spt *t, uint32_t v, routing_route *r)
{
    uint32_t nodes[ROUTING_MAX_KMES];
    size_t n = chain(t, v, nodes);
    r->path = calloc(n, sizeof *r->path);
    if (!r->path)
        return -1;
    for (size_t i = 0; i < n; i++)
        memcpy(r->path[i], db->entries[nodes[i]]->advert.origin, sizeof r->path[i]);
    memcpy(r->dest, r->path[n - 1], sizeof r->dest);
    memcpy(r->next_hop, r->path[1], sizeof r->next_hop);
    r->cost = t->dist[v];
    r->hops = t->hops[v];
    return 0;
}

static int fill_routes(const routing_db *db, const spt *t, uint32_t root, routing_table *table)
{
    table->routes = calloc(db->count, sizeof *table->routes);
    if (!table->routes)
        return -1;
    for (uint32_t v = 0; v < db->count; v++) {
        if (v == root || !t->done[v])
            continue;
        if (fill_route(db, t, v, &table->routes[table->route_count]) < 0)
            return -1;
        table->route_count++;
    }
    return 0;
}

static int claim_cmp(const void *x, const void *y)
{
    const routing_sae *a = x, *b = y;
    int c = strcmp(a->sae, b->sae);
    return c ? c : strcmp(a->kme, b->kme);
}

/* Every (SAE, KME) claim of the KMEs whose adverts db holds, sorted; *reach
 * (as many) says whether the claiming KME is reachable from the root. */
static routing_sae *collect_claims(const routing_db *db, const spt *t, size_t *count, uint8_t **reach)
{
    size_t total = 0;
    for (size_t v = 0; v < db->count; v++)
        total += db->entries[v]->advert.sae_count;
    routing_sae *claims = calloc(total ? total : 1, sizeof *claims);
    if (!claims)
        return NULL;
    size_t n = 0;
    for (size_t v = 0; v < db->count; v++) {
        const kme_advert *a = &db->entries[v]->advert;
        for (size_t i = 0; i < a->sae_count; i++, n++) {
            memcpy(claims[n].sae, a->saes[i], sizeof claims[n].sae);
            memcpy(claims[n].kme, a->origin, sizeof claims[n].kme);
        }
    }
    qsort(claims, n, sizeof *claims, claim_cmp);
    *reach = calloc(n ? n : 1, 1);
    if (!*reach) {
        free(claims);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        int found;
        size_t v = db_search(db, claims[i].kme, &found);
        (*reach)[i] = found && t->done[v];
    }
    *count = n;
    return claims;
}

static int prior_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const routing_sae *)elem)->sae);
}

/* The KME prior names for sae, or NULL. */
static const char *prior_of(const routing_sae *prior, size_t nprior, const char *sae)
{
    const routing_sae *e = nprior ? bsearch(sae, prior, nprior, sizeof *prior, prior_cmp) : NULL;
    return e ? e->kme : NULL;
}

/* The directory: an SAE claimed by one KME is placed there when that KME is
 * reachable. An SAE claimed by several is a conflict: only the KME prior
 * places it at (the first learned) keeps it; with none, no claim is used. */
static int fill_directory(const routing_db *db, const spt *t, const routing_sae *prior, size_t nprior,
                          routing_table *table)
{
    size_t n;
    uint8_t *reach = NULL;
    routing_sae *claims = collect_claims(db, t, &n, &reach);
    if (!claims)
        return -1;
    table->conflicts = calloc(n ? n : 1, sizeof *table->conflicts);
    if (!table->conflicts) {
        free(claims);
        free(reach);
        return -1;
    }
    size_t kept = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && strcmp(claims[j].sae, claims[i].sae) == 0)
            j++;
        size_t keep = SIZE_MAX;
        if (j - i == 1) {
            keep = i;
        } else {
            const char *first = prior_of(prior, nprior, claims[i].sae);
            for (size_t c = i; c < j && first && keep == SIZE_MAX; c++)
                if (strcmp(claims[c].kme, first) == 0)
                    keep = c;
            for (size_t c = i; c < j; c++) {
                if (c == keep)
                    continue;
                routing_conflict *cf = &table->conflicts[table->conflict_count++];
                memcpy(cf->sae, claims[c].sae, sizeof cf->sae);
                if (keep != SIZE_MAX)
                    memcpy(cf->kept, claims[keep].kme, sizeof cf->kept);
                memcpy(cf->dropped, claims[c].kme, sizeof cf->dropped);
            }
        }
        if (keep != SIZE_MAX && reach[keep])
            claims[kept++] = claims[keep];
        i = j;
    }
    free(reach);
    table->saes = claims;
    table->sae_count = kept;
    return 0;
}

int routing_compute(const routing_db *db, const char *self_id, routing_table *table)
{
    return routing_compute_prior(db, self_id, NULL, 0, table);
}

int routing_compute_prior(const routing_db *db, const char *self_id, const routing_sae *prior, size_t nprior,
                          routing_table *table)
{
    memset(table, 0, sizeof *table);
    if (!self_id || !etsi_id_is_valid(self_id))
        return -1;
    memcpy(table->self_id, self_id, strlen(self_id) + 1);
    int found;
    size_t root = db_search(db, self_id, &found);
    if (!found)
        return 0;
    spt *t = malloc(sizeof *t);
    if (!t)
        return -1;
    dijkstra(db, (uint32_t)root, t);
    int rc = fill_routes(db, t, (uint32_t)root, table) < 0 || fill_directory(db, t, prior, nprior, table) < 0 ? -1 : 0;
    free(t);
    if (rc < 0)
        routing_table_clear(table);
    return rc;
}

void routing_table_clear(routing_table *table)
{
    for (size_t i = 0; i < table->route_count; i++)
        free(table->routes[i].path);
    free(table->routes);
    free(table->saes);
    free(table->conflicts);
    memset(table, 0, sizeof *table);
}

/* ---- look-ups ------------------------------------------------------------------ */

static int route_key_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const routing_route *)elem)->dest);
}

static int sae_key_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const routing_sae *)elem)->sae);
}

const routing_route *routing_route_to(const routing_table *table, const char *dest_kme)
{
    if (!table->route_count || !dest_kme)
        return NULL;
    return bsearch(dest_kme, table->routes, table->route_count, sizeof *table->routes, route_key_cmp);
}

const char *routing_next_hop(const routing_table *table, const char *dest_kme)
{
    const routing_route *r = routing_route_to(table, dest_kme);
    return r ? r->next_hop : NULL;
}

const char *routing_locate_sae(const routing_table *table, const char *sae)
{
    if (!table->sae_count || !sae)
        return NULL;
    const routing_sae *s = bsearch(sae, table->saes, table->sae_count, sizeof *table->saes, sae_key_cmp);
    return s ? s->kme : NULL;
}

/* ---- operator view ------------------------------------------------------------- */

static json_t *route_to_json(const routing_route *r)
{
    json_t *path = json_array();
    for (uint32_t i = 0; i <= r->hops; i++)
        json_array_append_new(path, json_string(r->path[i]));
    return json_pack("{s:s,s:s,s:I,s:I,s:o}", "dest", r->dest, "next_hop", r->next_hop, "cost", (json_int_t)r->cost,
                     "hops", (json_int_t)r->hops, "path", path);
}

char *routing_table_to_json(const routing_table *table)
{
    json_t *routes = json_array();
    json_t *directory = json_object();
    json_t *conflicts = json_array();
    for (size_t i = 0; i < table->route_count; i++)
        json_array_append_new(routes, route_to_json(&table->routes[i]));
    for (size_t i = 0; i < table->sae_count; i++)
        json_object_set_new(directory, table->saes[i].sae, json_string(table->saes[i].kme));
    for (size_t i = 0; i < table->conflict_count; i++) {
        const routing_conflict *c = &table->conflicts[i];
        json_array_append_new(conflicts,
                              json_pack("{s:s,s:o,s:s}", "sae", c->sae, "kept",
                                        c->kept[0] ? json_string(c->kept) : json_null(), "dropped", c->dropped));
    }
    json_t *root = json_pack("{s:s,s:o,s:o,s:o}", "self", table->self_id, "routes", routes, "directory", directory,
                             "conflicts", conflicts);
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return text;
}
