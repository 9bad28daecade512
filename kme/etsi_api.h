/* The SAE port: ETSI GS QKD 014 V1.1.1 (api/etsi014.yaml). Authenticates the
 * SAE by its certificate CN and serves status, enc_keys and dec_keys. */
#ifndef KME_ETSI_API_H
#define KME_ETSI_API_H

#include "runtime/http_server.h"

void etsi_api_handle(void *ctx, const http_request *req, http_response *resp);

#endif
