/* The status page: the network as this KME sees it. */
#include "kme/status_page.h"

void status_page_serve(kme_context *k, const char *path, admin_response *resp)
{
    (void)k;
    (void)path;
    resp->status = 0;
}
