/* The KME's JSON configuration file: its identity, listeners, TLS files, SAEs, links and limits.
 * The SAEs hosted here and the ETSI limits may change while the KME serves
 * (SIGHUP, kme/reload.h): they are read only through kme_config_live,
 * kme_config_limits and kme_config_hosts_sae, from any thread. */
#ifndef KME_CONFIG_H
#define KME_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include "api/etsi014.h"
#include "kme/sae_policy.h"
#include "kme/store_key.h"
#include "relay/settings.h"
#include "runtime/http_server.h"

#define KME_MAX_SAES 256
#define KME_MAX_LINKS RELAY_MAX_LINKS

/* The settings a reload may change while requests are served. Never changed
 * once published: a reader may keep using the one it took, since every
 * published one is freed only with the configuration (kme_config_free). */
typedef struct kme_live_config {
    char *saes[KME_MAX_SAES]; /* the SAEs this site hosts */
    size_t sae_count;
    etsi_limits limits;
    sae_policy_set policy;           /* the key economy (kme/sae_policy.h) */
    struct kme_live_config *retired; /* published before this one */
} kme_live_config;

typedef struct {
    char kme_id[ETSI_ID_MAX + 1];
    char data_dir[1024];
    store_key_setting store_key; /* wraps the store's data key (kme/store_key.h) */
    net_endpoint sae_listen, kme_listen;
    net_endpoint admin_listen; /* metrics, health and status page; port 0: none */
    char sae_cert[1024], sae_key[1024], sae_client_ca[1024];
    char kme_cert[1024], kme_key[1024], kme_ca[1024];
    char sae_client_crl[1024], kme_crl[1024]; /* revocation lists; "": none; re-read on reload */
    _Atomic(kme_live_config *) live;          /* SAEs and limits: read with the accessors below */
    relay_link_config links[KME_MAX_LINKS];
    size_t link_count;
    long key_ttl_seconds;              /* unfetched keys are erased after this */
    long fetch_retry_seconds;          /* a slave may fetch a key again this long (lost answers); 0: once */
    long peer_timeout_ms;              /* one inter-KME request */
    long verify_timeout_ms;            /* a key-caching transaction */
    long link_stock_max_bytes;         /* ingest pauses above this much unused link key */
    long store_max_mb;                 /* LMDB map size */
    long store_high_water_percent;     /* link ingest pauses with this much of the map in use */
    long connection_limit;             /* concurrent connections per listener */
    long connection_limit_per_address; /* concurrent connections per listener from one address */
    long connection_timeout_s;         /* idle or slow clients are dropped after this */
    long stock_max_keys;               /* link keys kept reserved ahead of demand per (master, slave, size); 0: none */
    long stock_max_age_s;              /* stock older than this is dropped */
    long relay_max_hops;               /* ceiling of the hop limit of keys relayed from here */
    char log_level[16];                /* as loaded; a reload sets the level in force (runtime/log.h) */
    char audit_log[1024];              /* the audit log's path (kme/audit.h); "": none */
} kme_config;

/* Loads and validates FILE. On error returns -1 and writes a message to err. */
int kme_config_load(const char *path, kme_config *cfg, char *err, size_t errlen);
void kme_config_free(kme_config *cfg);

/* The SAEs, limits and policy in force (never NULL for a loaded configuration). */
const kme_live_config *kme_config_live(const kme_config *cfg);
etsi_limits kme_config_limits(const kme_config *cfg);
/* The most keys that may wait here for sae as a slave: its policy's
 * max_key_count, else the ETSI limit. */
long kme_config_max_held(const kme_config *cfg, const char *sae);

/* Lookups. */
int kme_config_hosts_sae(const kme_config *cfg, const char *sae_id);
int kme_config_link_index(const kme_config *cfg, const char *peer_id);

/* Reload. The name of the first setting of next that differs from cfg and
 * cannot change while the KME runs, or NULL when none does. */
const char *kme_config_fixed_change(const kme_config *cfg, const kme_config *next);
/* Puts next's SAEs and limits in force in cfg (next no longer holds them);
 * readers on other threads see the old or the new, whole. One caller at a
 * time. */
void kme_config_publish_live(kme_config *cfg, kme_config *next);

#endif
