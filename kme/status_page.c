/* The status page's paths: "/" (and "/index.html") the page, "/status.json"
 * the network it draws, built afresh for each request. */
#include "kme/status_page.h"
#include "kme/status_json.h"

#include <string.h>

void status_page_serve(kme_context *k, const char *path, admin_response *resp)
{
    if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
        admin_text(resp, 200, "text/html; charset=utf-8", status_page_html);
    } else if (strcmp(path, "/status.json") == 0) {
        /* While stopping, the router goes away: nothing left to show. */
        if (stop_signal_raised(&k->stop)) {
            admin_text(resp, 503, NULL, "stopping\n");
            return;
        }
        resp->status = 200;
        resp->content_type = "application/json";
        resp->body = status_json_text(k, &resp->len);
    }
}
