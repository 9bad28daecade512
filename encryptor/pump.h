/* The two pumps of one connection: the sender (plaintext -> frames) and the
 * receiver (frames -> plaintext). conn.c starts them; they end the
 * connection only through conn_abort (conn_state.h). */
#ifndef ENCRYPTOR_PUMP_H
#define ENCRYPTOR_PUMP_H

#include "encryptor/conn_state.h"

/* Starts pump_send on a thread of its own. 0, or -1 (the connection is aborted). */
int pump_start_sender(conn *c);

/* The sender pump, run on its own thread; the users side sends its OPEN
 * frame first. */
void *pump_send(void *arg);
/* The receiver pump, run on the connection's thread. On the server side it
 * connects to the destination named by the OPEN frame and then starts the
 * sender pump. */
void pump_receive(conn *c);

#endif
