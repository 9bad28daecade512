/* A program's "stop now": raised once, read by any thread, and waited on by
 * workers that sleep between rounds so that they wake at once. */
#ifndef RUNTIME_STOP_SIGNAL_H
#define RUNTIME_STOP_SIGNAL_H

#include <pthread.h>
#include <stdatomic.h>

typedef struct {
    atomic_int raised;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} stop_signal;

void stop_signal_init(stop_signal *s);
void stop_signal_raise(stop_signal *s);
int stop_signal_raised(stop_signal *s);
/* Sleeps up to ms, waking early when raised. Returns 1 if raised. */
int stop_signal_sleep(stop_signal *s, long ms);

#endif
