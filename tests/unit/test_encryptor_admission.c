/* Unit tests of what the encryptor spends and whom it serves: the admission
 * of connections at its listening port (encryptor/admission: the allow
 * list, the cap per source address, the new connections per second, with
 * the clock given), the keys a direction holds announced from its recent
 * traffic (encryptor/announce_pace) and the settings that shape both
 * (encryptor/config). */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include "encryptor/admission.h"
#include "encryptor/announce_pace.h"
#include "encryptor/config.h"

/* A users-side configuration with MORE (",\"setting\": value...") added. */
static int parse_users(const char *more, enc_config *c, char *err, size_t errlen)
{
    char text[2048];
    snprintf(text, sizeof text,
             "{\"role\": \"users\", \"listen\": \"127.0.0.1:1935\", \"connect\": \"127.0.0.1:7935\", "
             "\"peer_sae\": \"SAE_C\", \"kme\": {\"url\": \"https://127.0.0.1:8443\", \"cert\": \"/dev/null\"}%s}",
             more);
    memset(c, 0, sizeof *c);
    return enc_config_parse(text, c, err, errlen);
}

static source_addr v4(const char *text)
{
    source_addr s = {.v4 = 1};
    ck_assert_int_eq(inet_pton(AF_INET, text, s.addr), 1);
    return s;
}

static enc_config cfg;
static char err[512];

START_TEST(defaults_keep_a_few_connections_per_client)
{
    ck_assert_int_eq(parse_users("", &cfg, err, sizeof err), 0);
    ck_assert_int_eq(cfg.max_connections_per_source, 32);
    ck_assert_int_eq(cfg.new_connections_per_second, 10);
    ck_assert_int_eq(cfg.new_connections_burst, 20);
    ck_assert_int_eq(cfg.coalesce_ms, 1);
    ck_assert_uint_eq(cfg.allow_count, 0);
}
END_TEST

START_TEST(settings_are_parsed_strictly)
{
    ck_assert_int_eq(parse_users(",\"allow\": [\"10.0.0.0/8\", \"192.0.2.7\"], \"max_connections_per_source\": 3, "
                                 "\"new_connections_per_second\": 5, \"new_connections_burst\": 7, \"coalesce_ms\": 0",
                                 &cfg, err, sizeof err),
                     0);
    ck_assert_uint_eq(cfg.allow_count, 2);
    ck_assert_uint_eq(cfg.allow[0].addr, 0x0a000000u);
    ck_assert_uint_eq(cfg.allow[0].mask, 0xff000000u);
    ck_assert_uint_eq(cfg.allow[1].mask, 0xffffffffu);
    ck_assert_int_eq(cfg.new_connections_burst, 7);
    ck_assert_int_eq(cfg.coalesce_ms, 0);
    const char *bad[] = {",\"allow\": []",
                         ",\"allow\": \"10.0.0.0/8\"",
                         ",\"allow\": [\"10.0.0.0/33\"]",
                         ",\"allow\": [\"10.0.0/8\"]",
                         ",\"allow\": [\"10.1.2.3/8\"]",
                         ",\"allow\": [\"10.0.0.0/\"]",
                         ",\"allow\": [\"::1/128\"]",
                         ",\"allow\": [7]",
                         ",\"max_connections_per_source\": 0",
                         ",\"new_connections_per_second\": -1",
                         ",\"new_connections_per_second\": 0, \"new_connections_burst\": 4",
                         ",\"coalesce_ms\": 101",
                         NULL};
    for (const char **b = bad; *b; b++) {
        err[0] = '\0';
        ck_assert_msg(parse_users(*b, &cfg, err, sizeof err) < 0, "accepted: %s", *b);
        ck_assert_msg(strstr(err, "allow") || strstr(err, "connections") || strstr(err, "coalesce_ms"),
                      "no setting named for %s: %s", *b, err);
    }
}
END_TEST

START_TEST(allow_list_refuses_other_networks)
{
    ck_assert_int_eq(parse_users(",\"allow\": [\"10.1.0.0/16\", \"192.0.2.7/32\"]", &cfg, err, sizeof err), 0);
    admission *a = admission_new(&cfg);
    ck_assert_ptr_nonnull(a);
    enum enc_refusal why = ENC_REFUSED_COUNT;
    source_addr in1 = v4("10.1.200.3"), in2 = v4("192.0.2.7"), out1 = v4("10.2.0.1"), out2 = v4("192.0.2.8");
    ck_assert_int_eq(admission_enter(a, &in1, 0, &why), 0);
    ck_assert_int_eq(admission_enter(a, &in2, 0, &why), 0);
    ck_assert_int_eq(admission_enter(a, &out1, 0, &why), -1);
    ck_assert_int_eq(why, ENC_REFUSED_NOT_ALLOWED);
    ck_assert_int_eq(admission_enter(a, &out2, 0, &why), -1);
    ck_assert_int_eq(why, ENC_REFUSED_NOT_ALLOWED);
    source_addr v6 = {.v4 = 0, .addr = {0x20, 0x01, 0x0d, 0xb8}};
    ck_assert_int_eq(admission_enter(a, &v6, 0, &why), -1); /* the list names IPv4 networks only */
    ck_assert_str_eq(admission_reason_name(ENC_REFUSED_NOT_ALLOWED), "not_allowed");
    admission_free(a);
}
END_TEST

START_TEST(per_source_cap_counts_open_connections)
{
    ck_assert_int_eq(
        parse_users(",\"max_connections_per_source\": 2, \"new_connections_per_second\": 0", &cfg, err, sizeof err), 0);
    admission *a = admission_new(&cfg);
    enum enc_refusal why = ENC_REFUSED_COUNT;
    source_addr x = v4("127.0.0.2"), y = v4("127.0.0.3");
    ck_assert_int_eq(admission_enter(a, &x, 0, &why), 0);
    ck_assert_int_eq(admission_enter(a, &x, 0, &why), 0);
    ck_assert_int_eq(admission_enter(a, &x, 0, &why), -1);
    ck_assert_int_eq(why, ENC_REFUSED_PER_SOURCE);
    ck_assert_int_eq(admission_enter(a, &y, 0, &why), 0); /* another address still gets through */
    admission_leave(a, &x);
    ck_assert_int_eq(admission_enter(a, &x, 0, &why), 0); /* one ended: room for one more */
    ck_assert_int_eq(admission_enter(a, &x, 0, &why), -1);
    admission_free(a);
}
END_TEST

START_TEST(new_connections_per_second_is_a_bucket_per_source)
{
    ck_assert_int_eq(
        parse_users(",\"new_connections_per_second\": 2, \"new_connections_burst\": 3", &cfg, err, sizeof err), 0);
    admission *a = admission_new(&cfg);
    enum enc_refusal why = ENC_REFUSED_COUNT;
    source_addr x = v4("127.0.0.2"), y = v4("127.0.0.3");
    int64_t t = 1000000;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(admission_enter(a, &x, t, &why), 0);
        admission_leave(a, &x);
    }
    ck_assert_int_eq(admission_enter(a, &x, t, &why), -1);
    ck_assert_int_eq(why, ENC_REFUSED_RATE);
    ck_assert_int_eq(admission_enter(a, &y, t, &why), 0); /* its own bucket */
    ck_assert_int_eq(admission_enter(a, &x, t + 499, &why), -1);
    ck_assert_int_eq(admission_enter(a, &x, t + 500, &why), 0); /* one more after half a second */
    ck_assert_int_eq(admission_enter(a, &x, t + 500, &why), -1);
    admission_leave(a, &x);
    for (int i = 0; i < 3; i++) /* a long pause refills the burst, no more */
        ck_assert_int_eq(admission_enter(a, &x, t + 60000, &why), 0);
    ck_assert_int_eq(admission_enter(a, &x, t + 60000, &why), -1);
    admission_free(a);
}
END_TEST

START_TEST(pace_follows_recent_traffic)
{
    announce_pace p;
    announce_pace_init(&p, 4);
    ck_assert_uint_eq(announce_pace_target(&p, 8000, 0), 1); /* a new direction: the key in use only */
    announce_pace_used_up(&p, 100);
    ck_assert_uint_eq(announce_pace_target(&p, 8000, 200), 2);
    announce_pace_used_up(&p, 300);
    announce_pace_used_up(&p, 400);
    announce_pace_used_up(&p, 500);
    announce_pace_used_up(&p, 600);
    ck_assert_uint_eq(announce_pace_target(&p, 8000, 700), 4); /* never beyond announce_keys */
    ck_assert_uint_eq(announce_pace_target(&p, 8000, 100 + ANNOUNCE_WINDOW_MS), 4);
    ck_assert_uint_eq(announce_pace_target(&p, 8000, 500 + ANNOUNCE_WINDOW_MS), 2);
    ck_assert_uint_eq(announce_pace_target(&p, 8000, 600 + ANNOUNCE_WINDOW_MS), 1); /* idle: back to one */

    /* Within a key: one ahead once the key in use has less room left than
     * what was carried recently. */
    announce_pace q;
    announce_pace_init(&q, 4);
    announce_pace_carried(&q, 3000, 10000);
    ck_assert_uint_eq(announce_pace_target(&q, 5000, 10100), 1);
    announce_pace_carried(&q, 3000, 10600);
    ck_assert_uint_eq(announce_pace_target(&q, 5000, 10700), 2);
    ck_assert_uint_eq(announce_pace_target(&q, 7000, 10700), 1);
    ck_assert_uint_eq(announce_pace_target(&q, 5000, 11500), 2); /* the previous window still counts */
    ck_assert_uint_eq(announce_pace_target(&q, 5000, 12500), 1); /* two windows later, no more */
    announce_pace_init(&q, 1);
    announce_pace_carried(&q, 30000, 10000);
    ck_assert_uint_eq(announce_pace_target(&q, 5000, 10100), 1); /* announce_keys 1: never ahead */
}
END_TEST

int main(void)
{
    const TTest *const checks[] = {defaults_keep_a_few_connections_per_client,
                                   settings_are_parsed_strictly,
                                   allow_list_refuses_other_networks,
                                   per_source_cap_counts_open_connections,
                                   new_connections_per_second_is_a_bucket_per_source,
                                   pace_follows_recent_traffic,
                                   NULL};
    return run_checks("encryptor_admission", checks, 30, NULL, NULL);
}
