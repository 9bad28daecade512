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
        lb_meta ma = pair_meta(&sa, "KME_B", s), mb = pair_meta(&sb, "KME_A", s);
        if (s == 3) {
            ck_assert_int_eq(ma.state, LB_DISCARDED);
            ck_assert_int_eq(mb.state, LB_DISCARDED);
        } else {
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

int main(void)
{
    const TTest *const checks[] = {extents,
                                   ownership_is_complementary,
                                   verification_settles_both_ends,
                                   allocation_reservation_and_reuse,
                                   aborted_allocation_hides_nothing,
                                   store_identity_and_persistence,
                                   NULL};
    return run_checks("link_blocks", checks, 30, NULL, NULL);
}
