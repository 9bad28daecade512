/* Unit tests of key records on a real LMDB store: fetch by designated
 * slaves only, once or again within the retry window, all-or-nothing
 * multi-key fetch, multicast, expiry, the retry window after a restart. */
#include <check.h>
#include "tests/unit/temp_store.h"
#include "tests/unit/unit_main.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "store/key_records.h"

static temp_store ts;
#define st (ts.store)
static int64_t retry_seconds; /* the window of kr_fetch: 0 (once) unless a test sets it */
static size_t last_retried;

static void setup(void)
{
    retry_seconds = 0;
    temp_store_open(&ts, "KME_B");
}

static void teardown(void)
{
    temp_store_remove(&ts);
}

typedef struct {
    key_record r;
    unsigned char key[4];
} put_arg;
static int do_put(kme_store *s, MDB_txn *t, void *a)
{
    return kr_put(s, t, &((put_arg *)a)->r);
}

static void put(const char *id, const char *master, const char *slave1, const char *slave2, int64_t expires)
{
    put_arg a;
    memset(&a, 0, sizeof a);
    memcpy(a.key, "\x01\x02\x03\x04", 4);
    strcpy(a.r.key_id, id);
    strcpy(a.r.master, master);
    strcpy(a.r.slaves[a.r.slave_count++], slave1);
    if (slave2)
        strcpy(a.r.slaves[a.r.slave_count++], slave2);
    a.r.expires = expires;
    a.r.key = a.key;
    a.r.key_len = 4;
    ck_assert_int_eq(store_commit(&st, do_put, &a), KR_OK);
}

typedef struct {
    const char *master, *slave;
    etsi_key_ids ids;
    char idbuf[4][37];
    etsi_key_container out;
    size_t bad, retried;
} fetch_arg;
static int do_fetch(kme_store *s, MDB_txn *t, void *a)
{
    fetch_arg *f = a;
    etsi_key_container_clear(&f->out);
    return kr_fetch(s, t, f->master, f->slave, &f->ids, retry_seconds, &f->out, &f->bad, &f->retried);
}

static int fetch(const char *master, const char *slave, const char *id1, const char *id2, size_t *count)
{
    fetch_arg f;
    memset(&f, 0, sizeof f);
    f.master = master;
    f.slave = slave;
    strcpy(f.idbuf[0], id1);
    f.ids.count = 1;
    if (id2) {
        strcpy(f.idbuf[1], id2);
        f.ids.count = 2;
    }
    f.ids.ids = f.idbuf;
    int rc = store_commit(&st, do_fetch, &f);
    last_retried = f.retried;
    if (count)
        *count = f.out.count;
    if (rc == KR_OK)
        ck_assert_mem_eq(f.out.keys[0].key, "\x01\x02\x03\x04", 4);
    etsi_key_container_clear(&f.out);
    return rc;
}

static long count_records(void)
{
    MDB_txn *t;
    ck_assert_int_eq(store_read_begin(&st, &t), 0);
    long n = kr_count(&st, t);
    mdb_txn_abort(t);
    return n;
}

#define K1 "11111111-1111-4111-8111-111111111111"
#define K2 "22222222-2222-4222-8222-222222222222"
#define K3 "33333333-3333-4333-8333-333333333333"

START_TEST(fetch_once_by_the_slave_only)
{
    put(K1, "SAE_A", "SAE_B", NULL, 4000000000LL);
    ck_assert_int_eq(fetch("SAE_A", "SAE_C", K1, NULL, NULL), KR_NOT_SLAVE);
    ck_assert_int_eq(fetch("SAE_X", "SAE_B", K1, NULL, NULL), KR_FOREIGN);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K2, NULL, NULL), KR_UNKNOWN);
    ck_assert_int_eq(count_records(), 1);
    size_t n;
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, NULL, &n), KR_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(count_records(), 0);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, NULL, NULL), KR_UNKNOWN);
}
END_TEST

START_TEST(one_bad_id_hands_out_nothing)
{
    put(K1, "SAE_A", "SAE_B", NULL, 4000000000LL);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, K2, NULL), KR_UNKNOWN);
    size_t n;
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, NULL, &n), KR_OK);
    ck_assert_uint_eq(n, 1);
}
END_TEST

START_TEST(multicast_each_slave_once)
{
    put(K1, "SAE_A", "SAE_B", "SAE_B2", 4000000000LL);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, NULL, NULL), KR_OK);
    ck_assert_int_eq(count_records(), 1);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, NULL, NULL), KR_UNKNOWN);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B2", K1, NULL, NULL), KR_OK);
    ck_assert_int_eq(count_records(), 0);
}
END_TEST

static int64_t expire_at;
static int do_expire(kme_store *s, MDB_txn *t, void *a)
{
    *(int *)a = kr_expire(s, t, expire_at, 64);
    return 0;
}

START_TEST(a_slave_fetches_again_within_the_retry_window)
{
    retry_seconds = 60;
    int64_t now = (int64_t)time(NULL);
    put(K1, "SAE_A", "SAE_B", NULL, 4000000000LL);
    size_t n;
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, NULL, &n), KR_OK);
    ck_assert_uint_eq(last_retried, 0);
    /* Held, but only for the window, and only for its slave. */
    ck_assert_int_eq(count_records(), 1);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, NULL, &n), KR_OK); /* same bytes: checked in fetch() */
    ck_assert_uint_eq(last_retried, 1);
    ck_assert_int_eq(fetch("SAE_A", "SAE_C", K1, NULL, NULL), KR_NOT_SLAVE);
    ck_assert_int_eq(fetch("SAE_X", "SAE_B", K1, NULL, NULL), KR_FOREIGN);
    /* The expiry worker erases it once the window has passed. */
    int erased = 0;
    expire_at = now + 59;
    ck_assert_int_eq(store_commit(&st, do_expire, &erased), 0);
    ck_assert_int_eq(erased, 0);
    expire_at = now + 62;
    ck_assert_int_eq(store_commit(&st, do_expire, &erased), 0);
    ck_assert_int_eq(erased, 1);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, NULL, NULL), KR_UNKNOWN);
}
END_TEST

START_TEST(the_window_never_extends_a_key_s_ttl)
{
    retry_seconds = 600;
    int64_t ttl_end = (int64_t)time(NULL) + 30;
    put(K1, "SAE_A", "SAE_B", NULL, ttl_end);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, NULL, NULL), KR_OK);
    int erased = 0;
    expire_at = ttl_end;
    ck_assert_int_eq(store_commit(&st, do_expire, &erased), 0);
    ck_assert_int_eq(erased, 1);
}
END_TEST

START_TEST(multicast_a_slave_retries_while_others_wait)
{
    retry_seconds = 60;
    put(K1, "SAE_A", "SAE_B", "SAE_B2", 4000000000LL);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, NULL, NULL), KR_OK);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, NULL, NULL), KR_OK);
    ck_assert_uint_eq(last_retried, 1);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B2", K1, NULL, NULL), KR_OK);
    ck_assert_uint_eq(last_retried, 0);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B2", K1, NULL, NULL), KR_OK);
    ck_assert_uint_eq(last_retried, 1);
}
END_TEST

static int64_t restart_at;
static int do_restart_window(kme_store *s, MDB_txn *t, void *a)
{
    *(long *)a = kr_restart_retry_window(s, t, restart_at, retry_seconds);
    return *(long *)a < 0 ? -1 : 0;
}

START_TEST(a_restart_gives_delivered_keys_the_window_again)
{
    retry_seconds = 60;
    int64_t now = (int64_t)time(NULL);
    put(K1, "SAE_A", "SAE_B", NULL, 4000000000LL);
    put(K2, "SAE_A", "SAE_B", "SAE_B2", now + 10); /* waits for SAE_B2: its TTL stays */
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, NULL, NULL), KR_OK);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K2, NULL, NULL), KR_OK);
    /* The KME was down for 500 s: K1's window passed meanwhile. */
    restart_at = now + 500;
    long moved = 0;
    ck_assert_int_eq(store_commit(&st, do_restart_window, &moved), 0);
    ck_assert_int_eq(moved, 1);
    int erased = 0;
    expire_at = now + 500 + 59;
    ck_assert_int_eq(store_commit(&st, do_expire, &erased), 0);
    ck_assert_int_eq(erased, 1); /* K2, at its TTL */
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, NULL, NULL), KR_OK);
    expire_at = now + 500 + 60;
    ck_assert_int_eq(store_commit(&st, do_expire, &erased), 0);
    ck_assert_int_eq(erased, 1);
    ck_assert_int_eq(count_records(), 0);
}
END_TEST

START_TEST(expiry_erases_only_expired)
{
    int64_t now = (int64_t)time(NULL);
    expire_at = now;
    put(K1, "SAE_A", "SAE_B", NULL, now - 100);
    put(K2, "SAE_A", "SAE_B", NULL, now + 3600);
    put(K3, "SAE_A", "SAE_B", NULL, now - 50);
    int n = 0;
    ck_assert_int_eq(store_commit(&st, do_expire, &n), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(count_records(), 1);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, NULL, NULL), KR_UNKNOWN);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K2, NULL, NULL), KR_OK);
}
END_TEST

/* A key past its expiry is refused at the fetch itself, before the expiry
 * worker has erased it. */
START_TEST(expired_key_refused_at_fetch)
{
    put(K1, "SAE_A", "SAE_B", NULL, (int64_t)time(NULL) - 1);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, NULL, NULL), KR_UNKNOWN);
    ck_assert_int_eq(count_records(), 1); /* still held: the expiry worker erases it */
}
END_TEST

START_TEST(duplicate_id_refused)
{
    put(K1, "SAE_A", "SAE_B", NULL, 4000000000LL);
    put_arg a;
    memset(&a, 0, sizeof a);
    strcpy(a.r.key_id, K1);
    strcpy(a.r.master, "SAE_Z");
    strcpy(a.r.slaves[a.r.slave_count++], "SAE_Z");
    a.r.key = a.key;
    a.r.key_len = 4;
    ck_assert_int_eq(store_commit(&st, do_put, &a), KR_EXISTS);
    ck_assert_int_eq(fetch("SAE_A", "SAE_B", K1, NULL, NULL), KR_OK);
}
END_TEST

int main(void)
{
    const TTest *const checks[] = {fetch_once_by_the_slave_only,
                                   one_bad_id_hands_out_nothing,
                                   multicast_each_slave_once,
                                   expiry_erases_only_expired,
                                   expired_key_refused_at_fetch,
                                   duplicate_id_refused,
                                   a_slave_fetches_again_within_the_retry_window,
                                   the_window_never_extends_a_key_s_ttl,
                                   multicast_a_slave_retries_while_others_wait,
                                   a_restart_gives_delivered_keys_the_window_again,
                                   NULL};
    return run_checks("key_records", checks, 0, setup, teardown);
}
