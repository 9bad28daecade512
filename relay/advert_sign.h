/* Origin authentication of link-state adverts (docs/ARCHITECTURE.md, life
 * of a key, step 6). Each KME signs its own adverts with the private key of
 * its KME certificate (the kme_tls key and cert of its configuration) and
 * carries that certificate in them; every KME that receives one, first hand
 * or flooded, checks that the certificate chains to the KME CA (kme_tls ca),
 * that its common name is the advert's origin, and the signature, before the
 * advert is stored or passed on. So one KME cannot speak for another: a
 * compromised KME can still lie about itself, not about its neighbours.
 *
 * The signature (EVP_DigestSign: SHA-256 with an EC or RSA key, pure for
 * Ed25519/Ed448) covers a canonical encoding of every member but age_ms
 * (which grows as the advert is flooded), cert and sig:
 *   "qkd-kme-advert-v1" | origin | u64 seq |
 *   u32 n, (peer | u32 up | u64 stock_bytes | u64 rate_bps) per link |
 *   u32 n, SAE IDs
 * with strings prefixed by their u32 length, integers big endian
 * (relay/link_mac.h). */
#ifndef RELAY_ADVERT_SIGN_H
#define RELAY_ADVERT_SIGN_H

#include <stddef.h>
#include "api/kme_advert.h"

typedef struct advert_signer advert_signer;

/* This KME's signing key and certificate and the KME CA, from PEM files;
 * the certificate's common name must be kme_id. NULL with err set. */
advert_signer *advert_signer_new(const char *cert_path, const char *key_path, const char *ca_path, const char *kme_id,
                                 char *err, size_t errlen);
void advert_signer_free(advert_signer *s);

/* The canonical bytes of a (malloc'ed). 0, or -1. */
int advert_canonical_bytes(const kme_advert *a, unsigned char **buf, size_t *len);

/* Sets a->cert and a->sig. 0, or -1 (then both are empty). */
int advert_sign(const advert_signer *s, kme_advert *a);

/* 0 when a carries a certificate of the KME CA whose common name is
 * a->origin and a good signature by it; -1 otherwise, with the reason in
 * why. */
int advert_verify(const advert_signer *s, const kme_advert *a, char *why, size_t whylen);

/* 1 when a and b are the same signed advert (every signed member, the
 * certificate and the signature alike; age_ms aside): one verified already
 * needs no second check. */
int advert_same_signed(const kme_advert *a, const kme_advert *b);

#endif
