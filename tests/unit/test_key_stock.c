/* Unit tests of the stock kept ahead of demand (relay/key_stock.c) at KME_A,
 * a relay node over a real store with a link to KME_B: stock_load counting
 * the stock records in the store (and dropping stale and foreign ones),
 * stock_hold / stock_unhold / stock_count on those counts, stock_take_held
 * handing out the oldest keys once (or nothing when the store holds fewer
 * than counted), and the claims a KME holding stock keys is told of
 * (stock_claimed_handle). */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "api/kme_msgs.h"
#include "relay/key_stock.h"
#include "runtime/clock.h"
#include "runtime/json_wipe.h"
#include "tests/unit/node_fixture.h"

static char dir[64];
static kme_store st;
static test_site site;
static relay_node *n;
static relay_dest *to_b, *to_c;
static etsi_key_container b_keys, b2_keys, c_keys, stale_keys;
static const char *const peers[] = {"KME_B", NULL};
static const char *const saes[] = {"SAE_A", NULL};

/* A record of another shape: no size, time and key_ID after the IDs. */
static int junk_op(kme_store *s, MDB_txn *t, void *arg)
{
    (void)arg;
    MDB_val k = {sizeof "KME_B\0junk", "KME_B\0junk"}, v = {2, "xx"};
    return mdb_put(t, s->stock, &k, &v, 0);
}

/* A's store with stock for KME_B (5 keys SAE_A -> SAE_B, 2 stale ones of
 * the same pair, 2 keys SAE_A -> SAE_B2) and for KME_C, further away (3
 * keys of 128 bits SAE_A -> SAE_C), and a foreign record; then the node,
 * with stock kept for at most max_keys keys a pair. */
static void stock_ready(long max_keys)
{
    temp_store_open(&st, dir, "KME_A");
    int64_t now = clock_wall_ms();
    ck_assert_int_eq(kr_fill_random(&b_keys, 5, 256), 0);
    ck_assert_int_eq(kr_fill_random(&b2_keys, 2, 256), 0);
    ck_assert_int_eq(kr_fill_random(&c_keys, 3, 128), 0);
    ck_assert_int_eq(kr_fill_random(&stale_keys, 2, 256), 0);
    stock_put(&st, "KME_B", "SAE_A", "SAE_B", &b_keys, now - 10000);
    stock_put(&st, "KME_B", "SAE_A", "SAE_B", &stale_keys, now - 120000); /* older than 60 s */
    stock_put(&st, "KME_B", "SAE_A", "SAE_B2", &b2_keys, now - 5000);
    stock_put(&st, "KME_C", "SAE_A", "SAE_C", &c_keys, now - 1000);
    ck_assert_int_eq(store_commit(&st, junk_op, NULL), 0);
    ck_assert_int_eq(stock_records(&st), 13);
    site_init(&site, saes);
    relay_config c;
    node_config(&c, "KME_A", peers);
    c.stock_max_keys = max_keys;
    n = node_open(&c, &st, &site, 0);
    to_b = relay_dest_get(n, "KME_B", 0);
    to_c = relay_dest_get(n, "KME_C", 0);
    ck_assert_ptr_nonnull(to_b);
    ck_assert_ptr_nonnull(to_c);
}

static void stock_done(void)
{
    node_close(n);
    temp_store_close(&st, dir);
    etsi_key_container_clear(&b_keys);
    etsi_key_container_clear(&b2_keys);
    etsi_key_container_clear(&c_keys);
    etsi_key_container_clear(&stale_keys);
}

START_TEST(load_counts_the_stock_and_drops_the_rest)
{
    stock_ready(100);
    /* The neighbour's dest is bound to its link; KME_C's, made for its stock, to none. */
    ck_assert_ptr_eq(to_b->link, &n->links[0]);
    ck_assert_ptr_null(to_c->link);
    ck_assert_int_eq(stock_count(to_b, "SAE_A", "SAE_B", 256), 5);
    ck_assert_int_eq(stock_count(to_b, "SAE_A", "SAE_B2", 256), 2);
    ck_assert_int_eq(stock_count(to_c, "SAE_A", "SAE_C", 128), 3);
    /* Other sizes, masters or KMEs have none. */
    ck_assert_int_eq(stock_count(to_b, "SAE_A", "SAE_B", 128), 0);
    ck_assert_int_eq(stock_count(to_b, "SAE_X", "SAE_B", 256), 0);
    ck_assert_int_eq(stock_count(to_c, "SAE_A", "SAE_B", 256), 0);
    /* The stale and the foreign records are gone from the store. */
    ck_assert_int_eq(stock_records(&st), 10);
    /* Loading again counts the same. */
    node_close(n);
    relay_config c;
    node_config(&c, "KME_A", peers);
    n = node_open(&c, &st, &site, 0);
    to_b = relay_dest_get(n, "KME_B", 0);
    ck_assert_int_eq(stock_count(to_b, "SAE_A", "SAE_B", 256), 5);
    ck_assert_int_eq(stock_records(&st), 10);
    stock_done();
}
END_TEST

START_TEST(hold_and_unhold_move_the_count)
{
    stock_ready(100);
    ck_assert_int_eq(stock_hold(n, to_b, "SAE_A", "SAE_B", 256, 3), 3);
    ck_assert_int_eq(stock_count(to_b, "SAE_A", "SAE_B", 256), 2);
    /* No more than there is. */
    ck_assert_int_eq(stock_hold(n, to_b, "SAE_A", "SAE_B", 256, 5), 2);
    ck_assert_int_eq(stock_count(to_b, "SAE_A", "SAE_B", 256), 0);
    ck_assert_int_eq(stock_hold(n, to_b, "SAE_A", "SAE_B", 256, 1), 0);
    /* Given back. */
    stock_unhold(to_b, "SAE_A", "SAE_B", 256, 5);
    ck_assert_int_eq(stock_count(to_b, "SAE_A", "SAE_B", 256), 5);
    stock_unhold(to_b, "SAE_A", "SAE_B", 256, 0);
    ck_assert_int_eq(stock_count(to_b, "SAE_A", "SAE_B", 256), 5);
    /* Pairs are apart. */
    ck_assert_int_eq(stock_hold(n, to_b, "SAE_A", "SAE_B2", 256, 10), 2);
    ck_assert_int_eq(stock_count(to_b, "SAE_A", "SAE_B", 256), 5);
    ck_assert_int_eq(stock_hold(n, to_b, "SAE_A", "SAE_B", 128, 1), 0);
    ck_assert_int_eq(stock_hold(n, to_b, "SAE_A", "SAE_C", 128, 1), 0);
    ck_assert_int_eq(stock_hold(n, to_c, "SAE_A", "SAE_C", 128, 1), 1);
    /* Holding takes nothing from the store. */
    ck_assert_int_eq(stock_records(&st), 10);
    stock_done();
}
END_TEST

START_TEST(no_stock_kept_none_held)
{
    stock_ready(0);
    /* What is in the store is counted, but a KME keeping no stock hands none out. */
    ck_assert_int_eq(stock_count(to_b, "SAE_A", "SAE_B", 256), 5);
    ck_assert_int_eq(stock_hold(n, to_b, "SAE_A", "SAE_B", 256, 3), 0);
    ck_assert_int_eq(stock_count(to_b, "SAE_A", "SAE_B", 256), 5);
    stock_done();
}
END_TEST

START_TEST(take_held_hands_out_the_oldest_once)
{
    stock_ready(100);
    etsi_key_container out = {NULL, 0};
    ck_assert_int_eq(stock_hold(n, to_b, "SAE_A", "SAE_B", 256, 3), 3);
    ck_assert_int_eq(stock_take_held(n, to_b, "SAE_A", "SAE_B", 256, 3, &out), 0);
    etsi_key_container first3 = {b_keys.keys, 3};
    expect_same_keys(&out, &first3);
    ck_assert_int_eq(stock_count(to_b, "SAE_A", "SAE_B", 256), 2);
    ck_assert_int_eq(stock_records(&st), 7);
    /* Their master got them now: the claims to tell KME_B. */
    ck_assert_uint_eq(to_b->nclaims, 3);
    for (size_t i = 0; i < 3; i++) {
        ck_assert_str_eq(to_b->claims[i].key_id, b_keys.keys[i].key_id);
        ck_assert_int_le(llabs(to_b->claims[i].at - (int64_t)time(NULL)), 2);
    }
    etsi_key_container_clear(&out);

    /* The rest, then none. */
    ck_assert_int_eq(stock_hold(n, to_b, "SAE_A", "SAE_B", 256, 5), 2);
    ck_assert_int_eq(stock_take_held(n, to_b, "SAE_A", "SAE_B", 256, 2, &out), 0);
    etsi_key_container last2 = {b_keys.keys + 3, 2};
    expect_same_keys(&out, &last2);
    etsi_key_container_clear(&out);
    ck_assert_int_eq(stock_hold(n, to_b, "SAE_A", "SAE_B", 256, 1), 0);
    ck_assert_uint_eq(to_b->nclaims, 5);
    /* The other pairs kept theirs. */
    ck_assert_int_eq(stock_records(&st), 5);
    ck_assert_int_eq(stock_hold(n, to_b, "SAE_A", "SAE_B2", 256, 2), 2);
    ck_assert_int_eq(stock_take_held(n, to_b, "SAE_A", "SAE_B2", 256, 2, &out), 0);
    expect_same_keys(&out, &b2_keys);
    etsi_key_container_clear(&out);
    ck_assert_int_eq(stock_hold(n, to_c, "SAE_A", "SAE_C", 128, 3), 3);
    ck_assert_int_eq(stock_take_held(n, to_c, "SAE_A", "SAE_C", 128, 3, &out), 0);
    expect_same_keys(&out, &c_keys);
    etsi_key_container_clear(&out);
    ck_assert_int_eq(stock_records(&st), 0);
    stock_done();
}
END_TEST

static int del_stock_op(kme_store *s, MDB_txn *t, void *arg)
{
    /* Deletes the first *n records of the stock. */
    long *left = arg;
    MDB_cursor *c;
    MDB_val k, v;
    if (mdb_cursor_open(t, s->stock, &c))
        return -1;
    int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (rc == 0 && *left > 0) {
        if (mdb_cursor_del(c, 0))
            break;
        (*left)--;
        rc = mdb_cursor_get(c, &k, &v, MDB_GET_CURRENT);
    }
    mdb_cursor_close(c);
    return *left ? -1 : 0;
}

START_TEST(take_short_of_the_count_takes_nothing)
{
    stock_ready(100);
    /* Four of KME_B's five SAE_A -> SAE_B keys vanish behind the count
     * (keys sort by peer, master, slave: they come first). */
    long del = 4;
    ck_assert_int_eq(store_commit(&st, del_stock_op, &del), 0);
    ck_assert_int_eq(stock_records(&st), 6);
    ck_assert_int_eq(stock_hold(n, to_b, "SAE_A", "SAE_B", 256, 3), 3);
    etsi_key_container out = {NULL, 0};
    ck_assert_int_eq(stock_take_held(n, to_b, "SAE_A", "SAE_B", 256, 3, &out), -1);
    ck_assert_uint_eq(out.count, 0);
    ck_assert_ptr_null(out.keys);
    /* The hold is given back and the key that is there stays. */
    ck_assert_int_eq(stock_count(to_b, "SAE_A", "SAE_B", 256), 5);
    ck_assert_int_eq(stock_records(&st), 6);
    ck_assert_uint_eq(to_b->nclaims, 0);
    ck_assert_int_eq(stock_hold(n, to_b, "SAE_A", "SAE_B", 256, 1), 1);
    ck_assert_int_eq(stock_take_held(n, to_b, "SAE_A", "SAE_B", 256, 1, &out), 0);
    etsi_key_container last = {b_keys.keys + 4, 1};
    expect_same_keys(&out, &last);
    etsi_key_container_clear(&out);
    stock_done();
}
END_TEST

typedef struct {
    const key_record *rec;
    int64_t now;
    int expired;
} rec_arg;

static int put_rec_op(kme_store *s, MDB_txn *t, void *arg)
{
    return kr_put(s, t, ((rec_arg *)arg)->rec);
}

static int expire_op(kme_store *s, MDB_txn *t, void *arg)
{
    rec_arg *a = arg;
    a->expired = kr_expire(s, t, a->now, 64);
    return a->expired < 0;
}

static http_response claimed_at_a(const char *body)
{
    http_request req = request_of("POST", "/kme/v1/claimed", body, strlen(body), "application/json");
    http_response resp = {0, NULL, 0};
    stock_claimed_handle(n, &n->links[0], &req, &resp);
    ck_assert_ptr_nonnull(resp.body);
    return resp;
}

START_TEST(pairs_are_shared_among_masters_and_freed_when_idle)
{
    stock_ready(100);
    /* SAE_A asks for keys of 20 sizes: it gets at most its share of pairs. */
    for (long i = 1; i <= 20; i++)
        stock_note_demand(n, to_b, "SAE_A", "SAE_B", 64 * i, 1);
    size_t of_a = 0;
    for (size_t i = 0; i < to_b->stock_pairs; i++)
        of_a += strcmp(to_b->stock[i].master, "SAE_A") == 0;
    ck_assert_uint_eq(of_a, STOCK_MAX_PAIRS_PER_MASTER);
    /* Another master still gets a pair. */
    size_t before = to_b->stock_pairs;
    stock_note_demand(n, to_b, "SAE_X", "SAE_B", 256, 1);
    ck_assert_uint_eq(to_b->stock_pairs, before + 1);
    /* Nobody asks any more: the empty pairs are freed, those holding keys kept. */
    for (size_t i = 0; i < to_b->stock_pairs; i++)
        to_b->stock[i].last_demand_ms -= 3600 * 1000;
    stock_refill_once(n, to_b);
    for (size_t i = 0; i < to_b->stock_pairs; i++)
        ck_assert_int_gt(to_b->stock[i].count, 0);
    ck_assert_int_eq(stock_count(to_b, "SAE_A", "SAE_B", 256), 5);
    ck_assert_int_eq(stock_count(to_b, "SAE_A", "SAE_B2", 256), 2);
    /* SAE_A may ask for new sizes again. */
    stock_note_demand(n, to_b, "SAE_A", "SAE_B", 4096, 1);
    int found = 0;
    for (size_t i = 0; i < to_b->stock_pairs; i++)
        found |= to_b->stock[i].size_bits == 4096;
    ck_assert(found);
    stock_done();
}
END_TEST

START_TEST(claims_without_their_mac_change_nothing)
{
    /* What authentic claims do is test_msg_auth's; here: claims that carry
     * no MAC from link key are refused, and the keys they name live on. */
    stock_ready(100);
    etsi_key_container held;
    ck_assert_int_eq(kr_fill_random(&held, 2, 256), 0);
    int64_t now = (int64_t)time(NULL);
    const char *slaves[] = {"SAE_A"};
    for (size_t i = 0; i < 2; i++) {
        key_record rec;
        kr_fill(&rec, held.keys[i].key_id, "SAE_B", slaves, 1, now + 3600, held.keys[i].key, held.keys[i].key_len);
        rec_arg a = {&rec, 0, 0};
        ck_assert_int_eq(store_commit(&st, put_rec_op, &a), 0);
    }
    /* "Handed to its master an hour and a minute ago": would expire it. */
    kme_claimed c;
    memset(&c, 0, sizeof c);
    c.count = 2;
    c.key_ids = calloc(2, UUID_STR_LEN + 1);
    c.at = calloc(2, sizeof(int64_t));
    memcpy(c.key_ids[0], held.keys[0].key_id, UUID_STR_LEN + 1);
    c.at[0] = now - 3660;
    memcpy(c.key_ids[1], held.keys[1].key_id, UUID_STR_LEN + 1);
    c.at[1] = now - 3660;
    char *json = kme_claimed_to_json(&c);
    ck_assert_ptr_nonnull(json);
    http_response resp = claimed_at_a(json);
    expect_error(&resp, 400, NULL);
    etsi_text_free(json);
    rec_arg a = {NULL, now, 0};
    ck_assert_int_eq(store_commit(&st, expire_op, &a), 0);
    ck_assert_int_eq(a.expired, 0);
    ck_assert_int_eq(records_in(&st), 2);
    /* A malformed body: refused as well. */
    resp = claimed_at_a("{\"claims\":7}");
    expect_error(&resp, 400, NULL);
    kme_claimed_clear(&c);
    etsi_key_container_clear(&held);
    stock_done();
}
END_TEST

int main(void)
{
    json_use_wiping_allocator(); /* as the daemon runs */
    const TTest *const checks[] = {load_counts_the_stock_and_drops_the_rest,
                                   hold_and_unhold_move_the_count,
                                   no_stock_kept_none_held,
                                   take_held_hands_out_the_oldest_once,
                                   take_short_of_the_count_takes_nothing,
                                   claims_without_their_mac_change_nothing,
                                   pairs_are_shared_among_masters_and_freed_when_idle,
                                   NULL};
    return run_checks("key_stock", checks, 60, NULL, NULL);
}
