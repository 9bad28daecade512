/* Forgetting at rest: the epoch keys (store/epoch_keys.h) whose records are
 * all gone are erased from the keyring, so that what LMDB's free pages, or
 * any copy of data.mdb, still hold of those records can never be opened.
 *   'E' key records: the bucket has ended, and no key record expires before
 *       its end any more (the expiry worker has erased them);
 *   'S' stock: its 64 s have passed and no stock key of it is left;
 *   'B' link blocks: every block of the 64 is used up or discarded (their
 *       records are gone), and the link's ingest mark is past them. */
#ifndef STORE_FORGET_EPOCHS_H
#define STORE_FORGET_EPOCHS_H

#include <stdint.h>
#include "store/store.h"

/* One pass at time now (unix seconds) over a committed snapshot: returns
 * how many epoch keys were erased, or -1. */
int store_forget_epochs(kme_store *s, int64_t now);

#endif
