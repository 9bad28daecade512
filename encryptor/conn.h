/* Connections: each accepted connection becomes one independent tunnel (a
 * client's RTMP connection on the users side, the peer encryptor's
 * ciphertext connection on the server side) served by its own threads, one
 * pump per direction. The runtime keeps the set of live connections so that
 * a stop can end them all, and the appliance-wide counters. */
#ifndef ENCRYPTOR_CONN_H
#define ENCRYPTOR_CONN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "encryptor/admission.h"
#include "encryptor/config.h"
#include "encryptor/pad_pool.h"

struct conn;

typedef struct {
    const enc_config *cfg;
    pad_pool *pool;
    pthread_mutex_t lock;
    pthread_cond_t idle;
    struct conn *live; /* doubly linked */
    size_t active;
    admission *admission; /* under lock */
    atomic_uint_fast64_t next_id;
    atomic_uint_fast64_t opened, tag_failures, malformed;
    atomic_uint_fast64_t without_payload; /* closed before any payload: no key spent */
    atomic_uint_fast64_t refused[ENC_REFUSED_COUNT];
    int64_t refusal_logged_at[ENC_REFUSED_COUNT]; /* under lock: refusals are logged at most every 5 s each */
    uint64_t refusals_unlogged[ENC_REFUSED_COUNT];
} enc_runtime;

/* 0, or -1 when out of memory. */
int conn_runtime_init(enc_runtime *rt, const enc_config *cfg, pad_pool *pool);
void conn_runtime_free(enc_runtime *rt);

/* Serves accepted socket fd (ownership moves) on a thread of its own. 0, or
 * -1 when refused (allow list, caps, no memory): fd is then closed. */
int conn_start(enc_runtime *rt, int fd);

/* Counts a refusal and logs it (rate-limited per reason). */
void conn_refused(enc_runtime *rt, enum enc_refusal reason, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* All refusals so far. */
uint64_t conn_refused_total(enc_runtime *rt);

/* Ends every live connection (both sides closed). */
void conn_abort_all(enc_runtime *rt, const char *reason);
/* Waits until no connection is left, at most timeout_ms. 0, or -1 on timeout. */
int conn_wait_idle(enc_runtime *rt, long timeout_ms);

#endif
