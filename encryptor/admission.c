/* The allow list and the per-source caps of the listening port (admission.h). */
#include "encryptor/admission.h"

#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#define SPARE_SOURCES 1024 /* addresses remembered beyond those with open connections */

typedef struct {
    source_addr src;
    int in_use;
    long open;       /* connections open from src */
    int64_t tokens;  /* new connections src may open now, in thousandths */
    int64_t last_ms; /* when tokens was last brought up to date */
} source_entry;

struct admission {
    const enc_config *cfg;
    source_entry *e;
    size_t cap;
};

const char *admission_reason_name(enum enc_refusal reason)
{
    static const char *const names[ENC_REFUSED_COUNT] = {"not_allowed", "per_source", "rate", "max_connections",
                                                         "setup"};
    return reason < ENC_REFUSED_COUNT ? names[reason] : "?";
}

admission *admission_new(const enc_config *cfg)
{
    admission *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->cfg = cfg;
    a->cap = (size_t)cfg->max_connections + SPARE_SOURCES;
    a->e = calloc(a->cap, sizeof *a->e);
    if (!a->e) {
        free(a);
        return NULL;
    }
    return a;
}

void admission_free(admission *a)
{
    if (!a)
        return;
    free(a->e);
    free(a);
}

int source_of(int fd, source_addr *out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(out, 0, sizeof *out);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET) {
        memcpy(out->addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        out->v4 = 1;
        return 0;
    }
    if (ss.ss_family != AF_INET6)
        return -1;
    const struct in6_addr *a6 = &((struct sockaddr_in6 *)&ss)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a6)) {
        memcpy(out->addr, a6->s6_addr + 12, 4);
        out->v4 = 1;
    } else {
        memcpy(out->addr, a6->s6_addr, 16);
    }
    return 0;
}

static int allowed(const enc_config *cfg, const source_addr *src)
{
    if (cfg->allow_count == 0)
        return 1;
    if (!src->v4)
        return 0;
    uint32_t ip =
        (uint32_t)src->addr[0] << 24 | (uint32_t)src->addr[1] << 16 | (uint32_t)src->addr[2] << 8 | src->addr[3];
    for (size_t i = 0; i < cfg->allow_count; i++)
        if ((ip & cfg->allow[i].mask) == cfg->allow[i].addr)
            return 1;
    return 0;
}

static int same(const source_addr *x, const source_addr *y)
{
    return x->v4 == y->v4 && memcmp(x->addr, y->addr, x->v4 ? 4 : 16) == 0;
}

#define TOKEN 1000 /* one new connection, in thousandths */

static void refill(const enc_config *cfg, source_entry *e, int64_t now_ms)
{
    if (now_ms > e->last_ms) {
        int64_t full = (int64_t)cfg->new_connections_burst * TOKEN, gap = now_ms - e->last_ms;
        /* rate connections per second = rate thousandths per millisecond */
        e->tokens = gap >= full ? full : e->tokens + gap * (int64_t)cfg->new_connections_per_second;
        if (e->tokens > full)
            e->tokens = full;
        e->last_ms = now_ms;
    }
}

/* The entry of src, or a new one: a free slot, else the idle source whose
 * state is oldest (it starts again with a full bucket). NULL when every
 * slot has open connections. */
static source_entry *entry_for(admission *a, const source_addr *src, int64_t now_ms)
{
    source_entry *free_slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < a->cap; i++) {
        source_entry *e = &a->e[i];
        if (!e->in_use) {
            if (!free_slot)
                free_slot = e;
            continue;
        }
        if (same(&e->src, src))
            return e;
        if (e->open == 0 && (!oldest || e->last_ms < oldest->last_ms))
            oldest = e;
    }
    source_entry *e = free_slot ? free_slot : oldest;
    if (!e)
        return NULL;
    memset(e, 0, sizeof *e);
    e->src = *src;
    e->in_use = 1;
    e->tokens = (int64_t)a->cfg->new_connections_burst * TOKEN;
    e->last_ms = now_ms;
    return e;
}

int admission_enter(admission *a, const source_addr *src, int64_t now_ms, enum enc_refusal *reason)
{
    const enc_config *cfg = a->cfg;
    if (!allowed(cfg, src)) {
        *reason = ENC_REFUSED_NOT_ALLOWED;
        return -1;
    }
    source_entry *e = entry_for(a, src, now_ms);
    if (!e) {
        *reason = ENC_REFUSED_MAX_CONNECTIONS;
        return -1;
    }
    if (e->open >= cfg->max_connections_per_source) {
        *reason = ENC_REFUSED_PER_SOURCE;
        return -1;
    }
    if (cfg->new_connections_per_second) {
        refill(cfg, e, now_ms);
        if (e->tokens < TOKEN) {
            *reason = ENC_REFUSED_RATE;
            return -1;
        }
        e->tokens -= TOKEN;
    }
    e->open++;
    return 0;
}

void admission_leave(admission *a, const source_addr *src)
{
    for (size_t i = 0; i < a->cap; i++) {
        source_entry *e = &a->e[i];
        if (e->in_use && same(&e->src, src)) {
            if (e->open > 0)
                e->open--;
            return;
        }
    }
}
