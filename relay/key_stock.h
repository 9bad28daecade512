/* Stock ahead of demand: keys delivered to another KME before any SAE asks,
 * per (dest KME, master, slave, size), so GET_KEY for a slave there is served
 * by one local commit. For a neighbour the keys are link key reserved there
 * (relay/reserve.h); for a KME further away they are relayed to it
 * (relay/relay.h). That KME already holds each stock key for exactly that
 * master and slave; handing one to the master deletes it from the stock in
 * the commit that answers. Stock is refilled between watermarks that follow
 * demand, and dropped when older than stock_max_age_s. The far KME keeps
 * stock keys key_ttl_seconds + stock_max_age_s; once a key is handed out, this
 * KME tells it ("claimed", passed along the route for a remote KME) and it
 * shortens that key's life to key_ttl_seconds from then. */
#ifndef RELAY_KEY_STOCK_H
#define RELAY_KEY_STOCK_H

#include "relay/node.h"
#include "api/etsi014.h"
#include "runtime/http_server.h"

/* Counts the stock in the store and drops what is too old; creates the dests
 * of the neighbours and of every KME with stock. Call at start. */
int stock_load(relay_node *k);

/* Drops all stock for dest d (that KME restored its store from a backup and
 * holds none of it now). Returns how many keys, or -1. */
long stock_drop_all(relay_node *k, relay_dest *d);

/* Records that master received number keys of size_bits for slave. */
void stock_note_demand(relay_node *k, relay_dest *l, const char *master, const char *slave, long size_bits,
                       long number);

/* Holds up to number stock keys for one request; returns how many. */
long stock_hold(relay_node *k, relay_dest *l, const char *master, const char *slave, long size_bits, long number);
/* Gives back held keys the request will not take. */
void stock_unhold(relay_dest *l, const char *master, const char *slave, long size_bits, long held);
/* Takes the held keys into out (committed). 0 on success; on failure the
 * hold is given back and nothing is taken. */
int stock_take_held(relay_node *k, relay_dest *l, const char *master, const char *slave, long size_bits, long held,
                    etsi_key_container *out);

/* The same as a store operation, for store_commit_async: fill with
 * stock_take_prepare, then run stock_take_op, then always call
 * stock_take_finish with the commit's result; on a non-zero result give the
 * hold back with stock_unhold. The writer only moves the sealed keys out of
 * the store; they are opened by stock_take_finish, off the writer's thread. */
typedef struct {
    unsigned char prefix[3 * (ETSI_ID_MAX + 1) + 4];
    size_t plen;
    long number, size_bits;
    etsi_key_container *out;
    unsigned char *sealed; /* per key taken: be64 created_ms | sealed value */
} stock_take_arg;
void stock_take_prepare(relay_dest *l, const char *master, const char *slave, long size_bits, long held,
                        etsi_key_container *out, stock_take_arg *a);
int stock_take_op(kme_store *s, MDB_txn *txn, void *arg);
/* After the commit: on rc 0 opens the keys taken into out and returns 0, or
 * -1 when one does not open (out emptied: the keys are gone from the store
 * and none is served). Frees what stock_take_op kept either way. */
int stock_take_finish(kme_store *s, stock_take_arg *a, int rc);

/* Records that these stock keys were handed to their master now. */
void stock_note_claims(relay_dest *l, const etsi_key_container *keys);
/* Tells the dest about handed-out stock keys (worker thread), under a MAC of
 * link key owned on the first link of the way (relay/msg_auth.h). */
int stock_send_claims(relay_node *k, relay_dest *l);
/* KME port: POST /kme/v1/claimed from the neighbour on link from: the tag is
 * checked first; the claims are recorded here, or passed on under a new MAC. */
void stock_claimed_handle(relay_node *k, relay_link *from, const http_request *req, http_response *resp);

long stock_count(relay_dest *l, const char *master, const char *slave, long size_bits);

/* One refill round for the dest (worker thread): returns keys added. It takes
 * no key from the route's first link below the routing's low-stock mark. */
long stock_refill_once(relay_node *k, relay_dest *l);

#endif
