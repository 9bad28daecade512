/* An HTTPS listener (libmicrohttpd over GnuTLS) that authenticates clients by
 * certificate. TLS 1.3, and TLS 1.2 with ECDHE key exchange and AEAD ciphers
 * only (no CBC, no static RSA key exchange). A client certificate is
 * accepted only when it verifies against the one client CA, is not revoked
 * by the listener's CRL (optional, replaced while serving), and is an
 * end-entity certificate for client authentication (not a CA; keyUsage, when
 * present, with digitalSignature and without certificate or CRL signing;
 * extendedKeyUsage, when present, naming clientAuth) whose subject holds
 * exactly one CN: that CN is handed to the handler. Bodies are bounded;
 * responses that carry key material are wiped after sending.
 *
 * What a client without a valid certificate costs is bounded (ARCHITECTURE.md,
 * I7): its request goes to the handler (which refuses it) as soon as its
 * headers are in, before any body byte is read, and its connection is closed
 * after the answer; connections are capped per listener and per address;
 * every request (TLS handshake, headers and body) must arrive within
 * connection_timeout_s of the connection's opening or of the previous
 * answer, however slowly its bytes trickle in, else the connection is cut.
 * Used for both the SAE port and the KME port.
 *
 * Handlers run on a few event threads and must not block: a request that
 * waits (for a commit, for a neighbour KME) is deferred with http_defer and
 * answered once http_resume is called, or its blocking part is handed to the
 * worker pool with http_offload. */
#ifndef RUNTIME_HTTP_SERVER_H
#define RUNTIME_HTTP_SERVER_H

#include <stddef.h>
#include "api/etsi014.h"
#include "runtime/worker_pool.h"

/* Where a listener binds. */
typedef struct {
    char host[256];
    int port;
} net_endpoint;

enum http_client_auth {
    HTTP_AUTH_OK = 0,
    HTTP_AUTH_NO_CERT = 1,   /* no client certificate */
    HTTP_AUTH_UNTRUSTED = 2, /* it does not verify against the client CA, or has expired */
    HTTP_AUTH_REFUSED = 3,   /* it verifies, but is not one end-entity client identity */
    HTTP_AUTH_REVOKED = 4    /* it verifies, but the CRL revokes it */
};

typedef struct {
    void *connection; /* struct MHD_Connection */
    const char *method;
    const char *path;
    enum http_client_auth auth;
    const char *auth_reason;         /* why auth is not OK, for the answer (static text) */
    char client_cn[ETSI_ID_MAX + 1]; /* verified certificate CN when auth is OK */
    const char *body;
    size_t body_len;
    int body_too_large;
    void *state;              /* the server's per-request state */
    const char *content_type; /* the Content-Type header, or NULL */
} http_request;

typedef struct {
    int status;
    char *body;         /* JSON text from an etsi_*_to_json function (freed and wiped by the server) */
    long retry_after_s; /* > 0: a Retry-After header (seconds) */
} http_response;

/* Fills resp, or defers the request (then resp is ignored). */
typedef void (*http_handler)(void *ctx, const http_request *req, http_response *resp);

/* A deferred request. finish(work, resp) runs on an event thread once the
 * request is resumed; it fills resp and owns (frees) work. */
typedef struct http_deferred http_deferred;
typedef void (*http_finish)(void *work, http_response *resp);
typedef void (*http_job)(void *work);

/* From a handler: suspends the request until http_resume. */
http_deferred *http_defer(const http_request *req, http_finish finish, void *work);
/* From any thread, once, after http_defer. */
void http_resume(http_deferred *d);
/* From a handler: runs job(work) on the worker pool, then finish. */
void http_offload(const http_request *req, http_job job, http_finish finish, void *work);

typedef struct http_server http_server;

/* Told of every answer the handler gives, with its final status (a deferred
 * request's too), just before it is queued, on an event thread: it must be
 * quick. ctx is the handler's. Refusals of the HTTP layer itself (a request
 * that is not HTTP, a body beyond the bound) are not seen. */
typedef void (*http_answer_hook)(void *ctx, const char *method, const char *path, int status);

typedef struct {
    const net_endpoint *listen;
    const char *cert_file, *key_file, *client_ca_file;
    const char *crl_file; /* CRLs of the client CA (PEM); NULL or "": none */
    long connection_limit, connection_timeout_s;
    size_t body_max;
    http_handler handler;
    void *ctx;
    const char *name; /* for log lines */
    unsigned int event_threads;
    worker_pool *workers;              /* for http_offload */
    http_answer_hook on_answer;        /* may be NULL */
    long connection_limit_per_address; /* concurrent connections from one address; 0: no cap of its own */
} http_server_options;

http_server *http_server_start(const http_server_options *o, char *err, size_t errlen);
/* A revocation list for a listener: the CRLs of one PEM file, each signed by
 * the listener's client CA. Loaded first, then put in force, so that a
 * caller replacing the lists of several listeners can refuse them all. */
typedef struct http_crl http_crl;
/* The CRLs in crl_file (NULL or "": an empty list), or NULL with err. */
http_crl *http_crl_load(const http_server *s, const char *crl_file, char *err, size_t errlen);
/* The number of certificates it revokes; whether a CRL is past its
 * nextUpdate (its revocations apply all the same). */
unsigned int http_crl_revoked(const http_crl *c);
int http_crl_stale(const http_crl *c);
void http_crl_free(http_crl *c);
/* Puts c in force (the listener owns it then) and frees the list it
 * replaces. Connections already open are checked again at their next
 * request. Any thread. */
void http_server_use_crl(http_server *s, http_crl *c);

/* Stops listening, waits (up to 15 s) for the deferred requests to be answered,
 * then stops the listener; NULL is a no-op. */
void http_server_stop(http_server *s);

/* A query argument of the request, or NULL. */
const char *http_query(const http_request *req, const char *name);

/* Convenience: an ETSI error response. */
void http_error(http_response *resp, int status, const char *message, const char *detail_fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same, its detail naming refused_by as the KME that refused
 * (etsi_error_refused_to_json). */
void http_error_refused(http_response *resp, int status, const char *refused_by, const char *message,
                        const char *detail_fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
