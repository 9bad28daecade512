/* The accept loop: one thread that hands every accepted connection to
 * conn_start until stopped. */
#ifndef ENCRYPTOR_LISTENER_H
#define ENCRYPTOR_LISTENER_H

#include <stddef.h>
#include "encryptor/config.h"
#include "encryptor/conn.h"

typedef struct listener listener;

/* Listens on ep and starts accepting. NULL with err set. */
listener *listener_start(enc_runtime *rt, const enc_endpoint *ep, char *err, size_t errlen);
/* Stops accepting and closes the socket (live connections go on). */
void listener_stop(listener *l);

#endif
