/* Unit tests of forgetting at rest (store/epoch_keys.h,
 * store/forget_epochs.h) on real stores: an epoch key is erased once every
 * record sealed under it is gone, and never while one is left; a copy of
 * an erased epoch's record no longer opens, and the keyring file no longer
 * holds the erased key's bytes; key records, stock and link blocks each
 * by their own rule; rotation of the wrapping key overwrites the one
 * wrapped copy of the data key, so the old key opens nothing after it. */
#include <check.h>
#include "tests/unit/link_pair.h"
#include "tests/unit/unit_main.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "kme/store_key.h"
#include "store/forget_epochs.h"
#include "store/key_records.h"

static const unsigned char plain[32] = "thirty-two bytes of key material";
static const char id_a[] = "11111111-1111-4111-8111-111111111111";

/* The whole keyring file of the store in dir. */
static size_t read_keyring(const char *dir, unsigned char *buf, size_t cap)
{
    char path[128];
    snprintf(path, sizeof path, "%s/epochs", dir);
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static size_t live_epochs(kme_store *s)
{
    size_t live;
    uint64_t erased;
    epoch_keys_counts(&s->epochs, &live, &erased);
    return live;
}

typedef struct {
    int64_t expires;
} put_arg;

static int do_put(kme_store *s, MDB_txn *t, void *arg)
{
    key_record r;
    const char *slaves[] = {"SAE_S"};
    kr_fill(&r, id_a, "SAE_M", slaves, 1, ((put_arg *)arg)->expires, plain, sizeof plain);
    return kr_put(s, t, &r);
}

static int do_expire(kme_store *s, MDB_txn *t, void *arg)
{
    return kr_expire(s, t, *(int64_t *)arg, 64) < 0;
}

/* The raw stored value of key record id_a, copied out (an attacker's copy). */
static size_t copy_record(kme_store *s, unsigned char *out, size_t cap)
{
    MDB_txn *t;
    MDB_val k = {36, (void *)id_a}, v;
    ck_assert_int_eq(store_read_begin(s, &t), 0);
    ck_assert_int_eq(mdb_get(t, s->keys, &k, &v), 0);
    ck_assert_uint_le(v.mv_size, cap);
    memcpy(out, v.mv_data, v.mv_size);
    mdb_txn_abort(t);
    return v.mv_size;
}

START_TEST(a_key_records_epoch_is_erased_once_its_records_are_gone)
{
    static unsigned char before[1 << 16], after[1 << 16];
    char dir[] = "/tmp/kmeepoch.XXXXXX", err[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    kme_store s;
    ck_assert_int_eq(store_open(&s, dir, 64, "KME_A", NULL, err, sizeof err), 0);
    int64_t now = (int64_t)time(NULL);
    put_arg p = {now + 5};
    ck_assert_int_eq(store_commit(&s, do_put, &p), KR_OK);
    ck_assert_uint_eq(live_epochs(&s), 1);
    unsigned char rec[512];
    size_t rlen = copy_record(&s, rec, sizeof rec);
    size_t klen = sizeof plain + SEAL_OVERHEAD, koff = rlen - klen;
    unsigned char out[sizeof plain];
    ck_assert_int_eq(epoch_keys_open_value(&s.epochs, SEAL_DB_KEYS, id_a, 36, rec + koff, klen, out), 0);
    ck_assert_mem_eq(out, plain, sizeof plain);
    size_t nb = read_keyring(dir, before, sizeof before);
    seal_epoch ep = store_expiry_epoch(p.expires, now);
    int64_t end = (int64_t)ep.bucket;
    ck_assert_int_gt(end, p.expires);
    /* The record is still there: however late, its epoch stays. */
    ck_assert_int_eq(store_forget_epochs(&s, end + 3600), 0);
    ck_assert_uint_eq(live_epochs(&s), 1);
    /* Its bucket not yet ended: kept even once the record is gone. */
    int64_t at = p.expires + 1;
    ck_assert_int_eq(store_commit(&s, do_expire, &at), 0);
    ck_assert_int_eq(store_forget_epochs(&s, end - 1), 0);
    /* Ended, nothing left in it: erased. */
    ck_assert_int_eq(store_forget_epochs(&s, end + 2), 1);
    ck_assert_uint_eq(live_epochs(&s), 0);
    ck_assert_int_eq(epoch_keys_open_value(&s.epochs, SEAL_DB_KEYS, id_a, 36, rec + koff, klen, out), -2);
    ck_assert(memcmp(out, plain, sizeof plain) != 0);
    /* Its slot overwritten: not one of the sealed key's 60 bytes left as they were. */
    size_t na = read_keyring(dir, after, sizeof after);
    ck_assert_uint_eq(na, nb);
    ck_assert(memmem(after, na, before + 512 + 88, 60) == NULL);
    /* And after a restart, still gone. */
    store_close(&s);
    ck_assert_int_eq(store_open(&s, dir, 64, "KME_A", NULL, err, sizeof err), 0);
    ck_assert_uint_eq(live_epochs(&s), 0);
    ck_assert_int_eq(epoch_keys_open_value(&s.epochs, SEAL_DB_KEYS, id_a, 36, rec + koff, klen, out), -2);
    store_close(&s);
    char cmd[100];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* ---- stock ---------------------------------------------------------------------------------- */

static const int64_t created_ms = 1700000000123;

static size_t stock_key(unsigned char *kb)
{
    static const char parts[] = "KME_B\0SAE_A\0SAE_B";
    size_t n = sizeof parts;
    memcpy(kb, parts, n);
    unsigned char be[8];
    store_put_be64(be, 256);
    memcpy(kb + n, be + 4, 4);
    store_put_be64(kb + n + 4, (uint64_t)created_ms);
    memcpy(kb + n + 12, id_a, 36);
    return n + 12 + 36;
}

static int put_stock(kme_store *s, MDB_txn *t, void *arg)
{
    (void)arg;
    unsigned char kb[128];
    MDB_val k = {stock_key(kb), kb};
    seal_epoch ep = store_stock_epoch("KME_B", created_ms);
    return store_put_sealed(s, t, s->stock, SEAL_DB_STOCK, &k, plain, sizeof plain, 0, &ep);
}

static int del_stock(kme_store *s, MDB_txn *t, void *arg)
{
    (void)arg;
    unsigned char kb[128];
    MDB_val k = {stock_key(kb), kb};
    return mdb_del(t, s->stock, &k, NULL);
}

START_TEST(a_stock_epoch_is_erased_once_its_keys_are_taken)
{
    open_stores();
    ck_assert_int_eq(store_commit(&sa, put_stock, NULL), 0);
    ck_assert_uint_eq(live_epochs(&sa), 1);
    int64_t later = created_ms / 1000 + 3600;
    ck_assert_int_eq(store_forget_epochs(&sa, later), 0); /* its key is still there */
    ck_assert_int_eq(store_commit(&sa, del_stock, NULL), 0);
    ck_assert_int_eq(store_forget_epochs(&sa, later), 1);
    ck_assert_uint_eq(live_epochs(&sa), 0);
    close_stores();
}
END_TEST

/* ---- link blocks ---------------------------------------------------------------------------- */

static int discard_all(kme_store *s, MDB_txn *t, void *a)
{
    (void)a;
    return lb_discard_stale(s, t, &la, INT64_MAX / 2, 1) < 0;
}

START_TEST(a_block_epoch_is_erased_once_its_64_blocks_are_spent)
{
    open_stores();
    for (uint64_t seq = 1; seq <= 70; seq++) {
        unsigned char data[BLOCK];
        RAND_bytes(data, sizeof data);
        ingest_arg a = {&la, seq, data, sizeof data};
        ck_assert_int_eq(store_commit(&sa, do_ingest, &a), LB_OK);
    }
    ck_assert_uint_eq(live_epochs(&sa), 2); /* blocks 0..63 and 64..127 */
    int64_t now = (int64_t)time(NULL);
    ck_assert_int_eq(store_forget_epochs(&sa, now), 0);
    ck_assert_int_eq(store_commit(&sa, discard_all, NULL), 0);
    ck_assert(pair_spent(&sa, "KME_B", 63) && pair_spent(&sa, "KME_B", 70));
    /* The first 64 are spent and none can come; blocks 71..127 may still. */
    ck_assert_int_eq(store_forget_epochs(&sa, now), 1);
    ck_assert_uint_eq(live_epochs(&sa), 1);
    close_stores();
}
END_TEST

/* ---- rotation of the wrapping key ------------------------------------------------------------ */

static void write_key_file(const char *path, unsigned char fill)
{
    unsigned char key[32];
    memset(key, fill, sizeof key);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, key, sizeof key), 32);
    close(fd);
}

static store_key_setting key_file_setting(const char *path)
{
    store_key_setting set;
    memset(&set, 0, sizeof set);
    set.kind = STORE_KEY_FILE;
    snprintf(set.file, sizeof set.file, "%s", path);
    return set;
}

START_TEST(a_rotated_wrapping_key_leaves_the_old_one_useless)
{
    static unsigned char before[4096], after[4096];
    char dir[] = "/tmp/kmerotate.XXXXXX", store[64], key1[64], key2[64], err[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(store, sizeof store, "%s/data", dir);
    snprintf(key1, sizeof key1, "%s/one.key", dir);
    snprintf(key2, sizeof key2, "%s/two.key", dir);
    write_key_file(key1, 1);
    write_key_file(key2, 2);
    store_key_setting one = key_file_setting(key1), two = key_file_setting(key2);
    kme_store s;
    ck_assert_int_eq(store_key_open_store(&s, store, 64, "KME_A", &one, err, sizeof err), 0);
    put_arg p = {(int64_t)time(NULL) + 3600};
    ck_assert_int_eq(store_commit(&s, do_put, &p), KR_OK);
    size_t nb = read_keyring(store, before, sizeof before);
    ck_assert_int_eq(store_key_rewrap(&s, &two, err, sizeof err), 0);
    size_t na = read_keyring(store, after, sizeof after);
    ck_assert_uint_eq(na, nb);
    /* The old wrapping (40 bytes from offset 34) is gone from the file. */
    ck_assert(memmem(after, na, before + 34, 40) == NULL);
    store_close(&s);
    ck_assert_int_eq(store_key_open_store(&s, store, 64, "KME_A", &one, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "cannot unwrap the data key") != NULL, "%s", err);
    ck_assert_int_eq(store_key_open_store(&s, store, 64, "KME_A", &two, err, sizeof err), 0);
    /* Everything sealed before the rotation opens as before. */
    unsigned char rec[512], out[sizeof plain];
    size_t rlen = copy_record(&s, rec, sizeof rec), klen = sizeof plain + SEAL_OVERHEAD;
    ck_assert_int_eq(epoch_keys_open_value(&s.epochs, SEAL_DB_KEYS, id_a, 36, rec + rlen - klen, klen, out), 0);
    ck_assert_mem_eq(out, plain, sizeof plain);
    /* A wrapping key that cannot be read changes nothing. */
    store_key_setting missing = key_file_setting("/nonexistent/three.key");
    ck_assert_int_eq(store_key_rewrap(&s, &missing, err, sizeof err), -1);
    store_close(&s);
    ck_assert_int_eq(store_key_open_store(&s, store, 64, "KME_A", &two, err, sizeof err), 0);
    store_close(&s);
    char cmd[100];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
    const TTest *const checks[] = {
        a_key_records_epoch_is_erased_once_its_records_are_gone, a_stock_epoch_is_erased_once_its_keys_are_taken,
        a_block_epoch_is_erased_once_its_64_blocks_are_spent, a_rotated_wrapping_key_leaves_the_old_one_useless, NULL};
    return run_checks("epoch_keys", checks, 60, NULL, NULL);
}
