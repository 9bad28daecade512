/* The clocks every program reads: wall time in ms (for times that are
 * stored or sent, and survive a restart) and monotonic time (for ageing,
 * rates and timeouts within one run). */
#ifndef RUNTIME_CLOCK_H
#define RUNTIME_CLOCK_H

#include <stdint.h>
#include <time.h>

int64_t clock_wall_ms(void);
int64_t clock_mono_ms(void);
int64_t clock_mono_seconds(void);
/* The time ms from now on clock id, for pthread_cond_timedwait (whose
 * condition must use that clock). */
struct timespec clock_after_ms(clockid_t id, long ms);

#endif
