/* Unit tests of the configuration reload (kme/config.h: what may change
 * live, publishing) and of the audit log's lines (kme/audit.h). */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kme/audit.h"
#include "kme/config.h"
#include "tests/unit/config_file.h"

#define BASE CONFIG_BASE ",\"links\":[{\"peer\":\"KME_B\",\"url\":\"https://h:9\",\"key_dir\":\"/tmp/l\"}]"

START_TEST(reload_applies_live_settings)
{
    static kme_config cur, next;
    char err[256];
    ck_assert_int_eq(config_load_text("{" BASE ",\"saes\":[\"SAE_A\"]}", &cur, err, sizeof err), 0);
    ck_assert_str_eq(cur.audit_log, "");
    const kme_live_config *before = kme_config_live(&cur);
    ck_assert_int_eq(config_load_text("{" BASE
                                      ",\"saes\":[\"SAE_A\",\"SAE_A2\"],\"limits\":{\"max_key_per_request\":4},"
                                      "\"log_level\":\"debug\",\"audit_log\":\"/var/log/kme-audit.log\"}",
                                      &next, err, sizeof err),
                     0);
    ck_assert_ptr_null(kme_config_fixed_change(&cur, &next));
    ck_assert(!kme_config_hosts_sae(&cur, "SAE_A2"));
    kme_config_publish_live(&cur, &next);
    ck_assert(kme_config_hosts_sae(&cur, "SAE_A2"));
    ck_assert_int_eq(kme_config_limits(&cur).max_key_per_request, 4);
    ck_assert_str_eq(next.audit_log, "/var/log/kme-audit.log");
    /* What a reader took before stays whole until the configuration is freed. */
    ck_assert_uint_eq(before->sae_count, 1);
    ck_assert_str_eq(before->saes[0], "SAE_A");
    ck_assert_int_eq(before->limits.max_key_per_request, 1024);
    kme_config_free(&next);
    kme_config_free(&cur);
}
END_TEST

START_TEST(reload_refuses_fixed_settings)
{
    static kme_config cur, next;
    char err[256];
    ck_assert_int_eq(config_load_text("{" BASE ",\"saes\":[\"SAE_A\"]}", &cur, err, sizeof err), 0);
    static const struct {
        const char *json, *setting;
    } changes[] = {
        {"{" BASE ",\"saes\":[],\"key_ttl_seconds\":60}", "key_ttl_seconds"},
        {"{" BASE ",\"saes\":[],\"stock_max_keys\":0}", "stock_max_keys"},
        {"{\"kme_id\":\"KME_A\",\"data_dir\":\"/tmp/"
         "x\",\"store_key\":\"none-insecure\",\"sae_listen\":\"127.0.0.1:1\",\"kme_listen\":\"127.0.0.1:3\","
         "\"sae_tls\":{\"cert\":\"c\",\"key\":\"k\",\"client_ca\":\"a\"},\"kme_tls\":{\"cert\":\"c\",\"key\":\"k\","
         "\"ca\":\"a\"},\"saes\":[]}",
         "kme_listen"},
        {"{\"kme_id\":\"KME_A\",\"data_dir\":\"/tmp/"
         "y\",\"store_key\":\"none-insecure\",\"sae_listen\":\"127.0.0.1:1\",\"kme_listen\":\"127.0.0.1:2\","
         "\"sae_tls\":{\"cert\":\"c\",\"key\":\"k\",\"client_ca\":\"a\"},\"kme_tls\":{\"cert\":\"c\",\"key\":\"k\","
         "\"ca\":\"a\"},\"saes\":[]}",
         "data_dir"},
        {"{\"kme_id\":\"KME_A\",\"data_dir\":\"/tmp/"
         "x\",\"store_key\":\"none-insecure\",\"sae_listen\":\"127.0.0.1:1\",\"kme_listen\":\"127.0.0.1:2\","
         "\"sae_tls\":{\"cert\":\"c2\",\"key\":\"k\",\"client_ca\":\"a\"},\"kme_tls\":{\"cert\":\"c\",\"key\":\"k\","
         "\"ca\":\"a\"},\"saes\":[]}",
         "sae_tls"},
        {"{\"kme_id\":\"KME_A\",\"data_dir\":\"/tmp/"
         "x\",\"store_key\":\"none-insecure\",\"sae_listen\":\"127.0.0.1:1\",\"kme_listen\":\"127.0.0.1:2\","
         "\"sae_tls\":{\"cert\":\"c\",\"key\":\"k\",\"client_ca\":\"a\"},\"kme_tls\":{\"cert\":\"c\",\"key\":\"k\","
         "\"ca\":\"a\"},\"saes\":[]}",
         "links"},
    };
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        ck_assert_int_eq(config_load_text(changes[i].json, &next, err, sizeof err), 0);
        const char *what = kme_config_fixed_change(&cur, &next);
        ck_assert_ptr_nonnull(what);
        ck_assert_str_eq(what, changes[i].setting);
        kme_config_free(&next);
    }
    ck_assert_int_eq(config_load_text("{" BASE ",\"saes\":[],\"log_level\":\"loud\"}", &next, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "log_level"));
    kme_config_free(&cur);
}
END_TEST

/* ---- audit lines ------------------------------------------------------------- */

static unsigned char key_bytes[2][32];
static etsi_key keys_buf[2];
static etsi_key_container two_keys(void)
{
    for (int i = 0; i < 2; i++) {
        memset(key_bytes[i], 0xa5 + i, sizeof key_bytes[i]);
        snprintf(keys_buf[i].key_id, sizeof keys_buf[i].key_id, "0196a3c2-0000-7000-8000-00000000000%c", "01"[i]);
        keys_buf[i].key = key_bytes[i];
        keys_buf[i].key_len = sizeof key_bytes[i];
    }
    return (etsi_key_container){keys_buf, 2};
}

/* The lines of path as JSON objects; *n of them. */
static json_t *read_lines(const char *path, size_t *n)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    json_t *all = json_array();
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        ck_assert_ptr_nonnull(strchr(line, '\n'));
        ck_assert_ptr_null(strstr(line, "a5a5a5a5"));
        ck_assert_ptr_null(strstr(line, "paWlpaWl")); /* base64 of a5 a5 a5 ... */
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        ck_assert_msg(json_is_object(o), "not one JSON object: %s", line);
        json_array_append_new(all, o);
    }
    fclose(f);
    *n = json_array_size(all);
    return all;
}

static const char *str_at(json_t *lines, size_t i, const char *field)
{
    return json_string_value(json_object_get(json_array_get(lines, i), field));
}

static char *route_at(json_t *lines, size_t i)
{
    return json_dumps(json_object_get(json_array_get(lines, i), "route"), JSON_COMPACT | JSON_ENCODE_ANY);
}

static void check_route(json_t *lines, size_t i, const char *want)
{
    char *got = route_at(lines, i);
    ck_assert_str_eq(got, want);
    free(got);
}

START_TEST(audit_lines)
{
    static kme_context k;
    snprintf(k.cfg.kme_id, sizeof k.cfg.kme_id, "KME_B");
    char path[] = "/tmp/kmeaudit.XXXXXX", err[256];
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(audit_open(path, err, sizeof err), 0);
    etsi_key_container keys = two_keys();
    etsi_key_request req;
    memset(&req, 0, sizeof req);

    /* Slaves here. */
    static supply_trace local;
    local.local[0] = "SAE_B";
    local.nlocal = 1;
    audit_enc(&k, "SAE_B", "SAE_B", &req, &keys, &local);

    /* One from stock relayed ahead (path not recorded), one relayed now. */
    static supply_trace mixed;
    static supply_site site;
    static char site_path[3][ETSI_ID_MAX + 1];
    site.path = site_path;
    mixed.stocked = 1;
    snprintf(mixed.stock.kme, sizeof mixed.stock.kme, "KME_C");
    mixed.fresh = SUPPLY_RELAY;
    snprintf(site.kme, sizeof site.kme, "KME_C");
    snprintf(site.path[0], sizeof site.path[0], "KME_B");
    snprintf(site.path[1], sizeof site.path[1], "KME_A");
    snprintf(site.path[2], sizeof site.path[2], "KME_C");
    site.path_len = 3;
    site.slaves[0] = "SAE_C";
    site.nslaves = 1;
    mixed.sites = &site;
    mixed.nsites = 1;
    audit_enc(&k, "SAE_B", "SAE_C", &req, &keys, &mixed);

    /* Slaves here and at another site. */
    char *more[] = {"SAE_B2"};
    req.additional_slaves = more;
    req.additional_count = 1;
    static supply_trace multi;
    multi = mixed;
    multi.stocked = 0;
    multi.local[0] = "SAE_B2";
    multi.nlocal = 1;
    audit_enc(&k, "SAE_B", "SAE_C", &req, &keys, &multi);

    char *slaves[] = {"SAE_C SAE_B2", NULL};
    audit_dec(&k, "SAE_A", "SAE_B2", &keys, slaves);

    size_t n;
    json_t *lines = read_lines(path, &n);
    ck_assert_uint_eq(n, 8);
    ck_assert_str_eq(str_at(lines, 0, "event"), "enc");
    ck_assert_str_eq(str_at(lines, 0, "kme"), "KME_B");
    ck_assert_str_eq(str_at(lines, 0, "key_ID"), keys.keys[0].key_id);
    ck_assert_str_eq(str_at(lines, 0, "sae"), "SAE_B");
    ck_assert_str_eq(str_at(lines, 0, "source"), "local");
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(lines, 0), "bits")), 256);
    ck_assert_uint_eq(strlen(str_at(lines, 0, "time")), strlen("2025-05-01T10:00:00.123Z"));
    check_route(lines, 0, "\"local\"");
    ck_assert_str_eq(str_at(lines, 2, "source"), "stock");
    check_route(lines, 2, "\"KME_C\"");
    ck_assert_str_eq(str_at(lines, 3, "source"), "relay");
    check_route(lines, 3, "[\"KME_B\",\"KME_A\",\"KME_C\"]");
    check_route(lines, 4, "{\"SAE_B2\":\"local\",\"SAE_C\":[\"KME_B\",\"KME_A\",\"KME_C\"]}");
    char *slaves4 = json_dumps(json_object_get(json_array_get(lines, 4), "slaves"), JSON_COMPACT);
    ck_assert_str_eq(slaves4, "[\"SAE_C\",\"SAE_B2\"]");
    free(slaves4);
    ck_assert_str_eq(str_at(lines, 6, "event"), "dec");
    ck_assert_str_eq(str_at(lines, 6, "master"), "SAE_A");
    ck_assert_str_eq(str_at(lines, 6, "sae"), "SAE_B2");
    ck_assert_ptr_null(json_object_get(json_array_get(lines, 6), "route"));
    char *slaves6 = json_dumps(json_object_get(json_array_get(lines, 6), "slaves"), JSON_COMPACT);
    ck_assert_str_eq(slaves6, "[\"SAE_C\",\"SAE_B2\"]");
    free(slaves6);
    char *slaves7 = json_dumps(json_object_get(json_array_get(lines, 7), "slaves"), JSON_COMPACT);
    ck_assert_str_eq(slaves7, "[\"SAE_B2\"]"); /* not known: the receiver */
    free(slaves7);
    json_decref(lines);

    /* Rotation: moved aside, reopened at the same path: a new file. */
    char moved[64];
    snprintf(moved, sizeof moved, "%s.1", path);
    ck_assert_int_eq(rename(path, moved), 0);
    ck_assert_int_eq(audit_open(path, err, sizeof err), 0);
    audit_dec(&k, "SAE_A", "SAE_B2", &keys, slaves);
    lines = read_lines(path, &n);
    ck_assert_uint_eq(n, 2);
    json_decref(lines);
    lines = read_lines(moved, &n);
    ck_assert_uint_eq(n, 8);
    json_decref(lines);

    /* A path that cannot be opened: refused, the one in use kept. */
    ck_assert_int_eq(audit_open("/nonexistent-dir/audit.log", err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent-dir/audit.log"));
    audit_dec(&k, "SAE_A", "SAE_B2", &keys, slaves);
    lines = read_lines(path, &n);
    ck_assert_uint_eq(n, 4);
    json_decref(lines);
    audit_close();
    unlink(path);
    unlink(moved);
}
END_TEST

int main(void)
{
    const TTest *const checks[] = {reload_applies_live_settings, reload_refuses_fixed_settings, audit_lines, NULL};
    return run_checks("reload_audit", checks, 0, NULL, NULL);
}
