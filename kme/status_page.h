/* The status page on the KME's admin listener: "/" draws the network (SVG),
 * "/status.json" is what it draws (kme/status_json.h), refreshed live by the
 * page. */
#ifndef KME_STATUS_PAGE_H
#define KME_STATUS_PAGE_H

#include "runtime/admin_http.h"
#include "kme/context.h"

/* Fills resp for path, or leaves resp->status 0 when path is not a page of it. */
void status_page_serve(kme_context *k, const char *path, admin_response *resp);

/* The page served at "/" (kme/status_page_html.c). */
extern const char status_page_html[];

#endif
