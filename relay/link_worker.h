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

#endif
