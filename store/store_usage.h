/* How much of the LMDB map the store uses, and the high-water mark above
 * which link ingest pauses (store_high_water_percent).
 *
 * Used bytes are the pages in use: the pages of the file up to its last
 * allocated page, less those on LMDB's free list (reused before the file
 * grows). The state moves above the mark when the used share reaches the
 * percentage, and back below only once it falls HIGH_WATER_HYSTERESIS points
 * under it; each move is logged once. */
#ifndef STORE_STORE_USAGE_H
#define STORE_STORE_USAGE_H

#include "store/store.h"

#define HIGH_WATER_HYSTERESIS 5 /* percentage points between pausing and resuming */

typedef struct {
    uint64_t map_bytes;  /* the map size (store_max_mb) */
    uint64_t file_bytes; /* pages up to the last one allocated: the size data.mdb needs */
    uint64_t used_bytes; /* of those, the pages in use (not on the free list) */
    uint64_t page_bytes;
} store_usage;

/* Reads the usage in a read transaction of its own. 0, or an LMDB error. */
int store_usage_read(kme_store *s, store_usage *u);

/* Sets the high-water percentage (1..100); 100 never pauses. */
void store_set_high_water(kme_store *s, unsigned percent);

/* Reads the usage, moves the state across the mark (logging the move) and
 * returns it: 1 above the mark, 0 below. A failed reading keeps the state. */
int store_check_high_water(kme_store *s);

/* The state as last checked, for metrics and the status page. */
int store_above_high_water(kme_store *s);

/* Records that a write failed for want of room in the map (the writer). */
void store_note_full(kme_store *s);

/* A write failed for want of room in the map within the last
 * STORE_FULL_MEMORY_MS: a store failure seen now is the full store. */
#define STORE_FULL_MEMORY_MS 5000
int store_is_full(kme_store *s);

#endif
