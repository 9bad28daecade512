/* After a restore from a backup (store/backup.h), each link adopts its
 * neighbour's view of their blocks before any of its key is used
 * (store/link_resync.h): the neighbour answers POST /kme/v1/link_view with
 * its view (api/kme_link_view.h); this end merges it in one commit and only
 * then unfreezes the link. */
#ifndef RELAY_LINK_RESYNC_H
#define RELAY_LINK_RESYNC_H

#include "relay/node.h"
#include "runtime/http_server.h"

/* At start: freezes each link of a restored store not yet resynchronised. */
int link_resync_load(relay_node *k);
/* Link worker: when l is frozen, asks the neighbour and adopts its view.
 * 1 when the link was resynchronised now, 0 when there was nothing to do,
 * -1 when it must be tried again. */
int link_resync_once(relay_node *k, relay_link *l);
/* KME port: POST /kme/v1/link_view from the neighbour on link l. */
void link_resync_view_handle(relay_node *k, relay_link *l, const http_request *req, http_response *resp);

#endif
