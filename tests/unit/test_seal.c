/* Unit tests of sealing at rest (store/seal.h, kme/store_key.h): a sealed
 * value opens only under its key and for its record (database and LMDB key);
 * any flipped byte is refused; a key record's bytes never rest in clear, and
 * one moved to another key_ID is refused, never served; a link block rests
 * sealed in chunks, and a changed chunk fails only the reads that need it; a store opens only
 * with the wrapping key it was made with, and a store from before sealing is
 * refused. */
#include <check.h>
#include "tests/unit/temp_store.h"
#include "tests/unit/unit_main.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "kme/store_key.h"
#include "store/key_records.h"
#include "store/link_blocks.h"
#include "store/seal.h"

static const unsigned char plain[40] = "forty bytes of key material for the test";
static const char id_a[] = "11111111-1111-4111-8111-111111111111";
static const char id_b[] = "22222222-2222-4222-8222-222222222222";

static void key_of(seal_key *k, unsigned char fill)
{
    unsigned char raw[SEAL_KEY_BYTES];
    memset(raw, fill, sizeof raw);
    memset(k, 0, sizeof *k);
    ck_assert_int_eq(seal_key_set(k, raw), 0);
}

START_TEST(a_sealed_value_opens_for_its_record_only)
{
    seal_key k;
    key_of(&k, 7);
    unsigned char s1[sizeof plain + SEAL_AEAD_OVERHEAD], s2[sizeof s1], out[sizeof plain];
    ck_assert_int_eq(seal_value(&k, SEAL_DB_KEYS, id_a, 36, plain, sizeof plain, s1), 0);
    ck_assert_int_eq(seal_value(&k, SEAL_DB_KEYS, id_a, 36, plain, sizeof plain, s2), 0);
    ck_assert(memcmp(s1, s2, SEAL_NONCE_BYTES) != 0); /* a fresh nonce each time */
    ck_assert(memmem(s1, sizeof s1, plain, 8) == NULL);
    ck_assert_int_eq(seal_open(&k, SEAL_DB_KEYS, id_a, 36, s1, sizeof s1, out), 0);
    ck_assert_mem_eq(out, plain, sizeof plain);
    /* Another record's key, another database: refused, out cleansed. */
    ck_assert_int_eq(seal_open(&k, SEAL_DB_KEYS, id_b, 36, s1, sizeof s1, out), -1);
    ck_assert(memcmp(out, plain, sizeof plain) != 0);
    ck_assert_int_eq(seal_open(&k, SEAL_DB_STOCK, id_a, 36, s1, sizeof s1, out), -1);
    ck_assert_int_eq(seal_open(&k, SEAL_DB_KEYS, id_a, 35, s1, sizeof s1, out), -1);
    seal_key_clear(&k);
}
END_TEST

START_TEST(any_flipped_byte_or_another_key_is_refused)
{
    seal_key k, other;
    key_of(&k, 7);
    key_of(&other, 8);
    unsigned char s[sizeof plain + SEAL_AEAD_OVERHEAD], out[sizeof plain];
    ck_assert_int_eq(seal_value(&k, SEAL_DB_BLOCK_DATA, "P\0seq", 5, plain, sizeof plain, s), 0);
    for (size_t i = 0; i < sizeof s; i++) {
        s[i] ^= 0x01;
        ck_assert_msg(seal_open(&k, SEAL_DB_BLOCK_DATA, "P\0seq", 5, s, sizeof s, out) == -1, "byte %zu", i);
        s[i] ^= 0x01;
    }
    ck_assert_int_eq(seal_open(&other, SEAL_DB_BLOCK_DATA, "P\0seq", 5, s, sizeof s, out), -1);
    ck_assert_int_eq(seal_open(&k, SEAL_DB_BLOCK_DATA, "P\0seq", 5, s, sizeof s - 1, out), -1);
    ck_assert_int_eq(seal_open(&k, SEAL_DB_BLOCK_DATA, "P\0seq", 5, s, sizeof s, out), 0);
    seal_key_clear(&k);
    seal_key_clear(&other);
}
END_TEST

/* ---- key records on a real store ------------------------------------------------- */

static temp_store ts;

typedef struct {
    const char *id;
} put_arg;

static int do_put(kme_store *s, MDB_txn *t, void *arg)
{
    key_record r;
    const char *slaves[] = {"SAE_S"};
    kr_fill(&r, ((put_arg *)arg)->id, "SAE_M", slaves, 1, 4102444800, plain, 32);
    return kr_put(s, t, &r);
}

/* Writes the raw value of record `from` under key_ID `to` (an attacker's move). */
static int move_value(kme_store *s, MDB_txn *t, void *arg)
{
    (void)arg;
    MDB_val ka = {36, (void *)id_a}, kb = {36, (void *)id_b}, va, vb;
    if (mdb_get(t, s->keys, &ka, &va) || mdb_get(t, s->keys, &kb, &vb) || va.mv_size != vb.mv_size)
        return -1;
    unsigned char copy[512];
    memcpy(copy, va.mv_data, va.mv_size);
    MDB_val nv = {va.mv_size, copy};
    return mdb_put(t, s->keys, &kb, &nv, 0);
}

typedef struct {
    const char *id;
    etsi_key_container out;
} fetch_arg;

static int do_fetch(kme_store *s, MDB_txn *t, void *arg)
{
    fetch_arg *f = arg;
    char ids[1][37];
    memcpy(ids[0], f->id, 37);
    etsi_key_ids list = {ids, 1};
    size_t bad, retried;
    return kr_fetch(s, t, "SAE_M", "SAE_S", &list, 60, &f->out, &bad, &retried);
}

static int raw_holds_plain(kme_store *s, const char *id)
{
    MDB_txn *t;
    MDB_val k = {36, (void *)id}, v;
    ck_assert_int_eq(store_read_begin(s, &t), 0);
    ck_assert_int_eq(mdb_get(t, s->keys, &k, &v), 0);
    int found = memmem(v.mv_data, v.mv_size, plain, 8) != NULL;
    mdb_txn_abort(t);
    return found;
}

START_TEST(a_key_record_rests_sealed_and_a_moved_one_is_refused)
{
    temp_store_open(&ts, "KME_A");
    put_arg a = {id_a}, b = {id_b};
    ck_assert_int_eq(store_commit(&ts.store, do_put, &a), KR_OK);
    ck_assert_int_eq(store_commit(&ts.store, do_put, &b), KR_OK);
    ck_assert(!raw_holds_plain(&ts.store, id_a));
    fetch_arg f = {id_a, {NULL, 0}};
    ck_assert_int_eq(store_commit(&ts.store, do_fetch, &f), KR_OK);
    ck_assert_uint_eq(f.out.count, 1);
    ck_assert_mem_eq(f.out.keys[0].key, plain, 32);
    etsi_key_container_clear(&f.out);
    /* A's sealed bytes under B's key_ID: refused like a corrupt store, nothing served. */
    ck_assert_int_eq(store_commit(&ts.store, move_value, NULL), 0);
    fetch_arg g = {id_b, {NULL, 0}};
    ck_assert_int_eq(store_commit(&ts.store, do_fetch, &g), KR_DB);
    ck_assert_uint_eq(g.out.count, 0);
    temp_store_remove(&ts);
}
END_TEST

/* A refused record is named in the log between quotes, printable ID bytes as
 * they are and any other byte as '.': a quote or a backslash among a key's
 * binary bytes (a stock record's key holds some) never makes the name ambiguous. */
START_TEST(a_refused_record_is_named_unambiguously)
{
    temp_store_open(&ts, "KME_A");
    static const unsigned char key[] = {'K', 'M', 'E', '_', 'B', 0, '\'', 0x01, '\\', 'x'};
    unsigned char sealed[64] = {0}, out[64];
    char path[] = "/tmp/seallog.XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
    int rc = store_open_sealed(&ts.store, SEAL_DB_STOCK, key, sizeof key, sealed, sizeof sealed, out);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ck_assert_int_eq(rc, -1);
    char logged[1024] = "";
    ssize_t n = pread(fd, logged, sizeof logged - 1, 0);
    close(fd);
    unlink(path);
    ck_assert_int_gt(n, 0);
    ck_assert_msg(strstr(logged, "sealed stock record 'KME_B....x' ") != NULL, "logged: %s", logged);
    temp_store_remove(&ts);
}
END_TEST

/* ---- link blocks ------------------------------------------------------------------ */

static unsigned char block[10000];
static lb_link link_ab;

static int ingest_op(kme_store *s, MDB_txn *t, void *arg)
{
    (void)arg;
    return lb_ingest(s, t, &link_ab, 7, block, sizeof block);
}

/* Flips one byte of the sealed block in its second chunk. */
static int flip_chunk_op(kme_store *s, MDB_txn *t, void *arg)
{
    (void)arg;
    unsigned char kb[80], copy[sizeof block + 3 * SEAL_OVERHEAD];
    MDB_val k = {lb_block_key(kb, "KME_B", 7), kb}, v;
    if (mdb_get(t, s->block_data, &k, &v) || v.mv_size != sizeof copy)
        return -1;
    memcpy(copy, v.mv_data, v.mv_size);
    copy[4096 + SEAL_OVERHEAD + 100] ^= 1;
    MDB_val nv = {v.mv_size, copy};
    return mdb_put(t, s->block_data, &k, &nv, 0);
}

typedef struct {
    lb_range range;
    unsigned char out[4096];
    int rc;
} read_arg;

static int read_op(kme_store *s, MDB_txn *t, void *arg)
{
    read_arg *r = arg;
    r->rc = lb_read_ranges(s, t, "KME_B", &r->range, 1, r->out);
    return 0;
}

START_TEST(a_link_block_rests_sealed_in_chunks)
{
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = (unsigned char)(i * 131 + 7);
    temp_store_open(&ts, "KME_A");
    lb_link_init(&link_ab, "KME_A", "KME_B");
    ck_assert_int_eq(store_commit(&ts.store, ingest_op, NULL), LB_OK);
    MDB_txn *t;
    unsigned char kb[80];
    MDB_val k = {lb_block_key(kb, "KME_B", 7), kb}, v;
    ck_assert_int_eq(store_read_begin(&ts.store, &t), 0);
    ck_assert_int_eq(mdb_get(t, ts.store.block_data, &k, &v), 0);
    for (size_t o = 0; o + 32 <= sizeof block; o += 32)
        ck_assert_msg(memmem(v.mv_data, v.mv_size, block + o, 32) == NULL, "piece at %zu in clear", o);
    mdb_txn_abort(t);
    /* A range across the first two chunks reads back whole. */
    read_arg r = {{7, 4000, 200}, {0}, -1};
    ck_assert_int_eq(store_commit(&ts.store, read_op, &r), 0);
    ck_assert_int_eq(r.rc, LB_OK);
    ck_assert_mem_eq(r.out, block + 4000, 200);
    /* One changed byte in the second chunk: reads needing it fail, the others do not. */
    ck_assert_int_eq(store_commit(&ts.store, flip_chunk_op, NULL), 0);
    ck_assert_int_eq(store_commit(&ts.store, read_op, &r), 0);
    ck_assert_int_eq(r.rc, LB_DB);
    read_arg first = {{7, 100, 200}, {0}, -1}, last = {{7, 9000, 1000}, {0}, -1};
    ck_assert_int_eq(store_commit(&ts.store, read_op, &first), 0);
    ck_assert_int_eq(first.rc, LB_OK);
    ck_assert_mem_eq(first.out, block + 100, 200);
    ck_assert_int_eq(store_commit(&ts.store, read_op, &last), 0);
    ck_assert_int_eq(last.rc, LB_OK);
    ck_assert_mem_eq(last.out, block + 9000, 1000);
    temp_store_remove(&ts);
}
END_TEST

/* ---- the data key and its wrapping ------------------------------------------------- */

static void write_key_file(const char *path, unsigned char fill, mode_t mode)
{
    unsigned char key[32];
    memset(key, fill, sizeof key);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, key, sizeof key), 32);
    close(fd);
    chmod(path, mode);
}

static int open_with(const char *dir, const char *key_file, char *err, size_t errlen)
{
    store_key_setting set;
    memset(&set, 0, sizeof set);
    set.kind = key_file ? STORE_KEY_FILE : STORE_KEY_NONE_INSECURE;
    if (key_file)
        snprintf(set.file, sizeof set.file, "%s", key_file);
    kme_store s;
    int rc = store_key_open_store(&s, dir, 64, "KME_A", &set, err, errlen);
    if (rc == 0)
        store_close(&s);
    return rc;
}

START_TEST(a_store_opens_only_with_its_wrapping_key)
{
    char dir[] = "/tmp/kmeseal.XXXXXX", store[64], key1[64], key2[64], err[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(store, sizeof store, "%s/data", dir);
    snprintf(key1, sizeof key1, "%s/one.key", dir);
    snprintf(key2, sizeof key2, "%s/two.key", dir);
    write_key_file(key1, 1, 0600);
    write_key_file(key2, 2, 0600);
    ck_assert_int_eq(open_with(store, key1, err, sizeof err), 0); /* made */
    ck_assert_int_eq(open_with(store, key1, err, sizeof err), 0); /* opened again */
    ck_assert_int_eq(open_with(store, key2, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "cannot unwrap the data key") != NULL, "%s", err);
    ck_assert_int_eq(open_with(store, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "wrapped by a key file") != NULL, "%s", err);
    chmod(key1, 0640);
    ck_assert_int_eq(open_with(store, key1, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "group or others") != NULL, "%s", err);
    unlink(key1);
    ck_assert_int_eq(open_with(store, key1, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "cannot open") != NULL, "%s", err);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static int drop_format(kme_store *s, MDB_txn *t, void *arg)
{
    (void)arg;
    MDB_val k = {11, "seal_format"};
    return mdb_del(t, s->meta, &k, NULL);
}

START_TEST(a_store_from_before_sealing_is_refused)
{
    temp_store_open(&ts, "KME_A");
    ck_assert_int_eq(store_commit(&ts.store, drop_format, NULL), 0);
    store_close(&ts.store);
    char err[512];
    kme_store s;
    ck_assert_int_eq(store_open(&s, ts.dir, 64, "KME_A", NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "written before key material was sealed") != NULL, "%s", err);
    ck_assert_int_eq(store_open(&ts.store, ts.dir, 64, "KME_B", NULL, err, sizeof err), -1); /* identity first */
    ts.store.env = NULL;
    temp_store_remove(&ts);
}
END_TEST

int main(void)
{
    const TTest *const checks[] = {a_sealed_value_opens_for_its_record_only,
                                   any_flipped_byte_or_another_key_is_refused,
                                   a_key_record_rests_sealed_and_a_moved_one_is_refused,
                                   a_refused_record_is_named_unambiguously,
                                   a_link_block_rests_sealed_in_chunks,
                                   a_store_opens_only_with_its_wrapping_key,
                                   a_store_from_before_sealing_is_refused,
                                   NULL};
    return run_checks("seal", checks, 60, NULL, NULL);
}
