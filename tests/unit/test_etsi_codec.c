/* Unit tests of the shared ETSI 014 codec and the wire encodings (api/). */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdlib.h>
#include <string.h>
#include "api/encoding.h"
#include "api/etsi014.h"
#include "runtime/json_wipe.h"

static const etsi_limits LIMITS = {256, 1024, 65536, 8, 8, 100000};

START_TEST(base64_round_trip_and_strictness)
{
    unsigned char data[5] = {0, 1, 2, 0xfe, 0xff};
    for (size_t n = 0; n <= 5; n++) {
        char *t = base64_encode(data, n);
        size_t len = 99;
        unsigned char *back = base64_decode(t, &len);
        ck_assert_ptr_nonnull(back);
        ck_assert_uint_eq(len, n);
        ck_assert_mem_eq(back, data, n);
        free(t);
        free(back);
    }
    size_t len;
    ck_assert_ptr_null(base64_decode("abc", &len));      /* not a multiple of 4 */
    ck_assert_ptr_null(base64_decode("ab$d", &len));     /* outside the alphabet */
    ck_assert_ptr_null(base64_decode("a=bc", &len));     /* padding in the middle */
    ck_assert_ptr_null(base64_decode("AAAA====", &len)); /* too much padding */
}
END_TEST

START_TEST(hex_strict)
{
    unsigned char b[2];
    ck_assert_int_eq(hex_decode("0aFF", b, 2), 0);
    ck_assert_uint_eq(b[0], 0x0a);
    ck_assert_uint_eq(b[1], 0xff);
    char back[5];
    hex_encode(b, 2, back);
    ck_assert_str_eq(back, "0aff");
    ck_assert_int_eq(hex_decode("+f00", b, 2), -1);  /* sign */
    ck_assert_int_eq(hex_decode(" f00", b, 2), -1);  /* space */
    ck_assert_int_eq(hex_decode("0aF", b, 2), -1);   /* short */
    ck_assert_int_eq(hex_decode("0aFFF", b, 2), -1); /* long */
    ck_assert_int_eq(hex_decode("0g00", b, 2), -1);
}
END_TEST

START_TEST(uuids)
{
    char a[37], b[37];
    ck_assert_int_eq(uuid_generate(a), 0);
    ck_assert_int_eq(uuid_generate(b), 0);
    ck_assert(uuid_is_valid(a));
    ck_assert_str_ne(a, b);
    ck_assert_int_eq(a[14], '7');             /* version 7 */
    ck_assert(strchr("89ab", a[19]) != NULL); /* RFC 9562 variant */
    ck_assert_int_le(strncmp(a, b, 8), 0);    /* time-ordered prefix */
    ck_assert(uuid_is_valid("6899051D-1655-442F-885A-778F1004BCAE"));
    ck_assert(!uuid_is_valid("6899051d-1655-442f-885a-778f1004bca"));
    ck_assert(!uuid_is_valid("6899051d_1655-442f-885a-778f1004bcae"));
    ck_assert(!uuid_is_valid("g899051d-1655-442f-885a-778f1004bcae"));
    uuid_normalise("6899051D-1655-442F-885A-778F1004BCAE", a);
    ck_assert_str_eq(a, "6899051d-1655-442f-885a-778f1004bcae");
}
END_TEST

START_TEST(key_request_defaults_and_bounds)
{
    etsi_key_request r;
    etsi_problem p;
    ck_assert_int_eq(etsi_key_request_from_json(NULL, 0, &LIMITS, &r, &p), 0);
    ck_assert_int_eq(r.number, 1);
    ck_assert_int_eq(r.size, 256);
    ck_assert_int_eq(etsi_key_request_from_query("3", "512", &LIMITS, &r, &p), 0);
    ck_assert_int_eq(r.number, 3);
    ck_assert_int_eq(r.size, 512);
    const char *bad_queries[][2] = {{"0", NULL},  {"1025", NULL}, {"-1", NULL},    {"abc", NULL}, {"", NULL},
                                    {NULL, "12"}, {NULL, "0"},    {NULL, "65544"}, {NULL, "1e3"}, {"1", "8x"}};
    for (size_t i = 0; i < sizeof bad_queries / sizeof bad_queries[0]; i++)
        ck_assert_int_eq(etsi_key_request_from_query(bad_queries[i][0], bad_queries[i][1], &LIMITS, &r, &p), -1);
    ck_assert_int_eq(etsi_key_request_from_query(NULL, "12", &LIMITS, &r, &p), -1);
    ck_assert_str_eq(p.message, "size shall be a multiple of 8");
}
END_TEST

START_TEST(key_request_json)
{
    etsi_key_request r;
    etsi_problem p;
    const char *ok = "{\"number\":2,\"size\":1024,\"additional_slave_SAE_IDs\":[\"S1\",\"S2\"],"
                     "\"extension_optional\":[{\"x\":1}],\"extension_mandatory\":[]}";
    ck_assert_int_eq(etsi_key_request_from_json(ok, strlen(ok), &LIMITS, &r, &p), 0);
    ck_assert_int_eq(r.number, 2);
    ck_assert_int_eq(r.size, 1024);
    ck_assert_uint_eq(r.additional_count, 2);
    ck_assert_str_eq(r.additional_slaves[1], "S2");
    etsi_key_request_clear(&r);
    const char *bad[] = {
        "{",
        "[]",
        "{\"number\":\"2\"}",
        "{\"number\":1.5}",
        "{\"size\":7}",
        "{\"number\":0}",
        "{\"nubmer\":1}",
        "{\"additional_slave_SAE_IDs\":\"S1\"}",
        "{\"additional_slave_SAE_IDs\":[1]}",
        "{\"additional_slave_SAE_IDs\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]}",
        "{\"additional_slave_SAE_IDs\":[\"a\",\"a\"]}",
        "{\"extension_mandatory\":[{\"x\":1}]}",
        "{\"extension_mandatory\":{}}",
        "{\"number\":1,\"number\":2}",
        "{\"additional_slave_SAE_IDs\":[\"a/b\"]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(etsi_key_request_from_json(bad[i], strlen(bad[i]), &LIMITS, &r, &p) == -1, "accepted %s", bad[i]);
        ck_assert(p.message[0]);
    }
    ck_assert_int_eq(etsi_key_request_from_json(bad[11], strlen(bad[11]), &LIMITS, &r, &p), -1);
    ck_assert_str_eq(p.message, "not all extension_mandatory parameters are supported");
}
END_TEST

START_TEST(key_ids)
{
    etsi_key_ids ids;
    etsi_problem p;
    const char *ok = "{\"key_IDs\":[{\"key_ID\":\"6899051D-1655-442F-885A-778F1004BCAE\",\"key_ID_extension\":{}},"
                     "{\"key_ID\":\"dfcb750c-912a-461a-8fc5-0d870b5f40e8\"}],\"key_IDs_extension\":{}}";
    ck_assert_int_eq(etsi_key_ids_from_json(ok, strlen(ok), 10, &ids, &p), 0);
    ck_assert_uint_eq(ids.count, 2);
    ck_assert_str_eq(ids.ids[0], "6899051d-1655-442f-885a-778f1004bcae");
    char *back = etsi_key_ids_to_json(&ids);
    etsi_key_ids again;
    ck_assert_int_eq(etsi_key_ids_from_json(back, strlen(back), 10, &again, &p), 0);
    ck_assert_uint_eq(again.count, 2);
    etsi_text_free(back);
    etsi_key_ids_clear(&again);
    ck_assert_int_eq(etsi_key_ids_from_json(ok, strlen(ok), 1, &again, &p), -1); /* over the bound */
    etsi_key_ids_clear(&ids);
    const char *bad[] = {"{}",
                         "{\"key_IDs\":[]}",
                         "{\"key_IDs\":[{\"key_ID\":\"nope\"}]}",
                         "{\"key_IDs\":[{\"key_ID\":\"dfcb750c-912a-461a-8fc5-0d870b5f40e8\"},"
                         "{\"key_ID\":\"DFCB750C-912A-461A-8FC5-0D870B5F40E8\"}]}",
                         "{\"key_IDs\":[\"dfcb750c-912a-461a-8fc5-0d870b5f40e8\"]}",
                         "{\"key_IDs\":{}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(etsi_key_ids_from_json(bad[i], strlen(bad[i]), 10, &ids, &p) == -1, "accepted %s", bad[i]);
    ck_assert_int_eq(etsi_key_ids_from_query(NULL, &ids, &p), -1);
    ck_assert_int_eq(etsi_key_ids_from_query("dfcb750c-912a-461a-8fc5-0d870b5f40e8", &ids, &p), 0);
    etsi_key_ids_clear(&ids);
}
END_TEST

START_TEST(container_status_error)
{
    unsigned char k1[3] = {1, 2, 3};
    etsi_key keys[1] = {{"6899051d-1655-442f-885a-778f1004bcae", k1, 3}};
    etsi_key_container c = {keys, 1}, back;
    etsi_problem p;
    char *text = etsi_key_container_to_json(&c);
    ck_assert_str_eq(text, "{\"keys\":[{\"key_ID\":\"6899051d-1655-442f-885a-778f1004bcae\",\"key\":\"AQID\"}]}");
    ck_assert_int_eq(etsi_key_container_from_json(text, strlen(text), &back, &p), 0);
    ck_assert_uint_eq(back.count, 1);
    ck_assert_mem_eq(back.keys[0].key, k1, 3);
    etsi_key_container_clear(&back);
    etsi_text_free(text);

    etsi_status st = {"KME_A", "KME_B", "SAE_A", "SAE_B", 42, LIMITS}, st2;
    text = etsi_status_to_json(&st);
    ck_assert_int_eq(etsi_status_from_json(text, strlen(text), &st2, &p), 0);
    ck_assert_int_eq(st2.stored_key_count, 42);
    ck_assert_int_eq(st2.limits.max_key_per_request, 1024);
    ck_assert_str_eq(st2.target_kme_id, "KME_B");
    etsi_text_free(text);

    text = etsi_error_to_json("bad", "because");
    ck_assert_str_eq(text, "{\"message\":\"bad\",\"details\":[{\"reason\":\"because\"}]}");
    ck_assert_int_eq(etsi_error_from_json(text, strlen(text), &p), 0);
    ck_assert_str_eq(p.message, "bad");
    ck_assert_str_eq(p.detail, "because");
    ck_assert_str_eq(p.refused_by, "");
    etsi_text_free(text);
    text = etsi_error_to_json("bad", NULL);
    ck_assert_str_eq(text, "{\"message\":\"bad\",\"details\":[]}");
    etsi_text_free(text);
    /* A relay's refusal names the KME that refused, in the one detail. */
    text = etsi_error_refused_to_json("key relay failed", "KME_C answered 503", "KME_C");
    ck_assert_str_eq(text, "{\"message\":\"key relay failed\",\"details\":[{\"reason\":\"KME_C answered 503\","
                           "\"refused_by\":\"KME_C\"}]}");
    ck_assert_int_eq(etsi_error_from_json(text, strlen(text), &p), 0);
    ck_assert_str_eq(p.detail, "KME_C answered 503");
    ck_assert_str_eq(p.refused_by, "KME_C");
    etsi_text_free(text);
    /* A name longer than any KME ID is not taken. */
    char body[200];
    snprintf(body, sizeof body, "{\"message\":\"m\",\"details\":[{\"reason\":\"r\",\"refused_by\":\"%065d\"}]}", 0);
    ck_assert_int_eq(etsi_error_from_json(body, strlen(body), &p), 0);
    ck_assert_str_eq(p.refused_by, "");
}
END_TEST

START_TEST(ids)
{
    ck_assert(etsi_id_is_valid("SAE_A"));
    ck_assert(!etsi_id_is_valid(""));
    ck_assert(!etsi_id_is_valid("a b"));
    ck_assert(!etsi_id_is_valid("a/b"));
    char long_id[70];
    memset(long_id, 'x', 65);
    long_id[65] = 0;
    ck_assert(!etsi_id_is_valid(long_id));
}
END_TEST

int main(void)
{
    json_use_wiping_allocator();
    const TTest *const checks[] = {
        base64_round_trip_and_strictness, hex_strict, uuids, key_request_defaults_and_bounds, key_request_json, key_ids,
        container_status_error,           ids,        NULL};
    return run_checks("etsi_codec", checks, 0, NULL, NULL);
}
