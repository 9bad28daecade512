/* Key routing (docs/ARCHITECTURE.md, life of a key, step 6): the link-state database of
 * the newest advert from every KME, and the routes and application directory
 * computed from it. Pure logic: no I/O, no clock, no locking (the caller
 * serialises access to a db and to a table).
 *
 * Graph. A link A-B is usable only when both A and B advertise it up. Key
 * flows X -> Y as pads X carves from key it owns on X-Y, so the cost of that
 * direction is 1, plus low_stock_penalty when X's advertised stock on the
 * link is below low_stock_bytes, or plus empty_penalty (instead) when it is
 * 0: a dry link is routed around when there is another way, and still used
 * when there is not.
 *
 * Paths. Among the paths from self to a destination the table keeps the one
 * of least cost, then fewest hops, then the smallest sequence of KME IDs
 * (compared ID by ID from self). That order is kept by taking a suffix, so a
 * KME's chosen path from any node N on it onwards is N's own chosen path.
 *
 * Loop freedom. Every edge costs at least 1. When the KMEs hold the same
 * adverts, the next hop N that S picks for D lies on a least-cost path, so
 * cost(N, D) = cost(S, D) - cost(S -> N) < cost(S, D): following next hops
 * strictly lowers the remaining cost and reaches D without a loop, along
 * exactly the path S computed. While adverts are still spreading the dbs may
 * differ, and a relayed key may need more hops than planned; a hop limit on
 * relayed messages bounds that (it is the relay's concern).
 *
 * Adverts. Each KME puts its own advert in its db too, with a new seq
 * whenever its links change and at least every few minutes (well within
 * max_age_ms). seq must keep rising across restarts of the origin (persist it,
 * or start from the wall clock in ms): a lower seq is stale until the older
 * advert expires. */
#ifndef RELAY_ROUTING_H
#define RELAY_ROUTING_H

#include <stddef.h>
#include <stdint.h>
#include "api/kme_advert.h"

#define ROUTING_MAX_KMES 256 /* adverts a db holds at most */

#define ROUTING_DEFAULT_MAX_AGE_MS 900000 /* three of the router's refresh periods */
#define ROUTING_DEFAULT_LOW_STOCK_BYTES (64 * 1024)
#define ROUTING_DEFAULT_LOW_STOCK_PENALTY 4
#define ROUTING_DEFAULT_EMPTY_PENALTY 100

typedef struct {
    uint64_t max_age_ms;      /* routing_db_accept refuses adverts older than this */
    uint64_t low_stock_bytes; /* stock below this adds low_stock_penalty */
    uint32_t low_stock_penalty;
    uint32_t empty_penalty; /* added when the stock is 0 */
} routing_params;

routing_params routing_params_default(void);

/* ---- link-state database ---------------------------------------------------- */

typedef struct {
    kme_advert advert; /* as received (age_ms at receipt) */
    int64_t recv_ms;   /* local time of receipt */
} routing_entry;

typedef struct {
    routing_params params;
    size_t count;
    routing_entry *entries[ROUTING_MAX_KMES]; /* sorted by origin */
} routing_db;

enum routing_accept {
    ROUTING_NEW = 0,       /* stored: re-flood it to the other neighbours */
    ROUTING_DUPLICATE = 1, /* same seq as the stored one: dropped */
    ROUTING_STALE = 2,     /* lower seq than the stored one: dropped */
    ROUTING_TOO_OLD = 3,   /* age_ms above params.max_age_ms: dropped */
    ROUTING_INVALID = 4,   /* fails kme_advert_validate: dropped */
    ROUTING_FULL = 5,      /* a new origin and ROUTING_MAX_KMES already held */
    ROUTING_NOMEM = 6,
};

/* params NULL: routing_params_default(). */
void routing_db_init(routing_db *db, const routing_params *params);
void routing_db_clear(routing_db *db);

/* Stores a when it is newer (by seq) than the advert held for its origin. */
enum routing_accept routing_db_accept(routing_db *db, const kme_advert *a, int64_t now_ms);

/* Drops the adverts older than max_age_ms (age at receipt plus the time held):
 * their origins stopped refreshing them. Returns how many were dropped. */
size_t routing_db_expire(routing_db *db, int64_t now_ms, uint64_t max_age_ms);

/* The advert held for origin (age_ms as received), or NULL. */
const kme_advert *routing_db_find(const routing_db *db, const char *origin);

/* A copy of the advert held for origin with age_ms brought up to now_ms, to
 * send on. 0, or -1 when none is held. */
int routing_db_flood_copy(const routing_db *db, const char *origin, int64_t now_ms, kme_advert *out);

/* ---- routes and directory --------------------------------------------------- */

typedef struct {
    char dest[ETSI_ID_MAX + 1];
    char next_hop[ETSI_ID_MAX + 1]; /* a neighbour of self */
    uint64_t cost;
    uint32_t hops;
    char (*path)[ETSI_ID_MAX + 1]; /* hops + 1 IDs: self ... dest */
} routing_route;

typedef struct {
    char sae[ETSI_ID_MAX + 1];
    char kme[ETSI_ID_MAX + 1];
} routing_sae;

/* An SAE claimed by two KMEs or more: one entry per claim not used. kept
 * is the KME first learned as its host when it is among the claimants
 * (routing_compute_prior), "" when no claim is used. Never resolved by the
 * order of the KME IDs: one KME cannot take over another's SAE by claiming
 * it. */
typedef struct {
    char sae[ETSI_ID_MAX + 1];
    char kept[ETSI_ID_MAX + 1];
    char dropped[ETSI_ID_MAX + 1];
} routing_conflict;

typedef struct {
    char self_id[ETSI_ID_MAX + 1];
    size_t route_count;
    routing_route *routes; /* every reachable KME but self, sorted by dest */
    size_t sae_count;
    routing_sae *saes; /* SAEs of self and reachable KMEs, sorted by SAE */
    size_t conflict_count;
    routing_conflict *conflicts; /* sorted by SAE, then dropped KME */
} routing_table;

/* Dijkstra from self_id over db. Overwrites *table (clear a filled one
 * first); the table is empty while db holds no advert of self. The directory
 * takes the SAEs of self and of the KMEs reachable from it that no other KME
 * whose advert db holds claims too; an SAE claimed by several is a conflict
 * and none of the claims is used. 0, or -1 (out of memory or invalid
 * self_id) with *table empty. */
int routing_compute(const routing_db *db, const char *self_id, routing_table *table);
/* The same where prior (nprior entries sorted by SAE; may be NULL) says
 * where each SAE was first learned: of the claims of a conflict, the one of
 * that KME is kept. */
int routing_compute_prior(const routing_db *db, const char *self_id, const routing_sae *prior, size_t nprior,
                          routing_table *table);
void routing_table_clear(routing_table *table);

/* The route to dest_kme, or NULL (self, unknown or unreachable). */
const routing_route *routing_route_to(const routing_table *table, const char *dest_kme);
/* The neighbour to send to for dest_kme, or NULL (self, unknown or unreachable). */
const char *routing_next_hop(const routing_table *table, const char *dest_kme);
/* The KME hosting sae (possibly self), or NULL. */
const char *routing_locate_sae(const routing_table *table, const char *sae);

/* Operator view: {"self", "routes": [{"dest", "next_hop", "cost", "hops",
 * "path"}], "directory": {SAE: KME}, "conflicts": [{"sae", "kept" (null
 * when no claim is kept), "dropped"}]}. Malloc'ed JSON text (free with
 * etsi_text_free), or NULL. */
char *routing_table_to_json(const routing_table *table);

#endif
