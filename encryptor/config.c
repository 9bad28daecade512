/* Loads and validates the encryptor configuration (config.h): strict JSON,
 * defaults for every optional setting, one clear message per fault. */
#include "encryptor/config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <jansson.h>
#include "encryptor/frame.h"
#include "encryptor/gcm.h"
#include "encryptor/original_dst.h"
#include "encryptor/otp.h"
#include "runtime/json_settings.h"

static int get_file(json_t *obj, const char *name, char *out, size_t outlen, int required, char *err, size_t errlen)
{
    if (json_setting_string(obj, name, out, outlen, required, err, errlen) < 0)
        return -1;
    if (out[0] && access(out, R_OK) != 0)
        return json_settings_fail(err, errlen, "setting 'kme.%s': cannot read '%s'", name, out);
    return 0;
}

/* HOST:PORT or [IPv6]:PORT; the host may be a name. */
static int get_endpoint(json_t *root, const char *name, enc_endpoint *ep, int required, char *err, size_t errlen)
{
    long port = 0;
    if (json_setting_endpoint(root, name, ep->host, sizeof ep->host, &port, required, err, errlen) < 0)
        return -1;
    if (port > 0)
        snprintf(ep->port, sizeof ep->port, "%d", (int)(port & 0xffff));
    return 0;
}

static int parse_kme(json_t *root, enc_config *c, char *err, size_t errlen)
{
    static const char *const known[] = {"url", "kme_id", "cert", "key", "ca", NULL};
    json_t *kme = json_object_get(root, "kme");
    if (!kme)
        return json_settings_fail(err, errlen, "missing setting 'kme'");
    if (!json_is_object(kme))
        return json_settings_fail(err, errlen,
                                  "setting 'kme' must be an object {\"url\", \"kme_id\", \"cert\", \"key\", \"ca\"}");
    if (json_settings_only(kme, "kme.", known, err, errlen) < 0 ||
        json_setting_string(kme, "url", c->kme_url, sizeof c->kme_url, 1, err, errlen) < 0 ||
        json_setting_string(kme, "kme_id", c->kme_id, sizeof c->kme_id, 0, err, errlen) < 0 ||
        get_file(kme, "cert", c->kme_cert, sizeof c->kme_cert, 1, err, errlen) < 0 ||
        get_file(kme, "key", c->kme_key, sizeof c->kme_key, 0, err, errlen) < 0 ||
        get_file(kme, "ca", c->kme_ca, sizeof c->kme_ca, 0, err, errlen) < 0)
        return -1;
    if (strncasecmp(c->kme_url, "https://", 8) != 0 || !c->kme_url[8])
        return json_settings_fail(err, errlen, "setting 'kme.url' must be https://HOST:PORT");
    if (c->kme_id[0] && !etsi_id_is_valid(c->kme_id))
        return json_settings_fail(err, errlen, "setting 'kme.kme_id' is not a valid KME ID");
    return 0;
}

static int parse_allowed(json_t *root, enc_config *c, char *err, size_t errlen)
{
    json_t *arr = json_object_get(root, "allowed_destinations");
    if (!arr)
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) > ENC_MAX_ALLOWED)
        return json_settings_fail(
            err, errlen, "setting 'allowed_destinations' must be an array of at most %d \"IP:PORT\"", ENC_MAX_ALLOWED);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v) || dest_parse(json_string_value(v), &c->allowed[i]) < 0)
            return json_settings_fail(
                err, errlen, "setting 'allowed_destinations': entry %zu is not a numeric IP:PORT or [IPv6]:PORT",
                i + 1);
    }
    c->allowed_count = json_array_size(arr);
    return 0;
}

/* "A.B.C.D/N" (no host bits set) or "A.B.C.D" (a /32). */
static int parse_net(const char *text, enc_net *net)
{
    char addr[INET_ADDRSTRLEN];
    const char *slash = strchr(text, '/');
    size_t len = slash ? (size_t)(slash - text) : strlen(text);
    long bits = 32;
    if (len == 0 || len >= sizeof addr)
        return -1;
    memcpy(addr, text, len);
    addr[len] = '\0';
    if (slash) {
        char *end;
        if (!isdigit((unsigned char)slash[1]))
            return -1;
        bits = strtol(slash + 1, &end, 10);
        if (*end || bits < 0 || bits > 32)
            return -1;
    }
    struct in_addr in;
    if (inet_pton(AF_INET, addr, &in) != 1)
        return -1;
    net->mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);
    net->addr = ntohl(in.s_addr);
    return (net->addr & ~net->mask) ? -1 : 0;
}

static int parse_allow(json_t *root, enc_config *c, char *err, size_t errlen)
{
    json_t *arr = json_object_get(root, "allow");
    if (!arr)
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > ENC_MAX_ALLOW_NETS)
        return json_settings_fail(
            err, errlen, "setting 'allow' must be an array of 1 to %d IPv4 networks \"A.B.C.D/N\"", ENC_MAX_ALLOW_NETS);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v) || parse_net(json_string_value(v), &c->allow[i]) < 0)
            return json_settings_fail(
                err, errlen, "setting 'allow': entry %zu is not an IPv4 network A.B.C.D/N (host bits 0)", i + 1);
    }
    c->allow_count = json_array_size(arr);
    return 0;
}

/* Who may connect to the listening port, and how often. The users side
 * faces clients: a few connections per address by default; the server side
 * faces users-side encryptors, each one address for all its connections. */
static int parse_admission(json_t *root, enc_config *c, char *err, size_t errlen)
{
    int users = c->role == ENC_ROLE_USERS;
    c->max_connections_per_source = users ? 32 : c->max_connections;
    c->new_connections_per_second = users ? 10 : 0;
    if (json_setting_long(root, "max_connections_per_source", &c->max_connections_per_source, 1, 10000, err, errlen) <
            0 ||
        json_setting_long(root, "new_connections_per_second", &c->new_connections_per_second, 0, 100000, err, errlen) <
            0)
        return -1;
    c->new_connections_burst = c->new_connections_per_second ? 2 * c->new_connections_per_second : 1;
    if (json_setting_long(root, "new_connections_burst", &c->new_connections_burst, 1, 200000, err, errlen) < 0)
        return -1;
    if (json_object_get(root, "new_connections_burst") && !c->new_connections_per_second)
        return json_settings_fail(err, errlen, "setting 'new_connections_burst' needs 'new_connections_per_second'");
    return parse_allow(root, c, err, errlen);
}

static int parse_mode(json_t *root, enc_config *c, char *err, size_t errlen)
{
    char mode[32] = "otp";
    if (json_setting_string(root, "mode", mode, sizeof mode, 0, err, errlen) < 0)
        return -1;
    if (strcmp(mode, "otp") == 0)
        c->mode = FRAME_MODE_OTP;
    else if (strcmp(mode, "aes-256-gcm") == 0)
        c->mode = FRAME_MODE_GCM;
    else
        return json_settings_fail(err, errlen, "setting 'mode' must be \"otp\" or \"aes-256-gcm\"");
    long bytes = 0, seconds = 0;
    if (json_setting_long(root, "rotate_bytes", &bytes, 4096, (long)GCM_MAX_KEY_BYTES, err, errlen) < 0 ||
        json_setting_long(root, "rotate_seconds", &seconds, 1, 86400, err, errlen) < 0)
        return -1;
    if (c->mode == FRAME_MODE_OTP && (bytes || seconds))
        return json_settings_fail(err, errlen,
                                  "settings 'rotate_bytes' and 'rotate_seconds' belong to mode \"aes-256-gcm\"");
    if (c->mode == FRAME_MODE_GCM && !bytes && !seconds)
        return json_settings_fail(err, errlen,
                                  "mode \"aes-256-gcm\" needs 'rotate_bytes' or 'rotate_seconds' (or both)");
    c->rotate_bytes = (uint64_t)bytes;
    c->rotate_seconds = seconds;
    return 0;
}

static int parse_pads(json_t *root, enc_config *c, char *err, size_t errlen)
{
    int gcm = c->mode == FRAME_MODE_GCM;
    c->pad_key_bits = gcm ? GCM_KEY_BYTES * 8 : 65536;
    if (json_setting_long(root, "pad_key_bits", &c->pad_key_bits, gcm ? GCM_KEY_BYTES * 8 : 1024,
                          gcm ? GCM_KEY_BYTES * 8 : 1L << 20, err, errlen) < 0)
        return -1;
    if (c->pad_key_bits % 8)
        return json_settings_fail(err, errlen, "setting 'pad_key_bits' must be a multiple of 8");
    long key_bytes = c->pad_key_bits / 8;
    c->pad_batch_keys = gcm ? 16 : 8;
    c->announce_keys = 4;
    if (json_setting_long(root, "pad_batch_keys", &c->pad_batch_keys, 1, 1024, err, errlen) < 0 ||
        json_setting_long(root, "announce_keys", &c->announce_keys, 1, FRAME_MAX_KEYS, err, errlen) < 0)
        return -1;
    c->low_watermark_bytes = key_bytes * (gcm ? 64 : 16);
    c->high_watermark_bytes = key_bytes * (gcm ? 256 : 64);
    if (json_setting_long(root, "low_watermark_bytes", &c->low_watermark_bytes, 1, 1L << 32, err, errlen) < 0 ||
        json_setting_long(root, "high_watermark_bytes", &c->high_watermark_bytes, 1, 1L << 32, err, errlen) < 0)
        return -1;
    if (c->low_watermark_bytes > c->high_watermark_bytes)
        return json_settings_fail(err, errlen, "need low_watermark_bytes <= high_watermark_bytes");
    if (c->high_watermark_bytes < key_bytes)
        return json_settings_fail(err, errlen, "setting 'high_watermark_bytes' must hold at least one key (%ld bytes)",
                                  key_bytes);
    c->pad_max_age_seconds = 1800;
    return json_setting_long(root, "pad_max_age_seconds", &c->pad_max_age_seconds, 10, 86400, err, errlen);
}

static int check_roles(json_t *root, enc_config *c, char *err, size_t errlen)
{
    char role[16];
    if (json_setting_string(root, "role", role, sizeof role, 1, err, errlen) < 0)
        return -1;
    if (strcmp(role, "users") == 0)
        c->role = ENC_ROLE_USERS;
    else if (strcmp(role, "server") == 0)
        c->role = ENC_ROLE_SERVER;
    else
        return json_settings_fail(err, errlen, "setting 'role' must be \"users\" or \"server\"");
    if (get_endpoint(root, "listen", &c->listen, 1, err, errlen) < 0 ||
        get_endpoint(root, "connect", &c->connect, c->role == ENC_ROLE_USERS, err, errlen) < 0 ||
        json_setting_bool(root, "transparent", &c->transparent, err, errlen) < 0 ||
        parse_allowed(root, c, err, errlen) < 0)
        return -1;
    if (c->role == ENC_ROLE_SERVER && c->transparent)
        return json_settings_fail(err, errlen, "setting 'transparent' belongs to role \"users\"");
    if (c->role == ENC_ROLE_USERS && json_object_get(root, "allowed_destinations"))
        return json_settings_fail(err, errlen, "setting 'allowed_destinations' belongs to role \"server\"");
    if (c->role == ENC_ROLE_SERVER && !c->connect.host[0] && c->allowed_count == 0)
        return json_settings_fail(err, errlen, "role \"server\" needs 'connect' or 'allowed_destinations'");
    return 0;
}

/* The admin listener: an IPv4 address or a host name (runtime/admin_http.h),
 * resolved to IPv4 when it starts; no IPv6 address. */
static int parse_admin(json_t *root, enc_config *c, char *err, size_t errlen)
{
    if (get_endpoint(root, "admin_listen", &c->admin_listen, 0, err, errlen) < 0)
        return -1;
    if (strchr(c->admin_listen.host, ':'))
        return json_settings_fail(err, errlen, "setting 'admin_listen' must be IPV4:PORT or HOST:PORT (IPv4 only)");
    return 0;
}

static int parse_root(json_t *root, enc_config *c, char *err, size_t errlen)
{
    static const char *const known[] = {"role",
                                        "listen",
                                        "connect",
                                        "peer_sae",
                                        "kme",
                                        "transparent",
                                        "allowed_destinations",
                                        "mode",
                                        "rotate_bytes",
                                        "rotate_seconds",
                                        "pad_key_bits",
                                        "pad_batch_keys",
                                        "low_watermark_bytes",
                                        "high_watermark_bytes",
                                        "pad_max_age_seconds",
                                        "announce_keys",
                                        "coalesce_ms",
                                        "max_connections",
                                        "max_connections_per_source",
                                        "new_connections_per_second",
                                        "new_connections_burst",
                                        "allow",
                                        "connect_timeout_ms",
                                        "log_level",
                                        "admin_listen",
                                        NULL};
    if (!json_is_object(root))
        return json_settings_fail(err, errlen, "the configuration must be a JSON object");
    memset(c, 0, sizeof *c);
    if (json_settings_only(root, "", known, err, errlen) < 0 || check_roles(root, c, err, errlen) < 0 ||
        json_setting_string(root, "peer_sae", c->peer_sae, sizeof c->peer_sae, 1, err, errlen) < 0)
        return -1;
    if (!etsi_id_is_valid(c->peer_sae))
        return json_settings_fail(err, errlen, "setting 'peer_sae' is not a valid SAE ID");
    if (parse_kme(root, c, err, errlen) < 0 || parse_mode(root, c, err, errlen) < 0 ||
        parse_pads(root, c, err, errlen) < 0)
        return -1;
    c->max_connections = 256;
    c->connect_timeout_ms = 5000;
    c->coalesce_ms = 1;
    snprintf(c->log_level, sizeof c->log_level, "info");
    if (json_setting_long(root, "max_connections", &c->max_connections, 1, 10000, err, errlen) < 0 ||
        parse_admission(root, c, err, errlen) < 0 ||
        json_setting_long(root, "coalesce_ms", &c->coalesce_ms, 0, 100, err, errlen) < 0 ||
        json_setting_long(root, "connect_timeout_ms", &c->connect_timeout_ms, 100, 120000, err, errlen) < 0 ||
        json_setting_string(root, "log_level", c->log_level, sizeof c->log_level, 0, err, errlen) < 0 ||
        parse_admin(root, c, err, errlen) < 0)
        return -1;
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    for (size_t i = 0; i < 4; i++)
        if (strcmp(c->log_level, levels[i]) == 0)
            return 0;
    return json_settings_fail(err, errlen, "setting 'log_level' must be error, warn, info or debug");
}

int enc_config_parse(const char *text, enc_config *c, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return json_settings_fail(err, errlen, "invalid JSON at line %d: %s", je.line, je.text);
    int rc = parse_root(root, c, err, errlen);
    json_decref(root);
    return rc;
}

int enc_config_load(const char *path, enc_config *c, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return json_settings_fail(err, errlen, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
    int rc = parse_root(root, c, err, errlen);
    json_decref(root);
    return rc;
}
