/* The etsi014 link source: link key from the local QKD device's ETSI GS QKD
 * 014 API, with the ID handshake between the two KMEs (see link_source.h).
 *
 * Crash safety (I1, I4). The initiator commits the block's seq before the
 * key_IDs leave, so a seq is never named twice; it stores its copy only
 * after the peer answered that it stored its own. A crash or a lost answer
 * at any step leaves the block at one end at most (the peer's, unverified):
 * the initiator never has that seq, never asks to verify it, and the
 * peer's stale-block sweep discards it; the keys in flight are lost, none
 * is used twice. Key bytes are wiped as soon as they are stored.
 *
 * Authenticity. The request carries the one-time MAC of link key the
 * initiator owns (relay/msg_auth.h), and the answer its answer key's tag;
 * the responder checks the tag before it asks its device for anything, and
 * takes the MAC key in the commit that stores the block, so a forged or
 * replayed request fetches nothing, stores nothing and moves no ingest mark.
 * Only an initiator that owns no link key yet (a new link) names keys
 * without a MAC, and the responder takes that only while it counts the
 * initiator's key as short (auth_untagged_ok). */
#include "relay/link_source.h"
#include "relay/device_client.h"
#include "relay/msg_auth.h"
#include "relay/router.h"
#include "store/device_seq.h"
#include "store/store_usage.h"
#include "runtime/clock.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

#define DOWN_AFTER_FAILURES 2 /* consecutive device failures that mark the link down */
#define BACKOFF_FIRST_MS 250
#define BACKOFF_MAX_MS 5000
#define PEER_REFUSED_PAUSE_MS 1000 /* after the peer refused a handshake (its device failing) */

struct link_source {
    device_client *dev;
    atomic_int failures;        /* consecutive device failures */
    int64_t next_ms;            /* initiator: no device request before this (pacing, backoff) */
    uint64_t seq_floor;         /* initiator: the peer's ingest mark as it last told */
    uint64_t seq_next, seq_end; /* initiator: seqs taken in the store, not named yet: [next, end) */
};

int device_source_open(relay_node *k, relay_link *l, char *err, size_t errlen)
{
    struct link_source *src = calloc(1, sizeof *src);
    if (!src || !(src->dev = device_client_new(&k->cfg.links[l->index].device))) {
        free(src);
        snprintf(err, errlen, "link %s: out of memory", l->lb.peer_id);
        return -1;
    }
    l->source = src;
    return 0;
}

void device_source_close(relay_link *l)
{
    if (!l->source)
        return;
    device_client_free(l->source->dev);
    free(l->source);
    l->source = NULL;
}

/* The device answered as it should: the link is up again. */
static void device_ok(relay_link *l)
{
    atomic_store(&l->source->failures, 0);
    if (atomic_exchange(&l->source_down, 0))
        log_info("link %s: the QKD device delivers key again; link up", l->lb.peer_id);
}

/* The device failed: after DOWN_AFTER_FAILURES in a row the link is down in
 * the adverts; the next request waits longer each time. */
static void device_failed(relay_link *l, const char *what)
{
    int n = atomic_fetch_add(&l->source->failures, 1) + 1;
    log_warn("link %s: QKD device: %s", l->lb.peer_id, what);
    if (n >= DOWN_AFTER_FAILURES && !atomic_exchange(&l->source_down, 1))
        log_warn("link %s: the QKD device failed %d times in a row; link marked down until it delivers again",
                 l->lb.peer_id, n);
    long backoff = BACKOFF_FIRST_MS;
    for (int i = 1; i < n && backoff < BACKOFF_MAX_MS; i++)
        backoff *= 2;
    l->source->next_ms = clock_wall_ms() + (backoff < BACKOFF_MAX_MS ? backoff : BACKOFF_MAX_MS);
}

/* The bytes of keys which (in its order) out of c, joined: one link block.
 * NULL when out of memory. */
static unsigned char *join_keys(const etsi_key_container *c, const kme_link_ids *which, size_t *len)
{
    size_t total = 0, j = 0;
    for (size_t i = 0; i < c->count; i++)
        total += c->keys[i].key_len;
    unsigned char *buf = malloc(total ? total : 1);
    *len = 0;
    if (!buf)
        return NULL;
    for (size_t i = 0; i < which->count; i++) {
        while (j < c->count && strcmp(c->keys[j].key_id, which->ids[i]) != 0)
            j++;
        if (j == c->count)
            break; /* cannot be: which is a subsequence of c */
        memcpy(buf + *len, c->keys[j].key, c->keys[j].key_len);
        *len += c->keys[j++].key_len;
    }
    return buf;
}

typedef struct {
    relay_link *l;
    uint64_t seq;
    const unsigned char *data;
    size_t len;
    const kme_link_ids *tagged; /* responder: the request, when it carries a MAC */
    int rc;                     /* out: lb_ingest's answer */
    int auth_rc;                /* out: of taking the request's MAC keys */
    uint64_t mark;              /* out: the link's ingest mark after */
} store_block_arg;

static int store_block_op(kme_store *s, MDB_txn *txn, void *arg)
{
    store_block_arg *a = arg;
    /* The MAC keys of the request are used in the commit of its effect. */
    if (a->tagged && (a->auth_rc = auth_take(s, txn, &a->l->lb, AUTH_LINK_IDS, a->tagged)) != LM_OK)
        return -1;
    a->rc = a->len > LB_MAC_BYTES ? lb_ingest(s, txn, &a->l->lb, a->seq, a->data, a->len) : LB_SPENT;
    if (a->rc != LB_OK && a->rc != LB_EXISTS && a->rc != LB_SPENT)
        return -1;
    return lb_ingest_mark(s, txn, a->l->lb.peer_id, &a->mark) ? -1 : 0;
}

#define SEQS_PER_COMMIT 64 /* seqs taken in one commit; a restart skips those not named */

typedef struct {
    relay_link *l;
    uint64_t floor, seq;
} take_seq_arg;

static int take_seq_op(kme_store *s, MDB_txn *txn, void *arg)
{
    take_seq_arg *a = arg;
    return device_seq_take(s, txn, a->l->lb.peer_id, a->floor, SEQS_PER_COMMIT, &a->seq) ? -1 : 0;
}

/* The seq of the next block: committed in the store before it is named, a
 * few at a time. 0, or -1. */
static int next_seq(relay_node *k, relay_link *l, uint64_t *seq)
{
    struct link_source *src = l->source;
    if (src->seq_next < src->seq_floor || src->seq_next >= src->seq_end) {
        take_seq_arg ts = {l, src->seq_floor, 0};
        if (store_commit(k->store, take_seq_op, &ts) != 0)
            return -1;
        src->seq_next = ts.seq;
        src->seq_end = ts.seq + SEQS_PER_COMMIT;
    }
    *seq = src->seq_next++;
    return 0;
}

/* ---- initiator ------------------------------------------------------------------ */

/* Whether the link has room for more key (the same bounds as file ingest). */
static int has_room(relay_node *k, relay_link *l)
{
    if (store_check_high_water(k->store))
        return 0;
    lb_stock stock = {0};
    MDB_txn *rtxn;
    if (store_read_begin(k->store, &rtxn) != 0)
        return 0;
    int rc = lb_get_stock(k->store, rtxn, &l->lb, &stock);
    mdb_txn_abort(rtxn);
    return rc == 0 && stock.owned_free + stock.peer_free + stock.unverified < (uint64_t)k->cfg.link_stock_max_bytes;
}

typedef struct {
    relay_link *l;
    kme_link_ids *req;
    auth_answer_key *answer;
} seal_arg;

/* Tags the request with link key this end owns; an end that owns none yet
 * (a new link) sends it untagged. */
static int seal_op(kme_store *s, MDB_txn *txn, void *arg)
{
    seal_arg *a = arg;
    int rc = auth_seal_from_link(s, txn, &a->l->lb, AUTH_LINK_IDS, a->req, a->answer);
    return rc == LM_OK || rc == LM_SHORT ? 0 : -1;
}

/* Names the keys to the peer and stores the ones it stored. 1 when a block
 * was stored, 0 when none was, -1 when the peer did not answer. */
static int handshake(relay_node *k, relay_link *l, const etsi_key_container *keys)
{
    const relay_device_config *dc = &k->cfg.links[l->index].device;
    kme_link_ids req = {0}, ans = {0};
    auth_answer_key answer;
    int result = -1;
    memset(&answer, 0, sizeof answer);
    for (size_t i = 0; i < keys->count; i++)
        if (kme_link_ids_add(&req, keys->keys[i].key_id) < 0)
            goto out;
    /* The seq is committed before it leaves: a restart never names it again. */
    if (next_seq(k, l, &req.seq) != 0) {
        log_error("link %s: cannot commit the next block seq", l->lb.peer_id);
        goto out;
    }
    req.size_bits = dc->key_size_bits;
    seal_arg sa = {l, &req, &answer};
    if (store_commit(k->store, seal_op, &sa) != 0) {
        log_error("link %s: cannot tag the key_IDs of block %llu", l->lb.peer_id, (unsigned long long)req.seq);
        goto out;
    }
    char *body = kme_link_ids_request_to_json(&req);
    peer_reply reply;
    memset(&reply, 0, sizeof reply);
    /* The peer asks its device before it answers, perhaps one key at a time. */
    long timeout = k->cfg.peer_timeout_ms + 2 * dc->timeout_ms;
    int rc = body ? peer_post(k->peers, l->index, "/kme/v1/link_ids", body, timeout, &reply) : -1;
    etsi_text_free(body);
    etsi_problem p;
    if (rc < 0 || reply.http_status != 200) {
        if (rc < 0)
            atomic_store(&l->peer_up, 0);
        log_warn("link %s: the peer did not take block %llu (%zu keys): %s; the keys are discarded", l->lb.peer_id,
                 (unsigned long long)req.seq, req.count, reply.error[0] ? reply.error : "no answer");
        result = rc < 0 ? -1 : 0;
        /* The peer's device or store is failing: ask ours for no more keys a while. */
        if (rc == 0)
            l->source->next_ms = clock_wall_ms() + PEER_REFUSED_PAUSE_MS;
    } else if (kme_link_ids_response_from_json(reply.body, reply.len, &req, &ans, &p) < 0) {
        log_warn("link %s: bad link_ids answer for block %llu: %s: %s; the keys are discarded", l->lb.peer_id,
                 (unsigned long long)req.seq, p.message, p.detail);
        result = 0;
    } else if (answer.set && !auth_answer_ok(&answer, 200, "", &ans, ans.has_tag, ans.tag)) {
        log_warn("link %s: the answer for block %llu is not authentic; the keys are discarded", l->lb.peer_id,
                 (unsigned long long)req.seq);
        result = 0;
    } else {
        if (ans.next_seq > l->source->seq_floor)
            l->source->seq_floor = ans.next_seq;
        result = 0;
        if (ans.count < req.count)
            log_warn("link %s: the peer's device handed over %zu of the %zu keys of block %llu; the others are "
                     "discarded",
                     l->lb.peer_id, ans.count, req.count, (unsigned long long)req.seq);
        if (ans.count > 0) {
            store_block_arg a = {l, req.seq, NULL, 0, NULL, 0, LM_OK, 0};
            unsigned char *buf = join_keys(keys, &ans, &a.len);
            a.data = buf;
            if (buf && store_commit(k->store, store_block_op, &a) == 0 && a.rc == LB_OK) {
                atomic_fetch_add(&l->ingested_bytes, a.len);
                result = 1;
            } else {
                log_warn("link %s: block %llu not stored here (%s); the peer's copy is never verified and goes "
                         "stale",
                         l->lb.peer_id, (unsigned long long)req.seq, buf ? "refused or store failure" : "no memory");
            }
            if (buf) {
                OPENSSL_cleanse(buf, a.len);
                free(buf);
            }
        }
    }
    peer_reply_clear(&reply);
out:
    auth_answer_key_wipe(&answer);
    kme_link_ids_clear(&req);
    kme_link_ids_clear(&ans);
    return result;
}

int device_source_ingest_once(relay_node *k, relay_link *l)
{
    struct link_source *src = l->source;
    const relay_device_config *dc = &k->cfg.links[l->index].device;
    if (!src || !l->initiator || !atomic_load(&l->peer_up) || clock_wall_ms() < src->next_ms || !has_room(k, l))
        return 0;
    if (dc->rate_keys_per_s > 0)
        src->next_ms = clock_wall_ms() + dc->batch * 1000 / dc->rate_keys_per_s;
    etsi_key_container keys;
    char err[512];
    if (device_enc_keys(src->dev, dc->batch, &keys, err, sizeof err) < 0) {
        device_failed(l, err);
        return -1;
    }
    device_ok(l);
    int rc = handshake(k, l, &keys);
    etsi_key_container_clear(&keys);
    return rc;
}

/* ---- responder -------------------------------------------------------------------- */

/* Whether a request without a MAC may be taken from the initiator now:
 * while this end counts its key short (auth_untagged_ok), or while its own
 * signed advert says it owns too little on this link to tag one. The second
 * keeps the link alive when this end's count is too high (MAC keys of
 * requests lost in a crash stay counted here) and no grant can help; it lets
 * someone who holds the initiator's TLS key, and so can sign its adverts,
 * send untagged requests, but without key_IDs the initiator's device issued
 * those fetch and store nothing. */
static int untagged_ok(relay_node *k, relay_link *l)
{
    MDB_txn *txn;
    uint64_t advertised;
    if (store_read_begin(k->store, &txn) != 0)
        return 0;
    int ok = auth_untagged_ok(k->store, txn, &l->lb, 1);
    mdb_txn_abort(txn);
    if (!ok && k->router && router_advertised_stock(k, l->lb.peer_id, k->cfg.kme_id, &advertised) == 0)
        ok = advertised < 2 * KME_MAC_KEY_BYTES;
    return ok;
}

/* The refusal in resp of a request that authenticated: its MAC keys are
 * used and the refusal tagged, so the initiator counts them spent too. */
static void refuse(relay_node *k, relay_link *l, const kme_link_ids *ids, const auth_answer_key *answer,
                   http_response *resp)
{
    if (answer->set && auth_refuse(k->store, &l->lb, AUTH_LINK_IDS, ids, answer, resp) != 0)
        log_warn("link %s: the MAC keys of a refused link_ids request could not be marked used", l->lb.peer_id);
}

void link_source_ids_handle(relay_node *k, relay_link *l, const http_request *req, http_response *resp)
{
    const relay_link_config *lc = &k->cfg.links[l->index];
    kme_link_ids ids = {0}, ans = {0};
    auth_answer_key answer;
    etsi_problem p;
    int arc;
    memset(&answer, 0, sizeof answer);
    if (lc->source != LINK_SOURCE_ETSI014 || l->initiator || !l->source) {
        http_error(resp, 400, "link_ids not expected",
                   "this end of the link does not take its key from a device by the other end's key_IDs");
        return;
    }
    if (kme_link_ids_request_from_json(req->body, req->body_len, &ids, &p) < 0) {
        http_error(resp, 400, p.message, "%s", p.detail);
        return;
    }
    /* The tag first: a request that does not authenticate changes nothing. */
    if (ids.auth.key_count && (arc = auth_check(k->store, &l->lb, AUTH_LINK_IDS, &ids, &answer)) != LM_OK) {
        auth_check_error(resp, arc, AUTH_LINK_IDS, l->lb.peer_id);
        goto out;
    }
    if (!ids.auth.key_count && !untagged_ok(k, l)) {
        log_warn("link %s: refused a link_ids request without a MAC; the neighbour owns link key to make one",
                 l->lb.peer_id);
        http_error(resp, 400, "request not authentic",
                   "the link_ids request carries no MAC although %s owns link key to make one; nothing was fetched",
                   l->lb.peer_id);
        goto out;
    }
    if (ids.size_bits != lc->device.key_size_bits) {
        http_error(resp, 400, "key size differs", "keys of %ld bits named; this end's device gives %ld", ids.size_bits,
                   lc->device.key_size_bits);
        refuse(k, l, &ids, &answer, resp);
        goto out;
    }
    if (store_check_high_water(k->store)) {
        http_error(resp, 503, "key store full", "the key store is above its high-water mark");
        refuse(k, l, &ids, &answer, resp);
        goto out;
    }
    etsi_key_container keys;
    char err[512];
    size_t wrong = 0;
    if (device_dec_keys(l->source->dev, &ids, &keys, &wrong, err, sizeof err) < 0) {
        device_failed(l, err);
        http_error(resp, 503, "QKD device unavailable", "dec_keys at this end's device failed");
        refuse(k, l, &ids, &answer, resp);
        goto out;
    }
    if (wrong) { /* the others are kept: both ends hold them */
        snprintf(err, sizeof err, "dec_keys: %zu of %zu keys not of %ld bits; dropped", wrong, ids.count,
                 ids.size_bits);
        device_failed(l, err);
    } else {
        device_ok(l);
    }
    ans.seq = ids.seq;
    for (size_t i = 0; i < keys.count; i++)
        kme_link_ids_add(&ans, keys.keys[i].key_id);
    store_block_arg a = {l, ids.seq, NULL, 0, ids.auth.key_count ? &ids : NULL, LB_SPENT, LM_OK, 0};
    unsigned char *buf = join_keys(&keys, &ans, &a.len);
    a.data = buf;
    int rc = buf ? store_commit(k->store, store_block_op, &a) : -1;
    if (buf) {
        OPENSSL_cleanse(buf, a.len);
        free(buf);
    }
    etsi_key_container_clear(&keys);
    if (rc != 0 && a.auth_rc != LM_OK) {
        auth_check_error(resp, a.auth_rc, AUTH_LINK_IDS, l->lb.peer_id);
    } else if (rc != 0) {
        http_error(resp, 503, "key store failure", "block %llu could not be stored", (unsigned long long)ids.seq);
        refuse(k, l, &ids, &answer, resp);
    } else {
        if (a.rc != LB_OK) {
            if (ans.count)
                log_warn("link %s: block %llu not stored (%s); its %zu keys are discarded", l->lb.peer_id,
                         (unsigned long long)ids.seq,
                         a.len <= LB_MAC_BYTES ? "too few keys"
                         : a.rc == LB_EXISTS   ? "seq already stored"
                                               : "seq below the ingest mark",
                         ans.count);
            ans.count = 0; /* nothing stored: the initiator discards them too */
        } else {
            atomic_fetch_add(&l->ingested_bytes, a.len);
        }
        ans.next_seq = a.mark;
        /* The answer to a tagged request is tagged with its answer key. */
        ans.has_tag = answer.set && auth_answer_tag(&answer, 200, "", &ans, ans.tag) == 0;
        resp->status = 200;
        resp->body = kme_link_ids_response_to_json(&ans);
    }
out:
    auth_answer_key_wipe(&answer);
    kme_link_ids_clear(&ids);
    kme_link_ids_clear(&ans);
}
