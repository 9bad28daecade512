/* Reservation of link key for a slave at the neighbour (docs/ARCHITECTURE.md, life of a
 * key, step 4): the owner carves keys from blocks it owns, commits, tells the
 * neighbour {key_IDs, ranges, master, slaves} under a one-time MAC from the
 * same link (relay/msg_auth.h); the neighbour checks the tag, then commits
 * the same bytes for its slaves before the owner answers its SAE, which it
 * does only on the neighbour's tagged answer. */
#ifndef RELAY_RESERVE_H
#define RELAY_RESERVE_H

#include "api/kme_msgs.h"
#include "relay/node.h"
#include "runtime/http_server.h"

typedef struct {
    const char *master;
    const char *const *local_slaves; /* slaves hosted here (may be none) */
    size_t local_count;
    const char *const *peer_slaves; /* slaves hosted at the neighbour */
    size_t peer_count;
    long number, size_bits;
    long extra_ttl_s;    /* kept this much longer at the neighbour (stock) */
    long also_available; /* keys the request gets elsewhere (stock), for error details */
} reserve_request;

/* Fills out with number keys shared with the neighbour on link l. On failure
 * fills resp with the ETSI error (503 short of key or neighbour unreachable)
 * and returns -1; nothing is handed out then. */
int reserve_link_keys(relay_node *k, relay_link *l, const reserve_request *r, etsi_key_container *out,
                      http_response *resp);

/* KME port: POST /kme/v1/reserve from neighbour on link l. */
void reserve_handle(relay_node *k, relay_link *l, const http_request *req, http_response *resp);

/* A reservation whose answer was lost keeps its ranges spent ("in doubt")
 * until the neighbour settles it; one round of asking (worker thread). The
 * neighbour answers from inside its writer, so after every reservation it
 * had queued, and withdraws each one it has not recorded: should that still
 * arrive (from its socket, its worker pool), it is refused. So the answer is
 * final, and the ranges of withdrawn reservations alone return to the pool.
 * Returns reservations settled, or -1. */
int reserve_resolve_once(relay_node *k, relay_link *l);
/* KME port: POST /kme/v1/resolve from neighbour on link l (checks its MAC,
 * commits its withdrawals and takes its MAC keys). */
void reserve_resolve_handle(relay_node *k, relay_link *l, const http_request *req, http_response *resp);

/* A reservation arriving more than this long after its keys expired is
 * refused, so a withdrawal is kept only until then. */
#define RESERVE_LATE_S 3600

/* Gives ranges this KME carved on link l back to the pool: for a message
 * that provably never left (the neighbour client's not_sent). 0, or -1. */
int reserve_release_ranges(relay_node *k, relay_link *l, const kme_range *ranges, size_t n);

/* Debug log of the link ranges a message carries as it leaves ("link P:
 * sent KIND ID ranges SEQ:OFFSET+LENGTH..."; a long list on several lines).
 * Never key bytes. */
void reserve_log_ranges(const relay_link *l, const char *kind, const char *id, const kme_range *ranges, size_t n);

/* Link key a reservation spends besides its keys: its MAC key and answer key. */
#define RESERVE_MAC_BYTES (2 * KME_MAC_KEY_BYTES)

/* Keys of size_bits the owner could carve for the neighbour right now. */
long reserve_available_keys(relay_node *k, relay_link *l, long size_bits);

#endif
