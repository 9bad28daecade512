/* GET_KEY: where the keys for a request come from, decided once per request
 * (supply_prepare). Slaves all hosted here: fresh keys from the DRBG. One
 * slave at another site: its stock first (relay/key_stock.h). Slaves at a
 * neighbour whose link is the route: link key reserved at that neighbour
 * (relay/reserve.h). Slaves further away, or at several sites: DRBG keys
 * relayed to each site (relay/relay.h). Every key is committed wherever a
 * slave fetches it before it is returned (ARCHITECTURE.md, I2 and I3). */
#ifndef KME_KEY_SUPPLY_H
#define KME_KEY_SUPPLY_H

#include "api/kme_relay.h"
#include "kme/context.h"
#include "relay/key_stock.h"
#include "runtime/http_server.h"
#include "store/key_records.h"

/* ---- how the keys of an answer reached their slaves (for the audit log) ---- */

typedef enum { SUPPLY_LOCAL, SUPPLY_LINK, SUPPLY_RELAY, SUPPLY_STOCK } supply_source;

/* A remote site and the way the keys took to it. */
typedef struct {
    char kme[ETSI_ID_MAX + 1];         /* the site's KME */
    size_t path_len;                   /* KMEs on the path, this one to kme; 0: not known */
    char (*path)[ETSI_ID_MAX + 1];     /* path_len IDs (malloc'd) */
    const char *slaves[KR_MAX_SLAVES]; /* the request's slaves there (into the request) */
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
    const char *local[KR_MAX_SLAVES]; /* slaves hosted here */
    size_t nlocal;
    supply_site *sites; /* malloc'd */
    size_t nsites;
} supply_trace;

void supply_trace_clear(supply_trace *t);

/* Where an SAE is as seen from here. SUPPLY_REMOTE: at another KME,
 * reachable now or not (its ID in kme_out when not NULL). */
typedef enum { SUPPLY_UNKNOWN = 0, SUPPLY_HERE = 1, SUPPLY_REMOTE = 2 } supply_where;
supply_where supply_locate_sae(kme_context *k, const char *sae_id, char kme_out[ETSI_ID_MAX + 1]);

/* The slaves of a request at one remote KME. */
typedef struct {
    relay_dest *dest;
    const char *slaves[KR_MAX_SLAVES];
    size_t n;
} supply_group;

/* How a prepared request is served. */
typedef enum {
    SUPPLY_REFUSED = -1, /* resp holds the ETSI error; nothing was taken */
    SUPPLY_NOW = 0,      /* one local commit (slaves all here, or all keys from stock): supply_start */
    SUPPLY_BLOCKING = 1, /* waits on neighbours: supply_run on a worker */
} supply_way;

/* One GET_KEY from its decision to its answer. The slave IDs point into
 * the request and the etsi_key_request, which must outlive it. */
typedef struct {
    kme_context *k;
    char master[ETSI_ID_MAX + 1], slave[ETSI_ID_MAX + 1];
    long number, size_bits;
    /* the decision, made once by supply_prepare */
    const char *local[KR_MAX_SLAVES]; /* slaves hosted here */
    size_t nlocal;
    supply_group groups[KR_MAX_SLAVES]; /* slaves elsewhere, by KME */
    size_t ngroups;
    long held;  /* stock keys held for the one remote slave */
    int direct; /* fresh keys reserved on the link to the one remote KME */
    /* link key charged to the master (kme/key_economy.h), refunded on failure */
    struct {
        int link;
        long bytes;
    } charges[KR_MAX_SLAVES];
    size_t ncharges;
    /* the outcome */
    etsi_key_container out; /* the keys, when rc is 0 */
    http_response resp;     /* the error, when rc is not 0 */
    supply_trace trace;     /* how they went (supply_request_clear frees it) */
    int rc;
    /* SUPPLY_NOW */
    void (*done)(void *done_arg);
    void *done_arg;
    union {
        int64_t drbg_expires;
        stock_take_arg take;
    } op;
} supply_request;

/* Locates the slaves, holds the stock the request can take and decides the
 * source. Non-blocking. */
supply_way supply_prepare(kme_context *k, const char *master, const char *slave, const etsi_key_request *req,
                          supply_request *a);
/* SUPPLY_NOW: submits the commit; done(done_arg) is then called on the
 * store's writer thread once it is durable; then, on another thread,
 * supply_finish settles the stock and makes a->out or a->resp final. */
void supply_start(supply_request *a, void (*done)(void *), void *done_arg);
void supply_finish(supply_request *a);
/* SUPPLY_BLOCKING: serves the request (may wait for commits and for the
 * neighbours); 0 with a->out, or -1 with a->resp. */
int supply_run(supply_request *a);
/* Frees the trace (the keys and the error are the caller's). */
void supply_request_clear(supply_request *a);

/* stored_key_count of Status for master and that slave. */
long supply_stored_key_count(kme_context *k, const char *master, const char *slave);

#endif
