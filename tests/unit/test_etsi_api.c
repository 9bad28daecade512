/* Unit tests of the SAE port's handler (kme/etsi_api.c) at KME_A, a daemon
 * context with a real store and its relay node wired
 * (tests/unit/kme_fixture.h), for the answers it gives without deferring:
 * unauthenticated or unregistered callers (401), unknown paths (404), wrong
 * methods (405), bad SAE IDs and bodies (400), Status for SAEs here, at a
 * neighbour and unknown, and enc_keys / dec_keys refused before any key is
 * made or taken. Every error has the ETSI body. (A request that gets keys
 * defers on a live server: key_supply's tests cover that path.) */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kme/etsi_api.h"
#include "runtime/clock.h"
#include "runtime/json_wipe.h"
#include "tests/unit/kme_fixture.h"

static kme_context *k;

/* KME_A hosting SAE_A and SAE_A2 with these limits, knowing KME_B (SAE_B,
 * SAE_B2) on its link and KME_C (SAE_C) behind it. */
static void api_ready(void)
{
    k = kme_open("[\"SAE_A\",\"SAE_A2\"]",
                 ",\"limits\":{\"key_size\":512,\"max_key_per_request\":20,\"max_key_size\":4096,"
                 "\"min_key_size\":64,\"max_SAE_ID_count\":3,\"max_key_count\":77}");
    kme_wire(k, 1);
    kme_learn_network(k);
}

/* The handler's answer to method path from caller (authenticated) with body. */
static http_response call(const char *caller, const char *method, const char *path, const char *body)
{
    http_request req = request_of(method, path, body, body ? strlen(body) : 0, body ? "application/json" : NULL);
    snprintf(req.client_cn, sizeof req.client_cn, "%s", caller);
    http_response resp = {0, NULL, 0};
    etsi_api_handle(k, &req, &resp);
    ck_assert_ptr_nonnull(resp.body);
    return resp;
}

static void expect_reason(const http_response *resp, const char *reason)
{
    char got[512];
    error_reason(resp, got, sizeof got);
    ck_assert_str_eq(got, reason);
}

START_TEST(unauthenticated_callers_get_401)
{
    api_ready();
    http_request req = request_of("GET", "/api/v1/keys/SAE_A2/status", NULL, 0, NULL);
    http_response resp = {0, NULL, 0};
    req.auth = HTTP_AUTH_NO_CERT;
    etsi_api_handle(k, &req, &resp);
    expect_reason(&resp, "a client certificate is required");
    expect_error(&resp, 401, "unauthorized");
    req.auth = HTTP_AUTH_UNTRUSTED;
    snprintf(req.client_cn, sizeof req.client_cn, "SAE_A");
    etsi_api_handle(k, &req, &resp);
    expect_reason(&resp, "the client certificate is not trusted");
    expect_error(&resp, 401, "unauthorized");
    /* A trusted certificate of an SAE another KME hosts, or of none. */
    static const char *const strangers[] = {"SAE_B", "SAE_Q"};
    for (size_t i = 0; i < 2; i++) {
        resp = call(strangers[i], "POST", "/api/v1/keys/SAE_A2/enc_keys", "{\"number\":1}");
        char want[128];
        snprintf(want, sizeof want, "SAE %s is not registered at KME_A", strangers[i]);
        expect_reason(&resp, want);
        expect_error(&resp, 401, "unauthorized");
    }
    ck_assert_int_eq(records_in(&k->store), 0);
    kme_close(k);
}
END_TEST

START_TEST(unknown_paths_get_404)
{
    api_ready();
    static const char *const paths[] = {
        "/",
        "/api/v1/keys/",
        "/api/v1/keys/SAE_A2",
        "/api/v1/keys/SAE_A2/",
        "/api/v1/keys//status",
        "/api/v1/keys/SAE_A2/keys",
        "/api/v1/keys/SAE_A2/status/more",
        "/api/v1/keys/SAE_A2/Status",
        "/api/v2/keys/SAE_A2/status",
        "/kme/v1/relay",
        /* an ID longer than any */
        "/api/v1/keys/SAE_0123456789012345678901234567890123456789012345678901234567890/status",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        http_response resp = call("SAE_A", "GET", paths[i], NULL);
        ck_assert_msg(resp.status == 404, "%s: %d", paths[i], resp.status);
        expect_error(&resp, 404, "not found");
    }
    kme_close(k);
}
END_TEST

START_TEST(wrong_methods_and_bad_requests)
{
    api_ready();
    static const struct {
        const char *method, *path, *body;
        int status;
        const char *message;
    } cases[] = {
        {"POST", "/api/v1/keys/SAE_A2/status", "{}", 405, "method not allowed"},
        {"PUT", "/api/v1/keys/SAE_A2/enc_keys", "{}", 405, "method not allowed"},
        {"DELETE", "/api/v1/keys/SAE_A2/dec_keys", NULL, 405, "method not allowed"},
        {"GET", "/api/v1/keys/SAE\"A2/status", NULL, 400, "invalid SAE ID"},
        {"GET", "/api/v1/keys/SAE A2/status", NULL, 400, "invalid SAE ID"},
        /* enc_keys bodies the codec refuses */
        {"POST", "/api/v1/keys/SAE_A2/enc_keys", "{\"number\":0}", 400, NULL},
        {"POST", "/api/v1/keys/SAE_A2/enc_keys", "{\"number\":21}", 400, NULL},
        {"POST", "/api/v1/keys/SAE_A2/enc_keys", "{\"size\":56}", 400, NULL},
        {"POST", "/api/v1/keys/SAE_A2/enc_keys", "{\"size\":8192}", 400, NULL},
        {"POST", "/api/v1/keys/SAE_A2/enc_keys", "[1]", 400, NULL},
        {"POST", "/api/v1/keys/SAE_A2/enc_keys",
         "{\"additional_slave_SAE_IDs\":[\"SAE_B\",\"SAE_B2\",\"SAE_C\",\"SAE_A\"]}", 400, NULL},
        /* dec_keys: no key_ID at all, or not a UUID */
        {"GET", "/api/v1/keys/SAE_A2/dec_keys", NULL, 400, NULL},
        {"POST", "/api/v1/keys/SAE_A2/dec_keys", "{\"key_IDs\":[{\"key_ID\":\"x\"}]}", 400, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_response resp = call("SAE_A", cases[i].method, cases[i].path, cases[i].body);
        ck_assert_msg(resp.status == cases[i].status, "case %zu: %d %s", i, resp.status, resp.body);
        expect_error(&resp, cases[i].status, cases[i].message);
    }
    /* A body the server cut at its bound. */
    http_request req = request_of("POST", "/api/v1/keys/SAE_A2/enc_keys", "{", 1, "application/json");
    snprintf(req.client_cn, sizeof req.client_cn, "SAE_A");
    req.body_too_large = 1;
    http_response resp = {0, NULL, 0};
    etsi_api_handle(k, &req, &resp);
    expect_error(&resp, 400, "request body too large");
    ck_assert_int_eq(records_in(&k->store), 0);
    kme_close(k);
}
END_TEST

/* The Status answer's members. */
static void expect_status(http_response *resp, const char *target, long stored)
{
    ck_assert_msg(resp->status == 200, "%d %s", resp->status, resp->body);
    json_error_t jerr;
    json_t *root = json_loads(resp->body, 0, &jerr);
    ck_assert(json_is_object(root));
    ck_assert_uint_eq(json_object_size(root), 11);
    ck_assert_str_eq(json_string_value(json_object_get(root, "source_KME_ID")), "KME_A");
    ck_assert_str_eq(json_string_value(json_object_get(root, "target_KME_ID")), target);
    ck_assert_str_eq(json_string_value(json_object_get(root, "master_SAE_ID")), "SAE_A");
    ck_assert_int_eq(json_integer_value(json_object_get(root, "key_size")), 512);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "stored_key_count")), stored);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "max_key_count")), 77);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "max_key_per_request")), 20);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "max_key_size")), 4096);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "min_key_size")), 64);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "max_SAE_ID_count")), 3);
    json_decref(root);
    etsi_status s;
    etsi_problem p;
    ck_assert_int_eq(etsi_status_from_json(resp->body, strlen(resp->body), &s, &p), 0);
    etsi_text_free(resp->body);
    resp->body = NULL;
}

START_TEST(status_of_hosted_and_remote_saes)
{
    api_ready();
    http_response resp = call("SAE_A", "GET", "/api/v1/keys/SAE_A2/status", NULL);
    expect_status(&resp, "KME_A", 77);
    resp = call("SAE_A", "GET", "/api/v1/keys/SAE_A/status", NULL);
    expect_status(&resp, "KME_A", 77);
    /* At B: no stock and no link key yet. */
    resp = call("SAE_A", "GET", "/api/v1/keys/SAE_B/status", NULL);
    expect_status(&resp, "KME_B", 0);
    resp = call("SAE_A", "GET", "/api/v1/keys/SAE_C/status", NULL);
    expect_status(&resp, "KME_C", 0);
    resp = call("SAE_A", "GET", "/api/v1/keys/SAE_Z/status", NULL);
    expect_reason(&resp, "SAE SAE_Z is not known to KME_A");
    expect_error(&resp, 400, "unknown slave SAE");
    kme_close(k);
}
END_TEST

START_TEST(status_counts_the_stock)
{
    k = kme_open("[\"SAE_A\",\"SAE_A2\"]",
                 ",\"limits\":{\"key_size\":512,\"max_key_per_request\":20,\"max_key_size\":4096,"
                 "\"min_key_size\":64,\"max_SAE_ID_count\":3,\"max_key_count\":77}");
    etsi_key_container keys;
    ck_assert_int_eq(kr_fill_random(&keys, 4, 512), 0);
    stock_put(&k->store, "KME_B", "SAE_A", "SAE_B", &keys, clock_wall_ms());
    etsi_key_container_clear(&keys);
    kme_wire(k, 1);
    kme_learn_network(k);
    http_response resp = call("SAE_A", "GET", "/api/v1/keys/SAE_B/status", NULL);
    expect_status(&resp, "KME_B", 4);
    kme_close(k);
}
END_TEST

START_TEST(key_requests_refused_before_any_key)
{
    api_ready();
    static const struct {
        const char *method, *path, *body;
        const char *message, *reason;
    } cases[] = {
        {"POST", "/api/v1/keys/SAE_Z/enc_keys", "{\"number\":2}", "unknown slave SAE",
         "SAE SAE_Z is not known to KME_A"},
        {"GET", "/api/v1/keys/SAE_Z/enc_keys", NULL, "unknown slave SAE", "SAE SAE_Z is not known to KME_A"},
        {"POST", "/api/v1/keys/SAE_A2/enc_keys", "{\"additional_slave_SAE_IDs\":[\"SAE_Y\"]}", "unknown slave SAE",
         "SAE SAE_Y is not known to KME_A"},
        {"POST", "/api/v1/keys/SAE_B/enc_keys", "{\"additional_slave_SAE_IDs\":[\"SAE_B\"]}", "malformed request",
         "additional slave SAE_B is already the slave"},
        {"POST", "/api/v1/keys/SAE_Z/dec_keys", "{\"key_IDs\":[{\"key_ID\":\"6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f\"}]}",
         "unknown master SAE", "SAE SAE_Z is not known to KME_A"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_response resp = call("SAE_A", cases[i].method, cases[i].path, cases[i].body);
        ck_assert_msg(resp.status == 400, "case %zu: %d %s", i, resp.status, resp.body);
        expect_reason(&resp, cases[i].reason);
        expect_error(&resp, 400, cases[i].message);
    }
    ck_assert_int_eq(records_in(&k->store), 0);
    kme_close(k);
}
END_TEST

int main(void)
{
    json_use_wiping_allocator(); /* as the daemon runs */
    const TTest *const checks[] = {unauthenticated_callers_get_401,
                                   unknown_paths_get_404,
                                   wrong_methods_and_bad_requests,
                                   status_of_hosted_and_remote_saes,
                                   status_counts_the_stock,
                                   key_requests_refused_before_any_key,
                                   NULL};
    return run_checks("etsi_api", checks, 60, NULL, NULL);
}
