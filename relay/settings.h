/* The relay layer's settings: what it needs of the site's configuration,
 * fixed while the KME runs (the daemon fills them from its config file). */
#ifndef RELAY_SETTINGS_H
#define RELAY_SETTINGS_H

#include <stddef.h>
#include "api/etsi014.h"
#include "api/kme_link_ids.h"

#define RELAY_MAX_LINKS 32
/* The least key one device request must bring (one link block: 48 bytes of
 * it go to the verification tag). */
#define RELAY_DEVICE_MIN_BLOCK_BYTES 112

/* Where a link's key comes from (relay/link_source.h). */
enum relay_link_source {
    LINK_SOURCE_FILES = 0,  /* <seq>.key files dropped into key_dir */
    LINK_SOURCE_ETSI014 = 1 /* the local QKD device's ETSI GS QKD 014 API, this KME as its SAE */
};

/* The local QKD device of an etsi014 link. */
typedef struct {
    char url[512];                /* its ETSI 014 base URL, https://host:port (the path /api/v1/keys/... follows) */
    char sae_id[ETSI_ID_MAX + 1]; /* this KME's SAE ID at the device (the CN of cert) */
    char peer_sae_id[ETSI_ID_MAX + 1]; /* the peer KME's SAE ID at the far device */
    char cert[1024], key[1024];        /* this KME's client certificate at the device */
    char ca[1024];                     /* the CA the device's server certificate is checked against */
    long key_size_bits;                /* size of each key asked for */
    long batch;                        /* keys per enc_keys request (one link block) */
    long rate_keys_per_s;              /* most keys asked for per second; 0: as fast as the stock bound allows */
    long timeout_ms;                   /* one device request */
} relay_device_config;

/* One QKD link as configured. */
typedef struct {
    char peer_id[ETSI_ID_MAX + 1]; /* KME ID of the other end (CN of its certificate) */
    char url[512];                 /* its KME port, https://host:port */
    int source;                    /* enum relay_link_source */
    char key_dir[1024];            /* files: where the QKD device drops key blocks for this link */
    relay_device_config device;    /* etsi014: the local device */
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
    long relay_max_hops;       /* links a key relayed from here may cross at most (1..KME_RELAY_MAX_HOPS) */
} relay_config;

#endif
