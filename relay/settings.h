/* The relay layer's settings: what it needs of the site's configuration,
 * fixed while the KME runs (the daemon fills them from its config file). */
#ifndef RELAY_SETTINGS_H
#define RELAY_SETTINGS_H

#include <stddef.h>
#include "api/etsi014.h"

#define RELAY_MAX_LINKS 32

/* One QKD link as configured. */
typedef struct {
    char peer_id[ETSI_ID_MAX + 1]; /* KME ID of the other end (CN of its certificate) */
    char url[512];                 /* its KME port, https://host:port */
    char key_dir[1024];            /* where the QKD device drops key blocks for this link */
} relay_link_config;

/* What the relay layer needs of the site's configuration; fixed while the
 * KME runs. */
typedef struct {
    char kme_id[ETSI_ID_MAX + 1];
    char kme_cert[1024], kme_key[1024], kme_ca[1024]; /* the KME port's client side */
    relay_link_config links[RELAY_MAX_LINKS];
    size_t link_count;
    long key_ttl_seconds;      /* unfetched keys are erased after this */
    long peer_timeout_ms;      /* one inter-KME request */
    long verify_timeout_ms;    /* a key-caching transaction */
    long link_stock_max_bytes; /* ingest pauses above this much unused link key */
    long stock_max_keys;       /* keys kept ahead of demand per (master, slave, size); 0: none */
    long stock_max_age_s;      /* stock older than this is dropped */
} relay_config;

#endif
