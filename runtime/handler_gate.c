/* Admits requests to a handler until the gate closes (see handler_gate.h). */
#include "runtime/handler_gate.h"

#include <time.h>

void handler_gate_run(handler_gate *g, http_handler handler, void *ctx, const http_request *req, http_response *resp)
{
    /* Counted before looking at the gate, and close() sets the gate before
     * counting: a handler either sees the gate closed or is waited for. */
    atomic_fetch_add(&g->inside, 1);
    if (atomic_load(&g->closed))
        http_error(resp, 503, "KME stopping", "the KME is shutting down; ask again once it is back");
    else
        handler(ctx, req, resp);
    atomic_fetch_sub(&g->inside, 1);
}

void handler_gate_close(handler_gate *g)
{
    atomic_store(&g->closed, 1);
    while (atomic_load(&g->inside) > 0)
        nanosleep(&(struct timespec){0, 1000 * 1000}, NULL);
}
