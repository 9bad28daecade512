/* Hop-by-hop key relay (docs/ARCHITECTURE.md, life of a key, step 5): keys for slaves at a
 * KME that is not a neighbour travel along the route, one-time padded and
 * authenticated afresh on every link (relay/hop_crypto.h), in
 * POST /kme/v1/relay messages (api/kme_relay.h).
 *
 * Each KME on the way checks the tag before anything else, takes the pad it
 * was sent and carves a new one for the next link in one commit, then passes
 * the message on and answers only once the next KME has; the destination
 * commits the keys for its slaves. So the origin learns of success only after
 * the keys are committed where the slaves fetch them. The link ranges of a
 * message that may have left stay spent for good whatever the answer (none,
 * a refusal, one refused further on): its ciphertext and tag may be on the
 * wire, and a second message under the same pad and MAC key would give away
 * the XOR of two key sets and allow a forgery. Only ranges of a message that
 * provably never left return to the pool. */
#ifndef RELAY_RELAY_H
#define RELAY_RELAY_H

#include "relay/node.h"
#include "runtime/http_server.h"

/* Origin: delivers keys to KME dest for its slaves there (master hosted
 * here). The dest keeps them key_ttl_seconds + extra_ttl_s. 0 once dest has
 * committed them; -1 with the ETSI error in resp (nothing was delivered that
 * any SAE could learn of). */
int relay_keys_to(relay_node *k, const char *dest, const char *master, const char *const *slaves, size_t nslaves,
                  const etsi_key_container *keys, long extra_ttl_s, http_response *resp);

/* KME port: POST /kme/v1/relay from the neighbour on link from. */
void relay_handle(relay_node *k, relay_link *from, const http_request *req, http_response *resp);

#endif
