/* Monotonic clock seconds, for rotation, ageing and rate limits. */
#ifndef ENCRYPTOR_MONO_H
#define ENCRYPTOR_MONO_H

#include <stdint.h>
#include <time.h>

static inline int64_t mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

#endif
