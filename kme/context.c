/* Clock and stop-aware sleep shared by the KME's workers (see context.h). */
#include "kme/context.h"

#include <errno.h>
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
