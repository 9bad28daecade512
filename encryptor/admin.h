/* The encryptor's admin listener (config "admin_listen", runtime/admin_http.h):
 * /metrics (encryptor/metrics.h), /healthz (200 while the process answers)
 * and /readyz (200 while it accepts connections and its KME answered the
 * pad pool's last request; 503 otherwise). Paths in api/admin.yaml. */
#ifndef ENCRYPTOR_ADMIN_H
#define ENCRYPTOR_ADMIN_H

#include <stddef.h>
#include "encryptor/conn.h"

typedef struct enc_admin enc_admin;

/* Starts the listener when the configuration names one; *out is NULL when
 * it does not. -1 with err set when it cannot listen. */
int enc_admin_start(enc_runtime *rt, enc_admin **out, char *err, size_t errlen);
/* Ready or not as far as the listener of connections goes. */
void enc_admin_set_accepting(enc_admin *a, int accepting);
void enc_admin_stop(enc_admin *a);

#endif
