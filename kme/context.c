/* Clock and stop-aware sleep shared by the KME's workers (see context.h). */
#include "kme/context.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t kme_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kme_sleep(kme_context *k, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&k->stop_lock);
    while (!atomic_load(&k->stopping))
        if (pthread_cond_timedwait(&k->stop_cond, &k->stop_lock, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&k->stop_lock);
    return atomic_load(&k->stopping);
}

kme_dest *kme_dest_get(kme_context *k, const char *id, int create)
{
    size_t n = atomic_load(&k->dest_count);
    for (size_t i = 0; i < n; i++)
        if (strcmp(k->dests[i].id, id) == 0)
            return &k->dests[i];
    if (!create)
        return NULL;
    pthread_mutex_lock(&k->dest_lock);
    kme_dest *d = NULL;
    n = atomic_load(&k->dest_count);
    for (size_t i = 0; i < n && !d; i++)
        if (strcmp(k->dests[i].id, id) == 0)
            d = &k->dests[i];
    if (!d && n < KME_MAX_DESTS) {
        d = &k->dests[n];
        memset(d, 0, sizeof *d);
        snprintf(d->id, sizeof d->id, "%s", id);
        int li = kme_config_link_index(&k->cfg, id);
        d->link = li >= 0 ? &k->links[li] : NULL;
        pthread_mutex_init(&d->stock_lock, NULL);
        atomic_store(&k->dest_count, n + 1);
    }
    pthread_mutex_unlock(&k->dest_lock);
    return d;
}
