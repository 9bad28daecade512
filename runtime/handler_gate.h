/* Lets a listener's handler be closed before the listener stops: a request
 * that arrives once the gate is closed is answered 503 at once, and closing
 * returns only when no handler is still running, so every request admitted
 * before has already been deferred (http_defer) or answered. The listener can
 * then wait for its deferred requests knowing that no new one will come,
 * also on kept-alive connections (runtime/http_server.h). */
#ifndef RUNTIME_HANDLER_GATE_H
#define RUNTIME_HANDLER_GATE_H

#include <stdatomic.h>
#include "runtime/http_server.h"

typedef struct {
    atomic_int inside; /* handlers running now */
    atomic_int closed;
} handler_gate;

/* Runs handler(ctx, req, resp) unless the gate is closed. */
void handler_gate_run(handler_gate *g, http_handler handler, void *ctx, const http_request *req, http_response *resp);
/* Closes the gate; returns once no handler is inside. */
void handler_gate_close(handler_gate *g);

#endif
