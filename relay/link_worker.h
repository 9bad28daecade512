/* One background worker per QKD link: ingests key block files from the
 * link's directory, runs the key-caching verification with the peer and
 * keeps the neighbour's stock; one more keeps the stock relayed to KMEs
 * further away (relay/key_stock.h). */
#ifndef RELAY_LINK_WORKER_H
#define RELAY_LINK_WORKER_H

#include "kme/context.h"

int link_workers_start(kme_context *k);
void link_workers_join(kme_context *k);

/* Ingests every complete block file now in the link's directory (bounded by
 * the stock limit); returns how many blocks were stored. */
int link_ingest_once(kme_context *k, kme_link *l);
/* Runs one verification transaction as initiator; returns blocks settled or -1. */
int link_verify_once(kme_context *k, kme_link *l);

#endif
