/* How many keys one connection direction holds announced (the key in use
 * and those announced ahead of it), from what its traffic used recently:
 * one while the direction has used up no key within the last
 * ANNOUNCE_WINDOW_MS, one more for each key it used up within that time, at
 * most announce_keys; and one ahead of the key in use as soon as that key
 * has less room left than the payload the direction carried recently, so
 * that the receiver fetches the next key before the data that needs it
 * arrives. A direction starts with one key, announces further ahead as its
 * traffic grows, and stops announcing ahead when it goes idle, so that a
 * connection ends with few announced keys unused. */
#ifndef ENCRYPTOR_ANNOUNCE_PACE_H
#define ENCRYPTOR_ANNOUNCE_PACE_H

#include <stddef.h>
#include <stdint.h>
#include "encryptor/frame.h"

#define ANNOUNCE_WINDOW_MS 1000

typedef struct {
    int64_t used_up_ms[FRAME_MAX_KEYS]; /* when the last keys were used up, a ring */
    size_t count, next;
    size_t max;          /* announce_keys */
    int64_t window_ms;   /* start of the current window of ANNOUNCE_WINDOW_MS */
    uint64_t carried[2]; /* payload bytes carried in the current and the previous window */
} announce_pace;

void announce_pace_init(announce_pace *p, size_t announce_keys);
/* A key of the direction was used up at now_ms (monotonic). */
void announce_pace_used_up(announce_pace *p, int64_t now_ms);
/* n payload bytes were sealed at now_ms. */
void announce_pace_carried(announce_pace *p, size_t n, int64_t now_ms);
/* Keys to hold announced now, the one in use included: 1 to announce_keys.
 * room: what the key in use can still carry. */
size_t announce_pace_target(const announce_pace *p, size_t room, int64_t now_ms);

#endif
