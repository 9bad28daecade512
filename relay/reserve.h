/* Reservation of link key for a slave at the neighbour (docs/ARCHITECTURE.md, life of a
 * key, step 4): the owner carves keys from blocks it owns, commits, tells the
 * neighbour {key_IDs, ranges, master, slaves}; the neighbour checks and
 * commits the same bytes for its slaves before the owner answers its SAE. */
#ifndef RELAY_RESERVE_H
#define RELAY_RESERVE_H

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

/* A reservation whose answer was lost keeps its ranges spent until the
 * neighbour says which it recorded: one round of asking (worker thread).
 * Returns reservations settled, or -1. */
int reserve_resolve_once(relay_node *k, relay_link *l);
/* KME port: POST /kme/v1/resolve from neighbour on link l (read only). */
void reserve_resolve_handle(relay_node *k, relay_link *l, const http_request *req, http_response *resp);

/* What becomes of link ranges a neighbour did not confirm. */
enum reserve_undo {
    RESERVE_UNDO_RELEASE, /* it provably recorded nothing: the ranges return to the pool */
    RESERVE_UNDO_SPEND,   /* it may have recorded them and will never say: they stay spent */
    RESERVE_UNDO_DOUBT,   /* its answer was lost: spent until it says which it recorded */
};
/* Settles ranges this KME carved on link l and sent in a message the
 * neighbour did not confirm; doubt_id (a UUID) names them while in doubt
 * (reserve_resolve_once asks about them). 0, or -1. */
int reserve_settle_ranges(relay_node *k, relay_link *l, const kme_range *ranges, size_t n, const char *doubt_id,
                          enum reserve_undo kind);

/* Keys of size_bits the owner could carve for the neighbour right now. */
long reserve_available_keys(relay_node *k, relay_link *l, long size_bits);

#endif
