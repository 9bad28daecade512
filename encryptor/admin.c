/* The encryptor's admin listener: which page answers which path, and the
 * health checks (admin.h). */
#include "encryptor/admin.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/admin_http.h"
#include "runtime/prom_text.h"
#include "encryptor/metrics.h"

struct enc_admin {
    admin_http *http;
    enc_runtime *rt;
    atomic_int accepting;
};

static void on_admin(void *ctx, const char *path, admin_response *resp)
{
    enc_admin *a = ctx;
    if (strcmp(path, "/metrics") == 0) {
        resp->status = 200;
        resp->content_type = PROM_CONTENT_TYPE;
        resp->body = enc_metrics_text(a->rt, &resp->len);
    } else if (strcmp(path, "/healthz") == 0) {
        admin_text(resp, 200, NULL, "ok\n");
    } else if (strcmp(path, "/readyz") == 0) {
        pad_pool_stats st;
        pad_pool_get_stats(a->rt->pool, &st);
        int accepting = atomic_load(&a->accepting);
        const char *text = !accepting         ? "not ready: not accepting connections\n"
                           : !st.kme_answered ? "not ready: the KME did not answer\n"
                                              : "ready\n";
        admin_text(resp, accepting && st.kme_answered ? 200 : 503, NULL, text);
    } else {
        resp->status = 0;
    }
}

int enc_admin_start(enc_runtime *rt, enc_admin **out, char *err, size_t errlen)
{
    *out = NULL;
    const enc_endpoint *ep = &rt->cfg->admin_listen;
    if (!ep->host[0])
        return 0;
    enc_admin *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "admin listener: out of memory");
        return -1;
    }
    a->rt = rt;
    a->http = admin_http_start(ep->host, atoi(ep->port), on_admin, a, err, errlen);
    if (!a->http) {
        free(a);
        return -1;
    }
    *out = a;
    return 0;
}

void enc_admin_set_accepting(enc_admin *a, int accepting)
{
    if (a)
        atomic_store(&a->accepting, accepting);
}

void enc_admin_stop(enc_admin *a)
{
    if (!a)
        return;
    admin_http_stop(a->http);
    free(a);
}
