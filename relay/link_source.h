/* Where a link's key comes from, one source per link as configured
 * (relay/settings.h): "files" (<seq>.key files a QKD device or qkd-sim
 * drops into key_dir, relay/link_worker.c) or "etsi014" (the local QKD
 * device's ETSI GS QKD 014 API, this KME as its SAE,
 * relay/link_source_etsi014.c). Whatever the source, its key enters the
 * store as unverified link blocks (lb_ingest) and goes through the same
 * verification, ownership and stock; nothing above the link workers knows
 * the difference.
 *
 * The etsi014 source runs the ID handshake with the peer KME: the end whose
 * KME ID sorts first (the initiator of the verification too) takes keys for
 * the peer's SAE from its device with enc_keys, commits the seq of the block
 * they make, and names the key_IDs to the peer (POST /kme/v1/link_ids); the
 * peer fetches them from its own device with dec_keys, stores what it got as
 * that block and answers which keys those are; the initiator stores the
 * same keys, in the same order. A key the far end could not fetch is
 * discarded at both ends. A device that fails marks the link down in the
 * adverts (source_down) until it delivers again; ingest retries with backoff. */
#ifndef RELAY_LINK_SOURCE_H
#define RELAY_LINK_SOURCE_H

#include "relay/node.h"
#include "runtime/http_server.h"

/* Sets up the link's source (relay_node_init). 0, or -1 with err. */
int link_source_open(relay_node *k, relay_link *l, char *err, size_t errlen);
void link_source_close(relay_link *l);

/* From the link's worker: brings in what the source has ready (bounded by
 * the stock limit and, for a device, its pacing and backoff). Returns the
 * blocks stored, 0 when there was nothing to do, -1 on a failure. */
int link_source_ingest_once(relay_node *k, relay_link *l);

/* The KME port's POST /kme/v1/link_ids, at the end that does not sort first. */
void link_source_ids_handle(relay_node *k, relay_link *l, const http_request *req, http_response *resp);

/* etsi014 internals shared with link_source.c. */
int device_source_open(relay_node *k, relay_link *l, char *err, size_t errlen);
void device_source_close(relay_link *l);
int device_source_ingest_once(relay_node *k, relay_link *l);

#endif
