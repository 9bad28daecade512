/* The clocks every program reads: wall time in ms (for times that are
 * stored or sent, and survive a restart) and monotonic time (for ageing,
 * rates and timeouts within one run). */
#ifndef RUNTIME_CLOCK_H
#define RUNTIME_CLOCK_H

#include <stdint.h>

int64_t clock_wall_ms(void);
int64_t clock_mono_ms(void);
int64_t clock_mono_seconds(void);

#endif
