/* Link-key stock ahead of demand: load, take, refill and ageing (see key_stock.h). */
#include "relay/key_stock.h"
#include "relay/msg_auth.h"
#include "relay/relay.h"
#include "relay/reserve.h"
#include "relay/router.h"
#include "relay/routing.h"
#include "store/key_records.h"
#include "runtime/clock.h"
#include "runtime/log.h"
#include "api/kme_msgs.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>

#define STOCK_MIN_BYTES 2048      /* stock at least this much key per pair in use */
#define STOCK_MAX_BYTES (4 << 20) /* and at most this much */
#define STOCK_LEAD_SECONDS 4.0    /* keep this many seconds of demand in stock */
#define STOCK_KEY_MAX 256

/* Store key: peer \0 master \0 slave \0 be32 size | be64 created_ms | key_ID */
static size_t pair_prefix(unsigned char *buf, const char *peer, const char *master, const char *slave, long size_bits)
{
    size_t n = 0, len;
    const char *parts[3] = {peer, master, slave};
    for (int i = 0; i < 3; i++) {
        len = strlen(parts[i]);
        memcpy(buf + n, parts[i], len + 1);
        n += len + 1;
    }
    unsigned char be[8];
    store_put_be64(be, (uint64_t)size_bits);
    memcpy(buf + n, be + 4, 4);
    return n + 4;
}

static stock_pair *find_pair(relay_dest *l, const char *master, const char *slave, long size_bits, int create)
{
    for (size_t i = 0; i < l->stock_pairs; i++) {
        stock_pair *p = &l->stock[i];
        if (p->size_bits == size_bits && strcmp(p->master, master) == 0 && strcmp(p->slave, slave) == 0)
            return p;
    }
    if (!create || l->stock_pairs >= STOCK_MAX_PAIRS)
        return NULL;
    /* One master cannot take every pair of the dest (sizes are its choice). */
    size_t of_master = 0;
    for (size_t i = 0; i < l->stock_pairs; i++)
        of_master += strcmp(l->stock[i].master, master) == 0;
    if (of_master >= STOCK_MAX_PAIRS_PER_MASTER)
        return NULL;
    stock_pair *p = &l->stock[l->stock_pairs++];
    memset(p, 0, sizeof *p);
    snprintf(p->master, sizeof p->master, "%s", master);
    snprintf(p->slave, sizeof p->slave, "%s", slave);
    p->size_bits = size_bits;
    p->last_round_ms = clock_wall_ms();
    return p;
}

/* ---- load and ageing ------------------------------------------------------ */

typedef struct {
    relay_node *k;
    relay_dest *d; /* NULL: every dest (at start) */
    int64_t cutoff_ms;
    long dropped;
} age_arg;

/* Drops stock older than the cutoff and (re)counts what is left per pair,
 * for one dest or for all. */
static int age_op(kme_store *s, MDB_txn *txn, void *arg)
{
    age_arg *a = arg;
    a->dropped = 0;
    if (a->d)
        for (size_t i = 0; i < a->d->stock_pairs; i++)
            a->d->stock[i].count = 0;
    const char *peer = a->d ? a->d->id : "";
    size_t plen = a->d ? strlen(peer) + 1 : 0;
    MDB_cursor *c;
    if (mdb_cursor_open(txn, s->stock, &c))
        return -1;
    MDB_val k = {plen, (void *)peer}, v;
    int rc = mdb_cursor_get(c, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0 && k.mv_size > plen && memcmp(k.mv_data, peer, plen) == 0) {
        relay_dest *d = a->d;
        if (!d) {
            size_t dlen = strnlen(k.mv_data, k.mv_size);
            char id[ETSI_ID_MAX + 1];
            if (dlen > ETSI_ID_MAX || dlen == k.mv_size)
                id[0] = '\0';
            else
                memcpy(id, k.mv_data, dlen + 1);
            d = id[0] ? relay_dest_get(a->k, id, 1) : NULL;
            plen = dlen + 1;
        }
        const char *master = (const char *)k.mv_data + plen;
        size_t mlen = strnlen(master, k.mv_size - plen);
        const char *slave = master + mlen + 1;
        size_t slen = strnlen(slave, k.mv_size - plen - mlen - 1);
        const unsigned char *tail = (const unsigned char *)slave + slen + 1;
        if (!d || (size_t)(tail - (const unsigned char *)k.mv_data) + 4 + 8 + UUID_STR_LEN != k.mv_size) {
            rc = mdb_cursor_del(c, 0); /* not ours: drop */
        } else {
            long size_bits =
                (long)((uint32_t)tail[0] << 24 | (uint32_t)tail[1] << 16 | (uint32_t)tail[2] << 8 | tail[3]);
            int64_t created = (int64_t)store_get_be64(tail + 4);
            if (created < a->cutoff_ms) {
                a->dropped++;
                rc = mdb_cursor_del(c, 0);
            } else {
                stock_pair *p = find_pair(d, master, slave, size_bits, 1);
                if (p)
                    p->count++;
                rc = 0;
            }
        }
        if (rc == 0)
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        if (!a->d)
            plen = 0;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : -1;
}

static int age_dest(relay_node *k, relay_dest *d)
{
    age_arg a = {k, d, clock_wall_ms() - k->cfg.stock_max_age_s * 1000, 0};
    pthread_mutex_lock(&d->stock_lock); /* counts are rebuilt: no take meanwhile */
    int rc = store_commit(k->store, age_op, &a);
    pthread_mutex_unlock(&d->stock_lock);
    if (a.dropped)
        log_info("stock for %s: dropped %ld keys older than %ld s", d->id, a.dropped, k->cfg.stock_max_age_s);
    return rc;
}

long stock_drop_all(relay_node *k, relay_dest *d)
{
    age_arg a = {k, d, INT64_MAX, 0};
    pthread_mutex_lock(&d->stock_lock);
    int rc = store_commit(k->store, age_op, &a);
    pthread_mutex_unlock(&d->stock_lock);
    return rc == 0 ? a.dropped : -1;
}

int stock_load(relay_node *k)
{
    for (size_t i = 0; i < k->cfg.link_count; i++)
        if (!relay_dest_get(k, k->cfg.links[i].peer_id, 1))
            return -1;
    /* Before any other thread runs: the counts need no lock here. */
    age_arg a = {k, NULL, clock_wall_ms() - k->cfg.stock_max_age_s * 1000, 0};
    int rc = store_commit(k->store, age_op, &a);
    if (a.dropped)
        log_info("dropped %ld stock keys older than %ld s", a.dropped, k->cfg.stock_max_age_s);
    return rc;
}

/* ---- demand and take -------------------------------------------------------- */

void stock_note_demand(relay_node *k, relay_dest *l, const char *master, const char *slave, long size_bits, long number)
{
    if (k->cfg.stock_max_keys <= 0)
        return;
    pthread_mutex_lock(&l->stock_lock);
    stock_pair *p = find_pair(l, master, slave, size_bits, 1);
    if (p) {
        p->taken += number;
        p->last_demand_ms = clock_wall_ms();
    }
    pthread_mutex_unlock(&l->stock_lock);
}

long stock_count(relay_dest *l, const char *master, const char *slave, long size_bits)
{
    pthread_mutex_lock(&l->stock_lock);
    stock_pair *p = find_pair(l, master, slave, size_bits, 0);
    long n = p ? p->count : 0;
    pthread_mutex_unlock(&l->stock_lock);
    return n;
}

static size_t sealed_stride(const stock_take_arg *a)
{
    return 8 + (size_t)a->size_bits / 8 + SEAL_OVERHEAD;
}

int stock_take_op(kme_store *s, MDB_txn *txn, void *arg)
{
    (void)s;
    stock_take_arg *a = arg;
    etsi_key_container_clear(a->out); /* from an earlier run of this batch */
    free(a->sealed);
    a->out->keys = calloc((size_t)a->number, sizeof *a->out->keys);
    a->sealed = malloc((size_t)a->number * sealed_stride(a));
    if (!a->out->keys || !a->sealed)
        return -1;
    MDB_cursor *c;
    if (mdb_cursor_open(txn, s->stock, &c))
        return -1;
    MDB_val k = {a->plen, a->prefix}, v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && (long)a->out->count < a->number) {
        if (k.mv_size != a->plen + 8 + UUID_STR_LEN || memcmp(k.mv_data, a->prefix, a->plen) != 0 ||
            v.mv_size != (size_t)a->size_bits / 8 + SEAL_OVERHEAD)
            break;
        etsi_key *key = &a->out->keys[a->out->count];
        unsigned char *at = a->sealed + a->out->count * sealed_stride(a);
        memcpy(at, (const char *)k.mv_data + a->plen, 8);
        memcpy(at + 8, v.mv_data, v.mv_size);
        memcpy(key->key_id, (const char *)k.mv_data + a->plen + 8, UUID_STR_LEN);
        key->key_id[UUID_STR_LEN] = '\0';
        a->out->count++;
        if (mdb_cursor_del(c, 0))
            break;
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT); /* after a delete: the record that followed */
    }
    mdb_cursor_close(c);
    return (long)a->out->count == a->number ? 0 : 1;
}

int stock_take_finish(kme_store *s, stock_take_arg *a, int rc)
{
    size_t key_len = (size_t)a->size_bits / 8;
    for (size_t i = 0; rc == 0 && i < a->out->count; i++) {
        etsi_key *key = &a->out->keys[i];
        const unsigned char *at = a->sealed + i * sealed_stride(a);
        unsigned char id[sizeof a->prefix + 8 + UUID_STR_LEN];
        memcpy(id, a->prefix, a->plen);
        memcpy(id + a->plen, at, 8);
        memcpy(id + a->plen + 8, key->key_id, UUID_STR_LEN);
        key->key_len = key_len;
        key->key = malloc(key_len ? key_len : 1);
        if (!key->key || store_open_sealed(s, SEAL_DB_STOCK, id, a->plen + 8 + UUID_STR_LEN, at + 8,
                                           key_len + SEAL_OVERHEAD, key->key))
            rc = -1; /* never served: the whole take fails like a store failure */
    }
    free(a->sealed);
    a->sealed = NULL;
    if (rc != 0)
        etsi_key_container_clear(a->out);
    return rc == 0 ? 0 : -1;
}

long stock_hold(relay_node *k, relay_dest *l, const char *master, const char *slave, long size_bits, long number)
{
    if (k->cfg.stock_max_keys <= 0)
        return 0;
    pthread_mutex_lock(&l->stock_lock);
    stock_pair *p = find_pair(l, master, slave, size_bits, 0);
    long held = p ? (p->count < number ? p->count : number) : 0;
    if (held > 0)
        p->count -= held;
    pthread_mutex_unlock(&l->stock_lock);
    return held;
}

void stock_unhold(relay_dest *l, const char *master, const char *slave, long size_bits, long held)
{
    if (held <= 0)
        return;
    pthread_mutex_lock(&l->stock_lock);
    stock_pair *p = find_pair(l, master, slave, size_bits, 1);
    if (p)
        p->count += held;
    pthread_mutex_unlock(&l->stock_lock);
}

void stock_take_prepare(relay_dest *l, const char *master, const char *slave, long size_bits, long held,
                        etsi_key_container *out, stock_take_arg *a)
{
    memset(out, 0, sizeof *out);
    a->plen = pair_prefix(a->prefix, l->id, master, slave, size_bits);
    a->number = held;
    a->size_bits = size_bits;
    a->out = out;
    a->sealed = NULL;
}

int stock_take_held(relay_node *k, relay_dest *l, const char *master, const char *slave, long size_bits, long held,
                    etsi_key_container *out)
{
    stock_take_arg a;
    stock_take_prepare(l, master, slave, size_bits, held, out, &a);
    int rc = store_commit(k->store, stock_take_op, &a);
    if (stock_take_finish(k->store, &a, rc) != 0 && rc == 0) {
        /* Taken from the store but not opened: gone, and none served. */
        return -1;
    }
    if (rc != 0) {
        etsi_key_container_clear(out);
        stock_unhold(l, master, slave, size_bits, held);
        if (rc > 0)
            log_warn("stock for %s: %s -> %s was shorter than counted", l->id, master, slave);
        return -1;
    }
    stock_note_claims(l, out);
    return 0;
}

/* ---- refill ---------------------------------------------------------------------- */

typedef struct {
    unsigned char prefix[3 * (ETSI_ID_MAX + 1) + 4];
    size_t plen;
    const etsi_key_container *keys;
    int64_t created_ms;
} put_arg;

static int put_op(kme_store *s, MDB_txn *txn, void *arg)
{
    put_arg *a = arg;
    unsigned char kb[sizeof a->prefix + 8 + UUID_STR_LEN];
    memcpy(kb, a->prefix, a->plen);
    store_put_be64(kb + a->plen, (uint64_t)a->created_ms);
    seal_epoch ep = store_stock_epoch((const char *)a->prefix, a->created_ms); /* the prefix starts with the dest */
    for (size_t i = 0; i < a->keys->count; i++) {
        memcpy(kb + a->plen + 8, a->keys->keys[i].key_id, UUID_STR_LEN);
        MDB_val k = {a->plen + 8 + UUID_STR_LEN, kb};
        if (store_put_sealed(s, txn, s->stock, SEAL_DB_STOCK, &k, a->keys->keys[i].key, a->keys->keys[i].key_len,
                             MDB_NOOVERWRITE, &ep))
            return -1;
    }
    return 0;
}

/* Target stock for a pair: a few seconds of its recent demand, within bounds
 * in keys (stock_max_keys) and in bytes. */
static long target_of(const relay_node *k, const stock_pair *p)
{
    double key_bytes = (double)p->size_bits / 8;
    double t = p->rate * STOCK_LEAD_SECONDS;
    double lo = STOCK_MIN_BYTES / key_bytes, hi = STOCK_MAX_BYTES / key_bytes;
    if (t < lo)
        t = lo;
    if (t > hi)
        t = hi;
    if (t > (double)k->cfg.stock_max_keys)
        t = (double)k->cfg.stock_max_keys;
    return t < 1 ? 1 : (long)t;
}

static long refill_pair(relay_node *k, relay_dest *l, const stock_pair *snap, long number)
{
    long most = relay_limits(k).max_key_per_request;
    if (number > most)
        number = most;
    const char *slaves[1] = {snap->slave};
    etsi_key_container keys = {NULL, 0};
    http_response err = {0, NULL, 0};
    int rc;
    if (l->link) {
        reserve_request r = {snap->master, NULL, 0, slaves, 1, number, snap->size_bits, k->cfg.stock_max_age_s, 0};
        rc = reserve_link_keys(k, l->link, &r, &keys, &err);
    } else {
        rc = kr_fill_random(&keys, number, snap->size_bits);
        if (rc == 0)
            rc = relay_keys_to(k, l->id, snap->master, slaves, 1, &keys, k->cfg.stock_max_age_s, &err);
    }
    etsi_text_free(err.body);
    if (rc != 0) {
        etsi_key_container_clear(&keys);
        return 0;
    }
    put_arg a;
    a.plen = pair_prefix(a.prefix, l->id, snap->master, snap->slave, snap->size_bits);
    a.keys = &keys;
    a.created_ms = clock_wall_ms();
    rc = store_commit(k->store, put_op, &a);
    etsi_key_container_clear(&keys);
    if (rc != 0) {
        log_error("stock for %s: could not store %ld keys; they are lost", l->id, number);
        return 0;
    }
    pthread_mutex_lock(&l->stock_lock);
    stock_pair *p = find_pair(l, snap->master, snap->slave, snap->size_bits, 1);
    if (p)
        p->count += number;
    pthread_mutex_unlock(&l->stock_lock);
    return number;
}

/* Frees the place of every pair that holds no key and that nobody asked for
 * within stock_max_age_s, so that pairs once asked for do not keep others
 * out for good. */
static void free_idle_pairs(relay_node *k, relay_dest *l, int64_t now)
{
    pthread_mutex_lock(&l->stock_lock);
    for (size_t i = 0; i < l->stock_pairs; i++) {
        stock_pair *p = &l->stock[i];
        if (p->count == 0 && now - p->last_demand_ms > k->cfg.stock_max_age_s * 1000)
            l->stock[i--] = l->stock[--l->stock_pairs];
    }
    pthread_mutex_unlock(&l->stock_lock);
}

long stock_refill_once(relay_node *k, relay_dest *l)
{
    if (k->cfg.stock_max_keys <= 0)
        return 0;
    free_idle_pairs(k, l, clock_wall_ms());
    relay_link *first = l->link ? l->link : router_next_hop(k, l->id, NULL);
    if (!first || (l->link && !atomic_load(&l->link->peer_up)))
        return 0;
    int64_t now = clock_wall_ms();
    stock_pair want[STOCK_MAX_PAIRS];
    long amount[STOCK_MAX_PAIRS];
    size_t n = 0;
    int need_ageing = 0;
    pthread_mutex_lock(&l->stock_lock);
    for (size_t i = 0; i < l->stock_pairs; i++) {
        stock_pair *p = &l->stock[i];
        double dt = (double)(now - p->last_round_ms) / 1000.0;
        if (dt >= 1.0) {
            double r = (double)p->taken / dt;
            p->rate = p->rate == 0 ? r : 0.5 * p->rate + 0.5 * r;
            p->taken = 0;
            p->last_round_ms = now;
        }
        int idle = now - p->last_demand_ms > k->cfg.stock_max_age_s * 1000;
        long target = target_of(k, p);
        if (!idle && p->count < target / 2 + 1) {
            want[n] = *p;
            amount[n++] = target - p->count;
        }
        if (idle && p->count > 0)
            need_ageing = 1;
    }
    pthread_mutex_unlock(&l->stock_lock);
    long added = 0;
    /* Ahead of demand, a link's last key is not taken: what the route cost
     * calls little key stays for requests, and the routes do not swing to a
     * path that stock has just drained. */
    long budget = n ? reserve_available_keys(k, first, 8) - (long)ROUTING_DEFAULT_LOW_STOCK_BYTES : 0;
    for (size_t i = 0; budget > 0 && i < n; i++) {
        long key_bytes = (want[i].size_bits + 7) / 8, most = budget / key_bytes;
        long number = amount[i] < most ? amount[i] : most;
        if (number <= 0)
            continue;
        long got = refill_pair(k, l, &want[i], number);
        budget -= got * key_bytes;
        added += got;
    }
    if (need_ageing)
        age_dest(k, l);
    return added;
}

/* ---- claims ---------------------------------------------------------------------- */

#define CLAIMS_MAX 65536 /* beyond this the oldest are not told (they expire later) */

void stock_note_claims(relay_dest *l, const etsi_key_container *keys)
{
    int64_t now = (int64_t)time(NULL);
    pthread_mutex_lock(&l->stock_lock);
    if (l->nclaims + keys->count > l->claims_cap && l->nclaims + keys->count <= CLAIMS_MAX) {
        size_t cap = (l->nclaims + keys->count) * 2;
        relay_claim *grown = realloc(l->claims, cap * sizeof *grown);
        if (grown) {
            l->claims = grown;
            l->claims_cap = cap;
        }
    }
    for (size_t i = 0; i < keys->count && l->nclaims < l->claims_cap; i++) {
        memcpy(l->claims[l->nclaims].key_id, keys->keys[i].key_id, UUID_STR_LEN + 1);
        l->claims[l->nclaims++].at = now;
    }
    pthread_mutex_unlock(&l->stock_lock);
}

typedef struct {
    relay_link *in; /* the link a claim came in on (NULL: made here) */
    const kme_claimed *in_msg;
    relay_link *out;
    kme_claimed *out_msg; /* sealed with link key of out */
} claim_seal_arg;

/* Takes the MAC keys of the claims that came in (when they did) and seals
 * them on the next link, in one commit. */
static int claim_seal_op(kme_store *s, MDB_txn *txn, void *arg)
{
    claim_seal_arg *a = arg;
    int rc = a->in ? auth_take(s, txn, &a->in->lb, AUTH_CLAIMED, a->in_msg) : LM_OK;
    if (rc == LM_OK)
        rc = auth_seal_from_link(s, txn, &a->out->lb, AUTH_CLAIMED, a->out_msg, NULL);
    return rc;
}

int stock_send_claims(relay_node *k, relay_dest *l)
{
    kme_claimed c;
    memset(&c, 0, sizeof c);
    relay_link *via = l->link;
    if (!via) {
        via = router_next_hop(k, l->id, NULL);
        snprintf(c.dest, sizeof c.dest, "%s", l->id);
    }
    if (!via)
        return -1;
    pthread_mutex_lock(&l->stock_lock);
    size_t n = l->nclaims < 1024 ? l->nclaims : 1024;
    if (n) {
        c.key_ids = calloc(n, sizeof *c.key_ids);
        c.at = calloc(n, sizeof *c.at);
        if (c.key_ids && c.at) {
            for (size_t i = 0; i < n; i++) {
                memcpy(c.key_ids[i], l->claims[i].key_id, UUID_STR_LEN + 1);
                c.at[i] = l->claims[i].at;
            }
            c.count = n;
        }
    }
    pthread_mutex_unlock(&l->stock_lock);
    if (c.count == 0) {
        kme_claimed_clear(&c);
        return 0;
    }
    /* A MAC from link key owned on the first link; the answer carries no
     * tag: a forged one can only make this end tell the claims again, or not
     * at all (the keys then expire later, as untold claims do). */
    claim_seal_arg sa = {NULL, NULL, via, &c};
    if (store_commit(k->store, claim_seal_op, &sa) != 0) {
        kme_claimed_clear(&c);
        return -1;
    }
    char *body = kme_claimed_to_json(&c);
    peer_reply reply;
    int rc = body ? peer_post(k->peers, via->index, "/kme/v1/claimed", body, k->cfg.peer_timeout_ms, &reply) : -1;
    etsi_text_free(body);
    int sent = rc == 0 && reply.http_status == 200;
    if (body)
        peer_reply_clear(&reply);
    if (sent) {
        pthread_mutex_lock(&l->stock_lock);
        memmove(l->claims, l->claims + n, (l->nclaims - n) * sizeof *l->claims);
        l->nclaims -= n;
        pthread_mutex_unlock(&l->stock_lock);
    }
    kme_claimed_clear(&c);
    return sent ? (int)n : -1;
}

typedef struct {
    relay_link *in;
    const kme_claimed *c;
    long ttl;
} claimed_arg;

static int claimed_op(kme_store *s, MDB_txn *txn, void *arg)
{
    claimed_arg *a = arg;
    if (auth_take(s, txn, &a->in->lb, AUTH_CLAIMED, a->c) != LM_OK)
        return -1;
    for (size_t i = 0; i < a->c->count; i++) {
        int rc = kr_shorten_expiry(s, txn, a->c->key_ids[i], a->c->at[i] + a->ttl);
        if (rc != KR_OK && rc != KR_UNKNOWN) /* fetched already: nothing to do */
            return -1;
    }
    return 0;
}

/* Claims for a KME further on: their MAC is taken and a new one made on the
 * next link in one commit, then they are passed on. */
static void pass_claims_on(relay_node *k, relay_link *from, const kme_claimed *c, http_response *resp)
{
    relay_link *via = router_next_hop(k, c->dest, NULL);
    if (!via || via == from) {
        http_error(resp, 503, "no route", "%s has no route to %s", k->cfg.kme_id, c->dest);
        return;
    }
    kme_claimed out = *c; /* the same claims (shared arrays), a MAC of its own */
    claim_seal_arg sa = {from, c, via, &out};
    if (store_commit(k->store, claim_seal_op, &sa) != 0) {
        http_error(resp, 503, "key store failure", "the claims could not be passed on");
        return;
    }
    char *body = kme_claimed_to_json(&out);
    peer_reply reply;
    memset(&reply, 0, sizeof reply);
    if (!body) {
        http_error(resp, 503, "out of memory", NULL);
    } else if (peer_post(k->peers, via->index, "/kme/v1/claimed", body, k->cfg.peer_timeout_ms, &reply) < 0) {
        http_error(resp, 503, "peer KME unreachable", "KME %s could not be reached: %s", via->lb.peer_id, reply.error);
    } else {
        resp->status = reply.http_status == 200 ? 200 : 503;
        resp->body = etsi_error_to_json(reply.http_status == 200 ? "committed" : "not recorded further on", NULL);
    }
    etsi_text_free(body);
    peer_reply_clear(&reply);
}

void stock_claimed_handle(relay_node *k, relay_link *from, const http_request *req, http_response *resp)
{
    kme_claimed c;
    etsi_problem p;
    if (kme_claimed_from_json(req->body, req->body_len, &c, &p) < 0) {
        http_error(resp, 400, p.message, "%s", p.detail);
        return;
    }
    /* The tag before anything else; nothing changes for a bad one. */
    int arc = auth_check(k->store, &from->lb, AUTH_CLAIMED, &c, NULL);
    if (arc != LM_OK) {
        auth_check_error(resp, arc, AUTH_CLAIMED, from->lb.peer_id);
    } else if (c.dest[0] && strcmp(c.dest, k->cfg.kme_id) != 0) {
        pass_claims_on(k, from, &c, resp); /* stock relayed from further away */
    } else {
        claimed_arg a = {from, &c, k->cfg.key_ttl_seconds};
        if (store_commit(k->store, claimed_op, &a) != 0) {
            http_error(resp, 503, "key store failure", "the claims could not be recorded");
        } else {
            resp->status = 200;
            resp->body = etsi_error_to_json("committed", NULL);
        }
    }
    kme_claimed_clear(&c);
}
