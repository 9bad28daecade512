/* GET_KEY: where the keys for a request come from. Slaves all hosted here:
 * fresh keys from the DRBG. A slave at a neighbour: link key reserved at that
 * neighbour (relay/reserve.h). Every key is committed before it is returned. */
#ifndef KME_KEY_SUPPLY_H
#define KME_KEY_SUPPLY_H

#include "kme/context.h"
#include "kme/http_server.h"

/* The site of an SAE as seen from here: 1 hosted here, 0 unknown; for a
 * neighbour's SAE sets *link. */
int supply_locate_sae(kme_context *k, const char *sae_id, kme_link **link);

int supply_keys(kme_context *k, const char *master, const char *slave, const etsi_key_request *req,
                etsi_key_container *out, http_response *resp);

/* stored_key_count of Status for master and that slave. */
long supply_stored_key_count(kme_context *k, const char *master, const char *slave);

#endif
