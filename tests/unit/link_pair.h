/* Test fixture: the two ends of one QKD link, KME_A and KME_B, each with a
 * real LMDB store in a temporary directory; identical blocks ingested at both
 * ends and the key-caching verification run between them. */
#ifndef TESTS_UNIT_LINK_PAIR_H
#define TESTS_UNIT_LINK_PAIR_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include "store/link_blocks.h"

#define BLOCK 1024
#define VERIFY_MAX 256

static char dir_a[64], dir_b[64];
static kme_store sa, sb;
static lb_link la, lb_;

static inline void open_stores(void)
{
    char err[256];
    strcpy(dir_a, "/tmp/linkpairA.XXXXXX");
    strcpy(dir_b, "/tmp/linkpairB.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir_a));
    ck_assert_ptr_nonnull(mkdtemp(dir_b));
    ck_assert_int_eq(store_open(&sa, dir_a, 64, "KME_A", NULL, err, sizeof err), 0);
    ck_assert_int_eq(store_open(&sb, dir_b, 64, "KME_B", NULL, err, sizeof err), 0);
    lb_link_init(&la, "KME_A", "KME_B");
    lb_link_init(&lb_, "KME_B", "KME_A");
}

static inline void close_stores(void)
{
    char cmd[200];
    store_close(&sa);
    store_close(&sb);
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir_a, dir_b);
    ck_assert_int_eq(system(cmd), 0);
}

/* A block's meta as stored. */
static inline lb_meta pair_meta(kme_store *s, const char *peer, uint64_t seq)
{
    MDB_txn *t;
    lb_meta m;
    ck_assert_int_eq(store_read_begin(s, &t), 0);
    ck_assert_int_eq(lb_get_meta(s, t, peer, seq, &m), 0);
    mdb_txn_abort(t);
    return m;
}

/* Whether the block has a record at that end (into *m when it has). */
static inline int pair_has_meta(kme_store *s, const char *peer, uint64_t seq, lb_meta *m)
{
    MDB_txn *t;
    lb_meta tmp;
    ck_assert_int_eq(store_read_begin(s, &t), 0);
    int rc = lb_get_meta(s, t, peer, seq, m ? m : &tmp);
    mdb_txn_abort(t);
    ck_assert(rc == 0 || rc == MDB_NOTFOUND);
    return rc == 0;
}

/* The block was used up or discarded at that end: no record, below the ingest mark. */
static inline int pair_spent(kme_store *s, const char *peer, uint64_t seq)
{
    MDB_txn *t;
    ck_assert_int_eq(store_read_begin(s, &t), 0);
    int spent = lb_is_spent(s, t, peer, seq);
    mdb_txn_abort(t);
    return spent;
}

/* One end's key on the link. */
static inline lb_stock pair_stock(kme_store *s, const lb_link *l)
{
    MDB_txn *t;
    lb_stock st;
    ck_assert_int_eq(store_read_begin(s, &t), 0);
    ck_assert_int_eq(lb_get_stock(s, t, l, &st), 0);
    mdb_txn_abort(t);
    return st;
}

/* One end's blocks 1..16 of the link to peer as text: state, owner and used
 * extents of each; equal texts mean nothing was spent or moved there. */
static inline void pair_extents(kme_store *s, const char *peer, char *out, size_t cap)
{
    MDB_txn *t;
    size_t n = 0;
    out[0] = '\0';
    ck_assert_int_eq(store_read_begin(s, &t), 0);
    for (uint64_t seq = 1; seq <= 16; seq++) {
        lb_meta m;
        if (lb_get_meta(s, t, peer, seq, &m))
            continue;
        n += (size_t)snprintf(out + n, cap - n, "%llu:%u:%u:", (unsigned long long)seq, (unsigned)m.state,
                              (unsigned)m.owner);
        for (uint32_t i = 0; i < m.nused; i++)
            n += (size_t)snprintf(out + n, cap - n, "[%u,%u)", m.used[i].start, m.used[i].end);
        n += (size_t)snprintf(out + n, cap - n, ";");
        ck_assert_uint_lt(n, cap);
    }
    mdb_txn_abort(t);
}

typedef struct {
    lb_link *l;
    uint64_t seq;
    const unsigned char *data;
    size_t len;
} ingest_arg;

static inline int do_ingest(kme_store *s, MDB_txn *t, void *a)
{
    ingest_arg *i = a;
    return lb_ingest(s, t, i->l, i->seq, i->data, i->len);
}

/* Ingests blocks from..to, identical at both ends except block `corrupt`
 * (0: none), which has one bit flipped at B. */
static inline void ingest_both(uint64_t from, uint64_t to, uint64_t corrupt)
{
    unsigned char data[BLOCK];
    for (uint64_t i = from; i <= to; i++) {
        RAND_bytes(data, sizeof data);
        ingest_arg a = {&la, i, data, sizeof data};
        ck_assert_int_eq(store_commit(&sa, do_ingest, &a), LB_OK);
        if (i == corrupt)
            data[500] ^= 1;
        ingest_arg b = {&lb_, i, data, sizeof data};
        ck_assert_int_eq(store_commit(&sb, do_ingest, &b), LB_OK);
    }
    OPENSSL_cleanse(data, sizeof data);
}

typedef struct {
    uint64_t seqs[VERIFY_MAX];
    uint8_t tags[VERIFY_MAX][LB_TAG_BYTES];
    enum lb_verdict verdicts[VERIFY_MAX];
    int n;
} verify_state;

static inline int do_lock(kme_store *s, MDB_txn *t, void *a)
{
    verify_state *v = a;
    v->n = lb_lock_for_verify(s, t, &la, 77, 1000, 999999999999LL, VERIFY_MAX, v->seqs, v->tags);
    return v->n < 0;
}

static inline int do_respond(kme_store *s, MDB_txn *t, void *a)
{
    verify_state *v = a;
    for (int i = 0; i < v->n; i++)
        if (lb_respond_verify(s, t, &lb_, v->seqs[i], v->tags[i], 1, &v->verdicts[i]))
            return 1;
    return 0;
}

static inline int do_apply(kme_store *s, MDB_txn *t, void *a)
{
    verify_state *v = a;
    for (int i = 0; i < v->n; i++)
        if (lb_apply_verdict(s, t, &la, v->seqs[i], 77, v->verdicts[i]))
            return 1;
    return 0;
}

/* One verification transaction from A (the initiator) to B and back. */
static inline void verify_all(verify_state *v)
{
    memset(v, 0, sizeof *v);
    ck_assert_int_eq(store_commit(&sa, do_lock, v), 0);
    ck_assert_int_eq(store_commit(&sb, do_respond, v), 0);
    ck_assert_int_eq(store_commit(&sa, do_apply, v), 0);
}

#endif
