/* The running KME: configuration, store, links and the neighbour client,
 * shared by the SAE API, the KME port and the background workers. */
#ifndef KME_CONTEXT_H
#define KME_CONTEXT_H

#include <pthread.h>
#include <stdatomic.h>
#include "kme/config.h"
#include "store/store.h"
#include "store/link_blocks.h"
#include "relay/peer_client.h"

#define STOCK_MAX_PAIRS 64
#define KME_MAX_DESTS 256 /* KMEs this one keeps key stock for */

/* A stock key handed to its master at a time (unix seconds). */
typedef struct {
    char key_id[UUID_STR_LEN + 1];
    int64_t at;
} kme_claim;

/* Link keys reserved at the neighbour ahead of demand for one (master, slave, size). */
typedef struct {
    char master[ETSI_ID_MAX + 1], slave[ETSI_ID_MAX + 1];
    long size_bits;
    long count;            /* keys ready in the store */
    long taken;            /* keys asked for since the last refill round */
    double rate;           /* keys per second, smoothed */
    int64_t last_round_ms, last_demand_ms;
} stock_pair;

typedef struct {
    size_t index;
    lb_link lb;          /* allocation state: touched only inside store operations */
    int initiator;       /* this end opens the verification transactions */
    atomic_int peer_up;  /* last contact with the neighbour succeeded */
    atomic_ullong ingested_bytes; /* link key ingested since start */
    pthread_t worker;
    int worker_started;
} kme_link;

/* A KME that SAEs here get keys for, with the stock kept ahead of demand for
 * its SAEs: reserved on the link for a neighbour, relayed for a KME further
 * away. Created on first use, never removed (pointers stay valid). */
typedef struct {
    char id[ETSI_ID_MAX + 1];
    kme_link *link;      /* the link to it when it is a neighbour; NULL: reached by relay */
    pthread_mutex_t stock_lock;
    stock_pair stock[STOCK_MAX_PAIRS];
    size_t stock_pairs;
    kme_claim *claims;   /* stock keys handed out, not yet told to that KME */
    size_t nclaims, claims_cap;
} kme_dest;

struct router;
struct admin_http;

typedef struct kme_context {
    kme_config cfg;
    kme_store store;
    kme_link links[KME_MAX_LINKS];
    kme_dest dests[KME_MAX_DESTS];
    atomic_size_t dest_count;
    pthread_mutex_t dest_lock;   /* creation of dests */
    struct router *router;       /* routes and the application directory (relay/router.h) */
    pthread_t remote_stock_worker;
    int remote_stock_started;
    peer_client *peers;
    struct admin_http *admin;    /* the admin listener (kme/admin.h), or NULL */
    atomic_int serving;          /* both listeners are up and the KME is not stopping */
    atomic_int stopping;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
} kme_context;

/* Sleeps up to ms, waking early when the KME stops. Returns 1 if stopping. */
int kme_sleep(kme_context *k, long ms);

int64_t kme_now_ms(void);

/* The dest for KME id (created when create is set), or NULL. A neighbour's
 * dest is bound to its link. */
kme_dest *kme_dest_get(kme_context *k, const char *id, int create);

#endif
