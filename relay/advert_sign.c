/* Signing and checking link-state adverts with KME certificates (see advert_sign.h). */
#include "relay/advert_sign.h"
#include "api/encoding.h"
#include "relay/link_mac.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#define ADVERT_DOMAIN "qkd-kme-advert-v1"

struct advert_signer {
    EVP_PKEY *key;
    char *cert_b64; /* this KME's certificate, DER in base64 */
    X509_STORE *ca;
};

/* ---- canonical bytes ------------------------------------------------------------- */

static void canonical(link_mac_writer *w, const void *msg)
{
    const kme_advert *a = msg;
    link_mac_put_str(w, ADVERT_DOMAIN);
    link_mac_put_str(w, a->origin);
    link_mac_put_u64(w, a->seq);
    link_mac_put_u32(w, (uint32_t)a->link_count);
    for (size_t i = 0; i < a->link_count && i < KME_ADVERT_MAX_LINKS; i++) {
        link_mac_put_str(w, a->links[i].peer);
        link_mac_put_u32(w, a->links[i].up ? 1 : 0);
        link_mac_put_u64(w, a->links[i].stock_bytes);
        link_mac_put_u64(w, a->links[i].rate_bps);
    }
    link_mac_put_u32(w, (uint32_t)a->sae_count);
    for (size_t i = 0; i < a->sae_count && i < KME_ADVERT_MAX_SAES; i++)
        link_mac_put_str(w, a->saes[i]);
}

int advert_canonical_bytes(const kme_advert *a, unsigned char **buf, size_t *len)
{
    return link_mac_bytes(canonical, a, buf, len);
}

/* ---- certificates ------------------------------------------------------------------ */

/* 1 when cert's subject has exactly one common name and it is id. */
static int cn_is(X509 *cert, const char *id)
{
    X509_NAME *name = X509_get_subject_name(cert);
    int at = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
    if (at < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, at) >= 0)
        return 0;
    const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at));
    size_t n = strlen(id);
    return cn && (size_t)ASN1_STRING_length(cn) == n && memcmp(ASN1_STRING_get0_data(cn), id, n) == 0;
}

/* The md EVP_DigestSign takes for key: none for the EdDSA keys. */
static const EVP_MD *md_for(EVP_PKEY *key)
{
    int id = EVP_PKEY_get_base_id(key);
    return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? NULL : EVP_sha256();
}

static char *cert_to_b64(X509 *cert)
{
    unsigned char *der = NULL;
    int n = i2d_X509(cert, &der);
    char *b64 = n > 0 ? base64_encode(der, (size_t)n) : NULL;
    OPENSSL_free(der);
    return b64;
}

/* The certificate a carries, decoded; NULL when it is none. */
static X509 *cert_of(const kme_advert *a)
{
    size_t n = 0;
    unsigned char *der = base64_decode(a->cert, &n);
    const unsigned char *p = der;
    X509 *cert = der ? d2i_X509(NULL, &p, (long)n) : NULL;
    if (cert && p != der + n) { /* trailing bytes */
        X509_free(cert);
        cert = NULL;
    }
    free(der);
    return cert;
}

/* 0 when cert chains to the KME CA. */
static int chains_to_ca(X509_STORE *ca, X509 *cert, char *why, size_t whylen)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = ctx && X509_STORE_CTX_init(ctx, ca, cert, NULL) == 1 && X509_verify_cert(ctx) == 1;
    if (!ok)
        snprintf(why, whylen, "the certificate does not chain to the KME CA (%s)",
                 ctx ? X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)) : "out of memory");
    X509_STORE_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* ---- the signer -------------------------------------------------------------------- */

advert_signer *advert_signer_new(const char *cert_path, const char *key_path, const char *ca_path, const char *kme_id,
                                 char *err, size_t errlen)
{
    advert_signer *s = calloc(1, sizeof *s);
    X509 *cert = NULL;
    FILE *f = NULL;
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!(f = fopen(key_path, "r")) || !(s->key = PEM_read_PrivateKey(f, NULL, NULL, NULL))) {
        snprintf(err, errlen, "cannot read the KME key %s for signing adverts", key_path);
        goto fail;
    }
    fclose(f);
    if (!(f = fopen(cert_path, "r")) || !(cert = PEM_read_X509(f, NULL, NULL, NULL))) {
        snprintf(err, errlen, "cannot read the KME certificate %s", cert_path);
        goto fail;
    }
    fclose(f);
    f = NULL;
    if (!cn_is(cert, kme_id)) {
        snprintf(err, errlen, "the KME certificate %s does not name %s (CN)", cert_path, kme_id);
        goto fail;
    }
    if (X509_check_private_key(cert, s->key) != 1) {
        snprintf(err, errlen, "the KME key %s does not match the certificate %s", key_path, cert_path);
        goto fail;
    }
    if (!(s->ca = X509_STORE_new()) || X509_STORE_load_file(s->ca, ca_path) != 1) {
        snprintf(err, errlen, "cannot read the KME CA %s", ca_path);
        goto fail;
    }
    char why[160];
    if (chains_to_ca(s->ca, cert, why, sizeof why) < 0) {
        snprintf(err, errlen, "the KME certificate %s: %s", cert_path, why);
        goto fail;
    }
    if (!(s->cert_b64 = cert_to_b64(cert)) || strlen(s->cert_b64) > KME_ADVERT_CERT_MAX) {
        snprintf(err, errlen, "the KME certificate %s is too large for adverts", cert_path);
        goto fail;
    }
    X509_free(cert);
    ERR_clear_error();
    return s;
fail:
    if (f)
        fclose(f);
    X509_free(cert);
    advert_signer_free(s);
    ERR_clear_error();
    return NULL;
}

void advert_signer_free(advert_signer *s)
{
    if (!s)
        return;
    EVP_PKEY_free(s->key);
    X509_STORE_free(s->ca);
    free(s->cert_b64);
    free(s);
}

int advert_sign(const advert_signer *s, kme_advert *a)
{
    unsigned char *msg = NULL, *sig = NULL;
    size_t len = 0, siglen = 0;
    char *b64 = NULL;
    int ok = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    a->cert[0] = a->sig[0] = '\0';
    if (ctx && advert_canonical_bytes(a, &msg, &len) == 0 &&
        EVP_DigestSignInit(ctx, NULL, md_for(s->key), NULL, s->key) == 1 &&
        EVP_DigestSign(ctx, NULL, &siglen, msg, len) == 1 && (sig = malloc(siglen)) &&
        EVP_DigestSign(ctx, sig, &siglen, msg, len) == 1 && (b64 = base64_encode(sig, siglen)) &&
        strlen(b64) <= KME_ADVERT_SIG_MAX) {
        snprintf(a->cert, sizeof a->cert, "%s", s->cert_b64);
        snprintf(a->sig, sizeof a->sig, "%s", b64);
        ok = 1;
    }
    EVP_MD_CTX_free(ctx);
    free(msg);
    free(sig);
    free(b64);
    ERR_clear_error();
    return ok ? 0 : -1;
}

int advert_verify(const advert_signer *s, const kme_advert *a, char *why, size_t whylen)
{
    unsigned char *msg = NULL, *sig = NULL;
    size_t len = 0, siglen = 0;
    int ok = 0;
    EVP_MD_CTX *ctx = NULL;
    X509 *cert = a->cert[0] && a->sig[0] ? cert_of(a) : NULL;
    EVP_PKEY *key = cert ? X509_get0_pubkey(cert) : NULL;
    if (!a->cert[0] || !a->sig[0]) {
        snprintf(why, whylen, "not signed");
    } else if (!key) {
        snprintf(why, whylen, "no certificate");
    } else if (!cn_is(cert, a->origin)) {
        snprintf(why, whylen, "the certificate does not name the origin %s", a->origin);
    } else if (chains_to_ca(s->ca, cert, why, whylen) == 0) {
        if (!(sig = base64_decode(a->sig, &siglen)) || advert_canonical_bytes(a, &msg, &len) < 0 ||
            !(ctx = EVP_MD_CTX_new()) || EVP_DigestVerifyInit(ctx, NULL, md_for(key), NULL, key) != 1)
            snprintf(why, whylen, "the signature cannot be checked");
        else if (EVP_DigestVerify(ctx, sig, siglen, msg, len) != 1)
            snprintf(why, whylen, "bad signature");
        else
            ok = 1;
    }
    EVP_MD_CTX_free(ctx);
    X509_free(cert);
    free(msg);
    free(sig);
    ERR_clear_error();
    return ok ? 0 : -1;
}

int advert_same_signed(const kme_advert *a, const kme_advert *b)
{
    if (strcmp(a->origin, b->origin) || a->seq != b->seq || strcmp(a->sig, b->sig) || strcmp(a->cert, b->cert))
        return 0;
    unsigned char *x = NULL, *y = NULL;
    size_t xl = 0, yl = 0;
    int same = advert_canonical_bytes(a, &x, &xl) == 0 && advert_canonical_bytes(b, &y, &yl) == 0 && xl == yl &&
               memcmp(x, y, xl) == 0;
    free(x);
    free(y);
    return same;
}
