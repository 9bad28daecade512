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

size_t announce_pace_target(const announce_pace *p, int64_t now_ms)
{
    size_t target = 1;
    for (size_t i = 0; i < p->count && target < p->max; i++)
        if (now_ms - p->used_up_ms[i] < ANNOUNCE_WINDOW_MS)
            target++;
    return target;
}
