/* Who may open a connection at the listening port, decided from its source
 * address before anything else is done for it: the allow list of client
 * networks, the connections open per source address, and new connections
 * per source address and second (a token bucket per address). Not thread
 * safe: the connection set (conn.c) calls it under its lock. */
#ifndef ENCRYPTOR_ADMISSION_H
#define ENCRYPTOR_ADMISSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "encryptor/config.h"

/* Why a connection was refused; the label of the refusal counter. */
enum enc_refusal {
    ENC_REFUSED_NOT_ALLOWED,     /* its address is in no network of 'allow' */
    ENC_REFUSED_PER_SOURCE,      /* max_connections_per_source open from its address */
    ENC_REFUSED_RATE,            /* new_connections_per_second from its address exceeded */
    ENC_REFUSED_MAX_CONNECTIONS, /* max_connections open in all */
    ENC_REFUSED_SETUP,           /* later: peer encryptor unreachable, not redirected, destination refused */
    ENC_REFUSED_COUNT
};

/* The label value of reason ("not_allowed", "per_source", ...). */
const char *admission_reason_name(enum enc_refusal reason);

typedef struct {
    uint8_t addr[16]; /* IPv4 in the first 4 bytes (v4-mapped IPv6 addresses too) */
    int v4;
} source_addr;

typedef struct admission admission;

/* NULL when out of memory. */
admission *admission_new(const enc_config *cfg);
void admission_free(admission *a);

/* The source address of a connected socket's peer. 0, or -1. */
int source_of(int fd, source_addr *out);

/* Admits a connection from src at now_ms (monotonic): 0, and the source
 * counts one more open connection until admission_leave; or -1 with
 * *reason set, and nothing counted. */
int admission_enter(admission *a, const source_addr *src, int64_t now_ms, enum enc_refusal *reason);
/* A connection admitted from src ended. */
void admission_leave(admission *a, const source_addr *src);

#endif
