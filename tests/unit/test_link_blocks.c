/* Unit tests of link blocks on real LMDB stores: extents, ownership, the
 * key-caching verdicts between two ends, allocation, reuse refusal, release. */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/rand.h>
#include "store/link_blocks.h"
#include "tests/unit/link_pair.h"

START_TEST(extents)
{
    lb_meta m;
    memset(&m, 0, sizeof m);
    m.size = 100;
    ck_assert_int_eq(lb_extents_add(&m, 10, 20), 0);
    ck_assert_int_eq(lb_extents_add(&m, 30, 40), 0);
    ck_assert_int_eq(lb_extents_add(&m, 20, 30), 0); /* joins both */
    ck_assert_uint_eq(m.nused, 1);
    ck_assert_uint_eq(m.used[0].start, 10);
    ck_assert_uint_eq(m.used[0].end, 40);
    ck_assert(lb_extents_overlap(&m, 39, 41));
    ck_assert(!lb_extents_overlap(&m, 40, 50));
    ck_assert(!lb_extents_overlap(&m, 0, 10));
    lb_extents_remove(&m, 15, 25);
    ck_assert_uint_eq(m.nused, 2);
    ck_assert_uint_eq(lb_extents_used_bytes(&m), 20);
}
END_TEST

START_TEST(ownership_is_complementary)
{
    lb_link a, b;
    lb_link_init(&a, "KME_A", "KME_B");
    lb_link_init(&b, "KME_B", "KME_A");
    for (uint64_t s = 0; s < 10; s++) {
        ck_assert_int_ne(lb_owner_of(&a, s), lb_owner_of(&b, s));
        ck_assert_int_eq(lb_owner_of(&a, s), s % 2 == 0 ? LB_OWNER_SELF : LB_OWNER_PEER);
    }
}
END_TEST

START_TEST(verification_settles_both_ends)
{
    open_stores();
    ingest_both(1, 6, 3);
    verify_state v;
    verify_all(&v);
    ck_assert_int_eq(v.n, 6);
    for (uint64_t s = 1; s <= 6; s++) {
        if (s == 3) { /* discarded, and so erased at both ends */
            ck_assert(pair_spent(&sa, "KME_B", s));
            ck_assert(pair_spent(&sb, "KME_A", s));
        } else {
            lb_meta ma = pair_meta(&sa, "KME_B", s), mb = pair_meta(&sb, "KME_A", s);
            ck_assert_int_eq(ma.state, LB_VERIFIED);
            ck_assert_int_eq(mb.state, LB_VERIFIED);
            ck_assert_int_ne(ma.owner, mb.owner);
        }
    }
    /* A repeated transaction (lost answer) gives the same verdicts and changes nothing. */
    verify_state again = v;
    ck_assert_int_eq(store_commit(&sb, do_respond, &again), 0);
    for (int i = 0; i < v.n; i++)
        ck_assert_int_eq(again.verdicts[i], v.verdicts[i]);
    /* Ingesting a known seq again is refused. */
    unsigned char data[BLOCK] = {0};
    ingest_arg dup = {&la, 2, data, sizeof data};
    ck_assert_int_eq(store_commit(&sa, do_ingest, &dup), LB_EXISTS);
    close_stores();
}
END_TEST

typedef struct {
    lb_link *l;
    size_t nbytes;
    unsigned char out[4096];
    lb_range ranges[64];
    size_t n;
    int rc;
} alloc_arg;
static int do_alloc(kme_store *s, MDB_txn *t, void *a)
{
    alloc_arg *x = a;
    x->rc = lb_allocate(s, t, x->l, x->nbytes, x->out, x->ranges, 64, &x->n);
    return x->rc;
}
static int do_take(kme_store *s, MDB_txn *t, void *a)
{
    alloc_arg *x = a;
    return lb_take_peer_ranges(s, t, &lb_, x->ranges, x->n, x->out);
}
static int do_release(kme_store *s, MDB_txn *t, void *a)
{
    alloc_arg *x = a;
    return lb_release(s, t, x->l, x->ranges, x->n);
}
START_TEST(allocation_reservation_and_reuse)
{
    open_stores();
    ingest_both(1, 4, 0);
    verify_state v;
    verify_all(&v);
    /* A owns seqs 2 and 4: 2 * (1024 - 48) bytes. */
    ck_assert_uint_eq(pair_stock(&sa, &la).owned_free, 2 * (BLOCK - LB_MAC_BYTES));
    alloc_arg x = {&la, 1500, {0}, {{0}}, 0, 0};
    ck_assert_int_eq(store_commit(&sa, do_alloc, &x), LB_OK);
    ck_assert_uint_eq(x.n, 2); /* spans both owned blocks */
    for (size_t i = 0; i < x.n; i++) {
        ck_assert_uint_eq(x.ranges[i].seq % 2, 0);
        ck_assert_uint_ge(x.ranges[i].offset, LB_MAC_BYTES);
    }
    /* The peer takes the same ranges and gets the same bytes. */
    alloc_arg y = x;
    memset(y.out, 0, sizeof y.out);
    ck_assert_int_eq(store_commit(&sb, do_take, &y), LB_OK);
    ck_assert_mem_eq(y.out, x.out, 1500);
    /* Taking them again is refused as reuse, and changes nothing. */
    lb_stock before = pair_stock(&sb, &lb_);
    ck_assert_int_eq(store_commit(&sb, do_take, &y), LB_REUSED);
    ck_assert_uint_eq(pair_stock(&sb, &lb_).peer_free, before.peer_free);
    /* Ranges in a block B owns (odd seq) are not A's to give. */
    alloc_arg z = {&la, 0, {0}, {{1, 100, 10}}, 1, 0};
    ck_assert_int_eq(store_commit(&sb, do_take, &z), LB_INVALID);
    /* Asking for more than is left: LB_SHORT and nothing spent. */
    alloc_arg big = {&la, 1000, {0}, {{0}}, 0, 0};
    lb_stock s1 = pair_stock(&sa, &la);
    ck_assert_int_eq(store_commit(&sa, do_alloc, &big), LB_SHORT);
    ck_assert_uint_eq(pair_stock(&sa, &la).owned_free, s1.owned_free);
    /* Released ranges are carved again, the next allocation gets the same bytes. */
    alloc_arg small = {&la, 100, {0}, {{0}}, 0, 0};
    ck_assert_int_eq(store_commit(&sa, do_alloc, &small), LB_OK);
    unsigned char first[100];
    memcpy(first, small.out, 100);
    ck_assert_int_eq(store_commit(&sa, do_release, &small), LB_OK);
    alloc_arg again = {&la, 100, {0}, {{0}}, 0, 0};
    ck_assert_int_eq(store_commit(&sa, do_alloc, &again), LB_OK);
    ck_assert_mem_eq(again.out, first, 100);
    close_stores();
}
END_TEST

/* Two allocations in one transaction that then aborts (as a batch does when
 * one of its operations refuses): the allocation hint they moved must not
 * hide the blocks, which are free again. */
static int alloc_twice_then_abort(kme_store *s, MDB_txn *t, void *a)
{
    alloc_arg *x = a;
    size_t n;
    if (lb_allocate(s, t, x->l, BLOCK - LB_MAC_BYTES, x->out, x->ranges, 64, &n) != LB_OK ||
        lb_allocate(s, t, x->l, BLOCK - LB_MAC_BYTES, x->out, x->ranges, 64, &n) != LB_OK)
        return -2;
    return -1;
}
START_TEST(aborted_allocation_hides_nothing)
{
    open_stores();
    ingest_both(1, 6, 0);
    verify_state v;
    verify_all(&v);
    uint64_t owned = pair_stock(&sa, &la).owned_free; /* seqs 2, 4, 6 */
    alloc_arg x = {&la, 0, {0}, {{0}}, 0, 0};
    ck_assert_int_eq(store_commit(&sa, alloc_twice_then_abort, &x), -1);
    ck_assert_uint_eq(pair_stock(&sa, &la).owned_free, owned);
    alloc_arg all = {&la, owned, {0}, {{0}}, 0, 0};
    ck_assert_int_eq(store_commit(&sa, do_alloc, &all), LB_OK);
    ck_assert_uint_eq(all.n, 3);
    ck_assert_uint_eq(all.ranges[0].seq, 2);
    close_stores();
}
END_TEST

START_TEST(store_identity_and_persistence)
{
    open_stores();
    ingest_both(1, 2, 0);
    store_close(&sa);
    char err[256];
    kme_store other;
    ck_assert_int_eq(store_open(&other, dir_a, 64, "KME_Z", NULL, err, sizeof err), -1);
    ck_assert(strstr(err, "KME_A") != NULL);
    ck_assert_int_eq(store_open(&sa, dir_a, 64, "KME_A", NULL, err, sizeof err), 0);
    lb_meta m = pair_meta(&sa, "KME_B", 2);
    ck_assert_int_eq(m.state, LB_UNVERIFIED);
    ck_assert_uint_eq(m.size, BLOCK);
    close_stores();
}
END_TEST

/* The link's counters (lb_get_stock) against a recount of its blocks; the
 * blocks ever verified and ever discarded against what the check did. */
static void assert_counts(kme_store *s, const lb_link *l, uint64_t verified, uint64_t discarded)
{
    MDB_txn *t;
    lb_stock got, recount;
    ck_assert_int_eq(store_read_begin(s, &t), 0);
    ck_assert_int_eq(lb_get_stock(s, t, l, &got), 0);
    ck_assert_int_eq(lb_recount_stock(s, t, l->peer_id, &recount), 0);
    MDB_stat st;
    ck_assert_int_eq(mdb_stat(t, s->block_meta, &st), 0);
    mdb_txn_abort(t);
    ck_assert_uint_eq(got.owned_free, recount.owned_free);
    ck_assert_uint_eq(got.peer_free, recount.peer_free);
    ck_assert_uint_eq(got.unverified, recount.unverified);
    ck_assert_uint_eq(got.verified_blocks, verified);
    ck_assert_uint_eq(got.discarded_blocks, discarded);
    ck_assert_uint_eq(recount.discarded_blocks, 0); /* discarded blocks are erased */
    /* Verified blocks still stored, plus the unverified ones: every record. */
    ck_assert_uint_eq(st.ms_entries, recount.verified_blocks + recount.unverified / (BLOCK - LB_MAC_BYTES));
}

static int do_discard_stale(kme_store *s, MDB_txn *t, void *a)
{
    (void)a;
    return lb_discard_stale(s, t, &la, INT64_MAX / 2, 1) < 0;
}

static int ingest_at_a(uint64_t seq)
{
    unsigned char data[BLOCK];
    RAND_bytes(data, sizeof data);
    ingest_arg a = {&la, seq, data, sizeof data};
    int rc = store_commit(&sa, do_ingest, &a);
    OPENSSL_cleanse(data, sizeof data);
    return rc;
}

START_TEST(counters_equal_a_recount)
{
    const uint64_t FREE = BLOCK - LB_MAC_BYTES;
    open_stores();
    ingest_both(1, 12, 5); /* block 5 differs */
    assert_counts(&sa, &la, 0, 0);
    ck_assert_uint_eq(pair_stock(&sa, &la).unverified, 12 * FREE);
    verify_state v;
    verify_all(&v);
    assert_counts(&sa, &la, 11, 1);
    assert_counts(&sb, &lb_, 11, 1);
    ck_assert(pair_spent(&sa, "KME_B", 5) && pair_spent(&sb, "KME_A", 5));
    /* A uses all of block 2 and part of 4; B records the same ranges. */
    alloc_arg x = {&la, FREE + 100, {0}, {{0}}, 0, 0};
    ck_assert_int_eq(store_commit(&sa, do_alloc, &x), LB_OK);
    alloc_arg y = x;
    ck_assert_int_eq(store_commit(&sb, do_take, &y), LB_OK);
    OPENSSL_cleanse(x.out, sizeof x.out);
    OPENSSL_cleanse(y.out, sizeof y.out);
    ck_assert(pair_spent(&sa, "KME_B", 2) && pair_spent(&sb, "KME_A", 2)); /* used up at both ends */
    ck_assert_uint_eq(pair_stock(&sa, &la).owned_free, 5 * FREE - 100);
    assert_counts(&sa, &la, 11, 1);
    assert_counts(&sb, &lb_, 11, 1);
    /* The bytes of block 4 given back; B's own block 1 used up. */
    alloc_arg back = {&la, 0, {0}, {x.ranges[1]}, 1, 0};
    ck_assert_int_eq(store_commit(&sa, do_release, &back), LB_OK);
    alloc_arg own = {&lb_, FREE, {0}, {{0}}, 0, 0};
    ck_assert_int_eq(store_commit(&sb, do_alloc, &own), LB_OK);
    OPENSSL_cleanse(own.out, sizeof own.out);
    ck_assert(pair_spent(&sb, "KME_A", 1));
    assert_counts(&sa, &la, 11, 1);
    assert_counts(&sb, &lb_, 11, 1);
    /* Two blocks the peer never had, discarded as stale and erased. */
    ck_assert_int_eq(ingest_at_a(13), LB_OK);
    ck_assert_int_eq(ingest_at_a(14), LB_OK);
    assert_counts(&sa, &la, 11, 1);
    ck_assert_int_eq(store_commit(&sa, do_discard_stale, NULL), 0);
    assert_counts(&sa, &la, 11, 3);
    lb_stock a_before = pair_stock(&sa, &la), b_before = pair_stock(&sb, &lb_);
    /* Spent seqs are never stored again: not one used up, not one discarded. */
    ck_assert_int_eq(ingest_at_a(2), LB_SPENT);
    ck_assert_int_eq(ingest_at_a(13), LB_SPENT);
    /* The counters survive a restart, and still equal a recount. */
    store_close(&sa);
    store_close(&sb);
    char err[256];
    ck_assert_int_eq(store_open(&sa, dir_a, 64, "KME_A", NULL, err, sizeof err), 0);
    ck_assert_int_eq(store_open(&sb, dir_b, 64, "KME_B", NULL, err, sizeof err), 0);
    assert_counts(&sa, &la, 11, 3);
    assert_counts(&sb, &lb_, 11, 1);
    lb_stock a_after = pair_stock(&sa, &la), b_after = pair_stock(&sb, &lb_);
    ck_assert_mem_eq(&a_after, &a_before, sizeof a_after);
    ck_assert_mem_eq(&b_after, &b_before, sizeof b_after);
    /* And go on counting after it. */
    alloc_arg more = {&la, 2 * FREE, {0}, {{0}}, 0, 0};
    ck_assert_int_eq(store_commit(&sa, do_alloc, &more), LB_OK);
    OPENSSL_cleanse(more.out, sizeof more.out);
    assert_counts(&sa, &la, 11, 3);
    ck_assert_uint_eq(pair_stock(&sa, &la).owned_free, a_before.owned_free - 2 * FREE);
    close_stores();
}
END_TEST

int main(void)
{
    const TTest *const checks[] = {extents,
                                   ownership_is_complementary,
                                   verification_settles_both_ends,
                                   allocation_reservation_and_reuse,
                                   aborted_allocation_hides_nothing,
                                   store_identity_and_persistence,
                                   counters_equal_a_recount,
                                   NULL};
    return run_checks("link_blocks", checks, 30, NULL, NULL);
}
