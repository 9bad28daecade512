/* The KME's admin listener (config "admin_listen"): /metrics (kme/metrics.h),
 * /healthz, /readyz, and the status page at / (kme/status_page.h). */
#ifndef KME_ADMIN_H
#define KME_ADMIN_H

#include "kme/context.h"

/* Starts the listener when the config names one (else does nothing).
 * Returns -1 with a message in err when it cannot listen. */
int kme_admin_start(kme_context *k, char *err, size_t errlen);
void kme_admin_stop(kme_context *k);

#endif
