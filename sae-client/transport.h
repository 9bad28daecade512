/* HTTPS transport of the SAE client: one reusable libcurl easy handle per
 * client, with mutual TLS to the KME. Internal to the library. */
#ifndef SAE_TRANSPORT_H
#define SAE_TRANSPORT_H

#include <curl/curl.h>
#include "sae-client/sae_client.h"
#include "runtime/wipe_buf.h"

#define SAE_RESPONSE_MAX (16L * 1024 * 1024) /* largest response body accepted */

typedef struct {
    CURL *curl;
    struct curl_slist *get_headers;
    struct curl_slist *post_headers;
    char errbuf[CURL_ERROR_SIZE];
    int too_large;
    wipe_buf body;                /* the last response body */
    char kme_id[ETSI_ID_MAX + 1]; /* the pinned KME ID; "": none */
    char pin_problem[160];        /* why the last handshake failed the pin; "": it did not */
} sae_transport;

/* The URI subjectAltName prefix that names a KME in its certificates
 * (certs/mkcerts.sh): urn:qkd:kme:<KME ID>. */
#define SAE_KME_URI_PREFIX "urn:qkd:kme:"

/* Configures TLS and the connection options once. 0, or -1 with err set. */
int sae_transport_init(sae_transport *t, const sae_client_config *cfg, char *err, size_t errlen);
void sae_transport_cleanup(sae_transport *t);

/* One request: GET when post_body is NULL, else POST of that JSON text. On
 * 0, *status is the HTTP status and t->body the response body; on -1, err
 * holds the transport failure and the body is empty. */
int sae_transport_request(sae_transport *t, const char *url, const char *post_body, long *status, char *err,
                          size_t errlen);

/* URL-encodes one path segment; free with curl_free. NULL when out of memory. */
char *sae_transport_escape(sae_transport *t, const char *segment);

#endif
