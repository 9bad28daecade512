/* Charges, refunds and the figures of the key economy (see key_economy.h). */
#include "kme/key_economy.h"
#include "runtime/clock.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACTIVE_MS 2000      /* an SAE asked for a link this recently: it takes part in the sharing */
#define RATE_SAMPLE_MS 1000 /* shortest interval what a link yields is measured over */
#define MAX_TRACKED 4096    /* SAEs with figures; later ones share the last row */

typedef struct {
    int have_stock;
    uint64_t owned_free;  /* as last measured */
    double charged_since; /* charged since that measure */
    /* What the link yields this end: its owned stock's growth plus what was
     * charged meanwhile, over samples at least RATE_SAMPLE_MS apart. */
    double rate_Bps; /* smoothed */
    uint64_t sample_owned;
    double sample_charged;
    int64_t last_ms;
    int scarce; /* at the last charge */
} link_state;

typedef struct {
    int64_t demand_ms; /* last asked for this link */
    double share_tokens;
    int64_t share_ms; /* 0: no share bucket yet */
} sae_link_state;

typedef struct {
    char id[ETSI_ID_MAX + 1];
    sae_class cls;
    long weight;
    double tokens; /* its own rate's bucket */
    int64_t tokens_ms;
    uint64_t charged;
    uint64_t refused[ECONOMY_REASONS];
    sae_link_state link[ECONOMY_MAX_LINKS];
} sae_state;

struct key_economy {
    pthread_mutex_t lock;
    int64_t (*now_ms)(void); /* a monotonic clock */
    link_state links[ECONOMY_MAX_LINKS];
    sae_state *saes;
    size_t n, cap;
};

static const char *const reason_names[ECONOMY_REASONS] = {"critical_floor", "rate_limit", "fair_share",
                                                          "max_key_count"};

const char *economy_reason_name(economy_reason r)
{
    return r < ECONOMY_REASONS ? reason_names[r] : "?";
}

void economy_answer(economy_reason reason, long retry_after_s, const char *detail, http_response *resp)
{
    static const char *const messages[ECONOMY_REASONS] = {"link key kept for critical SAEs", "rate limit reached",
                                                          "fair share reached", "max_key_count reached"};
    http_error(resp, 503, messages[reason < ECONOMY_REASONS ? reason : ECONOMY_HELD], "%s", detail);
    resp->retry_after_s = retry_after_s < 1 ? 1 : retry_after_s;
}

key_economy *economy_new(void)
{
    key_economy *e = calloc(1, sizeof *e);
    if (e) {
        pthread_mutex_init(&e->lock, NULL);
        e->now_ms = clock_mono_ms;
    }
    return e;
}

void economy_set_clock(key_economy *e, int64_t (*now_ms)(void))
{
    e->now_ms = now_ms;
}

void economy_free(key_economy *e)
{
    if (!e)
        return;
    pthread_mutex_destroy(&e->lock);
    free(e->saes);
    free(e);
}

/* The row of sae, created on first use (under the lock); NULL when out of memory. */
static sae_state *row_of(key_economy *e, const char *sae)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->saes[i].id, sae) == 0)
            return &e->saes[i];
    if (e->n == MAX_TRACKED)
        return &e->saes[e->n - 1];
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        sae_state *grown = realloc(e->saes, cap * sizeof *grown);
        if (!grown)
            return NULL;
        e->saes = grown;
        e->cap = cap;
    }
    sae_state *s = &e->saes[e->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s", sae);
    return s;
}

static long seconds_until(double missing_bytes, double rate_Bps)
{
    if (rate_Bps <= 0)
        return 1;
    double s = ceil(missing_bytes / rate_Bps);
    return s < 1 ? 1 : s > 3600 ? 3600 : (long)s;
}

/* The highest class (lowest value) among the SAEs asking for link li now,
 * and the sum of the weights of that class's SAEs. */
static sae_class top_class(const key_economy *e, int li, int64_t now, long *weights)
{
    sae_class top = SAE_CLASS_COUNT;
    for (size_t i = 0; i < e->n; i++)
        if (now - e->saes[i].link[li].demand_ms <= ACTIVE_MS && e->saes[i].cls < top)
            top = e->saes[i].cls;
    *weights = 0;
    for (size_t i = 0; i < e->n; i++)
        if (now - e->saes[i].link[li].demand_ms <= ACTIVE_MS && e->saes[i].cls == top)
            *weights += e->saes[i].weight;
    return top;
}

static int refuse(sae_state *s, economy_refusal *why, economy_reason r, long retry_s)
{
    s->refused[r]++;
    why->reason = r;
    why->retry_after_s = retry_s;
    return -1;
}

int economy_charge(key_economy *e, const sae_policy_set *p, const char *sae, int li, const char *peer, long bytes,
                   economy_refusal *why)
{
    int64_t now = e->now_ms();
    const sae_policy *pol = sae_policy_of(p, sae);
    memset(why, 0, sizeof *why);
    pthread_mutex_lock(&e->lock);
    sae_state *s = row_of(e, sae);
    if (!s) {
        pthread_mutex_unlock(&e->lock);
        return 0;
    }
    s->cls = pol->cls;
    s->weight = pol->weight;
    link_state *L = li >= 0 && li < ECONOMY_MAX_LINKS ? &e->links[li] : NULL;
    sae_link_state *sl = L ? &s->link[li] : NULL;
    if (sl)
        sl->demand_ms = now;
    double free_bytes = L && L->have_stock ? (double)L->owned_free - L->charged_since : INFINITY;
    if (free_bytes < 0)
        free_bytes = 0;
    int rc = 0;
    /* The floor kept for the critical class. */
    if (L && pol->cls != SAE_CLASS_CRITICAL && p->critical_floor_bytes > 0 &&
        free_bytes < (double)(p->critical_floor_bytes + bytes)) {
        snprintf(why->detail, sizeof why->detail,
                 "the link to %s has %.0f bytes of key; the last %ld are kept for critical SAEs and %s is %s", peer,
                 free_bytes, p->critical_floor_bytes, sae, sae_class_name(pol->cls));
        rc = refuse(s, why, ECONOMY_FLOOR,
                    seconds_until((double)(p->critical_floor_bytes + bytes) - free_bytes, L->rate_Bps));
        goto out;
    }
    /* The SAE's own rate. */
    double rate_Bps = (double)pol->rate_bps / 8;
    if (pol->rate_bps > 0) {
        double cap = pol->burst_bytes > 0 ? (double)pol->burst_bytes : rate_Bps;
        if (cap < 65536)
            cap = 65536;
        s->tokens = s->tokens_ms ? s->tokens + (double)(now - s->tokens_ms) / 1000 * rate_Bps : cap;
        if (s->tokens > cap)
            s->tokens = cap;
        s->tokens_ms = now;
        double need = (double)bytes < cap ? (double)bytes : cap;
        if (s->tokens < need) {
            snprintf(why->detail, sizeof why->detail,
                     "%s may spend %ld bits of link key per second (burst %.0f bytes); this request needs %ld bytes",
                     sae, pol->rate_bps, cap, bytes);
            rc = refuse(s, why, ECONOMY_RATE, seconds_until(need - s->tokens, rate_Bps));
            goto out;
        }
    }
    /* A scarce link: classes in order, then shares by weight. */
    int scarce = L && L->have_stock && free_bytes < (double)p->fair_share_below_bytes;
    if (L)
        L->scarce = scarce;
    if (scarce) {
        long weights;
        sae_class top = top_class(e, li, now, &weights);
        if (pol->cls > top) {
            snprintf(why->detail, sizeof why->detail, "the link to %s is scarce and serves %s SAEs first; %s is %s",
                     peer, sae_class_name(top), sae, sae_class_name(pol->cls));
            rc = refuse(s, why, ECONOMY_SHARE, seconds_until((double)bytes, L->rate_Bps));
            goto out;
        }
        /* Shares of what the link yields, among the SAEs of the class
         * asking for it (one alone takes what there is; while the link
         * yields nothing, its stock goes to the first to ask). */
        if (L->rate_Bps > 0 && weights > pol->weight) {
            double share = L->rate_Bps * (double)pol->weight / (double)(weights > 0 ? weights : 1);
            double cap = share > (double)bytes ? share : (double)bytes;
            if (!sl->share_ms || now - sl->share_ms > ACTIVE_MS)
                sl->share_tokens = share < (double)bytes ? share : (double)bytes;
            else
                sl->share_tokens += (double)(now - sl->share_ms) / 1000 * share;
            if (sl->share_tokens > cap)
                sl->share_tokens = cap;
            sl->share_ms = now;
            if (sl->share_tokens <= 0) {
                snprintf(why->detail, sizeof why->detail,
                         "the link to %s is scarce and shared by weight: %s has its share (weight %ld of %ld, %.0f "
                         "bytes/s)",
                         peer, sae, pol->weight, weights, share);
                rc = refuse(s, why, ECONOMY_SHARE, seconds_until(-sl->share_tokens + 1, share));
                goto out;
            }
            sl->share_tokens -= (double)bytes;
        }
    }
    if (pol->rate_bps > 0)
        s->tokens -= (double)bytes;
    if (L) {
        L->charged_since += (double)bytes;
        L->sample_charged += (double)bytes;
    }
    s->charged += (uint64_t)bytes;
out:
    pthread_mutex_unlock(&e->lock);
    return rc;
}

void economy_refund(key_economy *e, const char *sae, int li, long bytes)
{
    pthread_mutex_lock(&e->lock);
    sae_state *s = row_of(e, sae);
    if (s) {
        s->charged = s->charged >= (uint64_t)bytes ? s->charged - (uint64_t)bytes : 0;
        s->tokens += (double)bytes;
        if (li >= 0 && li < ECONOMY_MAX_LINKS) {
            s->link[li].share_tokens += (double)bytes;
            link_state *L = &e->links[li];
            L->charged_since = L->charged_since > (double)bytes ? L->charged_since - (double)bytes : 0;
            L->sample_charged = L->sample_charged > (double)bytes ? L->sample_charged - (double)bytes : 0;
        }
    }
    pthread_mutex_unlock(&e->lock);
}

void economy_count_refusal(key_economy *e, const char *sae, economy_reason reason)
{
    pthread_mutex_lock(&e->lock);
    sae_state *s = row_of(e, sae);
    if (s && reason < ECONOMY_REASONS)
        s->refused[reason]++;
    pthread_mutex_unlock(&e->lock);
}

void economy_link_stock(key_economy *e, int li, uint64_t owned_free)
{
    if (li < 0 || li >= ECONOMY_MAX_LINKS)
        return;
    int64_t now = e->now_ms();
    pthread_mutex_lock(&e->lock);
    link_state *L = &e->links[li];
    L->have_stock = 1;
    L->owned_free = owned_free;
    L->charged_since = 0;
    if (!L->last_ms) {
        L->last_ms = now;
        L->sample_owned = owned_free;
        L->sample_charged = 0;
    } else if (now - L->last_ms >= RATE_SAMPLE_MS) {
        double grown = (double)owned_free - (double)L->sample_owned + L->sample_charged;
        double inst = grown > 0 ? grown * 1000 / (double)(now - L->last_ms) : 0;
        L->rate_Bps = L->rate_Bps > 0 ? 0.7 * L->rate_Bps + 0.3 * inst : inst;
        L->last_ms = now;
        L->sample_owned = owned_free;
        L->sample_charged = 0;
    }
    pthread_mutex_unlock(&e->lock);
}

void economy_each_sae(key_economy *e, economy_row fn, void *ctx)
{
    int64_t now = e->now_ms();
    pthread_mutex_lock(&e->lock);
    for (size_t i = 0; i < e->n; i++) {
        const sae_state *s = &e->saes[i];
        economy_view v = {s->id, s->cls, s->weight, s->charged, {0}, {0}};
        memcpy(v.refused, s->refused, sizeof v.refused);
        for (int li = 0; li < ECONOMY_MAX_LINKS; li++) {
            long weights;
            if (!e->links[li].scarce || now - s->link[li].demand_ms > ACTIVE_MS ||
                top_class(e, li, now, &weights) != s->cls || weights <= 0)
                continue;
            v.share_Bps[li] = e->links[li].rate_Bps * (double)s->weight / (double)weights;
        }
        fn(ctx, &v);
    }
    pthread_mutex_unlock(&e->lock);
}
