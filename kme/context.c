/* The daemon's wiring (see context.h): the relay node's settings and hooks
 * from the configuration. */
#include "kme/context.h"
#include "kme/key_economy.h"
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

/* Each link's stock as the adverts measure it: for the metrics and the key economy. */
static void hook_link_stock(void *ctx, const relay_link *l, const lb_stock *st)
{
    kme_context *k = ctx;
    kme_metrics_link_stock(ctx, l, st);
    if (k->economy)
        economy_link_stock(k->economy, (int)l->index, st->owned_free);
}

/* The store's ceiling of keys waiting for an SAE as a slave. */
static long hook_max_held(void *ctx, const char *sae)
{
    kme_context *k = ctx;
    return kme_config_max_held(&k->cfg, sae);
}

/* A relay passing through here: its master pays this KME's link key too. */
static int hook_spend(void *ctx, const char *master, const relay_link *next, long bytes, http_response *resp)
{
    kme_context *k = ctx;
    economy_refusal why;
    if (!k->economy || economy_charge(k->economy, &kme_config_live(&k->cfg)->policy, master, (int)next->index,
                                      next->lb.peer_id, bytes, &why) == 0)
        return 0;
    economy_answer(why.reason, why.retry_after_s, why.detail, resp);
    return -1;
}

static void hook_refund(void *ctx, const char *master, const relay_link *next, long bytes)
{
    kme_context *k = ctx;
    if (k->economy)
        economy_refund(k->economy, master, (int)next->index, bytes);
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
    rc.relay_max_hops = c->relay_max_hops;
    relay_hooks hooks = {k,
                         hook_hosts_sae,
                         hook_hosted_saes,
                         hook_limits,
                         kme_metrics_relay,
                         hook_link_stock,
                         kme_metrics_verify_failed,
                         kme_metrics_sae_conflicts,
                         hook_spend,
                         hook_refund};
    k->store.held_limit = hook_max_held;
    k->store.held_limit_ctx = k;
    return relay_node_init(&k->net, &rc, &k->store, &hooks, err, errlen);
}
