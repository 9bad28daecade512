/* The key economy's policy, from the KME configuration's "key_economy"
 * object: what each SAE may spend of link key (a sustained rate and a
 * burst), how many keys may wait for it as a slave (max_key_count), its
 * priority class and its weight within the class, the floor of every link's
 * stock kept for the critical class, and the stock below which a link is
 * scarce and shared by weight. Part of the live configuration: a reload
 * (SIGHUP) puts a new policy in force. */
#ifndef KME_SAE_POLICY_H
#define KME_SAE_POLICY_H

#include <stddef.h>
#include <jansson.h>
#include "api/etsi014.h"

#define SAE_POLICY_MAX 256

typedef enum { SAE_CLASS_CRITICAL = 0, SAE_CLASS_STANDARD = 1, SAE_CLASS_BULK = 2, SAE_CLASS_COUNT = 3 } sae_class;

typedef struct {
    char sae[ETSI_ID_MAX + 1]; /* "" for the default */
    sae_class cls;
    long weight;        /* its share among the SAEs of its class on a scarce link */
    long rate_bps;      /* link key it may spend, bits per second; 0: no limit */
    long burst_bytes;   /* what it may spend at once above the rate; 0: one second of rate_bps */
    long max_key_count; /* keys that may wait for it as a slave; 0: the ETSI limit max_key_count */
} sae_policy;

typedef struct {
    sae_policy def; /* for every SAE not listed */
    sae_policy list[SAE_POLICY_MAX];
    size_t count;
    long critical_floor_bytes;   /* of each link's stock, kept for critical SAEs; 0: none */
    long fair_share_below_bytes; /* a link with less stock than this is shared by class and weight */
} sae_policy_set;

/* The defaults: every SAE standard, weight 1, no rate limit, no floor,
 * links shared by weight below 1 MiB of stock. */
void sae_policy_defaults(sae_policy_set *set);
/* Reads the optional "key_economy" member of root into set (defaults
 * first). 0, or -1 with err. */
int sae_policy_parse(json_t *root, sae_policy_set *set, char *err, size_t errlen);
/* The policy of sae (the default when it is not listed). */
const sae_policy *sae_policy_of(const sae_policy_set *set, const char *sae);
const char *sae_class_name(sae_class c);

#endif
