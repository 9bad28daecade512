/* Unit tests of the grant message (relay/grant, the lb_grant_* functions of
 * store/link_blocks) on the two real stores of one link: the policy, which
 * blocks are given, ownership after accept and refusal, retries, the pending
 * mark in meta records and across restarts, and the KME port handler (with
 * the grant's MAC). */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdlib.h>
#include <string.h>
#include "relay/grant.h"
#include "relay/msg_auth.h"
#include "tests/unit/link_pair.h"
#include "runtime/json_wipe.h"

#define FREE (BLOCK - LB_MAC_BYTES) /* free bytes of an unused block */
#define MIB (1024ULL * 1024)

typedef struct {
    const char *peer;
    uint64_t seq;
    lb_meta m;
} meta_arg;

static int do_put_meta(kme_store *s, MDB_txn *t, void *a)
{
    meta_arg *x = a;
    return lb_put_meta(s, t, x->peer, x->seq, &x->m);
}

static void put_meta(kme_store *s, const char *peer, uint64_t seq, const lb_meta *m)
{
    meta_arg a = {peer, seq, *m};
    ck_assert_int_eq(store_commit(s, do_put_meta, &a), 0);
}

/* Ingests blocks 1..n at both ends and verifies them: A owns the even seqs. */
static void link_with_blocks(uint64_t n)
{
    verify_state v;
    open_stores();
    ingest_both(1, n, 0);
    verify_all(&v);
    ck_assert_int_eq(v.n, (int)n);
}

/* Both ends agree: every verified block owned by exactly one, none pending. */
static void assert_mirrored(uint64_t n)
{
    for (uint64_t s = 1; s <= n; s++) {
        lb_meta a, b;
        int at_a = pair_has_meta(&sa, "KME_B", s, &a), at_b = pair_has_meta(&sb, "KME_A", s, &b);
        if (!at_a || !at_b) {
            /* Used up by its owner and erased there: the other end never owned it. */
            ck_assert(at_a ? pair_spent(&sb, "KME_A", s) && a.owner == LB_OWNER_PEER
                           : pair_spent(&sa, "KME_B", s) && (!at_b || b.owner == LB_OWNER_PEER));
            continue;
        }
        ck_assert_msg(a.owner != b.owner && a.owner != LB_OWNER_NONE && b.owner != LB_OWNER_NONE,
                      "block %llu owned by both or neither", (unsigned long long)s);
        ck_assert(!a.granted && !b.granted);
    }
}

/* ---- the steps of one grant, as store operations ------------------------------------ */

static grant_batch *start(kme_store *s, lb_link *l, uint64_t want)
{
    grant_batch *b = calloc(1, sizeof *b);
    ck_assert_ptr_nonnull(b);
    b->link = l;
    b->want_bytes = want;
    ck_assert_int_eq(store_commit(s, grant_start_op, b), 0);
    return b;
}

typedef struct {
    lb_link *l;
    const uint64_t *seqs;
    size_t n;
    uint8_t *accepted;
    uint64_t taken;
} accept_arg;

static int do_accept(kme_store *s, MDB_txn *t, void *a)
{
    accept_arg *x = a;
    return lb_grant_accept(s, t, x->l, x->seqs, x->n, x->accepted, &x->taken);
}

/* The grantee's commit; fills b->accepted as the answer would. Returns the bytes it took. */
static uint64_t accept_at(kme_store *s, lb_link *l, grant_batch *b)
{
    accept_arg a = {l, b->seqs, b->count, b->accepted, 0};
    ck_assert_int_eq(store_commit(s, do_accept, &a), 0);
    return a.taken;
}

static void settle(kme_store *s, grant_batch *b)
{
    ck_assert_int_eq(store_commit(s, grant_settle_op, b), 0);
}

typedef struct {
    lb_link *l;
    size_t nbytes;
    unsigned char out[8 * BLOCK];
    lb_range ranges[64];
    size_t n;
} alloc_arg;

static int do_alloc(kme_store *s, MDB_txn *t, void *a)
{
    alloc_arg *x = a;
    return lb_allocate(s, t, x->l, x->nbytes, x->out, x->ranges, 64, &x->n);
}

static int do_take(kme_store *s, MDB_txn *t, void *a)
{
    alloc_arg *x = a;
    return lb_take_peer_ranges(s, t, x->l, x->ranges, x->n, x->out);
}

static int alloc(kme_store *s, lb_link *l, size_t nbytes, alloc_arg *x)
{
    memset(x, 0, sizeof *x);
    x->l = l;
    x->nbytes = nbytes;
    return store_commit(s, do_alloc, x);
}

static int uses_seq(const alloc_arg *x, uint64_t seq)
{
    for (size_t i = 0; i < x->n; i++)
        if (x->ranges[i].seq == seq)
            return 1;
    return 0;
}

/* ---- tests ---------------------------------------------------------------------------- */

START_TEST(policy)
{
    ck_assert_uint_eq(grant_policy_bytes(0, 0), 0);
    ck_assert_uint_eq(grant_policy_bytes(10 * MIB, 0), 5 * MIB);
    ck_assert_uint_eq(grant_policy_bytes(100, 10), 45);
    ck_assert_uint_eq(grant_policy_bytes(40, 10), 0); /* not more than 4 x */
    ck_assert_uint_eq(grant_policy_bytes(4 * MIB, MIB), 0);
    ck_assert_uint_eq(grant_policy_bytes(9 * MIB, 2 * MIB), 7 * MIB / 2);
    ck_assert_uint_eq(grant_policy_bytes(UINT64_MAX, UINT64_MAX / 2), 0);
    /* A grant never leaves the grantor with less than the grantee. */
    for (uint64_t mine = 0; mine < 5000; mine += 97)
        for (uint64_t theirs = 0; theirs < 1000; theirs += 31) {
            uint64_t g = grant_policy_bytes(mine, theirs);
            ck_assert(g == 0 || mine - g >= theirs + g);
        }
}
END_TEST

START_TEST(picks_only_unused_owned_blocks)
{
    link_with_blocks(8); /* A owns 2, 4, 6, 8 */
    alloc_arg x;
    ck_assert_int_eq(alloc(&sa, &la, 100, &x), LB_OK);
    ck_assert(uses_seq(&x, 2));
    OPENSSL_cleanse(x.out, sizeof x.out);
    grant_batch *b = start(&sa, &la, UINT64_MAX);
    ck_assert_int_eq(b->retry, 0);
    ck_assert_uint_eq(b->count, 3);
    ck_assert_uint_eq(b->seqs[0], 4);
    ck_assert_uint_eq(b->seqs[1], 6);
    ck_assert_uint_eq(b->seqs[2], 8);
    ck_assert_uint_eq(b->bytes, 3 * FREE);
    for (uint64_t s = 1; s <= 8; s++) {
        lb_meta m = pair_meta(&sa, "KME_B", s);
        int given = s == 4 || s == 6 || s == 8;
        ck_assert_int_eq(m.granted, given);
        ck_assert_int_eq(m.owner, s == 2 ? LB_OWNER_SELF : LB_OWNER_PEER);
    }
    free(b);
    close_stores();
}
END_TEST

START_TEST(grant_size_follows_the_budget)
{
    link_with_blocks(8);
    grant_batch *b = start(&sa, &la, FREE - 1); /* less than a block: nothing */
    ck_assert_uint_eq(b->count, 0);
    free(b);
    b = start(&sa, &la, 2 * FREE + FREE / 2); /* whole blocks, never more than asked */
    ck_assert_int_eq(b->retry, 0);
    ck_assert_uint_eq(b->count, 2);
    ck_assert_uint_eq(b->bytes, 2 * FREE);
    ck_assert_uint_eq(b->seqs[0], 2);
    ck_assert_uint_eq(b->seqs[1], 4);
    ck_assert_uint_eq(pair_stock(&sa, &la).owned_free, 2 * FREE);
    free(b);
    close_stores();
}
END_TEST

START_TEST(accepted_blocks_move_to_the_grantee)
{
    link_with_blocks(4); /* A owns 2, 4; B owns 1, 3 */
    grant_batch *b = start(&sa, &la, UINT64_MAX);
    ck_assert_uint_eq(b->count, 2);
    /* Pending: given away by A, not yet taken by B; nobody can use them. */
    alloc_arg x;
    ck_assert_int_eq(alloc(&sa, &la, 1, &x), LB_SHORT);
    ck_assert_uint_eq(pair_stock(&sb, &lb_).owned_free, 2 * FREE);
    ck_assert_uint_eq(accept_at(&sb, &lb_, b), 2 * FREE);
    ck_assert(b->accepted[0] && b->accepted[1]);
    settle(&sa, b);
    ck_assert_uint_eq(b->confirmed_bytes, 2 * FREE);
    assert_mirrored(4);
    ck_assert_int_eq(pair_meta(&sb, "KME_A", 2).owner, LB_OWNER_SELF);
    ck_assert_int_eq(pair_meta(&sa, "KME_B", 2).owner, LB_OWNER_PEER);
    /* B allocates from all four blocks; A records the same ranges and gets the same bytes. */
    ck_assert_int_eq(alloc(&sb, &lb_, 4 * FREE, &x), LB_OK);
    ck_assert(uses_seq(&x, 2) && uses_seq(&x, 4));
    alloc_arg y = x;
    y.l = &la;
    memset(y.out, 0, sizeof y.out);
    ck_assert_int_eq(store_commit(&sa, do_take, &y), LB_OK);
    ck_assert_mem_eq(y.out, x.out, 4 * FREE);
    /* A owns nothing any more. */
    ck_assert_int_eq(alloc(&sa, &la, 1, &y), LB_SHORT);
    OPENSSL_cleanse(x.out, sizeof x.out);
    OPENSSL_cleanse(y.out, sizeof y.out);
    free(b);
    close_stores();
}
END_TEST

START_TEST(refused_blocks_come_back)
{
    link_with_blocks(6); /* A owns 2, 4, 6 */
    /* At B, block 4 has bytes used and block 6 is not verified (yet). */
    lb_meta m4 = pair_meta(&sb, "KME_A", 4), m6 = pair_meta(&sb, "KME_A", 6);
    ck_assert_int_eq(lb_extents_add(&m4, 100, 200), 0);
    put_meta(&sb, "KME_A", 4, &m4);
    m6.state = LB_LOCKED;
    put_meta(&sb, "KME_A", 6, &m6);
    grant_batch *b = start(&sa, &la, UINT64_MAX);
    ck_assert_uint_eq(b->count, 3);
    /* A block not verified at B yet: no answer but "later", and nothing changes at B. */
    accept_arg later = {&lb_, b->seqs, b->count, b->accepted, 0};
    ck_assert_int_eq(store_commit(&sb, do_accept, &later), LB_LATER);
    ck_assert_int_eq(pair_meta(&sb, "KME_A", 2).owner, LB_OWNER_PEER);
    ck_assert_int_eq(pair_meta(&sa, "KME_B", 2).granted, 1);
    /* Once verified, block 6 is taken; block 4 (used) is refused for good. */
    m6.state = LB_VERIFIED;
    put_meta(&sb, "KME_A", 6, &m6);
    ck_assert_uint_eq(accept_at(&sb, &lb_, b), 2 * FREE);
    ck_assert_int_eq(b->accepted[0], 1);
    ck_assert_int_eq(b->accepted[1], 0);
    ck_assert_int_eq(b->accepted[2], 1);
    ck_assert_int_eq(pair_meta(&sb, "KME_A", 4).owner, LB_OWNER_PEER);
    ck_assert_int_eq(pair_meta(&sb, "KME_A", 6).owner, LB_OWNER_SELF);
    settle(&sa, b);
    ck_assert_uint_eq(b->confirmed_bytes, 2 * FREE);
    lb_meta back = pair_meta(&sa, "KME_B", 4);
    ck_assert_int_eq(back.owner, LB_OWNER_SELF);
    ck_assert_int_eq(back.granted, 0);
    for (uint64_t s = 2; s <= 6; s += 4) {
        ck_assert_int_eq(pair_meta(&sa, "KME_B", s).owner, LB_OWNER_PEER);
        ck_assert_int_eq(pair_meta(&sa, "KME_B", s).granted, 0);
    }
    /* A allocates from the block it took back, B from the ones it took. */
    alloc_arg x;
    ck_assert_int_eq(alloc(&sa, &la, FREE, &x), LB_OK);
    ck_assert(uses_seq(&x, 4));
    ck_assert_int_eq(alloc(&sb, &lb_, 5 * FREE, &x), LB_OK); /* its own 1, 3, 5 and the two it took */
    ck_assert(uses_seq(&x, 2) && uses_seq(&x, 6));
    OPENSSL_cleanse(x.out, sizeof x.out);
    /* A block the grantee never held is refused; one below its ingest mark
     * without a record was spent here (a grant taken and used up, say), and
     * is answered taken so that the grantor never takes its bytes back. */
    uint64_t odd[2] = {99, 0};
    uint8_t acc[2] = {1, 0};
    accept_arg a = {&lb_, odd, 2, acc, 0};
    ck_assert_int_eq(store_commit(&sb, do_accept, &a), 0);
    ck_assert(!acc[0] && acc[1]);
    free(b);
    close_stores();
}
END_TEST

START_TEST(retried_grant_is_accepted_again)
{
    link_with_blocks(4);
    grant_batch *b = start(&sa, &la, UINT64_MAX);
    ck_assert_uint_eq(accept_at(&sb, &lb_, b), 2 * FREE);
    /* The answer is lost; B already uses block 2. */
    alloc_arg x;
    ck_assert_int_eq(alloc(&sb, &lb_, 2 * FREE + 10, &x), LB_OK);
    ck_assert(uses_seq(&x, 2));
    /* Block 2 is used up at B, and so erased there. */
    ck_assert(pair_spent(&sb, "KME_A", 2));
    lb_meta before = pair_meta(&sb, "KME_A", 4);
    grant_batch *again = start(&sa, &la, UINT64_MAX);
    ck_assert_int_eq(again->retry, 1);
    ck_assert_uint_eq(again->count, 2);
    ck_assert_mem_eq(again->seqs, b->seqs, 2 * sizeof b->seqs[0]);
    ck_assert_uint_eq(accept_at(&sb, &lb_, again), 0); /* nothing new taken */
    ck_assert(again->accepted[0] && again->accepted[1]);
    ck_assert(pair_spent(&sb, "KME_A", 2)); /* taken before: answered taken, still spent */
    lb_meta after = pair_meta(&sb, "KME_A", 4);
    ck_assert_int_eq(after.owner, LB_OWNER_SELF);
    ck_assert_uint_eq(after.nused, before.nused);
    ck_assert_uint_eq(lb_extents_used_bytes(&after), lb_extents_used_bytes(&before));
    settle(&sa, again);
    ck_assert_uint_eq(again->confirmed_bytes, 2 * FREE);
    /* Settling the same answer twice changes nothing. */
    settle(&sa, again);
    ck_assert_uint_eq(again->confirmed_bytes, 0);
    assert_mirrored(4);
    grant_batch *none = start(&sa, &la, 0);
    ck_assert_uint_eq(none->count, 0);
    OPENSSL_cleanse(x.out, sizeof x.out);
    free(b);
    free(again);
    free(none);
    close_stores();
}
END_TEST

START_TEST(no_new_grant_while_one_is_pending)
{
    char err[256];
    link_with_blocks(8);
    grant_batch *b = start(&sa, &la, FREE);
    ck_assert_uint_eq(b->count, 1);
    ck_assert_uint_eq(b->seqs[0], 2);
    /* The pending grant survives a restart and is sent again instead of a new one. */
    store_close(&sa);
    ck_assert_int_eq(store_open(&sa, dir_a, 64, "KME_A", NULL, err, sizeof err), 0);
    lb_link_init(&la, "KME_A", "KME_B");
    grant_batch *again = start(&sa, &la, UINT64_MAX);
    ck_assert_int_eq(again->retry, 1);
    ck_assert_uint_eq(again->count, 1);
    ck_assert_uint_eq(again->seqs[0], 2);
    ck_assert_uint_eq(again->bytes, FREE);
    for (uint64_t s = 4; s <= 8; s += 2) {
        ck_assert_int_eq(pair_meta(&sa, "KME_B", s).owner, LB_OWNER_SELF);
        ck_assert_int_eq(pair_meta(&sa, "KME_B", s).granted, 0);
    }
    /* Refused: block 2 comes back; then a new grant may take every owned block. */
    memset(again->accepted, 0, sizeof again->accepted);
    settle(&sa, again);
    grant_batch *fresh = start(&sa, &la, UINT64_MAX);
    ck_assert_int_eq(fresh->retry, 0);
    ck_assert_uint_eq(fresh->count, 4);
    free(b);
    free(again);
    free(fresh);
    close_stores();
}
END_TEST

/* Raw meta records, to check the format. */
typedef struct {
    uint64_t seq;
    unsigned char val[1024];
    size_t len;
    int put;
} raw_arg;

static int do_raw(kme_store *s, MDB_txn *t, void *a)
{
    raw_arg *r = a;
    unsigned char kb[80];
    MDB_val k = {lb_block_key(kb, "KME_B", r->seq), kb}, v = {r->len, r->val};
    if (r->put)
        return mdb_put(t, s->block_meta, &k, &v, 0);
    int rc = mdb_get(t, s->block_meta, &k, &v);
    if (rc == 0 && v.mv_size <= sizeof r->val) {
        memcpy(r->val, v.mv_data, v.mv_size);
        r->len = v.mv_size;
    }
    return rc;
}

START_TEST(pending_mark_in_meta_records)
{
    open_stores();
    ingest_both(1, 1, 0);
    lb_meta m = pair_meta(&sa, "KME_B", 1);
    m.state = LB_VERIFIED;
    m.owner = LB_OWNER_PEER;
    m.granted = 1;
    ck_assert_int_eq(lb_extents_add(&m, 100, 200), 0);
    put_meta(&sa, "KME_B", 1, &m);
    lb_meta back = pair_meta(&sa, "KME_B", 1);
    ck_assert_int_eq(back.granted, 1);
    ck_assert_int_eq(back.owner, LB_OWNER_PEER);
    ck_assert_uint_eq(back.nused, 2);
    ck_assert_uint_eq(back.used[1].start, 100);
    ck_assert_mem_eq(back.tag, m.tag, LB_TAG_BYTES);
    /* Without the mark the record is the one written before grants existed. */
    raw_arg r = {1, {0}, 0, 0};
    ck_assert_int_eq(store_commit(&sa, do_raw, &r), 0);
    size_t with_mark = r.len;
    r.len--;
    r.put = 1;
    ck_assert_int_eq(store_commit(&sa, do_raw, &r), 0);
    back = pair_meta(&sa, "KME_B", 1);
    ck_assert_int_eq(back.granted, 0);
    ck_assert_uint_eq(back.nused, 2);
    ck_assert_uint_eq(back.size, m.size);
    m.granted = 0;
    put_meta(&sa, "KME_B", 1, &m);
    r.put = 0;
    ck_assert_int_eq(store_commit(&sa, do_raw, &r), 0);
    ck_assert_uint_eq(r.len, with_mark - 1);
    /* Anything else after the extents is refused. */
    r.val[r.len++] = 2;
    r.put = 1;
    ck_assert_int_eq(store_commit(&sa, do_raw, &r), 0);
    MDB_txn *t;
    ck_assert_int_eq(store_read_begin(&sa, &t), 0);
    ck_assert_int_eq(lb_get_meta(&sa, t, "KME_B", 1, &back), MDB_CORRUPTED);
    mdb_txn_abort(t);
    close_stores();
}
END_TEST

/* ---- the KME port handler ---------------------------------------------------------------- */

static int handle(relay_node *k, const char *body, char **answer)
{
    http_request req;
    http_response resp = {0, NULL, 0};
    memset(&req, 0, sizeof req);
    req.method = "POST";
    req.path = "/kme/v1/grant";
    req.body = body;
    req.body_len = strlen(body);
    grant_handle(k, &k->links[0], &req, &resp);
    ck_assert_ptr_nonnull(resp.body);
    *answer = strdup(resp.body);
    etsi_text_free(resp.body);
    return resp.status;
}

typedef struct {
    kme_grant *g;
    auth_answer_key *key;
} seal_arg;

static int do_seal(kme_store *s, MDB_txn *t, void *a)
{
    seal_arg *x = a;
    return auth_seal_from_link(s, t, &la, AUTH_GRANT, x->g, x->key);
}

START_TEST(handler_takes_grants_and_refuses_bad_ones)
{
    char err[256], *answer;
    link_with_blocks(6);
    grant_batch *b = start(&sa, &la, 2 * FREE); /* A gives 2 and 4, keeps 6 for the MAC */
    ck_assert_uint_eq(b->count, 2);
    /* B's handler on B's store. */
    relay_node *k = calloc(1, sizeof *k);
    ck_assert_ptr_nonnull(k);
    static kme_store store_b;
    k->store = &store_b;
    store_close(&sb);
    ck_assert_int_eq(store_open(k->store, dir_b, 64, "KME_B", NULL, err, sizeof err), 0);
    lb_link_init(&k->links[0].lb, "KME_B", "KME_A");
    const char *bad[] = {"{\"seqs\":[]}", "{\"seqs\":[2,2]}", "{\"seqs\":[-2]}", "{\"seqs\":[2]}", "nonsense", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(handle(k, bad[i], &answer), 400);
        ck_assert_ptr_nonnull(strstr(answer, "\"message\""));
        free(answer);
    }
    ck_assert_int_eq(pair_meta(k->store, "KME_A", 2).owner, LB_OWNER_PEER); /* nothing changed */
    uint64_t sent[4] = {2, 3, 4, 77};
    kme_grant req, acc;
    auth_answer_key key;
    memset(&req, 0, sizeof req);
    req.count = 4;
    req.seqs = sent;
    seal_arg sa_ = {&req, &key};
    ck_assert_int_eq(store_commit(&sa, do_seal, &sa_), 0);
    char *body = kme_grant_request_to_json(&req);
    ck_assert_int_eq(handle(k, body, &answer), 200);
    etsi_text_free(body);
    etsi_problem p;
    ck_assert_int_eq(kme_grant_response_from_json(answer, strlen(answer), &req, &acc, &p), 0);
    ck_assert_uint_eq(acc.count, 3); /* 3 is B's already, 77 unknown */
    ck_assert_uint_eq(acc.seqs[0], 2);
    ck_assert_uint_eq(acc.seqs[1], 3);
    ck_assert_uint_eq(acc.seqs[2], 4);
    ck_assert(auth_answer_ok(&key, 200, "", &acc, acc.has_tag, acc.tag));
    for (size_t i = 0; i < acc.count; i++)
        for (size_t j = 0; j < b->count; j++)
            if (b->seqs[j] == acc.seqs[i])
                b->accepted[j] = 1;
    kme_grant_clear(&acc);
    auth_answer_key_wipe(&key);
    free(answer);
    settle(&sa, b);
    /* The grantor's round does nothing while the neighbour is down. */
    ck_assert_int_eq(grant_once(k, &k->links[0]), 0);
    store_close(k->store);
    ck_assert_int_eq(store_open(&sb, dir_b, 64, "KME_B", NULL, err, sizeof err), 0);
    assert_mirrored(6);
    free(k);
    free(b);
    close_stores();
}
END_TEST

int main(void)
{
    json_use_wiping_allocator();
    const TTest *const checks[] = {policy,
                                   picks_only_unused_owned_blocks,
                                   grant_size_follows_the_budget,
                                   accepted_blocks_move_to_the_grantee,
                                   refused_blocks_come_back,
                                   retried_grant_is_accepted_again,
                                   no_new_grant_while_one_is_pending,
                                   pending_mark_in_meta_records,
                                   handler_takes_grants_and_refuses_bad_ones,
                                   NULL};
    return run_checks("grant", checks, 30, NULL, NULL);
}
