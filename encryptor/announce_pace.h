/* How many keys one connection direction holds announced (the key in use
 * and those announced ahead of it), from what its traffic used recently:
 * one while the direction has used up no key within the last
 * ANNOUNCE_WINDOW_MS, one more for each key it used up within that time, at
 * most announce_keys. A direction starts with one key, announces further
 * ahead as its traffic grows, and stops announcing ahead when it goes idle,
 * so that a connection ends with few announced keys unused. */
#ifndef ENCRYPTOR_ANNOUNCE_PACE_H
#define ENCRYPTOR_ANNOUNCE_PACE_H

#include <stddef.h>
#include <stdint.h>
#include "encryptor/frame.h"

#define ANNOUNCE_WINDOW_MS 1000

typedef struct {
    int64_t used_up_ms[FRAME_MAX_KEYS]; /* when the last keys were used up, a ring */
    size_t count, next;
    size_t max; /* announce_keys */
} announce_pace;

void announce_pace_init(announce_pace *p, size_t announce_keys);
/* A key of the direction was used up at now_ms (monotonic). */
void announce_pace_used_up(announce_pace *p, int64_t now_ms);
/* Keys to hold announced now, the one in use included: 1 to announce_keys. */
size_t announce_pace_target(const announce_pace *p, int64_t now_ms);

#endif
