/* The daemon's wiring (see context.h): the relay node's settings and hooks
 * from the configuration. */
#include "kme/context.h"
#include "kme/metrics.h"

#include <stdio.h>
#include <string.h>

static int hook_hosts_sae(void *ctx, const char *sae)
{
    kme_context *k = ctx;
    return kme_config_hosts_sae(&k->cfg, sae);
}

static size_t hook_hosted_saes(void *ctx, char *const **out)
{
    kme_context *k = ctx;
    const kme_live_config *live = kme_config_live(&k->cfg);
    *out = live->saes;
    return live->sae_count;
}

static etsi_limits hook_limits(void *ctx)
{
    kme_context *k = ctx;
    return kme_config_limits(&k->cfg);
}

int kme_wire_relay(kme_context *k, char *err, size_t errlen)
{
    const kme_config *c = &k->cfg;
    relay_config rc;
    memset(&rc, 0, sizeof rc);
    snprintf(rc.kme_id, sizeof rc.kme_id, "%s", c->kme_id);
    snprintf(rc.kme_cert, sizeof rc.kme_cert, "%s", c->kme_cert);
    snprintf(rc.kme_key, sizeof rc.kme_key, "%s", c->kme_key);
    snprintf(rc.kme_ca, sizeof rc.kme_ca, "%s", c->kme_ca);
    memcpy(rc.links, c->links, c->link_count * sizeof *rc.links);
    rc.link_count = c->link_count;
    rc.key_ttl_seconds = c->key_ttl_seconds;
    rc.peer_timeout_ms = c->peer_timeout_ms;
    rc.verify_timeout_ms = c->verify_timeout_ms;
    rc.link_stock_max_bytes = c->link_stock_max_bytes;
    rc.stock_max_keys = c->stock_max_keys;
    rc.stock_max_age_s = c->stock_max_age_s;
    relay_hooks hooks = {k,
                         hook_hosts_sae,
                         hook_hosted_saes,
                         hook_limits,
                         kme_metrics_relay,
                         kme_metrics_link_stock,
                         kme_metrics_verify_failed,
                         kme_metrics_sae_conflicts};
    return relay_node_init(&k->net, &rc, &k->store, &hooks, err, errlen);
}
