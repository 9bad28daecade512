/* One background worker per QKD link: ingests key block files from the
 * link's directory, runs the key-caching verification with the peer and
 * keeps the neighbour's stock; one more keeps the stock relayed to KMEs
 * further away (relay/key_stock.h). */
#ifndef RELAY_LINK_WORKER_H
#define RELAY_LINK_WORKER_H

#include "relay/node.h"

int link_workers_start(relay_node *k);
void link_workers_join(relay_node *k);

/* Ingests every complete block file now in the link's directory (bounded by
 * the stock limit); returns how many blocks were stored. */
int link_ingest_once(relay_node *k, relay_link *l);
/* Runs one verification transaction as initiator; returns blocks settled or -1. */
int link_verify_once(relay_node *k, relay_link *l);

/* The steps of link_verify_once. begin locks up to a batch of blocks and
 * makes the request, tagged with link key this end owns when it owns some
 * (relay/msg_auth.h); NULL with *rc 0 when there is nothing to verify, -1 on
 * failure. finish applies the neighbour's answer: the verdicts on a tagged
 * request only when the answer's tag verifies (otherwise the blocks stay
 * locked until the timeout and are asked about again); returns blocks
 * settled or -1. */
typedef struct link_verify_txn link_verify_txn;
link_verify_txn *link_verify_begin(relay_node *k, relay_link *l, int *rc);
/* The request's JSON (free with etsi_text_free); *blocks: how many it names. */
char *link_verify_request_text(const link_verify_txn *t, size_t *blocks);
int link_verify_finish(relay_node *k, link_verify_txn *t, const char *body, size_t len);
void link_verify_free(link_verify_txn *t);

#endif
