/* Loads and validates the KME configuration (JSON) with defaults for every
 * optional setting; publishes the settings a reload may change (config.h). */
#include "kme/config.h"
#include "kme/store_key.h"
#include "api/kme_relay.h"
#include "runtime/json_settings.h"
#include "runtime/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

/* HOST:PORT of a listener. */
static int parse_endpoint(json_t *root, const char *name, net_endpoint *ep, char *err, size_t errlen)
{
    long port = 0;
    if (json_setting_endpoint(root, name, ep->host, sizeof ep->host, &port, 1, err, errlen) < 0)
        return -1;
    ep->port = (int)port;
    return 0;
}

static int parse_id_list(json_t *arr, const char *name, char **out, size_t *count, char *err, size_t errlen)
{
    if (!json_is_array(arr) || json_array_size(arr) > KME_MAX_SAES)
        return json_settings_fail(err, errlen, "setting '%s' must be an array of SAE IDs", name);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v) || !etsi_id_is_valid(json_string_value(v)))
            return json_settings_fail(err, errlen, "setting '%s' holds an invalid SAE ID", name);
        out[(*count)++] = strdup(json_string_value(v));
    }
    return 0;
}

static int parse_tls(json_t *root, kme_config *c, char *err, size_t errlen)
{
    json_t *sae = json_object_get(root, "sae_tls");
    json_t *kme = json_object_get(root, "kme_tls");
    if (!json_is_object(sae) || !json_is_object(kme))
        return json_settings_fail(err, errlen, "missing setting '%s'", !json_is_object(sae) ? "sae_tls" : "kme_tls");
    if (json_setting_string(sae, "cert", c->sae_cert, sizeof c->sae_cert, 1, err, errlen) < 0 ||
        json_setting_string(sae, "key", c->sae_key, sizeof c->sae_key, 1, err, errlen) < 0 ||
        json_setting_string(sae, "client_ca", c->sae_client_ca, sizeof c->sae_client_ca, 1, err, errlen) < 0 ||
        json_setting_string(kme, "cert", c->kme_cert, sizeof c->kme_cert, 1, err, errlen) < 0 ||
        json_setting_string(kme, "key", c->kme_key, sizeof c->kme_key, 1, err, errlen) < 0 ||
        json_setting_string(kme, "ca", c->kme_ca, sizeof c->kme_ca, 1, err, errlen) < 0 ||
        json_setting_string(sae, "client_crl", c->sae_client_crl, sizeof c->sae_client_crl, 0, err, errlen) < 0 ||
        json_setting_string(kme, "crl", c->kme_crl, sizeof c->kme_crl, 0, err, errlen) < 0)
        return -1;
    return 0;
}

/* The "source" of a link: absent or {"type": "files"} (key_dir), or
 * {"type": "etsi014", ...} (the local QKD device's ETSI 014 API). */
static int parse_link_source(json_t *l, relay_link_config *lc, char *err, size_t errlen)
{
    json_t *src = json_object_get(l, "source");
    char type[16] = "files";
    if (src && (!json_is_object(src) || json_setting_string(src, "type", type, sizeof type, 1, err, errlen) < 0)) {
        if (!json_is_object(src))
            json_settings_fail(err, errlen, "link %s: setting '%s' must be an object", lc->peer_id, "source");
        return -1;
    }
    if (strcmp(type, "files") == 0) {
        static const char *const known[] = {"type", NULL};
        lc->source = LINK_SOURCE_FILES;
        if (src && json_settings_only(src, "source.", known, err, errlen) < 0)
            return -1;
        return json_setting_string(l, "key_dir", lc->key_dir, sizeof lc->key_dir, 1, err, errlen);
    }
    if (strcmp(type, "etsi014") != 0)
        return json_settings_fail(err, errlen, "link %s: source type '%s' must be files or etsi014", lc->peer_id, type);
    static const char *const known[] = {"type", "url",      "sae_id", "peer_sae_id",     "cert",       "key",
                                        "ca",   "key_size", "batch",  "rate_keys_per_s", "timeout_ms", NULL};
    relay_device_config *d = &lc->device;
    lc->source = LINK_SOURCE_ETSI014;
    d->key_size_bits = 256;
    d->batch = 64;
    d->rate_keys_per_s = 0;
    d->timeout_ms = 5000;
    if (json_settings_only(src, "source.", known, err, errlen) < 0 ||
        json_setting_string(src, "url", d->url, sizeof d->url, 1, err, errlen) < 0 ||
        json_setting_string(src, "sae_id", d->sae_id, sizeof d->sae_id, 1, err, errlen) < 0 ||
        json_setting_string(src, "peer_sae_id", d->peer_sae_id, sizeof d->peer_sae_id, 1, err, errlen) < 0 ||
        json_setting_string(src, "cert", d->cert, sizeof d->cert, 1, err, errlen) < 0 ||
        json_setting_string(src, "key", d->key, sizeof d->key, 1, err, errlen) < 0 ||
        json_setting_string(src, "ca", d->ca, sizeof d->ca, 1, err, errlen) < 0 ||
        json_setting_long(src, "key_size", &d->key_size_bits, 8, 65536, err, errlen) < 0 ||
        json_setting_long(src, "batch", &d->batch, 1, KME_MAX_LINK_IDS, err, errlen) < 0 ||
        json_setting_long(src, "rate_keys_per_s", &d->rate_keys_per_s, 0, 10000000, err, errlen) < 0 ||
        json_setting_long(src, "timeout_ms", &d->timeout_ms, 100, 600000, err, errlen) < 0)
        return -1;
    if (strncmp(d->url, "https://", 8) != 0)
        return json_settings_fail(err, errlen, "link %s: source url '%s' must start with https://", lc->peer_id,
                                  d->url);
    if (!etsi_id_is_valid(d->sae_id) || !etsi_id_is_valid(d->peer_sae_id))
        return json_settings_fail(err, errlen, "link %s: source sae_id and peer_sae_id must be valid SAE IDs",
                                  lc->peer_id);
    if (d->key_size_bits % 8)
        return json_settings_fail(err, errlen, "link %s: source key_size must be a multiple of 8", lc->peer_id);
    /* One request makes one link block; its first LB_MAC_BYTES go to the
     * verification tag, so a block must hold well more than that. */
    if (d->batch * (d->key_size_bits / 8) < RELAY_DEVICE_MIN_BLOCK_BYTES)
        return json_settings_fail(err, errlen,
                                  "link %s: source batch x key_size must make at least %d bytes of key per request",
                                  lc->peer_id, RELAY_DEVICE_MIN_BLOCK_BYTES);
    if (json_object_get(l, "key_dir"))
        return json_settings_fail(err, errlen, "link %s: key_dir is for the files source only", lc->peer_id);
    return 0;
}

static int parse_links(json_t *root, kme_config *c, char *err, size_t errlen)
{
    json_t *links = json_object_get(root, "links");
    if (!links)
        return 0;
    if (!json_is_array(links) || json_array_size(links) > KME_MAX_LINKS)
        return json_settings_fail(err, errlen, "setting '%s' must be an array of links", "links");
    size_t i;
    json_t *l;
    json_array_foreach(links, i, l)
    {
        relay_link_config *lc = &c->links[c->link_count++];
        if (!json_is_object(l))
            return json_settings_fail(err, errlen, "setting '%s' must be an array of objects", "links");
        if (json_setting_string(l, "peer", lc->peer_id, sizeof lc->peer_id, 1, err, errlen) < 0 ||
            json_setting_string(l, "url", lc->url, sizeof lc->url, 1, err, errlen) < 0 ||
            parse_link_source(l, lc, err, errlen) < 0)
            return -1;
        if (!etsi_id_is_valid(lc->peer_id) || strcmp(lc->peer_id, c->kme_id) == 0)
            return json_settings_fail(err, errlen, "link peer '%s' is not a valid KME ID", lc->peer_id);
        if (strncmp(lc->url, "https://", 8) != 0)
            return json_settings_fail(err, errlen, "link url '%s' must start with https://", lc->url);
        for (size_t j = 0; j + 1 < c->link_count; j++)
            if (strcmp(c->links[j].peer_id, lc->peer_id) == 0)
                return json_settings_fail(err, errlen, "peer '%s' has two links", lc->peer_id);
        if (json_object_get(l, "peer_saes"))
            return json_settings_fail(err, errlen,
                                      "link setting '%s' is no longer used: the SAEs of other sites are learned "
                                      "from the routing adverts",
                                      "peer_saes");
    }
    return 0;
}

int kme_config_load(const char *path, kme_config *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    kme_live_config *live = calloc(1, sizeof *live);
    if (!live)
        return json_settings_fail(err, errlen, "%s: out of memory", path);
    atomic_init(&c->live, live);
    live->limits = (etsi_limits){.key_size = 256,
                                 .max_key_per_request = 1024,
                                 .max_key_size = 65536,
                                 .min_key_size = 8,
                                 .max_sae_id_count = 8,
                                 .max_key_count = 100000};
    c->key_ttl_seconds = 3600;
    c->fetch_retry_seconds = 120;
    c->peer_timeout_ms = 5000;
    c->verify_timeout_ms = 5000;
    c->link_stock_max_bytes = 256L * 1024 * 1024;
    c->store_max_mb = 4096;
    c->store_high_water_percent = 90;
    c->connection_limit = 1000;
    c->connection_limit_per_address = 256;
    c->connection_timeout_s = 30;
    c->stock_max_keys = 4096;
    c->stock_max_age_s = 60;
    c->relay_max_hops = KME_RELAY_MAX_HOPS;
    snprintf(c->log_level, sizeof c->log_level, "info");

    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "%s: line %d: %s", path, jerr.line, jerr.text);
        kme_config_free(c);
        return -1;
    }
    int rc = -1;
    if (!json_is_object(root)) {
        json_settings_fail(err, errlen, "%s: the configuration must be a JSON object", path);
        goto done;
    }
    json_t *limits = json_object_get(root, "limits");
    if (json_setting_string(root, "kme_id", c->kme_id, sizeof c->kme_id, 1, err, errlen) < 0 ||
        json_setting_string(root, "data_dir", c->data_dir, sizeof c->data_dir, 1, err, errlen) < 0 ||
        store_key_parse(root, &c->store_key, err, errlen) < 0 ||
        json_setting_string(root, "log_level", c->log_level, sizeof c->log_level, 0, err, errlen) < 0 ||
        json_setting_string(root, "audit_log", c->audit_log, sizeof c->audit_log, 0, err, errlen) < 0 ||
        parse_endpoint(root, "sae_listen", &c->sae_listen, err, errlen) < 0 ||
        parse_endpoint(root, "kme_listen", &c->kme_listen, err, errlen) < 0 || parse_tls(root, c, err, errlen) < 0 ||
        (json_object_get(root, "admin_listen") &&
         parse_endpoint(root, "admin_listen", &c->admin_listen, err, errlen) < 0))
        goto done;
    if (!etsi_id_is_valid(c->kme_id)) {
        json_settings_fail(err, errlen, "kme_id '%s' is not a valid ID", c->kme_id);
        goto done;
    }
    enum log_level level;
    if (log_level_from_name(c->log_level, &level) < 0) {
        json_settings_fail(err, errlen, "setting '%s' must be error, warn, info or debug", "log_level");
        goto done;
    }
    json_t *saes = json_object_get(root, "saes");
    if (!saes) {
        json_settings_fail(err, errlen, "missing setting '%s'", "saes");
        goto done;
    }
    if (sae_policy_parse(root, &live->policy, err, errlen) < 0)
        goto done;
    if (parse_id_list(saes, "saes", live->saes, &live->sae_count, err, errlen) < 0 ||
        parse_links(root, c, err, errlen) < 0)
        goto done;
    if (json_setting_long(root, "key_ttl_seconds", &c->key_ttl_seconds, 1, 10L * 365 * 86400, err, errlen) < 0 ||
        json_setting_long(root, "fetch_retry_seconds", &c->fetch_retry_seconds, 0, 3600, err, errlen) < 0 ||
        json_setting_long(root, "peer_timeout_ms", &c->peer_timeout_ms, 100, 600000, err, errlen) < 0 ||
        json_setting_long(root, "verify_timeout_ms", &c->verify_timeout_ms, 100, 600000, err, errlen) < 0 ||
        json_setting_long(root, "link_stock_max_bytes", &c->link_stock_max_bytes, 65536, 1L << 40, err, errlen) < 0 ||
        json_setting_long(root, "store_max_mb", &c->store_max_mb, 16, 1L << 20, err, errlen) < 0 ||
        json_setting_long(root, "store_high_water_percent", &c->store_high_water_percent, 10, 100, err, errlen) < 0 ||
        json_setting_long(root, "connection_limit", &c->connection_limit, 1, 100000, err, errlen) < 0 ||
        json_setting_long(root, "connection_limit_per_address", &c->connection_limit_per_address, 1, 100000, err,
                          errlen) < 0 ||
        json_setting_long(root, "connection_timeout_s", &c->connection_timeout_s, 1, 3600, err, errlen) < 0 ||
        json_setting_long(root, "stock_max_keys", &c->stock_max_keys, 0, 1000000, err, errlen) < 0 ||
        json_setting_long(root, "stock_max_age_s", &c->stock_max_age_s, 10, 86400, err, errlen) < 0 ||
        json_setting_long(root, "relay_max_hops", &c->relay_max_hops, 1, KME_RELAY_MAX_HOPS, err, errlen) < 0)
        goto done;
    if (limits) {
        etsi_limits *L = &live->limits;
        if (!json_is_object(limits) ||
            json_setting_long(limits, "key_size", &L->key_size, 8, 1L << 20, err, errlen) < 0 ||
            json_setting_long(limits, "max_key_per_request", &L->max_key_per_request, 1, 100000, err, errlen) < 0 ||
            json_setting_long(limits, "max_key_size", &L->max_key_size, 8, 1L << 20, err, errlen) < 0 ||
            json_setting_long(limits, "min_key_size", &L->min_key_size, 8, 1L << 20, err, errlen) < 0 ||
            json_setting_long(limits, "max_SAE_ID_count", &L->max_sae_id_count, 0, 64, err, errlen) < 0 ||
            json_setting_long(limits, "max_key_count", &L->max_key_count, 1, 1L << 40, err, errlen) < 0) {
            if (!json_is_object(limits))
                json_settings_fail(err, errlen, "setting '%s' must be an object", "limits");
            goto done;
        }
        if (L->min_key_size > L->key_size || L->key_size > L->max_key_size || L->key_size % 8 || L->min_key_size % 8 ||
            L->max_key_size % 8) {
            json_settings_fail(err, errlen, "%s",
                               "limits: need min_key_size <= key_size <= max_key_size, all multiples of 8");
            goto done;
        }
    }
    rc = 0;
done:
    json_decref(root);
    if (rc < 0)
        kme_config_free(c);
    return rc;
}

static void free_live(kme_live_config *live)
{
    while (live) {
        kme_live_config *older = live->retired;
        for (size_t i = 0; i < live->sae_count; i++)
            free(live->saes[i]);
        free(live);
        live = older;
    }
}

void kme_config_free(kme_config *c)
{
    free_live(atomic_exchange(&c->live, NULL));
    c->link_count = 0;
}

long kme_config_max_held(const kme_config *c, const char *sae)
{
    const kme_live_config *live = kme_config_live(c);
    long n = sae_policy_of(&live->policy, sae)->max_key_count;
    return n > 0 ? n : live->limits.max_key_count;
}

const kme_live_config *kme_config_live(const kme_config *c)
{
    return atomic_load_explicit(&((kme_config *)c)->live, memory_order_acquire);
}

etsi_limits kme_config_limits(const kme_config *c)
{
    return kme_config_live(c)->limits;
}

int kme_config_hosts_sae(const kme_config *c, const char *sae_id)
{
    const kme_live_config *live = kme_config_live(c);
    for (size_t i = 0; i < live->sae_count; i++)
        if (strcmp(live->saes[i], sae_id) == 0)
            return 1;
    return 0;
}

static int same_endpoint(const net_endpoint *a, const net_endpoint *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

static int same_links(const kme_config *a, const kme_config *b)
{
    if (a->link_count != b->link_count)
        return 0;
    for (size_t i = 0; i < a->link_count; i++)
        if (strcmp(a->links[i].peer_id, b->links[i].peer_id) != 0 || strcmp(a->links[i].url, b->links[i].url) != 0 ||
            strcmp(a->links[i].key_dir, b->links[i].key_dir) != 0 || a->links[i].source != b->links[i].source ||
            memcmp(&a->links[i].device, &b->links[i].device, sizeof a->links[i].device) != 0)
            return 0;
    return 1;
}

const char *kme_config_fixed_change(const kme_config *a, const kme_config *b)
{
    if (strcmp(a->kme_id, b->kme_id) != 0)
        return "kme_id";
    if (strcmp(a->data_dir, b->data_dir) != 0)
        return "data_dir";
    if (!same_endpoint(&a->sae_listen, &b->sae_listen))
        return "sae_listen";
    if (!same_endpoint(&a->kme_listen, &b->kme_listen))
        return "kme_listen";
    if (!same_endpoint(&a->admin_listen, &b->admin_listen))
        return "admin_listen";
    if (strcmp(a->sae_cert, b->sae_cert) != 0 || strcmp(a->sae_key, b->sae_key) != 0 ||
        strcmp(a->sae_client_ca, b->sae_client_ca) != 0)
        return "sae_tls";
    if (strcmp(a->kme_cert, b->kme_cert) != 0 || strcmp(a->kme_key, b->kme_key) != 0 ||
        strcmp(a->kme_ca, b->kme_ca) != 0)
        return "kme_tls";
    if (!same_links(a, b))
        return "links";
    const struct {
        const char *name;
        long a, b;
    } longs[] = {
        {"key_ttl_seconds", a->key_ttl_seconds, b->key_ttl_seconds},
        {"fetch_retry_seconds", a->fetch_retry_seconds, b->fetch_retry_seconds},
        {"peer_timeout_ms", a->peer_timeout_ms, b->peer_timeout_ms},
        {"verify_timeout_ms", a->verify_timeout_ms, b->verify_timeout_ms},
        {"link_stock_max_bytes", a->link_stock_max_bytes, b->link_stock_max_bytes},
        {"store_max_mb", a->store_max_mb, b->store_max_mb},
        {"store_high_water_percent", a->store_high_water_percent, b->store_high_water_percent},
        {"connection_limit", a->connection_limit, b->connection_limit},
        {"connection_limit_per_address", a->connection_limit_per_address, b->connection_limit_per_address},
        {"connection_timeout_s", a->connection_timeout_s, b->connection_timeout_s},
        {"stock_max_keys", a->stock_max_keys, b->stock_max_keys},
        {"stock_max_age_s", a->stock_max_age_s, b->stock_max_age_s},
        {"relay_max_hops", a->relay_max_hops, b->relay_max_hops},
    };
    for (size_t i = 0; i < sizeof longs / sizeof longs[0]; i++)
        if (longs[i].a != longs[i].b)
            return longs[i].name;
    return NULL;
}

void kme_config_publish_live(kme_config *c, kme_config *next)
{
    kme_live_config *fresh = atomic_exchange(&next->live, NULL);
    if (!fresh)
        return;
    /* The one in force now stays reachable (and allocated) from the new one. */
    fresh->retired = atomic_load(&c->live);
    atomic_store_explicit(&c->live, fresh, memory_order_release);
}

int kme_config_link_index(const kme_config *c, const char *peer_id)
{
    for (size_t l = 0; l < c->link_count; l++)
        if (strcmp(c->links[l].peer_id, peer_id) == 0)
            return (int)l;
    return -1;
}
