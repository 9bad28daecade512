/* SAE client library: the ETSI GS QKD 014 calls an SAE makes to its KME over
 * mutually authenticated HTTPS (libcurl). One handle per thread; a handle
 * keeps its connection open across calls. Messages are encoded and decoded
 * with the shared codec in api/etsi014.h. Applications should call
 * etsi_json_use_wiping_allocator() once at start, so that JSON holding keys
 * is cleansed when freed. */
#ifndef SAE_CLIENT_H
#define SAE_CLIENT_H

#include <stddef.h>
#include "api/etsi014.h"

#define SAE_CLIENT_VERSION "0.1.0"

typedef struct {
    const char *kme_url;      /* https://host:port (a trailing '/' is ignored) */
    const char *cert;         /* client certificate: PEM, or PKCS#12 when it ends in .p12/.pfx */
    const char *key;          /* PEM private key; NULL: taken from cert */
    const char *ca;           /* CA file that verifies the KME; NULL: system store */
    const char *kme_id;       /* the KME expected (pinned): its server certificate's subject must hold
                               * exactly one CN, this ID (and any urn:qkd:kme: URI in its
                               * subjectAltName must name it), else the connection is refused with
                               * SAE_ERR_TRANSPORT. NULL: any KME the CA vouches for under the
                               * URL's host name (the host name is always checked) */
    const char *key_password; /* for an encrypted key or PKCS#12 file; may be NULL */
    long timeout_ms;          /* whole-request limit; 0: 10 s */
    int keep_response;        /* keep the last response body for sae_client_response() */
} sae_client_config;

typedef struct sae_client sae_client;

typedef enum {
    SAE_OK = 0,
    SAE_ERR_ARGUMENT,  /* the call's arguments were refused; nothing was sent */
    SAE_ERR_TRANSPORT, /* no HTTP answer: connection, TLS or timeout; see transport */
    SAE_ERR_KME,       /* the KME answered with http_status != 200; see problem */
    SAE_ERR_RESPONSE   /* HTTP 200 but the body is not the expected message; see problem */
} sae_error;

typedef struct {
    sae_error error;
    long http_status;     /* 0 when no HTTP answer was received */
    etsi_problem problem; /* the KME's ETSI error body, or what was wrong */
    char transport[256];  /* libcurl's error text for SAE_ERR_TRANSPORT */
} sae_result;

/* NULL on failure, with a reason in err. */
sae_client *sae_client_new(const sae_client_config *cfg, char *err, size_t errlen);
void sae_client_free(sae_client *c);

/* Each call returns 0 on success and -1 on failure with res filled (res may be
 * NULL). out is cleared on failure; release a key container with
 * etsi_key_container_clear. */
int sae_client_get_status(sae_client *c, const char *slave_sae_id, etsi_status *out, sae_result *res);

/* Get key (enc_keys). req->number 0 means 1; req->size 0 means the KME's
 * default. Additional slaves need use_post. */
int sae_client_get_key(sae_client *c, const char *slave_sae_id, const etsi_key_request *req, int use_post,
                       etsi_key_container *out, sae_result *res);

/* Get key with key IDs (dec_keys). More than one ID needs use_post. */
int sae_client_get_key_with_ids(sae_client *c, const char *master_sae_id, const etsi_key_ids *ids, int use_post,
                                etsi_key_container *out, sae_result *res);

/* The body of the last response (NUL-terminated), when the handle was made
 * with keep_response; NULL otherwise. It may hold keys: it stays valid until
 * the next call or sae_client_free, which cleanse it. */
const char *sae_client_response(const sae_client *c, size_t *len);

#endif
