/* Unit tests of resynchronising a restored store's link with its neighbour
 * (store/link_resync.h) on two real LMDB stores: after the exchange both ends
 * hold the same blocks, verified at both or at neither, with mirrored owners,
 * and the restored end has used nothing the neighbour has not. */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdlib.h>
#include <string.h>
#include "store/link_resync.h"
#include "tests/unit/link_pair.h"

static int do_mark_restored(kme_store *s, MDB_txn *t, void *a)
{
    (void)a;
    return lr_mark_restored(s, t);
}

static int pending(kme_store *s, const char *peer)
{
    MDB_txn *t;
    ck_assert_int_eq(store_read_begin(s, &t), 0);
    int p = lr_pending(s, t, peer);
    mdb_txn_abort(t);
    return p;
}

typedef struct {
    const uint64_t *have;
    size_t nhave, discarded;
    kme_link_view view;
} answer_arg;

static int do_answer(kme_store *s, MDB_txn *t, void *a)
{
    answer_arg *x = a;
    return lr_answer_view(s, t, "KME_A", x->have, x->nhave, &x->view, &x->discarded);
}

typedef struct {
    const kme_link_view *view;
    size_t kept, dropped;
} adopt_arg;

static int do_adopt(kme_store *s, MDB_txn *t, void *a)
{
    adopt_arg *x = a;
    return lr_adopt_view(s, t, &la, x->view, &x->kept, &x->dropped);
}

/* A (restored) asks B for its view and adopts it; the counts of both sides. */
static void resync(size_t *b_discarded, size_t *a_kept, size_t *a_dropped)
{
    MDB_txn *t;
    uint64_t *have = NULL;
    size_t nhave = 0;
    ck_assert_int_eq(store_read_begin(&sa, &t), 0);
    ck_assert_int_eq(lr_seqs_of(&sa, t, "KME_B", &have, &nhave), 0);
    mdb_txn_abort(t);
    answer_arg ans = {have, nhave, 0, {0}};
    ck_assert_int_eq(store_commit(&sb, do_answer, &ans), 0);
    free(have);
    adopt_arg ad = {&ans.view, 0, 0};
    ck_assert_int_eq(store_commit(&sa, do_adopt, &ad), 0);
    kme_link_view_clear(&ans.view);
    *b_discarded = ans.discarded;
    *a_kept = ad.kept;
    *a_dropped = ad.dropped;
}

/* Both ends hold block seq verified, owners mirrored, and A has used no
 * byte B has not. */
static void assert_agree_verified(uint64_t seq)
{
    lb_meta ma = pair_meta(&sa, "KME_B", seq), mb = pair_meta(&sb, "KME_A", seq);
    ck_assert_int_eq(ma.state, LB_VERIFIED);
    ck_assert_int_eq(mb.state, LB_VERIFIED);
    ck_assert_int_ne(ma.owner, mb.owner);
    ck_assert_uint_eq(ma.nused, mb.nused);
    for (uint32_t i = 0; i < ma.nused; i++) {
        ck_assert_uint_eq(ma.used[i].start, mb.used[i].start);
        ck_assert_uint_eq(ma.used[i].end, mb.used[i].end);
    }
}

/* The backup caught blocks 4..6 in a verification A had started and B had
 * answered: B holds them verified, the restored A still locked. A adopts
 * them verified (they are the same bytes B verified them against), so no
 * block is verified at one end and gone at the other. */
START_TEST(backup_mid_verification_keeps_both_ends_in_step)
{
    open_stores();
    ingest_both(1, 3, 0);
    verify_state v;
    verify_all(&v);
    ck_assert_int_eq(v.n, 3);
    ingest_both(4, 6, 0);
    memset(&v, 0, sizeof v);
    ck_assert_int_eq(store_commit(&sa, do_lock, &v), 0);
    ck_assert_int_eq(v.n, 3);
    ck_assert_int_eq(store_commit(&sb, do_respond, &v), 0); /* B verified 4..6; A's answer lost */
    ck_assert_int_eq(pair_meta(&sa, "KME_B", 5).state, LB_LOCKED);
    ck_assert_int_eq(store_commit(&sa, do_mark_restored, NULL), 0);
    ck_assert(pending(&sa, "KME_B"));

    size_t b_discarded, a_kept, a_dropped;
    resync(&b_discarded, &a_kept, &a_dropped);
    ck_assert_uint_eq(b_discarded, 0);
    ck_assert_uint_eq(a_kept, 6);
    ck_assert_uint_eq(a_dropped, 0);
    ck_assert(!pending(&sa, "KME_B"));
    for (uint64_t s = 1; s <= 6; s++)
        assert_agree_verified(s);
    close_stores();
}
END_TEST

/* A block only one end holds goes at both; one unverified at both stays for
 * the verification to settle; one B discarded is discarded at A too. */
START_TEST(blocks_one_end_lacks_go_at_both)
{
    open_stores();
    ingest_both(1, 2, 0);
    unsigned char data[BLOCK] = {1};
    ingest_arg only_a = {&la, 3, data, sizeof data}, only_b = {&lb_, 4, data, sizeof data};
    ck_assert_int_eq(store_commit(&sa, do_ingest, &only_a), LB_OK);
    ck_assert_int_eq(store_commit(&sb, do_ingest, &only_b), LB_OK);
    ck_assert_int_eq(store_commit(&sa, do_mark_restored, NULL), 0);

    size_t b_discarded, a_kept, a_dropped;
    resync(&b_discarded, &a_kept, &a_dropped);
    ck_assert_uint_eq(b_discarded, 1); /* 4: A never takes it now */
    ck_assert_uint_eq(a_dropped, 1);   /* 3: B has none */
    ck_assert_uint_eq(a_kept, 2);
    ck_assert(!pair_has_meta(&sa, "KME_B", 3, NULL));
    ck_assert(!pair_has_meta(&sb, "KME_A", 4, NULL));
    ck_assert_int_eq(pair_meta(&sa, "KME_B", 1).state, LB_UNVERIFIED);
    ck_assert_int_eq(pair_meta(&sb, "KME_A", 1).state, LB_UNVERIFIED);
    verify_state v;
    verify_all(&v);
    ck_assert_int_eq(v.n, 2);
    assert_agree_verified(1);
    assert_agree_verified(2);
    close_stores();
}
END_TEST

int main(void)
{
    const TTest *const checks[] = {backup_mid_verification_keeps_both_ends_in_step, blocks_one_end_lacks_go_at_both,
                                   NULL};
    return run_checks("link_resync", checks, 30, NULL, NULL);
}
