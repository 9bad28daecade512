/* Unit tests of the link-key reservation (relay/reserve.c) on the two ends of
 * one link, each a relay node over a real store (tests/unit/link_pair.h):
 * what the owner KME_A can carve (reserve_available_keys), KME_B's KME port
 * taking a reservation (reserve_handle: committed, malformed and refused
 * bodies changing nothing), the owner settling ranges a neighbour did not
 * confirm (reserve_settle_ranges: release, spend, in doubt, and the
 * neighbour's read-only answer to reserve_resolve_handle), and
 * reserve_link_keys when the neighbour cannot be reached. */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>
#include "api/kme_msgs.h"
#include "relay/msg_auth.h"
#include "relay/reserve.h"
#include "runtime/json_wipe.h"
#include "tests/unit/link_pair.h"
#include "tests/unit/node_fixture.h"

#define KEY_BYTES 32
#define FREE_PER_BLOCK (BLOCK - LB_MAC_BYTES)

static test_site site_a, site_b;
static relay_node *na, *nb;
static const char *const to_a[] = {"KME_A", NULL};
static const char *const to_b[] = {"KME_B", NULL};
static const char *const a_saes[] = {"SAE_A", "SAE_A2", NULL};
static const char *const b_saes[] = {"SAE_B", NULL};

/* Both stores with blocks 1..6 ingested (verified when verify is set: A owns
 * 2, 4 and 6), a node on each, and A's advert at B. */
static void nodes_ready(int verify)
{
    open_stores();
    ingest_both(1, 6, 0);
    if (verify) {
        verify_state v;
        verify_all(&v);
        ck_assert_int_eq(v.n, 6);
    }
    relay_config c;
    site_init(&site_a, a_saes);
    node_config(&c, "KME_A", to_b);
    na = node_open(&c, &sa, &site_a, 1);
    site_init(&site_b, b_saes);
    node_config(&c, "KME_B", to_a);
    nb = node_open(&c, &sb, &site_b, 1);
    ck_assert_int_eq(advert_to(nb, 0, "KME_A", 1, to_b, 1 << 20, a_saes), 200);
}

static void nodes_done(void)
{
    node_close(na);
    node_close(nb);
    close_stores();
}

typedef struct {
    relay_node *n;
    size_t bytes;
    unsigned char *out;
    lb_range ranges[16];
    size_t nranges;
} carve_arg;

static int do_carve(kme_store *s, MDB_txn *t, void *arg)
{
    carve_arg *c = arg;
    return lb_allocate(s, t, &c->n->links[0].lb, c->bytes, c->out, c->ranges, 16, &c->nranges);
}

/* A's carving of one key's bytes: committed at A, appended to r. */
static void carve_key(kme_reserve_request *r, unsigned char *key)
{
    carve_arg c = {na, KEY_BYTES, key, {{0, 0, 0}}, 0};
    ck_assert_int_eq(store_commit(&sa, do_carve, &c), LB_OK);
    kme_reserved_key *k = &r->keys[r->key_count++];
    ck_assert_int_eq(uuid_generate(k->key_id), 0);
    k->first_range = r->range_count;
    k->nranges = c.nranges;
    memcpy(r->ranges + r->range_count, c.ranges, c.nranges * sizeof *c.ranges);
    r->range_count += c.nranges;
}

static int seal_op(kme_store *s, MDB_txn *t, void *arg)
{
    auth_answer_key answer;
    memset(&answer, 0, sizeof answer);
    int rc = auth_seal_from_link(s, t, &la, AUTH_RESERVE, arg, &answer);
    auth_answer_key_wipe(&answer);
    return rc == LM_OK ? 0 : -1;
}

/* A reservation of nkeys keys of 256 bits that A carved for master and
 * slave (the bytes into keys). Free with kme_reserve_request_clear. */
static void reservation(kme_reserve_request *r, const char *master, const char *slave, size_t nkeys,
                        unsigned char *keys)
{
    memset(r, 0, sizeof *r);
    snprintf(r->master, sizeof r->master, "%s", master);
    snprintf(r->slaves[r->slave_count++], ETSI_ID_MAX + 1, "%s", slave);
    r->size_bits = KEY_BYTES * 8;
    r->expires = (int64_t)time(NULL) + 600;
    r->keys = calloc(nkeys, sizeof *r->keys);
    r->ranges = calloc(nkeys * 16, sizeof *r->ranges);
    ck_assert_ptr_nonnull(r->keys);
    ck_assert_ptr_nonnull(r->ranges);
    for (size_t i = 0; i < nkeys; i++)
        carve_key(r, keys + i * KEY_BYTES);
    /* Its MAC, from link key A owns, as reserve_link_keys makes it. */
    ck_assert_int_eq(store_commit(&sa, seal_op, r), 0);
}

/* reserve_handle at B for body. */
static http_response reserve_at_b(const char *body)
{
    http_request req = request_of("POST", "/kme/v1/reserve", body, strlen(body), "application/json");
    http_response resp = {0, NULL, 0};
    reserve_handle(nb, &nb->links[0], &req, &resp);
    ck_assert_ptr_nonnull(resp.body);
    return resp;
}

static http_response send_reservation(const kme_reserve_request *r)
{
    char *json = kme_reserve_request_to_json(r);
    ck_assert_ptr_nonnull(json);
    http_response resp = reserve_at_b(json);
    etsi_text_free(json);
    return resp;
}

static uint64_t in_doubt_count(kme_store *s)
{
    MDB_txn *t;
    MDB_stat st;
    ck_assert_int_eq(store_read_begin(s, &t), 0);
    ck_assert_int_eq(mdb_stat(t, s->in_doubt, &st), 0);
    mdb_txn_abort(t);
    return st.ms_entries;
}

START_TEST(available_keys_follow_owned_verified_key)
{
    nodes_ready(0);
    /* Ingested, not verified: nothing to carve. */
    ck_assert_int_eq(reserve_available_keys(na, &na->links[0], 256), 0);
    verify_state v;
    verify_all(&v);
    ck_assert_int_eq(v.n, 6);
    /* A owns blocks 2, 4 and 6, each less its verification bytes. */
    ck_assert_uint_eq(pair_stock(&sa, &la).owned_free, 3 * FREE_PER_BLOCK);
    /* Less the MAC keys of the message that would carry them. */
    const long usable = 3 * FREE_PER_BLOCK - RESERVE_MAC_BYTES;
    ck_assert_int_eq(reserve_available_keys(na, &na->links[0], 8), usable);
    ck_assert_int_eq(reserve_available_keys(na, &na->links[0], 256), usable / 32);
    ck_assert_int_eq(reserve_available_keys(na, &na->links[0], 8192), usable / 1024);
    /* B's blocks are B's to carve. */
    ck_assert_int_eq(reserve_available_keys(nb, &nb->links[0], 8), usable);
    /* What A carves is no longer available. */
    kme_reserve_request r;
    unsigned char keys[10 * KEY_BYTES];
    reservation(&r, "SAE_A", "SAE_B", 10, keys);
    ck_assert_int_eq(reserve_available_keys(na, &na->links[0], 256),
                     (usable - 10 * KEY_BYTES - RESERVE_MAC_BYTES) / 32);
    ck_assert_int_eq(reserve_available_keys(nb, &nb->links[0], 8), usable);
    kme_reserve_request_clear(&r);
    nodes_done();
}
END_TEST

START_TEST(reservation_committed_at_the_neighbour)
{
    nodes_ready(1);
    kme_reserve_request r;
    unsigned char keys[3 * KEY_BYTES];
    reservation(&r, "SAE_A", "SAE_B", 3, keys);
    http_response resp = send_reservation(&r);
    expect_error(&resp, 200, "committed");
    ck_assert_int_eq(records_in(&sb), 3);
    /* B recorded the ranges A carved: both ends agree on what is spent. */
    ck_assert_uint_eq(pair_stock(&sb, &lb_).peer_free, pair_stock(&sa, &la).owned_free);
    ck_assert_uint_eq(pair_stock(&sb, &lb_).peer_free, 3 * FREE_PER_BLOCK - sizeof keys - RESERVE_MAC_BYTES);
    /* The same message again (a replay): its MAC keys are spent, nothing more done. */
    char before[4096], after[4096];
    pair_extents(&sb, "KME_A", before, sizeof before);
    resp = send_reservation(&r);
    expect_error(&resp, 409, NULL);
    pair_extents(&sb, "KME_A", after, sizeof after);
    ck_assert_str_eq(after, before);
    ck_assert_int_eq(records_in(&sb), 3);
    /* B's slave gets the bytes A carved, once. */
    etsi_key_container want = {calloc(3, sizeof(etsi_key)), 3}, got;
    for (size_t i = 0; i < 3; i++) {
        memcpy(want.keys[i].key_id, r.keys[i].key_id, UUID_STR_LEN + 1);
        want.keys[i].key = malloc(KEY_BYTES);
        memcpy(want.keys[i].key, keys + i * KEY_BYTES, KEY_BYTES);
        want.keys[i].key_len = KEY_BYTES;
    }
    ck_assert_int_eq(fetch_keys(&sb, "SAE_A", "SAE_B", &want, &got), KR_OK);
    expect_same_keys(&got, &want);
    etsi_key_container_clear(&got);
    ck_assert_int_eq(fetch_keys(&sb, "SAE_A", "SAE_B", &want, &got), KR_UNKNOWN);
    ck_assert_int_eq(records_in(&sb), 0);
    etsi_key_container_clear(&want);
    OPENSSL_cleanse(keys, sizeof keys);
    kme_reserve_request_clear(&r);
    nodes_done();
}
END_TEST

#define ID1 "\"6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f\""
#define ID2 "\"6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e60\""
#define RES(master, slaves, size, expires, keys)                                                                       \
    "{\"master\":" master ",\"slaves\":" slaves ",\"size\":" size ",\"expires\":" expires ",\"keys\":" keys "}"
#define KEYS1(id, ranges) "[{\"key_ID\":" id ",\"ranges\":" ranges "}]"
/* One key of 256 bits in block 2 (A's), unused at B, beyond where A carves
 * the MAC keys of the messages below. */
#define GOOD RES("\"SAE_A\"", "[\"SAE_B\"]", "256", "1900000000", KEYS1(ID1, "[[2,800,32]]"))

/* body with the members of a MAC that does not authenticate it (ranges A
 * owns, a tag of its own), so a body refused is refused for its other
 * members; a body that is no object is returned as it is. Free with free(). */
static char *with_forged_mac(const char *body)
{
    json_t *root = json_loads(body, JSON_DECODE_ANY, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return strdup(body);
    }
    json_object_set_new(root, "mac_key", json_pack("[[I,I,I]]", (json_int_t)4, (json_int_t)600, (json_int_t)32));
    json_object_set_new(root, "answer_key", json_pack("[[I,I,I]]", (json_int_t)4, (json_int_t)700, (json_int_t)32));
    json_object_set_new(root, "tag", json_string("5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c"));
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    char *out = strdup(text);
    etsi_text_free(text);
    return out;
}

/* body as A would send it: its MAC from link key A owns. */
static char *sealed(const char *body)
{
    char *forged = with_forged_mac(body);
    kme_reserve_request r;
    etsi_problem p;
    ck_assert_msg(kme_reserve_request_from_json(forged, strlen(forged), 1024, &r, &p) == 0, "%s", p.detail);
    free(forged);
    ck_assert_int_eq(store_commit(&sa, seal_op, &r), 0);
    char *json = kme_reserve_request_to_json(&r);
    kme_reserve_request_clear(&r);
    char *out = strdup(json);
    etsi_text_free(json);
    return out;
}

START_TEST(malformed_bodies_change_nothing)
{
    nodes_ready(1);
    site_b.limits.max_key_per_request = 1;
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "{}",
        "null",
        RES("\"SAE_A\"", "[\"SAE_B\"]", "256", "1900000000", "[]"),                         /* no key */
        RES("\"SAE_A\"", "[]", "256", "1900000000", KEYS1(ID1, "[[2,100,32]]")),            /* no slave */
        RES("\"SAE A\"", "[\"SAE_B\"]", "256", "1900000000", KEYS1(ID1, "[[2,100,32]]")),   /* master not an ID */
        RES("\"SAE_A\"", "[\"SAE_B\",7]", "256", "1900000000", KEYS1(ID1, "[[2,100,32]]")), /* slave not an ID */
        RES("\"SAE_A\"", "[\"SAE_B\"]", "255", "1900000000", KEYS1(ID1, "[[2,100,32]]")),   /* size in bits */
        RES("\"SAE_A\"", "[\"SAE_B\"]", "0", "1900000000", KEYS1(ID1, "[[2,100,32]]")),
        RES("\"SAE_A\"", "[\"SAE_B\"]", "256", "-1", KEYS1(ID1, "[[2,100,32]]")),                 /* expiry */
        RES("\"SAE_A\"", "[\"SAE_B\"]", "256", "1900000000", KEYS1("\"key-1\"", "[[2,100,32]]")), /* key_ID */
        RES("\"SAE_A\"", "[\"SAE_B\"]", "256", "1900000000", KEYS1(ID1, "[[2,100,31]]")), /* short of the size */
        RES("\"SAE_A\"", "[\"SAE_B\"]", "256", "1900000000", KEYS1(ID1, "[[2,100,16],[2,200,32]]")), /* beyond it */
        RES("\"SAE_A\"", "[\"SAE_B\"]", "256", "1900000000", KEYS1(ID1, "[[2,100,0],[2,100,32]]")),  /* empty range */
        RES("\"SAE_A\"", "[\"SAE_B\"]", "256", "1900000000", KEYS1(ID1, "[[2,100]]")),
        RES("\"SAE_A\"", "[\"SAE_B\"]", "256", "1900000000", KEYS1(ID1, "[]")),
        /* two keys, over the limit of one a request */
        RES("\"SAE_A\"", "[\"SAE_B\"]", "256", "1900000000",
            "[{\"key_ID\":" ID1 ",\"ranges\":[[2,100,32]]},{\"key_ID\":" ID2 ",\"ranges\":[[2,132,32]]}]"),
    };
    char before[4096], after[4096];
    pair_extents(&sb, "KME_A", before, sizeof before);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *body = with_forged_mac(bad[i]);
        http_response resp = reserve_at_b(body);
        free(body);
        ck_assert_msg(resp.status == 400, "body %zu: %d %s", i, resp.status, resp.body);
        ck_assert_msg(!strstr(resp.body, "not authentic"), "body %zu refused for its MAC: %s", i, resp.body);
        expect_error(&resp, 400, NULL);
        pair_extents(&sb, "KME_A", after, sizeof after);
        ck_assert_msg(strcmp(after, before) == 0, "body %zu changed the link", i);
        ck_assert_int_eq(records_in(&sb), 0);
    }
    /* The body they were made from: refused under a MAC that does not
     * authenticate it, taken under A's. */
    char *body = with_forged_mac(GOOD);
    http_response resp = reserve_at_b(body);
    free(body);
    expect_error(&resp, 400, "request not authentic");
    pair_extents(&sb, "KME_A", after, sizeof after);
    ck_assert_str_eq(after, before);
    body = sealed(GOOD);
    resp = reserve_at_b(body);
    free(body);
    expect_error(&resp, 200, "committed");
    ck_assert_int_eq(records_in(&sb), 1);
    pair_extents(&sb, "KME_A", after, sizeof after);
    ck_assert_str_ne(after, before);
    nodes_done();
}
END_TEST

START_TEST(refused_reservations_change_nothing)
{
    nodes_ready(1);
    static const struct {
        const char *body;
        int status;
        const char *message;
    } cases[] = {
        {RES("\"SAE_A\"", "[\"SAE_Z\"]", "256", "1900000000", KEYS1(ID1, "[[2,800,32]]")), 400, "unknown slave SAE"},
        {RES("\"SAE_Q\"", "[\"SAE_B\"]", "256", "1900000000", KEYS1(ID1, "[[2,800,32]]")), 400, "unknown master SAE"},
        /* block 1 is B's own */
        {RES("\"SAE_A\"", "[\"SAE_B\"]", "256", "1900000000", KEYS1(ID1, "[[1,800,32]]")), 503,
         "link blocks not usable here"},
        /* no block 9 */
        {RES("\"SAE_A\"", "[\"SAE_B\"]", "256", "1900000000", KEYS1(ID1, "[[9,800,32]]")), 503,
         "link blocks not usable here"},
        /* the block's verification bytes */
        {RES("\"SAE_A\"", "[\"SAE_B\"]", "256", "1900000000", KEYS1(ID1, "[[2,0,32]]")), 409, "link key reused"},
        /* the second key reuses the first's bytes: the first is not kept either */
        {RES("\"SAE_A\"", "[\"SAE_B\"]", "256", "1900000000",
             "[{\"key_ID\":" ID1 ",\"ranges\":[[2,800,32]]},{\"key_ID\":" ID2 ",\"ranges\":[[2,816,32]]}]"),
         409, "link key reused"},
    };
    /* Authentic, refused all the same: the refusal spends its MAC keys at B
     * (so that it can be tagged), nothing else. */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t free_before = pair_stock(&sb, &lb_).peer_free;
        char *body = sealed(cases[i].body);
        http_response resp = reserve_at_b(body);
        free(body);
        ck_assert_msg(resp.status == cases[i].status, "case %zu: %d %s", i, resp.status, resp.body);
        expect_error(&resp, cases[i].status, cases[i].message);
        ck_assert_msg(pair_stock(&sb, &lb_).peer_free == free_before - RESERVE_MAC_BYTES,
                      "case %zu changed the link beyond its MAC keys", i);
        ck_assert_int_eq(records_in(&sb), 0);
    }
    nodes_done();
}
END_TEST

START_TEST(master_vouched_for_until_the_advert)
{
    /* Before A's advert reaches B, A is trusted for its own SAEs. */
    open_stores();
    ingest_both(1, 6, 0);
    verify_state v;
    verify_all(&v);
    relay_config c;
    site_init(&site_b, b_saes);
    node_config(&c, "KME_B", to_a);
    nb = node_open(&c, &sb, &site_b, 1);
    char *body = sealed(RES("\"SAE_Q\"", "[\"SAE_B\"]", "256", "1900000000", KEYS1(ID1, "[[2,800,32]]")));
    http_response resp = reserve_at_b(body);
    free(body);
    expect_error(&resp, 200, "committed");
    ck_assert_int_eq(records_in(&sb), 1);
    node_close(nb);
    close_stores();
}
END_TEST

typedef struct {
    lb_range ranges[16];
    size_t n;
} carved;

static void carve(carved *c, size_t bytes)
{
    unsigned char *buf = malloc(bytes);
    ck_assert_ptr_nonnull(buf);
    carve_arg a = {na, bytes, buf, {{0, 0, 0}}, 0};
    ck_assert_int_eq(store_commit(&sa, do_carve, &a), LB_OK);
    memcpy(c->ranges, a.ranges, a.nranges * sizeof *a.ranges);
    c->n = a.nranges;
    OPENSSL_cleanse(buf, bytes);
    free(buf);
}

START_TEST(released_ranges_return_to_the_pool)
{
    /* Ranges of a message that provably never left go back to the pool;
     * what becomes of those whose answer was lost is test_lost_answers'. */
    nodes_ready(1);
    uint64_t free0 = pair_stock(&sa, &la).owned_free;
    char before[4096], after[4096];
    pair_extents(&sa, "KME_B", before, sizeof before);
    carved rel;
    carve(&rel, 100);
    ck_assert_uint_eq(pair_stock(&sa, &la).owned_free, free0 - 100);
    ck_assert_int_eq(reserve_release_ranges(na, &na->links[0], rel.ranges, rel.n), 0);
    ck_assert_uint_eq(pair_stock(&sa, &la).owned_free, free0);
    pair_extents(&sa, "KME_B", after, sizeof after);
    ck_assert_str_eq(after, before);
    ck_assert_uint_eq(in_doubt_count(&sa), 0);
    nodes_done();
}
END_TEST

START_TEST(link_keys_refused_take_nothing)
{
    nodes_ready(1);
    char before[4096], after[4096];
    pair_extents(&sa, "KME_B", before, sizeof before);
    uint64_t free0 = pair_stock(&sa, &la).owned_free;
    static const char *const local[] = {"SAE_A2"}, *const remote[] = {"SAE_B"};
    etsi_key_container out = {NULL, 0};
    http_response resp = {0, NULL, 0};

    /* More than A owns: refused before anything is carved or sent. */
    reserve_request big = {"SAE_A", local, 1, remote, 1, 100, 256, 0, 5};
    ck_assert_int_eq(reserve_link_keys(na, &na->links[0], &big, &out, &resp), -1);
    char reason[512];
    error_reason(&resp, reason, sizeof reason);
    char want[128];
    snprintf(want, sizeof want, "%d keys of 256 bits are available", (3 * FREE_PER_BLOCK - RESERVE_MAC_BYTES) / 32 + 5);
    ck_assert_msg(strstr(reason, want) && strstr(reason, "105 were requested"), "%s", reason);
    expect_error(&resp, 503, "not enough key material");
    ck_assert_uint_eq(out.count, 0);

    /* The neighbour cannot be reached: the carving is given back, and the
     * keys committed for the slave here are erased. */
    reserve_request r = {"SAE_A", local, 1, remote, 1, 4, 256, 0, 0};
    ck_assert_int_eq(reserve_link_keys(na, &na->links[0], &r, &out, &resp), -1);
    expect_error(&resp, 503, "peer KME unreachable");
    ck_assert_uint_eq(out.count, 0);
    ck_assert_ptr_null(out.keys);
    ck_assert_int_eq(atomic_load(&na->links[0].peer_up), 0);

    pair_extents(&sa, "KME_B", after, sizeof after);
    ck_assert_str_eq(after, before);
    ck_assert_uint_eq(pair_stock(&sa, &la).owned_free, free0);
    ck_assert_int_eq(records_in(&sa), 0);
    ck_assert_uint_eq(in_doubt_count(&sa), 0);

    /* The same for keys with no slave here (stock, or a remote slave alone). */
    reserve_request remote_only = {"SAE_A", NULL, 0, remote, 1, 3, 256, 60, 0};
    ck_assert_int_eq(reserve_link_keys(na, &na->links[0], &remote_only, &out, &resp), -1);
    expect_error(&resp, 503, "peer KME unreachable");
    ck_assert_uint_eq(out.count, 0);
    pair_extents(&sa, "KME_B", after, sizeof after);
    ck_assert_str_eq(after, before);
    ck_assert_uint_eq(pair_stock(&sa, &la).owned_free, free0);
    ck_assert_uint_eq(in_doubt_count(&sa), 0);
    nodes_done();
}
END_TEST

int main(void)
{
    json_use_wiping_allocator(); /* as the daemon runs */
    const TTest *const checks[] = {available_keys_follow_owned_verified_key, reservation_committed_at_the_neighbour,
                                   malformed_bodies_change_nothing,          refused_reservations_change_nothing,
                                   master_vouched_for_until_the_advert,      released_ranges_return_to_the_pool,
                                   link_keys_refused_take_nothing,           NULL};
    return run_checks("reserve", checks, 60, NULL, NULL);
}
