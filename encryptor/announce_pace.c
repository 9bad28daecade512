/* Keys held announced, from the keys used up recently (announce_pace.h). */
#include "encryptor/announce_pace.h"

#include <string.h>

void announce_pace_init(announce_pace *p, size_t announce_keys)
{
    memset(p, 0, sizeof *p);
    p->max = announce_keys < 1 ? 1 : announce_keys > FRAME_MAX_KEYS ? FRAME_MAX_KEYS : announce_keys;
}

void announce_pace_used_up(announce_pace *p, int64_t now_ms)
{
    p->used_up_ms[p->next] = now_ms;
    p->next = (p->next + 1) % FRAME_MAX_KEYS;
    if (p->count < FRAME_MAX_KEYS)
        p->count++;
}

/* Moves the windows on to now_ms. */
static void slide(announce_pace *p, int64_t now_ms)
{
    int64_t gap = now_ms - p->window_ms;
    if (gap < ANNOUNCE_WINDOW_MS)
        return;
    p->carried[1] = gap < 2 * ANNOUNCE_WINDOW_MS ? p->carried[0] : 0;
    p->carried[0] = 0;
    p->window_ms = now_ms - gap % ANNOUNCE_WINDOW_MS;
}

void announce_pace_carried(announce_pace *p, size_t n, int64_t now_ms)
{
    slide(p, now_ms);
    p->carried[0] += n;
}

size_t announce_pace_target(const announce_pace *p, size_t room, int64_t now_ms)
{
    size_t target = 1;
    for (size_t i = 0; i < p->count && target < p->max; i++)
        if (now_ms - p->used_up_ms[i] < ANNOUNCE_WINDOW_MS)
            target++;
    announce_pace recent = *p;
    slide(&recent, now_ms);
    if (target == 1 && p->max > 1 && recent.carried[0] + recent.carried[1] > room)
        target = 2; /* the key in use will not last long at this pace */
    return target;
}
