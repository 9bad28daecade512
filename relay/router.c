/* Runs key routing for this KME: own advert, flooding, liveness, routes and
 * directory, their record in the store (see router.h). */
#include "relay/router.h"
#include "api/kme_relay.h"
#include "relay/advert_sign.h"
#include "relay/routing.h"
#include "runtime/clock.h"
#include "runtime/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ADVERT_INTERVAL_MS 1000  /* own advert to every neighbour (liveness) */
#define ADVERT_REFRESH_MS 300000 /* a new seq at least this often (well within the max age) */
#define ADVERT_STOCK_MIN_MS 1000 /* a new seq for stock or rate that moved, at most this often */
#define ADVERT_TIMEOUT_MS 2000   /* one advert POST */
#define FLOOD_QUEUE_MAX 1024

typedef struct {
    char origin[ETSI_ID_MAX + 1];
    long from; /* link it came in on; -1: none */
} flood_item;

struct router {
    pthread_mutex_t lock; /* everything below */
    pthread_cond_t wake;
    int woken;
    routing_db db;
    routing_table table;
    uint64_t seq; /* of the newest own advert */
    int64_t last_new_ms;
    int64_t last_beat_ms;               /* own advert last sent to every neighbour */
    int beat_now;                       /* a heartbeat at once: a neighbour we count down spoke */
    int link_class[RELAY_MAX_LINKS];    /* as in the newest own advert */
    atomic_int was_up[RELAY_MAX_LINKS]; /* our last advert POST to it succeeded */
    uint64_t last_ingested[RELAY_MAX_LINKS];
    uint64_t rate_bps[RELAY_MAX_LINKS];
    int64_t last_rate_ms;
    flood_item queue[FLOOD_QUEUE_MAX];
    size_t nqueue;
    routing_sae *known; /* last known site of every SAE ever learned, sorted by SAE */
    size_t nknown;
    int known_changed;
    routing_conflict *conflicts; /* of the routes last computed, as logged */
    size_t nconflicts;
    struct {
        char origin[ETSI_ID_MAX + 1];
        int64_t at_ms;
    } flooded[ROUTING_MAX_KMES]; /* when an advert of each origin was last passed on */
    size_t nflooded;
    advert_signer *signer; /* signs the own advert, checks the others' */
    char *recorded;        /* the JSON last written to the store */
    pthread_t thread;
    int started;
};

static int sae_cmp(const void *a, const void *b)
{
    return strcmp(((const routing_sae *)a)->sae, ((const routing_sae *)b)->sae);
}

/* Remembers where sae is; under r->lock. */
static void know(struct router *r, const char *sae, const char *kme)
{
    routing_sae key;
    snprintf(key.sae, sizeof key.sae, "%s", sae);
    routing_sae *e = r->nknown ? bsearch(&key, r->known, r->nknown, sizeof *r->known, sae_cmp) : NULL;
    if (e) {
        if (strcmp(e->kme, kme) != 0) {
            snprintf(e->kme, sizeof e->kme, "%s", kme);
            r->known_changed = 1;
        }
        return;
    }
    routing_sae *grown = realloc(r->known, (r->nknown + 1) * sizeof *grown);
    if (!grown)
        return;
    r->known = grown;
    snprintf(key.kme, sizeof key.kme, "%s", kme);
    r->known[r->nknown++] = key;
    qsort(r->known, r->nknown, sizeof *r->known, sae_cmp);
    r->known_changed = 1;
}

/* The claimants of the conflict over sae in c (n entries, sorted by SAE)
 * and what became of it, for the log. */
static void describe_conflict(const routing_conflict *c, size_t n, const char *sae, char *out, size_t len)
{
    size_t at = 0;
    const char *kept = "";
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c[i].sae, sae) != 0)
            continue;
        kept = c[i].kept;
        at += (size_t)snprintf(out + at, at < len ? len - at : 0, "%s%s", at ? " and " : "", c[i].dropped);
    }
    if (kept[0])
        snprintf(out + (at < len ? at : len), at < len ? len - at : 0,
                 "; %s keeps it (its host first learned), any other claim is refused", kept);
    else
        snprintf(out + (at < len ? at : len), at < len ? len - at : 0, "; no claim is used");
}

static int has_conflict(const routing_conflict *c, size_t n, const routing_conflict *x)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(c[i].sae, x->sae) == 0 && strcmp(c[i].kept, x->kept) == 0 && strcmp(c[i].dropped, x->dropped) == 0)
            return 1;
    return 0;
}

/* Distinct SAEs among n conflicts (sorted by SAE). */
static size_t conflict_saes(const routing_conflict *c, size_t n)
{
    size_t saes = 0;
    for (size_t i = 0; i < n; i++)
        saes += i == 0 || strcmp(c[i].sae, c[i - 1].sae) != 0;
    return saes;
}

/* Raises the alarm for conflicts that are new since the routes were last
 * computed (a log line naming the SAE and the KMEs that claim it, and the
 * daemon's count) and notes those that ended. Under r->lock. */
static void note_conflicts(relay_node *k, struct router *r)
{
    const routing_conflict *now = r->table.conflicts;
    size_t n = r->table.conflict_count;
    char text[512];
    for (size_t i = 0, j; i < n; i = j) {
        int changed = 0;
        for (j = i; j < n && strcmp(now[j].sae, now[i].sae) == 0; j++)
            changed |= !has_conflict(r->conflicts, r->nconflicts, &now[j]);
        if (!changed)
            continue;
        char claimants[400];
        describe_conflict(now, n, now[i].sae, claimants, sizeof claimants);
        snprintf(text, sizeof text, "%s%s%s", now[i].kept, now[i].kept[0] ? " and " : "", claimants);
        log_warn("routing: SAE %s is claimed by more than one KME: %s", now[i].sae, text);
    }
    for (size_t i = 0; i < r->nconflicts; i++) {
        int still = 0;
        for (size_t j = 0; j < n && !still; j++)
            still = strcmp(now[j].sae, r->conflicts[i].sae) == 0;
        if (!still && (i == 0 || strcmp(r->conflicts[i].sae, r->conflicts[i - 1].sae) != 0))
            log_info("routing: SAE %s is claimed by one KME again", r->conflicts[i].sae);
    }
    routing_conflict *copy = n ? malloc(n * sizeof *copy) : NULL;
    if (n && !copy)
        return; /* told again next time */
    if (n)
        memcpy(copy, now, n * sizeof *copy);
    free(r->conflicts);
    r->conflicts = copy;
    r->nconflicts = n;
    if (k->hooks.sae_conflicts)
        k->hooks.sae_conflicts(k->hooks.ctx, conflict_saes(now, n));
}

static void recompute(relay_node *k, struct router *r)
{
    routing_table_clear(&r->table);
    /* Where each SAE was first learned settles a conflict over it. */
    if (routing_compute_prior(&r->db, k->cfg.kme_id, r->known, r->nknown, &r->table) != 0)
        log_error("routing: could not compute the routes");
    for (size_t i = 0; i < r->table.sae_count; i++)
        know(r, r->table.saes[i].sae, r->table.saes[i].kme);
    note_conflicts(k, r);
}

/* Under r->lock. */
static void wake(struct router *r)
{
    r->woken = 1;
    pthread_cond_signal(&r->wake);
}

static void wake_thread(struct router *r)
{
    pthread_mutex_lock(&r->lock);
    wake(r);
    pthread_mutex_unlock(&r->lock);
}

/* ---- own advert -------------------------------------------------------------- */

/* 0 down, 1 up and dry, 2 up with little key, 3 up with key: what the route cost sees. */
static int link_class(const kme_advert_link *l, const routing_params *p)
{
    if (!l->up)
        return 0;
    return l->stock_bytes == 0 ? 1 : l->stock_bytes < p->low_stock_bytes ? 2 : 3;
}

static void build_own(relay_node *k, struct router *r, kme_advert *a)
{
    memset(a, 0, sizeof *a);
    snprintf(a->origin, sizeof a->origin, "%s", k->cfg.kme_id);
    int64_t now = clock_wall_ms();
    double dt = (double)(now - r->last_rate_ms) / 1000.0;
    MDB_txn *txn = NULL;
    if (store_read_begin(k->store, &txn))
        txn = NULL;
    for (size_t i = 0; i < k->cfg.link_count && i < KME_ADVERT_MAX_LINKS; i++) {
        relay_link *l = &k->links[i];
        kme_advert_link *al = &a->links[a->link_count++];
        snprintf(al->peer, sizeof al->peer, "%s", l->lb.peer_id);
        al->up = atomic_load(&l->peer_up) && !atomic_load(&l->source_down);
        lb_stock st;
        if (txn && lb_get_stock(k->store, txn, &l->lb, &st) == 0) {
            al->stock_bytes = st.owned_free;
            k->hooks.link_stock(k->hooks.ctx, l, &st);
        }
        uint64_t ingested = atomic_load(&l->ingested_bytes);
        if (dt >= 5.0 || r->last_rate_ms == 0) {
            r->rate_bps[i] = r->last_rate_ms ? (uint64_t)((double)(ingested - r->last_ingested[i]) * 8 / dt) : 0;
            r->last_ingested[i] = ingested;
        }
        al->rate_bps = r->rate_bps[i];
    }
    if (txn)
        mdb_txn_abort(txn);
    if (dt >= 5.0 || r->last_rate_ms == 0)
        r->last_rate_ms = now;
    char *const *saes;
    size_t nsaes = k->hooks.hosted_saes(k->hooks.ctx, &saes);
    for (size_t i = 0; i < nsaes && i < KME_ADVERT_MAX_SAES; i++)
        snprintf(a->saes[a->sae_count++], ETSI_ID_MAX + 1, "%s", saes[i]);
}

/* 1 when the SAEs of a differ from those of the own advert held (a reload
 * changed them). Under r->lock. */
static int saes_changed(relay_node *k, struct router *r, const kme_advert *a)
{
    const kme_advert *held = routing_db_find(&r->db, k->cfg.kme_id);
    if (!held || held->sae_count != a->sae_count)
        return 1;
    for (size_t i = 0; i < a->sae_count; i++)
        if (strcmp(held->saes[i], a->saes[i]) != 0)
            return 1;
    return 0;
}

/* Whether some link's stock or rate in a differs from what the newest own
 * advert says. Under r->lock. */
static int stock_moved(relay_node *k, struct router *r, const kme_advert *a)
{
    const kme_advert *held = routing_db_find(&r->db, k->cfg.kme_id);
    if (!held)
        return 1;
    for (size_t i = 0; i < a->link_count; i++) {
        const kme_advert_link *was = kme_advert_find_link(held, a->links[i].peer);
        if (!was)
            return 1;
        if (was->stock_bytes != a->links[i].stock_bytes || was->rate_bps != a->links[i].rate_bps)
            return 1;
    }
    return 0;
}

/* Makes a new own advert when something the routes depend on changed (a
 * link up or down, its stock class, the SAEs), when its stock or rate moved
 * (at most every ADVERT_STOCK_MIN_MS: the neighbours, whose grants follow
 * this end's stock, get it with the next heartbeat), or when the last is
 * getting old (ADVERT_REFRESH_MS). Only the first kind is passed on through
 * the network at once (router_advert_handle), so the adverts flooded follow
 * changes, not the clock: a quiet network refreshes each origin every few
 * minutes, whatever its size. 1 when a new one was made. Under r->lock. */
static int refresh_own(relay_node *k, struct router *r, kme_advert *a)
{
    int64_t now = clock_wall_ms();
    int relevant = saes_changed(k, r, a); /* to the routes: the SAEs, a link's class */
    int changed = relevant || now - r->last_new_ms >= ADVERT_REFRESH_MS ||
                  (now - r->last_new_ms >= ADVERT_STOCK_MIN_MS && stock_moved(k, r, a));
    for (size_t i = 0; i < a->link_count; i++) {
        int c = link_class(&a->links[i], &r->db.params);
        if (c != r->link_class[i]) {
            changed = relevant = 1;
            if ((c == 0) != (r->link_class[i] == 0) && r->link_class[i] >= 0)
                log_info("routing: link %s %s", a->links[i].peer, c ? "up" : "down");
            r->link_class[i] = c;
        }
    }
    if (!changed)
        return 0;
    r->seq = r->seq + 1 > (uint64_t)now ? r->seq + 1 : (uint64_t)now;
    a->seq = r->seq;
    a->age_ms = 0;
    if (advert_sign(r->signer, a) < 0)
        log_error("routing: could not sign the own advert; the neighbours will refuse it");
    if (routing_db_accept(&r->db, a, now) != ROUTING_NEW)
        log_error("routing: own advert refused");
    r->last_new_ms = now;
    if (relevant) /* the routes depend on classes, not on the figures */
        recompute(k, r);
    return 1;
}

/* ---- sending ------------------------------------------------------------------- */

static int post_advert(relay_node *k, size_t link, const char *body)
{
    peer_reply reply;
    int rc = peer_post(k->peers, link, "/kme/v1/advert", body, ADVERT_TIMEOUT_MS, &reply);
    int ok = rc == 0 && reply.http_status == 200;
    peer_reply_clear(&reply);
    return ok;
}

/* JSON of the advert held for origin, as it is to be sent now; NULL if none. */
static char *advert_text(struct router *r, const char *origin)
{
    kme_advert *a = malloc(sizeof *a);
    char *text = NULL;
    pthread_mutex_lock(&r->lock);
    if (a && routing_db_flood_copy(&r->db, origin, clock_wall_ms(), a) == 0)
        text = kme_advert_to_json(a);
    pthread_mutex_unlock(&r->lock);
    free(a);
    return text;
}

/* Every advert held, to a neighbour that just came up. */
static void send_all(relay_node *k, struct router *r, size_t link)
{
    char origins[ROUTING_MAX_KMES][ETSI_ID_MAX + 1];
    size_t n = 0;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->db.count; i++)
        snprintf(origins[n++], ETSI_ID_MAX + 1, "%s", r->db.entries[i]->advert.origin);
    pthread_mutex_unlock(&r->lock);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(origins[i], k->cfg.kme_id) == 0 || strcmp(origins[i], k->links[link].lb.peer_id) == 0)
            continue;
        char *text = advert_text(r, origins[i]);
        if (text)
            post_advert(k, link, text);
        etsi_text_free(text);
    }
}

/* Own advert to every neighbour; the answer tells whether the link is up. */
static void heartbeat(relay_node *k, struct router *r)
{
    char *own = advert_text(r, k->cfg.kme_id);
    if (!own)
        return;
    for (size_t i = 0; i < k->cfg.link_count; i++) {
        relay_link *l = &k->links[i];
        int ok = post_advert(k, i, own);
        int was = atomic_exchange(&l->peer_up, ok);
        if (ok && !atomic_exchange(&r->was_up[i], ok))
            send_all(k, r, i);
        if (!ok)
            atomic_store(&r->was_up[i], 0);
        if (was != ok)
            wake_thread(r);
    }
    etsi_text_free(own);
}

/* Passes on the adverts that arrived new, to every neighbour but their sender. */
static void flood(relay_node *k, struct router *r)
{
    flood_item items[64];
    for (;;) {
        size_t n;
        pthread_mutex_lock(&r->lock);
        n = r->nqueue < 64 ? r->nqueue : 64;
        memcpy(items, r->queue, n * sizeof items[0]);
        memmove(r->queue, r->queue + n, (r->nqueue - n) * sizeof items[0]);
        r->nqueue -= n;
        pthread_mutex_unlock(&r->lock);
        if (n == 0)
            return;
        for (size_t j = 0; j < n; j++) {
            char *text = advert_text(r, items[j].origin);
            for (size_t i = 0; text && i < k->cfg.link_count; i++)
                if ((long)i != items[j].from && strcmp(k->links[i].lb.peer_id, items[j].origin) != 0 &&
                    atomic_load(&k->links[i].peer_up))
                    post_advert(k, i, text);
            etsi_text_free(text);
        }
    }
}

/* ---- the record for operators ----------------------------------------------------- */

typedef struct {
    const char *text;
    const routing_sae *known; /* NULL: unchanged */
    size_t nknown;
} record_arg;

#define META_ROUTING "routing"
#define META_KNOWN "known_saes" /* SAE \0 KME \0 ... */

static int record_op(kme_store *s, MDB_txn *txn, void *arg)
{
    record_arg *a = arg;
    MDB_val key = {sizeof META_ROUTING - 1, META_ROUTING}, val = {strlen(a->text), (void *)a->text};
    if (mdb_put(txn, s->meta, &key, &val, 0))
        return -1;
    if (!a->known)
        return 0;
    size_t len = 0;
    for (size_t i = 0; i < a->nknown; i++)
        len += strlen(a->known[i].sae) + strlen(a->known[i].kme) + 2;
    MDB_val kk = {sizeof META_KNOWN - 1, META_KNOWN}, kv = {len, NULL};
    if (len == 0 || mdb_put(txn, s->meta, &kk, &kv, MDB_RESERVE))
        return len == 0 ? 0 : -1;
    char *p = kv.mv_data;
    for (size_t i = 0; i < a->nknown; i++)
        p += sprintf(p, "%s", a->known[i].sae) + 1, p += sprintf(p, "%s", a->known[i].kme) + 1;
    return 0;
}

/* The routes and the last known directory, for `kme --routes` and restarts. */
static void record(relay_node *k, struct router *r)
{
    pthread_mutex_lock(&r->lock);
    char *text = routing_table_to_json(&r->table);
    record_arg a = {text, NULL, 0};
    if (r->known_changed && (a.known = malloc((r->nknown ? r->nknown : 1) * sizeof *a.known))) {
        memcpy((routing_sae *)a.known, r->known, r->nknown * sizeof *a.known);
        a.nknown = r->nknown;
        r->known_changed = 0;
    }
    pthread_mutex_unlock(&r->lock);
    if (text && (!r->recorded || strcmp(text, r->recorded) != 0 || a.known)) {
        if (store_commit(k->store, record_op, &a) == 0) {
            etsi_text_free(r->recorded);
            r->recorded = text;
            text = NULL;
        } else if (a.known) {
            pthread_mutex_lock(&r->lock);
            r->known_changed = 1;
            pthread_mutex_unlock(&r->lock);
        }
    }
    etsi_text_free(text);
    free((routing_sae *)a.known);
}

/* The directory recorded before a restart. */
static void load_known(relay_node *k, struct router *r)
{
    MDB_txn *txn;
    if (store_read_begin(k->store, &txn))
        return;
    MDB_val key = {sizeof META_KNOWN - 1, META_KNOWN}, val;
    if (mdb_get(txn, k->store->meta, &key, &val) == 0) {
        const char *p = val.mv_data, *end = p + val.mv_size;
        while (p < end) {
            size_t sl = strnlen(p, (size_t)(end - p));
            const char *kme = p + sl + 1;
            if (kme >= end)
                break;
            size_t kl = strnlen(kme, (size_t)(end - kme));
            if (kme + kl >= end || sl > ETSI_ID_MAX || kl > ETSI_ID_MAX)
                break;
            char sae[ETSI_ID_MAX + 1], id[ETSI_ID_MAX + 1];
            memcpy(sae, p, sl + 1);
            memcpy(id, kme, kl + 1);
            know(r, sae, id);
            p = kme + kl + 1;
        }
    }
    mdb_txn_abort(txn);
    r->known_changed = 0;
}

int router_print_stored(kme_store *s, FILE *out, char *err, size_t errlen)
{
    MDB_txn *txn;
    int rc = -1;
    if (store_read_begin(s, &txn) == 0) {
        MDB_val key = {sizeof META_ROUTING - 1, META_ROUTING}, val;
        if (mdb_get(txn, s->meta, &key, &val) == 0) {
            fprintf(out, "%.*s\n", (int)val.mv_size, (const char *)val.mv_data);
            rc = 0;
        } else {
            snprintf(err, errlen, "no routes recorded yet: the KME has not run");
        }
        mdb_txn_abort(txn);
    } else {
        snprintf(err, errlen, "cannot read the store");
    }
    return rc;
}

/* ---- the thread ------------------------------------------------------------------ */

static void *router_main(void *arg)
{
    relay_node *k = arg;
    struct router *r = k->router;
    kme_advert *own = malloc(sizeof *own);
    if (!own)
        return NULL;
    while (!stop_signal_raised(&k->stop)) {
        build_own(k, r, own);
        pthread_mutex_lock(&r->lock);
        int own_new = refresh_own(k, r, own);
        if (routing_db_expire(&r->db, clock_wall_ms(), r->db.params.max_age_ms) > 0)
            recompute(k, r);
        pthread_mutex_unlock(&r->lock);
        /* The heartbeat once a second, and at once with a new own advert;
         * waking for adverts to pass on only passes them on. */
        int64_t now = clock_wall_ms();
        pthread_mutex_lock(&r->lock);
        int beat_now = r->beat_now;
        r->beat_now = 0;
        pthread_mutex_unlock(&r->lock);
        if (own_new || beat_now || now - r->last_beat_ms >= ADVERT_INTERVAL_MS || now < r->last_beat_ms) {
            r->last_beat_ms = now;
            heartbeat(k, r);
        }
        flood(k, r);
        record(k, r);

        int64_t left = r->last_beat_ms + ADVERT_INTERVAL_MS - clock_wall_ms();
        struct timespec until = clock_after_ms(CLOCK_REALTIME, left > 0 ? left : 0);
        pthread_mutex_lock(&r->lock);
        while (!r->woken && !stop_signal_raised(&k->stop))
            if (pthread_cond_timedwait(&r->wake, &r->lock, &until) == ETIMEDOUT)
                break;
        r->woken = 0;
        pthread_mutex_unlock(&r->lock);
    }
    free(own);
    return NULL;
}

int router_init(relay_node *k)
{
    struct router *r = calloc(1, sizeof *r);
    char err[512];
    if (!r)
        return -1;
    r->signer = advert_signer_new(k->cfg.kme_cert, k->cfg.kme_key, k->cfg.kme_ca, k->cfg.kme_id, err, sizeof err);
    if (!r->signer) {
        log_error("routing: %s", err);
        free(r);
        return -1;
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->wake, NULL);
    routing_db_init(&r->db, NULL);
    for (size_t i = 0; i < RELAY_MAX_LINKS; i++)
        r->link_class[i] = -1;
    load_known(k, r);
    /* The first advert and routes before any request is served. */
    kme_advert own;
    build_own(k, r, &own);
    refresh_own(k, r, &own);
    k->router = r;
    return 0;
}

int router_start(relay_node *k)
{
    struct router *r = k->router;
    if (!r || pthread_create(&r->thread, NULL, router_main, k) != 0)
        return -1;
    r->started = 1;
    return 0;
}

void router_stop(relay_node *k)
{
    struct router *r = k->router;
    if (!r)
        return;
    wake_thread(r);
    if (r->started)
        pthread_join(r->thread, NULL);
    routing_table_clear(&r->table);
    routing_db_clear(&r->db);
    etsi_text_free(r->recorded);
    free(r->known);
    free(r->conflicts);
    advert_signer_free(r->signer);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->wake);
    free(r);
    k->router = NULL;
}

void router_links_changed(relay_node *k)
{
    if (k->router)
        wake_thread(k->router);
}

/* ---- the KME port ------------------------------------------------------------------ */

/* Whether the adverts prev (NULL: none held) and a of one origin differ in
 * what the routes depend on: the SAEs, the links, their up flags and stock
 * classes. Stock and rate figures alone do not count. */
static int route_relevant(const kme_advert *prev, const kme_advert *a, const routing_params *params)
{
    if (!prev || prev->sae_count != a->sae_count || prev->link_count != a->link_count)
        return 1;
    for (size_t i = 0; i < a->sae_count; i++)
        if (strcmp(prev->saes[i], a->saes[i]) != 0)
            return 1;
    for (size_t i = 0; i < a->link_count; i++) {
        const kme_advert_link *was = kme_advert_find_link(prev, a->links[i].peer);
        if (!was || link_class(was, params) != link_class(&a->links[i], params))
            return 1;
    }
    return 0;
}

/* Whether a new advert of origin is passed on: when the routes depend on
 * what changed, or when none of origin's was passed on for half a refresh
 * period (so every KME's copy stays well within the max age). Stock that
 * moved within its class reaches the origin's neighbours (its heartbeat),
 * not the whole network. Under r->lock. */
static int pass_on_advert(struct router *r, const char *origin, int relevant, int64_t now)
{
    size_t i = 0;
    while (i < r->nflooded && strcmp(r->flooded[i].origin, origin) != 0)
        i++;
    if (i == r->nflooded) {
        if (r->nflooded == ROUTING_MAX_KMES)
            return 1;
        snprintf(r->flooded[i].origin, ETSI_ID_MAX + 1, "%s", origin);
        r->flooded[i].at_ms = INT64_MIN / 2;
        r->nflooded++;
    }
    if (!relevant && now - r->flooded[i].at_ms < ADVERT_REFRESH_MS / 2)
        return 0;
    r->flooded[i].at_ms = now;
    return 1;
}

void router_advert_handle(relay_node *k, relay_link *from, const http_request *req, http_response *resp)
{
    struct router *r = k->router;
    kme_advert *a = malloc(sizeof *a);
    etsi_problem p;
    if (!a) {
        http_error(resp, 503, "out of memory", NULL);
        return;
    }
    if (kme_advert_from_json(req->body, req->body_len, a, &p) < 0) {
        http_error(resp, 400, p.message, "%s", p.detail);
        free(a);
        return;
    }
    /* Its origin's signature before anything else (an advert already held,
     * signature and all, was checked when it came first). A refused advert
     * is neither stored nor passed on. */
    pthread_mutex_lock(&r->lock);
    const kme_advert *held = routing_db_find(&r->db, a->origin);
    int checked = held && advert_same_signed(held, a);
    pthread_mutex_unlock(&r->lock);
    char why[200];
    if (!checked && advert_verify(r->signer, a, why, sizeof why) < 0) {
        log_warn("routing: refused an advert from %s for origin %s: %s", from->lb.peer_id, a->origin, why);
        http_error(resp, 400, "advert not authentic", "advert for origin %s: %s", a->origin, why);
        free(a);
        return;
    }
    static const char *const outcome[] = {"new", "duplicate", "stale", "too old", "invalid", "full", "no memory"};
    pthread_mutex_lock(&r->lock);
    enum routing_accept res;
    int relevant = 0, came_up = 0;
    if (strcmp(a->origin, k->cfg.kme_id) != 0) {
        const kme_advert *prev = routing_db_find(&r->db, a->origin);
        const kme_advert_link *to_us = kme_advert_find_link(a, k->cfg.kme_id);
        const kme_advert_link *was = prev ? kme_advert_find_link(prev, k->cfg.kme_id) : NULL;
        relevant = route_relevant(prev, a, &r->db.params);
        came_up = !prev || (to_us && to_us->up && (!was || !was->up));
    }
    if (strcmp(a->origin, k->cfg.kme_id) == 0) {
        /* Our own, from before a restart: the next own advert must be newer. */
        if (a->seq > r->seq) {
            r->seq = a->seq;
            r->last_new_ms = 0;
            wake(r);
        }
        res = ROUTING_DUPLICATE;
    } else {
        res = routing_db_accept(&r->db, a, clock_wall_ms());
    }
    /* A neighbour this end counts down just spoke (it started, or came
     * back): the heartbeat that finds the link up goes at once, not up to a
     * second later. */
    if (!atomic_load(&from->peer_up)) {
        r->beat_now = 1;
        wake(r);
    }
    if (res == ROUTING_NEW) {
        if (relevant)
            recompute(k, r);
        /* The neighbour itself, its link to us just up (it may have
         * restarted): it gets the whole database on the next heartbeat. */
        if (strcmp(a->origin, from->lb.peer_id) == 0 && came_up)
            atomic_store(&r->was_up[from->index], 0);
        if (pass_on_advert(r, a->origin, relevant, clock_wall_ms()) && r->nqueue < FLOOD_QUEUE_MAX) {
            snprintf(r->queue[r->nqueue].origin, ETSI_ID_MAX + 1, "%s", a->origin);
            r->queue[r->nqueue++].from = (long)from->index;
            wake(r);
        }
    }
    pthread_mutex_unlock(&r->lock);
    if (res == ROUTING_INVALID || res == ROUTING_NOMEM || res == ROUTING_FULL) {
        http_error(resp, res == ROUTING_INVALID ? 400 : 503, "advert not taken", "%s", outcome[res]);
    } else {
        resp->status = 200;
        resp->body = etsi_error_to_json(outcome[res], NULL);
    }
    free(a);
}

/* ---- lookups ------------------------------------------------------------------------ */

int router_locate_sae(relay_node *k, const char *sae, char kme_out[ETSI_ID_MAX + 1])
{
    if (relay_hosts_sae(k, sae))
        return 1;
    struct router *r = k->router;
    int found = 0;
    pthread_mutex_lock(&r->lock);
    const char *kme = routing_locate_sae(&r->table, sae);
    if (!kme) { /* its site is unreachable now: where it was last seen */
        routing_sae key;
        snprintf(key.sae, sizeof key.sae, "%s", sae);
        const routing_sae *e = r->nknown ? bsearch(&key, r->known, r->nknown, sizeof *r->known, sae_cmp) : NULL;
        kme = e ? e->kme : NULL;
    }
    if (kme && strcmp(kme, k->cfg.kme_id) != 0) {
        snprintf(kme_out, ETSI_ID_MAX + 1, "%s", kme);
        found = 2;
    }
    pthread_mutex_unlock(&r->lock);
    return found;
}

relay_link *router_next_hop(relay_node *k, const char *dest, unsigned *hops)
{
    struct router *r = k->router;
    relay_link *l = NULL;
    pthread_mutex_lock(&r->lock);
    const routing_route *route = routing_route_to(&r->table, dest);
    if (route) {
        int i = relay_link_index(k, route->next_hop);
        if (i >= 0) {
            l = &k->links[i];
            if (hops)
                *hops = route->hops;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return l;
}

unsigned router_hop_limit(relay_node *k)
{
    struct router *r = k->router;
    size_t known = 1;
    if (r) {
        pthread_mutex_lock(&r->lock);
        known += r->table.route_count;
        pthread_mutex_unlock(&r->lock);
    }
    unsigned ceiling = k->cfg.relay_max_hops > 0 ? (unsigned)k->cfg.relay_max_hops : KME_RELAY_MAX_HOPS;
    return known < ceiling ? (unsigned)known : ceiling;
}

int router_kme_hosts(relay_node *k, const char *kme_id, const char *sae)
{
    if (strcmp(kme_id, k->cfg.kme_id) == 0)
        return relay_hosts_sae(k, sae);
    struct router *r = k->router;
    int hosts = -1;
    if (!r)
        return hosts; /* no routing yet: nothing learned */
    pthread_mutex_lock(&r->lock);
    const kme_advert *a = routing_db_find(&r->db, kme_id);
    if (a) {
        hosts = 0;
        for (size_t i = 0; i < a->sae_count && !hosts; i++)
            hosts = strcmp(a->saes[i], sae) == 0;
    }
    /* A claim the directory refused (another KME hosts that SAE) is not believed. */
    for (size_t i = 0; i < r->table.conflict_count && hosts == 1; i++)
        if (strcmp(r->table.conflicts[i].sae, sae) == 0 && strcmp(r->table.conflicts[i].dropped, kme_id) == 0)
            hosts = 0;
    pthread_mutex_unlock(&r->lock);
    return hosts;
}

int router_advertised_stock(relay_node *k, const char *kme_id, const char *peer, uint64_t *bytes)
{
    struct router *r = k->router;
    int rc = -1;
    pthread_mutex_lock(&r->lock);
    const kme_advert *a = routing_db_find(&r->db, kme_id);
    const kme_advert_link *l = a ? kme_advert_find_link(a, peer) : NULL;
    if (l) {
        *bytes = l->stock_bytes;
        rc = 0;
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int router_route_stock(relay_node *k, const char *dest, uint64_t *bytes)
{
    unsigned limit = router_hop_limit(k);
    struct router *r = k->router;
    int rc = -1;
    if (!r)
        return rc;
    pthread_mutex_lock(&r->lock);
    const routing_route *route = routing_route_to(&r->table, dest);
    if (route && route->hops <= limit) {
        rc = 0;
        *bytes = UINT64_MAX;
        for (uint32_t i = 1; i < route->hops && rc == 0; i++) {
            const kme_advert *a = routing_db_find(&r->db, route->path[i]);
            const kme_advert_link *l = a ? kme_advert_find_link(a, route->path[i + 1]) : NULL;
            if (!l)
                rc = -1;
            else if (l->stock_bytes < *bytes)
                *bytes = l->stock_bytes;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

void router_inspect(relay_node *k, void (*fn)(void *ctx, const routing_db *db, const routing_table *table), void *ctx)
{
    struct router *r = k->router;
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    fn(ctx, &r->db, &r->table);
    pthread_mutex_unlock(&r->lock);
}
