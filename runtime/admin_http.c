/* The admin listener: libmicrohttpd without TLS, one internal thread, GET and
 * HEAD only. Everything it says comes from the caller's handler. */
#include "runtime/admin_http.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct admin_http {
    struct MHD_Daemon *daemon;
    admin_handler handler;
    void *ctx;
};

void admin_text(admin_response *resp, int status, const char *content_type, const char *text)
{
    resp->status = status;
    resp->content_type = content_type;
    resp->body = strdup(text);
    resp->len = resp->body ? strlen(text) : 0;
}

static enum MHD_Result send_plain(struct MHD_Connection *c, unsigned int status, const char *text, const char *allow)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
    if (allow)
        MHD_add_response_header(r, "Allow", allow);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size, void **state)
{
    (void)version;
    (void)upload_data;
    admin_http *a = cls;
    if (!*state) { /* first call: headers only */
        *state = a;
        return MHD_YES;
    }
    if (*upload_data_size) { /* a body is not wanted: drop it */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return send_plain(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD are served here\n", "GET, HEAD");
    admin_response resp = {0};
    a->handler(a->ctx, url, &resp);
    if (resp.status == 0) {
        free(resp.body);
        return send_plain(c, MHD_HTTP_NOT_FOUND, "no such page\n", NULL);
    }
    if (!resp.body)
        return send_plain(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", NULL);
    struct MHD_Response *r = MHD_create_response_from_buffer(resp.len, resp.body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(resp.body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", resp.content_type ? resp.content_type : "text/plain; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned int)resp.status, r);
    MHD_destroy_response(r);
    return rc;
}

admin_http *admin_http_start(const char *host, int port, admin_handler handler, void *ctx, char *err, size_t errlen)
{
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    const char *ip = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1) {
        /* A host name: the address it names here (in a container, the
         * container's own address under its service name). */
        struct addrinfo hints = {0}, *res = NULL;
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) {
            snprintf(err, errlen, "admin listener: %s is neither an IPv4 address nor a host name known here", host);
            return NULL;
        }
        addr.sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
        freeaddrinfo(res);
    }
    admin_http *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "admin listener: out of memory");
        return NULL;
    }
    a->handler = handler;
    a->ctx = ctx;
    a->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, (uint16_t)port, NULL, NULL,
                                 on_request, a, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                 MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16 * 1024), MHD_OPTION_END);
    if (!a->daemon) {
        snprintf(err, errlen, "admin listener: cannot listen on %s:%d", host, port);
        free(a);
        return NULL;
    }
    return a;
}

void admin_http_stop(admin_http *a)
{
    if (!a)
        return;
    MHD_stop_daemon(a->daemon);
    free(a);
}
