/* /status.json on the admin listener: the network as this KME knows it, for
 * the status page and for scripts. Built from the router's link-state
 * database and routes, this KME's own ends of its links (read live) and the
 * relay requests it originated lately. Never key material or key_IDs: IDs of
 * KMEs and SAEs, counts, sizes, rates and times (UTC) only.
 *
 * {"self", "generated_at", "generated_ms", "low_stock_bytes",
 *  "sites": [{"id", "self", "advertised", "reachable", "unreachable_reason"
 *             (null when reachable), "advert_age_ms" (null when not
 *             advertised), "saes"}],
 *  "links": [{"a", "b" (a < b), "up", "state" (ok, low, dry, down),
 *             "stock_bytes", "rate_bps",
 *             "ends": [{"kme", "source" (live, advert, none), "up",
 *                       "stock_bytes", "rate_bps", "ingested_bytes" (live only)}]}],
 *  "routes": [{"dest", "next_hop", "hops", "cost", "path"}],
 *  "directory": {SAE: KME},
 *  "conflicts": [{"sae", "kmes" (every KME claiming it), "kept" (the one its
 *                 directory entry keeps, first learned; null: none)}],
 *  "relays": [{"at", "at_ms", "dest", "via", "keys", "bytes", "seconds", "ok"}]}
 *
 * A link is up when both ends say so; its stock is what the two ends own,
 * its rate the higher of their ingest rates; state "dry" when it has no
 * stock, "low" when an end owns less than low_stock_bytes. Sites are sorted
 * by ID, links by their ends, routes by destination, conflicts by SAE (an
 * SAE claimed by more than one KME is an alarm, also counted by the metric
 * qkd_kme_sae_conflicts), relays newest first. */
#ifndef KME_STATUS_JSON_H
#define KME_STATUS_JSON_H

#include <stddef.h>
#include "kme/context.h"

/* Recent relay events listed at most. */
#define STATUS_RELAYS_MAX 20

/* The document, malloc'd (free with free(); length in *len), or NULL when
 * out of memory. */
char *status_json_text(kme_context *k, size_t *len);

#endif
