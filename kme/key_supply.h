/* GET_KEY: where the keys for a request come from. Slaves all hosted here:
 * fresh keys from the DRBG. One slave at another site: its stock first
 * (relay/key_stock.h). Slaves at a neighbour whose link is the route: link key
 * reserved at that neighbour (relay/reserve.h). Slaves further away, or at
 * several sites: DRBG keys relayed to each site (relay/relay.h). Every key is
 * committed wherever a slave fetches it before it is returned. */
#ifndef KME_KEY_SUPPLY_H
#define KME_KEY_SUPPLY_H

#include "kme/context.h"
#include "runtime/http_server.h"
#include "store/key_records.h"
#include "api/kme_relay.h"
#include "relay/key_stock.h"

/* ---- how the keys of an answer reached their slaves (for the audit log) ---- */

typedef enum { SUPPLY_LOCAL, SUPPLY_LINK, SUPPLY_RELAY, SUPPLY_STOCK } supply_source;

#define SUPPLY_PATH_MAX (KME_RELAY_MAX_HOPS + 1)

/* A remote site and the way the keys took to it. */
typedef struct {
    char kme[ETSI_ID_MAX + 1];                   /* the site's KME */
    size_t path_len;                             /* KMEs on the path, this one to kme; 0: not known */
    char path[SUPPLY_PATH_MAX][ETSI_ID_MAX + 1];
    const char *slaves[KR_MAX_SLAVES];           /* the request's slaves there (into the request) */
    size_t nslaves;
} supply_site;

/* The first `stocked` keys of the answer came from the stock kept at
 * stock.kme; the others were made for the request (fresh): from the DRBG for
 * the slaves here (local), and for each remote site reserved on the direct
 * link or relayed along a path (the one this KME computed when it sent them). */
typedef struct {
    long stocked;
    supply_site stock;
    supply_source fresh;
    const char *local[KR_MAX_SLAVES];            /* slaves hosted here */
    size_t nlocal;
    supply_site *sites;                          /* malloc'd */
    size_t nsites;
} supply_trace;

void supply_trace_clear(supply_trace *t);

/* The site of an SAE as seen from here: 1 hosted here, 0 unknown, 2 another
 * KME, reachable now or not (its dest in *dest). */
int supply_locate_sae(kme_context *k, const char *sae_id, kme_dest **dest);

/* Blocking: may wait for commits and for the neighbour. On success trace
 * (when not NULL; cleared by the caller) tells how the keys went. */
int supply_keys(kme_context *k, const char *master, const char *slave, const etsi_key_request *req,
                etsi_key_container *out, http_response *resp, supply_trace *trace);

/* The requests that need one local commit and nothing else (slaves all
 * here; one slave at another site with enough stock), without blocking. */
typedef struct {
    kme_context *k;
    kme_dest *dest;  /* NULL: slaves all here */
    char master[ETSI_ID_MAX + 1], slave[ETSI_ID_MAX + 1];
    long number, size_bits;
    const char *slaves[KR_MAX_SLAVES];
    size_t nslaves;
    etsi_key_container out;  /* the keys, when rc is 0 */
    http_response resp;      /* the error, when rc is not 0 */
    supply_trace trace;      /* how they went; cleared by supply_async_finish's caller */
    int rc;
    void (*done)(void *done_arg);
    void *done_arg;
    union {
        struct {
            int64_t expires;
        } drbg;
        stock_take_arg take;
    } op;
} supply_async;

/* Returns 1 when the request can be served this way (and holds what it
 * needs), 0 when it needs supply_keys. After 1, supply_async_start submits
 * the commit; done(done_arg) is then called on the store's writer thread once
 * it is durable; then, on another thread, supply_async_finish settles the
 * stock and makes a->out or a->resp final. req must outlive the request. */
int supply_async_prepare(kme_context *k, const char *master, const char *slave, const etsi_key_request *req,
                         supply_async *a, void (*done)(void *), void *done_arg);
void supply_async_start(supply_async *a);
void supply_async_finish(supply_async *a);

/* stored_key_count of Status for master and that slave. */
long supply_stored_key_count(kme_context *k, const char *master, const char *slave);

#endif
