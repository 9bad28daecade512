/* The grant message: owns the policy of when to rebalance link block
 * ownership, the grantor's round (link worker) and the grantee's handler of
 * POST /kme/v1/grant (see grant.h). The block states are link_blocks.c's. */
#include "relay/grant.h"
#include "api/kme_msgs.h"
#include "relay/msg_auth.h"
#include "relay/router.h"
#include "runtime/clock.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>

/* How long bytes the neighbour confirmed count on top of its advert, which
 * may not show them yet (its stock reaches its neighbours with its next
 * heartbeat, at most a second or two later). */
#define GRANT_CREDIT_MS 20000

/* Per link, touched only by that link's worker. */
typedef struct {
    int64_t last_ms; /* last round */
    uint64_t advert; /* the neighbour's advertised stock when last looked at */
    uint64_t credit; /* bytes it confirmed since, which that advert may not show */
    int64_t credit_ms;
} grant_link_state;

static grant_link_state link_state[RELAY_MAX_LINKS];

/* ---- policy ---------------------------------------------------------------------- */

uint64_t grant_policy_bytes(uint64_t self_free, uint64_t peer_free)
{
    if (peer_free > UINT64_MAX / 4 || self_free <= 4 * peer_free)
        return 0;
    uint64_t quarter_of_both = self_free / 4 + peer_free / 4;
    if (peer_free >= GRANT_LOW_BYTES && peer_free >= quarter_of_both)
        return 0;
    return (self_free - peer_free) / 2;
}

/* The neighbour's owned free bytes on l as this end counts them; -1 if unknown. */
static int neighbour_stock(relay_node *k, relay_link *l, grant_link_state *g, int64_t now, uint64_t *out)
{
    uint64_t adv;
    if (!k->router || router_advertised_stock(k, l->lb.peer_id, k->cfg.kme_id, &adv) < 0)
        return -1;
    if (adv != g->advert || now - g->credit_ms > GRANT_CREDIT_MS)
        g->credit = 0;
    g->advert = adv;
    *out = adv + g->credit;
    return 0;
}

/* This end's owned free bytes on l and whether a grant is pending. 0, or -1. */
static int own_state(relay_node *k, relay_link *l, uint64_t *owned_free, int *pending)
{
    MDB_txn *txn;
    lb_stock st;
    uint64_t seq, bytes;
    size_t n = 0;
    if (store_read_begin(k->store, &txn))
        return -1;
    int rc = lb_get_stock(k->store, txn, &l->lb, &st) || lb_grant_pending(k->store, txn, &l->lb, &seq, 1, &n, &bytes);
    mdb_txn_abort(txn);
    *owned_free = st.owned_free;
    *pending = n > 0;
    return rc ? -1 : 0;
}

/* ---- grantor --------------------------------------------------------------------- */

int grant_start_op(kme_store *s, MDB_txn *txn, void *arg)
{
    grant_batch *b = arg;
    b->retry = 0;
    b->count = 0;
    b->bytes = 0;
    if (lb_grant_pending(s, txn, b->link, b->seqs, GRANT_MAX_BLOCKS, &b->count, &b->bytes) != LB_OK)
        return -1;
    if (b->count > 0) {
        b->retry = 1;
        return 0;
    }
    return lb_grant_pick(s, txn, b->link, b->want_bytes, b->seqs, GRANT_MAX_BLOCKS, &b->count, &b->bytes) == LB_OK ? 0
                                                                                                                   : -1;
}

int grant_settle_op(kme_store *s, MDB_txn *txn, void *arg)
{
    grant_batch *b = arg;
    b->confirmed_bytes = 0;
    return lb_grant_settle(s, txn, b->link, b->seqs, b->count, b->accepted, &b->confirmed_bytes) == LB_OK ? 0 : -1;
}

/* Marks in b->accepted the seqs of the answer (a subset of b->seqs). */
static void mark_accepted(grant_batch *b, const kme_grant *acc)
{
    memset(b->accepted, 0, sizeof b->accepted);
    for (size_t i = 0; i < acc->count; i++)
        for (size_t j = 0; j < b->count; j++)
            if (b->seqs[j] == acc->seqs[i])
                b->accepted[j] = 1;
}

typedef struct {
    lb_link *link;
    kme_grant *req;
    auth_answer_key *answer;
} seal_arg;

static int seal_op(kme_store *s, MDB_txn *txn, void *arg)
{
    seal_arg *a = arg;
    return auth_seal_from_link(s, txn, a->link, AUTH_GRANT, a->req, a->answer);
}

/* Sends the grant under a MAC of link key this end owns; fills b->accepted
 * from the answer. 0, or -1 when no usable answer came (the blocks stay
 * pending): an answer whose tag does not verify is none, for a forged
 * refusal would give the blocks two owners. */
static int post_grant(relay_node *k, relay_link *l, grant_batch *b)
{
    kme_grant req, acc;
    auth_answer_key answer;
    memset(&req, 0, sizeof req);
    memset(&acc, 0, sizeof acc);
    memset(&answer, 0, sizeof answer);
    req.count = b->count;
    req.seqs = b->seqs;
    seal_arg sa = {&l->lb, &req, &answer};
    if (store_commit(k->store, seal_op, &sa) != 0) {
        log_warn("link %s: no link key for the MAC of a grant of %zu blocks; they stay pending", l->lb.peer_id,
                 b->count);
        return -1;
    }
    char *body = kme_grant_request_to_json(&req);
    if (!body) {
        auth_answer_key_wipe(&answer);
        return -1;
    }
    peer_reply reply;
    etsi_problem p = {{0}, {0}, {0}};
    int rc = peer_post(k->peers, l->index, "/kme/v1/grant", body, k->cfg.peer_timeout_ms, &reply);
    etsi_text_free(body);
    if (rc < 0) {
        atomic_store(&l->peer_up, 0);
        log_warn("link %s: grant of %zu blocks got no answer (%s); they stay pending", l->lb.peer_id, b->count,
                 reply.error);
    } else if (reply.http_status != 200) {
        rc = -1;
        log_warn("link %s: grant of %zu blocks refused (HTTP %ld: %s); they stay pending", l->lb.peer_id, b->count,
                 reply.http_status, reply.error);
    } else if (kme_grant_response_from_json(reply.body, reply.len, &req, &acc, &p) < 0) {
        rc = -1;
        log_warn("link %s: bad grant answer (%s: %s); the blocks stay pending", l->lb.peer_id, p.message, p.detail);
    } else if (!auth_answer_ok(&answer, 200, "", &acc, acc.has_tag, acc.tag)) {
        rc = -1;
        log_warn("link %s: the answer to a grant of %zu blocks is not authentic; they stay pending", l->lb.peer_id,
                 b->count);
    } else {
        atomic_store(&l->peer_up, 1);
        mark_accepted(b, &acc);
    }
    peer_reply_clear(&reply);
    kme_grant_clear(&acc);
    auth_answer_key_wipe(&answer);
    return rc;
}

static size_t count_accepted(const grant_batch *b)
{
    size_t n = 0;
    for (size_t i = 0; i < b->count; i++)
        n += b->accepted[i];
    return n;
}

/* Gives (or gives again) the blocks of b and settles the answer. */
static long run_grant(relay_node *k, relay_link *l, grant_link_state *g, grant_batch *b)
{
    if (store_commit(k->store, grant_start_op, b) != 0)
        return -1;
    if (b->count == 0)
        return 0;
    if (post_grant(k, l, b) < 0 || store_commit(k->store, grant_settle_op, b) != 0)
        return -1;
    log_info("link %s: %s %zu blocks (%llu bytes); the neighbour took %zu (%llu bytes)", l->lb.peer_id,
             b->retry ? "granted again" : "granted", b->count, (unsigned long long)b->bytes, count_accepted(b),
             (unsigned long long)b->confirmed_bytes);
    g->credit += b->confirmed_bytes;
    g->credit_ms = clock_wall_ms();
    return (long)b->confirmed_bytes;
}

long grant_once(relay_node *k, relay_link *l)
{
    if (l->index >= RELAY_MAX_LINKS)
        return -1;
    grant_link_state *g = &link_state[l->index];
    int64_t now = clock_wall_ms();
    if (!atomic_load(&l->peer_up) || now - g->last_ms < GRANT_INTERVAL_MS)
        return 0;
    g->last_ms = now;
    uint64_t mine, theirs;
    int pending;
    if (own_state(k, l, &mine, &pending) < 0)
        return -1;
    uint64_t want = neighbour_stock(k, l, g, now, &theirs) == 0 ? grant_policy_bytes(mine, theirs) : 0;
    if (!pending && want == 0)
        return 0;
    grant_batch *b = calloc(1, sizeof *b);
    if (!b)
        return -1;
    b->link = &l->lb;
    b->want_bytes = want;
    long result = run_grant(k, l, g, b);
    free(b);
    return result;
}

/* ---- grantee --------------------------------------------------------------------- */

typedef struct {
    lb_link *link;
    const kme_grant *req;
    uint8_t *accepted;
    uint64_t taken_bytes;
    int auth_rc; /* of taking the request's MAC keys */
} accept_arg;

#define ACCEPT_AUTH_FAILED (-2)

static int accept_op(kme_store *s, MDB_txn *txn, void *arg)
{
    accept_arg *a = arg;
    a->taken_bytes = 0;
    a->auth_rc = auth_take(s, txn, a->link, AUTH_GRANT, a->req);
    if (a->auth_rc != LM_OK)
        return ACCEPT_AUTH_FAILED;
    return lb_grant_accept(s, txn, a->link, a->req->seqs, a->req->count, a->accepted, &a->taken_bytes);
}

/* The answer: the seqs of req marked in accepted, tagged with the answer key. */
static char *answer(const kme_grant *req, const uint8_t *accepted, const auth_answer_key *key, size_t *n)
{
    kme_grant acc;
    memset(&acc, 0, sizeof acc);
    acc.seqs = calloc(req->count, sizeof(uint64_t));
    if (!acc.seqs)
        return NULL;
    for (size_t i = 0; i < req->count; i++)
        if (accepted[i])
            acc.seqs[acc.count++] = req->seqs[i];
    *n = acc.count;
    acc.has_tag = auth_answer_tag(key, 200, "", &acc, acc.tag) == 0;
    char *text = acc.has_tag ? kme_grant_response_to_json(&acc) : NULL;
    kme_grant_clear(&acc);
    return text;
}

void grant_handle(relay_node *k, relay_link *l, const http_request *req, http_response *resp)
{
    kme_grant g;
    etsi_problem p;
    auth_answer_key key;
    memset(&key, 0, sizeof key);
    if (kme_grant_request_from_json(req->body, req->body_len, &g, &p) < 0) {
        http_error(resp, strcmp(p.message, "out of memory") == 0 ? 503 : 400, p.message, "%s", p.detail);
        return;
    }
    /* The tag before anything else; nothing changes for a bad one. */
    int arc = auth_check(k->store, &l->lb, AUTH_GRANT, &g, &key);
    if (arc != LM_OK) {
        auth_check_error(resp, arc, AUTH_GRANT, l->lb.peer_id);
        kme_grant_clear(&g);
        return;
    }
    accept_arg a = {&l->lb, &g, calloc(g.count, 1), 0, LM_OK};
    size_t taken = 0;
    int rc = a.accepted ? store_commit(k->store, accept_op, &a) : LB_DB;
    if (!a.accepted) {
        http_error(resp, 503, "out of memory", NULL);
    } else if (rc == ACCEPT_AUTH_FAILED) {
        auth_check_error(resp, a.auth_rc, AUTH_GRANT, l->lb.peer_id);
    } else if (rc == LB_LATER) {
        /* Not refused: a refusal is final, and a copy of this request
         * delayed until the blocks are verified here must not take them. */
        http_error(resp, 503, "blocks not verified here yet", "ask again once the verification has settled");
    } else if (rc != 0) {
        http_error(resp, 503, "key store failure", "the grant could not be committed");
    } else if (!(resp->body = answer(&g, a.accepted, &key, &taken))) {
        http_error(resp, 503, "out of memory", "the grant was committed; ask again for the answer");
    } else {
        resp->status = 200;
        atomic_store(&l->peer_up, 1);
        log_info("link %s: the neighbour granted %zu blocks; %zu owned here now (%llu bytes new)", l->lb.peer_id,
                 g.count, taken, (unsigned long long)a.taken_bytes);
    }
    auth_answer_key_wipe(&key);
    free(a.accepted);
    kme_grant_clear(&g);
}
