/* The per-link source of key: dispatch to the files or the etsi014 source
 * (see link_source.h). */
#include "relay/link_source.h"
#include "relay/link_worker.h"

int link_source_open(relay_node *k, relay_link *l, char *err, size_t errlen)
{
    atomic_store(&l->source_down, 0);
    if (k->cfg.links[l->index].source == LINK_SOURCE_ETSI014)
        return device_source_open(k, l, err, errlen);
    return 0;
}

void link_source_close(relay_link *l)
{
    device_source_close(l);
}

int link_source_ingest_once(relay_node *k, relay_link *l)
{
    if (k->cfg.links[l->index].source == LINK_SOURCE_ETSI014)
        return device_source_ingest_once(k, l);
    return link_ingest_once(k, l);
}
