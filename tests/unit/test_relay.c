/* Unit tests of the key relay (relay/relay.c) at one KME, KME_B, whose relay
 * node stands on a real store linked to KME_A's (tests/unit/link_pair.h):
 * relay_handle as B's KME port runs it, for messages A sealed with its link
 * key (genuine, forged, malformed, not deliverable here, not forwardable),
 * comparing B's link blocks before and after; and relay_keys_to at the
 * origin when there is no route or the neighbour cannot be reached. */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include "api/kme_relay.h"
#include "relay/hop_crypto.h"
#include "relay/relay.h"
#include "runtime/json_wipe.h"
#include "tests/unit/link_pair.h"
#include "tests/unit/node_fixture.h"

#define KEY_BYTES 32

static test_site site_b;
static relay_node *nb;
static const char *const b_saes[] = {"SAE_B", NULL};
static const char *const to_a[] = {"KME_A", NULL};
static const char *const to_b[] = {"KME_B", NULL};
static const char *const a_saes[] = {"SAE_A", NULL};

/* The link A-B with blocks 1..6 verified (A owns the even ones, B the odd
 * ones), B's node with its link up, and A's advert (hosting SAE_A) at B. */
static void node_b_ready(void)
{
    open_stores();
    ingest_both(1, 6, 0);
    verify_state v;
    verify_all(&v);
    ck_assert_int_eq(v.n, 6);
    site_init(&site_b, b_saes);
    relay_config c;
    node_config(&c, "KME_B", to_a);
    nb = node_open(&c, &sb, &site_b, 1);
    ck_assert_int_eq(advert_to(nb, 0, "KME_A", 1, to_b, 1 << 20, a_saes), 200);
}

static void node_b_done(void)
{
    node_close(nb);
    close_stores();
}

typedef struct {
    kme_relay_msg *m;
    const unsigned char *keys;
    size_t len;
    int rc;
} seal_arg;

static int do_seal(kme_store *s, MDB_txn *t, void *arg)
{
    seal_arg *h = arg;
    h->rc = hop_seal_from_link(s, t, &la, h->m, h->keys, h->len);
    return h->rc;
}

/* A relay message A seals with its link key for B: nkeys fresh keys of 256
 * bits (their bytes into keys) from master at origin for slave at dest,
 * allowed hops more links. */
static void seal_hops(kme_relay_msg *m, const char *origin, const char *dest, const char *master, const char *slave,
                      size_t nkeys, unsigned char *keys, uint32_t hops)
{
    ck_assert_int_eq(kme_relay_alloc(m, nkeys, KEY_BYTES * 8, 16, 4), 0);
    ck_assert_int_eq(uuid_generate(m->relay_id), 0);
    snprintf(m->origin, sizeof m->origin, "%s", origin);
    snprintf(m->dest, sizeof m->dest, "%s", dest);
    snprintf(m->master, sizeof m->master, "%s", master);
    snprintf(m->slaves[0], sizeof m->slaves[0], "%s", slave);
    m->slave_count = 1;
    m->expires = (int64_t)time(NULL) + 600;
    m->hops_left = hops;
    for (size_t i = 0; i < nkeys; i++)
        ck_assert_int_eq(uuid_generate(m->key_ids[i]), 0);
    RAND_bytes(keys, (int)(nkeys * KEY_BYTES));
    seal_arg h = {m, keys, nkeys * KEY_BYTES, -1};
    ck_assert_int_eq(store_commit(&sa, do_seal, &h), 0);
    ck_assert_int_eq(h.rc, HOP_OK);
}

static void seal_at_a(kme_relay_msg *m, const char *origin, const char *dest, const char *master, const char *slave,
                      size_t nkeys, unsigned char *keys)
{
    seal_hops(m, origin, dest, master, slave, nkeys, keys, 4);
}

/* relay_handle at B for m, arrived from A in the binary form (wire) or as JSON. */
static http_response send_to_b(const kme_relay_msg *m, int wire)
{
    http_response resp = {0, NULL, 0};
    if (wire) {
        size_t len = 0;
        unsigned char *body = kme_relay_to_wire(m, &len);
        ck_assert_ptr_nonnull(body);
        http_request req = request_of("POST", "/kme/v1/relay", body, len, KME_RELAY_WIRE_TYPE);
        relay_handle(nb, &nb->links[0], &req, &resp);
        OPENSSL_cleanse(body, len);
        free(body);
    } else {
        char *json = kme_relay_to_json(m);
        ck_assert_ptr_nonnull(json);
        http_request req = request_of("POST", "/kme/v1/relay", json, strlen(json), "application/json");
        relay_handle(nb, &nb->links[0], &req, &resp);
        etsi_text_free(json);
    }
    ck_assert_ptr_nonnull(resp.body);
    return resp;
}

/* A copy of m (through its binary form). */
static void copy_msg(const kme_relay_msg *m, kme_relay_msg *out)
{
    size_t len = 0;
    unsigned char *body = kme_relay_to_wire(m, &len);
    ck_assert_ptr_nonnull(body);
    etsi_problem p;
    ck_assert_msg(kme_relay_from_wire(body, len, out, &p) == 0, "%s: %s", p.message, p.detail);
    free(body);
}

/* The keys of m as B's slave fetches them, with the bytes A sealed. */
static void expect_delivered(const kme_relay_msg *m, const unsigned char *keys)
{
    etsi_key_container want = {calloc(m->key_count, sizeof(etsi_key)), m->key_count}, got;
    ck_assert_ptr_nonnull(want.keys);
    for (size_t i = 0; i < m->key_count; i++) {
        memcpy(want.keys[i].key_id, m->key_ids[i], UUID_STR_LEN + 1);
        want.keys[i].key = malloc(KEY_BYTES);
        ck_assert_ptr_nonnull(want.keys[i].key);
        memcpy(want.keys[i].key, keys + i * KEY_BYTES, KEY_BYTES);
        want.keys[i].key_len = KEY_BYTES;
    }
    ck_assert_int_eq(fetch_keys(&sb, m->master, m->slaves[0], &want, &got), KR_OK);
    expect_same_keys(&got, &want);
    etsi_key_container_clear(&got);
    /* Once only. */
    ck_assert_int_eq(fetch_keys(&sb, m->master, m->slaves[0], &want, &got), KR_UNKNOWN);
    ck_assert_uint_eq(got.count, 0);
    etsi_key_container_clear(&want);
}

START_TEST(forged_messages_spend_nothing)
{
    node_b_ready();
    kme_relay_msg m;
    unsigned char keys[4 * KEY_BYTES];
    seal_at_a(&m, "KME_A", "KME_B", "SAE_A", "SAE_B", 4, keys);
    char before[4096], after[4096];
    pair_extents(&sb, "KME_A", before, sizeof before);
    lb_stock b0 = pair_stock(&sb, &lb_);
    static const struct {
        int status;
        const char *message;
    } want[] = {
        {400, "relay not authentic"},         /* a ciphertext bit */
        {400, "relay not authentic"},         /* a tag bit */
        {400, "relay not authentic"},         /* another slave */
        {400, "relay not authentic"},         /* another master */
        {400, "relay not authentic"},         /* another destination */
        {400, "relay not authentic"},         /* a later expiry */
        {503, "link blocks not usable here"}, /* the pad in a block B owns */
        {409, "link key reused"},             /* the MAC key over the verification bytes */
    };
    for (size_t kind = 0; kind < sizeof want / sizeof want[0]; kind++) {
        kme_relay_msg f;
        copy_msg(&m, &f);
        switch (kind) {
        case 0:
            f.ct[5] ^= 1;
            break;
        case 1:
            f.tag[3] ^= 0x80;
            break;
        case 2:
            strcpy(f.slaves[0], "SAE_EVE");
            break;
        case 3:
            strcpy(f.master, "SAE_X");
            break;
        case 4:
            strcpy(f.dest, "KME_C");
            break;
        case 5:
            f.expires += 1000;
            break;
        case 6:
            f.pad[0].seq = 1;
            break;
        case 7:
            f.mac_key[0].offset = 0;
            break;
        }
        http_response resp = send_to_b(&f, 1);
        ck_assert_msg(resp.status == want[kind].status, "kind %zu: %d %s", kind, resp.status, resp.body);
        expect_error(&resp, want[kind].status, want[kind].message);
        pair_extents(&sb, "KME_A", after, sizeof after);
        ck_assert_msg(strcmp(after, before) == 0, "kind %zu spent link key", kind);
        ck_assert_int_eq(records_in(&sb), 0);
        kme_relay_clear(&f);
    }
    ck_assert_uint_eq(pair_stock(&sb, &lb_).peer_free, b0.peer_free);
    /* The genuine message still goes through. */
    http_response resp = send_to_b(&m, 1);
    expect_error(&resp, 200, "committed");
    expect_delivered(&m, keys);
    OPENSSL_cleanse(keys, sizeof keys);
    kme_relay_clear(&m);
    node_b_done();
}
END_TEST

START_TEST(malformed_bodies_refused)
{
    node_b_ready();
    kme_relay_msg m;
    unsigned char keys[2 * KEY_BYTES];
    seal_at_a(&m, "KME_A", "KME_B", "SAE_A", "SAE_B", 2, keys);
    size_t len = 0;
    unsigned char *wire = kme_relay_to_wire(&m, &len);
    ck_assert_ptr_nonnull(wire);
    char before[4096], after[4096];
    pair_extents(&sb, "KME_A", before, sizeof before);
    static const char garbage[] = "\x00\x00\x00\x05{\"a\"}";
    const struct {
        const void *body;
        size_t len;
        const char *type;
    } bodies[] = {
        {wire, len - 1, KME_RELAY_WIRE_TYPE}, /* cut short */
        {wire, 3, KME_RELAY_WIRE_TYPE},       /* no head */
        {garbage, sizeof garbage - 1, KME_RELAY_WIRE_TYPE},
        {"", 0, KME_RELAY_WIRE_TYPE},
        {wire, len, "application/json"}, /* binary sent as JSON */
        {"{}", 2, "application/json"},
        {"not json", 8, "application/json"},
        {"", 0, NULL},
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        http_request req = request_of("POST", "/kme/v1/relay", bodies[i].body, bodies[i].len, bodies[i].type);
        http_response resp = {0, NULL, 0};
        relay_handle(nb, &nb->links[0], &req, &resp);
        ck_assert_msg(resp.status == 400, "body %zu: %d", i, resp.status);
        expect_error(&resp, 400, NULL);
        pair_extents(&sb, "KME_A", after, sizeof after);
        ck_assert_str_eq(after, before);
        ck_assert_int_eq(records_in(&sb), 0);
    }
    free(wire);
    kme_relay_clear(&m);
    node_b_done();
}
END_TEST

START_TEST(genuine_message_delivered_once)
{
    node_b_ready();
    lb_stock b0 = pair_stock(&sb, &lb_);
    kme_relay_msg m;
    unsigned char keys[4 * KEY_BYTES];
    seal_at_a(&m, "KME_A", "KME_B", "SAE_A", "SAE_B", 4, keys);
    http_response resp = send_to_b(&m, 1);
    expect_error(&resp, 200, "committed");
    ck_assert_int_eq(records_in(&sb), 4);
    /* B spent exactly the pad and the MAC key, as A did. */
    ck_assert_uint_eq(pair_stock(&sb, &lb_).peer_free, b0.peer_free - sizeof keys - HOP_MAC_KEY_BYTES);
    ck_assert_uint_eq(pair_stock(&sb, &lb_).peer_free, pair_stock(&sa, &la).owned_free);
    /* The same message again: refused, nothing more spent or stored. */
    char before[4096], after[4096];
    pair_extents(&sb, "KME_A", before, sizeof before);
    resp = send_to_b(&m, 1);
    expect_error(&resp, 409, "link key reused");
    pair_extents(&sb, "KME_A", after, sizeof after);
    ck_assert_str_eq(after, before);
    ck_assert_int_eq(records_in(&sb), 4);
    expect_delivered(&m, keys);
    ck_assert_int_eq(records_in(&sb), 0);
    OPENSSL_cleanse(keys, sizeof keys);
    kme_relay_clear(&m);
    node_b_done();
}
END_TEST

START_TEST(json_form_delivered)
{
    node_b_ready();
    kme_relay_msg m;
    unsigned char keys[3 * KEY_BYTES];
    seal_at_a(&m, "KME_A", "KME_B", "SAE_A", "SAE_B", 3, keys);
    http_response resp = send_to_b(&m, 0);
    expect_error(&resp, 200, "committed");
    expect_delivered(&m, keys);
    kme_relay_clear(&m);
    node_b_done();
}
END_TEST

START_TEST(undeliverable_messages_spend_nothing)
{
    node_b_ready();
    char before[4096], after[4096];
    pair_extents(&sb, "KME_A", before, sizeof before);
    static const struct {
        const char *origin, *master, *slave;
        int status;
        const char *message;
    } cases[] = {
        {"KME_A", "SAE_A", "SAE_Z", 400, "unknown slave SAE"},      /* not hosted at B */
        {"KME_A", "SAE_Q", "SAE_B", 400, "unknown master SAE"},     /* not in A's advert */
        {"KME_Q", "SAE_A", "SAE_B", 503, "routes not learned yet"}, /* no advert of the origin */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kme_relay_msg m;
        unsigned char keys[2 * KEY_BYTES];
        seal_at_a(&m, cases[i].origin, "KME_B", cases[i].master, cases[i].slave, 2, keys);
        http_response resp = send_to_b(&m, 1);
        expect_error(&resp, cases[i].status, cases[i].message);
        pair_extents(&sb, "KME_A", after, sizeof after);
        ck_assert_msg(strcmp(after, before) == 0, "case %zu spent link key", i);
        ck_assert_int_eq(records_in(&sb), 0);
        kme_relay_clear(&m);
    }
    node_b_done();
}
END_TEST

START_TEST(unforwardable_messages_spend_nothing)
{
    node_b_ready();
    char before[4096], after[4096];
    pair_extents(&sb, "KME_A", before, sizeof before);
    lb_stock b0 = pair_stock(&sb, &lb_);
    kme_relay_msg m;
    unsigned char keys[2 * KEY_BYTES];

    /* For KME_C, to which B has no route. */
    seal_at_a(&m, "KME_A", "KME_C", "SAE_A", "SAE_C", 2, keys);
    http_response resp = send_to_b(&m, 1);
    char reason[256];
    error_reason(&resp, reason, sizeof reason);
    ck_assert_str_eq(reason, "KME_B has no route to KME KME_C now");
    expect_error(&resp, 503, "no route");
    kme_relay_clear(&m);

    /* Coming back to its origin. */
    seal_at_a(&m, "KME_B", "KME_C", "SAE_B", "SAE_C", 2, keys);
    resp = send_to_b(&m, 1);
    expect_error(&resp, 400, "malformed relay");
    kme_relay_clear(&m);

    /* KME_C is behind A: the only route goes back where it came from. */
    static const char *const a_links[] = {"KME_B", "KME_C", NULL}, *const c_links[] = {"KME_A", NULL},
                             *const c_saes[] = {"SAE_C", NULL};
    ck_assert_int_eq(advert_to(nb, 0, "KME_A", 2, a_links, 1 << 20, a_saes), 200);
    ck_assert_int_eq(advert_to(nb, 0, "KME_C", 1, c_links, 1 << 20, c_saes), 200);
    unsigned hops = 0;
    ck_assert_ptr_eq(router_next_hop(nb, "KME_C", &hops), &nb->links[0]);
    ck_assert_uint_eq(hops, 2);
    seal_at_a(&m, "KME_A", "KME_C", "SAE_A", "SAE_C", 2, keys);
    resp = send_to_b(&m, 1);
    error_reason(&resp, reason, sizeof reason);
    ck_assert_str_eq(reason, "KME_B has no route to KME KME_C now");
    expect_error(&resp, 503, "no route");
    kme_relay_clear(&m);

    pair_extents(&sb, "KME_A", after, sizeof after);
    ck_assert_str_eq(after, before);
    ck_assert_uint_eq(pair_stock(&sb, &lb_).owned_free, b0.owned_free);
    ck_assert_uint_eq(pair_stock(&sb, &lb_).peer_free, b0.peer_free);
    ck_assert_int_eq(records_in(&sb), 0);
    node_b_done();
}
END_TEST

/* A message for a KME further on whose last allowed hop was the one to B. */
START_TEST(hop_limit_reached)
{
    node_b_ready();
    char before[4096], after[4096];
    pair_extents(&sb, "KME_A", before, sizeof before);
    kme_relay_msg m;
    unsigned char keys[2 * KEY_BYTES];
    seal_hops(&m, "KME_A", "KME_C", "SAE_A", "SAE_C", 2, keys, 1);
    http_response resp = send_to_b(&m, 1);
    char reason[256];
    error_reason(&resp, reason, sizeof reason);
    ck_assert_str_eq(reason, "the relay reached its hop limit at KME_B");
    expect_error(&resp, 503, "no route");
    pair_extents(&sb, "KME_A", after, sizeof after);
    ck_assert_str_eq(after, before);
    kme_relay_clear(&m);
    node_b_done();
}
END_TEST

/* keys fresh keys of 256 bits. */
static void fresh_keys(etsi_key_container *keys, long n)
{
    ck_assert_int_eq(kr_fill_random(keys, n, KEY_BYTES * 8), 0);
}

START_TEST(origin_without_route)
{
    node_b_ready();
    lb_stock b0 = pair_stock(&sb, &lb_);
    etsi_key_container keys;
    fresh_keys(&keys, 2);
    static const char *const slaves[] = {"SAE_C"};
    http_response resp = {0, NULL, 0};
    ck_assert_int_eq(relay_keys_to(nb, "KME_C", "SAE_B", slaves, 1, &keys, 0, &resp), -1);
    expect_error(&resp, 503, "no route");
    ck_assert_int_eq(site_b.relayed, 1);
    ck_assert_int_eq(site_b.last.ok, 0);
    ck_assert_str_eq(site_b.last.dest, "KME_C");
    ck_assert_str_eq(site_b.last.via, "");
    ck_assert_uint_eq(site_b.last.keys, 2);
    /* What cannot be relayed at all is refused before anything is tried. */
    ck_assert_int_eq(relay_keys_to(nb, "KME_C", "SAE_B", slaves, 0, &keys, 0, &resp), -1);
    expect_error(&resp, 400, "cannot relay these keys");
    etsi_key_container none = {NULL, 0};
    ck_assert_int_eq(relay_keys_to(nb, "KME_C", "SAE_B", slaves, 1, &none, 0, &resp), -1);
    expect_error(&resp, 400, "cannot relay these keys");
    ck_assert_int_eq(site_b.relayed, 1);
    ck_assert_uint_eq(pair_stock(&sb, &lb_).owned_free, b0.owned_free);
    etsi_key_container_clear(&keys);
    node_b_done();
}
END_TEST

START_TEST(origin_neighbour_unreachable_gives_the_pad_back)
{
    node_b_ready();
    ck_assert_ptr_eq(router_next_hop(nb, "KME_A", NULL), &nb->links[0]);
    char before[4096], after[4096];
    pair_extents(&sb, "KME_A", before, sizeof before);
    lb_stock b0 = pair_stock(&sb, &lb_);
    etsi_key_container keys;
    fresh_keys(&keys, 3);
    static const char *const slaves[] = {"SAE_A"};
    http_response resp = {0, NULL, 0};
    ck_assert_int_eq(relay_keys_to(nb, "KME_A", "SAE_B", slaves, 1, &keys, 0, &resp), -1);
    expect_error(&resp, 503, "peer KME unreachable");
    /* The message never left: its pad and MAC key are B's again, nothing is in doubt. */
    pair_extents(&sb, "KME_A", after, sizeof after);
    ck_assert_str_eq(after, before);
    ck_assert_uint_eq(pair_stock(&sb, &lb_).owned_free, b0.owned_free);
    MDB_txn *t;
    MDB_stat st;
    ck_assert_int_eq(store_read_begin(&sb, &t), 0);
    ck_assert_int_eq(mdb_stat(t, sb.in_doubt, &st), 0);
    mdb_txn_abort(t);
    ck_assert_uint_eq(st.ms_entries, 0);
    ck_assert_int_eq(atomic_load(&nb->links[0].peer_up), 0);
    ck_assert_int_eq(site_b.relayed, 1);
    ck_assert_int_eq(site_b.last.ok, 0);
    ck_assert_str_eq(site_b.last.via, "KME_A");
    etsi_key_container_clear(&keys);
    node_b_done();
}
END_TEST

int main(void)
{
    json_use_wiping_allocator(); /* as the daemon runs */
    const TTest *const checks[] = {forged_messages_spend_nothing,
                                   malformed_bodies_refused,
                                   genuine_message_delivered_once,
                                   json_form_delivered,
                                   undeliverable_messages_spend_nothing,
                                   unforwardable_messages_spend_nothing,
                                   hop_limit_reached,
                                   origin_without_route,
                                   origin_neighbour_unreachable_gives_the_pad_back,
                                   NULL};
    return run_checks("relay", checks, 60, NULL, NULL);
}
