/* Unit tests of the one-time MAC of the inter-KME messages besides the relay
 * hop (relay/msg_auth): on the two real LMDB stores of one link, each
 * receiving handler (reserve, resolve, claimed, grant, verify) and the
 * link_ids checks refuse a message altered after it was sealed and spends nothing for it, takes the
 * MAC keys of an authentic one in the commit of its effect, and tags its
 * answer; the sender's checks refuse an answer altered on the way (I1). */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "relay/grant.h"
#include "relay/key_stock.h"
#include "relay/kme_port.h"
#include "relay/link_worker.h"
#include "relay/msg_auth.h"
#include "relay/reserve.h"
#include "store/key_records.h"
#include "tests/unit/link_pair.h"
#include "runtime/json_wipe.h"

#define NBLOCKS 8

/* ---- two relay nodes over the stores of link_pair.h ------------------------------------ */

static int hosts_a(void *ctx, const char *sae)
{
    (void)ctx;
    return strcmp(sae, "SAE_A") == 0;
}

static int hosts_b(void *ctx, const char *sae)
{
    (void)ctx;
    return strcmp(sae, "SAE_B") == 0 || strcmp(sae, "SAE_B2") == 0;
}

static etsi_limits limits(void *ctx)
{
    (void)ctx;
    etsi_limits l = {256, 1024, 65536, 64, 8, 100000};
    return l;
}

static void verify_failed(void *ctx, const relay_link *l, size_t blocks)
{
    (void)ctx;
    (void)l;
    (void)blocks;
}

static relay_node *node_new(kme_store *s, const char *self, const char *peer, int (*hosts)(void *, const char *))
{
    relay_node *k = calloc(1, sizeof *k);
    ck_assert_ptr_nonnull(k);
    k->store = s;
    snprintf(k->cfg.kme_id, sizeof k->cfg.kme_id, "%s", self);
    snprintf(k->cfg.links[0].peer_id, sizeof k->cfg.links[0].peer_id, "%s", peer);
    k->cfg.link_count = 1;
    k->cfg.key_ttl_seconds = 3600;
    k->cfg.stock_max_age_s = 60;
    k->cfg.verify_timeout_ms = 5000;
    lb_link_init(&k->links[0].lb, self, peer);
    k->links[0].initiator = strcmp(self, peer) < 0;
    k->hooks.hosts_sae = hosts;
    k->hooks.limits = limits;
    k->hooks.verify_failed = verify_failed;
    return k;
}

typedef void (*handler)(relay_node *k, relay_link *l, const http_request *req, http_response *resp);

/* The handler's answer to body: its status; *answer a copy of its body. */
static int post(relay_node *k, handler h, const char *body, char **answer)
{
    http_request req;
    http_response resp = {0, NULL, 0};
    memset(&req, 0, sizeof req);
    req.method = "POST";
    req.body = body;
    req.body_len = strlen(body);
    h(k, &k->links[0], &req, &resp);
    ck_assert_ptr_nonnull(resp.body);
    *answer = strdup(resp.body);
    etsi_text_free(resp.body);
    return resp.status;
}

static void claimed_handler(relay_node *k, relay_link *l, const http_request *req, http_response *resp)
{
    stock_claimed_handle(k, l, req, resp);
}

/* text with the first `from` replaced by `to` (malloc'ed). */
static char *replaced(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    ck_assert_msg(at != NULL, "'%s' not in %s", from, text);
    char *out = malloc(strlen(text) + strlen(to) + 1);
    ck_assert_ptr_nonnull(out);
    size_t head = (size_t)(at - text);
    memcpy(out, text, head);
    strcpy(out + head, to);
    strcat(out, at + strlen(from));
    return out;
}

/* json with the first digit of its last "tag" changed. */
static char *tag_flipped(const char *json)
{
    char *out = strdup(json), *at = NULL, *p = out;
    ck_assert_ptr_nonnull(out);
    while ((p = strstr(p, "\"tag\":\"")))
        at = p, p++;
    ck_assert_ptr_nonnull(at);
    at += 7;
    *at = *at == '0' ? '1' : '0';
    return out;
}

static const char *message_of(const char *body)
{
    static kme_ack ack;
    ck_assert_int_eq(kme_ack_from_json(body, strlen(body), &ack), 0);
    return ack.message;
}

/* Every block's meta at one end, to see that nothing changed. */
typedef struct {
    lb_meta m[NBLOCKS * 3 + 1];
    uint64_t n;
} link_snapshot;

static void snap(kme_store *s, const char *peer, uint64_t n, link_snapshot *out)
{
    memset(out, 0, sizeof *out);
    out->n = n;
    for (uint64_t seq = 1; seq <= n; seq++)
        out->m[seq] = pair_meta(s, peer, seq);
}

static void assert_same(const link_snapshot *a, const link_snapshot *b)
{
    ck_assert_uint_eq(a->n, b->n);
    for (uint64_t seq = 1; seq <= a->n; seq++) {
        const lb_meta *x = &a->m[seq], *y = &b->m[seq];
        ck_assert_msg(x->state == y->state && x->owner == y->owner && x->granted == y->granted &&
                          x->nused == y->nused && memcmp(x->used, y->used, x->nused * sizeof *x->used) == 0,
                      "block %llu changed", (unsigned long long)seq);
    }
}

/* Bytes of block seq used at one end. */
static uint32_t used_bytes(kme_store *s, const char *peer, uint64_t seq)
{
    lb_meta m = pair_meta(s, peer, seq);
    return lb_extents_used_bytes(&m);
}

/* Blocks 1..n at both ends, verified: A owns the even seqs, B the odd ones. */
static void link_ready(uint64_t n)
{
    verify_state v;
    open_stores();
    ingest_both(1, n, 0);
    verify_all(&v);
    ck_assert_int_eq(v.n, (int)n);
}

/* ---- sealing at A as the senders do -------------------------------------------------- */

typedef struct {
    enum auth_kind kind;
    void *msg;
    auth_answer_key *answer;
    kme_reserve_request *reserve; /* its key is carved first */
    unsigned char key[32];
    kme_range ranges[8];
} seal_arg;

static int do_seal(kme_store *s, MDB_txn *t, void *arg)
{
    seal_arg *a = arg;
    if (a->reserve) {
        size_t n = 0;
        int rc = lb_allocate(s, t, &la, sizeof a->key, a->key, a->ranges, 8, &n);
        if (rc != LB_OK)
            return rc;
        a->reserve->keys[0].first_range = 0;
        a->reserve->keys[0].nranges = n;
        a->reserve->range_count = n;
    }
    return auth_seal_from_link(s, t, &la, a->kind, a->msg, a->answer);
}

static void seal_at_a(seal_arg *a)
{
    ck_assert_int_eq(store_commit(&sa, do_seal, a), 0);
    ck_assert_uint_gt(auth_of(a->kind, a->msg)->key_count, 0);
}

static int reply_ok(const auth_answer_key *k, int status, const char *body)
{
    peer_reply r;
    memset(&r, 0, sizeof r);
    r.http_status = status;
    r.body = (char *)body;
    r.len = strlen(body);
    return auth_reply_ok(k, &r);
}

/* ---- reserve ---------------------------------------------------------------------------- */

typedef struct {
    kme_reserve_request msg;
    kme_reserved_key keys[1];
    seal_arg seal;
    auth_answer_key answer;
    char *json;
} reserve_case;

static void reserve_new(reserve_case *c, const char *slave)
{
    memset(c, 0, sizeof *c);
    strcpy(c->msg.master, "SAE_A");
    strcpy(c->msg.slaves[0], slave);
    c->msg.slave_count = 1;
    c->msg.size_bits = 256;
    c->msg.expires = 1900000000;
    ck_assert_int_eq(uuid_generate(c->keys[0].key_id), 0);
    c->msg.keys = c->keys;
    c->msg.key_count = 1;
    c->msg.ranges = c->seal.ranges;
    c->seal.kind = AUTH_RESERVE;
    c->seal.msg = &c->msg;
    c->seal.answer = &c->answer;
    c->seal.reserve = &c->msg;
    seal_at_a(&c->seal);
    c->json = kme_reserve_request_to_json(&c->msg);
    ck_assert_ptr_nonnull(c->json);
}

static void reserve_free(reserve_case *c)
{
    etsi_text_free(c->json);
    auth_answer_key_wipe(&c->answer);
}

static int key_held(kme_store *s, const char *key_id)
{
    MDB_txn *t;
    ck_assert_int_eq(store_read_begin(s, &t), 0);
    int held = kr_exists(s, t, key_id);
    mdb_txn_abort(t);
    return held;
}

START_TEST(reserve_altered_after_sealing_is_refused_and_spends_nothing)
{
    link_ready(NBLOCKS);
    relay_node *b = node_new(&sb, "KME_B", "KME_A", hosts_b);
    reserve_case c;
    reserve_new(&c, "SAE_B");
    link_snapshot before, after;
    snap(&sb, "KME_A", NBLOCKS, &before);
    /* The slaves rewritten on the way (to another SAE B hosts), the master,
     * a range, the expiry, the tag: each refused before anything is read. */
    char *bad[] = {
        replaced(c.json, "[\"SAE_B\"]", "[\"SAE_B2\"]"),
        replaced(c.json, "\"master\":\"SAE_A\"", "\"master\":\"SAE_B\""),
        replaced(c.json, "\"expires\":1900000000", "\"expires\":1900000001"),
        tag_flipped(c.json),
    };
    char *answer;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int status = post(b, reserve_handle, bad[i], &answer);
        ck_assert_msg(status == 400, "altered reserve %zu answered %d: %s", i, status, answer);
        ck_assert_str_eq(message_of(answer), "request not authentic");
        ck_assert(!reply_ok(&c.answer, status, answer)); /* not tagged: A keeps its bytes in doubt */
        free(answer);
        free(bad[i]);
        ck_assert(!key_held(&sb, c.keys[0].key_id));
        snap(&sb, "KME_A", NBLOCKS, &after);
        assert_same(&before, &after);
    }
    /* Without a MAC at all: refused as malformed. */
    char *bare = replaced(c.json, "\"mac_key\"", "\"mac_kex\"");
    ck_assert_int_eq(post(b, reserve_handle, bare, &answer), 400);
    free(answer);
    free(bare);
    snap(&sb, "KME_A", NBLOCKS, &after);
    assert_same(&before, &after);
    /* The message as sealed: committed for SAE_B with A's bytes, the MAC
     * keys and the key taken in that commit, the answer tagged. */
    ck_assert_int_eq(post(b, reserve_handle, c.json, &answer), 200);
    ck_assert(reply_ok(&c.answer, 200, answer));
    ck_assert(!reply_ok(&c.answer, 503, answer)); /* the status is covered */
    free(answer);
    ck_assert(key_held(&sb, c.keys[0].key_id));
    char *slaves = NULL;
    MDB_txn *t;
    ck_assert_int_eq(store_read_begin(&sb, &t), 0);
    ck_assert_int_eq(kr_slaves(&sb, t, c.keys[0].key_id, &slaves), KR_OK);
    mdb_txn_abort(t);
    ck_assert_str_eq(slaves, "SAE_B");
    free(slaves);
    uint32_t spent = 0;
    for (uint64_t seq = 2; seq <= NBLOCKS; seq += 2)
        spent += used_bytes(&sb, "KME_A", seq) - LB_MAC_BYTES;
    ck_assert_uint_eq(spent, 32 + 2 * KME_MAC_KEY_BYTES); /* the key, the MAC key, the answer key */
    /* The same message again finds its MAC keys used: refused, nothing changes. */
    snap(&sb, "KME_A", NBLOCKS, &before);
    ck_assert_int_eq(post(b, reserve_handle, c.json, &answer), 409);
    free(answer);
    snap(&sb, "KME_A", NBLOCKS, &after);
    assert_same(&before, &after);
    reserve_free(&c);
    free(b);
    close_stores();
}
END_TEST

START_TEST(reserve_refusal_is_tagged_and_spends_only_the_mac_keys)
{
    link_ready(NBLOCKS);
    relay_node *b = node_new(&sb, "KME_B", "KME_A", hosts_b);
    reserve_case c;
    reserve_new(&c, "SAE_Z"); /* not hosted at B */
    char *answer;
    ck_assert_int_eq(post(b, reserve_handle, c.json, &answer), 400);
    ck_assert_str_eq(message_of(answer), "unknown slave SAE");
    ck_assert(reply_ok(&c.answer, 400, answer)); /* authentic refusal: A may release the key's bytes */
    /* An answer altered on the way is not the neighbour's. */
    char *forged = replaced(answer, "unknown slave SAE", "committed");
    ck_assert(!reply_ok(&c.answer, 200, forged));
    free(forged);
    free(answer);
    ck_assert(!key_held(&sb, c.keys[0].key_id));
    /* B took the MAC keys only: the key's range is free at B. */
    uint32_t spent = 0;
    for (uint64_t seq = 2; seq <= NBLOCKS; seq += 2)
        spent += used_bytes(&sb, "KME_A", seq) - LB_MAC_BYTES;
    ck_assert_uint_eq(spent, 2 * KME_MAC_KEY_BYTES);
    reserve_free(&c);
    free(b);
    close_stores();
}
END_TEST

/* ---- resolve ------------------------------------------------------------------------------ */

typedef struct {
    unsigned char out[40];
    kme_range r[8];
    size_t n;
} carve;

static int do_carve(kme_store *s, MDB_txn *t, void *arg)
{
    carve *c = arg;
    return lb_allocate(s, t, &la, sizeof c->out, c->out, c->r, 8, &c->n);
}

START_TEST(resolve_answer_counts_only_when_tagged)
{
    link_ready(NBLOCKS);
    relay_node *b = node_new(&sb, "KME_B", "KME_A", hosts_b);
    /* A reservation of 40 bytes whose answer was lost: A spent them, B never saw them. */
    seal_arg doubt;
    memset(&doubt, 0, sizeof doubt);
    kme_resolve q;
    memset(&q, 0, sizeof q);
    auth_answer_key key;
    memset(&key, 0, sizeof key);
    static carve cv;
    memset(&cv, 0, sizeof cv);
    ck_assert_int_eq(store_commit(&sa, do_carve, &cv), LB_OK);
    q.count = cv.n;
    q.ranges = cv.r;
    q.used = calloc(cv.n, 1);
    kme_resolve_reservation named = {"", (int64_t)time(NULL) + 600, 0, cv.n, 0};
    ck_assert_int_eq(uuid_generate(named.key_id), 0);
    q.reservation_count = 1;
    q.reservations = &named;
    doubt.kind = AUTH_RESOLVE;
    doubt.msg = &q;
    doubt.answer = &key;
    seal_at_a(&doubt);
    char *json = kme_resolve_request_to_json(&q), *answer;
    link_snapshot before, after;
    snap(&sb, "KME_A", NBLOCKS, &before);
    char *bad = replaced(json, "\"ranges\":[[", "\"ranges\":[[1");
    ck_assert_int_eq(post(b, reserve_resolve_handle, bad, &answer), 400);
    ck_assert_str_eq(message_of(answer), "request not authentic");
    free(bad);
    free(answer);
    snap(&sb, "KME_A", NBLOCKS, &after);
    assert_same(&before, &after);
    /* Authentic: B answers "unused" and withdraws it, tagged; A may release the bytes. */
    ck_assert_int_eq(post(b, reserve_resolve_handle, json, &answer), 200);
    etsi_problem p;
    ck_assert_int_eq(kme_resolve_response_from_json(answer, strlen(answer), &q, &p), 0);
    ck_assert_int_eq(q.used[0], 0);
    ck_assert(q.final && named.withdrawn);
    ck_assert(auth_answer_ok(&key, 200, "", &q, q.has_tag, q.tag));
    /* The answer altered to "used" or "not withdrawn" (or untagged) does not count. */
    q.used[0] = 1;
    ck_assert(!auth_answer_ok(&key, 200, "", &q, q.has_tag, q.tag));
    q.used[0] = 0;
    named.withdrawn = 0;
    ck_assert(!auth_answer_ok(&key, 200, "", &q, q.has_tag, q.tag));
    named.withdrawn = 1;
    ck_assert(!auth_answer_ok(&key, 200, "", &q, 0, q.tag));
    free(answer);
    etsi_text_free(json);
    free(q.used);
    auth_answer_key_wipe(&key);
    free(b);
    close_stores();
}
END_TEST

/* ---- claimed ------------------------------------------------------------------------------- */

typedef struct {
    const char *id;
    int64_t expires;
} put_key_arg;

static int do_put_key(kme_store *s, MDB_txn *t, void *arg)
{
    put_key_arg *a = arg;
    const char *slaves[1] = {"SAE_B"};
    unsigned char bytes[32] = {1};
    key_record rec;
    kr_fill(&rec, a->id, "SAE_A", slaves, 1, a->expires, bytes, sizeof bytes);
    return kr_put(s, t, &rec);
}

typedef struct {
    int64_t now;
    int n;
} expire_arg;

static int do_expire(kme_store *s, MDB_txn *t, void *arg)
{
    expire_arg *a = arg;
    a->n = kr_expire(s, t, a->now, 100);
    return a->n < 0;
}

START_TEST(claimed_with_a_bad_tag_changes_no_expiry)
{
    link_ready(NBLOCKS);
    relay_node *b = node_new(&sb, "KME_B", "KME_A", hosts_b);
    char id[UUID_STR_LEN + 1];
    ck_assert_int_eq(uuid_generate(id), 0);
    put_key_arg pk = {id, 1900000000};
    ck_assert_int_eq(store_commit(&sb, do_put_key, &pk), 0);
    /* A claims it was handed out long ago: B would let it expire at once. */
    char ids[1][UUID_STR_LEN + 1];
    int64_t at[1] = {1000};
    memcpy(ids[0], id, sizeof ids[0]);
    kme_claimed c;
    memset(&c, 0, sizeof c);
    c.count = 1;
    c.key_ids = ids;
    c.at = at;
    seal_arg s = {AUTH_CLAIMED, &c, NULL, NULL, {0}, {{0, 0, 0}}};
    seal_at_a(&s);
    ck_assert_uint_eq(c.auth.answer_count, 0);
    char *json = kme_claimed_to_json(&c), *answer;
    char *bad = replaced(json, "1000]", "1001]");
    link_snapshot before, after;
    snap(&sb, "KME_A", NBLOCKS, &before);
    ck_assert_int_eq(post(b, claimed_handler, bad, &answer), 400);
    ck_assert_str_eq(message_of(answer), "request not authentic");
    free(answer);
    free(bad);
    snap(&sb, "KME_A", NBLOCKS, &after);
    assert_same(&before, &after);
    expire_arg e = {(int64_t)time(NULL), 0};
    ck_assert_int_eq(store_commit(&sb, do_expire, &e), 0);
    ck_assert_int_eq(e.n, 0); /* the key lives on */
    ck_assert(key_held(&sb, id));
    /* The claims as sealed: recorded, the key expires. */
    ck_assert_int_eq(post(b, claimed_handler, json, &answer), 200);
    free(answer);
    ck_assert_int_eq(store_commit(&sb, do_expire, &e), 0);
    ck_assert_int_eq(e.n, 1);
    ck_assert(!key_held(&sb, id));
    /* The same claims again: their MAC key is spent. */
    ck_assert_int_eq(post(b, claimed_handler, json, &answer), 409);
    free(answer);
    etsi_text_free(json);
    free(b);
    close_stores();
}
END_TEST

/* ---- grant --------------------------------------------------------------------------------- */

START_TEST(grant_with_a_bad_tag_moves_no_block_and_answers_are_checked)
{
    link_ready(NBLOCKS);
    relay_node *b = node_new(&sb, "KME_B", "KME_A", hosts_b);
    /* A gives two blocks (2 and 4) and keeps 6 and 8, which its MAC comes from. */
    grant_batch *gb = calloc(1, sizeof *gb);
    ck_assert_ptr_nonnull(gb);
    gb->link = &la;
    gb->want_bytes = 2 * (BLOCK - LB_MAC_BYTES);
    ck_assert_int_eq(store_commit(&sa, grant_start_op, gb), 0);
    ck_assert_uint_eq(gb->count, 2);
    kme_grant g;
    memset(&g, 0, sizeof g);
    g.count = gb->count;
    g.seqs = gb->seqs;
    auth_answer_key key;
    memset(&key, 0, sizeof key);
    seal_arg s = {AUTH_GRANT, &g, &key, NULL, {0}, {{0, 0, 0}}};
    seal_at_a(&s);
    char *json = kme_grant_request_to_json(&g), *answer;
    link_snapshot before, after;
    snap(&sb, "KME_A", NBLOCKS, &before);
    /* Block 6 added on the way: A still owns it; B must not take it. */
    char *bad = replaced(json, "\"seqs\":[2,4]", "\"seqs\":[2,4,6]");
    ck_assert_int_eq(post(b, grant_handle, bad, &answer), 400);
    ck_assert_str_eq(message_of(answer), "request not authentic");
    free(answer);
    free(bad);
    snap(&sb, "KME_A", NBLOCKS, &after);
    assert_same(&before, &after);
    ck_assert_int_eq(pair_meta(&sb, "KME_A", 6).owner, LB_OWNER_PEER);
    /* As sealed: taken, the answer tagged over the accepted blocks. */
    ck_assert_int_eq(post(b, grant_handle, json, &answer), 200);
    kme_grant acc;
    etsi_problem p;
    ck_assert_int_eq(kme_grant_response_from_json(answer, strlen(answer), &g, &acc, &p), 0);
    ck_assert_uint_eq(acc.count, 2);
    ck_assert(auth_answer_ok(&key, 200, "", &acc, acc.has_tag, acc.tag));
    ck_assert_int_eq(pair_meta(&sb, "KME_A", 2).owner, LB_OWNER_SELF);
    ck_assert_int_eq(pair_meta(&sb, "KME_A", 4).owner, LB_OWNER_SELF);
    /* A refusal forged from it (block 4 dropped from the answer) does not
     * count: taking 4 back at A would give it two owners. */
    acc.count = 1;
    ck_assert(!auth_answer_ok(&key, 200, "", &acc, acc.has_tag, acc.tag));
    acc.count = 2;
    ck_assert(!auth_answer_ok(&key, 200, "", &acc, 0, acc.tag));
    kme_grant_clear(&acc);
    free(answer);
    etsi_text_free(json);
    auth_answer_key_wipe(&key);
    free(gb);
    free(b);
    close_stores();
}
END_TEST

/* ---- verify ---------------------------------------------------------------------------------- */

/* One verification from node a (initiator) to node b; the handler's answer
 * in *answer. Returns the status. */
static int verify_request(relay_node *a, relay_node *b, link_verify_txn **t, char **answer)
{
    int rc;
    size_t blocks;
    *t = link_verify_begin(a, &a->links[0], &rc);
    ck_assert_ptr_nonnull(*t);
    char *json = link_verify_request_text(*t, &blocks);
    int status = post(b, kme_port_verify, json, answer);
    etsi_text_free(json);
    return status;
}

/* A block's state; a discarded block is erased: LB_DISCARDED when spent. */
static int state_of(kme_store *s, const char *peer, uint64_t seq)
{
    lb_meta m;
    if (!pair_has_meta(s, peer, seq, &m)) {
        ck_assert(pair_spent(s, peer, seq));
        return LB_DISCARDED;
    }
    return m.state;
}

START_TEST(verdicts_with_a_bad_tag_are_refused)
{
    open_stores();
    relay_node *a = node_new(&sa, "KME_A", "KME_B", hosts_a), *b = node_new(&sb, "KME_B", "KME_A", hosts_b);
    link_verify_txn *t;
    char *answer;
    /* A new link: A owns no key yet, so the first request and its verdicts go untagged. */
    ingest_both(1, NBLOCKS, 0);
    ck_assert_int_eq(verify_request(a, b, &t, &answer), 200);
    ck_assert_ptr_null(strstr(answer, "\"tag\":\""));
    ck_assert_int_eq(link_verify_finish(a, t, answer, strlen(answer)), NBLOCKS);
    link_verify_free(t);
    free(answer);
    /* Now A owns key: the request is tagged and so are the verdicts. Block
     * 12 differs at B. */
    ingest_both(NBLOCKS + 1, 2 * NBLOCKS, 12);
    ck_assert_int_eq(verify_request(a, b, &t, &answer), 200);
    ck_assert_ptr_nonnull(strstr(answer, "\"tag\":\""));
    ck_assert_int_eq(state_of(&sb, "KME_A", 12), LB_DISCARDED);
    /* Verdicts altered on the way ("match" for the block that differs) or
     * untagged: refused, the blocks stay locked at A. */
    char *forged = replaced(answer, "\"seq\":12,\"result\":\"mismatch\"", "\"seq\":12,\"result\":\"match\"");
    ck_assert_int_eq(link_verify_finish(a, t, forged, strlen(forged)), -1);
    free(forged);
    forged = replaced(answer, "\"tag\":\"", "\"tog\":\"");
    ck_assert_int_eq(link_verify_finish(a, t, forged, strlen(forged)), -1);
    free(forged);
    for (uint64_t seq = NBLOCKS + 1; seq <= 2 * NBLOCKS; seq++)
        ck_assert_int_eq(state_of(&sa, "KME_B", seq), LB_LOCKED);
    /* The answer as B tagged it settles them. */
    ck_assert_int_eq(link_verify_finish(a, t, answer, strlen(answer)), NBLOCKS);
    ck_assert_int_eq(state_of(&sa, "KME_B", 12), LB_DISCARDED);
    ck_assert_int_eq(state_of(&sa, "KME_B", 13), LB_VERIFIED);
    link_verify_free(t);
    free(answer);
    free(a);
    free(b);
    close_stores();
}
END_TEST

START_TEST(verify_requests_forged_without_link_key_discard_nothing)
{
    link_ready(NBLOCKS); /* A owns key from here on */
    relay_node *a = node_new(&sa, "KME_A", "KME_B", hosts_a), *b = node_new(&sb, "KME_B", "KME_A", hosts_b);
    ingest_both(NBLOCKS + 1, NBLOCKS + 4, 0);
    link_snapshot before, after;
    snap(&sb, "KME_A", NBLOCKS + 4, &before);
    /* Untagged, with made-up block tags: the blocks do not match, but B
     * keeps them, for A owns key to tag a request with. */
    char forged[1024];
    snprintf(forged, sizeof forged,
             "{\"txn_id\":\"6899051d-1655-442f-885a-778f1004bcae\",\"timeout_ms\":1000,\"blocks\":["
             "{\"seq\":%d,\"tag\":\"00000000000000000000000000000000\"},"
             "{\"seq\":%d,\"tag\":\"00000000000000000000000000000000\"}]}",
             NBLOCKS + 1, NBLOCKS + 2);
    char *answer;
    ck_assert_int_eq(post(b, kme_port_verify, forged, &answer), 200);
    ck_assert_ptr_nonnull(strstr(answer, "mismatch"));
    free(answer);
    snap(&sb, "KME_A", NBLOCKS + 4, &after);
    assert_same(&before, &after);
    /* A tagged request altered after sealing: refused, nothing changes. */
    int rc;
    size_t blocks;
    link_verify_txn *t = link_verify_begin(a, &a->links[0], &rc);
    ck_assert_ptr_nonnull(t);
    char *json = link_verify_request_text(t, &blocks);
    ck_assert_uint_eq(blocks, 4);
    char *bad = replaced(json, "\"timeout_ms\":5000", "\"timeout_ms\":5001");
    ck_assert_int_eq(post(b, kme_port_verify, bad, &answer), 400);
    ck_assert_str_eq(message_of(answer), "request not authentic");
    free(answer);
    free(bad);
    snap(&sb, "KME_A", NBLOCKS + 4, &after);
    assert_same(&before, &after);
    /* The request as A made it verifies all four at both ends. */
    ck_assert_int_eq(post(b, kme_port_verify, json, &answer), 200);
    ck_assert_int_eq(link_verify_finish(a, t, answer, strlen(answer)), 4);
    for (uint64_t seq = NBLOCKS + 1; seq <= NBLOCKS + 4; seq++) {
        ck_assert_int_eq(state_of(&sa, "KME_B", seq), LB_VERIFIED);
        ck_assert_int_eq(state_of(&sb, "KME_A", seq), LB_VERIFIED);
    }
    free(answer);
    etsi_text_free(json);
    link_verify_free(t);
    free(a);
    free(b);
    close_stores();
}
END_TEST

/* ---- link_ids --------------------------------------------------------------------------------- */

static int check_at_b(const char *json, auth_answer_key *key)
{
    kme_link_ids in;
    etsi_problem p;
    ck_assert_int_eq(kme_link_ids_request_from_json(json, strlen(json), &in, &p), 0);
    int rc = auth_check(&sb, &lb_, AUTH_LINK_IDS, &in, key);
    kme_link_ids_clear(&in);
    return rc;
}

typedef struct {
    const char *json;
    int rc;
} take_ids_arg;

static int do_take_ids(kme_store *s, MDB_txn *t, void *arg)
{
    take_ids_arg *a = arg;
    kme_link_ids in;
    etsi_problem p;
    ck_assert_int_eq(kme_link_ids_request_from_json(a->json, strlen(a->json), &in, &p), 0);
    a->rc = auth_take(s, t, &lb_, AUTH_LINK_IDS, &in);
    kme_link_ids_clear(&in);
    return 0;
}

static int untagged_ok_at_b(void)
{
    MDB_txn *t;
    ck_assert_int_eq(store_read_begin(&sb, &t), 0);
    int ok = auth_untagged_ok(&sb, t, &lb_, 0);
    mdb_txn_abort(t);
    return ok;
}

START_TEST(link_ids_forged_or_replayed_is_refused)
{
    /* A new link: nobody owns key, a request without a MAC is taken. */
    open_stores();
    ingest_both(1, NBLOCKS, 0);
    ck_assert(untagged_ok_at_b());
    close_stores();
    /* Once A owns key, it is not. */
    link_ready(NBLOCKS);
    ck_assert(!untagged_ok_at_b());
    kme_link_ids ids = {0};
    ids.seq = 77;
    ids.size_bits = 256;
    ck_assert_int_eq(kme_link_ids_add(&ids, "01a241da-4ece-7e60-b12a-9cc52b8dcf19"), 0);
    ck_assert_int_eq(kme_link_ids_add(&ids, "01a241da-4ece-78e4-937a-8c7bb5b61e7f"), 0);
    auth_answer_key key_a, key_b;
    memset(&key_a, 0, sizeof key_a);
    memset(&key_b, 0, sizeof key_b);
    seal_arg s = {AUTH_LINK_IDS, &ids, &key_a, NULL, {0}, {{0, 0, 0}}};
    seal_at_a(&s);
    char *json = kme_link_ids_request_to_json(&ids);
    ck_assert_ptr_nonnull(strstr(json, "\"mac_key\""));
    /* Another seq, or a key_ID dropped, after sealing: not authentic. */
    char *bad = replaced(json, "\"seq\":77", "\"seq\":99999");
    ck_assert_int_eq(check_at_b(bad, NULL), LM_BAD_TAG);
    free(bad);
    bad = replaced(json, ",\"01a241da-4ece-78e4-937a-8c7bb5b61e7f\"", "");
    ck_assert_int_eq(check_at_b(bad, NULL), LM_BAD_TAG);
    free(bad);
    /* As sealed: authentic; its MAC keys are used with its effect. */
    ck_assert_int_eq(check_at_b(json, &key_b), LM_OK);
    ck_assert(key_b.set);
    take_ids_arg t = {json, -1};
    ck_assert_int_eq(store_commit(&sb, do_take_ids, &t), 0);
    ck_assert_int_eq(t.rc, LM_OK);
    /* Replayed: its MAC key is spent. */
    ck_assert_int_eq(check_at_b(json, NULL), LM_REUSED);
    /* B's answer counts at A only as B tagged it. */
    kme_link_ids ans = {0};
    ans.seq = 77;
    ans.next_seq = 78;
    ck_assert_int_eq(kme_link_ids_add(&ans, "01a241da-4ece-78e4-937a-8c7bb5b61e7f"), 0);
    ck_assert_int_eq(auth_answer_tag(&key_b, 200, "", &ans, ans.tag), 0);
    ck_assert(auth_answer_ok(&key_a, 200, "", &ans, 1, ans.tag));
    ans.next_seq = 100000; /* a forged mark would make A skip seqs */
    ck_assert(!auth_answer_ok(&key_a, 200, "", &ans, 1, ans.tag));
    ans.next_seq = 78;
    ck_assert(!auth_answer_ok(&key_a, 200, "", &ans, 0, ans.tag));
    kme_link_ids_clear(&ans);
    kme_link_ids_clear(&ids);
    etsi_text_free(json);
    auth_answer_key_wipe(&key_a);
    auth_answer_key_wipe(&key_b);
    close_stores();
}
END_TEST

/* ---- the canonical encodings ------------------------------------------------------------ */

START_TEST(canonical_bytes_cover_the_mac_ranges)
{
    kme_grant g;
    uint64_t seqs[2] = {2, 4};
    memset(&g, 0, sizeof g);
    g.count = 2;
    g.seqs = seqs;
    g.auth.key_count = 1;
    g.auth.key[0] = (kme_range){6, 48, 32};
    g.auth.answer_count = 1;
    g.auth.answer[0] = (kme_range){6, 80, 32};
    unsigned char *x, *y;
    size_t xl, yl;
    ck_assert_int_eq(auth_canonical_bytes(AUTH_GRANT, &g, &x, &xl), 0);
    g.auth.answer[0].offset++;
    ck_assert_int_eq(auth_canonical_bytes(AUTH_GRANT, &g, &y, &yl), 0);
    ck_assert(xl == yl && memcmp(x, y, xl) != 0);
    /* The tag itself is not part of them. */
    free(y);
    g.auth.answer[0].offset--;
    g.auth.tag[0] ^= 1;
    ck_assert_int_eq(auth_canonical_bytes(AUTH_GRANT, &g, &y, &yl), 0);
    ck_assert(xl == yl && memcmp(x, y, xl) == 0);
    ck_assert_ptr_nonnull(memmem(x, xl, "qkd-kme-grant-v1", 16));
    free(x);
    free(y);
}
END_TEST

int main(void)
{
    json_use_wiping_allocator();
    Suite *s = suite_create("msg_auth");
    TCase *tc = tcase_create("msg_auth");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, reserve_altered_after_sealing_is_refused_and_spends_nothing);
    tcase_add_test(tc, reserve_refusal_is_tagged_and_spends_only_the_mac_keys);
    tcase_add_test(tc, resolve_answer_counts_only_when_tagged);
    tcase_add_test(tc, claimed_with_a_bad_tag_changes_no_expiry);
    tcase_add_test(tc, grant_with_a_bad_tag_moves_no_block_and_answers_are_checked);
    tcase_add_test(tc, verdicts_with_a_bad_tag_are_refused);
    tcase_add_test(tc, verify_requests_forged_without_link_key_discard_nothing);
    tcase_add_test(tc, link_ids_forged_or_replayed_is_refused);
    tcase_add_test(tc, canonical_bytes_cover_the_mac_ranges);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
