/* The link-state advert of the key routing protocol (docs/ARCHITECTURE.md, life of a key,
 * step 6), flooded between KMEs over POST /kme/v1/advert: the origin's links
 * (up/down, owned verified key, ingest rate) and the SAEs it hosts. One
 * encode/decode shared by the sender and the receivers.
 *
 * {"origin": KME_ID, "seq": n, "age_ms": n,
 *  "links": [{"peer": KME_ID, "up": bool, "stock_bytes": n, "rate_bps": n}],
 *  "saes": [SAE_ID, ...], "cert": base64, "sig": base64}
 *
 * Signed by its origin (relay/advert_sign.h): "cert" is the origin's KME
 * certificate (DER, base64), "sig" its signature over a canonical encoding of
 * every member but age_ms, cert and sig. Both are required here; the
 * receiving KME checks them.
 *
 * Integers are non-negative and at most INT64_MAX (the range of a JSON
 * integer here). Members not named above are ignored, so a later version may
 * add some without splitting the network while it is upgraded. */
#ifndef API_KME_ADVERT_H
#define API_KME_ADVERT_H

#include <stddef.h>
#include <stdint.h>
#include "api/etsi014.h"

#define KME_ADVERT_MAX_LINKS 64
#define KME_ADVERT_MAX_SAES 256
#define KME_ADVERT_CERT_MAX 6000 /* base64 characters of the certificate at most */
#define KME_ADVERT_SIG_MAX 1400  /* base64 characters of the signature at most */

typedef struct {
    char peer[ETSI_ID_MAX + 1];
    int up;               /* 1: the link carries key and the peer answers */
    uint64_t stock_bytes; /* key the origin owns on this link: verified, unused */
    uint64_t rate_bps;    /* ingest rate of link key, bits per second */
} kme_advert_link;

typedef struct {
    char origin[ETSI_ID_MAX + 1];
    uint64_t seq;    /* origin's counter: higher is newer */
    uint64_t age_ms; /* time since the origin made it */
    size_t link_count;
    kme_advert_link links[KME_ADVERT_MAX_LINKS];
    size_t sae_count;
    char saes[KME_ADVERT_MAX_SAES][ETSI_ID_MAX + 1];
    char cert[KME_ADVERT_CERT_MAX + 1]; /* "" until signed */
    char sig[KME_ADVERT_SIG_MAX + 1];
} kme_advert;

/* Malloc'ed JSON text (free with etsi_text_free); NULL when out of memory. */
char *kme_advert_to_json(const kme_advert *a);

/* Decodes and validates (kme_advert_validate). 0, or -1 with *p set. */
int kme_advert_from_json(const char *body, size_t len, kme_advert *out, etsi_problem *p);

/* The checks a decoded advert passes: valid IDs, counts within the bounds,
 * no link to the origin itself, no peer or SAE listed twice, integers at
 * most INT64_MAX. 0, or -1 with *p set (p may be NULL). */
int kme_advert_validate(const kme_advert *a, etsi_problem *p);

/* The link of a to peer, or NULL. */
const kme_advert_link *kme_advert_find_link(const kme_advert *a, const char *peer);

#endif
