/* Unit tests of the SAE client's pure parts: command-line parsing, output
 * formats, the cleansing buffer, and the library's argument checks (which
 * refuse before anything is sent). */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api/etsi014.h"
#include "sae-client/cli_args.h"
#include "sae-client/cli_output.h"
#include "sae-client/sae_client.h"
#include "runtime/wipe_buf.h"
#include "runtime/json_wipe.h"

#define ID1 "3fa85f64-5717-4562-b3fc-2c963f66afa6"
#define ID2 "6ba7b810-9dad-41d1-80b4-00c04fd430c8"

static const sae_cli_env test_env = {"https://127.0.0.1:8441", NULL, NULL, NULL, NULL};

/* Parses a NULL-terminated argument list (argv[0] is added). */
static sae_cli_action parse(sae_cli_opts *o, char *err, const char *first, ...)
{
    char *argv[32] = {"sae-client"};
    int argc = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    return sae_cli_parse(argc, argv, &test_env, o, err, 256);
}

START_TEST(parse_status)
{
    sae_cli_opts o;
    char err[256];
    ck_assert_int_eq(parse(&o, err, "status", "SAE_B", NULL), SAE_CLI_RUN);
    ck_assert_int_eq(o.command, SAE_CMD_STATUS);
    ck_assert_str_eq(o.sae_id, "SAE_B");
    ck_assert_str_eq(o.kme_url, "https://127.0.0.1:8441");
    ck_assert_int_eq(o.use_post, 0);
    ck_assert_int_eq(o.output, SAE_OUT_JSON);
    ck_assert_int_eq(o.repeat, 1);
    sae_cli_opts_free(&o);
}
END_TEST

START_TEST(parse_options_anywhere)
{
    sae_cli_opts o;
    char err[256];
    ck_assert_int_eq(parse(&o, err, "get-key", "--number=4", "SAE_B", "--size", "512", "--kme", "https://kme:1/",
                           "--output", "hex", "--timeout", "250", NULL),
                     SAE_CLI_RUN);
    ck_assert_int_eq(o.command, SAE_CMD_GET_KEY);
    ck_assert_str_eq(o.sae_id, "SAE_B");
    ck_assert_int_eq(o.number, 4);
    ck_assert_int_eq(o.size, 512);
    ck_assert_int_eq(o.timeout_ms, 250);
    ck_assert_str_eq(o.kme_url, "https://kme:1/");
    ck_assert_int_eq(o.output, SAE_OUT_HEX);
    ck_assert_int_eq(o.use_post, 0);
    sae_cli_opts_free(&o);
}
END_TEST

START_TEST(parse_form)
{
    sae_cli_opts o;
    char err[256];
    ck_assert_int_eq(parse(&o, err, "get-key", "SAE_B", "--slave", "SAE_C", "--slave", "SAE_D", NULL), SAE_CLI_RUN);
    ck_assert_int_eq(o.use_post, 1);
    ck_assert_uint_eq(o.slave_count, 2);
    ck_assert_str_eq(o.slaves[1], "SAE_D");
    sae_cli_opts_free(&o);

    ck_assert_int_eq(parse(&o, err, "get-key-with-ids", "SAE_A", ID1, NULL), SAE_CLI_RUN);
    ck_assert_int_eq(o.use_post, 0);
    sae_cli_opts_free(&o);
    ck_assert_int_eq(parse(&o, err, "--post", "get-key-with-ids", "SAE_A", ID1, NULL), SAE_CLI_RUN);
    ck_assert_int_eq(o.use_post, 1);
    sae_cli_opts_free(&o);
    ck_assert_int_eq(parse(&o, err, "get-key-with-ids", "SAE_A", ID1, ID2, NULL), SAE_CLI_RUN);
    ck_assert_int_eq(o.use_post, 1);
    ck_assert_uint_eq(o.key_id_count, 2);
    sae_cli_opts_free(&o);

    ck_assert_int_eq(parse(&o, err, "--get", "get-key-with-ids", "SAE_A", ID1, ID2, NULL), SAE_CLI_USAGE_ERROR);
    ck_assert_ptr_nonnull(strstr(err, "--post"));
    sae_cli_opts_free(&o);
    ck_assert_int_eq(parse(&o, err, "--get", "get-key", "SAE_B", "--slave", "SAE_C", NULL), SAE_CLI_USAGE_ERROR);
    sae_cli_opts_free(&o);
}
END_TEST

START_TEST(parse_environment)
{
    sae_cli_env env = {"https://env:1", "env.pem", "env.key", "env-ca.pem", "KME_ENV"};
    char *argv[] = {"sae-client", "--cert", "cli.pem", "status", "SAE_B"};
    sae_cli_opts o;
    char err[256];
    ck_assert_int_eq(sae_cli_parse(5, argv, &env, &o, err, sizeof err), SAE_CLI_RUN);
    ck_assert_str_eq(o.kme_url, "https://env:1");
    ck_assert_str_eq(o.cert, "cli.pem");
    ck_assert_str_eq(o.key, "env.key");
    ck_assert_str_eq(o.ca, "env-ca.pem");
    ck_assert_str_eq(o.kme_id, "KME_ENV");
    sae_cli_opts_free(&o);

    sae_cli_env none = {NULL, NULL, NULL, NULL, NULL};
    ck_assert_int_eq(sae_cli_parse(5, argv, &none, &o, err, sizeof err), SAE_CLI_USAGE_ERROR);
    ck_assert_ptr_nonnull(strstr(err, "SAE_KME_URL"));
    sae_cli_opts_free(&o);
}
END_TEST

START_TEST(parse_kme_id)
{
    sae_cli_opts o;
    char err[256];
    ck_assert_int_eq(parse(&o, err, "status", "SAE_B", NULL), SAE_CLI_RUN);
    ck_assert_ptr_null(o.kme_id);
    sae_cli_opts_free(&o);
    ck_assert_int_eq(parse(&o, err, "--kme-id", "KME_A", "status", "SAE_B", NULL), SAE_CLI_RUN);
    ck_assert_str_eq(o.kme_id, "KME_A");
    sae_cli_opts_free(&o);
    ck_assert_int_eq(parse(&o, err, "status", "SAE_B", "--kme-id=KME_B", NULL), SAE_CLI_RUN);
    ck_assert_str_eq(o.kme_id, "KME_B");
    sae_cli_opts_free(&o);
    ck_assert_int_eq(parse(&o, err, "--kme-id", "KME/A", "status", "SAE_B", NULL), SAE_CLI_USAGE_ERROR);
    ck_assert_ptr_nonnull(strstr(err, "--kme-id 'KME/A'"));
    sae_cli_opts_free(&o);
    ck_assert_int_eq(parse(&o, err, "status", "SAE_B", "--kme-id", NULL), SAE_CLI_USAGE_ERROR);
    sae_cli_opts_free(&o);
}
END_TEST

START_TEST(parse_help_version_terminator)
{
    sae_cli_opts o;
    char err[256];
    ck_assert_int_eq(parse(&o, err, "get-key", "--bogus", NULL), SAE_CLI_USAGE_ERROR);
    sae_cli_opts_free(&o);
    ck_assert_int_eq(parse(&o, err, "status", "--help", NULL), SAE_CLI_HELP);
    sae_cli_opts_free(&o);
    ck_assert_int_eq(parse(&o, err, "--version", NULL), SAE_CLI_VERSION);
    sae_cli_opts_free(&o);
    ck_assert_int_eq(parse(&o, err, "status", "--", "-SAE", NULL), SAE_CLI_RUN);
    ck_assert_str_eq(o.sae_id, "-SAE");
    sae_cli_opts_free(&o);
}
END_TEST

/* Each bad command line is refused with a message. */
START_TEST(parse_usage_errors)
{
    static const char *const cases[][6] = {
        {NULL},
        {"fetch", "SAE_B", NULL},
        {"status", "SAE_B", "--timeout", NULL},
        {"get-key", "SAE_B", "--number", "abc", NULL},
        {"get-key", "SAE_B", "--number", "0", NULL},
        {"get-key", "SAE_B", "--size", "99999999999", NULL},
        {"get-key-with-ids", "SAE_A", "not-a-uuid", NULL},
        {"get-key-with-ids", "SAE_A", ID1, "3FA85F64-5717-4562-B3FC-2C963F66AFA6", NULL},
        {"get-key-with-ids", "SAE_A", NULL},
        {"status", NULL},
        {"status", "SAE_B", "SAE_C", NULL},
        {"status", "SAE/B", NULL},
        {"status", "SAE_B", "--number", "2", NULL},
        {"status", "SAE_B", "--output", "ids", NULL},
        {"status", "SAE_B", "--post", NULL},
        {"get-key", "SAE_B", "--output", "xml", NULL},
        {"--get", "--post", "get-key", "SAE_B", NULL},
        {"--kme", "http://kme:1", "status", "SAE_B", NULL},
        {"--key", "k.pem", "status", "SAE_B", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[8] = {"sae-client"};
        int argc = 1;
        for (int j = 0; cases[i][j]; j++)
            argv[argc++] = (char *)cases[i][j];
        sae_cli_opts o;
        char err[256];
        ck_assert_msg(sae_cli_parse(argc, argv, &test_env, &o, err, sizeof err) == SAE_CLI_USAGE_ERROR,
                      "case %zu accepted", i);
        ck_assert_msg(err[0] != '\0', "case %zu has no message", i);
        sae_cli_opts_free(&o);
    }
}
END_TEST

START_TEST(parse_count)
{
    long v = 0;
    ck_assert_int_eq(sae_cli_parse_count("1", 10, &v), 0);
    ck_assert_int_eq(v, 1);
    ck_assert_int_eq(sae_cli_parse_count("10", 10, &v), 0);
    ck_assert_int_eq(sae_cli_parse_count("11", 10, &v), -1);
    ck_assert_int_eq(sae_cli_parse_count("0", 10, &v), -1);
    ck_assert_int_eq(sae_cli_parse_count("", 10, &v), -1);
    ck_assert_int_eq(sae_cli_parse_count("-1", 10, &v), -1);
    ck_assert_int_eq(sae_cli_parse_count("2x", 10, &v), -1);
    ck_assert_int_eq(sae_cli_parse_count(" 2", 10, &v), -1);
    ck_assert_int_eq(sae_cli_parse_count("9999999999999999999999", 10, &v), -1);
}
END_TEST

/* ---- output ------------------------------------------------------------------ */

static char *print_to_string(const etsi_key_container *c, sae_cli_output format)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(sae_cli_print_keys(f, c, format), 0);
    fclose(f);
    return text;
}

START_TEST(output_keys)
{
    unsigned char k1[4] = {0x00, 0x01, 0xfe, 0xff}, k2[3] = {'a', 'b', 'c'};
    etsi_key keys[2] = {{ID1, k1, sizeof k1}, {ID2, k2, sizeof k2}};
    etsi_key_container c = {keys, 2};
    char *hex = print_to_string(&c, SAE_OUT_HEX);
    ck_assert_str_eq(hex, ID1 " 0001feff\n" ID2 " 616263\n");
    free(hex);
    char *b64 = print_to_string(&c, SAE_OUT_BASE64);
    ck_assert_str_eq(b64, ID1 " AAH+/w==\n" ID2 " YWJj\n");
    free(b64);
    char *ids = print_to_string(&c, SAE_OUT_IDS);
    ck_assert_str_eq(ids, ID1 "\n" ID2 "\n");
    free(ids);
}
END_TEST

START_TEST(output_json)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    const char body[] = "{\"keys\":[{\"key_ID\":\"" ID1 "\",\"key\":\"YWJj\"}]}";
    ck_assert_int_eq(sae_cli_print_json(f, body, strlen(body)), 0);
    ck_assert_int_eq(sae_cli_print_json(f, "nope", 4), -1);
    fclose(f);
    ck_assert_str_eq(text, "{\n  \"keys\": [\n    {\n      \"key_ID\": \"" ID1
                           "\",\n      \"key\": \"YWJj\"\n    }\n  ]\n}\n");
    free(text);
}
END_TEST

/* ---- cleansing buffer -------------------------------------------------------- */

START_TEST(wipe_buffer)
{
    wipe_buf b = {.max = 10000};
    char chunk[3000];
    memset(chunk, 'k', sizeof chunk);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(wipe_buf_append(&b, chunk, sizeof chunk), 0);
    ck_assert_uint_eq(b.len, 9000);
    ck_assert_uint_eq(strlen(b.data), 9000);
    ck_assert_int_eq(wipe_buf_append(&b, chunk, sizeof chunk), -1);
    ck_assert_uint_eq(b.len, 9000);
    char *data = b.data;
    wipe_buf_reset(&b);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_ptr_eq(b.data, data);
    for (size_t i = 0; i < 9000; i++)
        ck_assert_int_eq(data[i], 0);
    ck_assert_int_eq(wipe_buf_append(&b, "ab", 2), 0);
    ck_assert_str_eq(b.data, "ab");
    wipe_buf_free(&b);
    ck_assert_ptr_null(b.data);
}
END_TEST

/* ---- library argument checks --------------------------------------------------- */

/* A handle whose KME cannot be reached: a refusal must come before any send. */
static sae_client *unreachable_client(void)
{
    sae_client_config cfg = {.kme_url = "https://127.0.0.1:1/", .timeout_ms = 2000};
    char err[256];
    sae_client *c = sae_client_new(&cfg, err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    return c;
}

START_TEST(library_new_refuses)
{
    char err[256];
    sae_client_config plain = {.kme_url = "http://127.0.0.1:1"};
    ck_assert_ptr_null(sae_client_new(&plain, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "https://"));
    sae_client_config missing = {.kme_url = "https://127.0.0.1:1", .cert = "/nonexistent/cert.pem"};
    ck_assert_ptr_null(sae_client_new(&missing, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "certificate"));
    sae_client_config bad_pin = {.kme_url = "https://127.0.0.1:1", .kme_id = "KME A"};
    ck_assert_ptr_null(sae_client_new(&bad_pin, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "invalid KME ID"));
    sae_client_config pin = {.kme_url = "https://127.0.0.1:1", .kme_id = "KME_A"};
    sae_client *c = sae_client_new(&pin, err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    sae_client_free(c);
}
END_TEST

START_TEST(library_argument_checks)
{
    sae_client *c = unreachable_client();
    sae_result res;
    etsi_key_container keys;
    etsi_status st;

    ck_assert_int_eq(sae_client_get_status(c, "SAE/B", &st, &res), -1);
    ck_assert_int_eq(res.error, SAE_ERR_ARGUMENT);

    char *slaves[] = {"SAE_C"};
    etsi_key_request req = {.number = 2, .additional_slaves = slaves, .additional_count = 1};
    ck_assert_int_eq(sae_client_get_key(c, "SAE_B", &req, 0, &keys, &res), -1);
    ck_assert_int_eq(res.error, SAE_ERR_ARGUMENT);
    ck_assert_uint_eq(keys.count, 0);

    char ids_buf[2][UUID_STR_LEN + 1] = {ID1, ID2};
    etsi_key_ids ids = {ids_buf, 2};
    ck_assert_int_eq(sae_client_get_key_with_ids(c, "SAE_A", &ids, 0, &keys, &res), -1);
    ck_assert_int_eq(res.error, SAE_ERR_ARGUMENT);
    etsi_key_ids none = {ids_buf, 0};
    ck_assert_int_eq(sae_client_get_key_with_ids(c, "SAE_A", &none, 1, &keys, &res), -1);
    ck_assert_int_eq(res.error, SAE_ERR_ARGUMENT);

    /* A valid request does go out, and fails in transport. */
    ck_assert_int_eq(sae_client_get_key_with_ids(c, "SAE_A", &ids, 1, &keys, &res), -1);
    ck_assert_int_eq(res.error, SAE_ERR_TRANSPORT);
    ck_assert_int_eq(res.http_status, 0);
    ck_assert_str_ne(res.transport, "");
    ck_assert_ptr_null(sae_client_response(c, NULL));
    sae_client_free(c);
}
END_TEST

static Suite *sae_cli_suite(void)
{
    Suite *s = suite_create("sae_cli");
    add_check(s, parse_status, 0);
    add_check(s, parse_options_anywhere, 0);
    add_check(s, parse_form, 0);
    add_check(s, parse_environment, 0);
    add_check(s, parse_kme_id, 0);
    add_check(s, parse_help_version_terminator, 0);
    add_check(s, parse_usage_errors, 0);
    add_check(s, parse_count, 0);
    add_check(s, output_keys, 0);
    add_check(s, output_json, 0);
    add_check(s, wipe_buffer, 0);
    add_check(s, library_new_refuses, 0);
    add_check(s, library_argument_checks, 0);
    return s;
}

int main(void)
{
    json_use_wiping_allocator();
    return run_suite(sae_cli_suite());
}
