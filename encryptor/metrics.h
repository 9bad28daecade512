/* The encryptor's metrics, served as Prometheus text at /metrics on its
 * admin listener (encryptor/admin.h): bytes through the pumps, connections
 * (refused by reason, closed without payload), the pad pool (stock,
 * fetches, stalls), the key spent, tag failures and KME errors. Never
 * key material, key_IDs or payload. The byte counters are the process's own
 * (one appliance per process) and callable from any thread; the rest is
 * read from the runtime and the pool at each scrape. The families are listed
 * in api/admin.yaml. */
#ifndef ENCRYPTOR_METRICS_H
#define ENCRYPTOR_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "encryptor/conn.h"

enum enc_metric {
    ENC_M_PLAINTEXT_IN,    /* read from the plaintext side, to be encrypted */
    ENC_M_PLAINTEXT_OUT,   /* decrypted and written to the plaintext side */
    ENC_M_CIPHERTEXT_IN,   /* frames read from the peer encryptor (headers, bodies, tags) */
    ENC_M_CIPHERTEXT_OUT,  /* frames written to the peer encryptor */
    ENC_M_PADS_IN,         /* announced keys fetched with GET_KEY_WITH_KEY_IDS */
    ENC_M_PADS_IN_ERRORS,  /* GET_KEY_WITH_KEY_IDS calls that failed (each try) */
    ENC_M_PADS_SPENT,      /* keys taken from the pool and announced to the peer */
    ENC_M_PAD_BYTES_SPENT, /* their bytes: the key spent, used up or not */
    ENC_M_COUNT
};

void enc_metrics_add(enum enc_metric m, uint64_t n);
uint64_t enc_metrics_get(enum enc_metric m);

/* The whole exposition, malloc'd (length in *len), or NULL when out of memory. */
char *enc_metrics_text(enc_runtime *rt, size_t *len);

#endif
