/* Unit tests of the inter-KME messages (api/kme_msgs) and the KME configuration loader. */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "api/kme_msgs.h"
#include "kme/config.h"
#include "tests/unit/config_file.h"
#include "runtime/json_wipe.h"

/* A MAC key in two ranges and, when with_answer, an answer key in one. */
static void fill_auth(kme_auth *a, int with_answer)
{
    memset(a, 0, sizeof *a);
    a->key[0] = (kme_range){6, 48, 20};
    a->key[1] = (kme_range){8, 48, 12};
    a->key_count = 2;
    if (with_answer) {
        a->answer[0] = (kme_range){8, 60, 32};
        a->answer_count = 1;
    }
    memset(a->tag, 0x5c, KME_TAG_BYTES);
}

/* text with the members of a MAC (fill_auth's, with an answer key) added:
 * a request refused then is refused for its own members (etsi_text_free it). */
static char *with_mac(const char *text)
{
    kme_resolve r;
    memset(&r, 0, sizeof r);
    kme_range one = {2, 48, 32};
    r.count = 1;
    r.ranges = &one;
    fill_auth(&r.auth, 1);
    char *authed = kme_resolve_request_to_json(&r);
    json_t *mac = json_loads(authed, 0, NULL), *root = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(mac);
    ck_assert_ptr_nonnull(root);
    json_object_del(mac, "ranges");
    json_object_update(root, mac);
    char *out = json_dumps(root, JSON_COMPACT);
    json_decref(mac);
    json_decref(root);
    etsi_text_free(authed);
    return out;
}

static void assert_same_auth(const kme_auth *a, const kme_auth *b)
{
    ck_assert_uint_eq(a->key_count, b->key_count);
    ck_assert_uint_eq(a->answer_count, b->answer_count);
    ck_assert_mem_eq(a->key, b->key, a->key_count * sizeof *a->key);
    ck_assert_mem_eq(a->answer, b->answer, a->answer_count * sizeof *a->answer);
    ck_assert_mem_eq(a->tag, b->tag, KME_TAG_BYTES);
}

START_TEST(verify_round_trip)
{
    static kme_verify_request r, back;
    etsi_problem p;
    strcpy(r.txn_id, "6899051d-1655-442f-885a-778f1004bcae");
    r.timeout_ms = 5000;
    r.count = 2;
    r.seqs[0] = 7;
    r.seqs[1] = 1ULL << 40;
    memset(r.tags[1], 0xab, KME_TAG_BYTES);
    char *t = kme_verify_request_to_json(&r);
    ck_assert_int_eq(kme_verify_request_from_json(t, strlen(t), &back, &p), 0);
    ck_assert_uint_eq(back.count, 2);
    ck_assert_uint_eq(back.seqs[1], 1ULL << 40);
    ck_assert_mem_eq(back.tags[1], r.tags[1], KME_TAG_BYTES);
    ck_assert_uint_eq(back.auth.key_count, 0); /* untagged: a new link */
    ck_assert_ptr_null(strstr(t, "\"mac_key\""));
    etsi_text_free(t);
    /* Tagged, with an answer key. */
    fill_auth(&r.auth, 1);
    t = kme_verify_request_to_json(&r);
    ck_assert_int_eq(kme_verify_request_from_json(t, strlen(t), &back, &p), 0);
    assert_same_auth(&back.auth, &r.auth);
    etsi_text_free(t);
    static kme_verify_response v, vb;
    strcpy(v.txn_id, r.txn_id);
    v.count = 3;
    v.verdicts[0] = KME_MATCH;
    v.verdicts[1] = KME_MISMATCH;
    v.verdicts[2] = KME_MISSING;
    t = kme_verify_response_to_json(&v);
    ck_assert_int_eq(kme_verify_response_from_json(t, strlen(t), &vb, &p), 0);
    ck_assert_uint_eq(vb.verdicts[1], KME_MISMATCH);
    ck_assert_uint_eq(vb.verdicts[2], KME_MISSING);
    ck_assert_int_eq(vb.has_tag, 0);
    etsi_text_free(t);
    v.has_tag = 1;
    memset(v.tag, 0x3e, KME_TAG_BYTES);
    t = kme_verify_response_to_json(&v);
    ck_assert_int_eq(kme_verify_response_from_json(t, strlen(t), &vb, &p), 0);
    ck_assert_int_eq(vb.has_tag, 1);
    ck_assert_mem_eq(vb.tag, v.tag, KME_TAG_BYTES);
    etsi_text_free(t);
    /* A MAC half there, or not of 32 bytes, is refused. */
    const char *half[] = {
        "{\"txn_id\":\"6899051d-1655-442f-885a-778f1004bcae\",\"timeout_ms\":1,\"blocks\":[],"
        "\"tag\":\"00000000000000000000000000000000\"}",
        "{\"txn_id\":\"6899051d-1655-442f-885a-778f1004bcae\",\"timeout_ms\":1,\"blocks\":[],"
        "\"mac_key\":[[2,48,32]],\"answer_key\":[[2,80,32]]}",
        "{\"txn_id\":\"6899051d-1655-442f-885a-778f1004bcae\",\"timeout_ms\":1,\"blocks\":[],"
        "\"mac_key\":[[2,48,31]],\"answer_key\":[[2,80,32]],\"tag\":\"00000000000000000000000000000000\"}",
        "{\"txn_id\":\"6899051d-1655-442f-885a-778f1004bcae\",\"timeout_ms\":1,\"blocks\":[],"
        "\"mac_key\":[[2,48,32]],\"tag\":\"00000000000000000000000000000000\"}",
    };
    for (size_t i = 0; i < sizeof half / sizeof half[0]; i++)
        ck_assert_msg(kme_verify_request_from_json(half[i], strlen(half[i]), &back, &p) == -1, "accepted %s", half[i]);
    const char *bad = "{\"txn_id\":\"x\",\"timeout_ms\":1,\"blocks\":[]}";
    ck_assert_int_eq(kme_verify_request_from_json(bad, strlen(bad), &back, &p), -1);
    bad = "{\"txn_id\":\"6899051d-1655-442f-885a-778f1004bcae\",\"timeout_ms\":1,\"blocks\":[{\"seq\":1,\"tag\":\"zz\"}"
          "]}";
    ck_assert_int_eq(kme_verify_request_from_json(bad, strlen(bad), &back, &p), -1);
}
END_TEST

START_TEST(reserve_round_trip_and_checks)
{
    kme_reserve_request r, back;
    etsi_problem p;
    memset(&r, 0, sizeof r);
    strcpy(r.master, "SAE_A");
    strcpy(r.slaves[0], "SAE_B");
    r.slave_count = 1;
    r.size_bits = 256;
    r.expires = 1900000000;
    kme_reserved_key keys[1] = {{"6899051d-1655-442f-885a-778f1004bcae", 0, 2}};
    kme_range ranges[2] = {{2, 48, 20}, {4, 48, 12}};
    r.keys = keys;
    r.key_count = 1;
    r.ranges = ranges;
    r.range_count = 2;
    fill_auth(&r.auth, 1);
    char *t = kme_reserve_request_to_json(&r);
    ck_assert_int_eq(kme_reserve_request_from_json(t, strlen(t), 10, &back, &p), 0);
    assert_same_auth(&back.auth, &r.auth);
    ck_assert_uint_eq(back.key_count, 1);
    ck_assert_uint_eq(back.range_count, 2);
    ck_assert_uint_eq(back.ranges[1].seq, 4);
    ck_assert_uint_eq(back.ranges[1].length, 12);
    ck_assert_str_eq(back.slaves[0], "SAE_B");
    kme_reserve_request_clear(&back);
    etsi_text_free(t);
    /* Ranges that do not add up to the size are refused. */
    ranges[1].length = 11;
    t = kme_reserve_request_to_json(&r);
    ck_assert_int_eq(kme_reserve_request_from_json(t, strlen(t), 10, &back, &p), -1);
    etsi_text_free(t);
    ranges[1].length = 12;
    t = kme_reserve_request_to_json(&r);
    ck_assert_int_eq(kme_reserve_request_from_json(t, strlen(t), 0, &back, &p), -1); /* over max keys */
    etsi_text_free(t);
    /* Without its MAC, or without the answer key, a reservation is refused. */
    r.auth.answer_count = 0;
    t = kme_reserve_request_to_json(&r);
    ck_assert_int_eq(kme_reserve_request_from_json(t, strlen(t), 10, &back, &p), -1);
    etsi_text_free(t);
    r.auth.key_count = 0;
    t = kme_reserve_request_to_json(&r);
    ck_assert_int_eq(kme_reserve_request_from_json(t, strlen(t), 10, &back, &p), -1);
    etsi_text_free(t);
}
END_TEST

START_TEST(grant_round_trip)
{
    uint64_t seqs[3] = {4, 0, 1ULL << 40};
    kme_grant g, back, acc;
    etsi_problem p;
    memset(&g, 0, sizeof g);
    g.count = 3;
    g.seqs = seqs;
    fill_auth(&g.auth, 1);
    char *t = kme_grant_request_to_json(&g);
    ck_assert_int_eq(kme_grant_request_from_json(t, strlen(t), &back, &p), 0);
    ck_assert_uint_eq(back.count, 3);
    ck_assert_mem_eq(back.seqs, seqs, sizeof seqs);
    assert_same_auth(&back.auth, &g.auth);
    kme_grant_clear(&back);
    etsi_text_free(t);
    /* The answer: any subset, the empty one too; its tag when there is one. */
    uint64_t some[2] = {1ULL << 40, 4};
    kme_grant sub, none;
    memset(&sub, 0, sizeof sub);
    memset(&none, 0, sizeof none);
    sub.count = 2;
    sub.seqs = some;
    t = kme_grant_response_to_json(&sub);
    ck_assert_int_eq(kme_grant_response_from_json(t, strlen(t), &g, &acc, &p), 0);
    ck_assert_uint_eq(acc.count, 2);
    ck_assert_uint_eq(acc.seqs[0], 1ULL << 40);
    ck_assert_uint_eq(acc.seqs[1], 4);
    kme_grant_clear(&acc);
    etsi_text_free(t);
    t = kme_grant_response_to_json(&none);
    ck_assert_str_eq(t, "{\"accepted\":[]}");
    ck_assert_int_eq(kme_grant_response_from_json(t, strlen(t), &g, &acc, &p), 0);
    ck_assert_uint_eq(acc.count, 0);
    ck_assert_int_eq(acc.has_tag, 0);
    kme_grant_clear(&acc);
    etsi_text_free(t);
    none.has_tag = 1;
    memset(none.tag, 0xa1, KME_TAG_BYTES);
    t = kme_grant_response_to_json(&none);
    ck_assert_int_eq(kme_grant_response_from_json(t, strlen(t), &g, &acc, &p), 0);
    ck_assert_int_eq(acc.has_tag, 1);
    ck_assert_mem_eq(acc.tag, none.tag, KME_TAG_BYTES);
    kme_grant_clear(&acc);
    etsi_text_free(t);
    /* A request without its MAC is refused. */
    const char *bare = "{\"seqs\":[1]}";
    ck_assert_int_eq(kme_grant_request_from_json(bare, strlen(bare), &back, &p), -1);
    ck_assert_ptr_null(back.seqs);
}
END_TEST

START_TEST(acks_and_claims)
{
    /* An ack or refusal body with a tag added, read back. */
    uint8_t tag[KME_TAG_BYTES];
    memset(tag, 0x77, sizeof tag);
    char *body = etsi_error_to_json("unknown slave SAE", "SAE X is not hosted here");
    char *tagged = kme_ack_with_tag(body, tag);
    kme_ack ack;
    ck_assert_int_eq(kme_ack_from_json(body, strlen(body), &ack), 0);
    ck_assert_str_eq(ack.message, "unknown slave SAE");
    ck_assert_int_eq(ack.has_tag, 0);
    ck_assert_int_eq(kme_ack_from_json(tagged, strlen(tagged), &ack), 0);
    ck_assert_int_eq(ack.has_tag, 1);
    ck_assert_mem_eq(ack.tag, tag, KME_TAG_BYTES);
    ck_assert_ptr_nonnull(strstr(tagged, "\"details\""));
    ck_assert_ptr_null(kme_ack_with_tag("[1]", tag));
    ck_assert_int_eq(kme_ack_from_json("{\"details\":[]}", 14, &ack), -1);
    etsi_text_free(body);
    etsi_text_free(tagged);
    /* Claims: the MAC is required, without an answer key. */
    char ids[1][UUID_STR_LEN + 1] = {"6899051d-1655-442f-885a-778f1004bcae"};
    int64_t at[1] = {1700000000};
    kme_claimed c, back;
    etsi_problem p;
    memset(&c, 0, sizeof c);
    c.count = 1;
    c.key_ids = ids;
    c.at = at;
    strcpy(c.dest, "KME_C");
    fill_auth(&c.auth, 0);
    char *t = kme_claimed_to_json(&c);
    ck_assert_int_eq(kme_claimed_from_json(t, strlen(t), &back, &p), 0);
    ck_assert_str_eq(back.dest, "KME_C");
    ck_assert_int_eq(back.at[0], 1700000000);
    assert_same_auth(&back.auth, &c.auth);
    kme_claimed_clear(&back);
    etsi_text_free(t);
    fill_auth(&c.auth, 1);
    t = kme_claimed_to_json(&c);
    ck_assert_int_eq(kme_claimed_from_json(t, strlen(t), &back, &p), -1);
    etsi_text_free(t);
    c.auth.key_count = 0;
    t = kme_claimed_to_json(&c);
    ck_assert_int_eq(kme_claimed_from_json(t, strlen(t), &back, &p), -1);
    etsi_text_free(t);
}
END_TEST

START_TEST(grant_rejections)
{
    etsi_problem p;
    kme_grant out;
    const char *bad[] = {
        "{\"seqs\":[]}",      /* none */
        "{\"seqs\":[1,2,1]}", /* twice */
        "{\"seqs\":[-1]}",    /* negative */
        "{\"seqs\":[1.5]}",   /* not an integer */
        "{\"seqs\":[\"3\"]}", /* a string */
        "{\"seqs\":3}",       /* not an array */
        "{\"accepted\":[1]}", /* no seqs */
        "[1,2]",              /* not an object */
        "{\"seqs\":[1]",      /* not JSON */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(kme_grant_request_from_json(bad[i], strlen(bad[i]), &out, &p) == -1, "accepted %s", bad[i]);
        ck_assert_ptr_null(out.seqs);
        ck_assert(p.message[0]);
    }
    /* More than KME_MAX_RANGES seqs. */
    size_t n = KME_MAX_RANGES + 1;
    char *big = malloc(n * 8 + 16), *q = big;
    q += sprintf(q, "{\"seqs\":[");
    for (size_t i = 0; i < n; i++)
        q += sprintf(q, "%s%zu", i ? "," : "", i);
    strcpy(q, "]}");
    ck_assert_int_eq(kme_grant_request_from_json(big, strlen(big), &out, &p), -1);
    free(big);
    /* Answers naming a seq not granted, twice, or more than granted. */
    uint64_t seqs[2] = {2, 4};
    kme_grant g;
    memset(&g, 0, sizeof g);
    g.count = 2;
    g.seqs = seqs;
    const char *bad_answers[] = {
        "{\"accepted\":[6]}",   "{\"accepted\":[2,2]}", "{\"accepted\":[2,4,6]}",
        "{\"accepted\":\"2\"}", "{\"seqs\":[2]}",
    };
    for (size_t i = 0; i < sizeof bad_answers / sizeof bad_answers[0]; i++) {
        const char *b = bad_answers[i];
        ck_assert_msg(kme_grant_response_from_json(b, strlen(b), &g, &out, &p) == -1, "accepted %s", b);
        ck_assert_ptr_null(out.seqs);
    }
}
END_TEST

#define BASE CONFIG_BASE

START_TEST(resolve_round_trip_and_checks)
{
    etsi_problem p;
    kme_range ranges[3] = {{2, 48, 32}, {2, 80, 32}, {4, 48, 16}};
    kme_resolve_reservation res[2] = {{"6899051d-1655-442f-885a-778f1004bcae", 1900000000, 0, 2, 0},
                                      {"0f0c2ae6-3a31-4f43-9e4f-3c1bd2c1a0d2", 1900000001, 2, 1, 0}};
    kme_resolve q;
    memset(&q, 0, sizeof q);
    q.count = 3;
    q.ranges = ranges;
    q.reservation_count = 2;
    q.reservations = res;
    fill_auth(&q.auth, 1);
    char *text = kme_resolve_request_to_json(&q);
    ck_assert_ptr_nonnull(text);
    kme_resolve in;
    ck_assert_int_eq(kme_resolve_request_from_json(text, strlen(text), &in, &p), 0);
    etsi_text_free(text);
    ck_assert_uint_eq(in.count, 3);
    ck_assert_uint_eq(in.reservation_count, 2);
    ck_assert_str_eq(in.reservations[1].key_id, res[1].key_id);
    ck_assert_int_eq(in.reservations[1].expires, 1900000001);
    ck_assert_uint_eq(in.reservations[1].first, 2);
    ck_assert_uint_eq(in.reservations[1].count, 1);
    ck_assert_uint_eq(in.ranges[2].seq, 4);
    /* The callee: the first recorded, the second withdrawn. */
    in.used[0] = in.used[1] = 1;
    in.reservations[1].withdrawn = 1;
    text = kme_resolve_response_to_json(&in);
    ck_assert_ptr_nonnull(text);
    ck_assert_str_eq(text, "{\"used\":[true,true,false],\"withdrawn\":[\"0f0c2ae6-3a31-4f43-9e4f-3c1bd2c1a0d2\"]}");
    uint8_t used[3];
    q.used = used;
    ck_assert_int_eq(kme_resolve_response_from_json(text, strlen(text), &q, &p), 0);
    etsi_text_free(text);
    ck_assert(q.final);
    ck_assert(!res[0].withdrawn && res[1].withdrawn);
    ck_assert(used[0] && used[1] && !used[2]);
    kme_resolve_clear(&in);

    /* An older callee names nothing withdrawn: the answer is not final. */
    const char *old = "{\"used\":[false,false,false]}";
    ck_assert_int_eq(kme_resolve_response_from_json(old, strlen(old), &q, &p), 0);
    ck_assert(!q.final && !res[0].withdrawn && !res[1].withdrawn);
    /* A withdrawal of a reservation not asked about is malformed. */
    const char *stray = "{\"used\":[false,false,false],\"withdrawn\":[\"7e1d1f3e-8f77-4a55-a7a4-bb0b7c6b8a11\"]}";
    ck_assert_int_eq(kme_resolve_response_from_json(stray, strlen(stray), &q, &p), -1);
    ck_assert(!res[0].withdrawn && !res[1].withdrawn);

    /* An older caller names no reservations (or an empty list). */
    const char *plain[] = {"{\"ranges\":[[2,48,32]]}", "{\"ranges\":[[2,48,32]],\"reservations\":[]}"};
    for (size_t i = 0; i < 2; i++) {
        char *authed = with_mac(plain[i]);
        ck_assert_int_eq(kme_resolve_request_from_json(authed, strlen(authed), &in, &p), 0);
        ck_assert_uint_eq(in.reservation_count, 0);
        kme_resolve_clear(&in);
        etsi_text_free(authed);
    }
    q.reservation_count = 0;
    text = kme_resolve_request_to_json(&q);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_null(strstr(text, "reservations"));
    etsi_text_free(text);
    const char *bad[] = {
        "{\"ranges\":[]}",
        "{\"ranges\":[[2,48,0]]}",
        /* reservations must cover every range, in order, once each */
        "{\"ranges\":[[2,48,32],[2,80,32]],\"reservations\":[{\"key_ID\":\"6899051d-1655-442f-885a-778f1004bcae\","
        "\"expires\":1,\"ranges\":1}]}",
        "{\"ranges\":[[2,48,32]],\"reservations\":[{\"key_ID\":\"6899051d-1655-442f-885a-778f1004bcae\","
        "\"expires\":1,\"ranges\":2}]}",
        "{\"ranges\":[[2,48,32],[2,80,32]],\"reservations\":[{\"key_ID\":\"6899051d-1655-442f-885a-778f1004bcae\","
        "\"expires\":1,\"ranges\":1},{\"key_ID\":\"6899051d-1655-442f-885a-778f1004bcae\",\"expires\":1,\"ranges\":1}]"
        "}",
        "{\"ranges\":[[2,48,32]],\"reservations\":[{\"key_ID\":\"not-a-uuid\",\"expires\":1,\"ranges\":1}]}",
        "{\"ranges\":[[2,48,32]],\"reservations\":[{\"key_ID\":\"6899051d-1655-442f-885a-778f1004bcae\","
        "\"ranges\":1}]}",
        "{\"ranges\":[[2,48,32]],\"reservations\":[{\"key_ID\":\"6899051d-1655-442f-885a-778f1004bcae\","
        "\"expires\":1,\"ranges\":0}]}",
        "{\"ranges\":[[2,48,32]],\"reservations\":{}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *authed = with_mac(bad[i]);
        ck_assert_msg(kme_resolve_request_from_json(authed, strlen(authed), &in, &p) == -1, "accepted: %s", authed);
        ck_assert_ptr_null(in.ranges);
        ck_assert_ptr_null(in.reservations);
        etsi_text_free(authed);
    }
    /* Without its MAC a request is refused, however well formed. */
    const char *bare = "{\"ranges\":[[2,48,32]]}";
    ck_assert_int_eq(kme_resolve_request_from_json(bare, strlen(bare), &in, &p), -1);
}
END_TEST

START_TEST(config_loader)
{
    kme_config c;
    char err[256];
    ck_assert_int_eq(config_load_text("{" BASE
                                      ",\"saes\":[\"SAE_A\"],\"links\":[{\"peer\":\"KME_B\",\"url\":\"https://h:9\","
                                      "\"key_dir\":\"/tmp/l\"}],\"limits\":{\"key_size\":128}}",
                                      &c, err, sizeof err),
                     0);
    ck_assert_int_eq(kme_config_limits(&c).key_size, 128);
    ck_assert_int_eq(kme_config_limits(&c).max_key_per_request, 1024);
    ck_assert_int_eq(c.sae_listen.port, 1);
    ck_assert(kme_config_hosts_sae(&c, "SAE_A"));
    ck_assert_int_eq(kme_config_link_index(&c, "KME_B"), 0);
    kme_config_free(&c);
    const char *bad[] = {
        "{" BASE "}",                                               /* no saes */
        "{" BASE ",\"saes\":[\"a b\"]}",                            /* bad SAE ID */
        "{" BASE ",\"saes\":[],\"limits\":{\"key_size\":12}}",      /* not a multiple of 8 */
        "{" BASE ",\"saes\":[],\"limits\":{\"min_key_size\":512}}", /* min above default */
        "{" BASE ",\"saes\":[],\"links\":[{\"peer\":\"KME_A\",\"url\":\"https://h:9\",\"key_dir\":\"/l\"}]}",
        "{" BASE ",\"saes\":[],\"links\":[{\"peer\":\"KME_B\",\"url\":\"http://h:9\",\"key_dir\":\"/l\"}]}",
        "{" BASE ",\"saes\":[],\"key_ttl_seconds\":0}",
        "{" BASE
        ",\"saes\":[],\"links\":[{\"peer\":\"KME_B\",\"url\":\"https://h:9\",\"key_dir\":\"/l\",\"peer_saes\":[]}]}",
        "[1]",
        "{\"kme_id\":\"KME_A\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        ck_assert_msg(config_load_text(bad[i], &c, err, sizeof err) == -1, "accepted %s", bad[i]);
        ck_assert(err[0]);
    }
}
END_TEST

int main(void)
{
    json_use_wiping_allocator();
    const TTest *const checks[] = {verify_round_trip,
                                   reserve_round_trip_and_checks,
                                   grant_round_trip,
                                   grant_rejections,
                                   resolve_round_trip_and_checks,
                                   acks_and_claims,
                                   config_loader,
                                   NULL};
    return run_checks("kme_msgs_config", checks, 0, NULL, NULL);
}
