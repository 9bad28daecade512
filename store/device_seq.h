/* The block seqs of a link fed by ETSI 014 QKD devices: the end that names
 * the keys (relay/link_source_etsi014.c) takes each block's seq from a
 * counter per link, committed before the seq leaves in a message, so that a
 * restart never names a seq twice. Kept in the meta database under
 * "device_seq" | peer KME ID (be64 next seq). */
#ifndef STORE_DEVICE_SEQ_H
#define STORE_DEVICE_SEQ_H

#include <stdint.h>
#include "store/store.h"

/* Inside a write transaction: takes the next n seqs of the link to peer_id,
 * *first to *first + n - 1: at least floor, above every seq taken before and
 * at or above the link's ingest mark (never 0). A seq taken and never named
 * is only skipped. 0, or an LMDB error (the caller aborts). */
int device_seq_take(kme_store *s, MDB_txn *txn, const char *peer_id, uint64_t floor, uint64_t n, uint64_t *first);

#endif
