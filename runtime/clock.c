/* Wall and monotonic clocks (see clock.h). */
#include "runtime/clock.h"

#include <time.h>

static int64_t ms_of(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_wall_ms(void)
{
    return ms_of(CLOCK_REALTIME);
}

int64_t clock_mono_ms(void)
{
    return ms_of(CLOCK_MONOTONIC);
}

struct timespec clock_after_ms(clockid_t id, long ms)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

int64_t clock_mono_seconds(void)
{
    return clock_mono_ms() / 1000;
}
