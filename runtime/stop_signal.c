/* The stop signal (see stop_signal.h). */
#include "runtime/stop_signal.h"
#include "runtime/clock.h"

#include <errno.h>
#include <time.h>

void stop_signal_init(stop_signal *s)
{
    atomic_store(&s->raised, 0);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
}

void stop_signal_raise(stop_signal *s)
{
    pthread_mutex_lock(&s->lock);
    atomic_store(&s->raised, 1);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

int stop_signal_raised(stop_signal *s)
{
    return atomic_load(&s->raised);
}

int stop_signal_sleep(stop_signal *s, long ms)
{
    struct timespec until = clock_after_ms(CLOCK_REALTIME, ms);
    pthread_mutex_lock(&s->lock);
    while (!atomic_load(&s->raised))
        if (pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&s->lock);
    return atomic_load(&s->raised);
}
