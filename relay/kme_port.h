/* The KME port: the inter-KME API under /kme/v1/ (api/kme.yaml). Only a
 * configured neighbour, identified by the CN of its certificate, is served. */
#ifndef RELAY_KME_PORT_H
#define RELAY_KME_PORT_H

#include "relay/node.h"
#include "runtime/http_server.h"

void kme_port_handle(void *ctx, const http_request *req, http_response *resp);

#endif
