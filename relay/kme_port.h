/* The KME port: the inter-KME API under /kme/v1/ (api/kme.yaml). Only a
 * configured neighbour, identified by the CN of its certificate, is served. */
#ifndef RELAY_KME_PORT_H
#define RELAY_KME_PORT_H

#include "relay/node.h"
#include "runtime/http_server.h"

void kme_port_handle(void *ctx, const http_request *req, http_response *resp);

/* POST /kme/v1/verify from the neighbour on link l (commits; call off the
 * event threads): a tagged request is checked first and its verdicts tagged;
 * an untagged one discards no block unless the neighbour owns no link key to
 * tag with, as far as this end knows. */
void kme_port_verify(relay_node *k, relay_link *l, const http_request *req, http_response *resp);

#endif
