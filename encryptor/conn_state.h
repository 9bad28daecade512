/* The state of one connection, shared by its lifecycle (conn.c) and its two
 * pumps (pump.c); private to those two files. */
#ifndef ENCRYPTOR_CONN_STATE_H
#define ENCRYPTOR_CONN_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include "encryptor/conn.h"
#include "encryptor/original_dst.h"
#include "encryptor/pad_in.h"

typedef struct conn {
    enc_runtime *rt;
    uint64_t id;
    atomic_int plain_fd;  /* -1 until connected (server side) */
    atomic_int cipher_fd;
    atomic_int aborted;   /* set once; wakes every wait of the connection */
    char reason[160];     /* why it ended abnormally (written by the first abort) */
    pad_in *in;
    pthread_t sender;
    int sender_started;
    char dest[DEST_TEXT_MAX]; /* users side, transparent: the original destination */
    char from[DEST_TEXT_MAX + 8];
    char to[256 + 16 + DEST_TEXT_MAX]; /* host:port [for original destination] */
    /* Each counter is written by one pump only. */
    uint64_t plain_in, cipher_out, keys_out, waits; /* sender pump */
    uint64_t cipher_in, plain_out;                   /* receiver pump */
    int fin_sent, fin_received;
    struct conn *prev, *next;
} conn;

/* Ends the connection: the first caller records reason; both sockets are
 * shut down so that every pump wakes and stops. */
void conn_abort(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Starts pump_send on a thread of its own. 0, or -1 (the connection is aborted). */
int conn_start_sender(conn *c);

/* The sender pump (plaintext -> frames), run on its own thread; the users
 * side sends its OPEN frame first. */
void *pump_send(void *arg);
/* The receiver pump (frames -> plaintext), run on the connection's thread.
 * On the server side it connects to the destination named by the OPEN frame
 * and then starts the sender pump. */
void pump_receive(conn *c);

#endif
