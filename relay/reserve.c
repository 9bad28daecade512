/* Both ends of the link-key reservation: carve-commit-tell on the owner,
 * check-commit on the neighbour (see reserve.h). */
#include "relay/reserve.h"
#include "api/kme_msgs.h"
#include "store/key_records.h"
#include "runtime/log.h"
#include "relay/msg_auth.h"
#include "relay/router.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>

#define MAX_RANGES_PER_KEY 256

enum {
    RESERVE_SHORT = 2,
    RESERVE_FAILED = 3,
    RESERVE_INVALID = 5,
    RESERVE_REUSED = 6,
    RESERVE_WITHDRAWN = 7, /* the owner asked about it (resolve) before it arrived */
    RESERVE_LATE = 8,      /* its keys expired more than RESERVE_LATE_S ago */
};

/* What becomes of link ranges a neighbour did not confirm. */
enum reserve_undo {
    UNDO_RELEASE, /* it provably recorded nothing and never will: the ranges return to the pool */
    UNDO_SPEND,   /* it may have recorded them and will never say: they stay spent */
    UNDO_DOUBT,   /* its answer was lost: spent until it settles them (reserve_resolve_once) */
};

/* An in-doubt record: be64 expires of the reservation, then its ranges.
 * Records of an older layout (the ranges alone, a multiple of
 * sizeof(kme_range) bytes; they may be relay messages) are never asked
 * about: their bytes stay spent. */
#define DOUBT_HEAD 8

/* The key of a reservation in in_doubt and withdrawn: peer KME ID | 0 | key_ID. */
static size_t id_key(unsigned char *buf, const char *peer_id, const char *key_id)
{
    size_t n = strlen(peer_id) + 1;
    memcpy(buf, peer_id, n);
    memcpy(buf + n, key_id, UUID_STR_LEN);
    return n + UUID_STR_LEN;
}
#define ID_KEY_MAX (ETSI_ID_MAX + 1 + UUID_STR_LEN)

void reserve_log_ranges(const relay_link *l, const char *kind, const char *id, const kme_range *ranges, size_t n)
{
    if (!log_enabled(LOG_DEBUG))
        return;
    char line[640], token[64];
    size_t len = 0;
    line[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(token, sizeof token, " %" PRIu64 ":%" PRIu32 "+%" PRIu32, ranges[i].seq, ranges[i].offset,
                         ranges[i].length);
        if (len + (size_t)w >= sizeof line) {
            log_debug("link %s: sent %s %s ranges%s", l->lb.peer_id, kind, id, line);
            len = 0;
        }
        memcpy(line + len, token, (size_t)w + 1);
        len += (size_t)w;
    }
    if (len || n == 0)
        log_debug("link %s: sent %s %s ranges%s", l->lb.peer_id, kind, id, line);
}

/* ---- owner side --------------------------------------------------------------- */

typedef struct {
    relay_link *l;
    const reserve_request *r;
    etsi_key_container *out;
    kme_reserve_request *msg;
    auth_answer_key *answer; /* the key the neighbour tags its answer with */
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
    /* The message is complete: its MAC, from link key this end owns. */
    int arc = auth_seal_from_link(s, txn, &a->l->lb, AUTH_RESERVE, a->msg, a->answer);
    return arc == LM_OK ? 0 : arc == LM_SHORT ? RESERVE_SHORT : RESERVE_FAILED;
}

typedef struct {
    relay_link *l;
    const kme_reserve_request *msg; /* its ranges; its local key records go too */
    enum reserve_undo kind;
    const kme_auth *mac; /* released too (the message never left); NULL: its MAC keys stay spent */
} undo_arg;

/* Undoes what the neighbour did not confirm; local records always go. */
static int undo_op(kme_store *s, MDB_txn *txn, void *arg)
{
    undo_arg *a = arg;
    const kme_reserve_request *m = a->msg;
    for (size_t i = 0; i < m->key_count; i++)
        if (kr_delete(s, txn, m->keys[i].key_id) != KR_OK)
            return -1;
    if (a->kind == UNDO_RELEASE) {
        if (a->mac && (lb_release(s, txn, &a->l->lb, a->mac->key, a->mac->key_count) != LB_OK ||
                       lb_release(s, txn, &a->l->lb, a->mac->answer, a->mac->answer_count) != LB_OK))
            return -1;
        return lb_release(s, txn, &a->l->lb, m->ranges, m->range_count) != LB_OK ? -1 : 0;
    }
    if (a->kind == UNDO_DOUBT) {
        unsigned char kb[ID_KEY_MAX];
        MDB_val k = {id_key(kb, a->l->lb.peer_id, m->keys[0].key_id), kb},
                v = {DOUBT_HEAD + m->range_count * sizeof(kme_range), NULL};
        if (mdb_put(txn, s->in_doubt, &k, &v, MDB_RESERVE))
            return -1;
        store_put_be64(v.mv_data, (uint64_t)m->expires);
        memcpy((unsigned char *)v.mv_data + DOUBT_HEAD, m->ranges, m->range_count * sizeof(kme_range));
    }
    return 0;
}

typedef struct {
    relay_link *l;
    const kme_range *ranges;
    size_t n;
} release_arg;

static int release_op(kme_store *s, MDB_txn *txn, void *arg)
{
    release_arg *a = arg;
    return lb_release(s, txn, &a->l->lb, a->ranges, a->n) != LB_OK ? -1 : 0;
}

int reserve_release_ranges(relay_node *k, relay_link *l, const kme_range *ranges, size_t n)
{
    release_arg a = {l, ranges, n};
    return store_commit(k->store, release_op, &a);
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
    auth_answer_key answer;
    memset(&msg, 0, sizeof msg);
    memset(&answer, 0, sizeof answer);
    snprintf(msg.master, sizeof msg.master, "%s", r->master);
    for (size_t i = 0; i < r->peer_count; i++)
        snprintf(msg.slaves[msg.slave_count++], ETSI_ID_MAX + 1, "%s", r->peer_slaves[i]);
    msg.size_bits = r->size_bits;
    msg.expires = (int64_t)time(NULL) + k->cfg.key_ttl_seconds + r->extra_ttl_s;

    if (prepare(r, out, &msg) < 0) {
        http_error(resp, 503, "out of memory", NULL);
        goto fail;
    }
    alloc_arg a = {l, r, out, &msg, &answer};
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
    if (body)
        reserve_log_ranges(l, "reservation", msg.keys[0].key_id, msg.ranges, msg.range_count);
    peer_reply reply;
    rc = body ? peer_post(k->peers, l->index, "/kme/v1/reserve", body, k->cfg.peer_timeout_ms, &reply) : -1;
    etsi_text_free(body);
    /* Only an answer tagged with the answer key is the neighbour's. */
    int authentic = rc == 0 && auth_reply_ok(&answer, &reply);
    if (authentic && reply.http_status == 200) {
        atomic_store(&l->peer_up, 1);
        peer_reply_clear(&reply);
        kme_reserve_request_clear(&msg);
        auth_answer_key_wipe(&answer);
        return 0;
    }
    atomic_store(&l->peer_up, rc == 0);
    /* The neighbour did not take the keys. A refusal (400, 503) or a request
     * that never left means it recorded nothing; a lost answer, or one that
     * is not authentic, is settled later (reserve_resolve_once); anything
     * else leaves the bytes spent. The MAC keys stay spent unless the
     * request never left. */
    undo_arg u = {l, &msg, UNDO_SPEND, NULL};
    if (rc < 0) {
        u.kind = reply.not_sent ? UNDO_RELEASE : UNDO_DOUBT;
        u.mac = reply.not_sent ? &msg.auth : NULL;
    } else if (!authentic) {
        u.kind = UNDO_DOUBT;
    } else if (reply.http_status == 503 || reply.http_status == 400) {
        u.kind = UNDO_RELEASE;
    }
    static const char *const outcome[] = {"released", "bytes spent", "in doubt until the neighbour answers"};
    if (store_commit(k->store, undo_op, &u) != 0)
        log_error("link %s: could not undo a reservation; its bytes stay spent", l->lb.peer_id);
    log_warn("link %s: reservation of %ld keys refused (%s%s); %s", l->lb.peer_id, r->number,
             rc < 0           ? reply.error
             : reply.error[0] ? reply.error
                              : "error",
             rc == 0 && !authentic ? ", answer not authentic" : "", outcome[u.kind]);
    if (rc < 0)
        http_error(resp, 503, "peer KME unreachable", "KME %s could not be reached: %s", l->lb.peer_id, reply.error);
    else if (!authentic)
        http_error(resp, 503, "peer KME answer not authentic", "KME %s answered %ld without a valid tag: %s",
                   l->lb.peer_id, reply.http_status, reply.error);
    else
        http_error(resp, 503, "peer KME refused the keys", "KME %s answered %ld: %s", l->lb.peer_id, reply.http_status,
                   reply.error);
    peer_reply_clear(&reply);
fail:
    auth_answer_key_wipe(&answer);
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
    /* Less the MAC keys of the message that would carry them. */
    long n = lb_get_stock(k->store, txn, &l->lb, &st) == 0 && st.owned_free > RESERVE_MAC_BYTES
                 ? (long)((st.owned_free - RESERVE_MAC_BYTES) / ((uint64_t)size_bits / 8))
                 : 0;
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
    /* Asked about before it arrived: the owner was told it is not recorded
     * here and may have reused its bytes. Past RESERVE_LATE_S after its
     * expiry that withdrawal may be gone, and the age refuses it instead. */
    unsigned char wk[ID_KEY_MAX];
    MDB_val kw = {id_key(wk, a->l->lb.peer_id, m->keys[0].key_id), wk}, vw;
    int wrc = mdb_get(txn, s->withdrawn, &kw, &vw);
    if (wrc == 0)
        return RESERVE_WITHDRAWN;
    if (wrc != MDB_NOTFOUND)
        return RESERVE_FAILED;
    if (m->expires < (int64_t)time(NULL) - RESERVE_LATE_S)
        return RESERVE_LATE;
    /* Its MAC keys next (checked already, in a read transaction): the same
     * message again finds them used. */
    int arc = auth_take(s, txn, &a->l->lb, AUTH_RESERVE, m);
    if (arc != LM_OK)
        return arc == LM_INVALID ? RESERVE_INVALID : arc == LM_REUSED ? RESERVE_REUSED : RESERVE_FAILED;
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
    auth_answer_key answer;
    memset(&answer, 0, sizeof answer);
    const relay_link_config *lc = &k->cfg.links[l->index];
    if (kme_reserve_request_from_json(req->body, req->body_len, relay_limits(k).max_key_per_request, &msg, &p) < 0) {
        http_error(resp, 400, p.message, "%s", p.detail);
        return;
    }
    /* The tag before anything else; nothing is spent for a bad one. */
    int arc = auth_check(k->store, &l->lb, AUTH_RESERVE, &msg, &answer);
    if (arc != LM_OK) {
        auth_check_error(resp, arc, AUTH_RESERVE, lc->peer_id);
        goto done;
    }
    for (size_t i = 0; i < msg.slave_count; i++) {
        if (!relay_hosts_sae(k, msg.slaves[i])) {
            http_error(resp, 400, "unknown slave SAE", "SAE %s is not hosted by %s", msg.slaves[i], k->cfg.kme_id);
            goto refused;
        }
    }
    /* The neighbour vouches for its own SAEs until its advert arrives. */
    if (router_kme_hosts(k, lc->peer_id, msg.master) == 0) {
        http_error(resp, 400, "unknown master SAE", "SAE %s is not hosted by %s", msg.master, lc->peer_id);
        goto refused;
    }
    take_arg a = {k, l, &msg};
    int rc = store_commit(k->store, take_op, &a);
    switch (rc) {
    case 0:
        log_debug("link %s: reservation %s recorded", lc->peer_id, msg.keys[0].key_id);
        resp->status = 200;
        resp->body = etsi_error_to_json("committed", NULL);
        if (auth_tag_response(&answer, resp) < 0)
            log_error("link %s: could not tag the answer to a reservation", lc->peer_id);
        goto done;
    case RESERVE_WITHDRAWN:
        log_info("link %s: reservation %s arrived after the neighbour withdrew it (resolve); refused", lc->peer_id,
                 msg.keys[0].key_id);
        http_error(resp, 503, "reservation withdrawn",
                   "KME %s asked about it before it arrived and was told it is not recorded; nothing was committed",
                   lc->peer_id);
        break;
    case RESERVE_LATE:
        log_info("link %s: reservation %s arrived over %d s after its keys expired; refused", lc->peer_id,
                 msg.keys[0].key_id, RESERVE_LATE_S);
        http_error(resp, 503, "reservation too late", "its keys expired more than %d s ago; nothing was committed",
                   RESERVE_LATE_S);
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
refused:
    /* Authentic, refused all the same: the refusal is tagged, its MAC keys
     * spent (nothing else is). */
    if (auth_refuse(k->store, &l->lb, AUTH_RESERVE, &msg, &answer, resp) < 0)
        log_warn("link %s: a refused reservation's answer goes untagged", lc->peer_id);
done:
    auth_answer_key_wipe(&answer);
    kme_reserve_request_clear(&msg);
}

/* ---- reservations whose answer was lost ------------------------------------------ */

#define RESOLVE_BATCH 64

typedef struct {
    char key_id[UUID_STR_LEN + 1];
    int asked; /* else a record of the older layout: not asked about, its bytes stay spent */
} doubt_entry;

typedef struct {
    relay_link *l;
    size_t entries;
    doubt_entry e[RESOLVE_BATCH];
    kme_resolve q; /* the reservations asked about, in the order of the asked entries */
    size_t withdrawn;
    auth_answer_key answer; /* the key the neighbour tags its answer with */
    long released;
} resolve_arg;

/* Reads up to RESOLVE_BATCH in-doubt reservations of the link into a. */
static int collect_doubts(kme_store *s, relay_link *l, resolve_arg *a)
{
    MDB_txn *txn;
    MDB_cursor *c;
    a->q.reservations = calloc(RESOLVE_BATCH, sizeof *a->q.reservations);
    if (!a->q.reservations || store_read_begin(s, &txn))
        return -1;
    if (mdb_cursor_open(txn, s->in_doubt, &c)) {
        mdb_txn_abort(txn);
        return -1;
    }
    size_t plen = strlen(l->lb.peer_id) + 1, total = 0;
    MDB_val k = {plen, l->lb.peer_id}, v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && a->entries < RESOLVE_BATCH && k.mv_size == plen + UUID_STR_LEN &&
           memcmp(k.mv_data, l->lb.peer_id, plen) == 0) {
        doubt_entry *e = &a->e[a->entries];
        memcpy(e->key_id, (char *)k.mv_data + plen, UUID_STR_LEN);
        e->key_id[UUID_STR_LEN] = '\0';
        e->asked = v.mv_size > DOUBT_HEAD && (v.mv_size - DOUBT_HEAD) % sizeof(kme_range) == 0 &&
                   v.mv_size % sizeof(kme_range) != 0;
        size_t n = e->asked ? (v.mv_size - DOUBT_HEAD) / sizeof(kme_range) : 0;
        if (total + n > KME_MAX_RANGES)
            break;
        if (e->asked) {
            kme_range *grown = realloc(a->q.ranges, (total + n) * sizeof(kme_range));
            if (!grown)
                break;
            a->q.ranges = grown;
            memcpy(a->q.ranges + total, (unsigned char *)v.mv_data + DOUBT_HEAD, n * sizeof(kme_range));
            kme_resolve_reservation *r = &a->q.reservations[a->q.reservation_count++];
            memcpy(r->key_id, e->key_id, sizeof r->key_id);
            r->expires = (int64_t)store_get_be64(v.mv_data);
            r->first = total;
            r->count = n;
            total += n;
        }
        a->entries++;
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    a->q.count = total;
    a->q.used = calloc(total ? total : 1, 1);
    return a->q.used ? 0 : -1;
}

/* Settles the collected entries with the neighbour's answer in a->q: only
 * the reservations it withdrew give their ranges back. */
static int settle_doubts_op(kme_store *s, MDB_txn *txn, void *arg)
{
    resolve_arg *a = arg;
    a->withdrawn = 0;
    a->released = 0;
    for (size_t e = 0, asked = 0; e < a->entries; e++) {
        const kme_resolve_reservation *r = a->e[e].asked ? &a->q.reservations[asked++] : NULL;
        unsigned char kb[ID_KEY_MAX];
        MDB_val k = {id_key(kb, a->l->lb.peer_id, a->e[e].key_id), kb}, v;
        int rc = mdb_get(txn, s->in_doubt, &k, &v);
        if (rc == MDB_NOTFOUND)
            continue; /* settled already: never release twice */
        if (rc)
            return -1;
        if (r && a->q.final && r->withdrawn) {
            if (lb_release(s, txn, &a->l->lb, a->q.ranges + r->first, r->count) != LB_OK)
                return -1;
            for (size_t i = r->first; i < r->first + r->count; i++)
                a->released += a->q.ranges[i].length;
            a->withdrawn++;
        }
        if (mdb_del(txn, s->in_doubt, &k, NULL))
            return -1;
    }
    return 0;
}

static int seal_resolve_op(kme_store *s, MDB_txn *txn, void *arg)
{
    resolve_arg *a = arg;
    return auth_seal_from_link(s, txn, &a->l->lb, AUTH_RESOLVE, &a->q, &a->answer) == LM_OK ? 0 : -1;
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
    int answered = a->q.reservation_count == 0; /* only records of the older layout: nothing to ask */
    /* A MAC from link key this end owns; the answer is acted on only when
     * its tag verifies, for a forged "withdrawn" would let bytes be used twice. */
    if (!answered) {
        if (store_commit(k->store, seal_resolve_op, a) != 0)
            goto done;
        char *body = kme_resolve_request_to_json(&a->q);
        peer_reply reply;
        memset(&reply, 0, sizeof reply);
        int rc = body ? peer_post(k->peers, l->index, "/kme/v1/resolve", body, k->cfg.peer_timeout_ms, &reply) : -1;
        etsi_text_free(body);
        etsi_problem p;
        answered = rc == 0 && reply.http_status == 200 &&
                   kme_resolve_response_from_json(reply.body, reply.len, &a->q, &p) == 0;
        if (answered && !auth_answer_ok(&a->answer, 200, "", &a->q, a->q.has_tag, a->q.tag)) {
            log_warn("link %s: the answer about %zu reservations in doubt is not authentic; they stay in doubt",
                     l->lb.peer_id, a->entries);
            answered = 0;
        }
        if (body)
            peer_reply_clear(&reply);
    }
    if (answered && store_commit(k->store, settle_doubts_op, a) == 0) {
        settled = (int)a->entries;
        log_info("link %s: settled %zu reservations whose answer was lost: %zu withdrawn by the neighbour (%ld "
                 "bytes back in the pool), the others recorded there or past asking (their bytes stay spent)",
                 l->lb.peer_id, a->entries, a->withdrawn, a->released);
    }
done:
    auth_answer_key_wipe(&a->answer);
    kme_resolve_clear(&a->q);
    free(a);
    return settled;
}

typedef struct {
    relay_link *l;
    kme_resolve *q;
    int64_t now;
    size_t withdrawn;
} answer_arg;

/* Forgets withdrawals whose reservation would now be refused as too late anyway. */
static int purge_withdrawn(kme_store *s, MDB_txn *txn, const char *peer_id, int64_t now)
{
    MDB_cursor *c;
    if (mdb_cursor_open(txn, s->withdrawn, &c))
        return -1;
    size_t plen = strlen(peer_id) + 1;
    MDB_val k = {plen, (void *)peer_id}, v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size == plen + UUID_STR_LEN && memcmp(k.mv_data, peer_id, plen) == 0) {
        if (v.mv_size == 8 && (int64_t)store_get_be64(v.mv_data) < now - RESERVE_LATE_S && mdb_cursor_del(c, 0)) {
            rc = -1;
            break;
        }
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : -1;
}

/* In the writer, so after every reservation queued before it: takes the
 * request's MAC keys, and each named reservation is recorded here (a range of
 * it used) or withdrawn for good. An LM_* result. */
static int answer_op(kme_store *s, MDB_txn *txn, void *arg)
{
    answer_arg *a = arg;
    kme_resolve *q = a->q;
    a->withdrawn = 0;
    int arc = auth_take(s, txn, &a->l->lb, AUTH_RESOLVE, q);
    if (arc != LM_OK)
        return arc;
    if (q->reservation_count == 0) {
        /* A caller that does not name its reservations cannot be told which
         * are withdrawn, and would take back whatever is answered unused:
         * every range is answered used (it keeps them spent). */
        memset(q->used, 1, q->count);
        return LM_OK;
    }
    if (purge_withdrawn(s, txn, a->l->lb.peer_id, a->now) < 0)
        return LM_FAILED;
    for (size_t r = 0; r < q->reservation_count; r++) {
        kme_resolve_reservation *v = &q->reservations[r];
        int recorded = 0;
        for (size_t i = v->first; i < v->first + v->count; i++) {
            lb_meta m;
            int rc = lb_get_meta(s, txn, a->l->lb.peer_id, q->ranges[i].seq, &m);
            if (rc != 0 && rc != MDB_NOTFOUND)
                return LM_FAILED;
            /* A block erased here had every byte recorded: the range too. */
            q->used[i] = rc == 0
                             ? lb_extents_overlap(&m, q->ranges[i].offset, q->ranges[i].offset + q->ranges[i].length)
                             : lb_is_spent(s, txn, a->l->lb.peer_id, q->ranges[i].seq);
            recorded |= q->used[i];
        }
        v->withdrawn = !recorded;
        if (recorded)
            continue;
        unsigned char kb[ID_KEY_MAX], vb[8];
        store_put_be64(vb, (uint64_t)v->expires);
        MDB_val k = {id_key(kb, a->l->lb.peer_id, v->key_id), kb}, val = {sizeof vb, vb};
        if (mdb_put(txn, s->withdrawn, &k, &val, 0))
            return LM_FAILED;
        a->withdrawn++;
    }
    return LM_OK;
}

void reserve_resolve_handle(relay_node *k, relay_link *l, const http_request *req, http_response *resp)
{
    kme_resolve q;
    etsi_problem p;
    auth_answer_key answer;
    memset(&answer, 0, sizeof answer);
    if (kme_resolve_request_from_json(req->body, req->body_len, &q, &p) < 0) {
        http_error(resp, 400, p.message, "%s", p.detail);
        return;
    }
    answer_arg a = {l, &q, (int64_t)time(NULL), 0};
    int arc = auth_check(k->store, &l->lb, AUTH_RESOLVE, &q, &answer);
    if (arc != LM_OK) {
        auth_check_error(resp, arc, AUTH_RESOLVE, l->lb.peer_id);
    } else if ((arc = store_commit(k->store, answer_op, &a)) != LM_OK) {
        auth_check_error(resp, arc, AUTH_RESOLVE, l->lb.peer_id);
    } else {
        if (a.withdrawn)
            log_info("link %s: withdrew %zu of %zu reservations asked about (not recorded here; refused should they "
                     "arrive)",
                     l->lb.peer_id, a.withdrawn, q.reservation_count);
        q.has_tag = auth_answer_tag(&answer, 200, "", &q, q.tag) == 0;
        resp->status = 200;
        resp->body = kme_resolve_response_to_json(&q);
    }
    auth_answer_key_wipe(&answer);
    kme_resolve_clear(&q);
}
