/* The KME's metrics, served as Prometheus text at /metrics on the admin
 * listener. Never key material: counts, sizes, rates and times only. */
#ifndef KME_METRICS_H
#define KME_METRICS_H

#include <stddef.h>
#include "kme/context.h"

/* The whole exposition, malloc'd (length in *len), or NULL when out of memory. */
char *kme_metrics_text(kme_context *k, size_t *len);

#endif
