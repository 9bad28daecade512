/* The KME's admin listener: which page answers which path, and the health
 * checks. Alive (/healthz) while the process answers at all; ready (/readyz)
 * while both listeners serve, the store is open and the KME is not stopping. */
#include "kme/admin.h"
#include "runtime/admin_http.h"
#include "runtime/prom_text.h"
#include "runtime/log.h"
#include "kme/metrics.h"
#include "kme/status_page.h"

#include <string.h>

static void on_admin(void *ctx, const char *path, admin_response *resp)
{
    kme_context *k = ctx;
    if (strcmp(path, "/metrics") == 0) {
        resp->status = 200;
        resp->content_type = PROM_CONTENT_TYPE;
        resp->body = kme_metrics_text(k, &resp->len);
    } else if (strcmp(path, "/healthz") == 0) {
        admin_text(resp, 200, NULL, "ok\n");
    } else if (strcmp(path, "/readyz") == 0) {
        int ready = atomic_load(&k->serving) && !stop_signal_raised(&k->stop) && k->store.env;
        admin_text(resp, ready ? 200 : 503, NULL, ready ? "ready\n" : "not ready\n");
    } else {
        status_page_serve(k, path, resp);
    }
}

int kme_admin_start(kme_context *k, char *err, size_t errlen)
{
    if (!k->cfg.admin_listen.port)
        return 0;
    k->admin = admin_http_start(k->cfg.admin_listen.host, k->cfg.admin_listen.port, on_admin, k, err, errlen);
    if (!k->admin)
        return -1;
    log_info("%s: admin listener on http://%s:%d/ (metrics, health, status page)", k->cfg.kme_id,
             k->cfg.admin_listen.host, k->cfg.admin_listen.port);
    return 0;
}

void kme_admin_stop(kme_context *k)
{
    admin_http_stop(k->admin);
    k->admin = NULL;
}
