/* The key economy at run time: what each SAE spends of each link's key,
 * against its policy (kme/sae_policy.h). A charge is taken before link key
 * is carved, relayed or drawn from stock for an SAE, and refused (503 with
 * the limit named and a Retry-After) when it would
 *   - take a link's stock below the floor kept for critical SAEs, unless the
 *     SAE is critical;
 *   - exceed the SAE's own rate (a token bucket of rate_bps and burst_bytes);
 *   - on a scarce link (stock under fair_share_below_bytes), serve an SAE
 *     while a higher class asks for that link, or beyond its weight's share
 *     of what the link yields this end among the SAEs of its class asking
 *     for it.
 * A request that fails after its charge is refunded. Thread-safe. */
#ifndef KME_KEY_ECONOMY_H
#define KME_KEY_ECONOMY_H

#include <stdint.h>
#include "kme/sae_policy.h"
#include "runtime/http_server.h"

#define ECONOMY_MAX_LINKS 32

typedef enum {
    ECONOMY_FLOOR = 0,
    ECONOMY_RATE = 1,
    ECONOMY_SHARE = 2,
    ECONOMY_HELD = 3,
    ECONOMY_REASONS = 4
} economy_reason;

typedef struct key_economy key_economy;

typedef struct {
    economy_reason reason;
    long retry_after_s; /* when asking again may succeed (1 s at least) */
    char detail[256];
} economy_refusal;

key_economy *economy_new(void);
void economy_free(key_economy *e);
/* The monotonic clock (ms) the rates are measured with: clock_mono_ms
 * unless set (a test's clock). */
void economy_set_clock(key_economy *e, int64_t (*now_ms)(void));

/* Takes bytes of the link key of link li (to peer) for sae: 0, or -1 with why. */
int economy_charge(key_economy *e, const sae_policy_set *p, const char *sae, int li, const char *peer, long bytes,
                   economy_refusal *why);
/* Gives back a charge whose request failed. */
void economy_refund(key_economy *e, const char *sae, int li, long bytes);
/* Counts a refusal for reasons decided elsewhere (ECONOMY_HELD). */
void economy_count_refusal(key_economy *e, const char *sae, economy_reason reason);
/* The stock of link li this end owns, as measured now (about once a
 * second): the floor and scarcity are judged against it, and what the link
 * yields this end is learned from its changes. */
void economy_link_stock(key_economy *e, int li, uint64_t owned_free);

/* What the figures show of one SAE: its policy as last applied, the link
 * key charged to it, its refusals by reason, and on each link that is
 * scarce now and that it asks for, its share (bytes/s; 0 elsewhere). */
typedef struct {
    const char *sae;
    sae_class cls;
    long weight;
    uint64_t charged;
    uint64_t refused[ECONOMY_REASONS];
    double share_Bps[ECONOMY_MAX_LINKS];
} economy_view;
typedef void (*economy_row)(void *ctx, const economy_view *v);
void economy_each_sae(key_economy *e, economy_row fn, void *ctx);
const char *economy_reason_name(economy_reason r);
/* The ETSI error of a refusal: 503, the limit named, and Retry-After. */
void economy_answer(economy_reason reason, long retry_after_s, const char *detail, http_response *resp);

#endif
