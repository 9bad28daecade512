/* The state of one connection, shared by its lifecycle (conn.c) and its two
 * pumps (pump.c), and the one way to end it from any of its threads;
 * private to the connection's files. conn.c runs the pumps (pump.h); the
 * pumps see only this state. */
#ifndef ENCRYPTOR_CONN_STATE_H
#define ENCRYPTOR_CONN_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include "encryptor/conn.h"
#include "encryptor/original_dst.h"
#include "encryptor/pad_in.h"

#define CONN_STACK (256 * 1024) /* each thread of a connection */

typedef struct conn {
    enc_runtime *rt;
    uint64_t id;
    atomic_int plain_fd; /* -1 until connected (server side) */
    atomic_int cipher_fd;
    atomic_int aborted; /* set once; wakes every wait of the connection */
    char reason[160];   /* why it ended abnormally (written by the first abort) */
    pad_in *in;
    pthread_t sender;
    int sender_started;
    source_addr source;       /* counted by the admission until the connection ends */
    int no_payload;           /* users side: the client closed before sending a byte */
    char dest[DEST_TEXT_MAX]; /* users side, transparent: the original destination */
    char from[DEST_TEXT_MAX + 8];
    char to[256 + 16 + DEST_TEXT_MAX]; /* host:port [for original destination] */
    /* Each counter is written by one pump only. */
    uint64_t plain_in, cipher_out, keys_out, waits; /* sender pump */
    uint64_t cipher_in, plain_out;                  /* receiver pump */
    int fin_sent, fin_received;
    struct conn *prev, *next;
} conn;

/* Ends the connection: the first caller records reason; both sockets are
 * shut down so that every pump wakes and stops. */
void conn_abort(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
