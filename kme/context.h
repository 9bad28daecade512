/* The running daemon: its configuration, its store and the relay node
 * standing on it, shared by the SAE API, the admin listener and the
 * workers. kme/context.c wires them together: the one place where the
 * daemon's configuration becomes the relay layer's settings and hooks. */
#ifndef KME_CONTEXT_H
#define KME_CONTEXT_H

#include <pthread.h>
#include <stdatomic.h>
#include "kme/config.h"
#include "relay/node.h"
#include "runtime/stop_signal.h"
#include "store/store.h"

struct admin_http;
struct key_economy;

typedef struct kme_context {
    kme_config cfg;
    kme_store store;
    relay_node net;              /* links, stock, routing and the neighbours (relay/node.h) */
    struct admin_http *admin;    /* the admin listener (kme/admin.h), or NULL */
    struct key_economy *economy; /* what each SAE spends of link key (kme/key_economy.h) */
    http_server *sae_port;       /* the listeners, while they run (their CRLs are reloaded) */
    http_server *kme_port;
    atomic_int serving; /* both listeners are up and the KME is not stopping */
    stop_signal stop;   /* raised once the daemon stops */
} kme_context;

/* Sets up the relay node over the open store from the configuration, with
 * the daemon's hooks (hosted SAEs, limits, metrics). 0, or -1 with err. */
int kme_wire_relay(kme_context *k, char *err, size_t errlen);

#endif
