/* The relay layer's own state, one per KME: its settings, the store it works
 * in, its links to the neighbours, the KMEs it keeps stock for, the routing
 * and the neighbour client, and the few things it asks of the daemon above
 * it (relay_hooks). The daemon builds one with relay_node_init, starts it,
 * and stops it; every relay module receives the node, never the daemon.
 *
 * Lifecycle: relay_node_init (links, stock and routing state; before the KME
 * port serves) -> relay_node_start (adverts, link workers) -> relay_node_stop
 * (after the listeners stopped) -> relay_node_free. */
#ifndef RELAY_NODE_H
#define RELAY_NODE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "api/etsi014.h"
#include "store/link_blocks.h"
#include "store/store.h"
#include "relay/peer_client.h"
#include "runtime/http_server.h"
#include "relay/settings.h"
#include "runtime/stop_signal.h"

#define RELAY_MAX_DESTS 256 /* KMEs this one keeps key stock for */
#define STOCK_MAX_PAIRS 64
#define STOCK_MAX_PAIRS_PER_MASTER 8 /* of a dest's pairs, one master's at most */

/* One relay request finished at its origin. */
typedef struct {
    int64_t at_ms;              /* when it finished (unix ms) */
    char dest[ETSI_ID_MAX + 1]; /* the KME the keys were relayed to */
    char via[ETSI_ID_MAX + 1];  /* the first hop ("" when none was found) */
    unsigned keys;
    unsigned long bytes; /* key material relayed */
    double seconds;      /* from sending to the destination's acknowledgement */
    int ok;
} relay_event;

typedef struct relay_link relay_link;

/* What the relay layer asks of the daemon: the SAEs hosted here and the
 * ETSI limits in force (both may change on a reload), and where to report
 * what it did. Called from any thread; ctx is passed back. */
typedef struct {
    void *ctx;
    int (*hosts_sae)(void *ctx, const char *sae);
    /* The hosted SAEs in force: *out points to n IDs that stay valid for
     * the daemon's life. */
    size_t (*hosted_saes)(void *ctx, char *const **out);
    etsi_limits (*limits)(void *ctx);
    void (*relayed)(void *ctx, const relay_event *e);
    void (*link_stock)(void *ctx, const relay_link *l, const lb_stock *st);
    void (*verify_failed)(void *ctx, const relay_link *l, size_t blocks);
    /* The routes were computed: saes SAEs are claimed by more than one KME
     * (relay/routing.h, routing_conflict). May be NULL. */
    void (*sae_conflicts)(void *ctx, size_t saes);
    /* A relay passing through here is about to spend bytes of the link key
     * of next for master's keys: 0 to go on, or -1 with resp (a 503) to
     * refuse (the key economy). refund gives the bytes back when nothing
     * was spent after all. Both may be NULL. */
    int (*spend)(void *ctx, const char *master, const relay_link *next, long bytes, http_response *resp);
    void (*refund)(void *ctx, const char *master, const relay_link *next, long bytes);
} relay_hooks;

/* A stock key handed to its master at a time (unix seconds). */
typedef struct {
    char key_id[UUID_STR_LEN + 1];
    int64_t at;
} relay_claim;

/* Keys reserved or relayed ahead of demand for one (master, slave, size). */
typedef struct {
    char master[ETSI_ID_MAX + 1], slave[ETSI_ID_MAX + 1];
    long size_bits;
    long count;  /* keys ready in the store */
    long taken;  /* keys asked for since the last refill round */
    double rate; /* keys per second, smoothed */
    int64_t last_round_ms, last_demand_ms;
} stock_pair;

struct relay_link {
    size_t index;
    lb_link lb;                   /* allocation state: touched only inside store operations */
    int initiator;                /* this end opens the verification transactions */
    atomic_int peer_up;           /* last contact with the neighbour succeeded */
    atomic_int resync_needed;     /* restored store: the neighbour's view not adopted yet (relay/link_resync.h) */
    atomic_ullong ingested_bytes; /* link key ingested since start */
    struct link_source *source;   /* where its key comes from (relay/link_source.h) */
    atomic_int source_down;       /* the source stopped delivering key: the link is down in the adverts */
    pthread_t worker;
    int worker_started;
};

/* A KME that SAEs here get keys for, with the stock kept ahead of demand for
 * its SAEs: reserved on the link for a neighbour, relayed for a KME further
 * away. Created on first use, never removed (pointers stay valid). */
typedef struct {
    char id[ETSI_ID_MAX + 1];
    relay_link *link; /* the link to it when it is a neighbour; NULL: reached by relay */
    pthread_mutex_t stock_lock;
    stock_pair stock[STOCK_MAX_PAIRS];
    size_t stock_pairs;
    relay_claim *claims; /* stock keys handed out, not yet told to that KME */
    size_t nclaims, claims_cap;
} relay_dest;

struct router;

typedef struct relay_node {
    relay_config cfg;
    kme_store *store;
    relay_hooks hooks;
    relay_link links[RELAY_MAX_LINKS];
    relay_dest dests[RELAY_MAX_DESTS];
    atomic_size_t dest_count;
    pthread_mutex_t dest_lock; /* creation of dests */
    struct router *router;     /* routes and the application directory (relay/router.h) */
    pthread_t remote_stock_worker;
    int remote_stock_started;
    peer_client *peers;
    stop_signal stop; /* raised by relay_node_stop */
} relay_node;

/* Sets up the node over an open store: links, the stock in the store, the
 * neighbour client and the routing state. 0, or -1 with err. */
int relay_node_init(relay_node *n, const relay_config *cfg, kme_store *store, const relay_hooks *hooks, char *err,
                    size_t errlen);
/* Starts the adverts, then the link workers. 0, or -1 with err. */
int relay_node_start_routing(relay_node *n, char *err, size_t errlen);
int relay_node_start_links(relay_node *n, char *err, size_t errlen);
/* Stops every thread of the node (after the KME port stopped) and frees it. */
void relay_node_stop(relay_node *n);

/* Sleeps up to ms, waking early when the node stops. Returns 1 if stopping. */
int relay_sleep(relay_node *n, long ms);

/* The dest for KME id (created when create is set), or NULL. A neighbour's
 * dest is bound to its link. */
relay_dest *relay_dest_get(relay_node *n, const char *id, int create);

/* The index of the link to peer_id, or -1. */
int relay_link_index(const relay_node *n, const char *peer_id);

/* The daemon's answers (relay_hooks). */
int relay_hosts_sae(relay_node *n, const char *sae);
etsi_limits relay_limits(relay_node *n);

#endif
