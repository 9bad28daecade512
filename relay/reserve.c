/* Both ends of the link-key reservation: carve-commit-tell on the owner,
 * check-commit on the neighbour (see reserve.h). */
#include "relay/reserve.h"
#include "api/kme_msgs.h"
#include "store/key_records.h"
#include "runtime/log.h"
#include "relay/router.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>

#define MAX_RANGES_PER_KEY 256

enum { RESERVE_SHORT = 2, RESERVE_FAILED = 3, RESERVE_REPLAY = 4, RESERVE_INVALID = 5, RESERVE_REUSED = 6 };

/* ---- owner side --------------------------------------------------------------- */

typedef struct {
    relay_link *l;
    const reserve_request *r;
    etsi_key_container *out;
    kme_reserve_request *msg;
} alloc_arg;

static int alloc_op(kme_store *s, MDB_txn *txn, void *arg)
{
    alloc_arg *a = arg;
    size_t key_bytes = (size_t)a->r->size_bits / 8;
    a->msg->range_count = 0;
    for (size_t i = 0; i < a->out->count; i++) {
        size_t nr = 0, room = a->r->number * MAX_RANGES_PER_KEY - a->msg->range_count;
        int rc = lb_allocate(s, txn, &a->l->lb, key_bytes, a->out->keys[i].key, a->msg->ranges + a->msg->range_count,
                             room < MAX_RANGES_PER_KEY ? room : MAX_RANGES_PER_KEY, &nr);
        if (rc == LB_SHORT)
            return RESERVE_SHORT;
        if (rc != LB_OK)
            return RESERVE_FAILED;
        a->msg->keys[i].first_range = a->msg->range_count;
        a->msg->keys[i].nranges = nr;
        a->msg->range_count += nr;
        if (a->r->local_count) {
            key_record rec;
            kr_fill(&rec, a->out->keys[i].key_id, a->r->master, a->r->local_slaves, a->r->local_count, a->msg->expires,
                    a->out->keys[i].key, key_bytes);
            if (kr_put(s, txn, &rec) != KR_OK)
                return RESERVE_FAILED;
        }
    }
    return 0;
}

typedef struct {
    relay_link *l;
    const kme_reserve_request *msg; /* its local key records go too (may be NULL) */
    const kme_range *ranges;
    size_t nranges;
    const char *doubt_id;
    enum reserve_undo kind;
} undo_arg;

static size_t doubt_key(unsigned char *buf, const char *peer_id, const char *key_id)
{
    size_t n = strlen(peer_id) + 1;
    memcpy(buf, peer_id, n);
    memcpy(buf + n, key_id, UUID_STR_LEN);
    return n + UUID_STR_LEN;
}

/* Undoes what the neighbour did not confirm; local records always go. */
static int undo_op(kme_store *s, MDB_txn *txn, void *arg)
{
    undo_arg *a = arg;
    for (size_t i = 0; a->msg && i < a->msg->key_count; i++)
        if (kr_delete(s, txn, a->msg->keys[i].key_id) != KR_OK)
            return -1;
    if (a->kind == RESERVE_UNDO_RELEASE)
        return lb_release(s, txn, &a->l->lb, a->ranges, a->nranges) != LB_OK ? -1 : 0;
    if (a->kind == RESERVE_UNDO_DOUBT) {
        unsigned char kb[ETSI_ID_MAX + 1 + UUID_STR_LEN];
        MDB_val k = {doubt_key(kb, a->l->lb.peer_id, a->doubt_id), kb},
                v = {a->nranges * sizeof(kme_range), (void *)a->ranges};
        return mdb_put(txn, s->in_doubt, &k, &v, 0) ? -1 : 0;
    }
    return 0;
}

int reserve_settle_ranges(relay_node *k, relay_link *l, const kme_range *ranges, size_t n, const char *doubt_id,
                          enum reserve_undo kind)
{
    if (kind == RESERVE_UNDO_SPEND)
        return 0;
    undo_arg u = {l, NULL, ranges, n, doubt_id, kind};
    return store_commit(k->store, undo_op, &u);
}

static int prepare(const reserve_request *r, etsi_key_container *out, kme_reserve_request *msg)
{
    memset(out, 0, sizeof *out);
    out->keys = calloc((size_t)r->number, sizeof *out->keys);
    msg->keys = calloc((size_t)r->number, sizeof *msg->keys);
    msg->ranges = calloc((size_t)r->number * MAX_RANGES_PER_KEY, sizeof *msg->ranges);
    if (!out->keys || !msg->keys || !msg->ranges)
        return -1;
    for (long i = 0; i < r->number; i++) {
        etsi_key *key = &out->keys[i];
        key->key_len = (size_t)r->size_bits / 8;
        key->key = calloc(1, key->key_len);
        if (!key->key || uuid_generate(key->key_id) < 0)
            return -1;
        out->count++;
        memcpy(msg->keys[i].key_id, key->key_id, sizeof key->key_id);
    }
    msg->key_count = out->count;
    return 0;
}

int reserve_link_keys(relay_node *k, relay_link *l, const reserve_request *r, etsi_key_container *out,
                      http_response *resp)
{
    kme_reserve_request msg;
    memset(&msg, 0, sizeof msg);
    snprintf(msg.master, sizeof msg.master, "%s", r->master);
    for (size_t i = 0; i < r->peer_count; i++)
        snprintf(msg.slaves[msg.slave_count++], ETSI_ID_MAX + 1, "%s", r->peer_slaves[i]);
    msg.size_bits = r->size_bits;
    msg.expires = (int64_t)time(NULL) + k->cfg.key_ttl_seconds + r->extra_ttl_s;

    if (prepare(r, out, &msg) < 0) {
        http_error(resp, 503, "out of memory", NULL);
        goto fail;
    }
    alloc_arg a = {l, r, out, &msg};
    int rc = store_commit(k->store, alloc_op, &a);
    if (rc == RESERVE_SHORT) {
        /* Counted after the refused attempt, which changed nothing. */
        long available = reserve_available_keys(k, l, r->size_bits) + r->also_available;
        http_error(resp, 503, "not enough key material",
                   "%ld keys of %ld bits are available for the slave's site now; %ld were requested", available,
                   r->size_bits, r->number + r->also_available);
        goto fail;
    }
    if (rc != 0) {
        http_error(resp, 503, "key store failure", "the keys could not be reserved");
        goto fail;
    }

    char *body = kme_reserve_request_to_json(&msg);
    peer_reply reply;
    rc = body ? peer_post(k->peers, l->index, "/kme/v1/reserve", body, k->cfg.peer_timeout_ms, &reply) : -1;
    etsi_text_free(body);
    if (rc == 0 && reply.http_status == 200) {
        atomic_store(&l->peer_up, 1);
        peer_reply_clear(&reply);
        kme_reserve_request_clear(&msg);
        return 0;
    }
    atomic_store(&l->peer_up, rc == 0);
    /* The neighbour did not take the keys. A refusal (400, 503) or a request
     * that never left means it recorded nothing; a lost answer is settled
     * later (reserve_resolve_once); anything else leaves the bytes spent. */
    undo_arg u = {l, &msg, msg.ranges, msg.range_count, msg.keys[0].key_id, RESERVE_UNDO_SPEND};
    if (rc < 0)
        u.kind = reply.not_sent ? RESERVE_UNDO_RELEASE : RESERVE_UNDO_DOUBT;
    else if (reply.http_status == 503 || reply.http_status == 400)
        u.kind = RESERVE_UNDO_RELEASE;
    static const char *const outcome[] = {"released", "bytes spent", "in doubt until the neighbour answers"};
    if (store_commit(k->store, undo_op, &u) != 0)
        log_error("link %s: could not undo a reservation; its bytes stay spent", l->lb.peer_id);
    log_warn("link %s: reservation of %ld keys refused (%s); %s", l->lb.peer_id, r->number,
             rc < 0           ? reply.error
             : reply.error[0] ? reply.error
                              : "error",
             outcome[u.kind]);
    if (rc < 0)
        http_error(resp, 503, "peer KME unreachable", "KME %s could not be reached: %s", l->lb.peer_id, reply.error);
    else
        http_error(resp, 503, "peer KME refused the keys", "KME %s answered %ld: %s", l->lb.peer_id, reply.http_status,
                   reply.error);
    peer_reply_clear(&reply);
fail:
    etsi_key_container_clear(out);
    kme_reserve_request_clear(&msg);
    return -1;
}

long reserve_available_keys(relay_node *k, relay_link *l, long size_bits)
{
    MDB_txn *txn;
    lb_stock st;
    if (store_read_begin(k->store, &txn))
        return 0;
    long n = lb_get_stock(k->store, txn, &l->lb, &st) == 0 ? (long)(st.owned_free / ((uint64_t)size_bits / 8)) : 0;
    mdb_txn_abort(txn);
    return n;
}

/* ---- neighbour side ----------------------------------------------------------- */

typedef struct {
    relay_node *k;
    relay_link *l;
    const kme_reserve_request *msg;
} take_arg;

static int take_op(kme_store *s, MDB_txn *txn, void *arg)
{
    take_arg *a = arg;
    const kme_reserve_request *m = a->msg;
    size_t key_bytes = (size_t)m->size_bits / 8;
    MDB_val k0 = {UUID_STR_LEN, (void *)m->keys[0].key_id}, v0;
    if (mdb_get(txn, s->keys, &k0, &v0) == 0)
        return RESERVE_REPLAY; /* the same message again: already committed */
    unsigned char *buf = malloc(key_bytes);
    if (!buf)
        return RESERVE_FAILED;
    const char *slaves[KME_MAX_SLAVES];
    for (size_t i = 0; i < m->slave_count; i++)
        slaves[i] = m->slaves[i];
    int64_t max_expiry = (int64_t)time(NULL) + a->k->cfg.key_ttl_seconds + a->k->cfg.stock_max_age_s;
    int rc = 0;
    for (size_t i = 0; i < m->key_count && rc == 0; i++) {
        int lrc = lb_take_peer_ranges(s, txn, &a->l->lb, m->ranges + m->keys[i].first_range, m->keys[i].nranges, buf);
        if (lrc != LB_OK) {
            rc = lrc == LB_INVALID ? RESERVE_INVALID : lrc == LB_REUSED ? RESERVE_REUSED : RESERVE_FAILED;
            break;
        }
        key_record rec;
        kr_fill(&rec, m->keys[i].key_id, m->master, slaves, m->slave_count,
                m->expires < max_expiry ? m->expires : max_expiry, buf, key_bytes);
        int krc = kr_put(s, txn, &rec);
        if (krc != KR_OK)
            rc = krc == KR_EXISTS ? RESERVE_REUSED : RESERVE_FAILED;
    }
    OPENSSL_cleanse(buf, key_bytes);
    free(buf);
    return rc;
}

void reserve_handle(relay_node *k, relay_link *l, const http_request *req, http_response *resp)
{
    kme_reserve_request msg;
    etsi_problem p;
    const relay_link_config *lc = &k->cfg.links[l->index];
    if (kme_reserve_request_from_json(req->body, req->body_len, relay_limits(k).max_key_per_request, &msg, &p) < 0) {
        http_error(resp, 400, p.message, "%s", p.detail);
        return;
    }
    for (size_t i = 0; i < msg.slave_count; i++) {
        if (!relay_hosts_sae(k, msg.slaves[i])) {
            http_error(resp, 400, "unknown slave SAE", "SAE %s is not hosted by %s", msg.slaves[i], k->cfg.kme_id);
            goto done;
        }
    }
    /* The neighbour vouches for its own SAEs until its advert arrives. */
    if (router_kme_hosts(k, lc->peer_id, msg.master) == 0) {
        http_error(resp, 400, "unknown master SAE", "SAE %s is not hosted by %s", msg.master, lc->peer_id);
        goto done;
    }
    take_arg a = {k, l, &msg};
    int rc = store_commit(k->store, take_op, &a);
    switch (rc) {
    case 0:
    case RESERVE_REPLAY:
        resp->status = 200;
        resp->body = etsi_error_to_json("committed", NULL);
        break;
    case RESERVE_INVALID:
        http_error(resp, 503, "link blocks not usable here", "a range is not in a block verified and owned by %s",
                   lc->peer_id);
        break;
    case RESERVE_REUSED:
        log_error("link %s: refused a reservation that reuses link key bytes", lc->peer_id);
        http_error(resp, 409, "link key reused", "a range overlaps bytes already used");
        break;
    default:
        http_error(resp, 503, "key store failure", "the keys could not be committed");
    }
done:
    kme_reserve_request_clear(&msg);
}

/* ---- reservations whose answer was lost ------------------------------------------ */

#define RESOLVE_BATCH 64

typedef struct {
    relay_link *l;
    size_t entries;
    char key_ids[RESOLVE_BATCH][UUID_STR_LEN + 1];
    size_t first[RESOLVE_BATCH], count[RESOLVE_BATCH];
    kme_resolve q;
    long released;
} resolve_arg;

/* Reads up to RESOLVE_BATCH in-doubt reservations of the link into a. */
static int collect_doubts(kme_store *s, relay_link *l, resolve_arg *a)
{
    MDB_txn *txn;
    MDB_cursor *c;
    if (store_read_begin(s, &txn))
        return -1;
    if (mdb_cursor_open(txn, s->in_doubt, &c)) {
        mdb_txn_abort(txn);
        return -1;
    }
    size_t plen = strlen(l->lb.peer_id) + 1, total = 0;
    MDB_val k = {plen, l->lb.peer_id}, v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && a->entries < RESOLVE_BATCH && k.mv_size == plen + UUID_STR_LEN &&
           memcmp(k.mv_data, l->lb.peer_id, plen) == 0 && total + v.mv_size / sizeof(kme_range) <= KME_MAX_RANGES) {
        kme_range *grown = realloc(a->q.ranges, (total + v.mv_size / sizeof(kme_range)) * sizeof(kme_range));
        if (!grown)
            break;
        a->q.ranges = grown;
        memcpy(a->q.ranges + total, v.mv_data, v.mv_size);
        memcpy(a->key_ids[a->entries], (char *)k.mv_data + plen, UUID_STR_LEN);
        a->key_ids[a->entries][UUID_STR_LEN] = '\0';
        a->first[a->entries] = total;
        a->count[a->entries] = v.mv_size / sizeof(kme_range);
        total += a->count[a->entries];
        a->entries++;
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    a->q.count = total;
    a->q.used = calloc(total ? total : 1, 1);
    return a->q.used ? 0 : -1;
}

static int settle_doubts_op(kme_store *s, MDB_txn *txn, void *arg)
{
    resolve_arg *a = arg;
    a->released = 0;
    for (size_t e = 0; e < a->entries; e++) {
        for (size_t i = a->first[e]; i < a->first[e] + a->count[e]; i++) {
            if (a->q.used[i])
                continue;
            if (lb_release(s, txn, &a->l->lb, &a->q.ranges[i], 1) != LB_OK)
                return -1;
            a->released += a->q.ranges[i].length;
        }
        unsigned char kb[ETSI_ID_MAX + 1 + UUID_STR_LEN];
        MDB_val k = {doubt_key(kb, a->l->lb.peer_id, a->key_ids[e]), kb};
        int rc = mdb_del(txn, s->in_doubt, &k, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return -1;
    }
    return 0;
}

int reserve_resolve_once(relay_node *k, relay_link *l)
{
    resolve_arg *a = calloc(1, sizeof *a);
    int settled = -1;
    if (!a)
        return -1;
    a->l = l;
    if (collect_doubts(k->store, l, a) < 0 || a->entries == 0) {
        settled = a->entries == 0 ? 0 : -1;
        goto done;
    }
    char *body = kme_resolve_request_to_json(&a->q);
    peer_reply reply;
    int rc = body ? peer_post(k->peers, l->index, "/kme/v1/resolve", body, k->cfg.peer_timeout_ms, &reply) : -1;
    etsi_text_free(body);
    etsi_problem p;
    if (rc == 0 && reply.http_status == 200 && kme_resolve_response_from_json(reply.body, reply.len, &a->q, &p) == 0 &&
        store_commit(k->store, settle_doubts_op, a) == 0) {
        settled = (int)a->entries;
        log_info("link %s: settled %zu reservations whose answer was lost; %ld bytes back in the pool", l->lb.peer_id,
                 a->entries, a->released);
    }
    peer_reply_clear(&reply);
done:
    kme_resolve_clear(&a->q);
    free(a);
    return settled;
}

void reserve_resolve_handle(relay_node *k, relay_link *l, const http_request *req, http_response *resp)
{
    kme_resolve q;
    etsi_problem p;
    if (kme_resolve_request_from_json(req->body, req->body_len, &q, &p) < 0) {
        http_error(resp, 400, p.message, "%s", p.detail);
        return;
    }
    MDB_txn *txn;
    if (store_read_begin(k->store, &txn)) {
        http_error(resp, 503, "key store failure", NULL);
        kme_resolve_clear(&q);
        return;
    }
    for (size_t i = 0; i < q.count; i++) {
        lb_meta m;
        q.used[i] = lb_get_meta(k->store, txn, l->lb.peer_id, q.ranges[i].seq, &m) == 0 &&
                    lb_extents_overlap(&m, q.ranges[i].offset, q.ranges[i].offset + q.ranges[i].length);
    }
    mdb_txn_abort(txn);
    resp->status = 200;
    resp->body = kme_resolve_response_to_json(&q);
    kme_resolve_clear(&q);
}
