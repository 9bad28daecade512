/* Unit tests of GET_KEY's supply (kme/key_supply.c) at KME_A, a daemon
 * context with a real store and its relay node wired (tests/unit/kme_fixture.h),
 * KME_B on its link and KME_C behind B known from their adverts:
 * supply_prepare's decision (slaves all here, unknown slaves, an additional
 * slave that is the slave, stock covering the request or part of it, slaves
 * at a neighbour, further away or at several sites), supply_start and
 * supply_finish committing local DRBG keys or handing out stock (each key
 * fetched once; a stock shorter in the store than counted hands out
 * nothing), supply_run refused without link key taking nothing, and
 * supply_stored_key_count. */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kme/key_supply.h"
#include "runtime/clock.h"
#include "runtime/json_wipe.h"
#include "tests/unit/kme_fixture.h"

static kme_context *k;
static etsi_key_container stock;

/* KME_A hosting SAE_A, SAE_A2 and SAE_A3 (more: extra settings), with
 * nstock keys of stock for SAE_A -> SAE_B at KME_B, knowing the network. */
static void supply_ready(const char *more, long nstock)
{
    k = kme_open("[\"SAE_A\",\"SAE_A2\",\"SAE_A3\"]", more);
    memset(&stock, 0, sizeof stock);
    if (nstock) {
        ck_assert_int_eq(kr_fill_random(&stock, nstock, 256), 0);
        stock_put(&k->store, "KME_B", "SAE_A", "SAE_B", &stock, clock_wall_ms() - 1000);
    }
    kme_wire(k, 1);
    kme_learn_network(k);
}

static void supply_done(void)
{
    kme_close(k);
    etsi_key_container_clear(&stock);
}

static relay_dest *dest(const char *id)
{
    relay_dest *d = relay_dest_get(&k->net, id, 0);
    ck_assert_ptr_nonnull(d);
    return d;
}

/* An enc_keys request as the SAE port decodes it. */
static void request(etsi_key_request *r, const char *json)
{
    etsi_problem p;
    etsi_limits limits = kme_config_limits(&k->cfg);
    ck_assert_msg(etsi_key_request_from_json(json, strlen(json), &limits, r, &p) == 0, "%s: %s", p.message, p.detail);
}

/* supply_start's done, called on the store's writer thread. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
} waiter;

static void on_done(void *arg)
{
    waiter *w = arg;
    pthread_mutex_lock(&w->lock);
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* supply_start, the wait for its commit, then supply_finish. */
static void start_and_finish(supply_request *a)
{
    waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    supply_start(a, on_done, &w);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    pthread_mutex_lock(&w.lock);
    int rc = 0;
    while (!w.done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&w.cond, &w.lock, &until);
    int done = w.done;
    pthread_mutex_unlock(&w.lock);
    ck_assert_msg(done, "the commit never completed");
    supply_finish(a);
}

START_TEST(slaves_all_here_supply_now)
{
    supply_ready("", 0);
    etsi_key_request r;
    request(&r, "{\"number\":3,\"size\":256,\"additional_slave_SAE_IDs\":[\"SAE_A3\"]}");
    supply_request a;
    ck_assert_int_eq(supply_prepare(k, "SAE_A", "SAE_A2", &r, &a), SUPPLY_NOW);
    ck_assert_uint_eq(a.nlocal, 2);
    ck_assert_str_eq(a.local[0], "SAE_A2");
    ck_assert_str_eq(a.local[1], "SAE_A3");
    ck_assert_uint_eq(a.ngroups, 0);
    ck_assert_int_eq(a.held, 0);
    ck_assert_int_eq(a.trace.fresh, SUPPLY_LOCAL);
    ck_assert_uint_eq(a.trace.nlocal, 2);
    ck_assert_uint_eq(a.trace.nsites, 0);
    ck_assert_int_eq(records_in(&k->store), 0); /* deciding commits nothing */

    start_and_finish(&a);
    ck_assert_int_eq(a.rc, 0);
    ck_assert_uint_eq(a.out.count, 3);
    for (size_t i = 0; i < 3; i++) {
        ck_assert_uint_eq(a.out.keys[i].key_len, 32);
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(a.out.keys[i].key_id, a.out.keys[j].key_id);
    }
    ck_assert_int_eq(records_in(&k->store), 3);
    /* Committed for the slaves named, from that master, before the answer. */
    etsi_key_container got;
    ck_assert_int_eq(fetch_keys(&k->store, "SAE_B", "SAE_A2", &a.out, &got), KR_FOREIGN);
    ck_assert_int_eq(fetch_keys(&k->store, "SAE_A", "SAE_A", &a.out, &got), KR_NOT_SLAVE);
    ck_assert_int_eq(fetch_keys(&k->store, "SAE_A", "SAE_A2", &a.out, &got), KR_OK);
    expect_same_keys(&got, &a.out);
    etsi_key_container_clear(&got);
    ck_assert_int_eq(fetch_keys(&k->store, "SAE_A", "SAE_A2", &a.out, &got), KR_UNKNOWN);
    ck_assert_int_eq(records_in(&k->store), 3); /* SAE_A3 has not fetched yet */
    ck_assert_int_eq(fetch_keys(&k->store, "SAE_A", "SAE_A3", &a.out, &got), KR_OK);
    expect_same_keys(&got, &a.out);
    etsi_key_container_clear(&got);
    ck_assert_int_eq(records_in(&k->store), 0);
    ck_assert_int_eq(fetch_keys(&k->store, "SAE_A", "SAE_A3", &a.out, &got), KR_UNKNOWN);

    etsi_key_container_clear(&a.out);
    supply_request_clear(&a);
    etsi_key_request_clear(&r);
    supply_done();
}
END_TEST

START_TEST(unknown_slaves_refused)
{
    supply_ready("", 5);
    static const struct {
        const char *slave, *json;
    } cases[] = {
        {"SAE_Z", "{\"number\":1}"},
        {"SAE_A2", "{\"number\":1,\"additional_slave_SAE_IDs\":[\"SAE_A3\",\"SAE_Z\"]}"},
        /* the stock for SAE_B is not held for a request refused */
        {"SAE_B", "{\"number\":2,\"additional_slave_SAE_IDs\":[\"SAE_Z\"]}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        etsi_key_request r;
        request(&r, cases[i].json);
        supply_request a;
        ck_assert_int_eq(supply_prepare(k, "SAE_A", cases[i].slave, &r, &a), SUPPLY_REFUSED);
        char reason[256];
        error_reason(&a.resp, reason, sizeof reason);
        ck_assert_str_eq(reason, "SAE SAE_Z is not known to KME_A");
        expect_error(&a.resp, 400, "unknown slave SAE");
        ck_assert_int_eq(a.held, 0);
        supply_request_clear(&a);
        etsi_key_request_clear(&r);
    }
    ck_assert_int_eq(stock_count(dest("KME_B"), "SAE_A", "SAE_B", 256), 5);
    ck_assert_int_eq(records_in(&k->store), 0);
    supply_done();
}
END_TEST

START_TEST(additional_slave_that_is_the_slave_refused)
{
    supply_ready("", 5);
    static const char *const slaves[] = {"SAE_A2", "SAE_B"};
    for (size_t i = 0; i < 2; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"number\":1,\"additional_slave_SAE_IDs\":[\"SAE_A3\",\"%s\"]}", slaves[i]);
        etsi_key_request r;
        request(&r, json);
        supply_request a;
        ck_assert_int_eq(supply_prepare(k, "SAE_A", slaves[i], &r, &a), SUPPLY_REFUSED);
        expect_error(&a.resp, 400, "malformed request");
        supply_request_clear(&a);
        etsi_key_request_clear(&r);
    }
    ck_assert_int_eq(stock_count(dest("KME_B"), "SAE_A", "SAE_B", 256), 5);
    supply_done();
}
END_TEST

START_TEST(stock_covering_supply_now)
{
    supply_ready("", 5);
    relay_dest *b = dest("KME_B");
    ck_assert_int_eq(stock_count(b, "SAE_A", "SAE_B", 256), 5);
    etsi_key_request r;
    request(&r, "{\"number\":3,\"size\":256}");
    supply_request a;
    ck_assert_int_eq(supply_prepare(k, "SAE_A", "SAE_B", &r, &a), SUPPLY_NOW);
    ck_assert_int_eq(a.held, 3);
    ck_assert_uint_eq(a.nlocal, 0);
    ck_assert_uint_eq(a.ngroups, 1);
    ck_assert_ptr_eq(a.groups[0].dest, b);
    ck_assert_int_eq(a.trace.stocked, 3);
    ck_assert_str_eq(a.trace.stock.kme, "KME_B");
    ck_assert_uint_eq(a.trace.stock.path_len, 2);
    ck_assert_str_eq(a.trace.stock.path[0], "KME_A");
    ck_assert_str_eq(a.trace.stock.path[1], "KME_B");
    /* Held for this request: no other takes them meanwhile. */
    ck_assert_int_eq(stock_count(b, "SAE_A", "SAE_B", 256), 2);
    ck_assert_int_eq(stock_records(&k->store), 5);

    start_and_finish(&a);
    ck_assert_int_eq(a.rc, 0);
    /* The oldest stock keys, gone from the stock, told to B as claimed. */
    etsi_key_container first3 = {stock.keys, 3};
    expect_same_keys(&a.out, &first3);
    ck_assert_int_eq(stock_records(&k->store), 2);
    ck_assert_int_eq(stock_count(b, "SAE_A", "SAE_B", 256), 2);
    ck_assert_uint_eq(b->nclaims, 3);
    ck_assert_str_eq(b->claims[0].key_id, stock.keys[0].key_id);
    /* Nothing is kept here for them: B holds them for its slave. */
    ck_assert_int_eq(records_in(&k->store), 0);
    etsi_key_container_clear(&a.out);
    supply_request_clear(&a);

    /* Another master, or another size, has no stock: fresh keys on the link. */
    supply_request other;
    ck_assert_int_eq(supply_prepare(k, "SAE_A2", "SAE_B", &r, &other), SUPPLY_BLOCKING);
    ck_assert_int_eq(other.held, 0);
    ck_assert_int_eq(other.direct, 1);
    supply_request_clear(&other);
    etsi_key_request_clear(&r);
    supply_done();
}
END_TEST

/* Deletes the first *left records of the stock database. */
static int drop_stock_op(kme_store *s, MDB_txn *t, void *arg)
{
    long *left = arg;
    MDB_cursor *c;
    MDB_val key, val;
    if (mdb_cursor_open(t, s->stock, &c))
        return -1;
    int rc = mdb_cursor_get(c, &key, &val, MDB_FIRST);
    while (rc == 0 && *left > 0 && mdb_cursor_del(c, 0) == 0) {
        (*left)--;
        rc = mdb_cursor_get(c, &key, &val, MDB_GET_CURRENT);
    }
    mdb_cursor_close(c);
    return *left ? -1 : 0;
}

START_TEST(stock_short_in_the_store_takes_nothing)
{
    supply_ready("", 3);
    relay_dest *b = dest("KME_B");
    /* Two of the three keys counted vanish from the store. */
    long drop = 2;
    ck_assert_int_eq(store_commit(&k->store, drop_stock_op, &drop), 0);
    ck_assert_int_eq(stock_records(&k->store), 1);
    etsi_key_request r;
    request(&r, "{\"number\":3}");
    supply_request a;
    ck_assert_int_eq(supply_prepare(k, "SAE_A", "SAE_B", &r, &a), SUPPLY_NOW);
    ck_assert_int_eq(a.held, 3);
    start_and_finish(&a);
    ck_assert_int_ne(a.rc, 0);
    expect_error(&a.resp, 503, "key store failure");
    ck_assert_uint_eq(a.out.count, 0);
    ck_assert_ptr_null(a.out.keys);
    /* Nothing taken: the hold is back, the key that is there stays. */
    ck_assert_int_eq(stock_count(b, "SAE_A", "SAE_B", 256), 3);
    ck_assert_int_eq(stock_records(&k->store), 1);
    ck_assert_uint_eq(b->nclaims, 0);
    supply_request_clear(&a);
    etsi_key_request_clear(&r);
    supply_done();
}
END_TEST

START_TEST(partial_stock_blocks_and_a_refusal_takes_nothing)
{
    supply_ready("", 2);
    relay_dest *b = dest("KME_B");
    etsi_key_request r;
    request(&r, "{\"number\":5,\"size\":256}");
    supply_request a;
    ck_assert_int_eq(supply_prepare(k, "SAE_A", "SAE_B", &r, &a), SUPPLY_BLOCKING);
    ck_assert_int_eq(a.held, 2);
    ck_assert_int_eq(a.direct, 1);
    ck_assert_int_eq(a.trace.stocked, 2);
    ck_assert_int_eq(stock_count(b, "SAE_A", "SAE_B", 256), 0);
    /* No link key here: the three fresh keys cannot be reserved. */
    ck_assert_int_eq(supply_run(&a), -1);
    ck_assert_int_eq(a.rc, -1);
    char reason[256];
    error_reason(&a.resp, reason, sizeof reason);
    ck_assert_msg(strstr(reason, "2 keys of 256 bits are available") && strstr(reason, "5 were requested"), "%s",
                  reason);
    expect_error(&a.resp, 503, "not enough key material");
    ck_assert_uint_eq(a.out.count, 0);
    ck_assert_int_eq(a.trace.fresh, SUPPLY_LINK);
    /* The stock held is back, untouched in the store. */
    ck_assert_int_eq(stock_count(b, "SAE_A", "SAE_B", 256), 2);
    ck_assert_int_eq(stock_records(&k->store), 2);
    ck_assert_uint_eq(b->nclaims, 0);
    ck_assert_int_eq(records_in(&k->store), 0);
    supply_request_clear(&a);
    etsi_key_request_clear(&r);
    supply_done();
}
END_TEST

START_TEST(no_stock_kept_none_held)
{
    supply_ready(",\"stock_max_keys\":0", 5);
    etsi_key_request r;
    request(&r, "{\"number\":3}");
    supply_request a;
    ck_assert_int_eq(supply_prepare(k, "SAE_A", "SAE_B", &r, &a), SUPPLY_BLOCKING);
    ck_assert_int_eq(a.held, 0);
    ck_assert_int_eq(a.direct, 1);
    supply_request_clear(&a);
    etsi_key_request_clear(&r);
    supply_done();
}
END_TEST

START_TEST(slaves_elsewhere_blocking)
{
    supply_ready("", 0);
    static const struct {
        const char *slave, *json;
        size_t nlocal, ngroups;
        int direct;
        const char *first_site;
    } cases[] = {
        {"SAE_B", "{\"number\":1}", 0, 1, 1, "KME_B"},                                           /* the neighbour */
        {"SAE_C", "{\"number\":1}", 0, 1, 0, "KME_C"},                                           /* behind it */
        {"SAE_A2", "{\"number\":1,\"additional_slave_SAE_IDs\":[\"SAE_B\"]}", 1, 1, 1, "KME_B"}, /* here and there */
        {"SAE_B", "{\"number\":1,\"additional_slave_SAE_IDs\":[\"SAE_B2\"]}", 0, 1, 1, "KME_B"}, /* two at B */
        {"SAE_B", "{\"number\":1,\"additional_slave_SAE_IDs\":[\"SAE_C\"]}", 0, 2, 0, "KME_B"},  /* two sites */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        etsi_key_request r;
        request(&r, cases[i].json);
        supply_request a;
        ck_assert_msg(supply_prepare(k, "SAE_A", cases[i].slave, &r, &a) == SUPPLY_BLOCKING, "case %zu", i);
        ck_assert_uint_eq(a.nlocal, cases[i].nlocal);
        ck_assert_uint_eq(a.ngroups, cases[i].ngroups);
        ck_assert_int_eq(a.direct, cases[i].direct);
        ck_assert_uint_eq(a.trace.nsites, cases[i].ngroups);
        ck_assert_str_eq(a.trace.sites[0].kme, cases[i].first_site);
        ck_assert_str_eq(a.groups[0].dest->id, cases[i].first_site);
        supply_request_clear(&a);
        etsi_key_request_clear(&r);
    }
    ck_assert_int_eq(records_in(&k->store), 0);
    supply_done();
}
END_TEST

START_TEST(relayed_without_link_key_takes_nothing)
{
    supply_ready("", 0);
    /* For SAE_C behind B, with SAE_A2 here too: relayed keys, but the link
     * to B has no key to pad them with. */
    etsi_key_request r;
    request(&r, "{\"number\":2,\"additional_slave_SAE_IDs\":[\"SAE_A2\"]}");
    supply_request a;
    ck_assert_int_eq(supply_prepare(k, "SAE_A", "SAE_C", &r, &a), SUPPLY_BLOCKING);
    ck_assert_int_eq(a.direct, 0);
    ck_assert_int_eq(supply_run(&a), -1);
    expect_error(&a.resp, 503, "not enough key material");
    ck_assert_int_eq(a.trace.fresh, SUPPLY_RELAY);
    ck_assert_uint_eq(a.trace.sites[0].path_len, 3);
    ck_assert_str_eq(a.trace.sites[0].path[1], "KME_B");
    ck_assert_str_eq(a.trace.sites[0].path[2], "KME_C");
    ck_assert_uint_eq(a.out.count, 0);
    /* The slave here got nothing either. */
    ck_assert_int_eq(records_in(&k->store), 0);
    supply_request_clear(&a);
    etsi_key_request_clear(&r);
    supply_done();
}
END_TEST

START_TEST(stored_key_count_of_status)
{
    supply_ready(",\"limits\":{\"max_key_count\":50}", 5);
    /* Here: the limit. At B: its stock and what the link could carry (none). */
    ck_assert_int_eq(supply_stored_key_count(k, "SAE_A", "SAE_A2"), 50);
    ck_assert_int_eq(supply_stored_key_count(k, "SAE_A", "SAE_B"), 5);
    ck_assert_int_eq(supply_stored_key_count(k, "SAE_A2", "SAE_B"), 0);
    ck_assert_int_eq(supply_stored_key_count(k, "SAE_A", "SAE_C"), 0);
    char kme[ETSI_ID_MAX + 1] = "";
    ck_assert_int_eq(supply_locate_sae(k, "SAE_A3", kme), SUPPLY_HERE);
    ck_assert_int_eq(supply_locate_sae(k, "SAE_C", kme), SUPPLY_REMOTE);
    ck_assert_str_eq(kme, "KME_C");
    ck_assert_int_eq(supply_locate_sae(k, "SAE_Z", NULL), SUPPLY_UNKNOWN);
    supply_done();
}
END_TEST

int main(void)
{
    json_use_wiping_allocator(); /* as the daemon runs */
    const TTest *const checks[] = {slaves_all_here_supply_now,
                                   unknown_slaves_refused,
                                   additional_slave_that_is_the_slave_refused,
                                   stock_covering_supply_now,
                                   stock_short_in_the_store_takes_nothing,
                                   partial_stock_blocks_and_a_refusal_takes_nothing,
                                   no_stock_kept_none_held,
                                   slaves_elsewhere_blocking,
                                   relayed_without_link_key_takes_nothing,
                                   stored_key_count_of_status,
                                   NULL};
    return run_checks("key_supply", checks, 60, NULL, NULL);
}
