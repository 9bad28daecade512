/* The admin listener of kme and encryptor: plain HTTP, meant for loopback
 * or a management network, GET and HEAD only, small answers built whole by
 * the caller's handler (Prometheus text, health, the status page). The paths
 * it serves are described in api/admin.yaml. Never carries key material. */
#ifndef RUNTIME_ADMIN_HTTP_H
#define RUNTIME_ADMIN_HTTP_H

#include <stddef.h>

typedef struct {
    int status;               /* HTTP status; 0 means "no such path" (404) */
    const char *content_type; /* a static string */
    char *body;               /* malloc'd; freed by the listener */
    size_t len;
} admin_response;

/* Fills resp for path (the query string is left out). Runs on the listener's
 * thread, one request at a time: it must not block for long. */
typedef void (*admin_handler)(void *ctx, const char *path, admin_response *resp);

typedef struct admin_http admin_http;

/* Listens on host:port (an IPv4 address or "localhost"). On error returns
 * NULL and writes a message to err. */
admin_http *admin_http_start(const char *host, int port, admin_handler handler, void *ctx, char *err, size_t errlen);
void admin_http_stop(admin_http *a);

/* For handlers: a body copied from text. */
void admin_text(admin_response *resp, int status, const char *content_type, const char *text);

#endif
