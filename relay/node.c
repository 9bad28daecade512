/* The relay node's lifecycle, its dests, and the stop-aware sleep of its
 * workers (see node.h). */
#include "relay/node.h"
#include "relay/key_stock.h"
#include "relay/link_resync.h"
#include "relay/link_source.h"
#include "relay/link_worker.h"
#include "relay/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int relay_node_init(relay_node *n, const relay_config *cfg, kme_store *store, const relay_hooks *hooks, char *err,
                    size_t errlen)
{
    n->cfg = *cfg;
    n->store = store;
    n->hooks = *hooks;
    pthread_mutex_init(&n->dest_lock, NULL);
    stop_signal_init(&n->stop);
    for (size_t i = 0; i < cfg->link_count; i++) {
        relay_link *l = &n->links[i];
        l->index = i;
        lb_link_init(&l->lb, cfg->kme_id, cfg->links[i].peer_id);
        l->initiator = strcmp(cfg->kme_id, cfg->links[i].peer_id) < 0;
        if (link_source_open(n, l, err, errlen) < 0)
            return -1;
    }
    if (link_resync_load(n) < 0) {
        snprintf(err, errlen, "cannot read whether the store was restored");
        return -1;
    }
    if (stock_load(n) < 0) {
        snprintf(err, errlen, "cannot read the key stock");
        return -1;
    }
    if (!(n->peers = peer_client_new(&n->cfg, err, errlen)))
        return -1;
    /* The routes exist before the KME port serves, so the neighbours'
     * adverts have somewhere to go. */
    if (router_init(n) < 0) {
        snprintf(err, errlen, "cannot set up the routing");
        return -1;
    }
    return 0;
}

int relay_node_start_routing(relay_node *n, char *err, size_t errlen)
{
    if (router_start(n) < 0) {
        snprintf(err, errlen, "cannot start the routing");
        return -1;
    }
    return 0;
}

int relay_node_start_links(relay_node *n, char *err, size_t errlen)
{
    if (link_workers_start(n) < 0) {
        snprintf(err, errlen, "cannot start the link workers");
        return -1;
    }
    return 0;
}

void relay_node_stop(relay_node *n)
{
    stop_signal_raise(&n->stop);
    link_workers_join(n);
    router_stop(n);
    for (size_t i = 0; i < n->cfg.link_count; i++)
        link_source_close(&n->links[i]);
    for (size_t i = 0; i < atomic_load(&n->dest_count); i++)
        free(n->dests[i].claims);
    peer_client_free(n->peers);
    n->peers = NULL;
}

int relay_sleep(relay_node *n, long ms)
{
    return stop_signal_sleep(&n->stop, ms);
}

int relay_link_index(const relay_node *n, const char *peer_id)
{
    for (size_t i = 0; i < n->cfg.link_count; i++)
        if (strcmp(n->cfg.links[i].peer_id, peer_id) == 0)
            return (int)i;
    return -1;
}

relay_dest *relay_dest_get(relay_node *n, const char *id, int create)
{
    size_t count = atomic_load(&n->dest_count);
    for (size_t i = 0; i < count; i++)
        if (strcmp(n->dests[i].id, id) == 0)
            return &n->dests[i];
    if (!create)
        return NULL;
    pthread_mutex_lock(&n->dest_lock);
    relay_dest *d = NULL;
    count = atomic_load(&n->dest_count);
    for (size_t i = 0; i < count && !d; i++)
        if (strcmp(n->dests[i].id, id) == 0)
            d = &n->dests[i];
    if (!d && count < RELAY_MAX_DESTS) {
        d = &n->dests[count];
        memset(d, 0, sizeof *d);
        snprintf(d->id, sizeof d->id, "%s", id);
        int li = relay_link_index(n, id);
        d->link = li >= 0 ? &n->links[li] : NULL;
        pthread_mutex_init(&d->stock_lock, NULL);
        atomic_store(&n->dest_count, count + 1);
    }
    pthread_mutex_unlock(&n->dest_lock);
    return d;
}

int relay_hosts_sae(relay_node *n, const char *sae)
{
    return n->hooks.hosts_sae(n->hooks.ctx, sae);
}

etsi_limits relay_limits(relay_node *n)
{
    return n->hooks.limits(n->hooks.ctx);
}
