/* The KME's metrics, served as Prometheus text at /metrics on the admin
 * listener, and the recent relay activity the status page draws. Never key
 * material: counts, sizes, rates and times only; labels are IDs (SAE, KME,
 * link) and fixed words. Callable from any thread. One KME per process: the
 * counters are the process's own. The families are listed in api/admin.yaml. */
#ifndef KME_METRICS_H
#define KME_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "kme/context.h"

/* The whole exposition, malloc'd (length in *len), or NULL when out of memory. */
char *kme_metrics_text(kme_context *k, size_t *len);

/* Keys handed to an SAE (role "master" or "slave"), after their commit. */
void kme_metrics_delivered(kme_context *k, const char *sae, const char *role, size_t keys, size_t bits);

/* A relay request finished at its origin. */
void kme_metrics_relay(void *ctx, const relay_event *e);

/* Up to max recent relay events, newest first; returns how many. */
size_t kme_metrics_recent_relays(kme_context *k, relay_event *out, size_t max);

/* An answer was queued on the SAE port or the KME port with its final status
 * (deferred requests too): the listeners' on_answer hook (runtime/http_server.h);
 * ctx is the kme_context. */
void kme_metrics_sae_answer(void *ctx, const char *method, const char *path, int status);
void kme_metrics_kme_answer(void *ctx, const char *method, const char *path, int status);

/* The stock of link l as the router last counted it for its advert (about
 * once a second); also samples the link's ingest counter for the rate. */
void kme_metrics_link_stock(void *ctx, const relay_link *l, const lb_stock *st);

/* blocks of link l were discarded at this end because the two ends' tags
 * differed (committed). */
void kme_metrics_verify_failed(void *ctx, const relay_link *l, size_t blocks);

/* saes SAEs are claimed by more than one KME in the routes last computed
 * (the alarm qkd_kme_sae_conflicts). */
void kme_metrics_sae_conflicts(void *ctx, size_t saes);

#endif
