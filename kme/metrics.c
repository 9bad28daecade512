/* The KME's metrics in the Prometheus text format. */
#include "kme/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *kme_metrics_text(kme_context *k, size_t *len)
{
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    if (!f)
        return NULL;
    fprintf(f, "# HELP qkd_kme_up 1 while the KME serves.\n# TYPE qkd_kme_up gauge\nqkd_kme_up{kme=\"%s\"} %d\n",
            k->cfg.kme_id, atomic_load(&k->serving) ? 1 : 0);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    *len = n;
    return out;
}

void kme_metrics_delivered(kme_context *k, const char *sae, const char *role, size_t keys, size_t bits)
{
    (void)k;
    (void)sae;
    (void)role;
    (void)keys;
    (void)bits;
}

void kme_metrics_relay(kme_context *k, const kme_relay_event *e)
{
    (void)k;
    (void)e;
}

size_t kme_metrics_recent_relays(kme_context *k, kme_relay_event *out, size_t max)
{
    (void)k;
    (void)out;
    (void)max;
    return 0;
}
