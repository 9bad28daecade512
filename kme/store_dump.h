/* Read-only JSON view of a KME's store for operators and tests: link blocks
 * (state, owner, used ranges; a block used up or discarded is erased, and
 * ingest_marks gives per link one past the highest seq ever stored: a seq
 * below it with no block was spent), waiting keys (IDs, master, slaves), keys
 * every slave fetched, held for the fetch retry window (delivered), the
 * link-key stock (IDs, master, slave), reservations in doubt (their ranges)
 * and the neighbours' reservations withdrawn here. Never key material. Safe
 * while the daemon runs. */
#ifndef KME_STORE_DUMP_H
#define KME_STORE_DUMP_H

#include <stdio.h>
#include "kme/config.h"

int store_dump(const kme_config *cfg, FILE *out, char *err, size_t errlen);

#endif
